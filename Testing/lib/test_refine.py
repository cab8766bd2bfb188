"""Click refinement engine (refine.py): a click changes only its own error, on its own lung, and follows the
error through the slices exactly as far as it continues.

The behaviour is checked with a real PyTorch network whose weights are set by hand (a 1x1 convolution:
lung where the image is bright, plus the positive click map, minus the negative one), so the expected
answer is known; a trained random-weight folder checks the loading path.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from conftest import tiny_config
from NeonatalLungSegLib.correction.clicks import Click, click_from_dict
from NeonatalLungSegLib.errors import InputError, ModelFolderError
from NeonatalLungSegLib.geometry import Geometry
from NeonatalLungSegLib.models.model_folder import write_model_folder
from NeonatalLungSegLib.models.network import build_network
from NeonatalLungSegLib.correction.refine import Refiner

GUIDANCE = ("mask", "positive_clicks", "negative_clicks")


def oracle_refiner(threshold_weight: float = 40.0, click_weight: float = 80.0,
                   in_plane_policy: str = "keep_aspect") -> Refiner:
    """Lung logit = w * (image - 0.5) + c * positive - c * negative: the "network" sees bright = lung."""
    config = tiny_config(guidance=GUIDANCE, in_plane_policy=in_plane_policy)
    conv = torch.nn.Conv2d(4, 1, kernel_size=1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 0, 0] = threshold_weight
        conv.weight[0, 2, 0, 0] = click_weight
        conv.weight[0, 3, 0, 0] = -click_weight
        conv.bias.fill_(-threshold_weight * 0.5)
    return Refiner(config, conv, torch.device("cpu"))


def geometry_for(shape: tuple[int, int, int], spacing=(1.0, 1.0, 2.0)) -> Geometry:
    k, j, i = shape
    return Geometry(size=(i, j, k), spacing=spacing, origin=(0.0, 0.0, 0.0),
                    direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))


def two_lung_volume(shape=(30, 64, 64)) -> tuple[np.ndarray, np.ndarray]:
    """Bright right (low i) and left (high i) lung blocks on a dark body; labels 1 = right, 2 = left."""
    image = np.zeros(shape, np.float32)
    image[:, 8:60, 4:60] = 0.3   # the body, in air
    labels = np.zeros(shape, np.uint8)
    image[5:25, 20:44, 8:26] = 1.0
    labels[5:25, 20:44, 8:26] = 1
    image[5:25, 20:44, 38:56] = 1.0
    labels[5:25, 20:44, 38:56] = 2
    return image, labels


def test_positive_click_adds_the_missed_part_through_the_slices_it_continues():
    image, truth = two_lung_volume()
    current = truth.copy()
    current[10:18, 20:44, 8:26] = 0          # the right lung's middle missed on 8 slices
    refiner = oracle_refiner()
    out, outcome = refiner.session(image, geometry_for(image.shape)).apply(current, Click((14, 30, 15), True))
    assert outcome.lung == "right_lung" and not outcome.fallback
    np.testing.assert_array_equal(out, truth)  # exactly the missed block, on all 8 slices, nothing else
    assert outcome.changed_voxels == 8 * 24 * 18
    assert current[14, 30, 15] == 0  # the caller's array is not modified


def test_clicks_land_where_they_were_made_when_the_model_crops_to_the_body():
    """body_crop frames (crops) each slice to the body before resizing (refine 2.0.0 and segmentation 2.8.0
    use it): the click maps and the mask must follow the crop, so a click still repairs exactly its error."""
    image, truth = two_lung_volume(shape=(30, 96, 96))
    image[:] = 0.0
    image[:, 20:76, 16:80] = 0.3                 # the body, well inside a wide field of view
    truth[:] = 0
    image[5:25, 30:60, 20:40] = 1.0
    truth[5:25, 30:60, 20:40] = 1
    image[5:25, 30:60, 56:76] = 1.0
    truth[5:25, 30:60, 56:76] = 2
    current = truth.copy()
    current[10:18, 30:60, 20:40] = 0
    session = oracle_refiner(in_plane_policy="body_crop").session(image, geometry_for(image.shape))
    assert min(session.prepared.frame.pad) < 0   # the frame really crops
    out, outcome = session.apply(current, Click((14, 45, 30), True))
    assert outcome.lung == "right_lung" and not outcome.fallback
    assert (out[10:18, 30:60, 20:40] == 1).mean() >= 0.97
    assert ((out != truth) & (truth == 0)).sum() <= 0.03 * 8 * 30 * 20


def test_negative_click_removes_only_its_error_and_never_the_other_lung():
    image, truth = two_lung_volume()
    current = truth.copy()
    current[5:25, 46:60, 26:38] = 1   # false "right lung" in the mediastinum (dark): connects both lungs
    current[5:25, 46:60, 38:56] = 2   # and false left lung below the left block
    refiner = oracle_refiner()
    session = refiner.session(image, geometry_for(image.shape))
    out, outcome = session.apply(current, Click((15, 52, 30), False))
    assert outcome.lung == "right_lung"
    assert not (out[5:25, 46:60, 26:38] == 1).any()           # the false right lung is gone
    np.testing.assert_array_equal(out == 2, current == 2)      # the left lung, false part included, untouched
    np.testing.assert_array_equal(out[truth == 1], 1)          # the true right lung kept


def test_positive_click_never_relabels_or_crosses_into_the_other_lung():
    image, truth = two_lung_volume()
    current = np.zeros_like(truth)   # empty mask: one click on the right lung
    out, outcome = oracle_refiner().session(image, geometry_for(image.shape)).apply(current, Click((15, 30, 15), True))
    assert outcome.lung == "right_lung"
    np.testing.assert_array_equal(out == 1, truth == 1)
    assert not (out == 2).any()


def test_a_click_on_the_left_side_edits_the_left_lung_and_an_explicit_lung_wins():
    image, truth = two_lung_volume()
    empty = np.zeros_like(truth)
    session = oracle_refiner().session(image, geometry_for(image.shape))
    out, outcome = session.apply(empty, Click((15, 30, 45), True))
    assert outcome.lung == "left_lung" and (out[truth == 2] == 2).all() and not (out == 1).any()
    out, outcome = session.apply(empty, Click((15, 30, 15), True, lung="left_lung"))
    assert outcome.lung == "left_lung" and outcome.changed_voxels == 0  # an explicit lung is obeyed, not moved


def test_a_positive_click_for_one_lung_inside_the_other_says_so_and_changes_nothing():
    image, truth = two_lung_volume()
    current = truth.copy()
    current[12:18, 26:38, 38:44] = 0          # a hole in the left lung, clicked with the right lung active
    session = oracle_refiner().session(image, geometry_for(image.shape))
    for click in (Click((15, 30, 45), True, lung="right_lung"),    # deep in the left lung
                  Click((15, 30, 39), True, lung="right_lung")):   # near the midline, but the left lung's hole
        out, outcome = session.apply(current, click)
        assert outcome.changed_voxels == 0 and "in the left lung (across the midline)" in outcome.message
        np.testing.assert_array_equal(out, current)


def test_a_right_lung_reaching_across_the_midline_is_added_up_to_the_click():
    """Real right lungs pass the point halfway between the two lungs' centres in front of the heart: a click
    there for the right lung adds its part (up to 10 mm beyond the click), never the left lung's."""
    image, truth = two_lung_volume()
    image[8:22, 26:34, 26:36] = 1.0            # the right lung's medial bulge, past the midline (x = 32)
    truth[8:22, 26:34, 26:36] = 1
    current = truth.copy()
    current[8:22, 26:34, 26:36] = 0
    current[5:25, 20:26, 38:56] = 0             # and a strip of the left lung missed: not the right lung's
    session = oracle_refiner().session(image, geometry_for(image.shape))
    assert session.midline(session._slices(current)) < 33
    out, outcome = session.apply(current, Click((15, 30, 33), True, lung="right_lung"))
    assert outcome.lung == "right_lung" and not outcome.fallback
    assert (out[8:22, 26:34, 26:36] == 1).all()
    np.testing.assert_array_equal(out[:, :, 38:], current[:, :, 38:])   # nothing taken from the left side


