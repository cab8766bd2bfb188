"""Clicks for mask refinement: what a click is, how it is read from JSON, and how it becomes a network input.

A click map is what the click-refinement network sees beside the image and the current mask: one Gaussian
per click, in network pixels, whose height falls with the click's distance (in mm) from the slice. Training
(``neonatal_lung_training.interactive``) and the engine (``refine.py``) draw the maps with these same
functions, so a click means at inference exactly what it meant in training.

Click JSON (``neonatal-lung-seg refine --clicks``), one object per click, applied in order::

    {"clicks": [{"point": [x, y, z], "sign": "+", "lung": "right"},
                {"index": [k, j, i], "sign": "-"}]}

``point`` is a physical LPS position in mm (what ITK, SimpleITK and the DICOM standard use; Slicer's RAS
needs x and y negated); ``index`` is a voxel (slice, row, column) of the input volume. ``sign`` is "+"
(this is lung: add it) or "-" (this is not lung: remove it). ``lung`` ("right" / "left") is optional: a
positive click otherwise belongs to the lung on its side of the midline, a negative one to the lung under it.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import InputError
from ..json_input import read_json_file
from ..geometry import Geometry

LUNG_NAMES = {"right": "right_lung", "left": "left_lung", "right_lung": "right_lung", "left_lung": "left_lung"}
MAX_CLICKS = 1000
MAX_CLICKS_FILE_BYTES = 1_000_000  # 1000 clicks take about 60 kB


@dataclass(frozen=True)
class Click:
    """One click on the input volume's own voxel grid."""

    index: tuple[int, int, int]   # (k, j, i): slice, row, column of the input array
    positive: bool                # True: "this is lung", False: "this is not lung"
    lung: str | None = None       # "right_lung" / "left_lung", or None: decided from where the click is

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"index": list(self.index), "sign": "+" if self.positive else "-"}
        if self.lung:
            data["lung"] = self.lung.replace("_lung", "")
        return data


_FAR = 1e9  # beyond any voxel index or millimetre of a real volume; bounds the arithmetic before it is done


def _finite_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return isinstance(value, int) or math.isfinite(value)


def click_from_dict(data: Any, geometry: Geometry, where: str = "click") -> Click:
    """A click from its JSON form; every problem is one InputError naming the click."""
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected an object with 'point' or 'index' and 'sign', got {data!r:.60}")
    sign = data.get("sign")
    if not isinstance(sign, str) or sign not in ("+", "-"):
        raise InputError(f"{where}: 'sign' must be \"+\" (add lung) or \"-\" (remove lung), got {sign!r:.30}")
    lung = data.get("lung")
    if lung is not None and (not isinstance(lung, str) or lung not in LUNG_NAMES):
        raise InputError(f"{where}: 'lung' must be 'right' or 'left', got {lung!r:.30}")
    if ("point" in data) == ("index" in data):
        raise InputError(f"{where}: give exactly one of 'point' (LPS mm) or 'index' (k, j, i)")
    raw = data.get("point", data.get("index"))
    if not (isinstance(raw, list) and len(raw) == 3 and all(_finite_number(v) for v in raw)):
        raise InputError(f"{where}: {'point' if 'point' in data else 'index'} must be three finite numbers")
    outside = f"{where}: the click lies outside the volume {geometry.array_shape} (k, j, i)"
    if any(abs(v) > _FAR for v in raw):  # 10**400 is an int Python holds, but no voxel of any volume
        raise InputError(outside)
    if "point" in data:
        ijk = np.linalg.solve(geometry.direction_matrix * np.asarray(geometry.spacing),
                              np.asarray(raw, float) - np.asarray(geometry.origin))
        if not np.all(np.abs(ijk) < _FAR):
            raise InputError(outside)
        kji = tuple(int(round(v)) for v in ijk[::-1])
    else:
        if not all(float(v).is_integer() for v in raw):
            raise InputError(f"{where}: index must be whole voxel numbers (k, j, i)")
        kji = tuple(int(v) for v in raw)
    if not all(0 <= v < n for v, n in zip(kji, geometry.array_shape)):
        raise InputError(f"{where}: voxel (k, j, i) = {kji} lies outside the volume {geometry.array_shape}")
    return Click(index=kji, positive=sign == "+", lung=LUNG_NAMES[lung] if lung else None)


