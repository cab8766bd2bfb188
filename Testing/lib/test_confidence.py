"""NeonatalLungSegLib.inference.confidence: per-slice and per-case confidence, the left-right flip, and the CLI's
JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from NeonatalLungSegLib.inference.confidence import (binary_entropy, estimated_dice, flipped_probabilities,
                                           left_right_array_axis, measure_confidence, segment_with_confidence)
from NeonatalLungSegLib.geometry import Geometry, array_to_image, reorientation

AXIAL = Geometry((8, 8, 10), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
# Stored sagittally and mirrored: ITK axis 0 runs S->I, axis 2 runs L->R. Left-right is NumPy axis 0.
SAGITTAL = Geometry((10, 8, 12), (2.0, 1.0, 1.0), (5.0, -3.0, 7.0), (0, 0, -1, 0, 1, 0, -1, 0, 0))


def lungs(shape, value=0.97):
    p = np.full(shape, 0.01, np.float32)
    p[2:8, 2:6, 2:6] = value
    return p


def test_entropy_and_estimated_dice_formulas():
    assert binary_entropy(np.array([0.0, 0.5, 1.0])) == pytest.approx([0.0, 1.0, 0.0], abs=1e-5)
    assert binary_entropy(np.array([0.2]))[0] == pytest.approx(0.7219, abs=1e-4)
    assert estimated_dice(0.0, 0.0, 0.0) == 1.0
    assert estimated_dice(9.0, 10.0, 10.0) == pytest.approx(0.9)


def test_a_sure_model_is_confident_and_doubt_lowers_the_slice_and_the_case():
    sure = measure_confidence(lungs(AXIAL.array_shape), AXIAL)
    assert sure.confidence > 0.95 and sure.flip_dice is None and sure.array_axis == 0
    assert sure.slices[0].confidence == 1.0  # no lung, no doubt: nothing to check there
    doubtful = lungs(AXIAL.array_shape)
    doubtful[5, 2:6, 2:6] = 0.55   # decided lung, barely
    doubtful[5, 6:8, 2:6] = 0.45   # undecided, outside the mask
    case = measure_confidence(doubtful, AXIAL)
    assert case.confidence < sure.confidence
    worst = case.slices_to_check(2)
    assert worst[0].index == 5 and worst[0].uncertain_voxels == 24 and worst[0].confidence < 0.8
    assert case.slices[5].mean_entropy > case.slices[4].mean_entropy
    assert case.benefit == pytest.approx(1 - case.confidence)
    data = case.to_dict(2, AXIAL)
    assert data["slices_to_check"][0]["index"] == 5 and len(data["slices"]) == 10
    assert data["slices_to_check"][0]["center_lps"] == [3.5, 3.5, 10.0]
    json.dumps(data)


def test_no_lung_found_scores_zero_and_tiny_slices_are_not_listed():
    nothing = np.full(AXIAL.array_shape, 0.1, np.float32)
    case = measure_confidence(nothing, AXIAL)
    assert case.confidence == 0.0 and case.mask_voxels == 0 and case.slices_to_check() == []
    p = np.zeros((6, 40, 40), np.float32)
    p[1:5, 5:35, 5:35] = 0.95
    p[2, 5:35, 5:8] = 0.5
    p[5, 0, 0] = 0.5  # one undecided voxel alone: a negligible slice
    geometry = Geometry((40, 40, 6), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    listed = [s.index for s in measure_confidence(p, geometry).slices_to_check(5)]
    assert listed[0] == 2 and 5 not in listed


def test_bad_arguments_fail_clearly():
    with pytest.raises(ValueError, match="does not match"):
        measure_confidence(np.zeros((2, 2, 2), np.float32), AXIAL)
    with pytest.raises(ValueError, match="low < threshold"):
        measure_confidence(lungs(AXIAL.array_shape), AXIAL, low=0.6)
    with pytest.raises(ValueError, match="count"):
        measure_confidence(lungs(AXIAL.array_shape), AXIAL).slices_to_check(-1)


class PointwiseModel:
    """predict() as the engine's: a canonical probability and the plan; here a function of the voxel value
    only (``shift`` 0), or of the canonical left-right position too (``shift`` > 0: a biased model)."""

    def __init__(self, shift: int = 0) -> None:
        self.shift = shift

    def predict(self, array, geometry, progress=None, cancel=None):
        plan = reorientation(geometry, "LPS")
        canonical = (plan.to_canonical(array) > 100).astype(np.float16)
        if self.shift:
            canonical = np.roll(canonical, self.shift, axis=2)  # canonical NumPy axis 2 is i (left-right)
        return canonical, plan


@pytest.mark.parametrize("geometry", [AXIAL, SAGITTAL])
def test_flip_mirrors_along_the_patients_left_right_axis_and_back(geometry):
    rng = np.random.default_rng(0)
    array = rng.integers(0, 200, geometry.array_shape).astype(np.float32)
    axis = left_right_array_axis(geometry)
    assert axis == (2 if geometry is AXIAL else 0)
    back = flipped_probabilities(PointwiseModel(), array, geometry)
    assert np.array_equal(back, (array > 100).astype(np.float32))  # an anatomy-only model agrees with itself
    biased = flipped_probabilities(PointwiseModel(shift=2), array, geometry)
    own = reorientation(geometry, "LPS").from_canonical(PointwiseModel(2).predict(array, geometry)[0])
    case = measure_confidence(np.asarray(own, np.float32), geometry, biased)
    assert case.flip_dice < 0.9  # a position-biased model disagrees with its mirror image


def test_segment_with_confidence_on_a_real_model_with_flip(tiny_model_folder):
    from NeonatalLungSegLib.inference.engine import Segmenter

    segmenter = Segmenter.load(tiny_model_folder, device="cpu")
    rng = np.random.default_rng(1)
    array = rng.normal(100, 20, (6, 40, 40)).astype(np.float32)
    geometry = Geometry((40, 40, 6), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    seen = []
    result, case = segment_with_confidence(segmenter, array, geometry, flip=True, progress=seen.append)
    assert result.probabilities is not None and result.labels.shape == array.shape
    assert case.flip_dice is not None and 0.0 <= case.confidence <= 1.0 and len(case.slices) == 6
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0) and max(s for s in seen if s <= 0.5) == 0.5


def test_cli_segment_writes_confidence_json(tiny_model_folder, tmp_path, capsys):
    from NeonatalLungSegLib.cli.main import main

    rng = np.random.default_rng(2)
    geometry = Geometry((40, 40, 6), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    image = array_to_image(rng.normal(100, 20, geometry.array_shape).astype(np.float32), geometry)
    source = tmp_path / "baby.nii.gz"
    sitk.WriteImage(image, str(source))
    out = tmp_path / "out"
    argv = ["segment", str(source), "-o", str(out), "--model", str(tiny_model_folder), "--device", "cpu",
            "--flip", "--check-slices", "2"]
    assert main(argv) == 0
    data = json.loads((out / "baby_confidence.json").read_text(encoding="utf-8"))
    assert data["case"] == "baby" and data["model"]["name"] == "tiny-test-model"
    assert set(data) >= {"confidence", "mean_entropy_bits", "flip_dice", "slices_to_check", "slices"}
    assert len(data["slices_to_check"]) <= 2 and len(data["slices"]) == 6
    assert "confidence" in capsys.readouterr().out
    assert main(argv) == 2  # nothing replaced without --overwrite
    assert "already exists" in capsys.readouterr().err
