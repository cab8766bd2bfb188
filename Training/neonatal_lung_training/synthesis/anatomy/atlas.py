"""Atlas anatomy: real lung and heart shapes from the fetal thorax atlas, warped onto the output grid.

The atlas (SVRTK thorax template, GPL-3.0) is read from outside the repository, never copied into it.
Only its *shapes* are used: lung, heart and thymus labels plus a body mask from its image. Its fetal T2
contrast (fluid-filled, bright lungs) is the opposite of a newborn's aerated lungs, so the atlas is first
turned into the same tissue classes as the procedural anatomy (chest wall, spine, airway, liver ...
added by rule) and painted later by the shared neonatal contrast model.

Building the tissue template costs about a second, so it is cached per process: training draws
hundreds of cases from it, each needing only one warped nearest-neighbour resampling.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from NeonatalLungSegLib.geometry import Geometry, image_to_array, reorientation

from .procedural import Tissue, pull_back
from .variants import REFERENCE_LUNGS_ML, Pose, draw_pose

ATLAS_IMAGE = "thorax-atlas.nii.gz"
ATLAS_LABELS = "thorax-reo-atlas-labels.nii.gz"
_HEART, _LUNG_LABELS, _THYMUS = 1, (2, 3), 4
_FAT_MM, _MUSCLE_MM = 3.0, 4.0    # chest-wall layers measured inwards from the skin


@dataclass(frozen=True)
class AtlasTemplate:
    """The atlas as tissue classes on its own grid, reoriented so that i, j, k point to L, P, S.

    Positions inside the template are "frame" millimetres: array index times ``spacing``.
    """

    tissue: np.ndarray          # uint8 (k, j, i)
    spacing: np.ndarray         # (k, j, i) mm
    centre: np.ndarray          # frame (x, y, z) mm that lands on the centre of the output grid
    scale: float                # brings the atlas lungs to REFERENCE_LUNGS_ML (the pose's scale 1)
    right_label: int            # which atlas label (2 or 3) is the right lung, from the geometry
    lung_ml: tuple[float, float]  # atlas right, left lung volumes


def _right_lung_label(labels: np.ndarray, geometry: Geometry) -> int:
    """The lung label whose centroid has the smaller LPS x, i.e. lies on the patient's right."""
    xs = {}
    for value in _LUNG_LABELS:
        index = np.argwhere(labels == value)
        if len(index) == 0:
            raise ValueError(f"atlas labels lack lung label {value}")
        xs[value] = float(geometry.array_index_to_lps(index.mean(axis=0))[0])
    return min(xs, key=xs.get)


