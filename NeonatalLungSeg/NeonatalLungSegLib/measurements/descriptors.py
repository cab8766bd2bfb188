"""All descriptors of one case: input checks, the computation per lung and for both lungs, and the one table of
names and units that the JSON, the CSV columns, the HTML report and docs/descriptors.md share.

Labels: 1 = right lung, 2 = left lung (the engine's output), on the scan's own grid. Both lungs must be there:
a mask with one label only is refused rather than measured as a right lung (an unsplit ``--no-postprocess``
mask is all label 1).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..geometry import Geometry
from .intensity import (HIGH_SIGNAL_FROM, HISTOGRAM_EDGES, LOW_SIGNAL_BELOW, REFERENCE_SHELL_MM, intensity_descriptors,
                        otsu_threshold, reference_median)
from .shape import shape_descriptors

FORMAT = "neonatal-lung-seg-descriptors"
VERSION = 1
RESEARCH_USE = "research use, not clinically validated"
MAX_WEIGHT_KG = 10.0  # heavier than any neonate: a weight in grams or pounds typed as kilograms
LUNGS = ("right", "left", "both")


@dataclass(frozen=True)
class Descriptor:
    key: str
    label: str
    unit: str
    digits: int       # decimals in the report's table
    definition: str   # one line, in the report; docs/descriptors.md says more


SHAPE = (
    Descriptor("volume_ml", "Volume", "mL", 2, "voxels in the lung times the voxel volume, on the scan's grid"),
    Descriptor("volume_ml_per_kg", "Volume per body weight", "mL/kg", 2, "volume divided by the weight given"),
    Descriptor("surface_mm2", "Surface area", "mm²", 0,
               "Crofton estimate of the lung's boundary area (lattice-line crossings, weights fitted to the grid)"),
    Descriptor("sphericity", "Sphericity", "1", 3,
               "π^(1/3) (6V)^(2/3) / A: 1 for a ball, smaller for any other shape"),
    Descriptor("surface_to_volume_per_mm", "Surface-to-volume ratio", "1/mm", 4, "surface area / volume"),
    Descriptor("major_axis_mm", "Major principal axis", "mm", 1,
               "2 √(5 λ1): the full length of the solid ellipsoid with the lung's largest second moment λ1"),
    Descriptor("intermediate_axis_mm", "Intermediate principal axis", "mm", 1, "2 √(5 λ2), λ2 the middle moment"),
    Descriptor("minor_axis_mm", "Minor principal axis", "mm", 1, "2 √(5 λ3), λ3 the smallest moment"),
    Descriptor("elongation", "Elongation", "1", 3, "√(λ2 / λ1) = intermediate / major axis; 1 = no elongation"),
    Descriptor("flatness", "Flatness", "1", 3, "√(λ3 / λ1) = minor / major axis; 1 = not flat"),
    Descriptor("craniocaudal_extent_mm", "Cranio-caudal extent", "mm", 1,
               "apex to base along the patient's S-I axis (from the direction matrix), voxel face to voxel face"),
    Descriptor("anteroposterior_extent_mm", "Antero-posterior extent", "mm", 1, "the same along the A-P axis"),
    Descriptor("upper_fraction", "Upper third volume fraction", "1", 3,
               "share of the volume in the most cranial third of the cranio-caudal extent"),
    Descriptor("middle_fraction", "Middle third volume fraction", "1", 3, "share in the middle third"),
    Descriptor("lower_fraction", "Lower third volume fraction", "1", 3, "share in the most caudal third"),
    Descriptor("ventral_fraction", "Ventral half volume fraction", "1", 3,
               "share in the anterior half of the antero-posterior extent"),
    Descriptor("dorsal_fraction", "Dorsal half volume fraction", "1", 3, "share in the posterior half"),
    Descriptor("voxels", "Voxels", "count", 0, "voxels labelled as this lung"),
)
INTENSITY = (
    Descriptor("mean", "Signal mean", "ratio to reference", 3,
               "mean of the lung's signal divided by the soft-tissue reference median"),
    Descriptor("sd", "Signal SD", "ratio to reference", 3, "sample standard deviation (n - 1) of the same"),
    *(Descriptor(f"p{p}", f"Signal {p}th percentile", "ratio to reference", 3,
                 f"{p}th percentile (linear interpolation between voxels)") for p in (5, 25, 50, 75, 95)),
    Descriptor("skewness", "Signal skewness", "1", 3, "m3 / s³ (m3: third central moment, s: the SD above)"),
    Descriptor("kurtosis", "Signal excess kurtosis", "1", 3, "m4 / s⁴ - 3: 0 for a normal distribution"),
    Descriptor("low_signal_fraction", f"Low-signal fraction (< {LOW_SIGNAL_BELOW:g})", "1", 3,
               f"share of the lung's voxels below {LOW_SIGNAL_BELOW:g} of the reference: nearly air-like signal"),
    Descriptor("high_signal_fraction", f"High-signal fraction (≥ {HIGH_SIGNAL_FROM:g})", "1", 3,
               f"share at {HIGH_SIGNAL_FROM:g} of the reference or more: tissue-like signal"),
    Descriptor("mean_raw", "Signal mean, not normalised", "scan units", 2, "mean of the scan's own values"),
)
CASE = (
    Descriptor("right_left_volume_ratio", "Right/left volume ratio", "1", 3, "right lung volume / left lung volume"),
    Descriptor("weight_kg", "Body weight", "kg", 3, "as given (--weight-kg)"),
    Descriptor("reference_median", "Soft-tissue reference median", "scan units", 2,
               f"median of the scan within {REFERENCE_SHELL_MM:g} mm outside the lungs, above its Otsu threshold"),
)


def check_weight(weight_kg: float | None) -> None:
    if weight_kg is None:
        return
    if not (isinstance(weight_kg, (int, float)) and math.isfinite(weight_kg) and 0 < weight_kg <= MAX_WEIGHT_KG):
        raise InputError(f"--weight-kg must be above 0 and at most {MAX_WEIGHT_KG:g} kg (a neonate's weight in "
                         f"kilograms), got {weight_kg:g}")


def check_scan(scan: np.ndarray, source: str) -> None:
    low, high = float(np.min(scan)), float(np.max(scan))
    if not (math.isfinite(low) and math.isfinite(high)):
        raise InputError(f"{source}: scan holds NaN or infinite voxels; signal descriptors need finite values")
    if low == high:
        raise InputError(f"{source}: scan has no intensity range (every voxel is {low:g}); its signal cannot be "
                         "normalised or described")


def check_lungs(labels: np.ndarray, source: str) -> None:
    present = set(np.unique(labels).tolist())
    if not present <= {0, 1, 2}:
        raise InputError(f"{source}: labels must be 0, 1 (right lung) and 2 (left lung), found "
                         f"{sorted(present)[:8]}")
    missing = [name for name, label in (("right lung (label 1)", 1), ("left lung (label 2)", 2))
               if label not in present]
    if missing:
        raise InputError(f"{source}: no {' and no '.join(missing)}; descriptors need both lungs labelled "
                         "(1 = right, 2 = left; an unsplit mask is not enough)")


def crop_to_lungs(scan: np.ndarray, labels: np.ndarray, geometry: Geometry,
                  margin_mm: float) -> tuple[np.ndarray, np.ndarray, Geometry]:
    """The lungs' bounding box with ``margin_mm`` (+1 voxel) around it, clipped to the volume, and its grid."""
    kji = np.nonzero(labels)
    spacing_kji = np.asarray(geometry.spacing)[::-1]
    pad = np.ceil(margin_mm / spacing_kji).astype(int) + 1
    start = np.maximum(np.array([a.min() for a in kji]) - pad, 0)
    stop = np.minimum(np.array([a.max() + 1 for a in kji]) + pad, labels.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(start, stop))
    origin = geometry.index_to_lps(start[::-1].astype(float))
    cropped = Geometry(tuple(int(s) for s in (stop - start)[::-1]), geometry.spacing,
                       tuple(float(v) for v in origin), geometry.direction)
    return scan[box], labels[box], cropped


