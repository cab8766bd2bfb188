"""Segmentation metrics on NumPy masks, in physical units: overlap, surface distance, volume, ROC.

Pure NumPy/SciPy, no torch, so they are cheap to test by hand. Conventions:

- Masks are boolean (or 0/1) arrays indexed ``(k, j, i)``; ``spacing_kji`` is the voxel size in mm in the
  SAME array order (an ITK spacing ``(i, j, k)`` must be reversed first: ``geometry.spacing[::-1]``).
- Overlap: two empty masks agree perfectly (Dice = IoU = 1); one empty and one not gives 0.
- Surface distances (HD95, MSD) are measured between the masks' surface voxels (a voxel of the mask with
  at least one of its 6 face neighbours outside it, the image border counting as outside; the same
  definition as MONAI's ``get_mask_edges`` without sub-voxel edges) with SciPy's exact Euclidean distance
  transform on the anisotropic grid. HD95 is the larger of the two directed 95th percentiles (linear
  interpolation), MSD the mean of the two directed mean distances -- MONAI's ``HausdorffDistanceMetric
  (percentile=95)`` and ``SurfaceDistanceMetric(symmetric=True)``.
  Both masks empty -> NaN (no surface, distance undefined; summaries skip NaN). Exactly one empty ->
  +inf (a complete miss has no finite distance; it is kept, so a mean over cases becomes inf).
- ROC: exact, with ties handled by grouping equal scores (the area equals the Mann-Whitney U statistic
  divided by n_pos * n_neg, ties counting one half). No positives or no negatives -> NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage

from NeonatalLungSegLib.inference.measure import dice  # noqa: F401  (re-exported: the one Dice of the project)

POSITIONS = ("apex", "middle", "base")


def _as_bool(mask: np.ndarray) -> np.ndarray:
    return np.asarray(mask).astype(bool, copy=False)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union (Jaccard) of two masks; two empty masks give 1.0. IoU = D / (2 - D)."""
    a, b = _as_bool(a), _as_bool(b)
    union = int(np.logical_or(a, b).sum())
    return 1.0 if union == 0 else int(np.logical_and(a, b).sum()) / union


@dataclass
class PooledOverlap:
    """Dice and IoU pooled over many masks (all validation slices or volumes of an epoch).

    Counts, not per-mask scores, so a lung-free slice neither helps nor hurts. Works on NumPy arrays and
    torch tensors alike (only ``&`` and ``.sum()`` are used), so training never copies masks to NumPy.
    """

    hits: float = 0.0
    predicted: float = 0.0
    truth: float = 0.0

    def add(self, predicted, reference) -> None:
        self.hits += float((predicted & reference).sum())
        self.predicted += float(predicted.sum())
        self.truth += float(reference.sum())

    @property
    def dice(self) -> float:
        total = self.predicted + self.truth
        return 2 * self.hits / total if total else 1.0

    @property
    def iou(self) -> float:
        union = self.predicted + self.truth - self.hits
        return self.hits / union if union else 1.0


def _check_spacing(spacing_kji: Sequence[float], ndim: int) -> np.ndarray:
    spacing = np.asarray(spacing_kji, dtype=float)
    if spacing.shape != (ndim,) or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise ValueError(f"spacing must be {ndim} positive finite mm values in array order, got {spacing_kji!r}")
    return spacing