def _body_mask(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Body from the atlas image, which is zero outside the fetus: threshold, close, fill holes.

    The labels are OR-ed in because the heart's flowing blood is nearly black on the atlas.
    """
    positive = image[image > 0]
    body = (image > 0.04 * np.percentile(positive, 99)) | (labels > 0)
    body = ndimage.binary_closing(body, structure=ndimage.generate_binary_structure(3, 1), iterations=3,
                                  border_value=1)
    body = ndimage.binary_fill_holes(body)
    components, count = ndimage.label(body)
    if count > 1:
        body = components == np.argmax(np.bincount(components.ravel())[1:]) + 1
    return body


def _disc(shape: tuple[int, int], centre: tuple[float, float], radii: tuple[float, float]) -> np.ndarray:
    """In-plane (j, i) ellipse mask; centre and radii in voxels."""
    j, i = np.ogrid[:shape[0], :shape[1]]
    return ((j - centre[0]) / radii[0]) ** 2 + ((i - centre[1]) / radii[1]) ** 2 < 1.0


def _midline_structures(tissue: np.ndarray, body: np.ndarray, free: np.ndarray, wall: np.ndarray,
                        inner: np.ndarray, mid_i: float, carina_k: float, spacing: np.ndarray) -> None:
    """Spine against the back, descending aorta beside it, trachea down to the carina (in place).

    The atlas has no labels for these, yet a newborn image without them would teach the network that
    everything dark and central is lung; they are placed by rule from the back surface in each slice,
    only where the atlas has no lung or heart.
    """
    _, sj, si = spacing
    n_k, n_j = tissue.shape[:2]
    column = body[:, :, int(round(mid_i))]
    back = np.where(column.any(axis=1), n_j - 1 - np.argmax(column[:, ::-1], axis=1), n_j // 2)
    back = ndimage.median_filter(back.astype(float), size=9, mode="nearest")
    plane = tissue.shape[1:]
    for k in range(n_k):
        canal_j, body_j = back[k] - 7.5 / sj, back[k] - 15.0 / sj
        structures = (
            (Tissue.MUSCLE, (back[k] - 5.0 / sj, mid_i), (7.0 / sj, 16.0 / si)),
            (Tissue.VERTEBRA, (body_j, mid_i), (5.5 / sj, 6.5 / si)),
            (Tissue.SPINAL_CANAL, (canal_j, mid_i), (3.0 / sj, 3.2 / si)),
            (Tissue.BLOOD, (body_j - 9.0 / sj, mid_i + 6.0 / si), (3.5 / sj, 3.5 / si)),
        )
        for value, centre, radii in structures:
            tissue[k][_disc(plane, centre, radii) & free[k] & wall[k]] = value
        if k > carina_k:
            trachea = _disc(plane, (body_j - 13.0 / sj, mid_i), (2.6 / sj, 2.6 / si)) & free[k] & inner[k]
            tissue[k][trachea] = Tissue.AIRWAY


def _build(atlas_dir: Path) -> AtlasTemplate:
    """Read the atlas, bring it to LPS voxel order and turn it into tissue classes."""
    image, geometry = image_to_array(sitk.ReadImage(str(atlas_dir / ATLAS_IMAGE)))
    labels, label_geometry = image_to_array(sitk.ReadImage(str(atlas_dir / ATLAS_LABELS)))
    if image.shape != labels.shape or not np.allclose(geometry.origin, label_geometry.origin, atol=1e-3):
        raise ValueError(f"{atlas_dir}: atlas image and labels are not on the same grid")
    plan = reorientation(geometry, "LPS")
    image = np.ascontiguousarray(plan.to_canonical(image)).astype(np.float32)
    labels = np.ascontiguousarray(plan.to_canonical(labels)).astype(np.uint8)
    right_label = _right_lung_label(labels, plan.target)
    left_label = (set(_LUNG_LABELS) - {right_label}).pop()
    spacing = np.asarray(plan.target.spacing[::-1], float)
    sk, sj, si = spacing
    n_k, n_j, n_i = labels.shape

    body = _body_mask(image, labels)
    depth = ndimage.distance_transform_edt(body, sampling=spacing)
    tissue = np.zeros(labels.shape, np.uint8)
    tissue[body] = Tissue.FAT
    wall = depth >= _FAT_MM
    tissue[wall] = Tissue.MUSCLE
    inner = depth >= _FAT_MM + _MUSCLE_MM
    z = (np.arange(n_k) * sk)[:, None, None]
    y = (np.arange(n_j) * sj)[None, :, None]
    ribs = np.sin(2 * np.pi / 8.5 * (z - 0.35 * y)) > 0.55
    tissue[wall & ~inner & ribs] = Tissue.RIB
    tissue[inner] = Tissue.MEDIASTINUM

    lungs = (labels == right_label) | (labels == left_label)
    lung_index = np.argwhere(lungs)
    k_lo, k_hi = lung_index[:, 0].min(), lung_index[:, 0].max()
    mid_i = 0.5 * (np.argwhere(labels == right_label)[:, 2].mean()
                   + np.argwhere(labels == left_label)[:, 2].mean())

    # Diaphragm: the lowest lung or heart voxel of each column, extended smoothly to the other columns.
    support = lungs | (labels == _HEART)
    has = support.any(axis=0)
    lowest = np.argmax(support, axis=0).astype(float)
    _, nearest = ndimage.distance_transform_edt(~has, return_indices=True)
    lowest = ndimage.gaussian_filter(lowest[nearest[0], nearest[1]], 4.0)
    below = np.arange(n_k)[:, None, None] < lowest[None] - 0.5
    abdomen = below & inner
    tissue[abdomen] = Tissue.ABDOMEN
    i_index = np.arange(n_i)[None, None, :]
    k_index = np.arange(n_k)[:, None, None]
    liver = abdomen & (i_index < mid_i + 12.0 / si) & (k_index > lowest[None] - 40.0 / sk)
    tissue[liver] = Tissue.LIVER
    bright = image > 0.6 * np.percentile(image[image > 0], 99)    # fluid-filled stomach on fetal T2
    tissue[abdomen & bright & (i_index > mid_i)] = Tissue.STOMACH

    _midline_structures(tissue, body, ~lungs & (labels == 0), wall, inner, mid_i,
                        k_hi - 0.35 * (k_hi - k_lo), spacing)

    tissue[labels == _THYMUS] = Tissue.THYMUS
    heart = labels == _HEART
    box = ndimage.find_objects(heart.astype(np.uint8))[0]
    wall_depth = ndimage.distance_transform_edt(np.pad(heart[box], 1), sampling=spacing)[1:-1, 1:-1, 1:-1]
    tissue[box][heart[box]] = Tissue.MYOCARDIUM
    tissue[box][heart[box] & (wall_depth > 2.5)] = Tissue.BLOOD
    tissue[labels == right_label] = Tissue.LUNG_RIGHT
    tissue[labels == left_label] = Tissue.LUNG_LEFT

    voxel_ml = float(np.prod(spacing)) / 1000.0
    lung_ml = tuple(float((labels == value).sum()) * voxel_ml for value in (right_label, left_label))
    # The template's mask fades out towards its superior and inferior ends; drop the ragged end slices
    # so that clamping beyond the kept ones repeats a plausible neck and upper abdomen.
    area = body.sum(axis=(1, 2)) / body.sum(axis=(1, 2)).max()
    first = min(int(np.argmax(area >= 0.45)), int(k_lo))
    last = max(n_k - 1 - int(np.argmax(area[::-1] >= 0.2)), int(k_hi))
    tissue = np.ascontiguousarray(tissue[first:last + 1])
    tissue.flags.writeable = False        # shared by every case through the cache
    centre = np.array([mid_i * si, lung_index[:, 1].mean() * sj, (0.5 * (k_lo + k_hi) - first) * sk - 2.0])
    return AtlasTemplate(tissue=tissue, spacing=spacing, centre=centre,
                         scale=float((REFERENCE_LUNGS_ML / sum(lung_ml)) ** (1.0 / 3.0)),
                         right_label=right_label, lung_ml=lung_ml)


@lru_cache(maxsize=2)
def _cached(atlas_dir: str) -> AtlasTemplate:
    return _build(Path(atlas_dir))


def load_atlas(atlas_dir: Path) -> AtlasTemplate:
    """The atlas tissue template for ``atlas_dir`` (built once per process)."""
    return _cached(str(Path(atlas_dir).resolve()))


def atlas_tissue(rng: np.random.Generator, geometry: Geometry, atlas_dir: Path,
                 pose: Pose | None = None) -> np.ndarray:
    """Tissue classes on ``geometry`` from the atlas under a random affine and elastic warp.

    ``pose`` (newborn size, rotation, anisotropic scale, shear, translation, elastic field; see
    ``variants.draw_pose``) is drawn from the training family when not given. Slices beyond the atlas's
    superior/inferior ends repeat its edge slices, so tall fields of view show neck and abdomen rather
    than empty space.
    """
    atlas = load_atlas(atlas_dir)
    pose = draw_pose(rng) if pose is None else pose
    to_frame = pose.matrix / atlas.scale                        # rows: frame x, y, z (mm)
    shift = atlas.centre + pose.offset / atlas.scale
    sk, sj, si = atlas.spacing
    matrix = np.stack([to_frame[2] / sk, to_frame[1] / sj, to_frame[0] / si])
    offset = np.array([shift[2] / sk, shift[1] / sj, shift[0] / si])
    elastic = pose.elastic_mm / (pose.scale * atlas.scale) / atlas.spacing
    coords = pull_back(rng, geometry, matrix, offset, elastic, pose.elastic_corr_mm)
    np.clip(coords[0], 0.0, atlas.tissue.shape[0] - 1.0, out=coords[0])
    return ndimage.map_coordinates(atlas.tissue, coords, order=0, mode="constant", cval=int(Tissue.AIR),
                                   prefilter=False).astype(np.uint8, copy=False)