def describe_arrays(scan: np.ndarray, labels: np.ndarray, geometry: Geometry, *, weight_kg: float | None = None,
                    source: str = "scan", labels_source: str = "labels") -> dict:
    """Every descriptor of the lungs in ``labels`` (k, j, i) on ``scan``'s grid, as plain JSON types."""
    check_weight(weight_kg)
    if tuple(scan.shape) != geometry.array_shape or tuple(labels.shape) != geometry.array_shape:
        raise InputError(f"{labels_source}: labels are not on the scan's grid (shape {tuple(labels.shape)} vs "
                         f"{geometry.array_shape})")
    check_scan(scan, source)
    check_lungs(labels, labels_source)
    threshold = otsu_threshold(scan)
    scan_box, labels_box, box = crop_to_lungs(scan, labels, geometry, REFERENCE_SHELL_MM)
    scan_box = scan_box.astype(np.float64)
    reference, reference_voxels = reference_median(scan_box, labels_box > 0, box, threshold, source)
    intensity = intensity_descriptors(scan_box / reference, scan_box, labels_box, box)
    lungs: dict[str, dict] = {}
    for name, mask in (("right", labels_box == 1), ("left", labels_box == 2), ("both", labels_box > 0)):
        shape = shape_descriptors(mask, box)
        shape["volume_ml_per_kg"] = shape["volume_ml"] / weight_kg if weight_kg else None
        lungs[name] = {**shape, "intensity": intensity[name]}
    return {
        "format": FORMAT, "version": VERSION, "research_use": RESEARCH_USE,
        "grid": {"size": list(geometry.size), "spacing_mm": list(geometry.spacing),
                 "voxel_volume_ml": geometry.voxel_volume_ml},
        "weight_kg": weight_kg,
        "right_left_volume_ratio": lungs["right"]["volume_ml"] / lungs["left"]["volume_ml"],
        "normalisation": {"method": f"divided by the median of the soft tissue within {REFERENCE_SHELL_MM:g} mm "
                                    "of the lungs (voxels outside the lungs above the scan's Otsu threshold)",
                          "reference_median": reference, "reference_voxels": reference_voxels,
                          "otsu_threshold": threshold, "shell_mm": REFERENCE_SHELL_MM},
        "thresholds": {"low_signal_below": LOW_SIGNAL_BELOW, "high_signal_from": HIGH_SIGNAL_FROM},
        "histogram_edges": list(HISTOGRAM_EDGES),
        "lungs": lungs,
    }


def csv_columns() -> list[str]:
    return ["case", *(d.key for d in CASE),
            *(f"{lung}_{d.key}" for lung in LUNGS for d in (*SHAPE, *INTENSITY))]


def csv_row(case: str, descriptors: dict) -> dict:
    """One flat row (histograms stay in the JSON)."""
    row = {"case": case, "right_left_volume_ratio": descriptors["right_left_volume_ratio"],
           "weight_kg": descriptors["weight_kg"], "reference_median": descriptors["normalisation"]["reference_median"]}
    for lung in LUNGS:
        entry = descriptors["lungs"][lung]
        row.update({f"{lung}_{d.key}": entry[d.key] for d in SHAPE})
        row.update({f"{lung}_{d.key}": entry["intensity"][d.key] for d in INTENSITY})
    return row


def csv_text(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=csv_columns(), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else repr(v) if isinstance(v, float) else v) for k, v in row.items()})
    return buffer.getvalue()
