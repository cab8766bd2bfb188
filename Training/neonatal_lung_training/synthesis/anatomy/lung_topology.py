"""Turn lung tissue classes into the final right/left label: topology guarantees and pulmonary vessels.

Shared by the procedural and atlas anatomies. The right/left split is the hardest part of the project's
post-processing, so the generator controls it exactly: either the two lungs share a face anteriorly over
several slices (one 6-connected component, as with a thin neonatal anterior junction line) or they are at
least two voxels apart everywhere. Each lung is also a single connected component, because elastic
warps can pinch off specks that no annotator would label.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from NeonatalLungSegLib.geometry import Geometry

from .procedural import Tissue

RIGHT, LEFT = 1, 2
_MIN_CONTACT_SLICES = 3


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """Largest 6-connected component of ``mask`` (computed on its bounding box only, for speed)."""
    if not mask.any():
        return mask
    box = ndimage.find_objects(mask.astype(np.uint8))[0]
    labels, count = ndimage.label(mask[box])
    if count > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        out = np.zeros_like(mask)
        out[box] = labels == int(np.argmax(sizes))
        return out
    return mask


def _contact(right: np.ndarray, left: np.ndarray) -> np.ndarray:
    """(k, j, i) of right voxels that share a face with a left voxel."""
    touch = np.zeros_like(right)
    for axis in range(3):
        a = [slice(None)] * 3
        b = [slice(None)] * 3
        a[axis], b[axis] = slice(None, -1), slice(1, None)
        touch[tuple(a)] |= right[tuple(a)] & left[tuple(b)]
        touch[tuple(b)] |= right[tuple(b)] & left[tuple(a)]
    return np.argwhere(touch)


def _touch_anteriorly(right: np.ndarray, left: np.ndarray) -> bool:
    """Whether the lungs share faces on enough slices, all in front of their mean antero-posterior row."""
    where = _contact(right, left)
    if len(np.unique(where[:, 0])) < _MIN_CONTACT_SLICES:
        return False
    return bool(where[:, 1].max() < np.argwhere(right | left)[:, 1].mean())


def _join_anteriorly(tissue: np.ndarray, right: np.ndarray, left: np.ndarray,
                     rng: np.random.Generator) -> None:
    """Bridge the medial gap between the lungs on a few anterior rows of a few slices, in place.

    Right is at smaller i (patient right, LPS +x = left on an identity grid). Candidates are rows in
    front of the lungs' mean antero-posterior position, on slices in the upper 60 % of the lungs (where
    the anterior junction line is); the run of slices with the narrowest such gaps is bridged. On each
    bridged row the right lung grows to the middle of the gap and the left lung from the next voxel,
    so the two share a face.
    """
    n_k, n_j, n_i = right.shape
    union = np.argwhere(right | left)
    if len(union) == 0:
        return
    k_lo, k_hi = union[:, 0].min(), union[:, 0].max()
    j_lo, j_hi = union[:, 1].min(), union[:, 1].max()
    r_edge = n_i - 1 - np.argmax(right[:, :, ::-1], axis=2)      # most medial right voxel per row
    l_edge = np.argmax(left, axis=2)                            # most medial left voxel per row
    both = right.any(axis=2) & left.any(axis=2) & (l_edge > r_edge)
    # Prefer the front third of the lungs on their upper half; relax if the lungs never get there.
    for front_fraction, upper_fraction in ((0.35, 0.5), (0.5, 0.3), (1.0, 0.0)):
        front = np.arange(n_j)[None, :] <= j_lo + front_fraction * (j_hi - j_lo)
        upper = (np.arange(n_k) >= k_lo + upper_fraction * (k_hi - k_lo))[:, None]
        gap = np.where(both & front & upper, l_edge - r_edge - 1, 10**6)
        rows = np.argmin(gap, axis=1)
        cost = gap[np.arange(n_k), rows].astype(float)
        if np.count_nonzero(cost < 10**6) >= _MIN_CONTACT_SLICES:
            break
    else:
        return
    run = int(rng.integers(4, 8))
    window = np.convolve(cost, np.ones(run), mode="valid") if n_k >= run else cost[:1] * 0
    start = int(np.argmin(window))
    for k in range(start, min(start + run, n_k)):
        if cost[k] >= 10**6:
            continue
        for j in range(max(rows[k] - 2, 0), min(rows[k] + 3, n_j)):
            if not both[k, j]:
                continue
            lo, hi = r_edge[k, j], l_edge[k, j]
            mid = (lo + hi) // 2
            tissue[k, j, lo + 1:mid + 1] = Tissue.LUNG_RIGHT
            tissue[k, j, mid + 1:hi] = Tissue.LUNG_LEFT
            right[k, j, lo + 1:mid + 1] = True
            left[k, j, mid + 1:hi] = True


def _separate(tissue: np.ndarray, right: np.ndarray, left: np.ndarray) -> None:
    """Clear every lung voxel within one voxel of a point that is within one voxel of both lungs.

    Afterwards any remaining right and left voxels are at Chebyshev distance >= 3, i.e. at least two
    background voxels lie between them along every line.
    """
    near_r = ndimage.maximum_filter(right, size=3)
    near_l = ndimage.maximum_filter(left, size=3)
    zone = near_r & near_l
    if not zone.any():
        return
    zone = ndimage.maximum_filter(zone, size=3)
    for mask in (right, left):
        cut = mask & zone
        tissue[cut] = Tissue.MEDIASTINUM
        mask &= ~cut


def _vessel_tree(rng: np.random.Generator, hilum: np.ndarray, lateral: float) -> list:
    """Segments (start, end, radius) of a few branching vessels running out from the hilum."""
    segments = []
    stack = []
    for _ in range(int(rng.integers(2, 4))):
        direction = np.array([lateral, rng.normal(0, 0.5), rng.normal(0, 0.9)])
        stack.append((hilum, direction / np.linalg.norm(direction), rng.uniform(10.0, 15.0),
                      rng.uniform(1.1, 1.6), 0))
    while stack:
        start, direction, length, radius, depth = stack.pop()
        end = start + direction * length
        segments.append((start, end, radius))
        if depth < 2:
            for _ in range(2):
                child = direction + rng.normal(0, 0.55, 3)
                stack.append((end, child / np.linalg.norm(child), length * rng.uniform(0.6, 0.8),
                              radius * 0.75, depth + 1))
    return segments


def _draw_vessels(tissue: np.ndarray, label: np.ndarray, geometry: Geometry,
                  rng: np.random.Generator) -> None:
    """Paint bright branching vessels inside each lung near its hilum; the lung label is unchanged."""
    for side, lateral in ((RIGHT, -1.0), (LEFT, 1.0)):
        index = np.argwhere(label == side)
        if len(index) < 50:
            continue
        points = geometry.array_index_to_lps(index).astype(np.float32)
        centre = points.mean(axis=0)
        height = np.ptp(points[:, 2])
        level = centre[2] + 0.1 * height
        slab = (np.abs(points[:, 2] - level) < 4.0) & (np.abs(points[:, 1] - centre[1]) < 8.0)
        if slab.any():
            medial = points[slab][np.argmin(points[slab, 0] * lateral)]
            hilum = medial + np.array([lateral * 3.0, 0.0, 0.0], np.float32)
        else:
            hilum = centre
        columns = [np.ascontiguousarray(points[:, c]) for c in range(3)]
        hit = np.zeros(len(points), bool)
        for start, end, radius in _vessel_tree(rng, hilum, lateral):
            # Bounding-box pre-selection keeps this to a few hundred points per segment.
            lo, hi = np.minimum(start, end) - radius, np.maximum(start, end) + radius
            box = np.flatnonzero((columns[0] > lo[0]) & (columns[0] < hi[0]) & (columns[1] > lo[1])
                                 & (columns[1] < hi[1]) & (columns[2] > lo[2]) & (columns[2] < hi[2]))
            a = start.astype(np.float32)
            d = (end - start).astype(np.float32)
            rel = points[box] - a
            t = np.clip(rel @ d / np.float32(d @ d), 0.0, 1.0)
            hit[box[np.sum((rel - t[:, None] * d) ** 2, axis=1) < radius * radius]] = True
        chosen = index[hit]
        tissue[chosen[:, 0], chosen[:, 1], chosen[:, 2]] = Tissue.VESSEL


def finalize_lungs(tissue: np.ndarray, geometry: Geometry, rng: np.random.Generator,
                   touching: bool) -> np.ndarray:
    """Enforce the requested lung topology on ``tissue`` (in place) and return the 0/1/2 label."""
    right = tissue == Tissue.LUNG_RIGHT
    left = tissue == Tissue.LUNG_LEFT

    def drop_fragments() -> None:
        for mask in (right, left):
            kept = _largest_component(mask)
            tissue[mask & ~kept] = Tissue.MEDIASTINUM
            mask &= kept

    drop_fragments()
    if not touching or not _touch_anteriorly(right, left):
        _separate(tissue, right, left)            # e.g. the atlas lungs meet posteriorly at their bases
        drop_fragments()
        if touching:
            _join_anteriorly(tissue, right, left, rng)
    label = np.zeros(tissue.shape, np.uint8)
    label[right] = RIGHT
    label[left] = LEFT
    _draw_vessels(tissue, label, geometry, rng)
    return label
