"""Volumetric evaluation through the real engine (preprocess, infer, post-process), not the training loop.

Slice Dice during training flatters a model; what a clinician gets is the post-processed, right/left-split
volume, so the figures in a model card come from here.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import SimpleITK as sitk

from NeonatalLungSegLib.engine import Segmenter
from NeonatalLungSegLib.geometry import image_to_array


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two boolean masks; two empty masks agree perfectly."""
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def evaluate_case(segmenter: Segmenter, image: sitk.Image, label: sitk.Image) -> dict[str, float]:
    """Per-lung Dice and volume error of the engine's output against a reference labelmap (1 R, 2 L)."""
    result = segmenter.segment_image(image)
    reference, geometry = image_to_array(label)
    voxel_ml = geometry.voxel_volume_ml
    scores: dict[str, float] = {}
    for name, value in (("right_lung", 1), ("left_lung", 2)):
        predicted, truth = result.labels == value, reference == value
        scores[f"dice_{name}"] = dice(predicted, truth)
        scores[f"volume_error_ml_{name}"] = float((predicted.sum() - truth.sum()) * voxel_ml)
    scores["dice_lungs"] = dice(result.labels > 0, reference > 0)
    return scores


def summarise(per_case: Iterable[dict[str, float]]) -> dict[str, float]:
    """Mean and minimum of each per-case score (the minimum is what a worst case looks like)."""
    rows = list(per_case)
    summary: dict[str, float] = {"cases": len(rows)}
    for key in rows[0] if rows else []:
        values = np.array([r[key] for r in rows], dtype=float)
        summary[f"mean_{key}"] = round(float(values.mean()), 4)
        if key.startswith("dice"):
            summary[f"min_{key}"] = round(float(values.min()), 4)
    return summary
