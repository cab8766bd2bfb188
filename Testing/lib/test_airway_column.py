"""The trachea joined to an apex, told by the air above it (inference/air/airway_column.py), on phantoms drawn in
patient space (k inferior -> superior, i right -> left): the joined tube goes, midline lung stays, and where
the image cannot tell, nothing changes."""

from __future__ import annotations

import numpy as np
import pytest

from NeonatalLungSegLib.geometry import Geometry
from NeonatalLungSegLib.inference.air.airway_column import drop_airway_column
from NeonatalLungSegLib.inference.air.extrapulmonary_air import drop_extrapulmonary_air
from stored_volumes import store_differently

SHAPE = (64, 48, 64)
LUNG, TISSUE = 0.15, 1.4  # medians measured on real proton MRI (lung core, shell around it)
TOP = 48  # the lungs' highest section


def _grid():
    return np.meshgrid(*[np.arange(n, dtype=float) for n in SHAPE], indexing="ij")


def _chest(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, image, lumen): two lungs up to section TOP and a trachea whose lumen runs from mid-chest to the
    top of the image, leaning one voxel forward every four sections as it rises (a real trachea does)."""
    k, j, i = _grid()
    labels = np.zeros(SHAPE, np.uint8)
    labels[((k - 28) / 20) ** 2 + ((j - 24) / 14) ** 2 + ((i - 18) / 11) ** 2 <= 1] = 1
    labels[((k - 28) / 20) ** 2 + ((j - 24) / 14) ** 2 + ((i - 46) / 11) ** 2 <= 1] = 2
    lumen = (k >= 36) & ((j - 22 + np.maximum(k - 44, 0) // 4) ** 2 + (i - 32) ** 2 <= 4)
    image = np.where((labels > 0) | lumen, LUNG, TISSUE) + np.random.default_rng(seed).normal(0, 0.05, SHAPE)
    return labels, image, lumen


def _joined_trachea(labels: np.ndarray, image: np.ndarray, lumen: np.ndarray) -> np.ndarray:
    """Sections 40-46 of the lumen labelled right lung and tied to the right lung by a dark bridge in plane:
    each section is then one large piece off the midline, which the island rule keeps."""
    k, j, i = _grid()
    tube = lumen & (k >= 40) & (k <= 46) & (labels == 0)
    bridge = (k >= 40) & (k <= 46) & (np.abs(j - 22) <= 1) & (i >= 24) & (i <= 31) & (labels == 0) & ~tube
    labels[tube | bridge] = 1
    image[bridge] = LUNG
    return tube


def test_a_trachea_joined_to_an_apex_goes_and_the_lungs_stay() -> None:
    labels, image, lumen = _chest()
    before = labels.copy()
    tube = _joined_trachea(labels, image, lumen)
    np.testing.assert_array_equal(drop_extrapulmonary_air(labels)[tube], 1)  # the island rule cannot see it
    out = drop_airway_column(labels, image, 0.5)
    assert not out[tube].any()
    np.testing.assert_array_equal(out[before > 0], before[before > 0])


def test_midline_lung_under_tissue_stays_beside_a_real_trachea() -> None:
    labels, image, _ = _chest()
    k, j, i = _grid()
    junction = (np.abs(i - 32) <= 4) & (np.abs(j - 14) <= 3) & (np.abs(k - 34) <= 8) & (labels == 0)
    labels[junction & (i < 32)] = 1
    labels[junction & (i >= 32)] = 2
    image[junction] = LUNG
    np.testing.assert_array_equal(drop_airway_column(labels, image, 0.5), labels)


def test_air_that_ends_just_above_the_apices_is_not_a_trachea() -> None:
    labels, image, lumen = _chest()
    tube = _joined_trachea(labels, image, lumen)
    k = _grid()[0]
    image[lumen & (k > TOP + 4)] = TISSUE  # 5 mm of air above the apices, not the 10 mm a trachea goes on
    np.testing.assert_array_equal(drop_airway_column(labels, image, 0.5), labels)
    assert not drop_airway_column(labels, image, 0.5, spacing=(1.0, 1.0, 3.0))[tube].any()  # 3 mm sections: 12 mm


@pytest.mark.parametrize("change", ["field of view ends above the apices", "no contrast", "switched off",
                                    "a single slice", "one lung"])
def test_where_the_image_cannot_tell_nothing_changes(change: str) -> None:
    labels, image, lumen = _chest()
    _joined_trachea(labels, image, lumen)
    share = 0.5
    if change == "field of view ends above the apices":
        labels, image = labels[:TOP + 6], image[:TOP + 6]
    elif change == "no contrast":
        image = np.full(SHAPE, 1.0)
    elif change == "switched off":
        share = 0.0
    elif change == "a single slice":
        labels, image = labels[44:45], image[44:45]
    else:
        labels[labels == 2] = 0
    np.testing.assert_array_equal(drop_airway_column(labels, image, share), labels)


@pytest.mark.parametrize("axes, flips", [((0, 1, 2), (True, False, False)), ((1, 0, 2), (False, True, True)),
                                         ((2, 0, 1), (True, False, True))])
def test_storage_order_does_not_change_which_voxels_go(axes, flips) -> None:
    labels, image, lumen = _chest()
    _joined_trachea(labels, image, lumen)
    geometry = Geometry((SHAPE[2], SHAPE[1], SHAPE[0]), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()))
    expected = drop_airway_column(labels, image, 0.5, geometry.direction_matrix, geometry.spacing)
    assert (expected != labels).sum() > 20
    stored, stored_geometry = store_differently(labels, geometry, axes, flips)
    stored_image, _ = store_differently(image, geometry, axes, flips)
    got = drop_airway_column(stored, stored_image, 0.5, stored_geometry.direction_matrix, stored_geometry.spacing)
    np.testing.assert_array_equal(got, store_differently(expected, geometry, axes, flips)[0])


def test_an_image_on_another_grid_is_refused() -> None:
    labels, image, _ = _chest()
    with pytest.raises(ValueError, match="does not match"):
        drop_airway_column(labels, image[1:], 0.5)