def surface(mask: np.ndarray) -> np.ndarray:
    """Surface voxels: in the mask with at least one face neighbour outside it (border counts as outside)."""
    mask = _as_bool(mask)
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def directed_surface_distances(a: np.ndarray, b: np.ndarray,
                               spacing_kji: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from every surface voxel of ``a`` to the nearest of ``b``, and from ``b`` to ``a``.

    Both masks must be non-empty. Work is cropped to the masks' joint bounding box (exact: every surface
    voxel lies inside it).
    """
    a, b = _as_bool(a), _as_bool(b)
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")
    spacing = _check_spacing(spacing_kji, a.ndim)
    if not a.any() or not b.any():
        raise ValueError("surface distances need two non-empty masks")
    union = a | b
    box = tuple(slice(max(int(idx.min()) - 1, 0), int(idx.max()) + 2) for idx in np.nonzero(union))
    surface_a, surface_b = surface(a[box]), surface(b[box])
    to_b = ndimage.distance_transform_edt(~surface_b, sampling=spacing)
    to_a = ndimage.distance_transform_edt(~surface_a, sampling=spacing)
    return to_b[surface_a], to_a[surface_b]


def _empty_case(a: np.ndarray, b: np.ndarray) -> float | None:
    """NaN when both masks are empty, inf when exactly one is, None when both hold voxels."""
    has_a, has_b = bool(_as_bool(a).any()), bool(_as_bool(b).any())
    if has_a and has_b:
        return None
    return float("nan") if not (has_a or has_b) else float("inf")


def surface_distances(a: np.ndarray, b: np.ndarray, spacing_kji: Sequence[float]) -> dict[str, float]:
    """``{"hd95_mm", "msd_mm"}`` from one pair of distance transforms (NaN both empty, inf one empty)."""
    special = _empty_case(a, b)
    if special is not None:
        return {"hd95_mm": special, "msd_mm": special}
    ab, ba = directed_surface_distances(a, b, spacing_kji)
    return {"hd95_mm": float(max(np.percentile(ab, 95), np.percentile(ba, 95))),
            "msd_mm": float((ab.mean() + ba.mean()) / 2.0)}


def hausdorff95(a: np.ndarray, b: np.ndarray, spacing_kji: Sequence[float]) -> float:
    """Symmetric 95th-percentile Hausdorff distance in mm (NaN both empty, inf one empty)."""
    return surface_distances(a, b, spacing_kji)["hd95_mm"]


def mean_surface_distance(a: np.ndarray, b: np.ndarray, spacing_kji: Sequence[float]) -> float:
    """Symmetric mean surface distance in mm: mean of the two directed means (NaN both empty, inf one)."""
    return surface_distances(a, b, spacing_kji)["msd_mm"]


def volume_errors(predicted: np.ndarray, reference: np.ndarray, voxel_ml: float) -> dict[str, float]:
    """Reference and predicted volume (mL), their difference predicted - reference (mL), and that
    difference and its absolute value in % of the reference (NaN when the reference is empty)."""
    ref_ml = float(_as_bool(reference).sum()) * voxel_ml
    pred_ml = float(_as_bool(predicted).sum()) * voxel_ml
    error = pred_ml - ref_ml
    return {"volume_ref_ml": ref_ml, "volume_pred_ml": pred_ml, "volume_error_ml": error,
            "volume_error_pct": 100.0 * error / ref_ml if ref_ml > 0 else float("nan"),
            "volume_abs_error_pct": 100.0 * abs(error) / ref_ml if ref_ml > 0 else float("nan")}


@dataclass
class RocCounts:
    """Positives and negatives per distinct score, scores descending; pools across cases with ``+``."""

    scores: np.ndarray      # float64, strictly descending
    positives: np.ndarray   # int64 counts
    negatives: np.ndarray   # int64 counts

    @staticmethod
    def from_scores(scores: np.ndarray, truth: np.ndarray) -> RocCounts:
        scores = np.asarray(scores, dtype=np.float64).ravel()
        truth = _as_bool(truth).ravel()
        if scores.shape != truth.shape:
            raise ValueError(f"scores and truth differ in size: {scores.size} vs {truth.size}")
        if not np.all(np.isfinite(scores)):
            raise ValueError("scores must be finite")
        values, inverse = np.unique(scores, return_inverse=True)
        positives = np.bincount(inverse, weights=truth, minlength=len(values)).astype(np.int64)
        totals = np.bincount(inverse, minlength=len(values)).astype(np.int64)
        return RocCounts(values[::-1].copy(), positives[::-1].copy(), (totals - positives)[::-1].copy())

    def __add__(self, other: RocCounts) -> RocCounts:
        values = np.concatenate([self.scores, other.scores])
        unique, inverse = np.unique(values, return_inverse=True)
        pos = np.bincount(inverse, weights=np.concatenate([self.positives, other.positives]),
                          minlength=len(unique))
        neg = np.bincount(inverse, weights=np.concatenate([self.negatives, other.negatives]),
                          minlength=len(unique))
        return RocCounts(unique[::-1].copy(), pos[::-1].astype(np.int64), neg[::-1].astype(np.int64))

    def curve(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(false positive rate, true positive rate, threshold), from (0, 0) to (1, 1); a voxel is called
        positive when its score >= threshold. Empty class -> rates of NaN."""
        n_pos, n_neg = int(self.positives.sum()), int(self.negatives.sum())
        tp = np.concatenate([[0], np.cumsum(self.positives)])
        fp = np.concatenate([[0], np.cumsum(self.negatives)])
        thresholds = np.concatenate([[np.inf], self.scores])
        with np.errstate(invalid="ignore", divide="ignore"):
            tpr = tp / n_pos if n_pos else np.full(tp.shape, np.nan)
            fpr = fp / n_neg if n_neg else np.full(fp.shape, np.nan)
        return fpr, tpr, thresholds

    def auc(self) -> float:
        """Area under the ROC curve (trapezoids over tied scores = Mann-Whitney U with ties as 1/2)."""
        if not self.positives.sum() or not self.negatives.sum():
            return float("nan")
        fpr, tpr, _ = self.curve()
        return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def roc_auc(scores: np.ndarray, truth: np.ndarray) -> float:
    """Pixel ROC AUC of ``scores`` (e.g. lung probability) against a boolean ``truth`` mask."""
    return RocCounts.from_scores(scores, truth).auc()


