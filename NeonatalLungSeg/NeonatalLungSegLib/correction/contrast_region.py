"""The image's own evidence for a negative click: the tissue the click is on, wherever it is wrongly lung.

Why this exists beside the refinement network: a segmentation model that calls a region lung (a crescent of
liver under the dome, a costophrenic recess full of partial volume, consolidated lung as bright as muscle)
often hands that belief to the refinement network too, which then "agrees" with the current mask and a
negative click removes one voxel. Measured on the real adult proton MRI (docs/reports/click-refinement):
twenty negative clicks on the bundled model's output moved Dice from 0.924 to 0.927. The image itself is
clear there: the false region is as bright as the tissue around the lungs, the aerated lung beside it dark.

So a negative click also proposes the part of the clicked lung that looks like the clicked spot rather
than like the rest of that lung, connected to the click:

1. ``lung level`` = median intensity of the clicked lung's deep voxels (more than two voxels inside its
   mask) near the click; ``click level`` = median intensity of the lung voxels around the click;
2. no proposal when the two levels differ by less than ``MIN_CONTRAST`` of the image's robust range (the
   click is on something that looks like lung: only the network can judge it);
3. the proposal = the 6-connected component, at the click, of the clicked lung's voxels near the click whose
   intensity is closer to the click level than to the lung level and which lie no deeper in the mask than
   ``DEPTH_FACTOR`` times the click's own depth (plus a voxel). A region the model wrongly added lies
   between the real lung and the outside, so it is no thicker than about twice the depth of its centre;
   the limit keeps the component from running down the bright vessels inside the real lung (a click on
   proton-0012 removed 785 voxels of real lung that way before it existed).

No proposal either when the click lies in the mask's outer ``RIM_LAYERS`` voxel layers, unless ``on_rim``
(the rim peel declined the click): in so thin an error every voxel is partial volume, and on held-out
synthetic rims the component followed the lung's own blurred edge (15,241 voxels of real lung at one
click); ``rim_peel.py`` judges those clicks first.

"Near" is a box of ``REACH`` times the clicked lung's size (the cube root of its volume) on each side of
the click, so the edit scales from a newborn's 40 mL lung to an adult's 2.5 L one and stays local: the
partial-volume rim of the real lung, which the component can follow, is cut at the box. Nothing here is
learned. The variants measured on held-out domain-randomised synthetic volumes (docs/click-refinement.md:
a one-voxel opening against the rim, a box twice as large, half the minimum contrast) moved Dice after 20
clicks by less than 0.003 on average; the simplest was kept.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .rim_peel import MAX_LAYERS as RIM_LAYERS  # a click in the outer layers is on a rim: rim_peel.py first
from .rim_peel import REACH as RIM_REACH

REACH = 0.5           # half-width of the search box, as a share of the clicked lung's size
MIN_CONTRAST = 0.08   # click and lung levels closer than this share of the robust range: no proposal
DEEP_VOXELS = 2.0     # a lung voxel this many voxels inside the mask gives the lung's own level
DEPTH_FACTOR = 2.0    # a false region is at most about twice as deep in the mask as its centre (the click)
SIX = ndimage.generate_binary_structure(3, 1)


def robust_range(image: np.ndarray) -> float:
    """The 2nd-98th percentile spread of a volume (a sample of it), the scale contrast is judged on."""
    sample = np.asarray(image[:: max(1, len(image) // 24)], dtype=np.float32)
    low, high = np.percentile(sample, [2, 98])
    return float(high - low)


def negative_region(image: np.ndarray, lung: np.ndarray, seed: tuple[int, int, int],
                    spacing: tuple[float, float, float], spread: float, on_rim: bool = False) -> np.ndarray | None:
    """Voxels of ``lung`` (bool, same grid as ``image``) to remove for a negative click at ``seed``, or None.

    ``spacing`` is mm per array axis; ``spread`` the image's robust intensity range (``robust_range``).
    The seed must be a lung voxel; the result is a subset of ``lung`` containing it.
    """
    if not lung[seed]:
        return None
    volume_mm3 = float(lung.sum()) * float(np.prod(spacing))
    half = [max(2, int(np.ceil(REACH * volume_mm3 ** (1 / 3) / s))) for s in spacing]
    box = tuple(slice(max(0, c - h), min(n, c + h + 1)) for c, h, n in zip(seed, half, lung.shape))
    local_seed = tuple(c - b.start for c, b in zip(seed, box))
    mask = lung[box]
    values = np.asarray(image[box], dtype=np.float32)
    # Depth below the mask's surface; the box's own faces count as surface too, which only makes voxels
    # half a lung away from the click look shallow: the component reaches them along the rim or not at all.
    depth = ndimage.distance_transform_edt(np.pad(mask, 1), sampling=spacing)[1:-1, 1:-1, 1:-1]
    if not on_rim and _layer_at(mask, local_seed) <= RIM_LAYERS:
        return None  # a thin error: its voxels are partial volume, their intensity says nothing (rim_peel.py)
    deep = depth > DEEP_VOXELS * max(spacing)
    if deep.sum() < 20:
        return None
    lung_level = float(np.median(values[deep]))
    near = tuple(slice(max(0, c - 1), c + 2) for c in local_seed)
    click_level = float(np.median(values[near][mask[near]]))
    if abs(click_level - lung_level) < MIN_CONTRAST * spread:
        return None
    threshold = 0.5 * (click_level + lung_level)
    candidate = mask & ((values > threshold) if click_level > lung_level else (values < threshold))
    candidate &= depth <= DEPTH_FACTOR * depth[local_seed] + max(spacing)  # not down the vessels inside
    if not candidate[local_seed]:
        return None
    grown = _component_at(candidate, local_seed)
    region = np.zeros_like(lung)
    region[box] = grown
    return region


def _component_at(mask: np.ndarray, seed: tuple[int, ...]) -> np.ndarray:
    components, _ = ndimage.label(mask, structure=SIX)
    return components == components[seed]


def _layer_at(mask: np.ndarray, seed: tuple[int, ...]) -> int:
    """6-connected voxel layers from the mask's surface to ``seed`` (1: on the surface), looked at near it."""
    reach = RIM_LAYERS + 1
    near = tuple(slice(max(0, c - reach), c + reach + 1) for c in seed)
    local = tuple(c - n.start for c, n in zip(seed, near))
    return int(ndimage.distance_transform_cdt(np.pad(mask[near], 1), metric="taxicab")[1:-1, 1:-1, 1:-1][local])


