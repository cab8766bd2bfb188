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


def new_group_options() -> dict[str, Any]:
    """``Popen`` options that put the worker in its own process group, so a cancel kills its whole tree."""
    if os.name == "nt":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | getattr(subprocess, "CREATE_NO_WINDOW", 0)}
    return {"start_new_session": True}


def kill_process_tree(process: subprocess.Popen) -> None:
    """Kill the worker and everything it started (its process group on POSIX, /T on Windows); reap it."""
    if process.poll() is None:
        try:
            if os.name == "nt":
                subprocess.run(["taskkill", "/F", "/T", "/PID", str(process.pid)], capture_output=True, check=False)
            else:
                os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, OSError):
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
