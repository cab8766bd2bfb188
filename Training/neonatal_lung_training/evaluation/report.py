"""The evaluation report folder: per_case.csv, summary.json, PNG plots and report.md, written as one unit.

The report is built in a temporary sibling folder and renamed into place, so a crash or Ctrl-C never
leaves half a report, and an existing report is only replaced with ``--overwrite`` (and only if it is one:
a folder without our summary.json is never deleted).
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import uuid
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from NeonatalLungSegLib.errors import InputError, OutputExistsError

from . import plots
from .metrics import RocCounts

REPORT_FORMAT = "neonatal-lung-evaluation-report"
REPORT_NAME, SUMMARY_NAME, CSV_NAME = "report.md", "summary.json", "per_case.csv"
NOT_VALIDATED = ("These results describe the given data only. The model is for research use and is not "
                 "clinically validated; the figures say nothing about performance on other scanners, "
                 "protocols or patients.")
# (column, label, worst is the lowest?) for the side-by-side tables; None = largest magnitude is worst.
TABLE_METRICS: tuple[tuple[str, str, bool | None], ...] = (
    ("dice_lungs", "Dice, both lungs", True), ("dice_right", "Dice, right", True),
    ("dice_left", "Dice, left", True), ("iou_lungs", "IoU, both lungs", True),
    ("iou_right", "IoU, right", True), ("iou_left", "IoU, left", True),
    ("hd95_mm_lungs", "HD95 (mm), both lungs", False), ("hd95_mm_right", "HD95 (mm), right", False),
    ("hd95_mm_left", "HD95 (mm), left", False), ("msd_mm_lungs", "MSD (mm), both lungs", False),
    ("msd_mm_right", "MSD (mm), right", False), ("msd_mm_left", "MSD (mm), left", False),
    ("volume_error_ml_lungs", "volume error (mL), both", None),
    ("volume_error_pct_lungs", "volume error (%), both", None),
    ("volume_abs_error_pct_lungs", "absolute volume error (%), both", False),
    ("volume_abs_error_pct_right", "absolute volume error (%), right", False),
    ("volume_abs_error_pct_left", "absolute volume error (%), left", False),
    ("auc_lungs", "voxel ROC AUC", True),
    ("slice_dice_apex", "slice Dice, apex third", True), ("slice_dice_middle", "slice Dice, middle third", True),
    ("slice_dice_base", "slice Dice, base third", True),
)
STDOUT_METRICS = ("dice_lungs", "dice_right", "dice_left", "iou_lungs", "hd95_mm_lungs", "msd_mm_lungs",
                  "volume_abs_error_pct_lungs", "auc_lungs", "slice_dice_apex", "slice_dice_middle",
                  "slice_dice_base")


def check_report_dir(out: Path, overwrite: bool) -> None:
    """Refuse a file, a non-empty folder without --overwrite, and any non-empty folder that is no report."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise OutputExistsError(f"{out}: already holds files; pass --overwrite to replace the report")
        if not _is_report(out):
            raise InputError(f"{out}: is not an evaluation report (no {SUMMARY_NAME} of format "
                             f"{REPORT_FORMAT!r}); refusing to replace it even with --overwrite")


def _is_report(folder: Path) -> bool:
    try:
        return json.loads((folder / SUMMARY_NAME).read_text(encoding="utf-8")).get("format") == REPORT_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


LOG_ALIASES = {"val_slice_dice": "val_dice", "learning_rate": "lr"}


def read_training_log(run_dir: Path) -> dict[str, np.ndarray]:
    """Columns of RUN_DIR/log.csv as float arrays (epoch, train_loss, val_loss, val_dice, val_iou, lr, seconds;
    any may be missing except epoch; blanks become NaN)."""
    path = Path(run_dir) / "log.csv"
    if not path.is_file():
        raise InputError(f"{path}: no training log (is --run-dir a training run folder?)")
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: unreadable training log ({exc})") from None
    if not rows or "epoch" not in rows[0]:
        raise InputError(f"{path}: training log has no rows or no 'epoch' column")

    def number(text: Any) -> float:
        try:
            return float(text)
        except (TypeError, ValueError):
            return float("nan")

    columns = {LOG_ALIASES.get(k, k): np.array([number(r.get(k)) for r in rows]) for k in rows[0] if k}
    return columns


