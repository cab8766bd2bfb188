"""The module's former runner: long work on a worker thread with progress and a cancel that really stops it.

Kept only under Testing/ as the counter-example of Testing/slicer/test_gil_host.py: inside Slicer the main
thread holds the GIL while Qt idles, so a Python thread starves there, and the module now runs the engine in
a worker process (``NeonatalLungSegLib/worker/server.py``). The text below describes it as it was designed.

The Slicer module must not freeze while a volume is segmented (a blocking run is the most complained-about
issue of comparable tools), yet MRML nodes may only be touched from the GUI thread. So the heavy part (the
engine's ``segment_array``: NumPy, SciPy and torch, which release the GIL) runs here on a thread, and the
GUI thread polls ``progress`` and ``done`` from a timer and builds the nodes once the result is in. Cancel
sets an event that the engine checks before every slice batch, so it stops within one batch.
"""

from __future__ import annotations

import threading
from typing import Callable, Generic, TypeVar

from NeonatalLungSegLib.errors import Cancelled

T = TypeVar("T")
ProgressCallback = Callable[[float], None]
CancelCheck = Callable[[], bool]
Work = Callable[[ProgressCallback, CancelCheck], T]


class BackgroundJob(Generic[T]):
    """``work(progress, cancel)`` on a daemon thread; read ``progress``/``done``, then call ``result()``."""

    def __init__(self, work: Work, name: str = "NeonatalLungSeg job") -> None:
        self._work = work
        self._cancel = threading.Event()
        self._finished = threading.Event()
        self._progress = 0.0
        self._result: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> BackgroundJob[T]:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self._result = self._work(self._report, self._cancel.is_set)
            if self._cancel.is_set():
                # Cancelled after the last checkpoint: the caller asked for nothing, so deliver nothing.
                raise Cancelled("cancelled; nothing was changed")
        except BaseException as error:  # delivered to the GUI thread by result()
            self._error = error
        finally:
            self._progress = 1.0 if self._error is None else self._progress
            self._finished.set()

    def _report(self, fraction: float) -> None:
        self._progress = min(max(float(fraction), 0.0), 1.0)

    @property
    def progress(self) -> float:
        """Fraction done, 0..1, as last reported by the work."""
        return self._progress

    @property
    def done(self) -> bool:
        return self._finished.is_set()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    @property
    def cancelled(self) -> bool:
        return self.done and isinstance(self._error, Cancelled)

    def cancel(self) -> None:
        """Ask the work to stop at its next checkpoint; ``result()`` then raises ``Cancelled``."""
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until done (or ``timeout`` seconds); True when done. For scripts and tests, not the GUI."""
        return self._finished.wait(timeout)

    def result(self) -> T:
        """The work's return value; re-raises its exception (``Cancelled`` after a cancel)."""
        if not self.done:
            raise RuntimeError("the job is still running")
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[return-value]
