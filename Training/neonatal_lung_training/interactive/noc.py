"""Score click refinement the way the field does: simulated clicks, NoC@90 / NoC@95, Dice after n clicks.

    neonatal-lung-seg evaluate-clicks --data runs/proton-eval --start empty --start model -o OUT

For each labelled volume and each starting mask (``empty``; ``model``: the segmentation model's own output;
``given``: DATA/starts/NAME.nii.gz, e.g. the rim errors of ``rim_starts.py``), clicks are simulated one at a
time (``simulate.next_click``: the centre of the largest 3D error region, positive on missed lung, negative
on false lung, for the lung the error belongs to) and applied with ``RefineSession.apply``, each to the
result of the clicks before, up to ``--max-clicks`` (20, the usual limit). NoC@X is the number of clicks
after which Dice of both lungs first reaches X (``--max-clicks`` when it never does, the usual convention;
the report says how often that happened).

Writes OUT/noc.json (every Dice and every click's seconds), OUT/noc.csv (one row per case and start),
OUT/dice-per-click.png and OUT/report.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from NeonatalLungSegLib.correction.clicks import Click
from NeonatalLungSegLib.errors import InputError, exit_status
from NeonatalLungSegLib.geometry import image_to_array
from NeonatalLungSegLib.inference.measure import dice
from NeonatalLungSegLib.volumes.volume_io import read_labels_on_grid, read_volume

from .simulate import next_click

STARTS = ("empty", "model", "given")
DEFAULT_STARTS = ("empty", "model")
TITLES = {"empty": "from an empty mask", "model": "from the model output", "given": "from the given masks"}
TARGETS = (0.90, 0.95)
REPORT_AFTER = (1, 3, 5, 10)


def volume_pairs(folder: Path) -> list[tuple[str, Path, Path]]:
    """(name, image, labels) for every images/NAME.* with a labels/NAME.* beside it."""
    images = sorted(p for p in (Path(folder) / "images").glob("*.nii*"))
    pairs = []
    for image in images:
        label = Path(folder) / "labels" / image.name
        if label.exists():
            pairs.append((image.name.split(".nii")[0], image, label))
    if not pairs:
        raise InputError(f"{folder}: no images/NAME.nii.gz with a labels/NAME.nii.gz")
    return pairs


def noc(curve: list[float], target: float, limit: int) -> int:
    """Clicks until Dice first reaches ``target`` (0 when the start already does; ``limit`` when never)."""
    for clicks, value in enumerate(curve):
        if value >= target:
            return clicks
    return limit


def simulate_case(session, reference: np.ndarray, start: np.ndarray, max_clicks: int,
                  sampling: tuple[float, float, float]) -> dict:
    """Dice (both lungs, and each lung) before any click and after each, and seconds per click."""
    labels = start.astype(np.uint8)
    curve = [dice(labels > 0, reference > 0)]
    right = [dice(labels == 1, reference == 1)]
    left = [dice(labels == 2, reference == 2)]
    seconds, kinds, slices = [], [], []
    for _ in range(max_clicks):
        click = next_click(reference, labels, labels=(1, 2), sampling=sampling)
        if click is None:
            break
        lung = "right_lung" if click.label == 1 else "left_lung"
        labels, outcome = session.apply(labels, Click(tuple(click.position), click.positive, lung))
        seconds.append(outcome.seconds)
        slices.append(outcome.slices_run)
        kinds.append(("+" if click.positive else "-") + ("R" if click.label == 1 else "L")
                     + ("*" if outcome.fallback else "") + ("c" if outcome.image_contrast else "")
                     + ("p" if outcome.rim_peel else ""))  # fallback disk, contrast rule, rim peel
        curve.append(dice(labels > 0, reference > 0))
        right.append(dice(labels == 1, reference == 1))
        left.append(dice(labels == 2, reference == 2))
    while len(curve) < max_clicks + 1:  # a perfect mask stays perfect
        curve.append(curve[-1])
        right.append(right[-1])
        left.append(left[-1])
    return {"dice": curve, "dice_right": right, "dice_left": left, "seconds": seconds, "clicks": kinds,
            "slices_run": slices, "labels": labels}


def evaluate(data: Path, refine_model: Path, segment_model: Path | None, starts: list[str], max_clicks: int,
             device: str, out: Path, image_contrast: bool = True, rim_peel: bool = True) -> dict:
    from NeonatalLungSegLib.inference.engine import Segmenter
    from NeonatalLungSegLib.correction.refine import Refiner

    refiner = Refiner.load(refine_model, device=device)
    segmenter = Segmenter.load(segment_model, device=device) if "model" in starts else None
    pairs = volume_pairs(data)
    for name, image_path, label_path in pairs:  # every problem found now, not after other cases' minutes
        _, geometry = image_to_array(read_volume(image_path, check=True))
        read_labels_on_grid(label_path, geometry)  # labels on another grid: one line naming the file
        if "given" in starts:
            read_labels_on_grid(given_start(data, name), geometry)
    results = []
    for name, image_path, label_path in pairs:
        array, geometry = image_to_array(read_volume(image_path, check=True))
        array = array.astype(np.float32, copy=False)
        reference = read_labels_on_grid(label_path, geometry).astype(np.uint8)
        sampling = tuple(float(s) for s in geometry.spacing[::-1])
        for start in starts:
            initial = _start_mask(start, data, name, reference, array, geometry, segmenter)
            started = time.perf_counter()
            session = refiner.session(array, geometry, str(image_path), image_contrast=image_contrast,
                                      rim_peel=rim_peel)
            case = simulate_case(session, reference, initial, max_clicks, sampling)
            case.pop("labels")
            row = {"case": name, "start": start, **case, "shape": list(reference.shape),
                   "minutes": round((time.perf_counter() - started) / 60, 2)}
            for target in TARGETS:
                row[f"noc{round(target * 100)}"] = noc(case["dice"], target, max_clicks)
            results.append(row)
            print(f"{name} from {start}: Dice {case['dice'][0]:.3f} -> {case['dice'][-1]:.3f}; NoC@90 "
                  f"{row['noc90']}, NoC@95 {row['noc95']}; median {statistics.median(case['seconds'] or [0]):.2f} s "
                  f"per click", flush=True)
    summary = {"refine_model": _identity(refiner.config),
               "segment_model": _identity(segmenter.config) if segmenter else None,
               "max_clicks": max_clicks, "image_contrast": image_contrast, "rim_peel": rim_peel,
               "device": str(refiner.device), "cpu": _cpu(), "cases": results}
    _write(out, summary)
    return summary


def _start_mask(start: str, data: Path, name: str, reference: np.ndarray, array: np.ndarray, geometry,
                segmenter) -> np.ndarray:
    if start == "empty":
        return np.zeros_like(reference)
    if start == "model":
        return segmenter.segment_array(array, geometry).labels
    return read_labels_on_grid(given_start(data, name), geometry)


def given_start(data: Path, name: str) -> Path:
    """DATA/starts/NAME.nii.gz, the ``given`` starting mask of a case (checked before any case is scored)."""
    path = Path(data) / "starts" / f"{name}.nii.gz"
    if not path.exists():
        raise InputError(f"{path}: missing (--start given reads DATA/starts/NAME.nii.gz for every case)")
    return path


def _identity(config) -> dict:
    return {"name": config.name, "version": config.version}


def _cpu() -> str:
    from NeonatalLungSegLib.inference.acceleration import cpu_line

    return cpu_line()


def _write(out: Path, summary: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "noc.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    with open(out / "noc.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case", "start", "dice_start", *[f"dice_after_{n}" for n in REPORT_AFTER], "noc90",
                         "noc95", "median_seconds_per_click"])
        for row in summary["cases"]:
            writer.writerow([row["case"], row["start"], f"{row['dice'][0]:.4f}",
                             *[f"{row['dice'][min(n, len(row['dice']) - 1)]:.4f}" for n in REPORT_AFTER],
                             row["noc90"], row["noc95"], f"{statistics.median(row['seconds'] or [0]):.3f}"])
    _plot(out / "dice-per-click.png", summary)
    (out / "report.md").write_text(markdown(summary), encoding="utf-8")


def _plot(path: Path, summary: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    starts = [s for s in STARTS if any(r["start"] == s for r in summary["cases"])] or list(DEFAULT_STARTS)
    figure, axes = plt.subplots(1, len(starts), figsize=(5 * len(starts), 4), squeeze=False)
    axes = axes[0]
    for axis, start in zip(axes, starts):
        rows = [r for r in summary["cases"] if r["start"] == start]
        for row in rows:
            axis.plot(range(len(row["dice"])), row["dice"], marker=".", label=row["case"])
        for target in TARGETS:
            axis.axhline(target, color="grey", linestyle=":", linewidth=1)
        axis.set_title(TITLES[start])
        axis.set_xlabel("clicks")
        # From a model or given mask every curve starts high: zoom there, or 0.90 / 0.95 are one line.
        low = min([min(r["dice"]) for r in rows] or [0.0]) if start != "empty" else 0.0
        axis.set_ylim(max(0.0, low - 0.02), 1.0)
        axis.grid(alpha=0.3)
        if rows:
            axis.legend(fontsize=7)
    for axis in axes:
        axis.set_ylabel("Dice, both lungs")
    figure.suptitle(f"{summary['refine_model']['name']} {summary['refine_model']['version']}: Dice after each "
                    "simulated click")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def markdown(summary: dict) -> str:
    lines = [f"Refinement model {summary['refine_model']['name']} {summary['refine_model']['version']}"
             + (f", starting masks from {summary['segment_model']['name']} {summary['segment_model']['version']}"
                if summary["segment_model"] else "")
             + ("" if summary.get("image_contrast", True) else "; image-contrast rule off")
             + ("" if summary.get("rim_peel", True) else "; rim peel off")
             + f"; device {summary['device']} ({summary['cpu']}); at most "
             f"{summary['max_clicks']} clicks.", "",
             "| case | start | Dice at start | " + " | ".join(f"after {n}" for n in REPORT_AFTER)
             + " | NoC@90 | NoC@95 | median s/click |", "|---" * (6 + len(REPORT_AFTER)) + "|"]
    for row in summary["cases"]:
        after = " | ".join(f"{row['dice'][min(n, len(row['dice']) - 1)]:.3f}" for n in REPORT_AFTER)
        lines.append(f"| {row['case']} | {row['start']} | {row['dice'][0]:.3f} | {after} | {row['noc90']} | "
                     f"{row['noc95']} | {statistics.median(row['seconds'] or [0]):.2f} |")
    lines.append("")
    for start in STARTS:
        rows = [r for r in summary["cases"] if r["start"] == start]
        if not rows:
            continue
        limit = summary["max_clicks"]
        lines.append(f"- from {start}: mean NoC@90 {np.mean([r['noc90'] for r in rows]):.1f}, mean NoC@95 "
                     f"{np.mean([r['noc95'] for r in rows]):.1f} ({sum(r['noc95'] >= limit for r in rows)} of "
                     f"{len(rows)} volumes never reached 0.95 and count as {limit}); median seconds per click "
                     f"{statistics.median([s for r in rows for s in r['seconds']] or [0]):.2f}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="neonatal-lung-seg evaluate-clicks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True,
                        help="folder with images/NAME.nii.gz and labels/NAME.nii.gz")
    parser.add_argument("--refine-model", type=Path, default=None, help="default: the bundled refinement model")
    parser.add_argument("--model", type=Path, default=None,
                        help="segmentation model giving the 'model' start (default: the bundled model)")
    parser.add_argument("--start", choices=STARTS, action="append", default=None,
                        help="starting mask; repeatable (default: empty and model; "
                             "given reads DATA/starts/NAME.nii.gz)")
    parser.add_argument("--max-clicks", type=int, default=20)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-image-contrast", action="store_true",
                        help="negative clicks use the network only (the engine's image-contrast rule off)")
    parser.add_argument("--no-rim-peel", action="store_true",
                        help="negative clicks on the mask's rim do not peel it (the engine's rim rule off)")
    parser.add_argument("-o", "--out", type=Path, required=True)
    args = parser.parse_args(argv)

    def body() -> None:
        from NeonatalLungSegLib.models.registry import bundled_refine_model_folder, default_model_folder

        if args.max_clicks < 1:
            raise InputError(f"--max-clicks must be >= 1, got {args.max_clicks}")
        evaluate(args.data, args.refine_model or bundled_refine_model_folder(), args.model or default_model_folder(),
                 args.start or list(DEFAULT_STARTS), args.max_clicks, args.device, args.out,
                 image_contrast=not args.no_image_contrast, rim_peel=not args.no_rim_peel)
        print(f"wrote {args.out}/report.md")

    return exit_status(body)


if __name__ == "__main__":
    sys.exit(main())
