"""Post-processing: cleaning, hole filling and, above all, the physical right/left split.

The synthetic lungs are defined in patient (LPS) space and rasterised onto each grid, so one truth is
checked on identity, flipped, permuted and oblique grids. In LPS, +x is the patient's left.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from NeonatalLungSegLib.geometry import Geometry
from NeonatalLungSegLib.inference.postprocess import LEFT_LUNG, RIGHT_LUNG, PostprocessOptions, postprocess

# Ellipsoids (centre, semi-axes), LPS mm: the right lung at negative x, the left at positive x. The
# left one is the larger here so that ordering by size can never pass for ordering by side.
RIGHT = ((-14.0, 0.0, 0.0), (10.0, 15.0, 22.0))
LEFT = ((14.0, 0.0, 0.0), (11.0, 16.0, 24.0))


def make_geometry(direction: np.ndarray = np.eye(3), size: tuple[int, int, int] = (64, 64, 40),
                  spacing: tuple[float, float, float] = (1.0, 1.0, 1.5)) -> Geometry:
    """Grid of ``size`` (i, j, k) centred on the LPS origin, index axes along ``direction``'s columns."""
    direction = np.asarray(direction, dtype=float)
    half = (np.asarray(size) - 1) * np.asarray(spacing) / 2
    origin = -direction @ half
    return Geometry(size, spacing, tuple(float(v) for v in origin),
                    tuple(float(v) for v in direction.ravel()))


def lps_points(geometry: Geometry) -> np.ndarray:
    """LPS position of every voxel, shape (k, j, i, 3)."""
    kji = np.stack(np.meshgrid(*[np.arange(n) for n in geometry.array_shape], indexing="ij"), axis=-1)
    return geometry.array_index_to_lps(kji)


def ellipsoid(points: np.ndarray, centre: tuple, axes: tuple) -> np.ndarray:
    return (((points - np.asarray(centre)) / np.asarray(axes)) ** 2).sum(axis=-1) <= 1.0


def box(points: np.ndarray, low: tuple, high: tuple) -> np.ndarray:
    return np.all((points >= np.asarray(low)) & (points <= np.asarray(high)), axis=-1)


def rotation_about_k(degrees: float) -> np.ndarray:
    a = np.radians(degrees)
    return np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])


def physical_x(labels: np.ndarray, value: int, geometry: Geometry) -> float:
    kji = np.argwhere(labels == value)
    return float(geometry.array_index_to_lps(kji.mean(axis=0))[0])


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def assert_lungs_match(labels: np.ndarray, right: np.ndarray, left: np.ndarray, geometry: Geometry,
                       min_dice: float = 0.99) -> None:
    assert labels.dtype == np.uint8
    assert set(np.unique(labels)) <= {0, RIGHT_LUNG, LEFT_LUNG}
    assert dice(labels == RIGHT_LUNG, right) >= min_dice
    assert dice(labels == LEFT_LUNG, left) >= min_dice
    assert physical_x(labels, RIGHT_LUNG, geometry) < 0 < physical_x(labels, LEFT_LUNG, geometry)


GRIDS = {
    "identity": np.eye(3),
    "x_flipped": np.diag([-1.0, 1.0, 1.0]),
    # Index i runs head-wards, j to the left, k anterior: nothing lines up with the array axes.
    "permuted": np.array([[0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]]),
    "oblique": rotation_about_k(20.0),
}


@pytest.mark.parametrize("name", sorted(GRIDS))
def test_separate_lungs_labelled_by_physical_side(name: str) -> None:
    size = (64, 64, 40) if name != "permuted" else (60, 48, 40)
    spacing = (1.0, 1.0, 1.5) if name != "permuted" else (1.0, 1.5, 1.5)
    geometry = make_geometry(GRIDS[name], size=size, spacing=spacing)
    points = lps_points(geometry)
    right, left = ellipsoid(points, *RIGHT), ellipsoid(points, *LEFT)
    labels = postprocess(right | left, geometry)
    assert labels.shape == geometry.array_shape
    assert_lungs_match(labels, right, left, geometry)


def test_flipped_x_puts_right_lung_at_larger_index() -> None:
    geometry = make_geometry(np.diag([-1.0, 1.0, 1.0]))
    points = lps_points(geometry)
    right, left = ellipsoid(points, *RIGHT), ellipsoid(points, *LEFT)
    labels = postprocess(right | left, geometry)
    i_right = np.argwhere(labels == RIGHT_LUNG)[:, 2].mean()
    i_left = np.argwhere(labels == LEFT_LUNG)[:, 2].mean()
    assert i_right > i_left  # on an identity grid it is the other way round
    identity = make_geometry()
    plain = postprocess(np.flip(right | left, axis=2), identity)
    assert np.argwhere(plain == RIGHT_LUNG)[:, 2].mean() < np.argwhere(plain == LEFT_LUNG)[:, 2].mean()
    # Same patient, mirrored index order: the same voxels, with the same (physical) labels.
    np.testing.assert_array_equal(np.flip(labels, axis=2), plain)


