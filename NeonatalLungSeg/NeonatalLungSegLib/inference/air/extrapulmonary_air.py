"""Air that is not lung: the trachea above the lungs and gas under the diaphragm, taken out of the lung labels.

Both are as dark as aerated lung on MRI, and the network labels them lung now and then on real scans
(docs/reports/volume-bias/). Neither can be told from lung by its signal; both by where they are:

- **Trachea.** Above the carina it runs in the midline between the apices. An axial section of a lung
  label that lies in the midline band (within ``MIDLINE_BAND`` of the distance between the two lungs'
  centres from the point halfway between them), in the upper half of that lung and small (at most
  ``MAX_AIRWAY_SECTION`` of the lung's largest axial section) is airway: lung reaches the midline only in
  large sections (the anterior junction of touching newborn lungs), never as a small island above.
- **Gas under the diaphragm.** A stomach or bowel gas bubble joins the lung base through a bridge of a voxel
  or two across the diaphragm. Eroding the lung by one voxel separates it; it is dropped when it is small
  (at most ``MAX_GAS_FRACTION`` of the lung), lies in the lowest third of the lung, and the lung lies above it
  *across a gap* of at least ``MIN_DIAPHRAGM_GAP`` voxels in most of its columns (a piece of lung cut off by
  a fissure is separated by a line one voxel thin; a costophrenic recess continues the lung without a gap).

Everything works on the canonical (LPS) grid the engine post-processes on: k runs inferior to superior,
i from the patient's right to left. The rules only ever remove voxels, and only small pieces.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

MIDLINE_BAND = 0.2
MAX_AIRWAY_SECTION = 0.03
MAX_GAS_FRACTION = 0.02
MIN_DIAPHRAGM_GAP = 2
_SIX_CONNECTED = ndimage.generate_binary_structure(3, 1)


def drop_extrapulmonary_air(labels: np.ndarray, direction: np.ndarray | None = None, right: int = 1,
                             left: int = 2) -> np.ndarray:
    """``labels`` ((k, j, i) on a grid whose index axes point along ``direction``'s columns, identity = LPS)
    without midline airway sections and sub-diaphragmatic gas.

    Needs both lungs (the midline is where they are not); with one lung only the gas rule runs. A new
    array is returned."""
    view, undo = _superior_first(np.array(labels, dtype=np.uint8, copy=True), direction)
    return undo(_drop(view, right, left))


def _superior_first(array: np.ndarray, direction: np.ndarray | None):
    """``array`` as (inferior -> superior, posterior-anterior, right -> left) and the function undoing it: the
    array axis nearest each patient axis, whatever the storage order (oblique grids: the nearest)."""
    if direction is None:
        return array, lambda a: a
    columns = np.asarray(direction, dtype=float).reshape(3, 3)  # columns: i, j, k index axes in LPS
    array_axis_of_column = (2, 1, 0)
    order, flips = [], []
    for patient_axis in (2, 1, 0):  # S, P, L
        column = int(np.argmax([abs(columns[patient_axis, c]) if array_axis_of_column[c] not in order else -1
                                for c in range(3)]))
        order.append(array_axis_of_column[column])
        flips.append(columns[patient_axis, column] < 0)
    moved = np.transpose(array, order)
    for axis, flip in enumerate(flips):
        if flip:
            moved = np.flip(moved, axis)
    inverse = np.argsort(order)

    def undo(result: np.ndarray) -> np.ndarray:
        for axis, flip in enumerate(flips):
            if flip:
                result = np.flip(result, axis)
        return np.ascontiguousarray(np.transpose(result, inverse))

    return np.ascontiguousarray(moved), undo


def _drop(out: np.ndarray, right: int, left: int) -> np.ndarray:
    if out.ndim != 3 or out.shape[0] < 3:
        return out  # a single slice has no cranio-caudal order to reason with
    present = [value for value in (right, left) if (out == value).any()]
    if len(present) == 2:
        _drop_midline_airway(out, right, left)
    for value in present:
        _drop_gas_below(out, value)
    return out


def _centre(lung: np.ndarray, box: tuple[slice, ...]) -> np.ndarray:
    """Centroid (k, j, i) of a mask given on its bounding box, from its three projections."""
    return np.array([box[axis].start + np.average(np.arange(lung.shape[axis]),
                                                  weights=lung.sum(axis=tuple(a for a in range(3) if a != axis)))
                     for axis in range(3)])


def _drop_midline_airway(out: np.ndarray, right: int, left: int) -> None:
    boxes = ndimage.find_objects(out, max_label=max(right, left))
    boxes = [boxes[right - 1], boxes[left - 1]]
    centres = [_centre(out[box] == value, box) for value, box in zip((right, left), boxes)]
    midline = 0.5 * (centres[0][2] + centres[1][2])
    band = MIDLINE_BAND * abs(centres[1][2] - centres[0][2])
    for value, centre, box in zip((right, left), centres, boxes):
        largest = (out[box] == value).sum(axis=(1, 2)).max()
        first = max(box[0].start, int(np.ceil(centre[0])))
        view = out[first:box[0].stop, box[1], box[2]]  # the upper half of this lung's box
        lung = view == value
        column = np.broadcast_to(np.arange(box[2].start, box[2].stop, dtype=float), lung.shape[1:])
        for k in range(lung.shape[0]):
            pieces, count = ndimage.label(lung[k])
            if not count:
                continue
            sizes = np.bincount(pieces.ravel(), minlength=count + 1)
            columns = np.bincount(pieces.ravel(), weights=column.ravel(), minlength=count + 1) / np.maximum(sizes, 1)
            airway = (sizes <= MAX_AIRWAY_SECTION * largest) & (np.abs(columns - midline) <= band)
            airway[0] = False
            if airway.any():
                view[k][airway[pieces]] = 0


def _drop_gas_below(out: np.ndarray, value: int) -> None:
    box = _grown(ndimage.find_objects(out, max_label=value)[value - 1], 1, out.shape)
    view = out[box]  # a view: removing voxels here removes them from ``out``
    lung = view == value
    total = int(lung.sum())
    low, high = np.flatnonzero(lung.any(axis=(1, 2)))[[0, -1]]
    lowest_third = low + (high - low) / 3.0
    cores, count = ndimage.label(ndimage.binary_erosion(lung, _SIX_CONNECTED), _SIX_CONNECTED)
    if count >= 2:
        sizes = np.bincount(cores.ravel(), minlength=count + 1)[1:]
        main = int(np.argmax(sizes)) + 1
        for index, core_box in enumerate(ndimage.find_objects(cores), start=1):
            if index == main or core_box is None or sizes[index - 1] > MAX_GAS_FRACTION * total \
                    or core_box[0].start > lowest_third:
                continue
            # a piece: the voxels nearest its core and at most three steps from it (what a one-voxel erosion
            # took off a blob lies within that), found in a box around the core, never on the whole volume
            local = _grown(core_box, 7, lung.shape)
            distance, nearest = ndimage.distance_transform_cdt(cores[local] == 0, metric="taxicab",
                                                               return_indices=True)
            piece = lung[local] & (distance <= 3) & (cores[local][tuple(nearest)] == index)
            _drop_if_gas(view, lung, local, piece, total, lowest_third)
    pieces, count = ndimage.label(view == value, np.ones((3, 3, 3), bool))
    if count < 2:
        return
    # what is left of a bubble once its core went, and bubbles never joined (post-processing rejoins pieces
    # within two voxels): the same test on every piece detached from the largest
    sizes = np.bincount(pieces.ravel(), minlength=count + 1)[1:]
    main = int(np.argmax(sizes)) + 1
    lung = view == value
    for index, piece_box in enumerate(ndimage.find_objects(pieces), start=1):
        if index != main and piece_box is not None and sizes[index - 1] <= MAX_GAS_FRACTION * total:
            _drop_if_gas(view, lung, piece_box, pieces[piece_box] == index, total, lowest_third)


def _grown(box: tuple[slice, ...], margin: int, shape: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(max(0, b.start - margin), min(n, b.stop + margin)) for b, n in zip(box, shape))


def _drop_if_gas(view: np.ndarray, lung: np.ndarray, local: tuple[slice, ...], piece: np.ndarray, total: int,
                 lowest_third: float) -> None:
    """Remove ``piece`` (a mask on the box ``local`` of ``view``) when it is small, low and under the lung
    across a gap."""
    size = int(piece.sum())
    if not size or size > MAX_GAS_FRACTION * total:
        return
    if local[0].start + np.flatnonzero(piece.any(axis=(1, 2))).mean() > lowest_third:
        return
    column = (slice(local[0].start, lung.shape[0]), local[1], local[2])  # the piece's columns, up to the apex
    in_column = np.zeros(lung[column].shape, bool)
    in_column[:piece.shape[0]] = piece
    if _separated_from_lung_above(in_column, lung[column] & ~in_column):
        view[local][piece] = 0


def _separated_from_lung_above(piece: np.ndarray, body: np.ndarray) -> bool:
    """Whether, in most of ``piece``'s (j, i) columns, the lung body lies above the piece's top across a gap
    of at least MIN_DIAPHRAGM_GAP voxels that are neither."""
    depth = piece.shape[0]
    k = np.arange(depth)[:, None, None]
    columns = piece.any(axis=0)
    top = np.where(piece, k, -1).max(axis=0)  # (j, i): the piece's highest voxel per column
    above = body & (k > top[None])
    first = np.where(above.any(axis=0), np.argmax(above, axis=0), depth)  # the body's lowest voxel above it
    gapped = columns & (first < depth) & (first - top - 1 >= MIN_DIAPHRAGM_GAP)
    return int(gapped.sum()) > 0.5 * int(columns.sum())
