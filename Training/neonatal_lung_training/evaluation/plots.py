"""PNG figures of an evaluation report, drawn with matplotlib's object API on the Agg canvas.

No pyplot: nothing global is touched, no display is needed, and the figures can be drawn from any thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from .metrics import POSITIONS, RocCounts

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
REGION_TITLES = {"lungs": "both lungs", "right": "right lung", "left": "left lung"}
DPI = 120


def _save(figure: Figure, path: Path) -> Path:
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=DPI, facecolor="white")
    return path


def _finite(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    return array[np.isfinite(array)]


def _grouped_boxes(axis, groups: Sequence[str], models: Sequence[str],
                   values: Mapping[tuple[str, str], Sequence[float]], rng: np.random.Generator) -> None:
    """Box per (group, model), models side by side within a group, every case drawn as a dot."""
    width = 0.8 / len(models)
    for m, model in enumerate(models):
        for g, group in enumerate(groups):
            data = _finite(values.get((group, model), []))
            if data.size == 0:
                continue
            centre = g + (m - (len(models) - 1) / 2) * width
            axis.boxplot([data], positions=[centre], widths=width * 0.8, showfliers=False,
                         patch_artist=True, medianprops={"color": "black"},
                         boxprops={"facecolor": COLOURS[m % len(COLOURS)], "alpha": 0.35})
            jitter = rng.uniform(-width * 0.25, width * 0.25, data.size)
            axis.scatter(centre + jitter, data, s=14, color=COLOURS[m % len(COLOURS)], zorder=3,
                         edgecolors="black", linewidths=0.4)
    axis.set_xticks(range(len(groups)))
    axis.set_xlim(-0.6, len(groups) - 0.4)
    axis.grid(axis="y", alpha=0.3)


def _model_legend(figure: Figure, axis, models: Sequence[str], title: str) -> None:
    """One model: its name goes into the title. Several: a legend under the plot, clear of the data."""
    if len(models) == 1:
        axis.set_title(f"{title}\n{models[0]}", fontsize=11)
        figure.tight_layout()
        return
    axis.set_title(title, fontsize=11)
    handles = [Line2D([], [], marker="s", linestyle="", markersize=9, color=COLOURS[m % len(COLOURS)],
                      alpha=0.6, label=model) for m, model in enumerate(models)]
    columns = min(len(models), 3)
    rows = -(-len(models) // columns)
    figure.legend(handles=handles, loc="lower center", ncol=columns, fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0.05 * rows + 0.02, 1, 1))


def dice_boxplot(rows: Sequence[Mapping[str, Any]], models: Sequence[str], regions: Sequence[str],
                 path: Path) -> Path:
    """Per-case volumetric Dice per region, one box per model."""
    values = {(r, m): [row[f"dice_{r}"] for row in rows if row["model"] == m] for r in regions for m in models}
    figure = Figure(figsize=(max(6.0, 1.6 + 1.4 * len(regions) * max(1, len(models) * 0.7)), 4.6))
    axis = figure.add_subplot()
    _grouped_boxes(axis, regions, models, values, np.random.default_rng(0))
    axis.set_xticklabels([REGION_TITLES.get(r, r) for r in regions])
    axis.set_ylabel("volumetric Dice")
    _tight_unit_limits(axis, [v for vs in values.values() for v in vs])
    _model_legend(figure, axis, models, f"Volumetric Dice per case ({len({row['case_id'] for row in rows})} cases)")
    return _save(figure, path)


def _tight_unit_limits(axis, values: Sequence[float]) -> None:
    """Zoom on the data but never beyond [0, 1]; Dice near 1 would otherwise be a flat line."""
    data = _finite(values)
    low = float(data.min()) if data.size else 0.0
    span = max(1.0 - low, 0.02)
    axis.set_ylim(max(0.0, low - 0.1 * span), min(1.0 + 0.05 * span, 1.005))


def position_boxplot(rows: Sequence[Mapping[str, Any]], models: Sequence[str], path: Path) -> Path:
    """Per-slice Dice averaged within the apex, middle and base thirds of each case, per model."""
    values = {(p, m): [row[f"slice_dice_{p}"] for row in rows if row["model"] == m]
              for p in POSITIONS for m in models}
    figure = Figure(figsize=(max(6.0, 2.0 + 1.3 * len(POSITIONS) * max(1, len(models) * 0.7)), 4.6))
    axis = figure.add_subplot()
    _grouped_boxes(axis, POSITIONS, models, values, np.random.default_rng(1))
    axis.set_xticklabels(["apex (top third)", "middle third", "base (bottom third)"])
    axis.set_ylabel("mean per-slice Dice (both lungs)")
    _tight_unit_limits(axis, [v for vs in values.values() for v in vs])
    _model_legend(figure, axis, models, "Axial slice Dice by position along the lung")
    return _save(figure, path)


def roc_plot(rocs: Mapping[str, RocCounts], path: Path) -> Path:
    """Pooled voxel ROC per model, on a linear and a logarithmic false-positive axis."""
    figure = Figure(figsize=(10.0, 4.4))
    linear, log = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    for m, (model, roc) in enumerate(rocs.items()):
        fpr, tpr, _ = roc.curve()
        if not np.isfinite(fpr).any() or not np.isfinite(tpr).any():
            continue
        label = f"{model} (AUC {roc.auc():.4f})"
        colour = COLOURS[m % len(COLOURS)]
        linear.plot(fpr, tpr, color=colour, label=label, linewidth=1.6)
        keep = fpr > 0
        log.plot(fpr[keep], tpr[keep], color=colour, label=label, linewidth=1.6)
    linear.plot([0, 1], [0, 1], linestyle=":", color="grey", linewidth=1)
    linear.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate", ylabel="true positive rate",
               title="Voxel ROC, lung probability (all cases pooled)")
    log.set_xscale("log")
    log.set(xlim=(1e-6, 1), ylim=(0, 1.01), xlabel="false positive rate (log)", ylabel="true positive rate",
            title="The same, low false-positive range")
    for axis in (linear, log):
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    return _save(figure, path)


def _crop(view: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The view cut to the lungs (reference or prediction) with a margin, so small lungs are not lost."""
    both = np.asarray(view["reference"], bool) | np.asarray(view["predicted"], bool)
    if not both.any():
        return dict(view)
    box = []
    for axis, size in enumerate(both.shape):
        present = np.flatnonzero(both.any(axis=1 - axis))
        margin = int(0.15 * (present[-1] - present[0] + 1)) + 6
        box.append(slice(max(int(present[0]) - margin, 0), min(int(present[-1]) + margin + 1, size)))
    return {k: (v[tuple(box)] if k in ("image", "reference", "predicted") else v) for k, v in view.items()}