def _stats(values: Sequence[float]) -> dict[str, Any]:
    array = np.asarray(values, dtype=float)
    defined = array[~np.isnan(array)]
    out: dict[str, Any] = {"n": int(defined.size), "n_undefined": int(array.size - defined.size),
                           "n_infinite": int(np.isinf(defined).sum())}
    if defined.size:
        with np.errstate(invalid="ignore"):
            out.update(mean=float(defined.mean()), median=float(np.median(defined)), min=float(defined.min()),
                       max=float(defined.max()), std=float(defined.std()))
    else:
        out.update(mean=None, median=None, min=None, max=None, std=None)
    return {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in out.items()}


def _metric_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return [k for k in rows[0] if isinstance(rows[0][k], (int, float)) and not isinstance(rows[0][k], bool)]


def summarise_models(results: Mapping[str, Sequence[Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """model label -> metric -> {n, n_undefined, n_infinite, mean, median, min, max, std} (JSON-safe)."""
    summary = {}
    for model, evaluations in results.items():
        rows = [e.row for e in evaluations]
        summary[model] = {k: _stats([r[k] for r in rows]) for k in _metric_columns(rows)} if rows else {}
    return summary


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.{digits}f}" if abs(value) < 1000 else f"{value:.1f}"
    return str(value)


def _digits(metric: str) -> int:
    return 4 if metric.startswith(("dice", "iou", "auc", "slice_dice")) else 2


def _cell(stats: Mapping[str, Any] | None, metric: str, low_is_worst: bool | None, full: bool) -> str:
    if not stats or stats.get("n", 0) == 0:
        return "n/a"
    d = _digits(metric)
    if stats["n_infinite"] == stats["n"]:
        return "inf (missed in every case)" if full else "inf (inf)"
    mean = "inf" if stats["n_infinite"] else _fmt(stats["mean"], d)
    if low_is_worst is None:
        worst = max((stats["min"], stats["max"]), key=lambda v: abs(v) if v is not None else -1)
    else:
        worst = stats["min"] if low_is_worst else stats["max"]
    worst_text = "inf" if (stats["n_infinite"] and low_is_worst is False) else _fmt(worst, d)
    if not full:
        return f"{mean} ({worst_text})"
    std = f" ({stats['n_infinite']} of {stats['n']} missed)" if stats["n_infinite"] else f" ± {_fmt(stats['std'], d)}"
    median = "inf" if stats["median"] is None else _fmt(stats["median"], d)
    return f"{mean}{std} (median {median}; worst {worst_text})"


def summary_table_text(summary: Mapping[str, Any]) -> str:
    """The short stdout table: mean (worst case) per metric, one column per model."""
    models = [m["label"] for m in summary["models"]]
    header = ["metric (mean, worst)"] + models
    lines = [[key] + [_cell(summary["metrics"][m].get(key), key,
                            dict((k, w) for k, _, w in TABLE_METRICS).get(key, True), full=False)
                      for m in models] for key in STDOUT_METRICS
             if any(summary["metrics"][m].get(key, {}).get("n") for m in models)]
    lines.append(["pooled voxel ROC AUC"] + [_fmt(summary["auc_pooled"][m]) for m in models])
    widths = [max(len(str(r[c])) for r in [header] + lines) for c in range(len(header))]
    render = ["  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip() for r in [header] + lines]
    return "\n".join([render[0], "  ".join("-" * w for w in widths)] + render[1:])


def write_csv(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([f"{v:.6g}" if isinstance(v, float) else v for v in (row.get(c, "") for c in columns)])


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:60] or "model"


def _data_description(folder: Any, cases: Sequence[Any]) -> dict[str, Any]:
    return {"root": str(folder.root), "description": folder.description, "manifest_sha256": folder.manifest_sha256,
            "cases": len(cases), "subjects": len({c.subject for c in cases}),
            "cases_in_folder": len(folder.cases),
            "label_schemes": dict(Counter(c.label_scheme for c in cases)),
            "review_status": dict(Counter(c.review_status for c in cases)),
            "sources": dict(Counter(c.source or "unspecified" for c in cases))}


def write_report(out: Path, models: Sequence[Any], folder: Any, cases: Sequence[Any],
                 results: Mapping[str, Sequence[Any]], log: Mapping[str, np.ndarray] | None = None,
                 worst: int = 3, overwrite: bool = False) -> dict[str, Any]:
    """Write the whole report into ``out`` atomically; returns the summary (also summary.json)."""
    out = Path(out)
    check_report_dir(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{out.name}")
    temporary.mkdir()
    try:
        summary = _write_contents(temporary, models, folder, cases, results, log, worst)
        _move_into_place(temporary, out, overwrite)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return summary


def _move_into_place(temporary: Path, out: Path, overwrite: bool) -> None:
    check_report_dir(out, overwrite)  # again: someone may have written there meanwhile
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if out.exists():
        old = out.with_name(f".old-{uuid.uuid4().hex[:8]}-{out.name}")
        os.replace(out, old)
        os.replace(temporary, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(temporary, out)


def _write_contents(folder_out: Path, models: Sequence[Any], folder: Any, cases: Sequence[Any],
                    results: Mapping[str, Sequence[Any]], log: Mapping[str, np.ndarray] | None,
                    worst: int) -> dict[str, Any]:
    labels = [m.label for m in models]
    rows = [e.row for m in labels for e in results[m]]
    pooled: dict[str, RocCounts] = {}
    for m in labels:
        total = RocCounts(np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64))
        for evaluation in results[m]:
            total = total + evaluation.roc
        pooled[m] = total
    regions = ["lungs"] + (["right", "left"] if any(c.label_scheme == "right_left" for c in cases) else [])
    figures = {"dice": plots.dice_boxplot(rows, labels, regions, folder_out / "dice_boxplot.png").name,
               "roc": plots.roc_plot(pooled, folder_out / "roc.png").name,
               "position": plots.position_boxplot(rows, labels, folder_out / "position_dice.png").name}
    if log is not None:
        figures["training"] = plots.training_curves(log, folder_out / "training_curves.png").name
    overlays: dict[str, list[dict[str, Any]]] = {m: [] for m in labels}
    if worst:
        (folder_out / "overlays").mkdir()
    for n, m in enumerate(labels):
        ranked = sorted(results[m], key=lambda e: (np.nan_to_num(e.row["dice_lungs"], nan=-1.0),
                                                   e.row["case_id"]))[:worst]
        for rank, evaluation in enumerate(ranked, 1):
            row = evaluation.row
            name = f"overlays/worst-m{n + 1}-{rank}-{_slug(row['case_id'])}.png"
            plots.overlay_figure(evaluation.views, f"{m} - {row['case_id']}: Dice {row['dice_lungs']:.4f}, "
                                 f"HD95 {_fmt(row['hd95_mm_lungs'], 2)} mm (worst #{rank})",
                                 folder_out / name)
            overlays[m].append({"case_id": row["case_id"], "dice_lungs": row["dice_lungs"], "figure": name})
    write_csv(rows, folder_out / CSV_NAME)
    summary = {"format": REPORT_FORMAT, "format_version": 1,
               "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "clinical_use": NOT_VALIDATED, "models": [m.description for m in models],
               "data": _data_description(folder, cases), "metrics": summarise_models(results),
               "auc_pooled": {m: (lambda v: v if math.isfinite(v) else None)(pooled[m].auc()) for m in labels},
               "figures": figures, "worst_cases": overlays}
    (folder_out / SUMMARY_NAME).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (folder_out / REPORT_NAME).write_text(_markdown(summary, rows, log), encoding="utf-8")
    return summary


def _table(header: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    escape = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    return ["| " + " | ".join(map(escape, header)) + " |", "|" + "---|" * len(header)] + \
        ["| " + " | ".join(map(escape, r)) + " |" for r in body]


def _markdown(summary: Mapping[str, Any], rows: Sequence[Mapping[str, Any]],
              log: Mapping[str, np.ndarray] | None) -> str:
    models, data, figures = summary["models"], summary["data"], summary["figures"]
    labels = [m["label"] for m in models]
    lines = ["# Lung segmentation evaluation report", "", f"> **{NOT_VALIDATED}**", "",
             f"Created {summary['created']} by `neonatal-lung-seg evaluate`. Every case was segmented by the "
             "engine exactly as the `segment` command does it (preprocessing, network, post-processing with the "
             "right/left split) and compared with its reference label.", "", "## Models", ""]
    lines += _table(["label", "name", "version", "parent version", "folder", "device, precision"],
                    [[m["label"], m["name"], m["version"], m["parent_version"] or "-", f"`{m['folder']}`",
                      f"{m['device']}, {m.get('precision', '?')}"
                      + (f" ({m['backend']})" if m.get("backend", "torch") != "torch" else "")] for m in models])
    schemes = ", ".join(f"{n} {s}" for s, n in data["label_schemes"].items())
    lines += ["", "## Data", "",
              f"- folder: `{data['root']}`" + (f" ({data['description']})" if data["description"] else ""),
              f"- {data['cases']} case(s) from {data['subjects']} subject(s) (the latest version of each subject; "
              f"{data['cases_in_folder']} case version(s) in the folder)",
              f"- label schemes: {schemes} (per-side metrics only for right_left cases)",
              f"- review status: {', '.join(f'{n} {s}' for s, n in data['review_status'].items())}; sources: "
              f"{', '.join(f'{n} {s}' for s, n in data['sources'].items())}",
              f"- manifest SHA-256: `{data['manifest_sha256']}`", "", "## Results", "",
              "Mean ± standard deviation over cases (median; worst case). Distances are in mm on the images' "
              "physical grid; a missed structure (empty prediction) has no finite distance and is reported as `inf` "
              "(in summary.json: null, counted in `n_infinite`).", ""]
    worst_rule = {k: w for k, _, w in TABLE_METRICS}
    body = [[label] + [_cell(summary["metrics"][m].get(key), key, worst_rule[key], full=True) for m in labels]
            for key, label, _ in TABLE_METRICS if any(summary["metrics"][m].get(key, {}).get("n") for m in labels)]
    body.append(["voxel ROC AUC, all cases pooled"] + [_fmt(summary["auc_pooled"][m]) for m in labels])
    lines += _table(["metric"] + labels, body)
    lines += ["", f"![Dice per case]({figures['dice']})", "", "### Position along the lung", "",
              "Dice of each axial slice, averaged within the top (apex), middle and bottom (base) thirds of the "
              "reference lung's cranio-caudal extent, per case.", "", f"![Dice by position]({figures['position']})",
              "", "### Voxel ROC", "", "The network's lung probability against the reference lung mask, before "
              "thresholding and post-processing; every voxel of every case pooled.", "",
              f"![ROC curve]({figures['roc']})", ""]
    if any(summary["worst_cases"].values()):
        lines += ["## Worst cases", "", "Slices where reference (green) and prediction (pink) disagree most; "
                  "disagreeing voxels shaded yellow. Radiological view (patient's right on the left).", ""]
        for m in labels:
            for item in summary["worst_cases"][m]:
                lines += [f"**{m}**, {item['case_id']} (Dice {item['dice_lungs']:.4f})", "",
                          f"![{item['case_id']}]({item['figure']})", ""]
    if log is not None:
        lines += ["## Training curves", "", f"From the run's log.csv ({len(log['epoch'])} epochs).", "",
                  f"![training curves]({figures['training']})", ""]
    lines += ["## Per case", "", f"All metrics per case are in [{CSV_NAME}]({CSV_NAME}); the summary in "
              f"[{SUMMARY_NAME}]({SUMMARY_NAME}).", ""]
    by_case: dict[str, dict[str, Mapping[str, Any]]] = {}
    for row in rows:
        by_case.setdefault(row["case_id"], {})[row["model"]] = row
    if len(by_case) <= 100:
        header = ["case"] + [f"{h}{'' if len(labels) == 1 else f' [{m}]'}" for m in labels
                             for h in ("Dice", "HD95 mm", "volume error %")]
        lines += _table(header, [[case] + [v for m in labels for v in (
            _fmt(r[m]["dice_lungs"]), _fmt(r[m]["hd95_mm_lungs"], 2), _fmt(r[m]["volume_error_pct_lungs"], 1))]
            for case, r in by_case.items()])
        lines.append("")
    return "\n".join(lines) + "\n"
