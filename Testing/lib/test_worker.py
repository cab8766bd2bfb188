"""The inference worker process and its protocol: schema and versions, model reuse, cancel, a dying worker.

The process tests start real worker processes with fake segmenters (``worker_fakes.py``: no torch, about a
second to start); one test runs the real engine with the tiny model. The GIL-holding host test that runs the
bundled model through the Slicer module is in Testing/slicer/test_gil_host.py.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
import pytest

from NeonatalLungSegLib.worker import protocol as wp
from NeonatalLungSegLib.errors import Cancelled
from NeonatalLungSegLib.geometry import Geometry
from NeonatalLungSegLib.worker.server import Worker, describe_error
from NeonatalLungSegLib.worker.client import WorkerClient, describe_exit

import worker_fakes

HERE = Path(__file__).resolve().parent
FAKES = "worker_fakes"


def volume():
    array = np.full((6, 12, 16), 20, np.int16)
    array[1:5, 3:9, 2:7] = 200
    array[1:5, 3:9, 9:14] = 200
    geometry = Geometry(size=(16, 12, 6), spacing=(0.8, 0.8, 1.5), origin=(0.0, 0.0, 0.0),
                        direction=(1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
    return array, geometry


@pytest.fixture
def client(tmp_path):
    made = []

    def make():
        c = WorkerClient(extra_paths=[HERE], session_dir=tmp_path / f"session{len(made)}",
                         loaders=worker_fakes.LOADERS)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close(timeout=2)


# --- the protocol -----------------------------------------------------------------------------------------

def test_messages_carry_version_type_and_required_fields():
    message = wp.make_message("progress", id="r1", fraction=0.5)
    assert message["protocol"] == wp.PROTOCOL_VERSION and message["type"] == "progress"
    line = wp.encode(message)
    assert line.endswith("\n") and "\n" not in line[:-1]
    assert wp.decode(line)["fraction"] == 0.5
    assert set(wp.REQUIRED_FIELDS) == set(wp.REQUEST_TYPES) | set(wp.EVENT_TYPES)


@pytest.mark.parametrize("line, problem", [
    ('{"protocol": 2, "type": "progress", "id": "r1", "fraction": 0.5}', "version 2 is not supported"),
    ('{"type": "progress", "id": "r1", "fraction": 0.5}', "version None"),
    ('{"protocol": 1, "type": "explode"}', "unknown message type"),
    ('{"protocol": 1, "type": "progress", "id": "r1"}', "field 'fraction'"),
    ('{"protocol": 1, "type": "progress", "id": "r1", "fraction": true}', "field 'fraction'"),
    ('{"protocol": 1, "type": "result", "id": "r1"}', "field 'labels'"),
    ('[1, 2]', "JSON object"),
    ('not json', "not JSON"),
])
def test_bad_messages_are_refused_with_the_reason(line, problem):
    with pytest.raises(wp.ProtocolError, match=problem):
        wp.decode(line)


def test_geometry_options_and_confidence_round_trip():
    from NeonatalLungSegLib.inference.confidence import measure_confidence
    from NeonatalLungSegLib.inference.postprocess import PostprocessOptions

    array, geometry = volume()
    assert wp.geometry_from_json(json.loads(json.dumps(wp.geometry_to_json(geometry)))) == geometry
    options = PostprocessOptions(fill_holes=False)
    assert wp.options_from_json(wp.options_to_json(options)) == options and wp.options_from_json(None) is None
    confidence = measure_confidence(np.where(array > 150, 0.9, 0.1).astype(np.float32), geometry)
    assert wp.confidence_from_json(json.loads(json.dumps(wp.confidence_to_json(confidence)))) == confidence


def test_worker_loop_answers_bad_lines_and_keeps_serving(tmp_path):
    """In-process: a bad line, an unknown request and a failing load each give one error event, then bye."""
    events = io.StringIO()
    array, geometry = volume()
    np.save(tmp_path / "input.npy", array)
    segment = wp.make_message("segment", id="r1", input=str(tmp_path / "input.npy"),
                              geometry=wp.geometry_to_json(geometry), model=str(tmp_path), device="cpu",
                              output=str(tmp_path / "out"), loader=f"{FAKES}:load_failing")
    requests = io.StringIO("garbage\n" + wp.encode(wp.make_message("hello", pid=1, python="x"))
                           + wp.encode(segment) + wp.encode(wp.make_message("shutdown")))
    import sys

    sys.path.insert(0, str(HERE))
    Worker(events, worker_fakes.LOADERS).serve(requests)
    kinds = [wp.decode(line) for line in events.getvalue().splitlines()]
    assert [k["type"] for k in kinds] == ["hello", "error", "error", "loading", "error", "bye"]
    assert "not JSON" in kinds[1]["message"] and "does not accept 'hello'" in kinds[2]["message"]
    assert kinds[4]["id"] == "r1" and "ran out of memory" in kinds[4]["message"]


def test_error_and_exit_descriptions():
    assert "ran out of memory" in describe_error(RuntimeError("CUDA out of memory. Tried to allocate 1 GiB"))
    assert describe_error(ValueError("bad input")) == "bad input"
    assert "SIGKILL" in describe_exit(-9) and "memory" in describe_exit(-9)
    assert describe_exit(3) == "exited with status 3"


# --- the process ------------------------------------------------------------------------------------------

def test_second_segment_reuses_the_loaded_model_in_the_same_process(client, tmp_path):
    c = client()
    array, geometry = volume()
    first = c.submit(array, geometry, tmp_path, device="cpu", loader=f"{FAKES}:load")
    assert first.wait(60), first.status
    one = first.result()
    second = c.submit(array, geometry, tmp_path, device="cpu", loader=f"{FAKES}:load")
    assert second.wait(60)
    two = second.result()
    assert one.pid == two.pid == c.pid and c.hello["pid"] == c.pid
    assert (one.load_count, two.load_count) == (1, 1)  # loaded once, reused
    assert (tmp_path / "loads").read_text(encoding="utf-8").split() == [str(c.pid)]
    assert [e["type"] for e in first.events][:2] == ["loading", "loaded"]
    assert not any(e["type"] == "loading" for e in second.events)
    assert [e["fraction"] for e in second.events if e["type"] == "progress"][-1] == 1.0
    assert np.array_equal(two.labels == 1, (array > 150) & (np.arange(16) < 8)[None, None, :])
    assert two.probabilities.dtype == np.float32 and two.confidence is not None
    assert two.model["name"] == "fake-threshold-model" and set(two.volumes) >= {"right_lung", "left_lung", "total"}
    assert not (c.session / first.id).exists() and not (c.session / second.id).exists()  # no files left behind


def test_cancel_kills_the_whole_process_tree_at_once(client, tmp_path):
    c = client()
    array, geometry = volume()
    job = c.submit(array, geometry, tmp_path, device="cpu", loader=f"{FAKES}:load_gated")
    deadline = time.monotonic() + 60
    while not (tmp_path / "grandchild.pid").exists():
        assert time.monotonic() < deadline and not job.poll(), job.status
        time.sleep(0.05)
    grandchild = int((tmp_path / "grandchild.pid").read_text(encoding="utf-8"))
    worker = c.pid
    assert worker_fakes.pid_alive(worker) and worker_fakes.pid_alive(grandchild)
    job.cancel()  # one call, from the GUI's timer: no waiting for the work to reach a checkpoint
    assert job.done and job.cancelled
    assert not worker_fakes.pid_alive(worker)
    deadline = time.monotonic() + 2
    while worker_fakes.pid_alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not worker_fakes.pid_alive(grandchild)
    with pytest.raises(Cancelled):
        job.result()
    with pytest.raises(wp.WorkerError, match="stopped"):
        c.submit(array, geometry, tmp_path, loader=f"{FAKES}:load")


def test_a_worker_that_dies_gives_one_clear_error(client, tmp_path):
    c = client()
    array, geometry = volume()
    job = c.submit(array, geometry, tmp_path, device="cpu", loader=f"{FAKES}:load_dying")
    assert job.wait(60)
    with pytest.raises(wp.WorkerError) as caught:
        job.result()
    message = str(caught.value)
    assert f"PID {c.pid}" in message and "SIGKILL" in message and "nothing was changed" in message


def test_an_error_in_the_worker_is_reported_and_the_worker_serves_on(client, tmp_path):
    c = client()
    array, geometry = volume()
    job = c.submit(array, geometry, tmp_path, device="cpu", loader=f"{FAKES}:load_failing")
    assert job.wait(60)
    with pytest.raises(wp.WorkerError, match="ran out of memory"):
        job.result()
    again = c.submit(array, geometry, tmp_path, device="cpu", loader=f"{FAKES}:load")
    assert again.wait(60) and again.result().load_count == 1 and c.alive


def test_real_engine_in_the_worker_matches_in_process(client, tiny_model_folder):
    """The default loader (the engine) in the worker gives the labels the engine gives in this process."""
    from NeonatalLungSegLib.inference.engine import Segmenter

    c = client()
    array, geometry = volume()
    job = c.submit(array.astype(np.float32), geometry, tiny_model_folder, device="cpu")
    assert job.wait(120), job.status
    result = job.result()
    here = Segmenter.load(tiny_model_folder, device="cpu").segment_array(array.astype(np.float32), geometry,
                                                                         with_probabilities=True)
    assert np.array_equal(result.labels, here.labels)
    assert np.allclose(result.probabilities, here.probabilities, atol=1e-5)
    assert result.model["name"] == "tiny-test-model" and result.load_count == 1
    c.close()
    assert not c.alive and not c.session.exists()


def test_a_reused_session_folder_never_answers_with_an_earlier_workers_events(tmp_path):
    """Found by hand: a client started in a session folder left by a crashed run read that run's events and
    answered its new request r1 with the old run's error for r1."""
    session = tmp_path / "session"
    session.mkdir()
    stale = wp.make_message("error", id="r1", error_type="ModelFolderError", message="stale: from an earlier run")
    (session / "events.jsonl").write_text(wp.encode(stale), encoding="utf-8")
    c = WorkerClient(extra_paths=[HERE], session_dir=session, loaders=worker_fakes.LOADERS)
    try:
        array, geometry = volume()
        job = c.submit(array, geometry, tmp_path, device="cpu", loader=f"{FAKES}:load")
        assert job.wait(60), job.status
        assert job.id == "r1" and job.result().model["name"] == "fake-threshold-model"
    finally:
        c.close(timeout=2)
    assert session.is_dir()  # the caller's folder: the client removes only a folder it made itself