def test_negative_click_on_nothing_changes_nothing():
    image, truth = two_lung_volume()
    out, outcome = oracle_refiner().session(image, geometry_for(image.shape)).apply(truth, Click((2, 2, 2), False))
    assert outcome.lung is None and outcome.changed_voxels == 0
    np.testing.assert_array_equal(out, truth)


def test_a_click_the_network_ignores_still_edits_a_small_disk():
    image, truth = two_lung_volume()
    refiner = oracle_refiner(click_weight=0.0)  # clicks have no effect on this network
    current = truth.copy()
    out, outcome = refiner.session(image, geometry_for(image.shape)).apply(current, Click((15, 30, 15), False))
    assert outcome.fallback and outcome.lung == "right_lung"
    removed = (current == 1) & (out == 0)
    assert removed.any() and set(np.unique(np.argwhere(removed)[:, 0])) == {15}  # its own slice only
    assert removed.sum() <= np.pi * 2.0 ** 2 + 8


def test_change_is_followed_beyond_the_first_window():
    image, truth = two_lung_volume(shape=(80, 64, 64))
    image[:, :, 26:] = np.where(image[:, :, 26:] > 0, 0.3, 0)  # the right lung only
    truth[:] = 0
    image[5:75, 20:44, 8:26] = 1.0
    truth[5:75, 20:44, 8:26] = 1
    out, outcome = oracle_refiner().session(image, geometry_for(image.shape)).apply(
        np.zeros_like(truth), Click((40, 30, 15), True))
    np.testing.assert_array_equal(out, truth)   # 70 slices from one click
    assert outcome.slices_run > 17


