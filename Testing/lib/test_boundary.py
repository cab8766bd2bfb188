"""The expert convention for partial-volume boundary voxels (inference/boundary.py), on phantoms with known
shares, through the engine and through model.json's checks."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from scipy.stats import norm

from conftest import tiny_config
from NeonatalLungSegLib.errors import ModelFolderError
from NeonatalLungSegLib.geometry import Geometry
from NeonatalLungSegLib.inference.boundary import keep_expert_share
from NeonatalLungSegLib.inference.engine import Segmenter
from NeonatalLungSegLib.models.model_folder import read_config, write_model_folder
from NeonatalLungSegLib.models.network import build_network


def test_half_share_or_no_psf_changes_nothing() -> None:
    labels = np.zeros((12, 20, 20), np.uint8)
    labels[2:10, 3:17, 3:9], labels[2:10, 3:17, 11:17] = 1, 2
    np.testing.assert_array_equal(keep_expert_share(labels, 0.5, 0.7), labels)
    np.testing.assert_array_equal(keep_expert_share(labels, 0.8, 0.0), labels)


def test_a_flat_wall_loses_exactly_the_voxels_whose_share_is_below_the_cut() -> None:
    # A half-space of lung, wall at the voxel face between i = 9 and i = 10. Through the sampled Gaussian
    # (sigma 0.7 voxel, radius 2) the last lung voxel shows w0 + w1 + w2 = 0.785 and the one before it
    # 1 - w2 = 0.990 (w: the normalised kernel weights).
    k = np.arange(-2, 3)
    w = np.exp(-k ** 2 / (2 * 0.7 ** 2))
    w /= w.sum()
    first, second = w[2:].sum(), 1 - w[4]
    assert 0.78 < first < 0.79 and 0.99 < second < 0.991
    labels = np.zeros((6, 8, 20), np.uint8)
    labels[..., :10] = 1
    for min_share, kept in ((0.75, 10), (first - 1e-4, 10), (first + 1e-4, 9), (second - 1e-4, 9),
                            (second + 1e-4, 8)):
        out = keep_expert_share(labels, min_share, 0.7)
        assert out[3, 4].sum() == kept, (min_share, out[3, 4])
        assert (out == out[3, 4]).all(axis=(0, 1)).all()  # the same on every row: a flat wall stays flat
        assert not out[..., 10:].any()


def test_a_sphere_keeps_the_volume_of_the_share_isosurface() -> None:
    # Radius 10 voxels: the kept voxels are those whose smoothed share >= 0.75, i.e. a sphere shrunk by about
    # sigma * Phi^-1(0.75) = 0.47 voxel; its volume is within 3 % of (4/3) pi (r - 0.47)^3.
    grid = np.indices((32, 32, 32)).astype(float) - 15.5
    sphere = (np.sqrt((grid ** 2).sum(0)) <= 10).astype(np.uint8)
    out = keep_expert_share(sphere, 0.75, 0.7)
    expected = 4 / 3 * np.pi * (10 - 0.7 * norm.ppf(0.75)) ** 3
    assert abs(out.sum() / expected - 1) < 0.03
    assert out.sum() < sphere.sum() and not (out & ~sphere.astype(bool)).any()


def test_each_lung_is_judged_against_itself_and_a_one_slice_volume_is_smoothed_in_plane_only() -> None:
    labels = np.zeros((1, 20, 30), np.uint8)
    labels[0, 2:18, 2:15], labels[0, 2:18, 15:28] = 1, 2  # touching at i = 14 | 15
    out = keep_expert_share(labels, 0.8, 0.7)  # above the last voxel's 0.785: every flat face loses its rim
    # the touching faces lose their rim too (each lung's share is its own), the outer rims go, the cores stay
    assert out[0, 10, 14] == 0 and out[0, 10, 15] == 0 and out[0, 10, 13] == 1 and out[0, 10, 16] == 2
    assert out[0, 2].sum() == 0 and out[0, 3, 3:14].all()
    assert labels[0, 10, 14] == 1  # the input is not modified


def test_a_lung_thinner_than_the_rim_disappears_rather_than_being_kept_half() -> None:
    labels = np.zeros((5, 10, 10), np.uint8)
    labels[:, 4, :] = 1  # a sheet one voxel thick: its share never exceeds Phi(0.5/0.7) - Phi(-0.5/0.7) ~ 0.52
    assert not keep_expert_share(labels, 0.75, 0.7).any()


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    import torch

    torch.manual_seed(0)
    config = tiny_config()
    state = build_network(config).state_dict()
    root = tmp_path_factory.mktemp("boundary")
    plain, expert = root / "plain", root / "expert"
    write_model_folder(plain, config, state, dtype="float32")
    write_model_folder(expert, replace(config, output=replace(config.output, boundary_min_share=0.75,
                                                              boundary_psf_sigma=0.7)), state, dtype="float32")
    return plain, expert


def test_the_engine_applies_the_model_folders_convention_after_cleaning_and_not_in_raw_mode(folders) -> None:
    plain, expert = (Segmenter.load(f, device="cpu") for f in folders)
    assert read_config(folders[1]).output.boundary_min_share == 0.75
    geometry = Geometry((40, 36, 8), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()))
    rng = np.random.default_rng(3)
    array = ndimage.gaussian_filter(rng.normal(0, 1, geometry.array_shape), 2).astype(np.float32)
    a, b = plain.segment_array(array, geometry), expert.segment_array(array, geometry)
    assert a.labels.any()
    np.testing.assert_array_equal(b.labels, keep_expert_share(a.labels, 0.75, 0.7))
    assert b.volumes["total"]["volume_ml"] < a.volumes["total"]["volume_ml"]
    # the rim it left out is reported, so the physical-convention volume can be told too
    assert b.inference["boundary"]["min_lung_share"] == 0.75 and "boundary" not in a.inference
    assert b.inference["boundary"]["rim_ml"] == pytest.approx(a.volumes["total"]["volume_ml"]
                                                             - b.volumes["total"]["volume_ml"], abs=1e-3)
    raw_a = plain.segment_array(array, geometry, options=None)
    raw_b = expert.segment_array(array, geometry, options=None)
    np.testing.assert_array_equal(raw_a.labels, raw_b.labels)


@pytest.mark.parametrize("key, value, words", [("boundary_min_share", 0.3, "[0.5, 1)"),
                                                ("boundary_min_share", 1.0, "[0.5, 1)"),
                                                ("boundary_psf_sigma", -1, "[0, 3]"),
                                                ("boundary_psf_sigma", 40.0, "[0, 3]"),
                                                ("boundary_psf_sigma", "wide", "must be a number"),
                                                ("boundary_signal_min_share", -0.1, "[0, 1)"),
                                                ("boundary_signal_min_share", 1.0, "[0, 1)")])
def test_model_json_with_a_convention_out_of_range_is_refused_in_one_line(folders, tmp_path, key, value,
                                                                          words) -> None:
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(folders[1], folder)
    body = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    body["output"][key] = value
    (folder / "model.json").write_text(json.dumps(body), encoding="utf-8")
    with pytest.raises(ModelFolderError) as error:
        read_config(folder)
    assert words in str(error.value) and "\n" not in str(error.value)


def test_the_inverse_grows_drawn_labels_so_the_convention_gives_them_back() -> None:
    from NeonatalLungSegLib.inference.boundary import physical_from_expert

    grid = np.indices((36, 36, 36)).astype(float) - 17.5
    sphere = (np.sqrt((grid ** 2).sum(0)) <= 11).astype(np.uint8)
    drawn = keep_expert_share(sphere, 0.75, 0.7)  # what an expert leaves of the physical sphere
    grown = physical_from_expert(drawn, 0.75, 0.7)
    assert grown.sum() > drawn.sum() and not (drawn.astype(bool) & ~grown.astype(bool)).any()
    assert abs(grown.sum() / sphere.sum() - 1) < 0.03  # back to the physical volume
    back = keep_expert_share(grown, 0.75, 0.7)
    assert (back != drawn).sum() <= 0.02 * drawn.sum()  # and the convention returns what was drawn
    # two touching lungs: each grows into background only, never into the other (a flat wall is left as it
    # is, as the convention leaves it)
    offset = np.array([0, 0, 1.0])[:, None, None, None]
    labels = np.where(np.sqrt(((grid + 6 * offset) ** 2).sum(0)) <= 7, 1, 0).astype(np.uint8)
    labels[(np.sqrt(((grid - 7 * offset) ** 2).sum(0)) <= 7) & (labels == 0)] = 2
    both = physical_from_expert(labels, 0.75, 0.7)
    assert ((labels > 0) & (both != labels)).sum() == 0
    assert (both == 1).sum() > (labels == 1).sum() and (both == 2).sum() > (labels == 2).sum()
    np.testing.assert_array_equal(physical_from_expert(labels, 0.5, 0.7), labels)
