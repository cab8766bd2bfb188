"""A host that holds Python's GIL between timer ticks, as 3D Slicer's main thread does.

In Slicer the main thread owns the GIL while Qt's event loop idles (PythonQt's thread support is off and
Slicer never releases it), so another Python thread of the process runs only while the main thread runs
Python, e.g. inside a QTimer slot. ``ctypes.PyDLL`` calls C functions *without* releasing the GIL, so
``usleep`` through it is an idle event loop that keeps the GIL, exactly the situation that starves a
worker thread. The ordinary stand-in timer (fired by hand after ``job.wait()``, which releases the GIL)
cannot show this; this loop can.

Completion is counted in ticks (timer firings), not seconds: the count is what the host imposes.
"""

from __future__ import annotations

import ctypes
from typing import Callable

_LIBC = ctypes.PyDLL(None)  # PyDLL: the GIL stays held during the call
TICK_MICROSECONDS = 100_000


class TickBoundExceeded(AssertionError):
    """The work did not finish within the allowed number of ticks."""

    def __init__(self, ticks: int, state: str) -> None:
        super().__init__(f"not finished after {ticks} ticks of {TICK_MICROSECONDS // 1000} ms ({state})")
        self.ticks = ticks
        self.state = state


def idle_holding_gil(microseconds: int = TICK_MICROSECONDS) -> None:
    _LIBC.usleep(ctypes.c_uint(microseconds))


def run_ticks(fire: Callable[[], None], finished: Callable[[], bool], max_ticks: int,
              state: Callable[[], str] = lambda: "") -> int:
    """Idle (GIL held) for one tick, fire the timer, repeat until ``finished()``; returns the tick count.

    Raises TickBoundExceeded when ``max_ticks`` ticks were not enough.
    """
    for tick in range(1, max_ticks + 1):
        idle_holding_gil()
        fire()
        if finished():
            return tick
    raise TickBoundExceeded(max_ticks, state())
