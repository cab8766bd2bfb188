"""Train (or fine-tune) a model folder on a training folder, following the published slice-wise method.

U-Net / ResNet-50 built from the model config, MONAI's BCE + Dice loss, Adam at 1e-3, ReduceLROnPlateau
and early stopping on validation Dice, MONAI augmentation (``augment.py``), a subject-level split, best
and last checkpoints with resume, and DDP under torchrun. The figures written into the model card come
from the real engine on the held-out test subjects, not from the training loop.
"""

from __future__ import annotations

import copy
import csv
import functools
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from monai.losses import DiceCELoss

from NeonatalLungSegLib.inference import acceleration
from NeonatalLungSegLib.inference.boundary import physical_from_expert
from NeonatalLungSegLib.inference.engine import resolve_device
from NeonatalLungSegLib.errors import exit_status
from NeonatalLungSegLib.models.network import build_network
from NeonatalLungSegLib.dataset.training_folder import read_training_folder

from . import checkpoint
from . import distributed
from . import volumes3d
from .augment import SliceAugmenter
from .config import TrainConfig, environment
from .dataset import cases_of, load_slices, select_cases
from .lineage import finish_model, model_config_for
from ..evaluation.metrics import PooledOverlap
from .slices import SliceSet
from .split import check_split, read_split, split_subjects, write_split

LOG_COLUMNS = ["epoch", "train_loss", "val_loss", "val_dice", "val_iou", "lr", "seconds"]


class RunFolder:
    """The run folder's files, and the rule that one run folder belongs to one config."""

    def __init__(self, config: TrainConfig) -> None:
        self.root = Path(config.run_dir or f"{config.output}.run")
        self.config_path = self.root / "run_config.json"
        self.split_path = self.root / "split.json"
        self.log_path = self.root / "log.csv"
        self.last = self.root / "checkpoints" / checkpoint.LAST
        self.best = self.root / "checkpoints" / checkpoint.BEST

    def claim(self, config: TrainConfig) -> bool:
        """Record the config, or check it matches the recorded one; True when resuming."""
        wanted = config.to_dict()
        if self.config_path.exists():
            saved = json.loads(self.config_path.read_text(encoding="utf-8"))
            # Fields added since the run started are read at their defaults, so older runs still resume.
            saved["config"] = {**TrainConfig().to_dict(), **saved.get("config", {})}
            if saved.get("config") != wanted:
                changed = sorted(k for k in wanted if saved.get("config", {}).get(k) != wanted[k])
                raise ValueError(f"{self.root}: holds a run with different settings ({', '.join(changed)}); "
                                 "rerun with the same settings to resume, or choose a new --run-dir")
            return self.last.exists()
        self.root.mkdir(parents=True, exist_ok=True)
        payload = {"config": wanted, "environment": environment(),
                   "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        self.config_path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        return False

    def trim_log(self, last_epoch: int) -> None:
        """Drop log rows of an epoch that was cut short by a kill (they have no checkpoint behind them)."""
        if not self.log_path.exists():
            return
        with open(self.log_path, newline="") as handle:
            rows = [r for r in csv.DictReader(handle) if int(r["epoch"]) <= last_epoch]
        self._write_log(rows, "w")

    def append_log(self, row: dict) -> None:
        self._write_log([row], "a")

    def _write_log(self, rows: list[dict], mode: str) -> None:
        new = mode == "w" or not self.log_path.exists()
        with open(self.log_path, mode, newline="") as handle:
            writer = csv.DictWriter(handle, LOG_COLUMNS)
            if new:
                writer.writeheader()
            writer.writerows(rows)


def _split(config: TrainConfig, run: RunFolder, subjects: list[str]) -> dict[str, list[str]]:
    if run.split_path.exists():
        split = json.loads(run.split_path.read_text(encoding="utf-8"))
        check_split(split, subjects, str(run.split_path))
        return split
    if config.split_file:
        return read_split(Path(config.split_file), subjects)
    return split_subjects(subjects, config.split_fractions, config.seed)


def _slice_scores(network: torch.nn.Module, data: SliceSet, loss_fn: torch.nn.Module,
                  batch_size: int, precision: str = "fp32",
                  channels_last: bool = False) -> tuple[float, float, float]:
    """Validation loss, Dice and IoU pooled over all validation slices (cheap; the engine's volumetric
    figures come at the end)."""
    network.eval()
    overlap, losses = PooledOverlap(), []
    device = _device_of(network)
    with torch.inference_mode():
        for start in range(0, len(data), batch_size):
            images = _as_input(data.images[start:start + batch_size].to(device).float(), channels_last)
            targets = data.targets[start:start + batch_size].to(images.device).float()
            with acceleration.autocast(device, precision):
                logits = network(images)
            logits = logits.float()
            losses.append(float(loss_fn(logits, targets)) * len(images))
            overlap.add(logits > 0, targets >= 0.5)
    return sum(losses) / len(data), overlap.dice, overlap.iou


def _parent_probabilities(network: torch.nn.Module, rehearsal, device, precision: str,
                           channels_last: bool, batch: int = 32) -> torch.Tensor:
    """The parent's sigmoid output on every rehearsal slice, in the targets' dtype: what it did before the
    fine-tune, to be kept (learning without forgetting). Runs once, before training changes the weights."""
    network.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(rehearsal), batch):
            images = rehearsal.images[start:start + batch].float().to(device)
            with acceleration.autocast(device, precision):
                logits = network(_as_input(images, channels_last))
            out.append(torch.sigmoid(logits.float()).cpu().to(rehearsal.targets.dtype))
    return torch.cat(out)


