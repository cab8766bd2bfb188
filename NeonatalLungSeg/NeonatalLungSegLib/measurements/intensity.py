"""The signal intensity inside the lungs, normalised so that scans of one protocol are comparable.

MR magnitude images have an arbitrary scale (receiver gain, coil loading, scanner software), so raw values
cannot be compared between scans. Every value is divided by the median of a soft-tissue reference region next
to the lungs: the scan's voxels within ``REFERENCE_SHELL_MM`` of the lungs, outside them, and brighter than the
scan's Otsu threshold (body, not air). A ratio cancels the scale factor; the median ignores the few bright
vessels, fat or fluid in the shell; a shell next to the lungs sees nearly the same coil sensitivity as the
lungs, which a whole-body reference (or a z-score to the whole body, which also depends on how much fat and
background the field of view holds) does not. Lung parenchyma then lies near 0.1 to 0.3 on the bundled sample
and on real proton MRI. The fixed histogram bins and the low- and high-signal thresholds below are on that
scale (docs/descriptors.md); the thresholds are this tool's conventions, not validated clinical cut-offs.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..errors import InputError
from ..geometry import Geometry, array_to_image

REFERENCE_SHELL_MM = 10.0
HISTOGRAM_EDGES = tuple(round(0.025 * b, 3) for b in range(61))  # 0 to 1.5 in steps of 0.025
LOW_SIGNAL_BELOW = 0.10   # hypo-intense lung: nearly air-like signal (hyperinflation, emphysema-like)
HIGH_SIGNAL_FROM = 0.50   # hyper-intense lung: half the soft tissue's signal or more (atelectasis, fibrosis)
PERCENTILES = (5, 25, 50, 75, 95)


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of ``values`` clipped to their 99.5th percentile (a few hot voxels do not move it)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    low, high = float(values.min()), float(np.percentile(values, 99.5))
    if high <= low:
        high = float(values.max())
    counts, edges = np.histogram(np.clip(values, low, high), bins=bins, range=(low, high))
    centres = (edges[:-1] + edges[1:]) / 2
    weight_below = np.cumsum(counts)
    weight_above = weight_below[-1] - weight_below
    sum_below = np.cumsum(counts * centres)
    mean_below = sum_below / np.maximum(weight_below, 1)
    mean_above = (sum_below[-1] - sum_below) / np.maximum(weight_above, 1)
    between = weight_below * weight_above * (mean_below - mean_above) ** 2
    return float(edges[int(np.argmax(between[:-1])) + 1])


def reference_median(scan: np.ndarray, lungs: np.ndarray, geometry: Geometry, threshold: float,
                     source: str = "scan") -> tuple[float, int]:
    """Median intensity of the soft-tissue shell around ``lungs`` (voxels above ``threshold``, the whole scan's
    Otsu threshold) and its voxel count; InputError if there is none. ``scan`` may be cropped around the lungs
    with at least ``REFERENCE_SHELL_MM`` of margin."""
    distance = ndimage.distance_transform_edt(~lungs, sampling=tuple(reversed(geometry.spacing)))
    shell = (distance > 0) & (distance <= REFERENCE_SHELL_MM) & (scan > threshold)
    count = int(np.count_nonzero(shell))
    if count == 0:
        raise InputError(f"{source}: no soft tissue within {REFERENCE_SHELL_MM:g} mm of the lungs (only air or "
                         "the edge of the volume) to normalise the signal intensity against")
    median = float(np.median(scan[shell]))
    if not median > 0:
        raise InputError(f"{source}: the soft tissue around the lungs has median intensity {median:g}; the signal "
                         "normalisation needs a positive (MR magnitude) image")
    return median, count


def intensity_descriptors(normalised: np.ndarray, raw: np.ndarray, labels: np.ndarray,
                          geometry: Geometry) -> dict[str, dict]:
    """Per lung (``right``: label 1, ``left``: label 2) and for ``both``: the distribution of the normalised
    intensity. Mean, SD, skewness and kurtosis from ITK's LabelIntensityStatisticsImageFilter; percentiles,
    histogram and signal fractions from the voxel values."""
    image = array_to_image(normalised.astype(np.float32, copy=False), geometry)
    result: dict[str, dict] = {}
    for name, label_array, label in (("right", labels, 1), ("left", labels, 2),
                                     ("both", (labels > 0).astype(np.uint8), 1)):
        stats = sitk.LabelIntensityStatisticsImageFilter()
        stats.Execute(array_to_image(label_array.astype(np.uint8, copy=False), geometry), image)
        inside = label_array == label
        values = normalised[inside].astype(np.float64)
        counts, _ = np.histogram(values[values < HISTOGRAM_EDGES[-1]], bins=np.asarray(HISTOGRAM_EDGES))
        n = values.size
        entry = {
            "mean": float(stats.GetMean(label)),
            "sd": float(stats.GetStandardDeviation(label)),
            **{f"p{p}": float(v) for p, v in zip(PERCENTILES, np.percentile(values, PERCENTILES))},
            "skewness": _finite(stats.GetSkewness(label)),
            "kurtosis": _finite(stats.GetKurtosis(label)),
            "low_signal_fraction": float(np.count_nonzero(values < LOW_SIGNAL_BELOW)) / n,
            "high_signal_fraction": float(np.count_nonzero(values >= HIGH_SIGNAL_FROM)) / n,
            "mean_raw": float(np.mean(raw[inside], dtype=np.float64)),
            "histogram": [float(c) / n for c in counts],
            "histogram_below": float(np.count_nonzero(values < HISTOGRAM_EDGES[0])) / n,
            "histogram_above": float(np.count_nonzero(values >= HISTOGRAM_EDGES[-1])) / n,
        }
        result[name] = entry
    return result


def _finite(value: float) -> float | None:
    """ITK gives NaN for the skewness and kurtosis of a constant region; JSON gets null."""
    value = float(value)
    return value if np.isfinite(value) else None
