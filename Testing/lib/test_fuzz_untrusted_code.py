"""Issue 30, second hardening round: nothing runs that the user did not install, and the click and worker inputs
are bounded. Each test reproduces a case that broke on the code before the fix.

- a TorchScript or OpenVINO file in the user's cache folder is never loaded (it is code anyone could replace);
- a worker request cannot name code to run (loaders are fixed when the worker starts);
- JSON from outside (clicks files, worker lines) is read with a size bound, from regular files only, with
  bounded nesting and finite numbers;
- `refine` never writes its report over its labels, and finds its own bundled model without `--model`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import REPO
from fuzz_helpers import assert_one_error_line, run, write_volume
from NeonatalLungSegLib.cli.main import main
from NeonatalLungSegLib.correction.clicks import MAX_CLICKS, click_from_dict, read_clicks
from NeonatalLungSegLib.errors import InputError
from NeonatalLungSegLib.geometry import Geometry
from NeonatalLungSegLib.json_input import MAX_DEPTH, parse_json, read_json_file
from NeonatalLungSegLib.models.model_folder import read_config
from NeonatalLungSegLib.worker import protocol as wp
from NeonatalLungSegLib.worker.server import DEFAULT_LOADER, Worker, parse_arguments

import worker_fakes

HERE = Path(__file__).resolve().parent
BUNDLED_SAMPLE = REPO / "Resources" / "Sample" / "sample-neonatal-chest.nii.gz"
BUNDLED_MODEL = REPO / "Resources" / "Models" / "neonatal-lung-unet-r50"
GEOMETRY = Geometry(size=(32, 40, 8), spacing=(0.9, 0.8, 2.0), origin=(1.0, 2.0, 3.0),
                    direction=(1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))


# --- 1. no network from the user's cache folder ----------------------------------------------------------

def _old_cache_name(config) -> str:
    """Where the removed traced-network cache looked for a model's network (its naming, kept here only so the
    test plants a file exactly where the old code would have loaded it)."""
    import torch

    described = json.dumps({"network": config.to_dict()["network"], "channels": config.input.channels,
                            "size": list(config.input.in_plane_size), "torch": torch.__version__}, sort_keys=True)
    extra = hashlib.sha256(described.encode()).hexdigest()[:12]
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in config.name)
    return f"{name}-{config.weights_sha256}-{extra}.pt"


def test_a_network_planted_in_the_cache_folder_never_runs(tmp_path: Path, tiny_model_folder: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture) -> None:
    """A TorchScript file that answers "everything is lung", put where a cache would be, changes nothing."""
    import torch

    class EverythingIsLung(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.full((x.shape[0], 1, x.shape[2], x.shape[3]), 30.0)

    source = write_volume(tmp_path / "case.nii.gz")
    clean = tmp_path / "clean"
    assert main(["segment", str(source), "-o", str(clean), "--model", str(tiny_model_folder), "--device", "cpu",
                 "--precision", "fp32"]) == 0
    name = _old_cache_name(read_config(tiny_model_folder))
    for folder in (tmp_path / "env-cache", tmp_path / "xdg" / "neonatal-lung-seg" / "networks"):
        folder.mkdir(parents=True)
        torch.jit.script(EverythingIsLung()).save(str(folder / name))
    monkeypatch.setenv("NEONATAL_LUNG_SEG_CACHE", str(tmp_path / "env-cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    planted = tmp_path / "planted"
    assert main(["segment", str(source), "-o", str(planted), "--model", str(tiny_model_folder), "--device", "cpu",
                 "--precision", "fp32"]) == 0
    read = lambda folder: sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "case_lungs.nii.gz")))  # noqa: E731
    labels = read(planted)
    assert np.count_nonzero(labels) < labels.size  # not "everything is lung"
    assert np.array_equal(labels, read(clean))


def test_the_int8_path_keeps_no_compiled_network_in_any_cache_folder(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenVINO's compiled blob would be a network no one verifies on the next run: nothing is written."""
    from NeonatalLungSegLib.inference.engine import Segmenter
    from NeonatalLungSegLib.models.int8_network import unavailable_reason

    reason = unavailable_reason(BUNDLED_MODEL, read_config(BUNDLED_MODEL))
    if reason:
        pytest.skip(reason)
    monkeypatch.setenv("NEONATAL_LUNG_SEG_CACHE", str(tmp_path / "env-cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    try:
        segmenter = Segmenter.load(BUNDLED_MODEL, device="cpu", precision="int8")
    except Exception as error:  # noqa: BLE001 - a CPU without VNNI refuses int8 with a reason
        pytest.skip(f"int8 cannot run here: {error}")
    assert segmenter.precision == "int8"
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written == []


# --- 2. worker requests name data, never code -------------------------------------------------------------

def _serve(lines: list[str], loaders: tuple[str, ...] = ()) -> list[dict]:
    events = io.StringIO()
    Worker(events, loaders).serve(io.StringIO("".join(lines)))
    return [wp.decode(line) for line in events.getvalue().splitlines()]


def _segment_request(tmp_path: Path, model: Path, loader: str) -> str:
    array = np.zeros(GEOMETRY.array_shape, np.int16)
    np.save(tmp_path / "input.npy", array)
    return wp.encode(wp.make_message("segment", id="r1", input=str(tmp_path / "input.npy"),
                                     geometry=wp.geometry_to_json(GEOMETRY), model=str(model), device="cpu",
                                     output=str(tmp_path / "out"), loader=loader))


@pytest.mark.parametrize("loader", ["shutil:rmtree", "os:execl", "worker_fakes:load"])
def test_a_request_cannot_name_a_loader_the_worker_was_not_started_with(tmp_path: Path, loader: str) -> None:
    victim = tmp_path / "model-folder"
    victim.mkdir()
    (victim / "keep.txt").write_text("the user's file")
    got = _serve([_segment_request(tmp_path, victim, loader), wp.encode(wp.make_message("shutdown"))])
    assert [e["type"] for e in got] == ["hello", "error", "bye"]
    assert got[1]["error_type"] == "ProtocolError" and "was not given when this worker started" in got[1]["message"]
    assert (victim / "keep.txt").read_text(encoding="utf-8") == "the user's file"


def test_a_loader_given_at_start_is_used(tmp_path: Path) -> None:
    sys.path.insert(0, str(HERE))
    got = _serve([_segment_request(tmp_path, tmp_path, "worker_fakes:load"), wp.encode(wp.make_message("shutdown"))],
                 worker_fakes.LOADERS)
    kinds = [e["type"] for e in got]
    assert kinds[:3] == ["hello", "loading", "loaded"] and kinds[-2:] == ["result", "bye"]


def test_worker_command_line_fixes_the_loaders() -> None:
    assert parse_arguments(["events.jsonl"]) == ("events.jsonl", ())
    assert parse_arguments(["events.jsonl", "--loader", "a.b:c", "--loader", "d:e"]) == ("events.jsonl",
                                                                                         ("a.b:c", "d:e"))
    assert parse_arguments(["events.jsonl", "--loader"]) is None
    assert parse_arguments(["--loader", "a:b"]) is None
    assert parse_arguments([]) is None
    assert DEFAULT_LOADER.endswith(":load_segmenter")


@pytest.mark.parametrize("line", [
    "[" * 100_000 + "]" * 100_000 + "\n",                        # RecursionError in json: killed the worker
    '{"protocol": 1, "type": "segment", "a": ' + "[" * 5000 + "]" * 5000 + "}\n",
    '{"protocol": NaN, "type": "shutdown"}\n',                    # not JSON anywhere else
    "x" * (wp.MAX_LINE_CHARS + 10) + "\n",                        # longer than any message
])
def test_bad_worker_lines_are_answered_and_the_worker_serves_on(line: str) -> None:
    got = _serve([line, wp.encode(wp.make_message("shutdown"))])
    assert [e["type"] for e in got] == ["hello", "error", "bye"]
    assert got[1]["error_type"] == "ProtocolError"


def test_a_worker_line_without_end_is_not_kept_whole_in_memory() -> None:
    """A line longer than the bound is read on in pieces and refused; the next request is still served."""
    from NeonatalLungSegLib.worker.server import bounded_lines

    stream = io.StringIO("y" * (3 * wp.MAX_LINE_CHARS) + "\n" + '{"next": 1}\n')
    lines = list(bounded_lines(stream, wp.MAX_LINE_CHARS))
    assert len(lines) == 2 and len(lines[0]) == wp.MAX_LINE_CHARS + 1 and lines[1] == '{"next": 1}\n'


# --- 3. JSON files: bounded, regular, strict --------------------------------------------------------------

def test_strict_json_refuses_nan_infinity_and_deep_nesting() -> None:
    for text in ('{"a": NaN}', '{"a": -Infinity}', "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)):
        with pytest.raises(ValueError):
            parse_json(text, "test")
    assert parse_json('{"a": [1, 2.5, "x"]}', "test") == {"a": [1, 2.5, "x"]}
    assert parse_json('{"s": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}', "t")


def test_clicks_from_dev_zero_are_refused_without_reading_it() -> None:
    started = time.perf_counter()
    with pytest.raises(InputError, match="not a regular file"):
        read_clicks(Path("/dev/zero"), GEOMETRY)
    assert time.perf_counter() - started < 5  # refused from its type, not after reading (no wall-clock claim)


def test_clicks_from_a_fifo_are_refused_instead_of_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "clicks.json"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        read_clicks(fifo, GEOMETRY)


def test_a_clicks_file_too_large_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "clicks.json"
    path.write_text('{"clicks": [' + ", ".join(['{"index": [1, 1, 1], "sign": "+"}'] * 40_000) + "]}")
    with pytest.raises(InputError, match="bytes"):
        read_clicks(path, GEOMETRY)
    with pytest.raises(InputError, match="bytes"):
        read_json_file(path, max_bytes=100)


@pytest.mark.parametrize("click, problem", [
    ({"index": [10 ** 400, 0, 0], "sign": "+"}, "outside the volume"),
    ({"index": [1, 1, 1], "sign": "+", "lung": ["right"]}, "'lung'"),
    ({"index": [1, 1, 1], "sign": ["+"]}, "'sign'"),
    ({"index": [1, 1, 1], "sign": {"+": 1}}, "'sign'"),
    ({"point": [1e308, 1e308, 1e308], "sign": "-"}, "outside the volume"),
    ({"index": "1,1,1", "sign": "+"}, "three finite numbers"),
    ({"point": {"x": 1}, "sign": "+"}, "three finite numbers"),
])
def test_click_fields_of_the_wrong_type_or_size_are_one_line(click: dict, problem: str) -> None:
    with pytest.raises(InputError, match=problem):
        click_from_dict(click, GEOMETRY)


def test_at_most_max_clicks_per_file(tmp_path: Path) -> None:
    path = tmp_path / "clicks.json"
    path.write_text(json.dumps({"clicks": [{"index": [1, 1, 1], "sign": "+"}] * (MAX_CLICKS + 1)}))
    with pytest.raises(InputError, match=f"at most {MAX_CLICKS}"):
        read_clicks(path, GEOMETRY)
    path.write_text(json.dumps({"clicks": [{"index": [1, 1, 1], "sign": "+"}] * MAX_CLICKS}))
    assert len(read_clicks(path, GEOMETRY)) == MAX_CLICKS


# --- 4. refine's outputs and its default model ------------------------------------------------------------

def _refine_inputs(tmp_path: Path) -> tuple[Path, Path, Path]:
    scan = write_volume(tmp_path / "scan.nii.gz")
    labels_image = sitk.ReadImage(str(scan), sitk.sitkUInt8) * 0
    labels = tmp_path / "labels.nii.gz"
    sitk.WriteImage(labels_image, str(labels))
    clicks = tmp_path / "clicks.json"
    clicks.write_text(json.dumps({"clicks": [{"index": [4, 20, 8], "sign": "+"}]}))
    return scan, labels, clicks


def test_refine_never_writes_its_report_over_its_labels(tmp_path: Path, tiny_refine_folder: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    scan, labels, clicks = _refine_inputs(tmp_path)
    target = tmp_path / "fixed.nii.gz"
    code, _, err = run(["refine", scan, "--labels", labels, "--clicks", clicks, "-o", target, "--report", target,
                        "--model", tiny_refine_folder], capsys)
    assert_one_error_line(code, err, "report")
    assert not target.exists()


def test_refine_without_model_uses_the_bundled_refine_model(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The main parser used to fill in the *segmentation* model for every subcommand, so `refine` without
    --model always failed (a segmentation model is no click-refinement model)."""
    scan, labels, clicks = _refine_inputs(tmp_path)
    target = tmp_path / "fixed.nii.gz"
    code = main(["refine", str(scan), "--labels", str(labels), "--clicks", str(clicks), "-o", str(target),
                 "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    assert target.is_file()