def _panel(axis, view: Mapping[str, np.ndarray], title: str, coronal: bool) -> None:
    view = _crop(view)
    image = np.asarray(view["image"], dtype=float)
    low, high = np.percentile(image, [1, 99.5]) if image.size else (0, 1)
    rows_mm, cols_mm = (float(s) for s in view["spacing"])
    origin = "lower" if coronal else "upper"  # coronal: superior (high k) at the top
    axis.imshow(image, cmap="gray", vmin=low, vmax=max(high, low + 1e-6), origin=origin,
                aspect=rows_mm / cols_mm, interpolation="nearest")
    wrong = np.asarray(view["reference"], bool) != np.asarray(view["predicted"], bool)
    if wrong.any():
        overlay = np.zeros(wrong.shape + (4,))
        overlay[wrong] = (1.0, 0.85, 0.0, 0.35)
        axis.imshow(overlay, origin=origin, aspect=rows_mm / cols_mm, interpolation="nearest")
    # Reference drawn wider underneath, so it still shows where the prediction runs along it.
    for key, colour, width in (("reference", "#00e000", 2.6), ("predicted", "#ff2a9d", 1.2)):
        mask = np.asarray(view[key], dtype=float)
        if mask.any() and not mask.all():
            axis.contour(mask, levels=[0.5], colors=[colour], linewidths=width)  # pixel centres, as imshow
    for x, text in ((0.02, "R"), (0.95, "L")):  # LPS columns grow to the patient's left: radiological view
        axis.text(x, 0.5, text, transform=axis.transAxes, color="yellow", fontsize=11, fontweight="bold",
                  va="center")
    axis.set_title(title, fontsize=10)
    axis.set_xticks([])
    axis.set_yticks([])


def overlay_figure(views: Mapping[str, Mapping[str, np.ndarray]], title: str, path: Path) -> Path:
    """Axial and coronal slices of maximum disagreement, reference (green) and prediction (pink) contours,
    disagreeing voxels shaded yellow."""
    figure = Figure(figsize=(10.0, 5.2))
    # A single-slice volume (e.g. a 2D CT slice) has no coronal view worth drawing.
    views = {name: view for name, view in views.items() if min(np.asarray(view["reference"]).shape) >= 2}
    for n, (name, view) in enumerate(views.items()):
        axis = figure.add_subplot(1, len(views), n + 1)
        _panel(axis, view, f"{name} slice {int(view['index'])}: {int(view['disagreeing_voxels'])} voxels differ",
               coronal=name == "coronal")
    handles = [Line2D([], [], color="#00e000", label="reference"),
               Line2D([], [], color="#ff2a9d", label="prediction"),
               Line2D([], [], marker="s", linestyle="", color=(1.0, 0.85, 0.0, 0.6), label="disagreement")]
    figure.legend(handles=handles, loc="lower center", ncol=3, fontsize=9, frameon=False)
    figure.suptitle(title, fontsize=11)
    figure.tight_layout(rect=(0, 0.06, 1, 0.95))
    return _save(figure, path)


def training_curves(log: Mapping[str, np.ndarray], path: Path) -> Path:
    """Loss (train, validation) and validation Dice/IoU against epoch, from a run's log.csv."""
    figure = Figure(figsize=(10.0, 4.2))
    loss, score = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    epoch = log["epoch"]
    for key, label, axis in (("train_loss", "training loss", loss), ("val_loss", "validation loss", loss),
                             ("val_dice", "validation Dice", score), ("val_iou", "validation IoU", score)):
        values = log.get(key)
        if values is not None and np.isfinite(values).any():
            axis.plot(epoch, values, marker="o", markersize=3, linewidth=1.5, label=label)
    if "val_dice" in log and np.isfinite(log["val_dice"]).any():
        best = int(np.nanargmax(log["val_dice"]))
        score.axvline(epoch[best], color="grey", linestyle=":", linewidth=1)
        score.annotate(f"best {log['val_dice'][best]:.4f}\n(epoch {int(epoch[best])})",
                       (epoch[best], log["val_dice"][best]), textcoords="offset points", xytext=(-8, -30),
                       ha="right", fontsize=8)
    loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    score.set(xlabel="epoch", ylabel="score", title="Validation overlap")
    for axis in (loss, score):
        axis.grid(alpha=0.3)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=8)
    figure.tight_layout()
    return _save(figure, path)
