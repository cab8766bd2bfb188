"""Which boundary voxels count as lung: the expert convention for partial-volume voxels.

A voxel on the lung surface holds lung and chest wall (or diaphragm, mediastinum) at once. Integrating the
lung share over voxels gives the physical volume, and a mask of the voxels that are at least half lung
estimates it without bias: that is how the synthetic generators and the CT slices are labelled, and on them
the network's mask has no volume bias (docs/reports/volume-bias/). Experts drawing lungs on real MRI do
something else: the partial-volume voxel at the wall is left out. On real 3.9 mm MRI the rim of those voxels
is 9-14 % of the lung, which is the whole gap between the model's volumes and the experts'.

The network cannot learn the expert convention: it sees slices resampled to its own in-plane size, never the
scan's voxels, while the rim is one *acquired* voxel wide. The engine, which holds the scan's grid, applies
it: a voxel stays lung when the lung share it would show through the scanner's point-spread function
(a Gaussian of ``psf_sigma`` voxels on every axis longer than one voxel) is at least ``min_share``.
``min_share`` 0.5 is the physical convention and changes nothing. The two numbers live in the model's
``output`` section: they calibrate what this network's output means, so a model trained on labels that
already follow the expert convention simply leaves them out.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# The Gaussian is cut at this many sigmas: at sigma <= 1 voxel that is a 5-voxel stencil.
_TRUNCATE = 2.5


def keep_expert_share(labels: np.ndarray, min_share: float, psf_sigma: float) -> np.ndarray:
    """``labels`` (uint8, 0 background, one value per lung) with the rim voxels below ``min_share`` removed.

    Each label value is treated on its own (a voxel between two touching lungs is judged against its own
    lung only), on the label's bounding box, so a 512x512x300 volume costs what its lungs' boxes cost.
    A new array is returned; ``labels`` is not modified. Nothing changes when ``min_share`` <= 0.5 or
    ``psf_sigma`` <= 0."""
    out = np.array(labels, dtype=np.uint8, copy=True)
    if min_share <= 0.5 or psf_sigma <= 0:
        return out
    margin = int(np.ceil(_TRUNCATE * psf_sigma)) + 1
    sigma = tuple(psf_sigma if n > 1 else 0.0 for n in out.shape)
    for value in (int(v) for v in np.unique(out) if v):
        found = ndimage.find_objects((out == value).astype(np.uint8))
        if not found or found[0] is None:
            continue
        box = tuple(slice(max(0, s.start - margin), min(n, s.stop + margin)) for s, n in zip(found[0], out.shape))
        lung = out[box] == value
        share = ndimage.gaussian_filter(lung.astype(np.float32), sigma, mode="nearest", truncate=_TRUNCATE)
        region = out[box]
        region[lung & (share < min_share)] = 0
    return out



# --- the signal check: tissue the network took for lung ------------------------------------------------------
#
# Geometry alone cannot see a tongue of tissue the network labelled lung: on real 3.9 mm MRI a strip of soft
# tissue under the left base (grey, about 40 % of the way from lung to tissue signal) is two voxels wide, so
# every voxel of it has lung all round it in the mask. Its *signal* says what it is. A surface voxel whose
# own intensity lies more than half-way from the lung's to its surroundings' is more tissue than lung, by
# either convention; it is peeled, and the surface it uncovers is checked again, ``SIGNAL_PEEL_DEPTH`` times
# (deeper peeling follows bright vessels into the lung, which experts count as lung). Pieces the peeling cut
# off from their lung, when small, go too.
#
# Only **protrusions** are judged: voxels an opening with a ball of ``PROTRUSION_RADIUS`` voxels takes off the
# mask (tongues and strips narrower than the ball). Dense lung is lung: the dependent atelectasis of BPD is
# as bright as tissue and lies on the lung's smooth outer surface, which the opening keeps. Judged everywhere,
# the check took 4 % off a synthetic BPD case's lung (its atelectatic patches at the surface); judged on
# protrusions only, 0.2 %.

SIGNAL_PEEL_DEPTH = 2
PROTRUSION_RADIUS = 3
_CORE_DEPTH = 2          # voxels inside the surface: the lung's own signal
_SHELL = (2, 4)          # voxels outside the surface: the surroundings' signal
_MIN_CONTRAST_IQRS = 2.0  # lung and surroundings must differ by this many interquartile ranges of the lung
_MAX_CUT_OFF = 0.02      # of the lung: larger pieces the peeling separated stay


def _structure(shape: tuple[int, ...]) -> np.ndarray:
    """Face connectivity along the axes longer than one voxel (a depth-1 slice is eroded in plane only)."""
    structure = np.zeros((3, 3, 3), bool)
    structure[1, 1, 1] = True
    for axis, n in enumerate(shape):
        if n > 1:
            index = [1, 1, 1]
            for offset in (0, 2):
                index[axis] = offset
                structure[tuple(index)] = True
    return structure


def drop_tissue_signal(labels: np.ndarray, image: np.ndarray, min_signal_share: float) -> np.ndarray:
    """``labels`` without surface voxels whose signal says less than ``min_signal_share`` lung.

    ``image`` holds the raw intensities on the same grid. The lung's signal is the median inside its surface
    (two voxels in), the surroundings' the median of a shell two to four voxels out that no lung label holds;
    the sign of their difference makes it work for dark lung (proton MRI, CT) and bright lung (gas MRI).
    A lung whose signal does not stand out from its surroundings by two interquartile ranges of its own is
    left as it is. A new array is returned. ``min_signal_share`` <= 0 changes nothing."""
    out = np.array(labels, dtype=np.uint8, copy=True)
    if min_signal_share <= 0:
        return out
    if image.shape != out.shape:
        raise ValueError(f"image shape {image.shape} does not match labels {out.shape}")
    structure = _structure(out.shape)
    margin = _SHELL[1] + 1
    for value in (int(v) for v in np.unique(out) if v):
        found = ndimage.find_objects((out == value).astype(np.uint8))[0]
        box = tuple(slice(max(0, s.start - margin), min(n, s.stop + margin)) for s, n in zip(found, out.shape))
        region, signal = out[box], np.asarray(image[box], dtype=np.float64)
        lung = region == value
        tissue = _tissue_like(lung, region == 0, signal, structure, min_signal_share)
        if tissue is None:
            continue
        judged = tissue & _protrusions(lung)
        peeled = lung.copy()
        for _ in range(SIGNAL_PEEL_DEPTH):
            surface = peeled & ~ndimage.binary_erosion(peeled, structure)
            step = surface & judged
            if not step.any():
                break
            peeled &= ~step
        peeled = _without_cut_off_pieces(lung, peeled)
        region[lung & ~peeled] = 0
    return out


def _protrusions(lung: np.ndarray) -> np.ndarray:
    """The voxels of ``lung`` an opening with a ball of ``PROTRUSION_RADIUS`` voxels removes, in pieces that
    reach at least two voxels beyond the opened shape (a voxelised surface's single-voxel steps are not
    protrusions). From two Euclidean distance maps instead of a 7 x 7 x 7 structuring element."""
    core = ndimage.distance_transform_edt(lung) > PROTRUSION_RADIUS
    if not core.any():
        return lung.copy()
    beyond = ndimage.distance_transform_edt(~core) - PROTRUSION_RADIUS  # > 0: outside the opened shape
    outside = lung & (beyond > 0)
    pieces, count = ndimage.label(outside, np.ones((3, 3, 3), bool))
    if not count:
        return outside
    reach = np.zeros(count + 1)
    np.maximum.at(reach, pieces[outside], beyond[outside])  # on the pieces' voxels only, not a sort of the box
    keep = reach >= 2.0
    keep[0] = False
    return keep[pieces]


def _tissue_like(lung: np.ndarray, free: np.ndarray, signal: np.ndarray, structure: np.ndarray,
                 min_signal_share: float) -> np.ndarray | None:
    """Where the signal is nearer the surroundings' than ``min_signal_share`` allows; None when lung and
    surroundings cannot be told apart by signal."""
    levels = signal_levels(lung, free, signal, structure)
    if levels is None:
        return None
    lung_level, contrast = levels
    return (signal - lung_level) / contrast > 1.0 - min_signal_share


def signal_levels(lung: np.ndarray, free: np.ndarray, signal: np.ndarray,
                  structure: np.ndarray) -> tuple[float, float] | None:
    """(the lung's median signal, the surroundings' median minus it), or None when the two cannot be told
    apart: a signal s is lung share 1 - (s - level) / contrast."""
    core = ndimage.binary_erosion(lung, structure, iterations=_CORE_DEPTH)
    if core.sum() < 27:
        core = lung
    near = ndimage.binary_dilation(lung, structure, iterations=_SHELL[0] - 1)
    shell = ndimage.binary_dilation(lung, structure, iterations=_SHELL[1]) & ~near & free
    if not shell.any():
        return None
    low, lung_level, high = np.percentile(signal[core], (25, 50, 75))
    tissue_level = float(np.median(signal[shell]))
    contrast = tissue_level - lung_level
    if abs(contrast) <= _MIN_CONTRAST_IQRS * (high - low) or contrast == 0:
        return None
    return float(lung_level), float(contrast)


def _without_cut_off_pieces(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """``after`` without the pieces the peeling cut off: in each connected piece of ``before``, everything but
    its largest remaining part, when smaller than ``_MAX_CUT_OFF`` of the lung."""
    every = np.ones((3, 3, 3), bool)
    parts, count = ndimage.label(after, every)
    if count < 2:
        return after
    pieces, _ = ndimage.label(before, every)
    sizes = np.bincount(parts.ravel(), minlength=count + 1)
    owner = np.zeros(count + 1, np.int64)
    owner[parts.ravel()] = pieces.ravel()  # every voxel of a part lies in one piece
    keep = np.zeros(count + 1, bool)
    largest: dict[int, int] = {}
    for part in range(1, count + 1):
        if owner[part] not in largest or sizes[part] > sizes[largest[owner[part]]]:
            largest[owner[part]] = part
    keep[list(largest.values())] = True
    keep[1:] |= sizes[1:] > _MAX_CUT_OFF * int(after.sum())
    return keep[parts]


def physical_from_expert(labels: np.ndarray, min_share: float, psf_sigma: float) -> np.ndarray:
    """Labels drawn the expert's way, grown to what a network must output for ``keep_expert_share`` (with the
    same two numbers) to give them back: a voxel is lung when the labels' share through the PSF is at least
    ``1 - min_share``. The Gaussian is symmetric, so the grown surface lies as far outside the drawn one as the
    convention's lies inside: fine-tuning on a clinic's corrected masks teaches the network its own convention,
    not the clinic's rim (which the engine would then remove a second time).

    Each label value is grown on its own, never into another label. Nothing changes when ``min_share`` <= 0.5
    or ``psf_sigma`` <= 0. A new array is returned."""
    out = np.array(labels, dtype=np.uint8, copy=True)
    if min_share <= 0.5 or psf_sigma <= 0:
        return out
    margin = int(np.ceil(_TRUNCATE * psf_sigma)) + 1
    sigma = tuple(psf_sigma if n > 1 else 0.0 for n in out.shape)
    source = out.copy()
    for value in (int(v) for v in np.unique(source) if v):
        found = ndimage.find_objects((source == value).astype(np.uint8))[0]
        box = tuple(slice(max(0, s.start - margin), min(n, s.stop + margin)) for s, n in zip(found, out.shape))
        lung = source[box] == value
        share = ndimage.gaussian_filter(lung.astype(np.float32), sigma, mode="nearest", truncate=_TRUNCATE)
        region = out[box]
        region[(share >= 1.0 - min_share) & (source[box] == 0) & (region == 0)] = value
    return out
