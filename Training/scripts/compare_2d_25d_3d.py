"""Train 2D, 2.5D and 3D models with the same wall-time budget on the same synthetic training folder,
evaluate all three on the same held-out synthetic folder through the engine, and write a Markdown table.

    OMP_NUM_THREADS=1 .venv/bin/python Training/scripts/compare_2d_25d_3d.py --work runs/compare \\
        --train-cases 40 --test-cases 10 --max-minutes 8 --in-plane-size 96 --encoder resnet34

- Data: ``WORK/train-data`` (anatomy family "train") and ``WORK/heldout-data`` (family "heldout": newborn
  sizes, chest shapes and warps never seen in training), both training folders written by the synthetic
  generator (``synthetic_folder.write_synthetic_folder``: every case draws its own matrix, field of view,
  slice thickness, anatomy source and contrast). Existing folders are reused.
- Training: ``neonatal_lung_training.training.train`` with one config per variant, identical except for what makes
  the variant (2D: one channel; 2.5D: three; 3D: a MONAI 3D U-Net on windows). Split 80/20 by subject
  (validation for early stopping and the best checkpoint); ``--max-minutes`` bounds each run (checked at
  the end of an epoch, so a run may overshoot by one epoch; the table shows the real minutes). A model folder
  that already exists is reused, and a killed run resumes when the script is started again.
- Evaluation: ``neonatal_lung_training.evaluation.evaluate`` (the ``evaluate`` command's Python API) on the held-out
  folder, with post-processing, writing its own full report to ``WORK/report``.
- Output: the Markdown table (``--out``, default docs/comparison-2d-25d-3d.md) with the exact command,
  machine and budget.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
for _path in (REPO / "NeonatalLungSeg", REPO / "Training"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from NeonatalLungSegLib.inference.acceleration import cpu_model  # noqa: E402

@dataclass(frozen=True)
class Variant:
    key: str          # column label
    name: str         # model name (unique, so the evaluation labels are too)
    flags: list[str]  # train flags that make the variant
    steps: int        # steps per epoch


def variants(args: argparse.Namespace) -> list[Variant]:
    slices = ["--encoder", args.encoder, "--batch-size", str(args.batch_2d)]
    return [
        Variant("2D", "compare-2d", [*slices, "--channels", "1"], args.steps_2d),
        Variant("2.5D", "compare-2p5d", [*slices, "--channels", "3"], args.steps_2d),
        Variant("3D", "compare-3d", ["--spatial-dims", "3", "--patch-slices", str(args.patch_slices),
                                     "--batch-size", str(args.batch_3d)], args.steps_3d),
    ]


def build_data(root: Path, count: int, first_seed: int, family: str) -> None:
    """A synthetic training folder from the project's generator, unless it already exists."""
    from NeonatalLungSegLib.dataset.training_folder import read_training_folder

    if (root / "manifest.json").is_file():
        found = len(read_training_folder(root).cases)
        if found != count:
            raise SystemExit(f"{root}: holds {found} cases, not {count}; remove it or pass another --work")
        print(f"reusing {root} ({found} cases)", flush=True)
        return
    print(f"generating {count} {family} cases into {root}", flush=True)
    seeds = list(range(first_seed, first_seed + count))
    try:
        from neonatal_lung_training.synthesis.neonatal.folder import write_synthetic_folder
    except ImportError:  # an older checkout: one fixed grid, procedural anatomy
        from NeonatalLungSegLib.dataset.training_folder import add_case
        from neonatal_lung_training.synthesis.neonatal.generator import generate_case

        for seed in seeds:
            case = generate_case(seed, variant_family=family, shape=(64, 128, 128), spacing=(2.0, 1.0, 1.0))
            add_case(root, case.image, case.label, f"syn-{family}-{seed:06d}", review_status="reference",
                     source="synthetic", description=f"synthetic neonatal chest MRI ({family} family)")
        return
    write_synthetic_folder(root, seeds, variant_family=family)


