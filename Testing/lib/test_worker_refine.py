"""Click refinement through the worker process (``refine_start`` / ``refine``), with a tiny REAL refine model.

The same persistent worker serves Segment and clicks: the refine model is loaded once and cached, a volume is
prepared once per session, and each click answers with exactly the labels the engine gives in this process.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from NeonatalLungSegLib.worker import protocol as wp
from NeonatalLungSegLib.correction.clicks import Click
from NeonatalLungSegLib.geometry import Geometry
from NeonatalLungSegLib.correction.refine import Refiner
from NeonatalLungSegLib.worker.server import Worker
from NeonatalLungSegLib.worker.client import WorkerClient
from NeonatalLungSegLib.worker.refine_jobs import ClickResult, RefineReady


def volume():
    """Two bright blocks (right lung at low i, left at high i) and labels with a piece of the right one missing."""
    image = np.full((8, 24, 32), 0.2, np.float32)
    labels = np.zeros(image.shape, np.uint8)
    image[1:7, 6:18, 3:13] = 1.0
    labels[1:7, 6:18, 3:13] = 1
    image[1:7, 6:18, 19:29] = 1.0
    labels[1:7, 6:18, 19:29] = 2
    labels[3:5, 6:18, 3:13] = 0
    geometry = Geometry(size=(32, 24, 8), spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0),
                        direction=(1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
    return image, labels, geometry


def carried_into_tissue():
    """Dark lungs in bright tissue and labels whose right lung runs into the tissue below it: a negative click
    there is where the image-contrast rule widens the network's region (contrast_region.py)."""
    image = np.zeros((12, 40, 40), np.float32)
    image[:, 4:38, 2:38] = 1.0
    truth = np.zeros(image.shape, np.uint8)
    truth[2:10, 12:28, 5:17] = 1
    truth[2:10, 12:28, 23:35] = 2
    image[truth > 0] = 0.1
    labels = truth.copy()
    labels[3:9, 28:33, 5:17] = 1
    geometry = Geometry(size=(40, 40, 12), spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0),
                        direction=(1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
    return image, labels, geometry, Click((6, 30, 10), False)


@pytest.fixture
def client(tmp_path):
    c = WorkerClient(session_dir=tmp_path / "session")
    yield c
    c.close(timeout=2)


def test_refine_messages_have_a_schema():
    start = wp.make_message("refine_start", id="r1", session="s1", input="x.npy", geometry={}, model="m",
                            device="cpu")
    assert wp.decode(wp.encode(start))["session"] == "s1"
    click = wp.make_message("refine", id="r2", session="s1", labels="l.npy", click={"index": [1, 2, 3], "sign": "+"},
                            output="out")
    assert wp.decode(wp.encode(click))["click"]["sign"] == "+"
    with pytest.raises(wp.ProtocolError, match="field 'click'"):
        wp.decode('{"protocol": 1, "type": "refine", "id": "r", "session": "s", "labels": "l", "output": "o"}')
    with pytest.raises(wp.ProtocolError, match="field 'session'"):
        wp.make_message("ready", id="r1", model_info={}, load_count=1, pid=1, seconds=0.1)


def test_worker_loop_refuses_a_click_without_session_and_a_bad_click(tmp_path, tiny_refine_folder):
    """In-process: one clear error event each, and the worker serves on."""
    image, labels, geometry = volume()
    np.save(tmp_path / "input.npy", image)
    np.save(tmp_path / "labels.npy", labels)
    start = wp.make_message("refine_start", id="r1", session="s1", input=str(tmp_path / "input.npy"),
                            geometry=wp.geometry_to_json(geometry), model=str(tiny_refine_folder), device="cpu")
    orphan = wp.make_message("refine", id="r0", session="nope", labels=str(tmp_path / "labels.npy"),
                             click={"index": [4, 10, 8], "sign": "+"}, output=str(tmp_path / "o0"))
    outside = wp.make_message("refine", id="r2", session="s1", labels=str(tmp_path / "labels.npy"),
                              click={"index": [40, 10, 8], "sign": "+"}, output=str(tmp_path / "o2"))
    good = wp.make_message("refine", id="r3", session="s1", labels=str(tmp_path / "labels.npy"),
                           click={"index": [4, 10, 8], "sign": "+", "lung": "right"}, output=str(tmp_path / "o3"))
    events = io.StringIO()
    Worker(events).serve(io.StringIO("".join(wp.encode(m) for m in (orphan, start, outside, good))))
    got = [wp.decode(line) for line in events.getvalue().splitlines()]
    assert [e["type"] for e in got] == ["hello", "error", "loading", "loaded", "ready", "error", "result", "bye"]
    assert "no refine session 'nope'" in got[1]["message"] and "refine_start" in got[1]["message"]
    assert "outside the volume" in got[5]["message"] and got[5]["id"] == "r2"
    result = got[6]
    assert result["outcome"]["lung"] == "right_lung" and result["session"] == "s1"
    assert set(result["outcome"]) == {"lung", "positive", "changed_voxels", "slices_run", "seconds", "fallback",
                                      "message", "image_contrast", "rim_peel"}


def test_clicks_in_the_worker_process_match_the_engine_and_share_the_segment_worker(
        client, tiny_refine_folder, tiny_model_folder):
    image, labels, geometry = volume()
    # Segment first: the refine requests go to the very same process.
    segment = client.submit(image, geometry, tiny_model_folder, device="cpu")
    assert segment.wait(180), segment.status
    segmented = segment.result()
    start = client.start_refine(image, geometry, tiny_refine_folder, device="cpu")
    assert start.wait(180), start.status
    ready = start.result()
    assert isinstance(ready, RefineReady) and ready.pid == segmented.pid == client.pid
    assert ready.load_count == 2 and ready.model["name"] == "tiny-test-model"
    assert ready.label_names == {"right_lung": 1, "left_lung": 2}
    assert not (client.session / start.id).exists()  # the input file is gone once the volume is prepared

    clicks = [Click((4, 10, 8), True, "right_lung"), Click((2, 12, 24), False)]
    engine = Refiner.load(tiny_refine_folder, device="cpu").session(image, geometry)
    current, expected = labels, labels
    for click in clicks:
        job = client.submit_click(ready.session, current, geometry, click)
        assert job.wait(120), job.status
        result = job.result()
        expected, outcome = engine.apply(expected, click)
        assert isinstance(result, ClickResult)
        np.testing.assert_array_equal(result.labels, expected)  # the session remembered the earlier click
        assert (result.lung, result.positive, result.changed_voxels) == (outcome.lung, outcome.positive,
                                                                           outcome.changed_voxels)
        assert result.message and result.pid == client.pid and result.load_count == 2
        assert result.volumes["total"]["voxels"] == int(np.count_nonzero(result.labels))
        assert not (client.session / job.id).exists()
        current = result.labels

    again = client.start_refine(image * 2, geometry, tiny_refine_folder, device="cpu")  # another volume
    assert again.wait(120)
    second = again.result()
    assert second.load_count == 2 and second.session != ready.session  # the model was not loaded again
    assert not any(e["type"] == "loading" for e in again.events)


def test_click_errors_are_one_line_and_the_worker_stays_up(client, tiny_refine_folder, tmp_path):
    image, labels, geometry = volume()
    bad = client.start_refine(image, geometry, tmp_path, device="cpu")  # not a model folder
    assert bad.wait(120)
    with pytest.raises(wp.WorkerError) as caught:
        bad.result()
    assert "\n" not in str(caught.value) and str(tmp_path) in str(caught.value)
    lost = client.submit_click("s-unknown", labels, geometry, Click((4, 10, 8), True))
    assert lost.wait(60)
    with pytest.raises(wp.WorkerError, match="refine_start"):
        lost.result()
    with pytest.raises(ValueError, match="does not match"):
        client.submit_click("s-unknown", labels[:2], geometry, Click((1, 1, 1), True))
    assert client.alive


def test_image_contrast_must_be_a_bool_and_a_bad_one_is_one_error(client, tiny_refine_folder):
    """A refine_start whose image_contrast is not a JSON bool is refused as a protocol error (one line), on
    either side: the client cannot build it, the worker answers a hand-written one and serves on."""
    fields = dict(id="r1", session="s1", input="x.npy", geometry={}, model="m", device="cpu")
    for good in (True, False):
        assert wp.decode(wp.encode(wp.make_message("refine_start", image_contrast=good, **fields)))[
            "image_contrast"] is good
    for bad in ("no", 0, 1, None):
        with pytest.raises(wp.ProtocolError, match="'image_contrast' of type bool"):
            wp.make_message("refine_start", image_contrast=bad, **fields)
    image, labels, geometry = volume()
    with pytest.raises(wp.ProtocolError, match="image_contrast"):
        client.start_refine(image, geometry, tiny_refine_folder, image_contrast="false")
    line = wp.encode(wp.make_message("refine_start", **fields)).replace('"device"', '"image_contrast":"false","device"')
    events = io.StringIO()
    Worker(events).serve(io.StringIO(line))
    got = [wp.decode(text) for text in events.getvalue().splitlines()]
    assert [e["type"] for e in got] == ["hello", "error", "bye"]
    assert got[1]["error_type"] == "ProtocolError" and "'image_contrast' of type bool" in got[1]["message"]
    assert "\n" not in got[1]["message"]


def test_the_image_contrast_switch_reaches_the_session_in_the_worker(client, tiny_refine_folder):
    """One worker, one volume, three sessions (default, on, off): a negative click on tissue the labels carried
    into is widened by the image contrast unless the session was started with image_contrast=False, and the
    labels are exactly the engine's with the same switch."""
    image, labels, geometry, click = carried_into_tissue()
    refiner = Refiner.load(tiny_refine_folder, device="cpu")
    for switch in (None, True, False):
        start = (client.start_refine(image, geometry, tiny_refine_folder, device="cpu") if switch is None else
                 client.start_refine(image, geometry, tiny_refine_folder, device="cpu", image_contrast=switch))
        assert start.wait(180), start.status
        job = client.submit_click(start.result().session, labels, geometry, click)
        assert job.wait(120), job.status
        result = job.result()
        expected, outcome = refiner.session(image, geometry, image_contrast=switch is not False).apply(labels, click)
        assert result.image_contrast is outcome.image_contrast is (switch is not False)
        assert ("image contrast" in result.message) is (switch is not False)
        np.testing.assert_array_equal(result.labels, expected)


def test_a_click_result_carries_every_field_of_the_engine_outcome():
    """ClickResult extends ClickOutcome, and the worker's JSON outcome comes back field for field, typed: a
    field added to the engine's outcome reaches the Slicer side without a second list to keep in step."""
    from dataclasses import asdict, fields

    from NeonatalLungSegLib.correction.clicks import ClickOutcome, outcome_fields

    outcome = ClickOutcome("left_lung", False, 42, 17, 0.25, fallback=True, message="m", image_contrast=True,
                           rim_peel=True)
    assert ClickOutcome(**outcome_fields(json.loads(json.dumps(asdict(outcome))))) == outcome
    assert {f.name for f in fields(ClickOutcome)} <= {f.name for f in fields(ClickResult)}
    assert outcome_fields({"positive": 1, "changed_voxels": "3"})["changed_voxels"] == 3   # cast, defaults
    assert outcome_fields({})["lung"] is None and outcome_fields({})["rim_peel"] is False