def slice_dice_by_position(predicted: np.ndarray, reference: np.ndarray, axis: int = 0,
                           apex_at_high_index: bool = True) -> dict[str, float]:
    """Mean per-slice Dice in the apex, middle and base thirds of the reference lung's extent.

    Slices run along ``axis``; the extent is from the first to the last slice holding reference lung,
    split into three equal thirds by slice position. ``apex_at_high_index`` says whether the apex (top
    of the lung) lies at the high end of the axis (True for LPS arrays, where k grows towards superior).
    Slices inside the extent where neither mask has lung are skipped. Empty reference -> NaN for all.
    """
    predicted = np.moveaxis(_as_bool(predicted), axis, 0)
    reference = np.moveaxis(_as_bool(reference), axis, 0)
    if predicted.shape != reference.shape:
        raise ValueError(f"mask shapes differ: {predicted.shape} vs {reference.shape}")
    present = np.flatnonzero(reference.reshape(len(reference), -1).any(axis=1))
    if present.size == 0:
        return {p: float("nan") for p in POSITIONS}
    first, last = int(present[0]), int(present[-1])
    flat_p = predicted[first:last + 1].reshape(last - first + 1, -1)
    flat_r = reference[first:last + 1].reshape(last - first + 1, -1)
    inter = np.logical_and(flat_p, flat_r).sum(axis=1)
    totals = flat_p.sum(axis=1) + flat_r.sum(axis=1)
    valid = totals > 0
    per_slice = np.where(valid, 2.0 * inter / np.maximum(totals, 1), np.nan)
    # Fractional position of each slice centre within the extent, 0 = low index end, 1 = high end.
    position = (np.arange(len(per_slice)) + 0.5) / len(per_slice)
    third = np.minimum((position * 3).astype(int), 2)  # 0 low, 1 middle, 2 high
    names = ("base", "middle", "apex") if apex_at_high_index else ("apex", "middle", "base")
    out = {}
    for index, name in enumerate(names):
        values = per_slice[(third == index) & valid]
        out[name] = float(values.mean()) if values.size else float("nan")
    return {p: out[p] for p in POSITIONS}