def test_clicks_on_a_reoriented_volume_land_on_the_clicked_voxel():
    """i and j stored flipped against LPS: the block at low i is the patient's LEFT lung here, and the
    click's index is the input's own voxel."""
    image, truth = two_lung_volume()
    truth = np.where(truth == 1, 2, np.where(truth == 2, 1, 0)).astype(np.uint8)
    geometry = Geometry(size=(64, 64, 30), spacing=(1.0, 1.0, 2.0), origin=(63.0, 63.0, 0.0),
                        direction=(-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))
    current = truth.copy()
    current[10:18, 20:44, 8:26] = 0
    out, outcome = oracle_refiner().session(image, geometry).apply(current, Click((14, 30, 15), True))
    assert outcome.lung == "left_lung"
    np.testing.assert_array_equal(out, truth)


def test_refine_model_folder_round_trip_and_kind_checks(tmp_path):
    from NeonatalLungSegLib.inference.engine import Segmenter

    config = tiny_config(guidance=GUIDANCE, in_plane_policy="keep_aspect")
    torch.manual_seed(0)
    folder = write_model_folder(tmp_path / "refine", config, build_network(config).state_dict(), "float32")
    refiner = Refiner.load(tmp_path / "refine", device="cpu")
    assert refiner.config.input.network_channels == 4
    image, truth = two_lung_volume()
    out, outcomes = refiner.refine(image, geometry_for(image.shape), truth, [Click((15, 30, 15), True)])
    assert out.shape == truth.shape and out.dtype == np.uint8 and len(outcomes) == 1
    with pytest.raises(ModelFolderError, match="click-refinement"):
        Segmenter.load(tmp_path / "refine", device="cpu")
    assert folder.input.guidance == GUIDANCE


def test_segmentation_folder_is_refused_as_a_refiner(tiny_model_folder):
    with pytest.raises(ModelFolderError, match="not a click-refinement model"):
        Refiner.load(tiny_model_folder, device="cpu")


def test_bad_guidance_in_model_json_is_refused():
    from NeonatalLungSegLib.models.model_folder import ModelConfig

    data = tiny_config(guidance=GUIDANCE).to_dict()
    data["input"]["guidance"] = ["mask", "mask"]
    with pytest.raises(ModelFolderError, match="guidance"):
        ModelConfig.from_dict(data)
    data["input"]["guidance"] = "mask"
    with pytest.raises(ModelFolderError, match="guidance"):
        ModelConfig.from_dict(data)


@pytest.mark.parametrize("item, problem", [
    ({"index": [1, 2, 3]}, "sign"),
    ({"index": [1, 2], "sign": "+"}, "three finite numbers"),
    ({"index": [1.5, 2, 3], "sign": "+"}, "whole voxel"),
    ({"index": [99, 2, 3], "sign": "+"}, "outside the volume"),
    ({"point": [1, 2, 3], "index": [1, 2, 3], "sign": "+"}, "exactly one"),
    ({"index": [1, 2, 3], "sign": "+", "lung": "middle"}, "right' or 'left"),
    ("1,2,3", "expected an object"),
])
def test_bad_clicks_get_one_clear_error(item, problem):
    with pytest.raises(InputError, match=problem):
        click_from_dict(item, geometry_for((30, 64, 64)))


def test_click_point_in_mm_maps_to_its_voxel():
    geometry = Geometry(size=(64, 64, 30), spacing=(0.5, 0.5, 2.0), origin=(-10.0, 5.0, 100.0),
                        direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    lps = geometry.array_index_to_lps(np.array([7, 20, 33]))
    click = click_from_dict({"point": [float(v) for v in lps], "sign": "-", "lung": "left"}, geometry)
    assert click == Click((7, 20, 33), False, "left_lung")
    assert dataclasses.asdict(click)["index"] == (7, 20, 33)
