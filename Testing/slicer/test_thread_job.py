"""thread_job (the former runner, kept as the GIL test's counter-example): work off the calling thread, progress,
a cancel that stops at the next check."""

from __future__ import annotations

import threading

import pytest

from NeonatalLungSegLib.errors import Cancelled
from thread_job import BackgroundJob


def test_result_and_progress_come_back():
    gate = threading.Event()

    def work(progress, cancel):
        progress(0.5)
        gate.wait(5)
        progress(1.0)
        return threading.current_thread().name

    job = BackgroundJob(work, name="worker").start()
    with pytest.raises(RuntimeError, match="still running"):
        job.result()
    gate.set()
    assert job.wait(5) and job.done and job.progress == 1.0
    assert job.result() == "worker" != threading.current_thread().name


def test_cancel_stops_at_the_next_check_and_raises_cancelled():
    batches = []
    started = threading.Event()
    release = threading.Event()

    def work(progress, cancel):
        for batch in range(100):
            if cancel():
                raise Cancelled("stopped")
            batches.append(batch)
            started.set()
            release.wait(5)
        return "finished"

    job = BackgroundJob(work).start()
    assert started.wait(5)
    job.cancel()
    release.set()
    assert job.wait(5) and job.cancelled and job.cancel_requested
    assert len(batches) == 1
    with pytest.raises(Cancelled):
        job.result()


def test_a_cancel_after_the_last_check_still_delivers_nothing_and_errors_propagate():
    job = BackgroundJob(lambda progress, cancel: "done")
    job.cancel()
    job.start().wait(5)
    with pytest.raises(Cancelled):
        job.result()
    failing = BackgroundJob(lambda progress, cancel: 1 / 0).start()
    failing.wait(5)
    with pytest.raises(ZeroDivisionError):
        failing.result()
