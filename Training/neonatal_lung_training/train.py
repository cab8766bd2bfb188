"""Train a model folder on synthetic neonatal chest MRI, following the published slice-wise method.

U-Net / ResNet-50 (built from the model config), BCE + Dice loss, Adam at 1e-3, ReduceLROnPlateau and
early stopping on validation Dice, rotation / translation / zoom augmentation. The figures written into
the model card come from the real engine on held-out volumes (see ``evaluate.py``).
"""

from __future__ import annotations

import argparse
import copy
import csv
import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from NeonatalLungSegLib.engine import Segmenter
from NeonatalLungSegLib.model_folder import InputConfig, ModelConfig, NetworkConfig, write_model_folder
from NeonatalLungSegLib.network import build_network

from .augment import AugmentConfig, augment_batch
from .evaluate import evaluate_case, summarise
from .model_card import write_model_card
from .slices import SliceSet, volume_slices
from .synthetic import default_atlas_dir, generate_case


@dataclass
class TrainConfig:
    """Every choice of a run; saved as run_config.json beside the run's log."""

    output: str = ""                  # the NEW model folder to write
    run_dir: str = ""                 # logs and checkpoints (default: <output>.run)
    name: str = "neonatal-lung-unet-r50"
    version: str = "0.1.0"
    train_cases: int = 120
    val_cases: int = 12
    test_cases: int = 10
    atlas_fraction: float = 0.5       # share of cases built on the fetal atlas anatomy (rest procedural)
    seed: int = 0
    epochs: int = 40
    steps_per_epoch: int = 100
    batch_size: int = 12
    learning_rate: float = 1e-3
    patience: int = 6                 # early stopping, in epochs without validation improvement
    max_minutes: float = 0.0          # stop after this wall time (0 = no limit); the best model is kept
    in_plane_size: int = 128
    channels: int = 1
    encoder: str = "resnet50"
    weights_dtype: str = "float16"
    augment: AugmentConfig = field(default_factory=AugmentConfig)


def _case(seed: int, config: TrainConfig, rng: np.random.Generator):
    """One synthetic volume with a random field of view, matrix and slice thickness."""
    atlas = rng.random() < config.atlas_fraction and default_atlas_dir().is_dir()
    n = int(rng.choice([112, 128, 144, 160, 192]))
    fov = rng.uniform(110.0, 160.0)
    slices = int(rng.integers(40, 80))
    thickness = rng.uniform(1.2, 2.5)
    return generate_case(seed, anatomy="atlas" if atlas else "procedural", shape=(slices, n, n),
                         spacing=(thickness, fov / n, fov / n),
                         atlas_dir=default_atlas_dir() if atlas else None)


def _slice_set(seeds: Sequence[int], config: TrainConfig, input_config: InputConfig) -> SliceSet:
    parts = []
    for seed in seeds:
        case = _case(seed, config, np.random.default_rng(seed))
        parts.append(volume_slices(case.image, case.label, input_config, case_id=seed))
    return SliceSet.concat(parts)


def _loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """BCE + soft Dice over the batch, as in the published method."""
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
    probs = torch.sigmoid(logits)
    soft_dice = (2 * (probs * targets).sum() + 1) / (probs.sum() + targets.sum() + 1)
    return bce + (1 - soft_dice)


def _slice_dice(network: torch.nn.Module, data: SliceSet, batch_size: int) -> float:
    network.eval()
    hits = total = 0.0
    with torch.inference_mode():
        for start in range(0, len(data), batch_size):
            pred = network(data.images[start:start + batch_size]) > 0
            truth = data.targets[start:start + batch_size] >= 0.5
            hits += float((pred & truth).sum())
            total += float(pred.sum() + truth.sum())
    return 2 * hits / total if total else 1.0


