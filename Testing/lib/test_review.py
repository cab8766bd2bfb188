"""NeonatalLungSegLib.dataset.review: least-confident axial slices, on any storage order of the volume."""

from __future__ import annotations

import numpy as np
import pytest

from NeonatalLungSegLib.geometry import Geometry, lps_to_ras
from NeonatalLungSegLib.dataset.review import axial_array_axis, least_confident_slices


def probabilities_with_doubt(shape, axis, doubtful):
    p = np.zeros(shape, np.float32)
    index = [slice(None)] * 3
    for s in range(2, shape[axis] - 2):
        index[axis] = s
        p[tuple(index)][2:6, 2:6] = 0.95
    for s, amount in doubtful.items():
        index[axis] = s
        p[tuple(index)][2:2 + amount, 2:4] = 0.5
    return p


def test_ranks_slices_by_confidence_along_the_axial_axis():
    geometry = Geometry((8, 8, 10), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    assert axial_array_axis(geometry) == 0
    p = probabilities_with_doubt(geometry.array_shape, 0, {4: 4, 6: 2})
    slices = least_confident_slices(p, geometry, count=2)
    assert [s.index for s in slices] == [4, 6]
    # Slice 4: 8 voxels at 0.95 and 8 at 0.5, all in the mask: estimated Dice 2 * 11.6 / (16 + 11.6).
    assert slices[0].confidence == pytest.approx(2 * 11.6 / 27.6, abs=1e-5)
    assert slices[0].score == pytest.approx(1 - slices[0].confidence)
    assert slices[0].uncertain_voxels == 8 and slices[0].lung_voxels == 8
    assert slices[0].center_lps == pytest.approx((3.5, 3.5, 8.0))
    assert slices[0].center_ras == pytest.approx(tuple((lps_to_ras() @ [3.5, 3.5, 8.0, 1])[:3]))
    assert "confidence 84 %" in slices[0].describe() and "8 of 16 voxels undecided" in slices[0].describe()
    assert least_confident_slices(p, geometry, count=0) == []


def test_sagittally_stored_volume_uses_the_superior_inferior_axis():
    # ITK axis 0 runs S->I: the axial slices are NumPy axis 2.
    geometry = Geometry((10, 8, 8), (2.0, 1.0, 1.0), (0.0, 0.0, 0.0), (0, 0, 1, 0, 1, 0, -1, 0, 0))
    assert axial_array_axis(geometry) == 2
    p = probabilities_with_doubt(geometry.array_shape, 2, {3: 4})
    assert least_confident_slices(p, geometry, count=1)[0].index == 3


def test_tiny_apex_slices_are_not_ranked_and_bad_arguments_fail():
    geometry = Geometry((40, 40, 6), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    p = np.zeros(geometry.array_shape, np.float32)
    p[1:5, 5:35, 5:35] = 0.95
    p[2, 5:35, 5:8] = 0.5      # 90 undecided voxels on a big slice
    p[5, 0, 0] = 0.5            # one undecided voxel alone: 100 % but negligible
    assert [s.index for s in least_confident_slices(p, geometry, count=5)][0] == 2
    assert 5 not in [s.index for s in least_confident_slices(p, geometry, count=5)]
    with pytest.raises(ValueError):
        least_confident_slices(p[:-1], geometry)
    with pytest.raises(ValueError):
        least_confident_slices(p, geometry, low=0.6, high=0.9)