def _label_boundary(config: TrainConfig, model_config, say):
    """The label conversion ``config.label_boundary`` asks for, or None: with "network" and a model folder that
    sets an expert boundary convention, each training label grown to the network's own convention."""
    out = model_config.output
    if config.label_boundary != "network" or out.boundary_min_share <= 0.5 or out.boundary_psf_sigma <= 0:
        return None
    if model_config.input.spatial_dims == 3:  # a fine-tuned volumetric parent: not implemented, said so
        say("labels: used as drawn (the conversion to the network's convention is for slice-wise models)")
        return None
    say(f"labels: grown to the network's convention (the model's expert convention, lung share >= "
        f"{out.boundary_min_share} through a {out.boundary_psf_sigma}-voxel PSF, gives them back)", flush=True)

    def convert(label: sitk.Image) -> sitk.Image:
        array = sitk.GetArrayViewFromImage(label)
        grown = sitk.GetImageFromArray(physical_from_expert(array, out.boundary_min_share, out.boundary_psf_sigma))
        grown.CopyInformation(label)
        return sitk.Cast(grown, label.GetPixelID())

    return convert


def _pull_towards(weights: list[torch.Tensor], anchor: list[torch.Tensor], rate: float) -> None:
    """Each weight a ``rate`` share of the way back to its anchor (decoupled from Adam's scaling, as AdamW
    decouples weight decay: a penalty in the loss would be rescaled away by Adam's per-weight step size)."""
    with torch.no_grad():
        for weight, start in zip(weights, anchor):
            weight.lerp_(start, min(rate, 1.0))


