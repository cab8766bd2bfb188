"""Volumetric evaluation through the real engine (preprocess, infer, post-process), not the training loop.

Slice Dice during training flatters a model; what a clinician gets is the post-processed, right/left-split
volume, so the figures in a model card and in an evaluation report come from here.

``neonatal-lung-seg evaluate --model DIR [--model DIR2 ...] --data TRAINING_FOLDER --out REPORT_DIR``
segments every case of a labelled folder with each model and writes per_case.csv, summary.json, PNG plots
and report.md (see :mod:`.report`). Metric definitions are in :mod:`.metrics`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import SimpleITK as sitk

from NeonatalLungSegLib.inference.acceleration import SEGMENT_PRECISIONS
from NeonatalLungSegLib.inference.boundary import keep_expert_share
from NeonatalLungSegLib.inference.engine import Segmenter
from NeonatalLungSegLib.errors import InputError, exit_status
from NeonatalLungSegLib.geometry import Geometry, image_to_array, reorientation
from NeonatalLungSegLib.dataset.training_folder import CaseRecord, read_training_folder

from .metrics import RocCounts, dice, iou, slice_dice_by_position, surface_distances, volume_errors

__all__ = ["dice", "evaluate_case", "summarise", "score_case", "CaseEvaluation", "ModelEntry",
           "evaluate_folder", "main"]

# Region name -> label values of the reference / prediction that make it up.
REGIONS = {"lungs": (1, 2), "right": (1,), "left": (2,)}
REGION_METRICS = ("dice", "iou", "hd95_mm", "msd_mm", "volume_ref_ml", "volume_pred_ml", "volume_error_ml",
                  "volume_error_pct", "volume_abs_error_pct")


def evaluate_case(segmenter: Segmenter, image: sitk.Image, label: sitk.Image,
                  references: str = "expert") -> dict[str, float]:
    """Per-lung Dice and volume error of the engine's output against a reference labelmap (1 R, 2 L);
    ``references="physical"`` converts generated labels first (see ``evaluate_folder``)."""
    result = segmenter.segment_image(image)
    reference, geometry = image_to_array(label)
    if references == "physical":
        out = segmenter.config.output
        reference = keep_expert_share(reference, out.boundary_min_share, out.boundary_psf_sigma)
    voxel_ml = geometry.voxel_volume_ml
    scores: dict[str, float] = {}
    for name, value in (("right_lung", 1), ("left_lung", 2)):
        predicted, truth = result.labels == value, reference == value
        scores[f"dice_{name}"] = dice(predicted, truth)
        scores[f"volume_error_ml_{name}"] = float((predicted.sum() - truth.sum()) * voxel_ml)
    scores["dice_lungs"] = dice(result.labels > 0, reference > 0)
    gate = result.inference.get("gate")
    if gate is not None:  # a gated model: 1 where the fine-tuned network segmented the case, 0 the parent
        scores["gate_fine_tuned"] = float(gate["network"] == "fine-tuned")
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


@dataclass
class CaseEvaluation:
    """One model on one case: the flat metric row, ROC counts for pooling, and slices for an overlay."""

    row: dict[str, Any]
    roc: RocCounts
    views: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # "axial"/"coronal" -> arrays


def _mask(labels: np.ndarray, values: tuple[int, ...]) -> np.ndarray:
    return np.isin(labels, values) if len(values) > 1 else labels == values[0]


def _views(image: np.ndarray, reference: np.ndarray, predicted: np.ndarray,
           spacing_kji: tuple[float, float, float]) -> dict[str, dict[str, np.ndarray]]:
    """Axial and coronal slices (canonical LPS arrays) where reference and prediction disagree most."""
    wrong = reference != predicted
    views = {}
    for name, axis in (("axial", 0), ("coronal", 1)):
        others = tuple(a for a in range(3) if a != axis)
        counts = wrong.sum(axis=others)
        if not counts.any():  # perfect agreement: show the slice with the most lung instead
            counts = reference.sum(axis=others)
        index = int(np.argmax(counts))
        take = (lambda a: a[index]) if axis == 0 else (lambda a: a[:, index, :])
        views[name] = {"image": take(image).astype(np.float32), "reference": take(reference),
                       "predicted": take(predicted), "index": np.int64(index),
                       "spacing": np.asarray([spacing_kji[a] for a in others], dtype=float),
                       "disagreeing_voxels": np.int64(counts[index] if wrong.any() else 0)}
    return views


def score_case(predicted: np.ndarray, probabilities: np.ndarray | None, reference: np.ndarray,
               geometry: Geometry, label_scheme: str = "right_left",
               image: np.ndarray | None = None) -> CaseEvaluation:
    """All metrics of one predicted labelmap against its reference, both (k, j, i) arrays on ``geometry``.

    Whole lung (label > 0) always; right (1) and left (2) only for ``label_scheme == "right_left"`` (NaN
    otherwise). ``probabilities`` (lung probability) gives the pixel ROC AUC (NaN without it). Per-slice
    Dice by position uses axial slices of the canonical LPS grid, so the apex is the superior third of
    the reference lung's cranio-caudal extent whatever the file's orientation. With ``image``, the
    returned views hold the slices of maximum disagreement for overlays.
    """
    if predicted.shape != reference.shape or tuple(reference.shape) != geometry.array_shape:
        raise ValueError(f"shapes differ: predicted {predicted.shape}, reference {reference.shape}, "
                         f"geometry {geometry.array_shape}")
    spacing_kji = tuple(float(s) for s in geometry.spacing[::-1])
    voxel_ml = geometry.voxel_volume_ml
    row: dict[str, Any] = {}
    for region, values in REGIONS.items():
        if region != "lungs" and label_scheme != "right_left":
            row.update({f"{m}_{region}": float("nan") for m in REGION_METRICS})
            continue
        pred, ref = _mask(predicted, values), _mask(reference, values)
        row[f"dice_{region}"] = dice(pred, ref)
        row[f"iou_{region}"] = iou(pred, ref)
        row.update({f"{k}_{region}": v for k, v in surface_distances(pred, ref, spacing_kji).items()})
        row.update({f"{k}_{region}": v for k, v in volume_errors(pred, ref, voxel_ml).items()})
    truth = reference > 0
    if probabilities is not None:
        roc = RocCounts.from_scores(probabilities, truth)
    else:
        roc = RocCounts(np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64))
    row["auc_lungs"] = roc.auc()
    plan = reorientation(geometry, "LPS")  # canonical: k grows towards superior, j posterior, i left
    canon_pred = np.ascontiguousarray(plan.to_canonical(predicted > 0))
    canon_ref = np.ascontiguousarray(plan.to_canonical(truth))
    for position, value in slice_dice_by_position(canon_pred, canon_ref, axis=0,
                                                  apex_at_high_index=True).items():
        row[f"slice_dice_{position}"] = value
    views = {}
    if image is not None:
        canon_spacing = tuple(float(s) for s in plan.target.spacing[::-1])
        views = _views(plan.to_canonical(image), canon_ref, canon_pred, canon_spacing)
    return CaseEvaluation(row=row, roc=roc, views=views)


@dataclass
class ModelEntry:
    """A loaded model and the unique label it carries in tables and plots."""

    label: str
    folder: Path
    segmenter: Segmenter

    @property
    def description(self) -> dict[str, Any]:
        config = self.segmenter.config
        return {"label": self.label, "name": config.name, "version": config.version,
                "parent_version": config.parent_version, "folder": str(self.folder),
                "device": str(self.segmenter.device), "precision": self.segmenter.precision,
                "backend": self.segmenter.inference["backend"], "weights_sha256": config.weights_sha256,
                "description": config.description}


def load_models(folders: Sequence[Path], device: str = "auto", precision: str = "auto") -> list[ModelEntry]:
    """Load every model folder (one clear error if any is not one); labels are made unique. Models compared
    side by side should share a precision: ``auto`` may run one folder's int8 network and another's bf16."""
    entries: list[ModelEntry] = []
    for folder in map(Path, folders):
        segmenter = Segmenter.load(folder, device=device, precision=precision)
        label = f"{segmenter.config.name} {segmenter.config.version}"
        taken = {e.label for e in entries}
        if label in taken:
            label = f"{label} ({folder.name})"
        base, n = label, 2
        while label in taken:
            label, n = f"{base} #{n}", n + 1
        entries.append(ModelEntry(label, folder, segmenter))
    return entries


def evaluate_folder(models: Sequence[ModelEntry], folder_cases: Sequence[CaseRecord], read_case,
                    echo=print, references: str = "expert") -> dict[str, list[CaseEvaluation]]:
    """Segment and score every case with every model; cases are read once. Returns model label -> list.

    ``references="physical"``: the labels mark every voxel at least half lung (generated and interpolated
    labels); each model is then scored against them converted with its own boundary convention
    (inference/boundary.py), which is what its labels would be had they been drawn the expert's way."""
    results: dict[str, list[CaseEvaluation]] = {m.label: [] for m in models}
    for number, record in enumerate(folder_cases, 1):
        image, label = read_case(record)
        image_array, geometry = image_to_array(image)
        reference, _ = image_to_array(label)
        for model in models:
            started = time.perf_counter()
            result = model.segmenter.segment_array(image_array, geometry, with_probabilities=True)
            truth = reference
            if references == "physical":
                out = model.segmenter.config.output
                truth = keep_expert_share(reference, out.boundary_min_share, out.boundary_psf_sigma)
            evaluation = score_case(result.labels, result.probabilities, truth, geometry,
                                    record.label_scheme, image=image_array)
            evaluation.row = {"model": model.label, "case_id": record.case_id, "subject": record.subject,
                              "label_scheme": record.label_scheme, **evaluation.row,
                              "seconds": round(time.perf_counter() - started, 3)}
            results[model.label].append(evaluation)
            row = evaluation.row
            echo(f"[{number}/{len(folder_cases)}] {record.case_id} {model.label}: Dice {row['dice_lungs']:.4f}"
                 f"  HD95 {row['hd95_mm_lungs']:.2f} mm  volume error {row['volume_error_pct_lungs']:+.1f} %")
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="neonatal-lung-seg evaluate",
        description="Evaluate one or more model folders on a labelled training folder through the real engine "
                    "(with post-processing): per-case Dice, IoU, HD95, mean surface distance, volume error, "
                    "pixel ROC AUC and per-position slice Dice; writes per_case.csv, summary.json, PNG plots "
                    "and report.md into --out. Research use only; results hold for the given data only.")
    parser.add_argument("--model", type=Path, action="append", required=True, metavar="MODEL_DIR",
                        help="model folder; repeat to compare several models side by side")
    parser.add_argument("--data", type=Path, required=True, metavar="TRAINING_FOLDER",
                        help="labelled folder: a training folder (manifest.json) or images/ + labels/ pairs")
    parser.add_argument("--out", type=Path, required=True, metavar="REPORT_DIR", help="report folder to write")
    parser.add_argument("--run-dir", type=Path, default=None,
                        help="training run folder whose log.csv gives loss and Dice/IoU curves")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    parser.add_argument("--precision", choices=SEGMENT_PRECISIONS, default="auto",
                        help="as segment's; give one (e.g. fp32) to compare models that auto would run differently")
    parser.add_argument("--worst", type=int, default=3, metavar="N",
                        help="overlay figures of the N worst cases per model by whole-lung Dice (default 3)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing evaluation report")
    parser.add_argument("--split", type=Path, default=None, metavar="SPLIT_JSON",
                        help="a run's split.json: evaluate only the subjects of --part (a model's own "
                             "held-out subjects, never its training ones)")
    parser.add_argument("--references", choices=("expert", "physical"), default="expert",
                        help="how the reference labels treat partial-volume boundary voxels: expert (drawn by "
                             "people, scored as stored; default) or physical (every voxel at least half lung: "
                             "generated or interpolated labels, converted with each model's boundary "
                             "convention before scoring)")
    parser.add_argument("--part", choices=("train", "val", "test"), default="test",
                        help="which part of --split to evaluate (default test)")
    return parser