def within_click_depth(region: np.ndarray, mask: np.ndarray, seed: tuple[int, ...],
                       spacing: tuple[float, float, float]) -> np.ndarray:
    """The voxels of ``region`` (a subset of ``mask``) no deeper in ``mask`` than ``DEPTH_FACTOR`` times the
    seed's depth plus a voxel.

    A false region lies between the real lung and the outside, so what a negative click may take is about
    as deep as the click, wherever the proposal comes from; the refinement network too once carried a
    negative click from a rim through the whole base of a held-out synthetic lung (Dice 0.976 -> 0.935).
    The array's own faces are not surface here: ``mask`` is usually a window of slices. Depths are taken
    on crops (around the seed, then around the region with the limit as margin), not the whole window:
    that was 0.2 s of every negative click.
    """
    limit = DEPTH_FACTOR * _depth_at(mask, seed, spacing) + max(spacing)
    box = ndimage.find_objects(region.astype(np.uint8))
    if not box:
        return region
    crop = tuple(slice(max(0, b.start - int(np.ceil(limit / s)) - 1), min(n, b.stop + int(np.ceil(limit / s)) + 1))
                 for b, s, n in zip(box[0], spacing, mask.shape))
    kept = np.zeros_like(region)
    kept[crop] = region[crop] & (ndimage.distance_transform_edt(mask[crop], sampling=spacing) <= limit)
    return kept


def within_rim_reach(region: np.ndarray, mask: np.ndarray, seed: tuple[int, ...],
                     spacing: tuple[float, float, float], lung_mm3: float, reach: float = RIM_REACH) -> np.ndarray:
    """``region`` cut to a ball of ``reach`` times the lung's size (the cube root of ``lung_mm3``) around
    ``seed`` when the seed lies in ``mask``'s outer layers; ``region`` itself otherwise.

    A negative click on the rim concerns the rim near it (rim_peel.py), but the network's region of change
    is whatever connects to the click, and a network that pulls the whole surface in by a voxel makes that
    one thin shell over the lung: one click on a held-out synthetic lung's base took 12,557 voxels of real
    lung over 107 slices for an error of 6,741. Deeper clicks are on thick errors and keep their region.
    """
    if _layer_at(mask, seed) > RIM_LAYERS:
        return region
    radius = reach * lung_mm3 ** (1 / 3)
    grid = np.ogrid[tuple(slice(0, n) for n in region.shape)]
    return region & (sum(((g - c) * s) ** 2 for g, c, s in zip(grid, seed, spacing)) <= radius ** 2)


def _depth_at(mask: np.ndarray, seed: tuple[int, ...], spacing: tuple[float, float, float]) -> float:
    """Distance (mm) from ``seed`` to the nearest voxel outside ``mask`` (array faces are not outside),
    on a crop around the seed grown until that voxel is closer than the crop's faces."""
    half = 8
    while True:
        crop = tuple(slice(max(0, c - half), min(n, c + half + 1)) for c, n in zip(seed, mask.shape))
        local = tuple(c - b.start for c, b in zip(seed, crop))
        depth = float(ndimage.distance_transform_edt(mask[crop], sampling=spacing)[local])
        whole = all(b.start == 0 and b.stop == n for b, n in zip(crop, mask.shape))
        if whole or depth <= half * min(spacing):
            return depth
        half *= 2
