"""Start, feed, poll and stop the inference worker process (``server.py``) without ever blocking the caller.

The client is made for a GUI timer: ``WorkerJob.poll()`` reads whatever the worker appended to its events
file since the last call and checks whether the process is still alive; nothing here waits on the worker
except ``wait()`` (scripts and tests) and ``close()``. No thread is started in the caller's process.

Cancel kills the worker's whole process tree (it runs in its own process group / session), so it stops
within one poll wherever it is, even deep inside a torch call; the client is then spent and the caller
starts a fresh one for the next request. A worker that dies on its own (out of memory, CUDA error, killed)
turns the running job into one ``WorkerError`` naming the exit status and the worker's last log lines."""

from __future__ import annotations

import itertools
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import protocol as wp
from ..geometry import Geometry
from ..inference.postprocess import PostprocessOptions
from .jobs import WorkerJob, WorkerResult
from .process import (SESSION_PREFIX, child_environment, default_python, describe_exit, find_python_slicer,
                      kill_process_tree, new_group_options, sweep_stale_sessions, track, write_owner)
from .refine_jobs import click_message, place_array, start_message

# The jobs and process helpers live in jobs.py and process.py; processRunner and the tests import them here.
__all__ = ["WorkerClient", "WorkerJob", "WorkerResult", "default_python", "describe_exit", "find_python_slicer",
           "kill_process_tree"]

LOG_TAIL_LINES = 6