def read_clicks(path: Path, geometry: Geometry) -> list[Click]:
    """Clicks from a JSON file (format in the module docstring)."""
    data = read_json_file(path, MAX_CLICKS_FILE_BYTES, "clicks JSON")
    items = data.get("clicks") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise InputError(f"{path}: expected {{\"clicks\": [...]}} with at least one click")
    if len(items) > MAX_CLICKS:
        raise InputError(f"{path}: {len(items)} clicks; at most {MAX_CLICKS} per call")
    return [click_from_dict(item, geometry, f"{path}: click {n + 1}") for n, item in enumerate(items)]


def click_amplitude(distance_mm: np.ndarray | float, depth_mm: float) -> np.ndarray:
    """Height of a click's Gaussian on a slice ``distance_mm`` away from the click's own slice."""
    return np.exp(-0.5 * (np.asarray(distance_mm, dtype=np.float64) / depth_mm) ** 2)


def render_clicks(size: tuple[int, int], points: Sequence[tuple[float, float]], amplitudes: Sequence[float],
                  sigma: float) -> np.ndarray:
    """(rows, cols) float32 map: the highest of the clicks' Gaussians (network pixels) at each pixel.

    The maximum, not the sum, so two clicks close together read as one firm click, not a stronger one.
    """
    out = np.zeros(size, dtype=np.float32)
    if not len(points):
        return out
    rows = np.arange(size[0], dtype=np.float32)[:, None]
    cols = np.arange(size[1], dtype=np.float32)[None, :]
    reach = 4.0 * sigma
    for (row, col), amplitude in zip(points, amplitudes):
        if amplitude < 1e-3:
            continue
        r0, r1 = max(0, int(row - reach)), min(size[0], int(row + reach) + 2)
        c0, c1 = max(0, int(col - reach)), min(size[1], int(col + reach) + 2)
        if r0 >= r1 or c0 >= c1:
            continue
        bump = amplitude * np.exp(-((rows[r0:r1] - row) ** 2 + (cols[:, c0:c1] - col) ** 2) / (2 * sigma ** 2))
        np.maximum(out[r0:r1, c0:c1], bump, out=out[r0:r1, c0:c1])
    return out


def to_network_pixel(row: float, col: float, shape: tuple[int, int], pad: tuple[int, int, int, int],
                     size: tuple[int, int]) -> tuple[float, float]:
    """A slice pixel (row, col) in network pixels, through the in-plane frame's padding and resize
    (pixel centres, as ``F.interpolate(align_corners=False)`` maps them)."""
    top, bottom, left, right = pad
    height, width = shape[0] + top + bottom, shape[1] + left + right
    return ((row + top + 0.5) * size[0] / height - 0.5, (col + left + 0.5) * size[1] / width - 0.5)


@dataclass(frozen=True)
class ClickOutcome:
    """What one click did: for the status bar, the undo history and the correction record.

    Here, not in refine.py, because the Slicer side reads it back from the worker without importing torch
    (``worker_refine.ClickResult`` extends it)."""

    lung: str | None          # "right_lung" / "left_lung" edited, None when the click could do nothing
    positive: bool
    changed_voxels: int
    slices_run: int           # slices the network ran on
    seconds: float
    fallback: bool = False    # neither the network nor the image changed anything there: a small disk instead
    message: str = ""
    image_contrast: bool = False  # the image's own contrast widened a negative click (contrast_region.py)
    rim_peel: bool = False        # a negative click on the rim peeled that stretch of it (rim_peel.py)


_CASTS = {"bool": bool, "int": int, "float": float, "str": str}


def outcome_fields(outcome: dict[str, Any]) -> dict[str, Any]:
    """``ClickOutcome``'s fields from a JSON outcome object (``dataclasses.asdict`` of one), each cast to its
    type; a missing field takes its default, or its type's zero."""
    values: dict[str, Any] = {}
    for spec in fields(ClickOutcome):
        cast = _CASTS.get(str(spec.type))
        default = spec.default if spec.default is not MISSING else (cast() if cast else None)
        raw = outcome.get(spec.name, default)
        values[spec.name] = cast(raw) if cast and raw is not None else raw
    return values
