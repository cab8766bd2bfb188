"""The signal check of inference/boundary.py: surface voxels whose intensity says "more tissue than lung" are
peeled, on phantoms with known signal, both contrasts, 2D and 3D, through the engine and model.json."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from conftest import tiny_config
from NeonatalLungSegLib.geometry import Geometry
from NeonatalLungSegLib.inference.boundary import drop_tissue_signal
from NeonatalLungSegLib.inference.engine import Segmenter
from NeonatalLungSegLib.models.model_folder import write_model_folder
from NeonatalLungSegLib.models.network import build_network

LUNG, TISSUE = 0.15, 1.4  # medians measured on real proton MRI (lung core, shell around it)


def _chest(shape=(34, 40, 40), noise=0.05, seed=0):
    """An ellipsoid of lung in tissue: (labels, image, lung mask)."""
    grid = np.indices(shape).astype(float)
    centre = (np.array(shape) - 1) / 2
    radii = np.array(shape) * 0.3
    lung = (((grid - centre[:, None, None, None]) / radii[:, None, None, None]) ** 2).sum(0) <= 1
    rng = np.random.default_rng(seed)
    image = np.where(lung, LUNG, TISSUE) + rng.normal(0, noise, shape)
    return lung.astype(np.uint8), image, lung


def _tongue_below(labels: np.ndarray, image: np.ndarray, lung: np.ndarray, value: float,
                  width: int = 2) -> np.ndarray:
    """A ``width`` x ``width``-voxel tongue, 6 voxels long, hanging from the lung's base, labelled lung, at
    ``value``."""
    k0 = int(np.flatnonzero(lung.any(axis=(1, 2)))[0])
    assert k0 >= 6
    j, i = np.argwhere(lung[k0])[0]
    tongue = np.zeros_like(lung)
    tongue[k0 - 6:k0, j:j + width, i:i + width] = True
    labels[tongue] = 1
    image[tongue] = value
    return tongue


def test_a_tongue_of_tissue_labelled_lung_is_peeled_and_the_lung_is_untouched() -> None:
    labels, image, lung = _chest()
    tongue = _tongue_below(labels, image, lung, LUNG + 0.6 * (TISSUE - LUNG))  # 40 % lung: grey, not lung
    out = drop_tissue_signal(labels, image, 0.5)
    np.testing.assert_array_equal(out.astype(bool), lung)
    assert not out[tongue].any()


def test_a_tongue_with_lung_signal_stays() -> None:
    labels, image, lung = _chest()
    tongue = _tongue_below(labels, image, lung, LUNG + 0.3 * (TISSUE - LUNG))  # 70 % lung
    np.testing.assert_array_equal(drop_tissue_signal(labels, image, 0.5), labels)
    assert labels[tongue].all()


def test_bright_lung_in_a_dark_body_is_judged_the_same_way() -> None:
    labels, image, lung = _chest()
    tongue = _tongue_below(labels, image, lung, LUNG + 0.6 * (TISSUE - LUNG))
    inverted = (LUNG + TISSUE) - image  # gas MRI: the lung bright, the body dark
    out = drop_tissue_signal(labels, inverted, 0.5)
    np.testing.assert_array_equal(out.astype(bool), lung)
    assert not out[tongue].any()


def test_bright_lung_on_the_smooth_surface_stays_lung() -> None:
    # the dependent atelectasis of BPD: a patch of lung as bright as tissue on the lung's outer surface, and a
    # bright vessel running through the lung to its surface; neither protrudes from the lung's shape
    labels, image, lung = _chest()
    grid = np.indices(lung.shape)
    patch = lung & (grid[1] >= 29)  # the posterior cap of the ellipsoid
    vessel = lung & (grid[1] == 20) & (grid[2] == 20)
    image[patch | vessel] = TISSUE
    assert patch.sum() > 100
    np.testing.assert_array_equal(drop_tissue_signal(labels, image, 0.5), labels)


def test_the_check_stops_where_the_lungs_shape_begins() -> None:
    labels, image, lung = _chest()
    tongue = _tongue_below(labels, image, lung, TISSUE)
    k0 = int(np.flatnonzero(tongue.any(axis=(1, 2)))[-1]) + 1  # the lung's lowest slice, above the tongue
    channel = np.zeros_like(lung)
    channel[k0:k0 + 6] = tongue[k0 - 6:k0]  # the tongue's signal goes on into the lung, six voxels up
    image[channel] = TISSUE
    out = drop_tissue_signal(labels, image, 0.5).astype(bool)
    assert not out[tongue].any()
    np.testing.assert_array_equal(out, lung)  # the channel inside the lung stays lung


def test_a_piece_the_peeling_cut_off_goes_and_a_large_one_stays() -> None:
    labels, image, lung = _chest(shape=(34, 40, 60))
    # a small blob of lung signal joined to the lung only by a bridge of tissue signal
    k, j = 15, 20
    i_edge = int(np.flatnonzero(lung[k, j])[-1])
    bridge = np.zeros_like(lung)
    bridge[k:k + 2, j:j + 2, i_edge + 1:i_edge + 3] = True
    blob = np.zeros_like(lung)
    blob[k - 1:k + 3, j - 1:j + 3, i_edge + 3:i_edge + 7] = True
    labels[bridge | blob] = 1
    image[bridge] = TISSUE
    image[blob] = LUNG
    out = drop_tissue_signal(labels, image, 0.5)
    assert not out[bridge].any() and not out[blob].any()
    np.testing.assert_array_equal(out.astype(bool), lung)


def test_no_contrast_or_switched_off_changes_nothing() -> None:
    labels, image, lung = _chest()
    _tongue_below(labels, image, lung, TISSUE)
    flat = np.random.default_rng(1).normal(1.0, 0.1, labels.shape)
    np.testing.assert_array_equal(drop_tissue_signal(labels, flat, 0.5), labels)
    np.testing.assert_array_equal(drop_tissue_signal(labels, image, 0.0), labels)
    with pytest.raises(ValueError, match="does not match"):
        drop_tissue_signal(labels, image[:-1], 0.5)


def test_a_single_slice_is_peeled_in_plane_and_each_lung_judged_on_its_own() -> None:
    labels, image, lung = _chest(shape=(1, 40, 70))
    labels = np.where(lung & (np.indices(lung.shape)[2] >= 35), 2, labels).astype(np.uint8)
    j = int(np.flatnonzero(lung[0].any(axis=1))[0])
    tongue = np.zeros_like(lung)
    tongue[0, j - 4:j, 20:22] = True  # in-plane tongue off the right lung's anterior edge
    labels[tongue] = 1
    image[tongue] = TISSUE
    out = drop_tissue_signal(labels, image, 0.5)
    assert not out[tongue].any()
    np.testing.assert_array_equal(out, np.where(tongue, 0, labels))


def test_the_engine_runs_the_check_after_the_convention_and_reports_what_it_took(tmp_path, monkeypatch) -> None:
    config = tiny_config()
    state = build_network(config).state_dict()
    plain, checked = tmp_path / "plain", tmp_path / "checked"
    output = replace(config.output, boundary_min_share=0.75, boundary_psf_sigma=0.7)
    write_model_folder(plain, replace(config, output=output), state, dtype="float32")
    write_model_folder(checked, replace(config, output=replace(output, boundary_signal_min_share=0.5)), state,
                       dtype="float32")
    labels, image, lung = _chest(shape=(34, 40, 40))
    # four voxels wide: the expert convention takes its outer voxels, the signal check the core it leaves
    tongue = _tongue_below(labels, image, lung, TISSUE, width=4)
    geometry = Geometry((40, 40, 34), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()))
    network_predict = Segmenter.predict_unrouted

    def predict(self, array, geometry, progress=None, cancel=None):
        # the real network runs; its output is replaced by the phantom's lung, so the steps after it are
        # judged on a mask whose tissue tongue is known
        _, plan = network_predict(self, array, geometry, progress, cancel)
        return plan.to_canonical(labels.astype(np.float16)), plan

    monkeypatch.setattr(Segmenter, "predict_unrouted", predict)
    array = image.astype(np.float32)
    a = Segmenter.load(plain, device="cpu").segment_array(array, geometry)
    b = Segmenter.load(checked, device="cpu").segment_array(array, geometry)
    # all but its root (the voxels within the lung's opened shape) goes
    assert a.labels[tongue].sum() > 50 and b.labels[tongue].astype(bool).sum() <= 4
    # after the convention: the check sees the surface the convention left (a.labels), on the input's grid
    np.testing.assert_array_equal(b.labels, drop_tissue_signal(a.labels, array, 0.5))
    assert b.inference["boundary"]["signal_min_lung_share"] == 0.5
    assert b.inference["boundary"]["tissue_ml"] == pytest.approx(a.volumes["total"]["volume_ml"]
                                                                 - b.volumes["total"]["volume_ml"], abs=1e-6)
    assert b.inference["boundary"]["tissue_ml"] > 0
    assert b.inference["boundary"]["rim_ml"] == a.inference["boundary"]["rim_ml"]
    assert "signal_min_lung_share" not in a.inference["boundary"]
    assert b.inference["boundary"]["airway_ml"] == 0  # one lung: the air rule needs a midline
    assert "airway_ml" not in a.inference["boundary"]
    raw = Segmenter.load(checked, device="cpu").segment_array(array, geometry, options=None)
    assert "boundary" not in raw.inference and raw.labels[tongue].all()
