"""The standard click simulation: a click at the centre of the largest error, positive on missed lung,
negative on false lung; used both to train the refinement network (2D, on slices) and to score it (3D,
NoC@90 / NoC@95 on whole volumes).

"Centre" is the error voxel farthest from the error's border (the maximum of its distance transform), as in
the interactive-segmentation literature, so a simulated click sits where a user would put it: in the middle
of what is wrong, not on its edge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class SimulatedClick:
    position: tuple[int, ...]   # voxel (2D: row, col; 3D: k, j, i)
    positive: bool
    label: int = 1              # the lung the error belongs to (3D, labelled masks)
    size: int = 0               # voxels in the error region it was placed on


def _centre(region: np.ndarray, sampling: tuple[float, ...] | None) -> tuple[int, ...]:
    """The voxel of ``region`` farthest from its border (padded, so the volume's edge counts as border);
    computed on the region's bounding box, so a small error in a large volume costs little."""
    box = ndimage.find_objects(region.astype(np.uint8))[0]
    padded = np.pad(region[box], 1)
    distance = ndimage.distance_transform_edt(padded, sampling=sampling)[tuple(slice(1, -1) for _ in region.shape)]
    local = np.unravel_index(np.argmax(distance), distance.shape)
    return tuple(int(v + b.start) for v, b in zip(local, box))


def next_click(target: np.ndarray, current: np.ndarray, labels: tuple[int, ...] = (1,),
               sampling: tuple[float, ...] | None = None) -> SimulatedClick | None:
    """The click on the largest error region of ``current`` against ``target`` (None when they agree).

    For each lung value: missed voxels (target is it, current has no lung there) give positive clicks, false
    voxels (current is it, target is not) negative ones, so a lung labelled as the other one is first
    removed from the wrong lung (a positive click never relabels the other lung); regions are 6- (3D) / 4- (2D)
    connected components.
    ``sampling`` (mm per axis) makes "largest" a volume and "centre" a physical distance.
    """
    best: tuple[int, np.ndarray, bool, int] | None = None
    voxel = float(np.prod(sampling)) if sampling else 1.0
    for value in labels:
        for positive, error in ((True, (target == value) & (current == 0)),
                                (False, (current == value) & (target != value))):
            if not error.any():
                continue
            components, count = ndimage.label(error)
            sizes = np.bincount(components.ravel())[1:]
            largest = int(np.argmax(sizes))
            if best is None or sizes[largest] * voxel > best[0]:
                best = (int(sizes[largest] * voxel), components == largest + 1, positive, value)
    if best is None:
        return None
    size, region, positive, value = best
    return SimulatedClick(_centre(region, sampling), positive, value, int(region.sum()))


def perturbed_mask(target: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A plausible wrong 2D lung mask: the target eroded or dilated, with a blob cut away or one added,
    and sometimes shifted, the kinds of error a segmentation network makes on a new scanner."""
    mask = target.astype(bool)
    size = np.array(mask.shape)
    step = int(rng.integers(1, 5))
    if rng.random() < 0.5:
        mask = ndimage.binary_erosion(mask, iterations=step) if rng.random() < 0.5 else \
            ndimage.binary_dilation(mask, iterations=step)
    rows, cols = np.ogrid[:size[0], :size[1]]
    for _ in range(int(rng.integers(0, 3))):
        radius = rng.uniform(4, 16)
        if rng.random() < 0.5 and target.any():  # cut a blob out of the lung
            centre = np.argwhere(target)[rng.integers(int(target.sum()))]
            mask &= (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 > radius ** 2
        else:  # false lung next to it or anywhere
            centre = rng.uniform(0.15, 0.85, 2) * size
            mask |= (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius ** 2
    if rng.random() < 0.2:
        mask = np.roll(mask, tuple(int(v) for v in rng.integers(-4, 5, 2)), axis=(0, 1))
    return mask


PARTIAL_SHARE = 0.75  # how far from the lung's level towards the tissue's a partial-volume voxel may lie


def partial_volume(image: np.ndarray, lung: np.ndarray, share: float = PARTIAL_SHARE) -> np.ndarray:
    """Voxels less than ``share`` of the way from the lung's level (its median three voxels in) to the
    tissue's (the median two to four voxels outside it): the partial volume a model over-reaches into."""
    ring = ndimage.generate_binary_structure(lung.ndim, 1)
    deep = ndimage.binary_erosion(lung, ring, iterations=3)
    outside = ndimage.binary_dilation(lung, ring, iterations=4) & ~ndimage.binary_dilation(lung, ring, iterations=2)
    if not deep.any() or not outside.any():
        return np.zeros_like(lung)
    lung_level, tissue_level = float(np.median(image[deep])), float(np.median(image[outside]))
    return (image - lung_level) * np.sign(tissue_level - lung_level) < share * abs(tissue_level - lung_level)


def grow_into(seed: np.ndarray, allowed: np.ndarray, layers: int) -> np.ndarray:
    """Voxels of ``allowed`` reached from ``seed`` in ``layers`` 4/6-connected steps (``seed`` excluded)."""
    ring = ndimage.generate_binary_structure(seed.ndim, 1)
    grown = seed.copy()
    for _ in range(layers):
        grown |= ndimage.binary_dilation(grown, ring) & allowed
    return grown & ~seed


def rim_mask(target: np.ndarray, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 2D lung mask one or two pixels too generous along a stretch of its border, into partial volume
    only: the error a segmentation model leaves at real lungs' bases once its leaks are fixed, where a
    negative click means "this stretch of boundary is too far out" (rim_starts.py builds it in 3D)."""
    mask = target.astype(bool)
    if not mask.any():
        return mask
    rows, cols = np.ogrid[:mask.shape[0], :mask.shape[1]]
    rim = grow_into(mask, ~mask & partial_volume(image, mask), int(rng.integers(1, 3)))
    border = np.argwhere(rim)
    if not len(border):
        return mask
    centre = border[rng.integers(len(border))]
    radius = rng.uniform(0.3, 1.0) * np.sqrt(mask.sum())
    return mask | (rim & ((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius ** 2))


@dataclass(frozen=True)
class ClickPlan:
    """Clicks for one training slice: where (network pixels), which sign, how strong."""

    points: list[tuple[float, float]]
    positive: list[bool]
    amplitudes: list[float]
    focus: np.ndarray | None = None   # the error region the last click was placed on (what it must fix)


def training_clicks(target: np.ndarray, current: np.ndarray, rng: np.random.Generator,
                    max_clicks: int = 4) -> tuple[np.ndarray, ClickPlan]:
    """The iterative protocol on one slice: clicks 1..n-1 are placed and their error fixed (as a good
    refinement would), click n is placed on what remains; returns the mask the network sees and the clicks.

    Some clicks are weakened and moved a few pixels: that is how a click on a neighbouring slice appears
    on this one (its height falls with distance), so the network learns to follow an error across slices.
    """
    current = current.astype(bool).copy()
    target = target.astype(bool)
    count = int(rng.integers(0, max_clicks + 1))
    points, signs, amplitudes = [], [], []
    focus = None
    for n in range(count):
        click = next_click(target.astype(np.uint8), current.astype(np.uint8))
        if click is None:
            break
        same_sign = (target & ~current) if click.positive else (current & ~target)
        focus = ndimage.label(same_sign)[0]
        focus = focus == focus[click.position]
        row, col = click.position
        amplitude = 1.0
        if rng.random() < 0.35:
            amplitude = float(rng.uniform(0.1, 0.9))
            row, col = row + rng.normal(0, 2.0), col + rng.normal(0, 2.0)
        points.append((float(row), float(col)))
        signs.append(click.positive)
        amplitudes.append(amplitude)
        if n == count - 1:
            break
        # an earlier click: its error has been corrected already, unless that would leave no error at all
        # for the next click (then this click is the last one and its error stays)
        if not ((target != current) & ~focus).any():
            break
        current[focus] = target[focus]
    return current, ClickPlan(points, signs, amplitudes, focus)