class _WeightAverage:
    """An exponential moving average of a network's weights and batch-norm statistics, in a copy of it."""

    def __init__(self, network: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.network = copy.deepcopy(network).requires_grad_(False)

    def update(self, network: torch.nn.Module) -> None:
        with torch.no_grad():
            for mine, current in zip(self.network.state_dict().values(), network.state_dict().values()):
                if mine.is_floating_point():
                    mine.lerp_(current, 1.0 - self.decay)
                else:  # batch counters
                    mine.copy_(current)


def _freeze_batchnorm_statistics(network: torch.nn.Module) -> None:
    """Batch-norm layers normalise with the parent's running statistics and stop updating them; their scale
    and shift still learn. A fine-tune's batches (half new domain, half rehearsal) have statistics of neither
    domain, and a few hundred steps at momentum 0.1 would replace the parent's entirely."""
    for module in network.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()


def _warm_up(optimiser: torch.optim.Optimizer, planned: list[float], step: int, warmup_steps: int) -> None:
    """The planned learning rates scaled by (step + 1) / warmup_steps while ``step`` < warmup_steps."""
    if step < warmup_steps:
        for group, lr in zip(optimiser.param_groups, planned):
            group["lr"] = lr * (step + 1) / warmup_steps
    elif warmup_steps:
        for group, lr in zip(optimiser.param_groups, planned):
            group["lr"] = lr


def _with_rehearsal(images: torch.Tensor, targets: torch.Tensor, rehearsal, config: TrainConfig, epoch: int,
                    step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch with its last ``rehearsal_fraction`` replaced by seeded draws from the rehearsal slices, so
    every step sees both the new cases and what the parent knew, whatever their slice counts."""
    count = min(len(images) - 1, round(len(images) * config.rehearsal_fraction))
    if count <= 0:
        return images, targets
    generator = torch.Generator().manual_seed(config.seed * 1_000_033 + epoch * 7_919 + step)
    drawn = torch.randint(len(rehearsal), (count,), generator=generator)
    keep = len(images) - count
    return (torch.cat([images[:keep], rehearsal.images[drawn].float()]),
            torch.cat([targets[:keep], rehearsal.targets[drawn].float()]))


def _device_of(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


def _as_input(images: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """Slices in the network's memory layout (channels_last for 2D networks on CPU and CUDA)."""
    if channels_last:
        return images.contiguous(memory_format=torch.channels_last)
    return images


def _progress(total: int, enabled: bool, description: str):
    if enabled and sys.stderr.isatty():
        from tqdm import tqdm
        return tqdm(total=total, desc=description, leave=False, unit="batch")
    return None


def train(config: TrainConfig, finish_now: bool = False) -> dict | None:
    """Run or resume the recipe; rank 0 writes the model folder and returns its config as a dict.

    ``finish_now``: write the model folder from the run's best checkpoint at once, without loading the data
    (minutes for a large folder) or training further: for a run stopped early for time.
    """
    if config.problems():
        raise ValueError("; ".join(config.problems()))
    output = Path(config.output)
    if output.exists():
        raise FileExistsError(f"{output}: already exists; models are versioned, choose a new folder")
    context = distributed.start(resolve_device(config.device))
    device = distributed.device_for(resolve_device(config.device), context)
    try:
        return _train(config, output, context, device, finish_now)
    finally:
        distributed.stop(context)


def _train(config: TrainConfig, output: Path, context: distributed.Context,
           device: torch.device, finish_now: bool = False) -> dict | None:
    say = print if context.is_main else (lambda *a, **k: None)
    folder = read_training_folder(config.data)
    cases = select_cases(folder, config.reviewed_only, config.latest_only)
    subjects = sorted({c.subject for c in cases})
    run = RunFolder(config)
    resuming = run.claim(config) if context.is_main else run.last.exists()
    split = _split(config, run, subjects)
    if context.is_main and not run.split_path.exists():
        write_split(run.split_path, split)
    distributed.barrier(context)

    model_config, init_state, parent = model_config_for(config)
    if finish_now:
        return _finish_now(config, run, model_config, folder, cases, split, parent) if context.is_main else None
    train_cases, val_cases = cases_of(cases, split["train"]), cases_of(cases, split["val"])
    test_cases = cases_of(cases, split.get("test", []))
    volumetric = model_config.input.spatial_dims == 3  # 3D: whole volumes, windows around slices (volumes3d.py)
    # slices are held in float16 (half the memory; a 2.5D set was killed for memory in float32) and each
    # batch goes back to float32 before it reaches the network
    load = volumes3d.load_volumes if volumetric else functools.partial(load_slices, storage=torch.float16)
    convert = _label_boundary(config, model_config, say)
    load_own = load if convert is None else functools.partial(load, label_transform=convert)
    train_set = load_own(folder, train_cases, model_config.input, config.keep_empty_fraction, config.seed)
    if val_cases:
        val_set = load_own(folder, val_cases, model_config.input, config.keep_empty_fraction, config.seed + 1)
    else:  # one subject (a single corrected case): nothing can be held out
        say("warning: no validation subject; validation scores the training slices, so early stopping "
            "only detects a plateau", flush=True)
        val_set = train_set
    rehearsal = None
    if config.rehearsal_fraction > 0:  # what the parent knew, mixed into every batch (never validated on)
        parts = []
        for number, path in enumerate(config.rehearsal_data):
            rehearsal_folder = read_training_folder(path)
            parts.append(load(rehearsal_folder, list(rehearsal_folder.cases), model_config.input,
                              config.keep_empty_fraction, config.seed + 2 + number))
        rehearsal = SliceSet.concat(parts)
        say(f"rehearsal: {len(rehearsal)} slices from {len(parts)} folder(s), "
            f"{config.rehearsal_fraction:.0%} of every batch", flush=True)
    say(f"data: {len(train_cases)} training / {len(val_cases)} validation / {len(test_cases)} test cases "
        f"({len(split['train'])}/{len(split['val'])}/{len(split.get('test', []))} subjects); "
        f"{len(train_set)} training and {len(val_set)} validation slices", flush=True)
    if context.is_main:  # what --finish-now needs without loading the data again
        (run.root / "data.json").write_text(json.dumps({"train_slices": len(train_set),
                                                        "val_slices": len(val_set)}) + "\n", encoding="utf-8")

    torch.manual_seed(config.seed)
    network = build_network(model_config)
    if init_state is not None:
        network.load_state_dict(init_state, strict=True)
    for module in network.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = config.batchnorm_momentum
    if config.freeze_encoder:
        encoder = getattr(network, "encoder", None)
        if encoder is None:
            raise ValueError(f"{model_config.network.architecture} has no .encoder to freeze")
        encoder.requires_grad_(False)
    precision = acceleration.resolve_training_precision(config.precision, device)
    network.to(device)
    channels_last = acceleration.uses_channels_last(device, model_config.input.spatial_dims)
    if channels_last:
        network.to(memory_format=torch.channels_last)  # oneDNN's and cuDNN's fast kernels want NHWC
    say(f"device {device}, {precision} autocast", flush=True)
    if rehearsal is not None and config.rehearsal_targets == "parent":  # the checkpoint loads below
        rehearsal.targets = _parent_probabilities(network, rehearsal, device, precision, channels_last)
        say(f"rehearsal targets: the parent's probabilities on its {len(rehearsal)} slices", flush=True)
    trainable = [p for p in network.parameters() if p.requires_grad]
    # the parent's weights (before any resumed state loads below), for anchor_decay
    anchor = [p.detach().clone() for p in trainable] if config.anchor_decay > 0 else None
    optimiser = torch.optim.Adam(trainable, lr=config.learning_rate, eps=config.adam_eps)
    averaged = _WeightAverage(network, config.weight_average) if config.weight_average > 0 else None
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimiser, mode="max", factor=0.5,
                                                           patience=config.lr_patience)
    # Dice pooled over the batch (batch=True): a lung-free slice has no Dice of its own, and per-slice Dice
    # would push every such slice's loss towards 1 and drown the lungs' gradient.
    loss_fn = DiceCELoss(sigmoid=True, batch=True)
    first_epoch, best_dice, stale, spent = 1, -1.0, 0, 0.0
    if resuming:
        state = checkpoint.load(run.last)
        network.load_state_dict(state["model"])
        if averaged is not None and "average" in state:
            averaged.network.load_state_dict(state["average"])
        optimiser.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        first_epoch, best_dice = state["epoch"] + 1, state["best_dice"]
        stale, spent = state["stale"], state["seconds"]
        if context.is_main:
            run.trim_log(state["epoch"])
        say(f"resuming {run.root} after epoch {state['epoch']} (best validation Dice {best_dice:.4f})",
            flush=True)
    # Shallower encoders keep their unused deeper blocks, so DDP must tolerate parameters without grads.
    model = (torch.nn.parallel.DistributedDataParallel(network, find_unused_parameters=True)
             if context.active else network)
    augmenter = SliceAugmenter(config.augment, volumes3d.sample_size(model_config.input), config.seed)
    scores = volumes3d.volume_scores if volumetric else functools.partial(_slice_scores, precision=precision,
                                                                             channels_last=channels_last)

    epoch = first_epoch - 1
    started = time.perf_counter()  # the time budget counts training, not reading the data (minutes for many cases)
    out_of_time = bool(config.max_minutes and spent > 60 * config.max_minutes)
    remaining = range(0) if stale >= config.patience or out_of_time else range(first_epoch, config.epochs + 1)
    for epoch in remaining:
        augmenter.reseed(config.seed * 1_000_003 + epoch * 101 + context.rank)
        order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(config.seed * 7919 + epoch))
        shard = order[context.rank::context.world_size]
        steps = config.steps_per_epoch or max(1, math.ceil(len(shard) / config.batch_size))
        model.train()
        if config.freeze_encoder:
            network.encoder.eval()  # frozen means frozen: batch-norm statistics included
        if config.freeze_batchnorm:
            _freeze_batchnorm_statistics(network)
        losses = []
        bar = _progress(steps, context.is_main, f"epoch {epoch}")
        planned = [group["lr"] for group in optimiser.param_groups]  # the scheduler's; warm-up scales it
        for step in range(steps):
            _warm_up(optimiser, planned, (epoch - 1) * steps + step, config.warmup_steps)
            index = shard[(torch.arange(config.batch_size) + step * config.batch_size) % len(shard)]
            images, targets = train_set.images[index].float(), train_set.targets[index].float()
            if rehearsal is not None:
                images, targets = _with_rehearsal(images, targets, rehearsal, config, epoch, step)
            images, targets = augmenter(images, targets)
            with acceleration.autocast(device, precision):
                logits = model(_as_input(images.to(device), channels_last))
            loss = loss_fn(logits.float(), targets.to(device))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            if anchor is not None:
                _pull_towards(trainable, anchor, optimiser.param_groups[0]["lr"] * config.anchor_decay)
            if averaged is not None:
                averaged.update(network)
            losses.append(loss.item())
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{np.mean(losses):.4f}")
        if bar is not None:
            bar.close()
        for group, lr in zip(optimiser.param_groups, planned):
            group["lr"] = lr
        train_loss = distributed.mean_over_ranks(float(np.mean(losses)), context)
        kept = averaged.network if averaged is not None else network  # what is scored, saved and written
        val_loss, val_dice, val_iou = scores(kept, val_set, loss_fn, 32)
        scheduler.step(val_dice)
        seconds = spent + time.perf_counter() - started
        improved = val_dice > best_dice
        best_dice, stale = (val_dice, 0) if improved else (best_dice, stale + 1)
        lr = optimiser.param_groups[0]["lr"]
        if context.is_main:
            run.append_log({"epoch": epoch, "train_loss": f"{train_loss:.5f}", "val_loss": f"{val_loss:.5f}",
                             "val_dice": f"{val_dice:.5f}", "val_iou": f"{val_iou:.5f}", "lr": f"{lr:.3g}",
                             "seconds": f"{seconds:.1f}"})
            if improved:
                checkpoint.save(run.best, {"model": checkpoint.cpu_state(kept), "epoch": epoch,
                                           "val_dice": val_dice})
            last = {} if averaged is None else {"average": checkpoint.cpu_state(averaged.network)}
            checkpoint.save(run.last, {**last, "model": checkpoint.cpu_state(network),
                                       "optimizer": optimiser.state_dict(),
                                       "scheduler": scheduler.state_dict(), "epoch": epoch,
                                       "best_dice": best_dice, "stale": stale, "seconds": seconds})
        say(f"epoch {epoch:3d}  loss {train_loss:.4f}  val loss {val_loss:.4f}  val Dice {val_dice:.4f}  "
            f"IoU {val_iou:.4f}  lr {lr:.1e}  {seconds / 60:.1f} min{'  *' if improved else ''}", flush=True)
        stop = stale >= config.patience or bool(config.max_minutes and seconds > 60 * config.max_minutes)
        if distributed.broadcast_flag(stop, context):
            say("early stop: no validation improvement for "
                f"{stale} epochs" if stale >= config.patience else f"time limit of {config.max_minutes} min",
                flush=True)
            break
    distributed.barrier(context)
    if not context.is_main:
        return None
    best = checkpoint.load(run.best)
    network.load_state_dict(best["model"])
    return finish_model(config, model_config, network.cpu(), folder, cases, split, parent, run.root,
                        epochs_run=epoch, best_epoch=best["epoch"], best_dice=best["val_dice"],
                        train_slices=len(train_set), minutes=(spent + time.perf_counter() - started) / 60)