class WorkerClient:
    """One worker process and the requests sent to it (one at a time)."""

    def __init__(self, python: str | None = None, extra_paths: Sequence[Path | str] = (),
                 env: dict[str, str] | None = None, session_dir: Path | None = None,
                 loaders: Sequence[str] = ()) -> None:
        """``loaders``: further ``module:function`` loaders the worker may use (tests' fake segmenters). They are
        fixed on the worker's command line at start; a request naming any other loader is refused."""
        self.python = python or default_python()
        self.loaders = tuple(loaders)
        self.extra_paths = [str(p) for p in extra_paths]
        self.env = env
        self._owns_session = not (session_dir and Path(session_dir).exists())  # close() removes only its own
        if not session_dir:  # a crashed host's session folders go before this one is made
            sweep_stale_sessions(Path(tempfile.gettempdir()))
        self.session = Path(session_dir) if session_dir else Path(tempfile.mkdtemp(prefix=SESSION_PREFIX))
        self.events_path = self.session / "events.jsonl"
        self.log_path = self.session / "worker.log"
        self.process: subprocess.Popen | None = None
        self.hello: dict[str, Any] | None = None
        self.terminated = False
        self._offset = 0
        self._partial = ""
        self._job: WorkerJob | None = None
        self._ids = itertools.count(1)
        self._staged = itertools.count(1)
        self.last_heard = time.monotonic()

    # life cycle
    def start(self) -> WorkerClient:
        """Start the process (returns at once; its ``hello`` arrives with a later poll)."""
        if self.process is not None:
            return self
        self.session.mkdir(parents=True, exist_ok=True)
        if self._owns_session:
            write_owner(self.session)
        self.events_path.write_bytes(b"")  # emptied: a reused folder's old events would answer our r1, r2...
        env = child_environment(self.env, self.extra_paths)
        with open(self.log_path, "ab") as log:  # its own process group: cancel kills the whole tree
            command = [self.python, "-m", "NeonatalLungSegLib.worker.server", str(self.events_path)]
            for loader in self.loaders:
                command += ["--loader", loader]
            self.process = subprocess.Popen(command,
                                            stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, env=env,
                                            cwd=str(self.session), **new_group_options())
        track(self)
        return self

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def usable(self) -> bool:
        return not self.terminated and (self.process is None or self.alive)

    def terminate(self) -> None:
        """Kill the worker's process tree now (cancel, module reload, application exit)."""
        self.terminated = True
        if self.process is not None:
            kill_process_tree(self.process)
            self._close_stdin()

    def close(self, timeout: float = 5.0) -> None:
        """Ask the worker to exit, wait up to ``timeout`` seconds, then kill what is left."""
        if self.process is not None and self.process.poll() is None and not self.terminated:
            try:
                self._send(wp.make_message("shutdown"))
                self._close_stdin()
                self.process.wait(timeout=timeout)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.terminate()
        if self._owns_session:
            shutil.rmtree(self.session, ignore_errors=True)

    def _close_stdin(self) -> None:
        try:
            if self.process is not None and self.process.stdin is not None:
                self.process.stdin.close()
        except OSError:
            pass

    def _send(self, message: dict[str, Any]) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(wp.encode(message).encode("utf-8"))
        self.process.stdin.flush()

    # requests
    def submit(self, array: np.ndarray | Path, geometry: Geometry, model_folder: Path | str, device: str = "auto",
               options: PostprocessOptions | None = PostprocessOptions(), flip: bool = False,
               loader: str | None = None, source: str = "input volume") -> WorkerJob:
        """Send one segmentation request; returns its job at once. ``array`` may be an ``.npy`` file written
        beforehand in this client's session folder (``staging_path``): it is moved into the request, not
        rewritten, so a caller can write a large volume in pieces between GUI timer ticks."""
        self._check_free()
        self.start()
        request_id, folder = self._new_request()
        place_array(array, folder / "input.npy")
        message = wp.make_message("segment", id=request_id, input=str(folder / "input.npy"),
                                  geometry=wp.geometry_to_json(geometry), model=str(model_folder), device=device,
                                  output=str(folder), options=wp.options_to_json(options), flip=bool(flip),
                                  source=source, **({"loader": loader} if loader else {}))
        return self._submit(WorkerJob(self, request_id, geometry), message)

    def start_refine(self, array: np.ndarray, geometry: Geometry, model_folder: Path | str, device: str = "auto",
                     loader: str | None = None, source: str = "input volume", image_contrast: bool = True) -> WorkerJob:
        """Load a click-refinement model and prepare one volume in the worker; the job's result is a
        ``refine_jobs.RefineReady`` naming the session every later click refers to. ``image_contrast=False``
        leaves the session's negative clicks to the network alone (``Refiner.session``)."""
        return self._submit_built(start_message, array, geometry, model_folder, device, loader, source,
                                  image_contrast)

    def submit_click(self, session: str, labels: np.ndarray, geometry: Geometry, click: Any) -> WorkerJob:
        """One click (``clicks.Click``) on the current ``labels``; the job's result is a
        ``refine_jobs.ClickResult`` with the new labels and what the click did."""
        return self._submit_built(click_message, session, labels, geometry, click)

    def staging_path(self) -> Path:
        """A new file name in the session folder for an input written beforehand (swept with the folder)."""
        self.session.mkdir(parents=True, exist_ok=True)
        return self.session / f"staged-{next(self._staged)}.npy"

    def _check_free(self) -> None:
        if not self.usable:
            raise wp.WorkerError("this worker was stopped; start a new one")
        if self._job is not None and not self._job.done:
            raise wp.WorkerError("the worker is busy with another request")

    def _new_request(self) -> tuple[str, Path]:
        """A request id and its own folder in the session directory (input and output files)."""
        request_id = f"r{next(self._ids)}"
        (self.session / request_id).mkdir(parents=True, exist_ok=True)
        return request_id, self.session / request_id

    def _submit_built(self, build: Any, *args: Any) -> WorkerJob:
        self._check_free()
        self.start()
        return self._submit(*build(self, *self._new_request(), *args))

    def silent_for(self) -> float:
        """Seconds since the worker last said anything (an event or a heartbeat) while a job runs; 0 when idle.
        A working worker beats every HEARTBEAT_SECONDS, so a long silence means it hangs (the panel offers
        Cancel)."""
        if self._job is None or self._job.done:
            return 0.0
        return time.monotonic() - self.last_heard

    @property
    def worker_pid(self) -> int | None:
        """The worker's own PID from its ``hello`` (under Slicer's launcher the child we started is the launcher)."""
        if self.hello is not None:
            return int(self.hello["pid"])
        return self.pid

    def _submit(self, job: WorkerJob, message: dict[str, Any]) -> WorkerJob:
        self._job = job
        self.last_heard = time.monotonic()
        try:
            self._send(message)
        except OSError:
            self.poll()  # the worker died before reading: the job gets the death message
            job._fail(wp.WorkerError(self._death_message()))
        return job

    def poll(self) -> None:
        """Read new events; notice a dead worker. Never blocks."""
        for event in self._read_events():
            self.last_heard = time.monotonic()
            if event["type"] == "hello":
                self.hello = event
            elif event["type"] == "heartbeat":
                continue  # liveness only: see silent_for()
            elif self._job is not None and event.get("id") in (self._job.id, None) and event["type"] != "bye":
                self._job._take(event)
                if self._job.done:  # the caller holds the job; the client lets go of its arrays
                    self._job = None
        if self.process is not None and self.process.poll() is not None and not self.terminated:
            for event in self._read_events():  # whatever it wrote just before exiting
                if self._job is not None and event.get("id") == self._job.id:
                    self._job._take(event)
            if self._job is not None and not self._job.done:
                self._job._fail(wp.WorkerError(self._death_message()))

    def _read_events(self) -> list[dict[str, Any]]:
        try:
            with open(self.events_path, "r", encoding="utf-8") as handle:
                handle.seek(self._offset)
                text = handle.read()
                self._offset = handle.tell()
        except OSError:
            return []
        text = self._partial + text
        lines = text.split("\n")
        self._partial = lines.pop()  # an unfinished line waits for the next poll
        events = []
        for line in lines:
            if not line.strip():
                continue
            try:
                events.append(wp.decode(line))
            except wp.ProtocolError as error:
                if self._job is not None:
                    self._job._fail(wp.WorkerError(f"the segmentation process sent a bad message: {error}"))
        return events

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def _death_message(self) -> str:
        code = None if self.process is None else self.process.poll()
        tail = self.log_tail()
        how = describe_exit(code)
        if "memory" not in how:  # no error event, no bye: under a launcher a kill reads as a plain exit status
            how += " without reporting an error (the system may have run out of memory)"
        return (f"The segmentation process (PID {self.worker_pid}) {how} before finishing; nothing was "
                "changed. Segment again to start a new one." + (f"\nIts last output:\n{tail}" if tail else ""))
