"""Issue 29: a worker that stops answering is noticed, a dead one is described with its own PID and the
possible cause, and no request or session files outlive their use (real worker processes, fake segmenters)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from NeonatalLungSegLib.geometry import Geometry
from NeonatalLungSegLib.worker import protocol as wp
from NeonatalLungSegLib.worker.client import WorkerClient
from NeonatalLungSegLib.worker.process import (LEGACY_AGE_SECONDS, OWNER_NAME, SESSION_PREFIX, pid_alive,
                                               sweep_stale_sessions)

import worker_fakes

HERE = Path(__file__).resolve().parent


def volume():
    array = np.full((6, 12, 16), 20, np.int16)
    array[1:5, 3:9, 2:14] = 200
    return array, Geometry(size=(16, 12, 6), spacing=(0.8, 0.8, 1.5), origin=(0.0, 0.0, 0.0),
                           direction=(1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))


@pytest.fixture
def client(tmp_path):
    c = WorkerClient(extra_paths=[HERE], session_dir=tmp_path / "session", loaders=worker_fakes.LOADERS)
    yield c
    c.close(timeout=2)


def _wait(condition, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.05)


def test_a_busy_worker_beats_and_a_stopped_one_falls_silent(client, tmp_path):
    array, geometry = volume()
    job = client.submit(array, geometry, tmp_path, device="cpu", loader="worker_fakes:load_gated")
    _wait(lambda: job.poll() or (tmp_path / "grandchild.pid").exists())
    beats = lambda: client.events_path.read_text(encoding="utf-8").count('"heartbeat"')  # noqa: E731
    _wait(lambda: beats() >= 2, seconds=30)  # the work is gated: only heartbeats say it is alive
    client.poll()
    assert client.silent_for() < 10 * wp.HEARTBEAT_SECONDS
    assert not any(e["type"] == "heartbeat" for e in job.events)  # liveness is not a job event
    os.kill(client.worker_pid, signal.SIGSTOP)  # hung: no events, no heartbeats
    try:
        _wait(lambda: (client.poll(), client.silent_for())[1] > 3 * wp.HEARTBEAT_SECONDS, seconds=30)
        assert not job.done  # silent, not dead: the panel asks whether to cancel
    finally:
        os.kill(client.worker_pid, signal.SIGCONT)
    (tmp_path / "gate").write_text("go")
    assert job.wait(60) and job.result().labels.shape == array.shape


def test_a_worker_exiting_without_error_names_its_pid_and_memory(client, tmp_path):
    array, geometry = volume()
    job = client.submit(array, geometry, tmp_path, device="cpu", loader="worker_fakes:load_exiting")
    assert job.wait(60)
    with pytest.raises(wp.WorkerError) as caught:
        job.result()
    message = str(caught.value)
    assert "status 1" in message and "may have run out of memory" in message
    assert f"PID {client.hello['pid']}" in message


def test_a_failed_request_leaves_no_files_and_a_cancelled_one_neither(client, tmp_path):
    array, geometry = volume()
    failed = client.submit(array, geometry, tmp_path, device="cpu", loader="worker_fakes:load_failing")
    assert failed.wait(60)
    with pytest.raises(wp.WorkerError):
        failed.result()
    assert not (client.session / failed.id).exists()
    gated = client.submit(array, geometry, tmp_path, device="cpu", loader="worker_fakes:load_gated")
    _wait(lambda: (tmp_path / "grandchild.pid").exists())
    gated.cancel()
    assert not (client.session / gated.id).exists()


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(done.stdout)
    assert not pid_alive(pid)
    return pid


def test_session_folders_of_dead_owners_are_swept_and_live_ones_kept(tmp_path):
    def session(name: str, owner: int | None, age: float = 0.0) -> Path:
        folder = tmp_path / f"{SESSION_PREFIX}{name}"
        (folder / "r1").mkdir(parents=True)
        (folder / "r1" / "input.npy").write_bytes(b"x" * 100)
        if owner is not None:
            (folder / OWNER_NAME).write_text(json.dumps({"pid": owner}))
        if age:
            old = time.time() - age
            os.utime(folder, (old, old))
        return folder

    dead = session("dead", _dead_pid())
    alive = session("alive", os.getpid())
    legacy_old = session("legacy-old", None, age=LEGACY_AGE_SECONDS + 60)
    legacy_new = session("legacy-new", None)
    other = tmp_path / "not-ours"
    other.mkdir()
    removed = sweep_stale_sessions(tmp_path)
    assert sorted(removed) == sorted([dead, legacy_old])
    assert alive.exists() and legacy_new.exists() and other.exists()


def test_a_new_client_sweeps_what_a_crashed_host_left(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    crashed = tmp_path / f"{SESSION_PREFIX}crashed"
    crashed.mkdir()
    (crashed / OWNER_NAME).write_text(json.dumps({"pid": _dead_pid()}))
    client = WorkerClient(extra_paths=[HERE], loaders=worker_fakes.LOADERS)
    try:
        assert not crashed.exists()
        assert client.session.parent == tmp_path
        client.start()
        assert json.loads((client.session / OWNER_NAME).read_text(encoding="utf-8"))["pid"] == os.getpid()
    finally:
        client.close(timeout=2)
    assert not client.session.exists()