def run(args: argparse.Namespace, echo=print) -> dict[str, Any]:
    """The evaluate command as a function: checks every input before any work, then writes the report."""
    from . import report

    if args.worst < 0:
        raise InputError(f"--worst must be >= 0, got {args.worst}")
    report.check_report_dir(args.out, args.overwrite)
    if not args.data.exists():
        raise InputError(f"{args.data}: data folder does not exist")
    folder = read_training_folder(args.data)
    log = report.read_training_log(args.run_dir) if args.run_dir is not None else None
    models = load_models(args.model, args.device, args.precision)
    cases = folder.latest_versions()
    if args.split is not None:
        try:
            wanted = set(json.loads(args.split.read_text(encoding="utf-8"))[args.part])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{args.split}: not a split file with a {args.part!r} list ({exc})") from None
        cases = [c for c in cases if c.subject in wanted]
        if not cases:
            raise InputError(f"{args.split}: no subject of {args.part!r} is in {args.data}")
    echo(f"evaluating {len(models)} model(s) on {len(cases)} case(s) from {folder.root} "
         f"on {models[0].segmenter.device}, precision "
         + ", ".join(sorted({m.segmenter.precision for m in models})))
    if args.references == "physical":
        echo("references follow the physical convention: converted with each model's boundary convention")
    results = evaluate_folder(models, cases, folder.read_case, echo=echo, references=args.references)
    summary = report.write_report(args.out, models, folder, cases, results, log=log, worst=args.worst,
                                  overwrite=args.overwrite)
    echo("")
    echo(report.summary_table_text(summary))
    echo(f"\nreport: {args.out / report.REPORT_NAME}")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return exit_status(lambda: run(args), interrupted="interrupted: no report was written")


if __name__ == "__main__":
    sys.exit(main())
