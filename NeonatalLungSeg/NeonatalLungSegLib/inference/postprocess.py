"""Turn the network's binary lung mask into a clean right/left lung label map.

The network only says "lung or not"; deciding which lung is which is done here, from physical (LPS)
coordinates, so that flipped, permuted and oblique acquisitions all come out right. In newborns the two
lungs often touch at the thin anterior junction, so one connected component may hold both lungs; it is
split by eroding it until two lung-sized cores appear, then handing every voxel to its nearest core.
That split is only tried when the mask does not already hold two separate lungs side by side.

On real scans the network also cuts one lung into pieces (a dark band, a fissure): the two lungs are
therefore the largest piece and the largest piece *beside it* (left-right), never two pieces of one
lung; other pieces within two voxels of the lung on their side (the nearer in x) rejoin it. Hole filling
fills cavities enclosed in 3D, but an in-slice hole only when it is small against the lung: in the lowest
axial slices the lung wraps around the diaphragm dome, which is liver, not lung.

Everything runs on the bounding box of the mask with bool/uint8/uint16 arrays; the only float arrays
live on a coarse, subsampled copy of one component, which keeps a 300x512x512 mask to a few seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..geometry import Geometry
from .air.extrapulmonary_air import drop_extrapulmonary_air

RIGHT_LUNG, LEFT_LUNG = 1, 2

# The core search runs on a subsampled grid of at most this many voxels: cores are thick by
# construction, so the subsampling loses nothing that matters and bounds the time and memory.
_COARSE_VOXEL_BUDGET = 2_000_000
# At most this many erosion depths are tried per component.
_MAX_EROSION_STEPS = 40
# Each core must hold this fraction of its component: deep erosion of a single lung can leave tiny
# ridge fragments, and splitting on those would cut one lung in two.
_MIN_CORE_FRACTION = 0.005
# Two cores count as right and left lung only if the line joining them is within 60 degrees of the
# patient's left-right axis; a single lung pinched at a waist separates superior-inferiorly instead.
_MIN_LEFT_RIGHT_COSINE = 0.5
# Two separate components side by side are already the two lungs when the smaller holds at least this
# fraction of the larger; neither is then split. A lung broken up by dense BPD patches can itself erode
# into left-right cores, and splitting it would make a third piece and throw part of that lung away.
_SEPARATE_LUNGS_FRACTION = 0.25
# A piece of lung cut off by the network rejoins its lung across a gap of up to this many voxels.
_JOIN_GAP_VOXELS = 2
# Pieces (other than the two lungs) considered for rejoining, largest first: a noisy mask has thousands.
_MAX_JOIN_CANDIDATES = 64


@dataclass(frozen=True)
class PostprocessOptions:
    """Switches for :func:`postprocess`; the defaults are what the Slicer module uses."""

    keep_largest_components: bool = True  # keep the lung-sized 3D components, drop specks and leaks
    fill_holes: bool = True  # fill enclosed holes (vessels excluded by the net), per lung, 3D and along k
    max_hole_fraction: float = 0.05  # in-slice holes larger than this share of the lung's largest slice stay
    split_left_right: bool = True  # label 1 right / 2 left; when False the output is 1 = "lung" (both)
    min_component_fraction: float = 0.1  # a second component is a lung only if >= this of the largest
    drop_extrapulmonary_air: bool = True  # trachea above the carina, gas under the diaphragm (extrapulmonary_air.py)


@dataclass
class _Piece:
    """One lung candidate: a bool mask on a sub-box of the padded crop."""

    box: tuple[slice, slice, slice]
    mask: np.ndarray
    voxels: int


def postprocess(mask: np.ndarray, geometry: Geometry,
                options: PostprocessOptions = PostprocessOptions()) -> np.ndarray:
    """Clean ``mask`` (bool, (k, j, i) on ``geometry``) and label it 1 = right, 2 = left lung.

    With ``split_left_right`` off the same voxels are returned, all labelled 1, so the two modes never
    disagree about what is lung. More than two lung-sized pieces (after splitting touching lungs): the
    two largest are the lungs, because leaks into the airway or bowel are smaller than either lung in
    practice; with ``keep_largest_components`` off the others are kept and join the lung on their side.
    Touching lungs are separated even with ``split_left_right`` off, so that holes are still filled
    per lung. The input is never modified; the output is a new uint8 array.
    """
    mask = np.asarray(mask)
    if tuple(mask.shape) != geometry.array_shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match geometry {geometry.array_shape}")
    if mask.dtype != bool:
        mask = mask != 0
    out = np.zeros(mask.shape, dtype=np.uint8)
    box = _bounding_box(mask)
    if box is None:
        return out
    # A one-voxel background border makes "touches the border" mean "open to the outside" everywhere.
    crop = np.pad(mask[box], 1)
    offset = np.array([s.start - 1 for s in box], dtype=float)
    spacing_kji = np.asarray(geometry.spacing[::-1], dtype=float)

    components, count = _label(crop)
    sizes = _label_sizes(components, count)
    order = np.argsort(sizes)[::-1][:count] if count else np.array([], dtype=int)
    boxes = ndimage.find_objects(components)
    threshold = options.min_component_fraction * sizes[order[0]]
    lungs_apart = _two_separate_lungs(crop, components, order, sizes, spacing_kji, geometry)
    pieces: list[_Piece] = []
    small: list[_Piece] = []
    for label in order:
        if sizes[label] < threshold and len(small) >= _MAX_JOIN_CANDIDATES and options.keep_largest_components:
            break  # sorted by size: only specks remain
        sub_box = _grow(boxes[label - 1], crop.shape)
        sub = components[sub_box] == label
        if sizes[label] < threshold:
            small.append(_Piece(sub_box, sub, int(sizes[label])))
            continue
        split = None if lungs_apart else _split_touching_lungs(sub, spacing_kji, geometry,
                                                                 options.min_component_fraction)
        if split is None:
            pieces.append(_Piece(sub_box, sub, int(sizes[label])))
        else:
            pieces.extend(_Piece(sub_box, part, int(np.count_nonzero(part))) for part in split)
    del components
    pieces.sort(key=lambda piece: piece.voxels, reverse=True)
    lungs = _pick_lungs(pieces, geometry, offset)
    rest = [piece for piece in pieces if not any(piece is lung for lung in lungs)] + small

    labels = np.zeros(crop.shape, dtype=np.uint8)
    sides = _assign_sides(lungs, geometry, offset)
    for piece, side in zip(lungs, sides):
        labels[piece.box][piece.mask] = side
    lung_x = np.array([_centroid_x(piece, geometry, offset) for piece in lungs])
    for piece in rest:  # largest first, so a chain of pieces rejoins link by link
        x = _centroid_x(piece, geometry, offset)
        side = sides[int(np.argmin(np.abs(lung_x - x)))] if len(lungs) else RIGHT_LUNG
        if _touches_within_gap(piece, labels, side) or not options.keep_largest_components:
            region = labels[piece.box]
            region[piece.mask & (region == 0)] = side
    if options.fill_holes:
        for side in (RIGHT_LUNG, LEFT_LUNG):
            _fill_holes_in_place(labels, side, options.max_hole_fraction)
    out[box] = labels[1:-1, 1:-1, 1:-1]
    if options.drop_extrapulmonary_air and options.keep_largest_components:
        out = drop_extrapulmonary_air(out, geometry.direction_matrix, RIGHT_LUNG, LEFT_LUNG)
    if not options.split_left_right:
        out = (out != 0).astype(np.uint8)
    return out


def _bounding_box(mask: np.ndarray) -> tuple[slice, slice, slice] | None:
    """Tight box around the True voxels, from three projections (no index arrays of the whole mask)."""
    slices = []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero(mask.any(axis=others))
        if hits.size == 0:
            return None
        slices.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(slices)


def _label(mask: np.ndarray, structure: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Connected components in uint16 when they fit: half the memory of int32 on a whole volume."""
    try:
        return ndimage.label(mask, structure=structure, output=np.uint16)
    except RuntimeError:  # more than 65535 components (a very noisy mask)
        return ndimage.label(mask, structure=structure, output=np.int32)


