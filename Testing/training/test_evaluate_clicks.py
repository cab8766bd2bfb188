"""`neonatal-lung-seg evaluate-clicks` end to end: a data folder in, NoC tables, per-click Dice, a plot and a
report out, from both starts, with the image-contrast rule on and off."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from NeonatalLungSegLib.geometry import Geometry, array_to_image
from neonatal_lung_training.interactive import noc

GEOMETRY = Geometry((40, 48, 12), (0.9, 0.8, 2.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()))


def data_folder(root: Path) -> Path:
    image = np.random.default_rng(0).normal(100, 10, GEOMETRY.array_shape).astype(np.float32)
    labels = np.zeros(GEOMETRY.array_shape, np.uint8)
    labels[2:10, 10:30, 4:16] = 1
    labels[2:10, 10:30, 24:36] = 2
    image[labels > 0] = 10.0
    for sub in ("images", "labels"):
        (root / sub).mkdir(parents=True)
    sitk.WriteImage(array_to_image(image, GEOMETRY), str(root / "images" / "case-a.nii.gz"))
    sitk.WriteImage(array_to_image(labels, GEOMETRY), str(root / "labels" / "case-a.nii.gz"))
    return root


@pytest.mark.parametrize("switch", [[], ["--no-image-contrast"]])
def test_evaluate_clicks_writes_every_output_from_both_starts(tmp_path, tiny_refine_folder, tiny_model_folder, switch):
    data = data_folder(tmp_path / "data")
    out = tmp_path / "out"
    code = noc.main(["--data", str(data), "--refine-model", str(tiny_refine_folder), "--model", str(tiny_model_folder),
                     "--max-clicks", "3", "--device", "cpu", "-o", str(out), *switch])
    assert code == 0
    summary = json.loads((out / "noc.json").read_text(encoding="utf-8"))
    assert summary["image_contrast"] is (not switch)
    assert [(c["case"], c["start"]) for c in summary["cases"]] == [("case-a", "empty"), ("case-a", "model")]
    for case in summary["cases"]:
        assert len(case["dice"]) == 4 and all(0.0 <= d <= 1.0 for d in case["dice"])
        assert 0 <= case["noc90"] <= 3 and 0 <= case["noc95"] <= 3
    assert summary["cases"][0]["dice"][0] == 0.0               # the empty start is empty
    report = (out / "report.md").read_text(encoding="utf-8")
    assert ("rule off" in report) is bool(switch)
    assert (out / "noc.csv").read_text(encoding="utf-8").count("\n") == 3 and (out / "dice-per-click.png").stat().st_size > 0


def test_a_folder_without_pairs_is_one_line_and_nothing_is_written(tmp_path, tiny_refine_folder, capsys):
    (tmp_path / "images").mkdir()
    code = noc.main(["--data", str(tmp_path), "--refine-model", str(tiny_refine_folder), "--start", "empty",
                     "-o", str(tmp_path / "out")])
    assert code != 0 and "no images/NAME.nii.gz" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_labels_on_another_grid_are_one_line_before_any_case_is_scored(tmp_path, tiny_refine_folder, capsys):
    """Issue 30: a traceback before (labels on another grid reached the Dice computation)."""
    data = data_folder(tmp_path / "data")
    other = Geometry((20, 48, 12), (1.8, 0.8, 2.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()))
    sitk.WriteImage(array_to_image(np.zeros(other.array_shape, np.uint8), other),
                    str(data / "labels" / "case-a.nii.gz"))
    code = noc.main(["--data", str(data), "--refine-model", str(tiny_refine_folder), "--start", "empty",
                     "-o", str(tmp_path / "out")])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and "not on the scan's grid" in err[0]
    assert not (tmp_path / "out").exists()


def test_rim_starts_are_the_reference_plus_rims_and_evaluate_clicks_starts_from_them(tmp_path, tiny_refine_folder,
                                                                                     capsys):
    from neonatal_lung_training.interactive import rim_starts

    data = data_folder(tmp_path / "data")
    assert rim_starts.main(["--data", str(data), "--seed", "3"]) == 0
    start = sitk.GetArrayFromImage(sitk.ReadImage(str(data / "starts" / "case-a.nii.gz")))
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(data / "labels" / "case-a.nii.gz")))
    added = start != reference
    assert added.any() and (reference[added] == 0).all()        # only additions, only outside the lungs
    for value in (1, 2):                                        # each lung's rim stays its own
        grown = (start == value) & added
        assert grown.any() and not (grown & (np.abs(np.indices(start.shape)[2] - 20) < 1)).any()
    before = (data / "starts" / "case-a.nii.gz").read_bytes()
    assert rim_starts.main(["--data", str(data), "--seed", "4"]) != 0   # never overwritten
    assert "already exists" in capsys.readouterr().err and (data / "starts" / "case-a.nii.gz").read_bytes() == before

    out = tmp_path / "out"
    assert noc.main(["--data", str(data), "--refine-model", str(tiny_refine_folder), "--start", "given",
                     "--max-clicks", "2", "--device", "cpu", "--no-rim-peel", "-o", str(out)]) == 0
    summary = json.loads((out / "noc.json").read_text(encoding="utf-8"))
    case = summary["cases"][0]
    assert case["start"] == "given" and summary["rim_peel"] is False
    assert case["dice"][0] == pytest.approx(2 * (reference > 0).sum() / ((reference > 0).sum() + (start > 0).sum()))


def test_a_missing_given_start_is_one_line(tmp_path, tiny_refine_folder, capsys):
    data = data_folder(tmp_path / "data")
    code = noc.main(["--data", str(data), "--refine-model", str(tiny_refine_folder), "--start", "given",
                     "-o", str(tmp_path / "out")])
    assert code != 0 and "starts/case-a.nii.gz: missing" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_given_start_off_the_image_grid_is_one_line(tmp_path, tiny_refine_folder, capsys):
    """The same grid check as `refine --labels` (volume_io.read_labels_on_grid): a shifted origin is refused."""
    data = data_folder(tmp_path / "data")
    shifted = Geometry(GEOMETRY.size, GEOMETRY.spacing, (5.0, 0.0, 0.0), GEOMETRY.direction)
    (data / "starts").mkdir()
    sitk.WriteImage(array_to_image(np.zeros(GEOMETRY.array_shape, np.uint8), shifted),
                    str(data / "starts" / "case-a.nii.gz"))
    code = noc.main(["--data", str(data), "--refine-model", str(tiny_refine_folder), "--start", "given",
                     "-o", str(tmp_path / "out")])
    assert code != 0 and "not on the scan's grid" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_partial_volume_rims_take_only_voxels_between_lung_and_tissue():
    """``--partial-volume``: the rim grows into the dim shell a model over-reaches into, never into tissue."""
    from neonatal_lung_training.interactive.rim_starts import rim_start

    geometry = Geometry((40, 40, 40), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()))
    reference = np.zeros(geometry.array_shape, np.uint8)
    reference[8:32, 8:32, 8:20] = 1
    image = np.full(geometry.array_shape, 100.0, np.float32)          # tissue
    image[reference == 1] = 10.0                                       # lung
    dim = np.zeros_like(reference, dtype=bool)
    dim[7:33, 7:33, 7:21] = True                                       # a partial-volume shell on every side
    dim &= reference == 0
    image[dim] = 40.0                                                  # a third of the way to tissue
    image[:, :, 20] = 90.0                                             # except on the +i side: nearly tissue
    start = rim_start(reference, geometry, np.random.default_rng(0), image=image)
    added = (start == 1) & (reference == 0)
    assert added.any() and dim[added].all()                            # only the dim shell, one layer deep here
    assert not added[:, :, 20].any()                                   # never the bright side
    plain = rim_start(reference, geometry, np.random.default_rng(0))
    assert ((plain == 1) & (reference == 0) & ~dim).any()              # without the image: any shell voxel