def _finish_now(config: TrainConfig, run: RunFolder, model_config, folder, cases, split, parent) -> dict:
    if not (run.best.exists() and run.last.exists()):
        raise ValueError(f"{run.root}: no checkpoints to finish from; train first")
    data_file = run.root / "data.json"
    if not data_file.exists():
        raise ValueError(f"{data_file}: missing (the run's slice count); resume the run once to write it")
    data = json.loads(data_file.read_text(encoding="utf-8"))
    last, best = checkpoint.load(run.last), checkpoint.load(run.best)
    network = build_network(model_config)
    network.load_state_dict(best["model"])
    return finish_model(config, model_config, network, folder, cases, split, parent, run.root,
                        epochs_run=last["epoch"], best_epoch=best["epoch"], best_dice=best["val_dice"],
                        train_slices=int(data["train_slices"]), minutes=last["seconds"] / 60)


def main(argv: list[str] | None = None) -> int:
    from .train_cli import parse

    def body() -> None:
        config, finish_now = parse(argv)
        result = train(config, finish_now)
        if result is not None:
            print(f"wrote {config.output} (version {result['version']})")

    return exit_status(body, also=(FileExistsError, ValueError),
                       interrupted="interrupted: rerun the same command to resume from the last checkpoint")


if __name__ == "__main__":
    sys.exit(main())
