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

