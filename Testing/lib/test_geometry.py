"""The one owner of axis-order and LPS/RAS conversions, checked against SimpleITK itself."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import SimpleITK as sitk

from NeonatalLungSegLib.geometry import Geometry, array_to_image, image_to_array, lps_to_ras, reorientation


def rotation_about(axis: int, degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    a, b = [x for x in range(3) if x != axis]
    r = np.eye(3)
    r[a, a], r[a, b], r[b, a], r[b, b] = c, -s, s, c
    return r


def signed_permutations() -> list[np.ndarray]:
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            m = np.zeros((3, 3))
            for col, row in enumerate(perm):
                m[row, col] = signs[col]
            out.append(m)
    return out


def make_geometry(direction: np.ndarray, size=(7, 5, 4), spacing=(0.6, 0.9, 2.5),
                  origin=(-12.0, 30.5, 7.25)) -> Geometry:
    return Geometry(size, spacing, origin, tuple(float(v) for v in direction.ravel()))


DIRECTIONS = [m for m in signed_permutations()] + [
    signed_permutations()[7] @ rotation_about(2, 25),
    rotation_about(0, 40) @ rotation_about(1, -20),
]


def test_array_image_round_trip_keeps_voxels_and_geometry() -> None:
    geometry = make_geometry(rotation_about(2, 30) @ np.diag([-1, 1, -1]))
    array = np.arange(np.prod(geometry.array_shape), dtype=np.int16).reshape(geometry.array_shape)
    image = array_to_image(array, geometry)
    assert image.GetSize() == geometry.size  # ITK (i, j, k) vs NumPy (k, j, i)
    assert image.GetPixel(6, 4, 3) == array[3, 4, 6]
    back, back_geometry = image_to_array(image)
    np.testing.assert_array_equal(back, array)
    assert back_geometry == geometry


def test_array_to_image_rejects_mismatched_shape() -> None:
    geometry = make_geometry(np.eye(3))
    with pytest.raises(ValueError, match="does not match"):
        array_to_image(np.zeros((7, 5, 4)), geometry)


def test_image_to_array_rejects_2d() -> None:
    with pytest.raises(ValueError, match="3D"):
        image_to_array(sitk.Image(8, 8, sitk.sitkFloat32))


@pytest.mark.parametrize("direction", DIRECTIONS[::5] + DIRECTIONS[-2:])
def test_index_to_lps_matches_itk(direction: np.ndarray) -> None:
    geometry = make_geometry(direction)
    image = array_to_image(np.zeros(geometry.array_shape, np.uint8), geometry)
    for ijk in [(0, 0, 0), (6, 4, 3), (2.5, 1.25, 0.5)]:
        expected = image.TransformContinuousIndexToPhysicalPoint(ijk)
        np.testing.assert_allclose(geometry.index_to_lps(np.array(ijk)), expected, atol=1e-9)
        np.testing.assert_allclose(geometry.array_index_to_lps(np.array(ijk[::-1])), expected, atol=1e-9)


def test_ijk_to_ras_negates_the_first_two_patient_axes_and_inverts() -> None:
    geometry = make_geometry(rotation_about(1, 15) @ np.diag([1, -1, 1]))
    ras = geometry.ijk_to_ras_matrix()
    lps_point = geometry.index_to_lps(np.array([3.0, 2.0, 1.0]))
    ras_point = ras @ np.array([3.0, 2.0, 1.0, 1.0])
    np.testing.assert_allclose(ras_point[:3], lps_point * np.array([-1, -1, 1]), atol=1e-9)
    np.testing.assert_allclose(lps_to_ras() @ lps_to_ras(), np.eye(4))
    back = Geometry.from_ijk_to_ras_matrix(ras, geometry.size)
    np.testing.assert_allclose(back.spacing, geometry.spacing)
    np.testing.assert_allclose(back.origin, geometry.origin)
    np.testing.assert_allclose(back.direction, geometry.direction, atol=1e-12)


@pytest.mark.parametrize("index", range(len(DIRECTIONS)))
def test_reorientation_is_exact_and_preserves_physical_positions(index: int) -> None:
    geometry = make_geometry(DIRECTIONS[index])
    array = np.random.default_rng(index).integers(0, 1000, geometry.array_shape).astype(np.int32)
    plan = reorientation(geometry, "LPS")
    canonical = plan.to_canonical(array)
    assert canonical.shape == plan.target.array_shape
    np.testing.assert_array_equal(plan.from_canonical(canonical), array)
    # Every canonical voxel sits where its source voxel sat.
    rng = np.random.default_rng(100 + index)
    for kji in rng.integers(0, canonical.shape, size=(20, 3)):
        value = canonical[tuple(kji)]
        source = np.argwhere(array == value)
        assert len(source) >= 1
        positions = geometry.array_index_to_lps(source)
        target = plan.target.array_index_to_lps(kji)
        assert np.min(np.linalg.norm(positions - target, axis=1)) < 1e-6
    # Each canonical axis points within 60 degrees of L, P, S respectively (closest grid).
    assert np.all(np.diag(plan.target.direction_matrix) > 0.5)


@pytest.mark.parametrize("code", ["LPS", "RAS", "RAI", "PLS"])
def test_reorientation_agrees_with_sitk_dicomorient_on_axis_aligned_grids(code: str) -> None:
    for direction in signed_permutations()[::4]:
        geometry = make_geometry(direction)
        array = np.random.default_rng(1).normal(size=geometry.array_shape).astype(np.float32)
        plan = reorientation(geometry, code)
        oriented = sitk.DICOMOrient(array_to_image(array, geometry), code)
        expected, expected_geometry = image_to_array(oriented)
        np.testing.assert_array_equal(plan.to_canonical(array), expected)
        np.testing.assert_allclose(plan.target.origin, expected_geometry.origin, atol=1e-9)
        np.testing.assert_allclose(plan.target.direction, expected_geometry.direction, atol=1e-12)
        np.testing.assert_allclose(plan.target.spacing, expected_geometry.spacing)


@pytest.mark.parametrize("code", ["LPX", "LLS", "LP", ""])
def test_reorientation_rejects_invalid_codes(code: str) -> None:
    with pytest.raises(ValueError, match="orientation code"):
        reorientation(make_geometry(np.eye(3)), code)