def train_variant(variant: Variant, args: argparse.Namespace, data: Path) -> tuple[Path, bool]:
    """The variant's model folder, and whether it was trained now (False: reused from an earlier run)."""
    from neonatal_lung_training.training.train import train
    from neonatal_lung_training.training.train_cli import parse_config

    output = args.work / "models" / variant.name
    if (output / "model.json").is_file():
        print(f"reusing {output}", flush=True)
        return output, False
    argv = ["--data", str(data), "--output", str(output), "--run-dir", str(args.work / "runs" / variant.name),
            "--name", variant.name, "--version", "0.1.0", "--in-plane-size", str(args.in_plane_size),
            "--max-minutes", str(args.max_minutes), "--epochs", "1000", "--patience", str(args.patience),
            "--steps-per-epoch", str(variant.steps), "--split-fractions", "0.8", "0.2", "0.0",
            "--seed", str(args.seed), "--device", args.device, "--data-description",
            "synthetic neonatal chest MRI (train anatomy family), 2D / 2.5D / 3D comparison", *variant.flags]
    print(f"\n=== training {variant.key}: neonatal-lung-seg train {shlex.join(argv)}", flush=True)
    train(parse_config(argv))
    return output, True


def parameters(folder: Path) -> int:
    from NeonatalLungSegLib.models.model_folder import read_config
    from NeonatalLungSegLib.models.network import build_network

    return sum(p.numel() for p in build_network(read_config(folder)).parameters())


def evaluate(models: list[Path], data: Path, out: Path, device: str) -> dict[str, Any]:
    from neonatal_lung_training.evaluation import evaluate as evaluation

    argv = [a for m in models for a in ("--model", str(m))]
    args = evaluation.build_parser().parse_args([*argv, "--data", str(data), "--out", str(out), "--device", device,
                                                 "--worst", "1", "--overwrite"])
    return evaluation.run(args)


def _mean_worst(stats: dict[str, Any] | None, digits: int, worst: str) -> str:
    if not stats or not stats.get("n"):
        return "n/a"
    if stats.get("n_infinite"):
        return f"inf ({stats['n_infinite']} missed)"
    return f"{stats['mean']:.{digits}f} ({stats[worst]:.{digits}f})"


