"""Surface area of a voxel mask: a Crofton estimate whose direction weights are fitted to the grid.

Why not the obvious ways. Counting voxel faces overestimates a smooth surface by up to 50 %. ITK's
``LabelShapeStatisticsImageFilter`` perimeter (a Crofton estimate over the 13 lattice directions of the 3x3x3
neighbourhood) is within 0.5 % on spheres and on ellipsoids at isotropic spacing, but 5 % to 15 % too large on
ellipsoids at 0.7 x 0.9 x 2 mm, the anisotropic grids of MRI: its 13 directions crowd towards the coarse axis.
Marching cubes on a binary mask overestimates too, and needs VTK or scikit-image, which the engine does not use.

The estimate here. By Crofton's formula the area of a surface is twice the mean, over all line directions,
of the number of times the lines of that direction cross it per unit cross-section. On a voxel grid the lines
along a lattice vector v (integer steps in i, j, k) are sampled exactly: along each such line the mask changes
value where the line crosses the surface, and the lines of direction v are |D v| / voxel volume per unit
cross-section (D: direction matrix times spacing). So for lattice directions u_d with weights w_d

    area ~= 2 * sum_d w_d * crossings_d * voxel_volume / |D v_d|

which is exact for a plane of normal n when sum_d w_d |n . u_d| = 1/2 (the mean of |n . u| over the sphere).
The directions are every primitive lattice vector at most ``REACH`` times the coarsest spacing long (and at
least ``MIN_REACH`` times the finest), so the physical directions cover the sphere on anisotropic grids too, and
the weights are the non-negative least-squares fit of that condition over 1500 normals spread over the
half-sphere. On lung-sized spheres and ellipsoids at 1 x 1 x 1, 0.7 x 0.9 x 2 (straight and obliquely rotated)
and 0.5 x 0.5 x 3 mm the area is within 2 % of the analytic value wherever the object is about eight slices
across or more (docs/descriptors.md, Testing/lib/test_descriptors.py).
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
from scipy.optimize import nnls

from ..geometry import Geometry

REACH = 2.0       # longest direction: this many times the coarsest spacing
MIN_REACH = 2.5   # ... and at least this many times the finest (more directions on isotropic grids)
NORMALS = 1500    # plane orientations the weights are fitted on


def _half_sphere(count: int) -> np.ndarray:
    """``count`` unit vectors spread evenly over the upper half-sphere (a Fibonacci lattice)."""
    index = np.arange(count) + 0.5
    z = index / count
    ring = np.sqrt(1 - z * z)
    angle = math.pi * (1 + math.sqrt(5)) * index
    return np.stack([np.cos(angle) * ring, np.sin(angle) * ring, z], axis=1)


@functools.lru_cache(maxsize=32)
def crofton_directions(spacing: tuple[float, float, float],
                       direction: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lattice vectors (i, j, k), their weights and physical lengths (mm) for a grid; zero weights dropped."""
    matrix = np.asarray(direction, dtype=float).reshape(3, 3) * np.asarray(spacing)[None, :]
    longest = max(REACH * max(spacing), MIN_REACH * min(spacing))
    reach = [int(math.floor(longest / s + 1e-9)) for s in spacing]
    vectors = []
    for v in itertools.product(*(range(-r, r + 1) for r in reach)):
        if v == (0, 0, 0) or math.gcd(math.gcd(abs(v[0]), abs(v[1])), abs(v[2])) != 1:
            continue
        if next(c for c in v if c) < 0:  # v and -v are one set of lines
            continue
        if np.linalg.norm(matrix @ np.asarray(v, dtype=float)) <= longest + 1e-9:
            vectors.append(v)
    vectors = np.asarray(vectors, dtype=np.int64)
    physical = vectors @ matrix.T
    lengths = np.linalg.norm(physical, axis=1)
    cosines = np.abs(_half_sphere(NORMALS) @ (physical / lengths[:, None]).T)
    weights, _ = nnls(cosines, np.full(NORMALS, 0.5))
    used = weights > 1e-12
    return vectors[used], weights[used], lengths[used]


def _crossings(mask: np.ndarray, step: np.ndarray) -> int:
    """Voxel pairs (x, x + step) of which exactly one is in ``mask``; ``step`` in (i, j, k), ``mask`` (k, j, i)
    padded so that no crossing is lost at its border."""
    first, second = [], []
    for axis, delta in zip(range(3), (int(step[2]), int(step[1]), int(step[0]))):
        n = mask.shape[axis]
        first.append(slice(max(0, -delta), n - max(0, delta)))
        second.append(slice(max(0, delta), n - max(0, -delta)))
    return int(np.count_nonzero(mask[tuple(first)] != mask[tuple(second)]))


def surface_area(mask: np.ndarray, geometry: Geometry) -> float:
    """Area (mm²) of the surface a boolean (k, j, i) mask samples on ``geometry``."""
    vectors, weights, lengths = crofton_directions(tuple(geometry.spacing), tuple(geometry.direction))
    mask = np.asarray(mask, dtype=bool)
    kji = np.nonzero(mask)
    if kji[0].size == 0:
        return 0.0
    box = tuple(slice(int(a.min()), int(a.max()) + 1) for a in kji)
    pad = np.abs(vectors).max(axis=0)
    padded = np.pad(mask[box], [(int(pad[2]),) * 2, (int(pad[1]),) * 2, (int(pad[0]),) * 2])
    voxel = float(np.prod(geometry.spacing))
    total = sum(w * _crossings(padded, v) / length for v, w, length in zip(vectors, weights, lengths))
    return 2.0 * voxel * float(total)