def train(config: TrainConfig) -> ModelConfig:
    """Run the whole recipe and write the model folder; returns its config (with test metrics)."""
    if not config.output:
        raise ValueError("TrainConfig.output (the new model folder) is required")
    output = Path(config.output)
    if output.exists():
        raise FileExistsError(f"{output}: already exists; models are versioned, choose a new folder")
    run_dir = Path(config.run_dir or f"{output}.run")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "run_config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2))
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)

    input_config = InputConfig(channels=config.channels, in_plane_size=(config.in_plane_size,) * 2)
    model_config = ModelConfig(name=config.name, version=config.version, input=input_config,
                               network=NetworkConfig(args={**NetworkConfig().args,
                                                           "encoder_name": config.encoder}))
    base = config.seed * 1_000_000
    started = time.perf_counter()
    train_set = _slice_set(range(base, base + config.train_cases), config, input_config)
    val_set = _slice_set(range(base + 100_000, base + 100_000 + config.val_cases), config, input_config)
    print(f"data: {len(train_set)} training and {len(val_set)} validation slices "
          f"({time.perf_counter() - started:.0f} s)", flush=True)

    network = build_network(model_config)
    optimiser = torch.optim.Adam(network.parameters(), lr=config.learning_rate)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimiser, mode="max", factor=0.5, patience=2)
    best_dice, best_state, stale = -1.0, None, 0
    log_path = run_dir / "log.csv"
    with open(log_path, "w", newline="") as log_file:
        log = csv.writer(log_file)
        log.writerow(["epoch", "train_loss", "val_slice_dice", "learning_rate", "seconds"])
        for epoch in range(1, config.epochs + 1):
            network.train()
            losses = []
            for _ in range(config.steps_per_epoch):
                index = torch.randint(len(train_set), (config.batch_size,), generator=generator)
                images, targets = augment_batch(train_set.images[index], train_set.targets[index],
                                                config.augment, generator)
                loss = _loss(network(images), targets)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                losses.append(loss.item())
            val_dice = _slice_dice(network, val_set, 32)
            scheduler.step(val_dice)
            elapsed = time.perf_counter() - started
            lr = optimiser.param_groups[0]["lr"]
            log.writerow([epoch, f"{np.mean(losses):.4f}", f"{val_dice:.4f}", lr, f"{elapsed:.0f}"])
            log_file.flush()
            print(f"epoch {epoch:3d}  loss {np.mean(losses):.4f}  val slice Dice {val_dice:.4f}  "
                  f"lr {lr:.1e}  {elapsed / 60:.1f} min", flush=True)
            if val_dice > best_dice:
                best_dice, best_state, stale = val_dice, copy.deepcopy(network.state_dict()), 0
            else:
                stale += 1
            if stale >= config.patience:
                print(f"early stop: no validation improvement for {stale} epochs", flush=True)
                break
            if config.max_minutes and elapsed > 60 * config.max_minutes:
                print(f"time limit of {config.max_minutes} min reached", flush=True)
                break

    # Evaluate exactly what gets shipped: weights rounded to the stored dtype.
    stored = getattr(torch, config.weights_dtype)
    network.load_state_dict({k: v.to(stored).to(v.dtype) if v.is_floating_point() else v
                             for k, v in best_state.items()})
    segmenter = Segmenter(model_config, network, torch.device("cpu"))
    test_seeds = range(base + 200_000, base + 200_000 + config.test_cases)
    per_case = []
    for seed in test_seeds:
        case = _case(seed, config, np.random.default_rng(seed))
        per_case.append({**evaluate_case(segmenter, case.image, case.label)})
    summary = summarise(per_case)
    print("held-out volumes:", json.dumps(summary), flush=True)
    (run_dir / "test_per_case.json").write_text(json.dumps(per_case, indent=2))

    final = dataclasses.replace(model_config, training={
        "data": "synthetic neonatal chest MRI from this project's generator "
                f"({config.atlas_fraction:.0%} fetal-atlas anatomy, rest procedural); no real neonatal MRI",
        "training_cases": config.train_cases, "validation_cases": config.val_cases,
        "training_slices": len(train_set), "epochs_run": epoch, "best_val_slice_dice": round(best_dice, 4),
        "recipe": "BCE + Dice, Adam 1e-3, ReduceLROnPlateau, early stopping, rot 15 deg, shift/zoom 10 %",
        "seed": config.seed, "minutes": round((time.perf_counter() - started) / 60, 1),
    }, validation={"data": f"{config.test_cases} held-out synthetic volumes (unseen seeds), engine with "
                           "post-processing", **summary})
    written = write_model_folder(output, final, network.state_dict(), dtype=config.weights_dtype)
    write_model_card(output)
    return written


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="neonatal-lung-seg train",
                                     description="Train a new model folder on synthetic neonatal chest MRI.")
    for f in dataclasses.fields(TrainConfig):
        if f.name == "augment":
            continue
        default = f.default
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(default), default=default,
                            required=f.name == "output", help=f"(default: {default!r})")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config = TrainConfig(**vars(args))
    try:
        result = train(config)
    except (FileExistsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {config.output} (version {result.version})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