def machine() -> str:
    return f"{cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def write_markdown(path: Path, args: argparse.Namespace, command: str, rows: list[dict[str, Any]],
                   summary: dict[str, Any], loads: tuple[str, str], started: str, seconds: float,
                   reused: list[str]) -> None:
    import torch

    try:
        import monai
        monai_version = monai.__version__
    except ImportError:
        monai_version = "not installed"
    data = summary["data"]
    reuse_note = (f"; the {', '.join(reused)} model(s) were trained by an earlier run of the same command and "
                  "reused, so this time and the load averages below cover the rest" if reused else "")
    header = ["configuration", "network (parameters)", "input", "epochs (best; steps x batch)", "training min",
              "best val Dice", "Dice right", "Dice left", "Dice both", "HD95 mm right", "HD95 mm left",
              "HD95 mm both", "volume error % (signed mean)", "voxel ROC AUC", "inference s/case"]
    body, notes = [], []
    for row in rows:
        m = summary["metrics"][row["label"]]
        signed = (m.get("volume_error_pct_lungs") or {}).get("mean")
        auc = summary["auc_pooled"].get(row["label"])
        body.append([row["key"], row["network"], row["input"],
                     f"{row['epochs']} (best {row['best_epoch']}; {row['steps']})", f"{row['minutes']:.1f}",
                     f"{row['best_val']:.4f}",
                     _mean_worst(m.get("dice_right"), 4, "min"), _mean_worst(m.get("dice_left"), 4, "min"),
                     _mean_worst(m.get("dice_lungs"), 4, "min"), _mean_worst(m.get("hd95_mm_right"), 2, "max"),
                     _mean_worst(m.get("hd95_mm_left"), 2, "max"), _mean_worst(m.get("hd95_mm_lungs"), 2, "max"),
                     "n/a" if signed is None else f"{signed:+.1f}", "n/a" if auc is None else f"{auc:.4f}",
                     f"{m['seconds']['mean']:.2f}" if m.get("seconds") else "n/a"])
        facts = [f"best validation epoch {row['best_epoch']} of {row['epochs']}"
                 + (" (still improving when the budget ran out)" if row["best_epoch"] == row["epochs"] else ""),
                 f"training loss {row['first_loss']:.3f} in epoch 1, {row['last_loss']:.3f} in the last"]
        if signed is not None and signed < -20:
            facts.append(f"it under-segments at the 0.5 threshold (mean volume error {signed:+.0f} %)")
        notes.append(f"- **{row['key']}:** " + "; ".join(facts) + ".")
    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
        ["| " + " | ".join(str(c) for c in r) + " |" for r in body]
    best = max(rows, key=lambda r: summary["metrics"][r["label"]]["dice_lungs"]["mean"] or -1)
    best_auc = max(rows, key=lambda r: summary["auc_pooled"].get(r["label"]) or -1)
    text = f"""# 2D vs 2.5D vs 3D on held-out synthetic neonatal chest MRI

> **A small-budget CPU comparison on synthetic data only.** Each configuration trained for about
> {args.max_minutes:g} minutes of wall time on a shared 2-core CPU with one thread; none of them converged.
> The table ranks what each approach reaches under that budget on this machine, not what it can reach with
> a GPU and hours of training, and says nothing about real neonatal MRI. Research use only; not clinically
> validated.

Written by `Training/scripts/compare_2d_25d_3d.py` on {started} ({seconds / 60:.0f} min{reuse_note}):

```bash
{command}
```

## Setup

- **Machine:** {machine()}; torch {torch.__version__}, MONAI {monai_version},
  `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}`, torch threads {torch.get_num_threads()},
  training precision {training_precision(args.device)} (`precision auto`); Dice in the loss pooled over the batch.
  The machine was shared with other work during the run (load averages over 1, 5 and 15 minutes:
  {loads[0]} at the start, {loads[1]} at the end), so minutes and seconds are indicative only.
- **Training data:** {args.train_cases} synthetic cases of the generator's "train" anatomy family (each with
  its own matrix, field of view, slice thickness, anatomy source and contrast), split 80/20 by subject
  into training and validation (validation picks the best checkpoint).
- **Held-out test data:** {data['cases']} synthetic cases of the "heldout" anatomy family (newborn sizes,
  chest shapes and warps disjoint from training), manifest SHA-256 `{data['manifest_sha256'][:16]}…`.
- **Budget:** `--max-minutes {args.max_minutes:g}` per configuration (checked after each epoch, so a run
  can overshoot by one epoch; the table shows the real minutes), early-stopping patience {args.patience}
  epochs, the same seed, learning rate, loss (Dice + BCE) and MONAI augmentation; in-plane size
  {args.in_plane_size}.
- **Evaluation:** `neonatal_lung_training.evaluation.evaluate` on the held-out folder through the engine with
  post-processing (the right/left split included), as `neonatal-lung-seg evaluate` does. Its full report
  (plots, per-case CSV) was written to `{args.work / 'report'}` (not committed).

## Results

Mean over the {data['cases']} held-out cases (worst case in brackets: lowest Dice, largest HD95 or
volume error). HD95 is the 95th-percentile symmetric surface distance in mm on the image grid. Training
minutes include data loading and validation; inference is the engine's time per case on this CPU. "Best val
Dice" is the training loop's own figure at the network's resolution (2D / 2.5D: pooled over the validation
slices it keeps; 3D: over whole validation volumes by sliding window), so it only roughly compares across rows;
the held-out columns are the comparison.

{chr(10).join(table)}

"Volume error" is (predicted − reference) / reference of both lungs; "voxel ROC AUC" pools the lung
probability of every voxel of every case before thresholding and post-processing, so it separates how well
a network ranks voxels from where its 0.5 threshold falls.

## Reading it

Highest mean Dice (both lungs) in this run: **{best['key']}**; highest pooled voxel ROC AUC:
**{best_auc['key']}**. From the training logs (`{args.work / 'runs'}/*/log.csv`):

{chr(10).join(notes)}

With budgets this small the ranking can change with the budget, the machine load and the seed. A fair
verdict needs each configuration trained to convergence, ideally on a GPU, and repeated over seeds; this
table shows only that all three configurations train and segment end to end through the same engine and
what each reaches in about {args.max_minutes:g} CPU minutes.
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def training_precision(device: str) -> str:
    from NeonatalLungSegLib.inference.acceleration import resolve_training_precision
    from NeonatalLungSegLib.inference.engine import resolve_device

    return f"{resolve_training_precision('auto', resolve_device(device))} autocast"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "compare-2d-25d-3d",
                        help="folder for data, runs, models and the evaluation report")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "comparison-2d-25d-3d.md")
    parser.add_argument("--train-cases", type=int, default=40)
    parser.add_argument("--test-cases", type=int, default=10)
    parser.add_argument("--max-minutes", type=float, default=8.0, help="wall-time budget per configuration")
    parser.add_argument("--in-plane-size", type=int, default=96)
    parser.add_argument("--encoder", default="resnet34", help="2D / 2.5D encoder")
    parser.add_argument("--batch-2d", type=int, default=12, help="slices per step for 2D and 2.5D")
    parser.add_argument("--steps-2d", type=int, default=40, help="steps per epoch for 2D and 2.5D")
    parser.add_argument("--patch-slices", type=int, default=32)
    parser.add_argument("--batch-3d", type=int, default=2, help="windows per step for 3D")
    parser.add_argument("--steps-3d", type=int, default=80, help="steps per epoch for 3D")
    parser.add_argument("--patience", type=int, default=100, help="early stopping (large: the budget decides)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    command = "OMP_NUM_THREADS={} .venv/bin/python Training/scripts/compare_2d_25d_3d.py {}".format(
        os.environ.get("OMP_NUM_THREADS", "unset"), shlex.join(sys.argv[1:] if argv is None else argv))
    started, clock = datetime.now(timezone.utc).isoformat(timespec="minutes"), time.perf_counter()
    load_start = " ".join(f"{v:.1f}" for v in os.getloadavg())
    train_data, test_data = args.work / "train-data", args.work / "heldout-data"
    build_data(train_data, args.train_cases, 0, "train")
    build_data(test_data, args.test_cases, 100_000, "heldout")
    chosen = variants(args)
    trained = [train_variant(v, args, train_data) for v in chosen]
    folders = [folder for folder, _ in trained]
    reused = [v.key for v, (_, now) in zip(chosen, trained) if not now]

    from NeonatalLungSegLib.models.model_folder import read_config

    print("\n=== evaluating on the held-out folder", flush=True)
    summary = evaluate(folders, test_data, args.work / "report", args.device)
    labels = [m["label"] for m in summary["models"]]
    rows = []
    for variant, folder, label in zip(chosen, folders, labels):
        config = read_config(folder)
        training, net, inp = config.training, config.network, config.input
        network = (f"{net.library} {net.architecture} {net.args.get('encoder_name', '')}".strip()
                   + f" ({parameters(folder) / 1e6:.1f} M)")
        shape = (f"{inp.patch_slices} x {inp.in_plane_size[0]} x {inp.in_plane_size[1]} windows"
                 if inp.spatial_dims == 3 else f"{inp.channels} x {inp.in_plane_size[0]} x {inp.in_plane_size[1]}")
        log = list(csv.DictReader((args.work / "runs" / variant.name / "log.csv").open(newline="")))
        rows.append({"key": variant.key, "label": label, "network": network, "input": shape,
                     "epochs": int(training["epochs_run"]), "best_epoch": int(training["best_epoch"]),
                     "steps": f"{variant.steps} x {training['batch_size']}",
                     "first_loss": float(log[0]["train_loss"]), "last_loss": float(log[-1]["train_loss"]),
                     "minutes": float(training["minutes"]), "best_val": float(training["best_val_slice_dice"])})
    load_end = " ".join(f"{v:.1f}" for v in os.getloadavg())
    write_markdown(args.out, args, command, rows, summary, (load_start, load_end), started,
                   time.perf_counter() - clock, reused)
    (args.work / "comparison.json").write_text(json.dumps({"rows": rows, "command": command}, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