def test_touching_lungs_are_split() -> None:
    geometry = make_geometry(spacing=(0.8, 1.0, 1.5))
    points = lps_points(geometry)
    right, left = ellipsoid(points, *RIGHT), ellipsoid(points, *LEFT)
    bridge = box(points, (-4.0, -3.0, -4.0), (5.0, 3.0, 4.0))  # several voxels across in every axis
    mask = right | left | bridge
    assert _component_count(mask) == 1
    labels = postprocess(mask, geometry)
    assert_lungs_match(labels, right, left, geometry, min_dice=0.95)
    for value, truth in ((RIGHT_LUNG, right), (LEFT_LUNG, left)):
        assert abs(np.count_nonzero(labels == value) / np.count_nonzero(truth) - 1) < 0.03


def test_lungs_pressed_together_are_split_on_oblique_grid() -> None:
    """A broad, thin anterior junction: the lungs overlap slightly instead of meeting at a bridge."""
    geometry = make_geometry(rotation_about_k(-25.0))
    points = lps_points(geometry)
    right = ellipsoid(points, (-10.0, 0.0, 0.0), (11.0, 16.0, 24.0))
    left = ellipsoid(points, (10.0, 0.0, 0.0), (10.0, 15.0, 22.0))
    labels = postprocess(right | left, geometry)
    overlap = right & left
    assert_lungs_match(labels, right & ~overlap, left & ~overlap, geometry, min_dice=0.95)


def test_specks_removed_and_kept_when_switched_off() -> None:
    geometry = make_geometry()
    points = lps_points(geometry)
    right, left = ellipsoid(points, *RIGHT), ellipsoid(points, *LEFT)
    specks = box(points, (-30.0, -30.0, -28.0), (-28.0, -28.0, -26.0)) \
        | box(points, (27.0, 25.0, 20.0), (29.0, 27.0, 22.0))
    labels = postprocess(right | left | specks, geometry)
    assert not labels[specks].any()
    assert_lungs_match(labels, right, left, geometry)
    kept = postprocess(right | left | specks, geometry, PostprocessOptions(keep_largest_components=False))
    assert kept[specks].all()
    on_specks = np.where(specks, kept, 0)  # each speck joins the lung on its side
    assert physical_x(on_specks, RIGHT_LUNG, geometry) < 0 < physical_x(on_specks, LEFT_LUNG, geometry)


def test_holes_filled_in_3d_and_slice_wise() -> None:
    geometry = make_geometry()
    points = lps_points(geometry)
    right, left = ellipsoid(points, *RIGHT), ellipsoid(points, *LEFT)
    cavity = ellipsoid(points, (-14.0, 0.0, 0.0), (3.0, 3.0, 3.0))  # enclosed in 3D
    vessel = box(points, (12.0, -2.0, -40.0), (16.0, 2.0, 40.0))  # open at both ends, enclosed per slice
    mask = (right | left) & ~cavity & ~vessel
    labels = postprocess(mask, geometry)
    assert (labels[cavity] == RIGHT_LUNG).all()
    # Near the poles the vessel fills the whole lung cross-section, so nothing encloses it there.
    assert (labels[vessel & left & (np.abs(points[..., 2]) < 18.0)] == LEFT_LUNG).all()
    assert not labels[vessel & ~left].any()
    unfilled = postprocess(mask, geometry, PostprocessOptions(fill_holes=False))
    assert not unfilled[cavity].any() and not unfilled[vessel].any()


def test_gap_between_lungs_is_not_filled() -> None:
    """Two lungs that enclose a region together (as around the heart) must not have it filled."""
    geometry = make_geometry()
    points = lps_points(geometry)
    centre = (0.0, 0.0, 0.0)
    ring = ellipsoid(points, centre, (22.0, 22.0, 60.0)) & ~ellipsoid(points, centre, (14.0, 14.0, 60.0))
    right = ring & (points[..., 0] < -1.0)
    left = ring & (points[..., 0] > 1.0)
    mask = right | left | (ring & (np.abs(points[..., 1]) > 20.0))  # joined in front and behind
    labels = postprocess(mask, geometry)
    heart = ellipsoid(points, (0, 0, 0), (12, 12, 60))
    assert not labels[heart].any()
    assert dice(labels == RIGHT_LUNG, right) > 0.95 and dice(labels == LEFT_LUNG, left) > 0.95


