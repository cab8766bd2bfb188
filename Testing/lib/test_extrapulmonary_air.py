"""Trachea and sub-diaphragmatic gas out of the lung labels (inference/air/extrapulmonary_air.py), on phantoms
drawn in patient space: what must go goes, lung that looks like it in one respect stays, on any storage order."""

from __future__ import annotations

import numpy as np
import pytest

from NeonatalLungSegLib.geometry import Geometry
from NeonatalLungSegLib.inference.air.extrapulmonary_air import drop_extrapulmonary_air
from NeonatalLungSegLib.inference.postprocess import PostprocessOptions, postprocess
from stored_volumes import store_differently

SHAPE = (60, 48, 64)  # (k inferior -> superior, j anterior -> posterior, i right -> left), 1 voxel = 1 unit


def grid() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.meshgrid(*[np.arange(n, dtype=float) for n in SHAPE], indexing="ij")


def lungs() -> np.ndarray:
    k, j, i = grid()
    labels = np.zeros(SHAPE, np.uint8)
    labels[((k - 28) / 20) ** 2 + ((j - 24) / 14) ** 2 + ((i - 18) / 11) ** 2 <= 1] = 1  # right: low i
    labels[((k - 28) / 20) ** 2 + ((j - 24) / 14) ** 2 + ((i - 46) / 11) ** 2 <= 1] = 2
    return labels


def trachea() -> np.ndarray:
    k, j, i = grid()
    return (k >= 40) & ((j - 22) ** 2 + (i - 32) ** 2 <= 4)  # a midline tube from mid-chest upwards


def test_a_midline_tube_above_the_lungs_is_airway_and_goes() -> None:
    labels = lungs()
    tube = trachea() & (labels == 0)
    labels[tube] = 1  # the network called it lung and the split gave it to the right lung
    out = drop_extrapulmonary_air(labels)
    assert not out[tube].any()
    np.testing.assert_array_equal(out[~tube], labels[~tube])


def test_the_anterior_junction_of_touching_lungs_reaches_the_midline_and_stays() -> None:
    labels = lungs()
    k, j, i = grid()
    junction = (np.abs(i - 32) <= 4) & (np.abs(j - 14) <= 3) & (np.abs(k - 28) <= 14) & (labels == 0)
    labels[junction & (i < 32)] = 1
    labels[junction & (i >= 32)] = 2
    # part of large axial sections, not small islands: nothing changes
    np.testing.assert_array_equal(drop_extrapulmonary_air(labels), labels)


def gas_bubble(labels: np.ndarray, gap: int, bridge: bool = True) -> np.ndarray:
    """A bubble under the left lung's base: top ``gap`` voxels below the lung, joined by a one-voxel bridge."""
    k, j, i = grid()
    base = int(np.flatnonzero((labels == 2)[:, 24, 46])[0])
    top = base - 1 - gap
    bubble = ((k - (top - 3)) ** 2 + (j - 24) ** 2 + (i - 46) ** 2 <= 9) & (labels == 0)
    if bridge:
        bubble |= (k >= top) & (k < base) & (j == 24) & (i == 46)
    return bubble


def test_a_gas_bubble_under_the_diaphragm_joined_by_a_thin_bridge_goes() -> None:
    labels = lungs()
    bubble = gas_bubble(labels, gap=3)
    labels[bubble] = 2
    out = drop_extrapulmonary_air(labels)
    assert out[bubble].sum() <= 3  # at most the bridge's voxels next to the lung remain
    np.testing.assert_array_equal(out[~bubble], labels[~bubble])


def test_a_piece_under_a_one_voxel_fissure_is_lung_and_stays() -> None:
    # the network cut the left lung's lowest cap off along a fissure one voxel thin, but for one voxel
    labels = lungs()
    k, j, i = grid()
    fissure = (labels == 2) & (k == 11) & ~((j == 24) & (i == 46))
    labels[fissure] = 0
    cap = (labels == 2) & (k < 11)
    assert 0 < cap.sum() < 0.02 * (labels == 2).sum()
    np.testing.assert_array_equal(drop_extrapulmonary_air(labels), labels)


def test_a_large_piece_below_a_gap_is_a_lobe_and_stays() -> None:
    labels = lungs()
    k, j, i = grid()
    lobe = (((k - 3) / 5) ** 2 + ((j - 24) / 12) ** 2 + ((i - 46) / 10) ** 2 <= 1) & (labels == 0)
    lobe |= (k >= 3) & (k < 10) & (j == 24) & (i == 46) & (labels == 0)  # joined by a bridge
    labels[lobe] = 2
    assert lobe.sum() > 0.02 * (labels == 2).sum()
    np.testing.assert_array_equal(drop_extrapulmonary_air(labels), labels)


@pytest.mark.parametrize("axes, flips", [((0, 1, 2), (True, False, False)), ((1, 0, 2), (False, True, True)),
                                         ((2, 0, 1), (True, False, True))])
def test_storage_order_does_not_change_which_voxels_go(axes, flips) -> None:
    labels = lungs()
    labels[trachea() & (labels == 0)] = 1
    labels[gas_bubble(labels, gap=3)] = 2
    # LPS: i -> left (+x), j -> posterior (+y), k -> superior (+z); the phantom's j runs anterior -> posterior
    geometry = Geometry((SHAPE[2], SHAPE[1], SHAPE[0]), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()))
    expected = drop_extrapulmonary_air(labels, geometry.direction_matrix)
    assert (expected != labels).sum() > 20
    stored, stored_geometry = store_differently(labels, geometry, axes, flips)
    got = drop_extrapulmonary_air(stored, stored_geometry.direction_matrix)
    np.testing.assert_array_equal(got, store_differently(expected, geometry, axes, flips)[0])


def test_postprocess_applies_it_and_can_be_told_not_to() -> None:
    labels = lungs()
    k, j, i = grid()
    bronchus = (k == 40) & (j == 22) & (i >= 25) & (i <= 31)  # joins the tube to the right lung
    tube = trachea() & (labels == 0) & (k > 40)
    mask = (labels > 0) | tube | bronchus
    geometry = Geometry((SHAPE[2], SHAPE[1], SHAPE[0]), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()))
    cleaned = postprocess(mask, geometry)
    kept = postprocess(mask, geometry, PostprocessOptions(drop_extrapulmonary_air=False))
    assert kept[tube].any() and not cleaned[tube].any()
    unsplit = postprocess(mask, geometry, PostprocessOptions(split_left_right=False))
    np.testing.assert_array_equal(unsplit, (cleaned > 0).astype(np.uint8))
