"""The trachea where the network joined it to an apex, told by the air above it.

``extrapulmonary_air`` removes the trachea where an axial section of it is a small island in the midline.
On real 3.9 mm proton MRI (proton-0006) the network also labels three sections of the trachea that a
bridge of lung label ties, in plane, to the right apex: the section is then one large piece off the
midline, and the island rule cannot see it. Geometry alone cannot split it off without also cutting the
junction strips where the lungs meet at the midline (an in-plane opening that freed the trachea took
44-110 voxels of the experts' lung there).

What tells the trachea apart is physics: it is a tube of air that runs on *up the neck*, above both apices,
while lung ends at its apex under soft tissue. So a protrusion of the mask (what an opening with a ball of
``PROTRUSION_RADIUS`` voxels removes) that lies in the upper third of its lung, in the midline band, goes
column by column where the signal straight above it stays lung-like (air) until above the top of both
lungs. A junction strip, an apex, a lobe's tip have tissue above them within the lungs' height and stay.

The signal levels are the signal check's (``boundary._tissue_like``): it runs where the model sets
``output.boundary_signal_min_share``, with that share, on the canonical grid after the signal check.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..boundary import PROTRUSION_RADIUS, _protrusions, _structure, _without_cut_off_pieces, signal_levels
from .extrapulmonary_air import MIDLINE_BAND, _centre, _superior_first

_MARGIN = 5  # voxels around a lung's box for its surroundings' signal (the signal check's shell, plus one)
_PAD = 4 * PROTRUSION_RADIUS  # sections kept below the upper third for the opening (twice its reach and more)
# How far above the highest lung section the air must go on. Lung ends at its apex; the trachea runs several
# centimetres further up the neck, in a newborn too. Air that ends just above an apex is the apex's own
# partial-volume tip (on proton-0012 the experts' top section lies one voxel above the network's).
AIR_ABOVE_APEX_MM = 10.0


def drop_airway_column(labels: np.ndarray, image: np.ndarray, min_signal_share: float,
                       direction: np.ndarray | None = None, spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
                       right: int = 1, left: int = 2) -> np.ndarray:
    """``labels`` without midline protrusions in the upper third of a lung that have air above them up past
    both apices. ``image`` holds the raw intensities on the same (k, j, i) grid, whose index axes point along
    ``direction``'s columns (identity = LPS), ``spacing`` the voxel size along i, j, k in mm. Needs both
    lungs, a volume (a slice has no "above"), lung signal that differs from its surroundings and a field of
    view reaching AIR_ABOVE_APEX_MM above the apices; otherwise nothing changes. A new array is returned."""
    if image.shape != labels.shape:
        raise ValueError(f"image shape {image.shape} does not match labels {labels.shape}")
    out, undo = _superior_first(np.array(labels, dtype=np.uint8, copy=True), direction)
    if min_signal_share <= 0 or out.ndim != 3 or min(out.shape) < 3:
        return undo(out)
    signal, _ = _superior_first(np.asarray(image, dtype=np.float64), direction)
    boxes = ndimage.find_objects(out, max_label=max(right, left))
    if len(boxes) < max(right, left) or boxes[right - 1] is None or boxes[left - 1] is None:
        return undo(out)
    boxes = [boxes[right - 1], boxes[left - 1]]
    centres = [_centre(out[box] == value, box) for value, box in zip((right, left), boxes)]
    midline = 0.5 * (centres[0][2] + centres[1][2])
    band = MIDLINE_BAND * abs(centres[1][2] - centres[0][2])
    step = spacing[_superior_index_axis(direction)]
    top = max(box[0].stop for box in boxes) - 1 + max(2, int(np.ceil(AIR_ABOVE_APEX_MM / step)))
    if top >= out.shape[0]:
        return undo(out)  # the field of view ends too close above the apices to tell
    band_columns = np.flatnonzero(np.abs(np.arange(out.shape[2]) - midline) <= band)
    if not band_columns.size:
        return undo(out)
    band_box = (slice(None), slice(None), slice(int(band_columns[0]), int(band_columns[-1]) + 1))
    candidates = np.zeros(out.shape, bool)
    air = np.zeros(out.shape, bool)
    for value, found in zip((right, left), boxes):
        box = tuple(slice(max(0, s.start - _MARGIN), min(n, s.stop + _MARGIN)) for s, n in zip(found, out.shape))
        lung = out[box] == value
        levels = signal_levels(lung, out[box] == 0, signal[box], _structure(lung.shape))
        if levels is None:
            continue
        level, contrast = levels
        # a trachea tied to an apex lies near the apex: the upper third (lower down, a midline air column
        # can be the oesophagus beside lung of the posterior junction, one expert voxel on proton-0006)
        low = int(np.ceil(found[0].start + 2 * (found[0].stop - 1 - found[0].start) / 3))
        # the opening on the upper part of the box only (a third of the work), from _PAD sections below the upper
        # third: the cut is then farther from every candidate than the opening's ball can reach
        cut = max(0, low - _PAD - box[0].start)
        upper = candidates[box][cut:]
        upper |= _protrusions(lung[cut:]) & (np.arange(box[0].start + cut, box[0].stop) >= low)[:, None, None]
        air[band_box] |= (signal[band_box] - level) / contrast <= 1.0 - min_signal_share  # as this lung sees it
    candidates[:, :, :band_box[2].start] = False
    candidates[:, :, band_box[2].stop:] = False
    if not candidates.any():
        return undo(out)
    # air that is not the lungs' own rim: unlabelled and not touching lung other than the candidates (on the
    # band, one column wider each side so its edge sees its neighbours; never on the whole volume)
    wide = slice(max(0, band_box[2].start - 1), min(out.shape[2], band_box[2].stop + 1))
    touching = ndimage.binary_dilation((out[:, :, wide] > 0) & ~candidates[:, :, wide], np.ones((3, 3, 3), bool))
    inner = slice(band_box[2].start - wide.start, band_box[2].stop - wide.start)
    sub_air = air[band_box] & (out[band_box] == 0) & ~touching[:, :, inner]
    sub_candidates = candidates[band_box]
    airway = np.zeros(out.shape, bool)
    for j, i in zip(*np.nonzero(sub_candidates.any(axis=0))):
        column = sub_candidates[:, j, i]
        highest = int(np.flatnonzero(column)[-1])
        if _rises_to(sub_air, highest + 1, j, i, top):
            lowest = highest  # the candidates' run that ends under the air, not a lower one in the same column
            while lowest > 0 and column[lowest - 1]:
                lowest -= 1
            airway[lowest:highest + 1, j, band_box[2].start + i] = True
    if airway.any():
        for value in (right, left):
            lung = out == value
            out[lung & ~_without_cut_off_pieces(lung, lung & ~airway)] = 0
    return undo(out)


def _rises_to(air: np.ndarray, start: int, j: int, i: int, top: int) -> bool:
    """Whether air goes on from (start, j, i) up to section ``top``, one section at a time, drifting at most
    one voxel sideways per section (a trachea leans forward as it rises; a wall it leans into stops it)."""
    if start > top or not air[start, j, i]:
        return False
    front = np.zeros(air.shape[1:], bool)
    front[j, i] = True
    for k in range(start + 1, top + 1):
        front = air[k] & ndimage.binary_dilation(front, np.ones((3, 3), bool))
        if not front.any():
            return False
    return True


def _superior_index_axis(direction: np.ndarray | None) -> int:
    """Which index axis (0 = i, 1 = j, 2 = k) runs nearest the patient's superior direction."""
    if direction is None:
        return 2
    return int(np.argmax(np.abs(np.asarray(direction, dtype=float).reshape(3, 3)[2])))
