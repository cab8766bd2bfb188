"""Test helper: one physical volume written with a different ITK axis order and direction.

The engine must give the same physical mask however a scanner stores a volume; the tests of the 2D and
3D engines both build such re-stored copies with this one function.
"""

from __future__ import annotations

import numpy as np

from NeonatalLungSegLib.geometry import Geometry


def store_differently(array: np.ndarray, geometry: Geometry, axes: tuple[int, int, int],
                      flips: tuple[bool, bool, bool]) -> tuple[np.ndarray, Geometry]:
    """The same physical volume with ITK axes permuted by ``axes`` and those in ``flips`` reversed."""
    direction = geometry.direction_matrix
    size, spacing = np.array(geometry.size), np.array(geometry.spacing)
    corner = np.zeros(3)
    for itk_axis, flip in enumerate(flips):
        if flip:
            array = np.flip(array, axis=2 - itk_axis)
            corner[itk_axis] = size[itk_axis] - 1
            direction = direction @ np.diag([-1.0 if a == itk_axis else 1.0 for a in range(3)])
    origin = geometry.index_to_lps(corner)
    array = np.transpose(array, [2 - axes[c] for c in (2, 1, 0)])
    stored = Geometry(tuple(int(size[a]) for a in axes), tuple(float(spacing[a]) for a in axes),
                      tuple(float(o) for o in origin), tuple(float(d) for d in direction[:, list(axes)].ravel()))
    return np.ascontiguousarray(array), stored
