"""A negative click on the lung's rim moves that stretch of the boundary inwards.

Why this exists beside the refinement network and the image-contrast rule: once the large errors of a
model's mask are gone, what remains on real scans is a mask one voxel too generous over a wide stretch of
the lung's surface (on the real adult proton MRI: the partial-volume rims at the bases and tips, as dark as
lung in the image, so the contrast rule rightly declines them, and the network keeps them too). A click
there fell back to a 2 mm disk, one voxel in 4 mm voxels, and twenty clicks could not finish the volume.

A user who clicks "remove" on the outermost layers of the mask means "the boundary here is too far out".
So a negative click whose voxel lies in the mask's outer ``MAX_LAYERS`` (6-connected layers counted from
the mask's surface) also removes, around it, every voxel of the clicked lung no deeper than the clicked one,
connected to it, within a ball of ``REACH`` times the lung's size (the cube root of its volume), so the
patch scales from a newborn's lung to an adult's. It peels a patch of the surface exactly as thick as the
click is deep (connected through any of a voxel's 26 neighbours: the outer layer of a slope touches
only diagonally); deeper clicks are on thick errors, which the network and the contrast rule judge. Nothing
here looks at the image, so it is as right as the click: on a correct stretch of boundary it takes real
lung, and every click is one undo step. ``REACH`` was chosen on held-out synthetic volumes with rim errors
(``rim_starts.py``), never on the real MRI (docs/click-refinement.md).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

REACH = 0.2        # radius of the peeled patch, as a share of the clicked lung's size
MAX_LAYERS = 2     # a click deeper than this many voxel layers is not on the rim
ALL_NEIGHBOURS = np.ones((3, 3, 3), dtype=bool)  # a surface layer on a slope touches only diagonally


def rim_region(lung: np.ndarray, seed: tuple[int, int, int], spacing: tuple[float, float, float],
               reach: float = REACH) -> np.ndarray | None:
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
    components, _ = ndimage.label(candidate, structure=ALL_NEIGHBOURS)
    region = np.zeros_like(lung)
    region[box] = components == components[local]
    return region
