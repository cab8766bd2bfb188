"""Cancel on Windows (``process.kill_process_tree``), simulated here: ``taskkill /F /T`` runs without a console
window (Slicer is a GUI program, so a console program it starts flashes a window unless CREATE_NO_WINDOW is
given) and within a timeout, and a taskkill that fails or hangs still leaves the worker killed."""

from __future__ import annotations

import subprocess
import types

import pytest

from NeonatalLungSegLib.worker import process

CREATE_NO_WINDOW = 0x08000000  # Windows' value (subprocess defines it only there)


class FakeWorker:
    pid = 4242

    def __init__(self) -> None:
        self.killed = False
        self.waits = []

    def poll(self):
        return 1 if self.killed else None

    def kill(self) -> None:
        self.killed = True

    def wait(self, timeout=None):
        self.waits.append(timeout)
        if not self.killed:
            raise subprocess.TimeoutExpired("worker", timeout)
        return 1


@pytest.fixture
def windows(monkeypatch):
    monkeypatch.setattr(process, "os", types.SimpleNamespace(name="nt", killpg=None))
    monkeypatch.setattr(subprocess, "CREATE_NO_WINDOW", CREATE_NO_WINDOW, raising=False)
    calls = []
    return calls


def test_taskkill_runs_without_a_console_window_and_with_a_timeout(windows, monkeypatch):
    worker = FakeWorker()

    def run(command, **kwargs):
        windows.append((command, kwargs))
        worker.killed = True
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(process.subprocess, "run", run)
    process.kill_process_tree(worker)
    (command, kwargs), = windows
    assert command == ["taskkill", "/F", "/T", "/PID", "4242"]
    assert kwargs["creationflags"] & CREATE_NO_WINDOW
    assert 0 < kwargs["timeout"] <= 30 and kwargs["capture_output"] and not kwargs["check"]
    assert worker.killed


def test_a_hanging_taskkill_does_not_hang_cancel_and_the_worker_is_still_killed(windows, monkeypatch):
    worker = FakeWorker()

    def run(command, **kwargs):
        raise subprocess.TimeoutExpired(command, kwargs["timeout"])

    monkeypatch.setattr(process.subprocess, "run", run)
    process.kill_process_tree(worker)
    assert worker.killed and worker.waits[-1] == 5