def _label_sizes(labels: np.ndarray, count: int) -> np.ndarray:
    """Voxels per label (background zeroed), in slabs: bincount widens to int64, 8 bytes a voxel."""
    sizes = np.zeros(count + 1, dtype=np.int64)
    slab = max(1, (1 << 22) // max(1, labels[0].size))
    for start in range(0, labels.shape[0], slab):
        sizes += np.bincount(labels[start:start + slab].ravel(), minlength=count + 1)
    sizes[0] = 0
    return sizes


def _grow(box: tuple[slice, ...], shape: tuple[int, ...]) -> tuple[slice, slice, slice]:
    """``box`` widened by one voxel, clipped to ``shape``, so sub-boxes keep a background border."""
    return tuple(slice(max(s.start - 1, 0), min(s.stop + 1, n)) for s, n in zip(box, shape))


def _centroid_kji(mask: np.ndarray) -> np.ndarray:
    """Mean (k, j, i) index of a bool mask, from per-axis projections to avoid index arrays."""
    total = np.count_nonzero(mask)
    centroid = np.empty(3)
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        counts = np.count_nonzero(mask, axis=others)
        centroid[axis] = float(np.dot(counts, np.arange(counts.size))) / total
    return centroid


def _centroid_x(piece: _Piece, geometry: Geometry, offset: np.ndarray) -> float:
    """Physical LPS x (mm, larger = patient left) of a piece's centroid."""
    return float(_centroid_lps(piece, geometry, offset)[0])


def _pick_lungs(pieces: list[_Piece], geometry: Geometry, offset: np.ndarray) -> list[_Piece]:
    """The largest piece and the largest one lying beside it (left-right), or the largest alone.

    Two pieces one above the other are one lung cut in two by the network, never a right and a left lung.
    """
    if not pieces:
        return []
    first = pieces[0]
    centre = _centroid_lps(first, geometry, offset)
    for piece in pieces[1:]:
        delta = _centroid_lps(piece, geometry, offset) - centre
        if abs(delta[0]) >= _MIN_LEFT_RIGHT_COSINE * np.linalg.norm(delta):
            return [first, piece]
    return [first]


def _touches_within_gap(piece: _Piece, labels: np.ndarray, side: int) -> bool:
    """Whether ``piece`` lies within ``_JOIN_GAP_VOXELS`` voxels of the lung labelled ``side``."""
    grown = tuple(slice(max(s.start - _JOIN_GAP_VOXELS, 0), min(s.stop + _JOIN_GAP_VOXELS, n))
                  for s, n in zip(piece.box, labels.shape))
    placed = np.zeros(tuple(s.stop - s.start for s in grown), dtype=bool)
    inner = tuple(slice(b.start - g.start, b.stop - g.start) for b, g in zip(piece.box, grown))
    placed[inner] = piece.mask
    reach = ndimage.binary_dilation(placed, ndimage.generate_binary_structure(3, 1),
                                    iterations=_JOIN_GAP_VOXELS)
    return bool((reach & (labels[grown] == side)).any())


def _centroid_lps(piece: _Piece, geometry: Geometry, offset: np.ndarray) -> np.ndarray:
    start = np.array([s.start for s in piece.box], dtype=float)
    return geometry.array_index_to_lps(_centroid_kji(piece.mask) + start + offset)


def _assign_sides(lungs: list[_Piece], geometry: Geometry, offset: np.ndarray) -> list[int]:
    """Right/left label per lung: by relative physical x for two, by body side for a lone lung."""
    if not lungs:
        return []
    xs = [_centroid_x(piece, geometry, offset) for piece in lungs]
    if len(lungs) == 2:
        return [RIGHT_LUNG, LEFT_LUNG] if xs[0] <= xs[1] else [LEFT_LUNG, RIGHT_LUNG]
    # A lone lung (the other collapsed or missed): the grid centre stands in for the body midline.
    centre_x = geometry.index_to_lps((np.asarray(geometry.size, dtype=float) - 1) / 2)[0]
    return [RIGHT_LUNG if xs[0] < centre_x else LEFT_LUNG]


def _coarse_factors(shape: tuple[int, ...], spacing_kji: np.ndarray) -> np.ndarray:
    """Integer strides that bring ``shape`` under the voxel budget, coarsening the finest axis first."""
    factors = np.ones(3, dtype=int)
    while np.prod(-(-np.asarray(shape) // factors)) > _COARSE_VOXEL_BUDGET:
        candidates = [a for a in range(3) if shape[a] > factors[a]]
        axis = min(candidates, key=lambda a: spacing_kji[a] * factors[a])
        factors[axis] += 1
    return factors


def _split_touching_lungs(component: np.ndarray, spacing_kji: np.ndarray, geometry: Geometry,
                          min_fraction: float) -> list[np.ndarray] | None:
    """Split one component holding both lungs into two bool masks, or None if it is a single lung.

    Thresholding the distance transform (in mm) at depth r is an erosion by a ball of radius r, so the
    erosion respects anisotropic spacing. The shallowest depth giving two lung-sized, left-right cores
    keeps the cores as large as possible; voxels then go to the nearest core.
    """
    factors = _coarse_factors(component.shape, spacing_kji)
    coarse = component[::factors[0], ::factors[1], ::factors[2]]
    coarse_spacing = spacing_kji * factors
    depth = ndimage.distance_transform_edt(coarse, sampling=coarse_spacing).astype(np.float32)
    deepest = float(depth.max())
    step = max(float(coarse_spacing.min()), deepest / _MAX_EROSION_STEPS)
    min_core = _MIN_CORE_FRACTION * np.count_nonzero(coarse)
    seeds = None
    radius = step
    while radius < deepest and seeds is None:
        seeds = _two_lung_cores(depth > radius, coarse_spacing, geometry, min_fraction, min_core)
        radius += step
    if seeds is None:
        return None
    nearest = ndimage.distance_transform_edt(seeds == 0, sampling=coarse_spacing,
                                             return_distances=False, return_indices=True)
    owner = seeds[tuple(nearest)]
    del nearest
    for axis, factor in enumerate(factors):
        owner = np.repeat(owner, factor, axis=axis)
    owner = owner[:component.shape[0], :component.shape[1], :component.shape[2]]
    parts = [component & (owner == 1), component & (owner == 2)]
    counts = [np.count_nonzero(part) for part in parts]
    if min(counts) < min_fraction * max(counts):
        return None
    return parts


def _two_lung_cores(eroded: np.ndarray, spacing_kji: np.ndarray, geometry: Geometry,
                    min_fraction: float, min_core: float) -> np.ndarray | None:
    """Seed map (1, 2 on the two largest cores) if ``eroded`` holds two plausible lung cores."""
    cores, count = _label(eroded)
    if count < 2:
        return None
    sizes = _label_sizes(cores, count)
    first, second = np.argsort(sizes)[::-1][:2]
    if sizes[second] < max(min_fraction * sizes[first], min_core):
        return None
    if not _left_right_apart(eroded, cores, (first, second), spacing_kji, geometry):
        return None
    seeds = np.zeros(eroded.shape, dtype=np.uint8)
    seeds[cores == first] = 1
    seeds[cores == second] = 2
    return seeds


def _two_separate_lungs(mask: np.ndarray, components: np.ndarray, order: np.ndarray, sizes: np.ndarray,
                        spacing_kji: np.ndarray, geometry: Geometry) -> bool:
    """True if the two largest components are comparable in size and side by side: both lungs, apart."""
    if len(order) < 2 or sizes[order[1]] < _SEPARATE_LUNGS_FRACTION * sizes[order[0]]:
        return False
    return _left_right_apart(mask, components, (order[0], order[1]), spacing_kji, geometry)


def _left_right_apart(mask: np.ndarray, labels: np.ndarray, pair: tuple[int, int], spacing_kji: np.ndarray,
                      geometry: Geometry) -> bool:
    """Whether the centroids of two labels lie within 60 degrees of the patient's left-right axis."""
    centres = ndimage.center_of_mass(mask, labels, list(pair))
    delta_kji = (np.asarray(centres[0]) - np.asarray(centres[1])) * spacing_kji
    delta_lps = geometry.direction_matrix @ delta_kji[::-1]
    return bool(abs(delta_lps[0]) >= _MIN_LEFT_RIGHT_COSINE * np.linalg.norm(delta_lps))


def _fill_holes_in_place(labels: np.ndarray, side: int, max_fraction: float = 1.0) -> None:
    """Fill the holes of one lung, never over the other lung: every hole enclosed in 3D, and slice by
    slice along k the holes no larger than ``max_fraction`` of the lung's largest k-slice.

    Small in-slice holes are vessels the network left out; a large one is the liver dome (or the heart)
    that the lung wraps around in a slice, which is open in 3D and must stay outside. One labelling with
    in-plane connectivity handles every slice at once. Per-lung filling matters: two lungs together can
    enclose the heart in an axial slice.
    """
    present = labels == side
    box = _bounding_box(present)
    if box is None:
        return
    box = _grow(box, labels.shape)
    lung = present[box]
    in_plane = np.zeros((3, 3, 3), dtype=bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)
    background, _ = _label(~lung, structure=in_plane)
    outside = np.unique(np.concatenate([background[:, 0, :].ravel(), background[:, -1, :].ravel(),
                                        background[:, :, 0].ravel(), background[:, :, -1].ravel()]))
    is_hole = np.ones(int(background.max()) + 1, dtype=bool)
    is_hole[0] = False
    is_hole[outside] = False
    if max_fraction < 1.0:
        largest_slice = int(np.count_nonzero(lung, axis=(1, 2)).max())
        hole_sizes = _label_sizes(background, int(background.max()))
        is_hole &= hole_sizes <= max_fraction * largest_slice
    region = labels[box]
    fill = is_hole[background]
    if max_fraction < 1.0:
        fill |= ndimage.binary_fill_holes(lung) & ~lung  # enclosed in 3D: a cavity, whatever its size
    region[fill & (region == 0)] = side
