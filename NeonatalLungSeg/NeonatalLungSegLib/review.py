"""Which slices a reviewer should look at first: the ones the model was least sure about.

A clinician checking a 3D mask slice by slice spends most of the time on slices the model got right. The
sigmoid output says where the model hesitated, so slices are ranked by the share of their lung-or-uncertain
voxels whose probability sits in the undecided band. Slices are the patient's axial planes (the input axis
closest to superior-inferior, found through ``geometry.reorientation``), because that is how the model saw
the volume and how a reviewer pages through a chest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .geometry import Geometry, lps_to_ras, reorientation

# Probabilities inside (LOW, HIGH) count as undecided. 0.5 is the decision threshold; the band is wide
# enough that a mask edge the model placed confidently (a sharp sigmoid) contributes little.
UNCERTAIN_LOW, UNCERTAIN_HIGH = 0.2, 0.8
# Slices holding fewer lung-or-undecided voxels than this share of the fullest slice are not ranked: a
# 20-voxel apex tip is "100 % undecided" by construction and would crowd out the slices worth a look.
MIN_AREA_FRACTION = 0.05


@dataclass(frozen=True)
class SliceToReview:
    """One axial slice: its index along ``array_axis`` of the (k, j, i) array and where its centre is."""

    array_axis: int
    index: int
    score: float           # undecided voxels / (lung + undecided voxels), 0..1
    uncertain_voxels: int
    lung_voxels: int
    center_lps: tuple[float, float, float]

    @property
    def center_ras(self) -> tuple[float, float, float]:
        """The slice centre in Slicer's RAS coordinates (for jumping the slice views there)."""
        point = lps_to_ras() @ np.array([*self.center_lps, 1.0])
        return tuple(float(v) for v in point[:3])

    def describe(self) -> str:
        return (f"slice {self.index}: {100 * self.score:.0f} % undecided "
                f"({self.uncertain_voxels} of {self.lung_voxels + self.uncertain_voxels} voxels)")


def axial_array_axis(geometry: Geometry) -> int:
    """The NumPy axis of a (k, j, i) array on ``geometry`` that runs closest to superior-inferior."""
    plan = reorientation(geometry, "LPS")
    return 2 - plan.axes[2]  # canonical axis 2 is S; ITK axis a is NumPy axis 2 - a


def least_confident_slices(probabilities: np.ndarray, geometry: Geometry, count: int = 5,
                           low: float = UNCERTAIN_LOW, high: float = UNCERTAIN_HIGH,
                           min_area_fraction: float = MIN_AREA_FRACTION) -> list[SliceToReview]:
    """Up to ``count`` axial slices, least confident first.

    Slices with neither lung nor doubt, or with less than ``min_area_fraction`` of the fullest slice's
    lung-or-undecided voxels, are skipped.
    """
    if tuple(probabilities.shape) != geometry.array_shape:
        raise ValueError(f"probabilities shape {probabilities.shape} does not match geometry {geometry.array_shape}")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if not 0.0 <= low < 0.5 < high <= 1.0:
        raise ValueError(f"the undecided band ({low}, {high}) must contain 0.5 and lie within [0, 1]")
    axis = axial_array_axis(geometry)
    others = tuple(a for a in range(3) if a != axis)
    uncertain = np.count_nonzero((probabilities > low) & (probabilities < high), axis=others)
    lung = np.count_nonzero(probabilities >= high, axis=others)
    considered = uncertain + lung
    floor = max(1, int(np.ceil(min_area_fraction * considered.max()))) if considered.size else 1
    candidates = np.flatnonzero(considered >= floor)
    scores = uncertain[candidates] / considered[candidates]
    # Highest score first; ties go to the slice with more undecided voxels, then the lower index.
    order = np.lexsort((candidates, -uncertain[candidates], -scores))[:count]
    centre_index = (np.asarray(geometry.size, dtype=float) - 1) / 2  # ITK (i, j, k)
    slices = []
    for position in order:
        index = int(candidates[position])
        ijk = centre_index.copy()
        ijk[2 - axis] = index
        slices.append(SliceToReview(array_axis=axis, index=index, score=float(scores[position]),
                                    uncertain_voxels=int(uncertain[index]), lung_voxels=int(lung[index]),
                                    center_lps=tuple(float(v) for v in geometry.index_to_lps(ijk))))
    return slices
