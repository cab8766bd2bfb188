"""A negative click on the lung's rim moves that stretch of the boundary inwards.

Why this exists beside the refinement network and the image-contrast rule: once the large errors of a
model's mask are gone, what remains on real scans is a mask one voxel too generous over a wide stretch of
the lung's surface (on the real adult proton MRI: the partial-volume rims at the bases and tips, nearly as
dark as lung, so the contrast rule declined them, and the network keeps them too). Each click there removed
a voxel or two, and twenty clicks could not finish the volume.

A user who clicks "remove" on the outermost layers of the mask means "the boundary here is too far out".
So a negative click whose voxel lies in the mask's outer ``MAX_LAYERS`` (6-connected layers counted from
the mask's surface) also removes, around it, the voxels of the clicked lung no deeper than the clicked one,
connected to it (through any of a voxel's 26 neighbours: the outer layer of a slope touches only
diagonally), within a ball of ``REACH`` times the lung's size (the cube root of its volume), so the patch
scales from a newborn's lung to an adult's. Two limits keep it a rim:

- only rim voxels with deeper lung behind them: a part no thicker than the rim (a thin tip) is not a rim;
- with the image, only rim voxels at least half as far from the lung's deep level as the clicked rim is,
  when the clicked rim differs from that level by at least ``MIN_CONTRAST`` of the robust range: the patch
  reaches past the error onto the lung's own surface, which looks like lung. On held-out synthetic rims
  (``rim_starts.py``) this raised the share of the peel that was false lung from about half to 60-100 %.

Deeper clicks are on thick errors, which the network and the contrast rule judge. ``REACH`` was chosen on
held-out synthetic volumes with rim errors, never on the real MRI (docs/click-refinement.md). Every click
is one undo step.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

MIN_CONTRAST = 0.02  # below this share of the robust range the clicked rim looks like the lung: geometry only
REACH = 0.35       # radius of the peeled patch, as a share of the clicked lung's size
MAX_LAYERS = 2     # a click deeper than this many voxel layers is not on the rim
SIX = ndimage.generate_binary_structure(3, 1)
ALL_NEIGHBOURS = np.ones((3, 3, 3), dtype=bool)  # a surface layer on a slope touches only diagonally


def rim_region(lung: np.ndarray, seed: tuple[int, int, int], spacing: tuple[float, float, float],
               reach: float = REACH, image: np.ndarray | None = None, spread: float = 0.0,
               min_contrast: float = MIN_CONTRAST) -> np.ndarray | None:
    """Voxels of ``lung`` (bool) to remove for a negative click at ``seed`` on its rim, or None.

    ``spacing`` is mm per array axis. The result is a subset of ``lung`` containing the seed.
    """
    if not lung[seed]:
        return None
    radius = reach * (float(lung.sum()) * float(np.prod(spacing))) ** (1 / 3)
    # The box reaches MAX_LAYERS + 1 voxels past the ball, so its faces (counted as surface by the depth
    # below) cannot make a voxel inside the ball look shallower than MAX_LAYERS.
    half = [int(np.ceil(radius / s)) + MAX_LAYERS + 1 for s in spacing]
    box = tuple(slice(max(0, c - h), min(n, c + h + 1)) for c, h, n in zip(seed, half, lung.shape))
    local = tuple(c - b.start for c, b in zip(seed, box))
    mask = lung[box]
    layers = ndimage.distance_transform_cdt(np.pad(mask, 1), metric="taxicab")[1:-1, 1:-1, 1:-1]
    depth = int(layers[local])
    if depth > MAX_LAYERS:
        return None
    grid = np.ogrid[tuple(slice(0, n) for n in mask.shape)]
    distance2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grid, local, spacing))
    candidate = mask & (layers <= depth) & (distance2 <= radius ** 2)
    # Only a rim with lung behind it: a part of the lung no thicker than the rim (a thin tip, the anterior
    # edge) is not a rim, and peeling it would take all of it (22,000 voxels of real lung at once on a
    # held-out synthetic volume before this).
    candidate &= ndimage.binary_dilation(layers > depth, SIX, iterations=depth + 1)
    if image is not None:
        candidate &= _like_the_click(np.asarray(image[box], dtype=np.float32), mask, layers, local, depth,
                                     spread * min_contrast)
    if not candidate[local]:
        return None  # the click itself is no rim (nothing deeper behind it, or it looks like the lung)
    components, _ = ndimage.label(candidate, structure=ALL_NEIGHBOURS)
    region = np.zeros_like(lung)
    region[box] = components == components[local]
    return region


def _like_the_click(values: np.ndarray, mask: np.ndarray, layers: np.ndarray, local: tuple[int, ...], depth: int,
                    floor: float) -> np.ndarray:
    """Rim voxels at least half as far from the lung's level as the clicked rim (all, when it is not)."""
    deep = layers > MAX_LAYERS + 1
    if deep.sum() < 20:
        return np.ones_like(mask)
    lung_level = float(np.median(values[deep]))
    near = tuple(slice(max(0, c - 1), c + 2) for c in local)
    rim_near = mask[near] & (layers[near] <= depth)
    contrast = float(np.median(values[near][rim_near])) - lung_level
    if abs(contrast) < floor:
        return np.ones_like(mask)
    return (values - lung_level) * np.sign(contrast) >= 0.5 * abs(contrast)