@pytest.mark.parametrize("centre_x, expected", [(-14.0, RIGHT_LUNG), (14.0, LEFT_LUNG)])
@pytest.mark.parametrize("name", ["identity", "x_flipped"])
def test_single_lung_goes_to_its_body_side(name: str, centre_x: float, expected: int) -> None:
    geometry = make_geometry(GRIDS[name])
    points = lps_points(geometry)
    lung = ellipsoid(points, (centre_x, 0.0, 0.0), (11.0, 16.0, 24.0))
    labels = postprocess(lung, geometry)
    assert np.count_nonzero(labels == expected) == np.count_nonzero(lung)
    assert np.count_nonzero(labels == 3 - expected) == 0


def test_single_waisted_lung_is_not_cut() -> None:
    """A lung pinched superior-inferiorly still separates into two cores; it must stay one lung."""
    geometry = make_geometry()
    points = lps_points(geometry)
    upper = ellipsoid(points, (14.0, 0.0, 14.0), (10.0, 14.0, 14.0))
    lower = ellipsoid(points, (14.0, 0.0, -14.0), (10.0, 14.0, 14.0))
    neck = box(points, (12.0, -2.0, -2.0), (16.0, 2.0, 2.0))
    lung = upper | lower | neck
    labels = postprocess(lung, geometry)
    assert np.count_nonzero(labels == LEFT_LUNG) == np.count_nonzero(lung)
    assert not (labels == RIGHT_LUNG).any()


def test_three_large_components_keep_two_largest() -> None:
    geometry = make_geometry()
    points = lps_points(geometry)
    right, left = ellipsoid(points, *RIGHT), ellipsoid(points, *LEFT)
    leak = ellipsoid(points, (0.0, 22.0, -18.0), (7.0, 8.0, 9.0))  # > 10 % of a lung, smaller than both
    assert _component_count(right | left | leak) == 3
    assert np.count_nonzero(leak) > 0.1 * np.count_nonzero(right)
    labels = postprocess(right | left | leak, geometry)
    assert not labels[leak].any()
    assert_lungs_match(labels, right, left, geometry)


def test_lung_with_left_right_waist_beside_the_other_lung_is_not_cut() -> None:
    """A right lung pinched medio-laterally (dense BPD patches can do that) erodes into two left-right
    cores. With the left lung already a separate component it must stay whole: splitting it made a third
    piece, and the smallest piece was thrown away."""
    geometry = make_geometry(size=(80, 64, 40))
    points = lps_points(geometry)
    medial = ellipsoid(points, (-9.0, 0.0, 0.0), (7.0, 14.0, 20.0))
    lateral = ellipsoid(points, (-25.0, 0.0, 0.0), (7.0, 14.0, 20.0))
    waist = box(points, (-19.0, -2.0, -2.0), (-15.0, 2.0, 2.0))
    right = medial | lateral | waist
    left = ellipsoid(points, (22.0, 0.0, 0.0), (9.0, 15.0, 22.0))
    assert _component_count(right | left) == 2
    labels = postprocess(right | left, geometry)
    assert np.count_nonzero(labels[right] == RIGHT_LUNG) == np.count_nonzero(right)
    assert_lungs_match(labels, right, left, geometry, min_dice=0.999)


def test_split_off_gives_one_label_on_the_same_voxels() -> None:
    geometry = make_geometry()
    points = lps_points(geometry)
    mask = ellipsoid(points, *RIGHT) | ellipsoid(points, *LEFT) | box(points, (-4, -3, -4), (5, 3, 4))
    split = postprocess(mask, geometry)
    merged = postprocess(mask, geometry, PostprocessOptions(split_left_right=False))
    assert merged.dtype == np.uint8 and set(np.unique(merged)) == {0, 1}
    np.testing.assert_array_equal(merged, (split > 0).astype(np.uint8))


def test_all_options_off_returns_the_mask() -> None:
    geometry = make_geometry()
    points = lps_points(geometry)
    speck = box(points, (-30.0, -30.0, -28.0), (-28.0, -28.0, -26.0))
    mask = ellipsoid(points, *RIGHT) | ellipsoid(points, *LEFT) | speck
    off = PostprocessOptions(keep_largest_components=False, fill_holes=False, split_left_right=False)
    np.testing.assert_array_equal(postprocess(mask, geometry, off), mask.astype(np.uint8))


def test_empty_mask_gives_zeros() -> None:
    geometry = make_geometry()
    labels = postprocess(np.zeros(geometry.array_shape, dtype=bool), geometry)
    assert labels.dtype == np.uint8 and labels.shape == geometry.array_shape and not labels.any()


