"""The report's pictures as PNG bytes: overlays of the lungs on the scan and the intensity histogram per lung.

Slices are shown in the radiological convention on the grid brought to LPS without interpolation
(``geometry.reorientation``): axial with anterior up and the patient's right on the image's left, coronal with
superior up and right on the left, sagittal with superior up and anterior on the left; pixels keep their
physical aspect. matplotlib's object API draws them (no pyplot: no global backend is chosen for the caller).
"""

from __future__ import annotations

import io

import numpy as np

from ..errors import NeonatalLungSegError
from ..geometry import Geometry, reorientation

RIGHT_COLOUR = "#0072B2"  # blue and orange: told apart with every common colour-vision deficiency
LEFT_COLOUR = "#E69F00"


def _figure(width: float, height: float):  # matplotlib is optional: no annotation that would import it
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise NeonatalLungSegError("the report needs matplotlib: pip install matplotlib") from None
    figure = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(figure)
    return figure


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", facecolor="white")
    return buffer.getvalue()


def canonical(scan: np.ndarray, labels: np.ndarray, geometry: Geometry) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Scan and labels on the nearest LPS grid (i -> left, j -> posterior, k -> superior), and its spacing."""
    plan = reorientation(geometry, "LPS")
    return plan.to_canonical(scan), plan.to_canonical(labels), plan.target.spacing


def _views(scan: np.ndarray, labels: np.ndarray, spacing: tuple) -> list[tuple[str, np.ndarray, np.ndarray, tuple,
                                                                              tuple[str, str, str, str]]]:
    """(title, image, labels, (row mm, column mm), (top, bottom, left, right letters)) of each view."""
    si, sj, sk = spacing
    centre = [int(round(float(np.mean(a)))) for a in np.nonzero(labels)]
    right_i = int(round(float(np.mean(np.nonzero(labels == 1)[2]))))
    left_i = int(round(float(np.mean(np.nonzero(labels == 2)[2]))))
    views = [("Axial", scan[centre[0]], labels[centre[0]], (sj, si), ("A", "P", "R", "L")),
             ("Coronal", scan[::-1, centre[1], :], labels[::-1, centre[1], :], (sk, si), ("S", "I", "R", "L"))]
    for title, i in (("Sagittal, right lung", right_i), ("Sagittal, left lung", left_i)):
        views.append((title, scan[::-1, :, i], labels[::-1, :, i], (sk, sj), ("S", "I", "A", "P")))
    return views


def overlay_pngs(scan: np.ndarray, labels: np.ndarray, geometry: Geometry) -> list[tuple[str, bytes]]:
    """One PNG per view through the lungs' centre (each sagittal through its lung's centre)."""
    scan_c, labels_c, spacing = canonical(scan, labels, geometry)
    low, high = np.percentile(scan_c, (1, 99.5))
    pictures = []
    for title, image, mask, (row_mm, column_mm), letters in _views(scan_c, labels_c, spacing):
        rows, columns = image.shape
        height, width = rows * row_mm, columns * column_mm
        figure = _figure(4.2, 4.2 * min(max(height / width, 0.5), 1.6))
        axes = figure.add_axes((0, 0, 1, 1))
        extent = (0, width, height, 0)
        axes.imshow(image, cmap="gray", vmin=low, vmax=high if high > low else low + 1, extent=extent,
                    interpolation="nearest")
        for label, colour in ((1, RIGHT_COLOUR), (2, LEFT_COLOUR)):
            inside = mask == label
            if inside.any():
                tint = np.zeros((rows, columns, 4))
                tint[inside] = (*_rgb(colour), 0.30)
                axes.imshow(tint, extent=extent, interpolation="nearest")
                axes.contour((np.arange(columns) + 0.5) * column_mm, (np.arange(rows) + 0.5) * row_mm,
                             inside.astype(float), levels=[0.5], colors=[colour], linewidths=1.0)
        top, bottom, left, right = letters
        for text, x, y in ((top, 0.5, 0.98), (bottom, 0.5, 0.02), (left, 0.02, 0.5), (right, 0.98, 0.5)):
            axes.text(x, y, text, color="yellow", fontsize=11, fontweight="bold", transform=axes.transAxes,
                      ha="center", va="center")
        axes.set_axis_off()
        pictures.append((title, _png(figure)))
    return pictures


def _rgb(colour: str) -> tuple[float, float, float]:
    return tuple(int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5))


def histogram_png(descriptors: dict) -> bytes:
    """The normalised intensity histogram of each lung (fraction of its voxels per bin), thresholds dashed."""
    edges = np.asarray(descriptors["histogram_edges"])
    figure = _figure(6.4, 3.4)
    axes = figure.add_subplot(1, 1, 1)
    for name, colour in (("right", RIGHT_COLOUR), ("left", LEFT_COLOUR)):
        fractions = np.asarray(descriptors["lungs"][name]["intensity"]["histogram"])
        axes.stairs(100 * fractions, edges, color=colour, linewidth=1.8, label=f"{name} lung")
    thresholds = descriptors["thresholds"]
    for value, text in ((thresholds["low_signal_below"], "low signal"),
                        (thresholds["high_signal_from"], "high signal")):
        axes.axvline(value, color="0.35", linestyle="--", linewidth=1)
        axes.text(value, axes.get_ylim()[1] * 0.97, f" {text}", color="0.35", fontsize=8, va="top")
    axes.set_xlabel("signal / soft-tissue reference median")
    axes.set_ylabel("% of the lung's voxels")
    axes.set_xlim(edges[0], edges[-1])
    axes.legend(frameon=False)
    figure.tight_layout()
    return _png(figure)
