"""`neonatal-lung-seg refine` as a user meets it: clicks JSON in, corrected labels out, bad input refused
with one line and nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import tiny_config
from NeonatalLungSegLib.cli.main import main
from NeonatalLungSegLib.geometry import Geometry, array_to_image, image_to_array
from NeonatalLungSegLib.models.model_folder import write_model_folder
from NeonatalLungSegLib.models.network import build_network

GEOMETRY = Geometry((40, 48, 10), (0.9, 0.8, 2.0), (1.0, 2.0, 3.0), tuple(np.eye(3).ravel()))


@pytest.fixture(scope="module")
def refine_folder(tmp_path_factory) -> Path:
    import torch

    torch.manual_seed(1)
    config = tiny_config(guidance=("mask", "positive_clicks", "negative_clicks"), in_plane_policy="keep_aspect")
    folder = tmp_path_factory.mktemp("refine") / "tiny-refine"
    write_model_folder(folder, config, build_network(config).state_dict(), "float32")
    return folder


def scene(tmp_path: Path) -> tuple[Path, Path, Path]:
    image = np.random.default_rng(0).normal(100, 10, GEOMETRY.array_shape).astype(np.float32)
    labels = np.zeros(GEOMETRY.array_shape, np.uint8)
    labels[2:8, 10:30, 4:16] = 1
    labels[2:8, 10:30, 24:36] = 2
    sitk.WriteImage(array_to_image(image, GEOMETRY), str(tmp_path / "scan.nii.gz"))
    sitk.WriteImage(array_to_image(labels, GEOMETRY), str(tmp_path / "lungs.nii.gz"))
    point = [float(v) for v in GEOMETRY.array_index_to_lps(np.array([5, 20, 10]))]
    (tmp_path / "clicks.json").write_text(json.dumps({"clicks": [
        {"point": point, "sign": "-"}, {"index": [5, 20, 30], "sign": "+", "lung": "left"}]}))
    return tmp_path / "scan.nii.gz", tmp_path / "lungs.nii.gz", tmp_path / "clicks.json"


def test_refine_writes_labels_on_the_scan_grid_and_a_report(tmp_path, refine_folder, capsys):
    scan, lungs, clicks = scene(tmp_path)
    out = tmp_path / "fixed.nii.gz"
    code = main(["refine", str(scan), "--labels", str(lungs), "--clicks", str(clicks), "-o", str(out),
                 "--model", str(refine_folder), "--device", "cpu", "--report", str(tmp_path / "r.json")])
    assert code == 0
    fixed, geometry = image_to_array(sitk.ReadImage(str(out)))
    before, _ = image_to_array(sitk.ReadImage(str(lungs)))
    assert geometry.size == GEOMETRY.size and set(np.unique(fixed)) <= {0, 1, 2}
    report = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert [c["lung"] for c in report["clicks"]] == ["right_lung", "left_lung"]
    assert (fixed[before == 2] == 2).all()                     # a "+" click on the left lung never removes it
    assert ((fixed == 1) & (before != 1)).sum() == 0          # the right lung only lost voxels (a "-" click)
    assert "click 1" in capsys.readouterr().out


@pytest.mark.parametrize("switch, field", [("--no-image-contrast", "image_contrast"), ("--no-rim-peel", "rim_peel")])
def test_the_image_contrast_and_rim_peel_rules_can_be_switched_off(tmp_path, refine_folder, switch, field):
    scan, lungs, clicks = scene(tmp_path)
    out = tmp_path / "fixed.nii.gz"
    code = main(["refine", str(scan), "--labels", str(lungs), "--clicks", str(clicks), "-o", str(out),
                 "--model", str(refine_folder), "--device", "cpu", "--report", str(tmp_path / "r.json"), switch])
    assert code == 0
    report = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert [c[field] for c in report["clicks"]] == [False, False]


@pytest.mark.parametrize("edit, message", [
    (lambda d: (d / "clicks.json").write_text('{"clicks": []}'), "at least one click"),
    (lambda d: (d / "clicks.json").write_text('{"clicks": [{"index": [50, 1, 1], "sign": "+"}]}'), "outside"),
    (lambda d: (d / "clicks.json").write_text("not json"), "clicks JSON): not valid JSON"),
    (lambda d: sitk.WriteImage(sitk.Image([40, 48, 9], sitk.sitkUInt8), str(d / "lungs.nii.gz")), "grid"),
    (lambda d: sitk.WriteImage(array_to_image(np.zeros(GEOMETRY.array_shape, np.float32) + 0.5, GEOMETRY),
                               str(d / "lungs.nii.gz")), "must be 0, 1"),
    (lambda d: sitk.WriteImage(array_to_image(np.full(GEOMETRY.array_shape, 7, np.uint8), GEOMETRY),
                               str(d / "lungs.nii.gz")), "must be 0, 1"),
])
def test_bad_input_is_one_line_and_nothing_is_written(tmp_path, refine_folder, capsys, edit, message):
    scan, lungs, clicks = scene(tmp_path)
    edit(tmp_path)
    out = tmp_path / "fixed.nii.gz"
    code = main(["refine", str(scan), "--labels", str(lungs), "--clicks", str(clicks), "-o", str(out),
                 "--model", str(refine_folder), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_refine_never_replaces_its_input_labels(tmp_path, refine_folder, capsys):
    scan, lungs, clicks = scene(tmp_path)
    before = lungs.read_bytes()
    code = main(["refine", str(scan), "--labels", str(lungs), "--clicks", str(clicks), "-o", str(lungs),
                 "--model", str(refine_folder), "--overwrite"])
    assert code == 2 and "replace an input" in capsys.readouterr().err
    assert lungs.read_bytes() == before


def test_a_segmentation_model_is_refused_for_refine(tmp_path, tiny_model_folder, capsys):
    scan, lungs, clicks = scene(tmp_path)
    code = main(["refine", str(scan), "--labels", str(lungs), "--clicks", str(clicks), "-o",
                 str(tmp_path / "o.nii.gz"), "--model", str(tiny_model_folder)])
    assert code == 2 and "not a click-refinement model" in capsys.readouterr().err


def test_an_empty_mask_is_a_valid_start(tmp_path, refine_folder, capsys):
    scan, lungs, clicks = scene(tmp_path)
    sitk.WriteImage(array_to_image(np.zeros(GEOMETRY.array_shape, np.uint8), GEOMETRY), str(lungs))
    code = main(["refine", str(scan), "--labels", str(lungs), "--clicks", str(clicks), "-o",
                 str(tmp_path / "o.nii.gz"), "--model", str(refine_folder), "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