def test_input_not_modified_and_non_bool_accepted() -> None:
    geometry = make_geometry()
    points = lps_points(geometry)
    mask = ellipsoid(points, *RIGHT) | ellipsoid(points, *LEFT) | box(points, (-4, -3, -4), (5, 3, 4))
    mask &= ~ellipsoid(points, (-14.0, 0.0, 0.0), (3.0, 3.0, 3.0))
    before = mask.copy()
    labels = postprocess(mask, geometry)
    np.testing.assert_array_equal(mask, before)
    np.testing.assert_array_equal(postprocess(mask.astype(np.uint8) * 255, geometry), labels)


def test_shape_mismatch_rejected() -> None:
    with pytest.raises(ValueError):
        postprocess(np.zeros((3, 4, 5), dtype=bool), make_geometry())


@pytest.mark.slow
def test_full_size_volume_completes() -> None:
    """300x512x512 with touching lungs: proves the bounding-box/coarse design scales (no timing)."""
    size = (512, 512, 300)
    geometry = make_geometry(size=size, spacing=(0.35, 0.35, 1.0))
    mask = np.zeros(geometry.array_shape, dtype=bool)
    k, j, i = np.ogrid[:300, :512, :512]
    for centre_i, axes in ((180, (100.0, 120.0, 72.0)), (330, (95.0, 115.0, 82.0))):
        for start in range(0, 300, 50):  # in slabs, to keep the float temporaries small
            kk = k[start:start + 50]
            inside = ((kk - 150) / axes[0]) ** 2 + ((j - 256) / axes[1]) ** 2 \
                + ((i - centre_i) / axes[2]) ** 2 <= 1.0
            mask[start:start + 50] |= inside
    assert _component_count(mask[:, 256:257, :]) == 1  # the ellipsoids overlap: one component
    labels = postprocess(mask, geometry)
    assert set(np.unique(labels[::4, ::4, ::4])) == {0, RIGHT_LUNG, LEFT_LUNG}
    assert labels[150, 256, 180] == RIGHT_LUNG and labels[150, 256, 330] == LEFT_LUNG


def _component_count(mask: np.ndarray) -> int:
    return ndimage.label(mask)[1]


def test_liver_dome_under_the_lung_is_not_filled() -> None:
    """In the lowest slices the lung wraps around the diaphragm dome: the dome is enclosed in those axial
    slices but is liver, open below. Filling it labelled the liver dome as lung on real MRI."""
    geometry = make_geometry(spacing=(1.0, 1.0, 1.0), size=(64, 64, 60))
    points = lps_points(geometry)
    right, left = ellipsoid(points, (-14.0, 0.0, 0.0), (10.0, 15.0, 26.0)), ellipsoid(points, *LEFT)
    dome = ellipsoid(points, (-14.0, 0.0, -30.0), (7.0, 9.0, 14.0))  # pushes up into the right lung base
    mask = (right | left) & ~dome
    enclosed = dome & right
    assert enclosed.any()
    labels = postprocess(mask, geometry)
    # Only the dome's tip (one slice, a hole under 5 % of the lung's largest slice) may be taken for a vessel.
    assert np.count_nonzero(labels[enclosed]) <= 0.05 * np.count_nonzero(enclosed)
    assert dice(labels == RIGHT_LUNG, right & ~dome) > 0.98


def test_lung_cut_in_two_by_the_network_is_reassembled_on_its_side() -> None:
    """The network cut the right lung into upper and lower pieces, each larger than the left lung: the two
    largest pieces are then both right lung and must never be labelled right and left."""
    geometry = make_geometry(size=(64, 64, 48))
    points = lps_points(geometry)
    right = ellipsoid(points, (-14.0, 0.0, 0.0), (11.0, 17.0, 30.0))
    left = ellipsoid(points, (14.0, 0.0, 0.0), (8.0, 10.0, 14.0))
    cut = np.abs(points[..., 2] - 3.75) < 0.5  # a one-slice gap
    mask = (right & ~cut) | left
    assert _component_count(mask) == 3
    labels = postprocess(mask, geometry)
    assert (labels[right & ~cut] == RIGHT_LUNG).all()
    assert (labels[left] == LEFT_LUNG).all()


def test_small_piece_cut_off_a_lung_rejoins_it() -> None:
    """A piece under 10 % of the largest lung, cut off by a thin gap, is lung, not a speck to drop."""
    geometry = make_geometry(size=(64, 64, 48))
    points = lps_points(geometry)
    right, left = ellipsoid(points, (-14.0, 0.0, 0.0), (10.0, 15.0, 28.0)), ellipsoid(points, *LEFT)
    cut = np.abs(points[..., 2] + 23.25) < 0.5  # the lowest tip of the right lung, cut off by one slice
    mask = (right & ~cut) | left
    tip = right & (points[..., 2] < -24.0)
    assert 0 < np.count_nonzero(tip) < 0.1 * np.count_nonzero(left)
    labels = postprocess(mask, geometry)
    assert (labels[tip] == RIGHT_LUNG).all()
