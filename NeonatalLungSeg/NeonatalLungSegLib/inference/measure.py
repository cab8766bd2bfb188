"""Lung volumes from a label map, in a form that can go straight into a JSON report or the Slicer UI.

Volumes are voxel counts times the voxel volume of the grid the labels live on; computing them on the
original (not resampled) grid avoids interpolation changing the numbers clinicians compare over time.
"""

from __future__ import annotations

import numpy as np

from ..geometry import Geometry
from .postprocess import LEFT_LUNG, RIGHT_LUNG


def measure_volumes(labels: np.ndarray, geometry: Geometry, split: bool = True) -> dict:
    """Voxel counts and volumes (mL) of the right and left lung, or of "lung" when ``split`` is False.

    With ``split`` False every non-zero voxel counts as lung, so a split label map can also be
    measured as a whole. Only plain Python types are returned, so ``json.dumps`` works on the result.
    """
    if tuple(labels.shape) != geometry.array_shape:
        raise ValueError(f"labels shape {tuple(labels.shape)} does not match geometry {geometry.array_shape}")
    voxel_ml = geometry.voxel_volume_ml
    result: dict = {}
    if split:
        right = int(np.count_nonzero(labels == RIGHT_LUNG))
        left = int(np.count_nonzero(labels == LEFT_LUNG))
        result["right_lung"] = _entry(RIGHT_LUNG, right, voxel_ml)
        result["left_lung"] = _entry(LEFT_LUNG, left, voxel_ml)
        total = right + left
    else:
        total = int(np.count_nonzero(labels))
        result["lung"] = _entry(1, total, voxel_ml)
    result["total"] = {"voxels": total, "volume_ml": total * voxel_ml}
    result["voxel_volume_ml"] = float(voxel_ml)
    result["spacing_mm"] = [float(s) for s in geometry.spacing]
    return result


def _entry(label: int, voxels: int, voxel_ml: float) -> dict:
    return {"label": int(label), "voxels": int(voxels), "volume_ml": float(voxels * voxel_ml)}


def format_volumes(volumes: dict) -> str:
    """One line for a status bar or log, e.g. ``"right 32.1 mL, left 27.4 mL, total 59.5 mL"``."""
    total = f"total {volumes['total']['volume_ml']:.1f} mL"
    if "right_lung" in volumes and "left_lung" in volumes:
        return (f"right {volumes['right_lung']['volume_ml']:.1f} mL, "
                f"left {volumes['left_lung']['volume_ml']:.1f} mL, {total}")
    return f"{total} (lungs not split)"


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two masks (any values, nonzero = inside); 1.0 when both are empty (nothing to disagree about).

    The one overlap measure shared by export (AI vs corrected), evaluation and the Slicer self-test.
    """
    a, b = np.asarray(a) != 0, np.asarray(b) != 0
    total = int(np.count_nonzero(a)) + int(np.count_nonzero(b))
    return 1.0 if total == 0 else 2.0 * int(np.count_nonzero(a & b)) / total
