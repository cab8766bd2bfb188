"""The operating-system side of the worker: which Python starts it, how its process tree is killed, how its
exit is described, and the last-resort kill when the host exits without closing its clients.

Kept apart from ``worker_client.py`` (requests, events, jobs) because this is the platform-specific part:
POSIX process groups against Windows ``taskkill /T``, PythonSlicer against a plain interpreter. Plain
Python, no NumPy or torch: the Slicer process imports it at start-up.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import weakref
from pathlib import Path
from typing import Any, Sequence

_LIVE_CLIENTS: weakref.WeakSet = weakref.WeakSet()
LIBRARY_ROOT = Path(__file__).resolve().parents[2]  # the folder holding NeonatalLungSegLib/


def track(client: Any) -> None:
    """Remember a started client (anything with ``terminate()``) so an exiting host still kills its worker."""
    _LIVE_CLIENTS.add(client)


@atexit.register
def _stop_live_workers() -> None:
    """The host is exiting without having closed a client (a crash in a slot, no cleanup): kill the workers,
    which run in their own process groups and would otherwise finish their current request first."""
    for client in list(_LIVE_CLIENTS):
        client.terminate()


def default_python() -> str:
    """The interpreter to start the worker with: outside Slicer, this one."""
    return sys.executable


def find_python_slicer(search: Sequence[Path] = ()) -> str | None:
    """Slicer's own interpreter (PythonSlicer) on PATH or beside ``sys.executable``, or None.

    Inside Slicer ``sys.executable`` is the application, not a Python that can run a script; PythonSlicer
    sets up the same environment (site-packages with the installed torch) as the application's Python.
    """
    name = "PythonSlicer.exe" if os.name == "nt" else "PythonSlicer"
    found = shutil.which("PythonSlicer")
    if found:
        return found
    for folder in [*search, Path(sys.executable).parent, Path(sys.executable).parent.parent / "bin"]:
        candidate = Path(folder) / name
        if candidate.is_file():
            return str(candidate)
    return None


def child_environment(base: dict[str, str] | None, extra_paths: Sequence[str] = ()) -> dict[str, str]:
    """The environment a child process of ours starts with: ``base`` (this process's when None) with the
    library first on PYTHONPATH, so the child imports the same code as its host whatever Python runs it, and
    unbuffered output, so its log is complete up to the moment it is killed."""
    env = dict(os.environ if base is None else base)
    paths = [str(LIBRARY_ROOT), *extra_paths] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def new_group_options() -> dict[str, Any]:
    """``Popen`` options that put the worker in its own process group, so a cancel kills its whole tree."""
    if os.name == "nt":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | getattr(subprocess, "CREATE_NO_WINDOW", 0)}
    return {"start_new_session": True}


TASKKILL_SECONDS = 10  # taskkill normally answers at once; a hung one must not hang Slicer's Cancel


def kill_process_tree(process: subprocess.Popen) -> None:
    """Kill the worker and everything it started (its process group on POSIX, /T on Windows); reap it.

    On Windows ``taskkill`` runs without a console window (CREATE_NO_WINDOW: Slicer is a GUI program, so a
    console program it starts would flash one) and within TASKKILL_SECONDS; if it fails or times out the
    worker itself is still killed below (``process.kill``)."""
    if process.poll() is None:
        try:
            if os.name == "nt":
                subprocess.run(["taskkill", "/F", "/T", "/PID", str(process.pid)], capture_output=True, check=False,
                               timeout=TASKKILL_SECONDS, creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))
            else:
                os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, OSError, subprocess.TimeoutExpired):
            pass
    elif os.name != "nt":
        try:  # the worker is gone, but a child it started may still hold the group
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, OSError):
            pass
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def describe_exit(returncode: int | None) -> str:
    """How the worker ended, in words for the user; a SIGKILL most often means the system ran out of memory."""
    if returncode is None:
        return "is still running"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = " (the system ends a process this way when memory runs out)" if name == "SIGKILL" else ""
        return f"was killed by {name}{hint}"
    return f"exited with status {returncode}"


SESSION_PREFIX = "NeonatalLungSeg-worker-"
OWNER_NAME = "owner.json"
LEGACY_AGE_SECONDS = 24 * 3600  # a session folder without an owner record (older versions): swept after a day


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists on this computer (a zombie counts as gone)."""
    if pid <= 0:
        return False
    if sys.platform == "win32":
        done = subprocess.run(["tasklist", "/FI", f"PID eq {pid}", "/NH"], capture_output=True, text=True,
                              creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))
        return str(pid) in done.stdout
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (macOS): ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def write_owner(session: Path) -> None:
    """Record which process owns a session folder, so a later start can tell a crashed owner's folder."""
    import json

    (Path(session) / OWNER_NAME).write_text(json.dumps({"pid": os.getpid()}) + "\n", encoding="utf-8")


def sweep_stale_sessions(root: Path, now: float | None = None) -> list[Path]:
    """Remove the session folders under ``root`` whose owner process is gone (a crashed Slicer leaves its
    input, labels and probabilities behind); returns what was removed. Never touches a live owner's folder."""
    import json
    import time

    removed = []
    now = time.time() if now is None else now
    for folder in Path(root).glob(f"{SESSION_PREFIX}*"):
        if not folder.is_dir() or folder.is_symlink():
            continue
        try:
            owner = json.loads((folder / OWNER_NAME).read_text(encoding="utf-8")).get("pid")
            stale = not isinstance(owner, int) or not pid_alive(owner)
        except (OSError, ValueError, AttributeError):
            try:
                stale = now - folder.stat().st_mtime > LEGACY_AGE_SECONDS
            except OSError:
                stale = False
        if stale:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed
