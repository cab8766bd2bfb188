"""Which slices a reviewer should look at first: the ones the model was least sure about.

A clinician checking a 3D mask slice by slice spends most of the time on slices the model got right. The
confidence measures of ``confidence.py`` say where the model hesitated; this module turns the least
confident axial slices into things a viewer can jump to (index, centre in LPS and RAS, one line of text).
Slices are the patient's axial planes (the input axis closest to superior-inferior, found through
``geometry.reorientation``), because that is how the model saw the volume and how a reviewer pages
through a chest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..inference.confidence import (HIGH, LOW, MIN_AREA_FRACTION, CaseConfidence, axial_array_axis, measure_confidence,
                         slice_center_lps)
from ..geometry import Geometry, lps_to_ras

__all__ = ["SliceToReview", "axial_array_axis", "least_confident_slices", "slices_to_review"]

UNCERTAIN_LOW, UNCERTAIN_HIGH = LOW, HIGH  # the undecided band, kept under its earlier names


@dataclass(frozen=True)
class SliceToReview:
    """One axial slice: its index along ``array_axis`` of the (k, j, i) array and where its centre is."""

    array_axis: int
    index: int
    score: float           # doubt: 1 - confidence (estimated Dice of the slice), 0..1
    uncertain_voxels: int
    lung_voxels: int
    center_lps: tuple[float, float, float]
    confidence: float = 1.0
    mean_entropy: float = 0.0
    flip_dice: float | None = None

    @property
    def center_ras(self) -> tuple[float, float, float]:
        """The slice centre in Slicer's RAS coordinates (for jumping the slice views there)."""
        point = lps_to_ras() @ np.array([*self.center_lps, 1.0])
        return tuple(float(v) for v in point[:3])

    def describe(self) -> str:
        considered = self.lung_voxels + self.uncertain_voxels
        text = (f"slice {self.index}: confidence {100 * self.confidence:.0f} % "
                f"({self.uncertain_voxels} of {considered} voxels undecided")
        if self.flip_dice is not None:
            text += f", flip agreement {self.flip_dice:.2f}"
        return text + ")"


def slices_to_review(case: CaseConfidence, geometry: Geometry, count: int = 5,
                     min_area_fraction: float = MIN_AREA_FRACTION) -> list[SliceToReview]:
    """The ``count`` least confident slices of a measured case, least confident first."""
    return [SliceToReview(array_axis=case.array_axis, index=s.index, score=1.0 - s.confidence,
                          uncertain_voxels=s.uncertain_voxels, lung_voxels=s.lung_voxels,
                          center_lps=slice_center_lps(geometry, case.array_axis, s.index),
                          confidence=s.confidence, mean_entropy=s.mean_entropy, flip_dice=s.flip_dice)
            for s in case.slices_to_check(count, min_area_fraction)]


def least_confident_slices(probabilities: np.ndarray, geometry: Geometry, count: int = 5,
                           low: float = UNCERTAIN_LOW, high: float = UNCERTAIN_HIGH,
                           min_area_fraction: float = MIN_AREA_FRACTION,
                           flipped: np.ndarray | None = None) -> list[SliceToReview]:
    """Up to ``count`` axial slices of a lung probability map, least confident first.

    Slices with neither lung nor doubt, or with less than ``min_area_fraction`` of the fullest slice's
    lung-or-undecided voxels, are skipped. ``flipped`` (the mirrored prediction) adds flip agreement.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if not 0.0 <= low < 0.5 < high <= 1.0:
        raise ValueError(f"the undecided band ({low}, {high}) must contain 0.5 and lie within [0, 1]")
    case = measure_confidence(probabilities, geometry, flipped, low=low, high=high)
    return slices_to_review(case, geometry, count, min_area_fraction)
