"""Train the click-refinement network: the segmentation model's U-Net widened with guidance channels.

    python -m neonatal_lung_training.interactive.train --config Training/configs/refine-model-1.0.0.yaml

Recipe: start from a segmentation model folder (its weights on the image channel, zeros on the new mask
and click channels, so step 0 is exactly the parent), then learn from slices with simulated clicks
(``simulate.training_clicks``) placed on the errors of three kinds of current mask: none at all (refining
from an empty mask), a perturbed reference (eroded, dilated, blobs cut or added) and the parent model's own
prediction (the errors it really makes). The target is always the reference lung mask. Same loss, optimiser
and augmentation as segmentation training; best and last checkpoints; a rerun resumes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from monai.losses import DiceCELoss

from NeonatalLungSegLib.inference import acceleration
from NeonatalLungSegLib.correction.clicks import render_clicks
from NeonatalLungSegLib.errors import exit_status
from NeonatalLungSegLib.models.model_folder import ModelConfig, load_state_dict, read_config, write_model_folder
from NeonatalLungSegLib.models.network import build_network
from NeonatalLungSegLib.dataset.training_folder import read_training_folder

from ..training import checkpoint
from ..training.augment import AugmentConfig, SliceAugmenter
from ..training.dataset import cases_of, load_slices, select_cases
from ..evaluation.metrics import PooledOverlap
from ..training.model_card import write_model_card
from ..training.split import read_split
from .simulate import perturbed_mask, rim_mask, training_clicks

GUIDANCE = ("mask", "positive_clicks", "negative_clicks")


@dataclass
class RefineTrainConfig:
    data: str = ""
    split_file: str = ""
    parent_model: str = ""            # the segmentation model folder to widen
    output: str = ""
    run_dir: str = ""
    name: str = "neonatal-lung-refine-r50"
    version: str = "1.0.0"
    description: str = "click refinement: U-Net / ResNet-50 with mask and click channels"
    data_description: str = ""
    max_train_cases: int = 300        # cases sampled (seeded) from the training subjects
    max_val_cases: int = 30
    keep_empty_fraction: float = 0.1
    empty_fraction: float = 0.25      # share of samples refined from an empty mask
    parent_fraction: float = 0.35     # ... from the parent model's prediction (the rest: perturbed reference)
    rim_fraction: float = 0.0         # ... from a reference too generous along a stretch of border (rim_mask)
    max_clicks: int = 4
    batch_size: int = 12
    steps_per_epoch: int = 40
    epochs: int = 100
    patience: int = 6
    learning_rate: float = 3e-4
    lr_patience: int = 2              # epochs without a better validation Dice before the rate is halved
    max_minutes: float = 0.0
    seed: int = 0
    init_model: str = ""              # a click-refinement model folder to continue from (else: widen the parent)
    click_loss_weight: float = 0.0    # weight of click_focus_loss beside BCE + Dice
    precision: str = "auto"           # training autocast: auto (bf16 where the hardware is fast at it) | fp32 | bf16
    click_sigma: float = 2.5
    click_depth_mm: float = 6.0
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    @staticmethod
    def read(path: Path) -> RefineTrainConfig:
        import yaml

        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        known = {f.name for f in dataclasses.fields(RefineTrainConfig)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{path}: unknown field(s) {', '.join(unknown)}")
        augment = data.pop("augment", {}) or {}
        for key in ("elastic_magnitude", "gamma_range"):
            if key in augment:
                augment[key] = tuple(augment[key])
        config = RefineTrainConfig(**data, augment=AugmentConfig(**augment))
        shares = (config.empty_fraction, config.parent_fraction, config.rim_fraction)
        if min(shares) < 0 or sum(shares) > 1:
            raise ValueError(f"{path}: empty_fraction, parent_fraction and rim_fraction must be >= 0 and sum to "
                             f"at most 1 (the rest are perturbed references), got {shares}")
        return config


def refine_config_for(parent: ModelConfig, config: RefineTrainConfig) -> ModelConfig:
    """The child model.json: the parent's network and preprocessing, plus the guidance channels."""
    inp = dataclasses.replace(parent.input, guidance=GUIDANCE, click_sigma=config.click_sigma,
                              click_depth_mm=config.click_depth_mm)
    return dataclasses.replace(parent, name=config.name, version=config.version, parent_version=parent.version,
                               description=config.description, input=inp,
                               training={"parent": {"name": parent.name, "version": parent.version}},
                               validation={}, weights_sha256="")


def widen_for_guidance(state: dict[str, torch.Tensor], child: ModelConfig) -> dict[str, torch.Tensor]:
    """The parent's weights with zero weights for the new input channels: the child starts as the parent."""
    shapes = {k: v.shape for k, v in build_network(child).state_dict().items()}
    widened = dict(state)
    for name, tensor in state.items():
        target = shapes[name]
        if target == tensor.shape:
            continue
        if tensor.dim() != 4 or target[1] != child.input.network_channels or target[0] != tensor.shape[0]:
            raise ValueError(f"cannot widen {name} from {tuple(tensor.shape)} to {tuple(target)}")
        grown = torch.zeros(target, dtype=tensor.dtype)
        grown[:, :tensor.shape[1]] = tensor
        widened[name] = grown
    return widened


def parent_predictions(network: torch.nn.Module, images: torch.Tensor, batch: int = 32) -> torch.Tensor:
    """(N, 1, H, W) parent lung probability on the training slices, computed once."""
    out = torch.empty((len(images), 1, *images.shape[-2:]), dtype=torch.float32)
    network.eval()
    with torch.inference_mode():
        for start in range(0, len(images), batch):
            out[start:start + batch] = torch.sigmoid(network(images[start:start + batch]))
    return out


def guidance_batch(targets: np.ndarray, parent: np.ndarray, config: RefineTrainConfig,
                   rng: np.random.Generator, images: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(B, 3, H, W) mask + positive + negative click maps for a batch of (B, H, W) targets, and (B, H, W)
    the error region each slice's last click points at (all False where a slice has no click).

    ``images`` (B, H, W) are needed for ``config.rim_fraction``: the rims grow into partial volume."""
    if config.rim_fraction and images is None:
        raise ValueError("rim_fraction needs the slices' images")
    out = np.zeros((len(targets), 3, *targets.shape[1:]), dtype=np.float32)
    focus = np.zeros(targets.shape, dtype=bool)
    for n, target in enumerate(targets >= 0.5):
        draw = rng.random()
        if draw < config.empty_fraction:
            start = np.zeros_like(target)
        elif draw < config.empty_fraction + config.parent_fraction:
            start = parent[n] >= 0.5
        elif draw < config.empty_fraction + config.parent_fraction + config.rim_fraction:
            start = rim_mask(target, images[n], rng)
        else:
            start = perturbed_mask(target, rng)
        mask, plan = training_clicks(target, start, rng, config.max_clicks)
        out[n, 0] = mask
        if plan.focus is not None:
            focus[n] = plan.focus
        for channel, sign in ((1, True), (2, False)):
            chosen = [i for i, s in enumerate(plan.positive) if s == sign]
            out[n, channel] = render_clicks(target.shape, [plan.points[i] for i in chosen],
                                            [plan.amplitudes[i] for i in chosen], config.click_sigma)
    return out, focus


def click_focus_loss(logits: torch.Tensor, targets: torch.Tensor, focus: torch.Tensor) -> torch.Tensor:
    """BCE of the pixels of the error each slice's last click points at, averaged over all pixels: with
    ``click_loss_weight`` w, those pixels weigh 1 + w in the BCE.

    Why: the whole-slice loss is dominated by the pixels the mask channel already has right, so a network
    that copies its input mask scores well and learns to ignore the clicks (refine 1.0.0 did: a negative
    click moved its lung probability from 0.87 to 0.83). Averaging over the clicked pixels alone instead
    (tried first) gives a few-pixel error the weight of a whole slice; at lr 3e-4 that wrecked the network
    within 40 steps (validation Dice with clicks 0.93 -> 0.82), while this form with w = 20 raised the share
    of clicked-error pixels put right from 0.77 to 0.85 with Dice unchanged (0.920 vs 0.917; 60 cases).
    """
    per_pixel = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), targets, reduction="none")
    return (per_pixel * focus.float()).mean()


def initial_state(config: RefineTrainConfig, child: ModelConfig,
                  parent_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The weights training starts from: a click-refinement model's own (``init_model``, checked to be one
    with the same network and guidance) or the parent's, widened with zero weights for the guidance."""
    if not config.init_model:
        return widen_for_guidance(parent_state, child)
    folder = Path(config.init_model)
    start = read_config(folder)
    if tuple(start.input.guidance) != GUIDANCE or start.network != child.network:
        raise ValueError(f"init_model {folder}: not a click-refinement model of this network "
                         f"(guidance {list(start.input.guidance)}, network {start.network.architecture})")
    return load_state_dict(folder, start)


def _sample(cases: list, limit: int, seed: int) -> list:
    if len(cases) <= limit:
        return cases
    picked = np.random.default_rng(seed).choice(len(cases), size=limit, replace=False)
    return [cases[i] for i in sorted(picked)]


def train(config: RefineTrainConfig, finish_only: bool = False, checkpoint_name: str = "best") -> Path:
    """Train (resuming a run folder's last checkpoint), then write the model folder from the best one.

    ``finish_only``: write the model folder from the run's ``checkpoint_name`` checkpoint (``best``: highest
    validation Dice; ``last``: the end of training) now, without loading slices or training further; the
    slice count comes from the run's data.json. ``last`` is for when slice Dice is not what matters: it
    rewards copying the input mask, while what a click fixes is judged by NoC on held-out volumes.
    """
    output = Path(config.output)
    if output.exists():
        raise FileExistsError(f"{output}: already exists; models are versioned, choose a new folder")
    run = Path(config.run_dir or f"{config.output}.run")
    run.mkdir(parents=True, exist_ok=True)
    if not (run / "run_config.json").exists():  # the settings the run started with; a resume keeps them
        (run / "run_config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2, default=str) + "\n")
    folder = read_training_folder(config.data)
    cases = select_cases(folder, False, False)
    split = read_split(Path(config.split_file), sorted({c.subject for c in cases}))
    train_cases = _sample(cases_of(cases, split["train"]), config.max_train_cases, config.seed)
    val_cases = _sample(cases_of(cases, split["val"]), config.max_val_cases, config.seed + 1)
    parent_config = read_config(Path(config.parent_model))
    child = refine_config_for(parent_config, config)
    best_path = run / "checkpoints" / checkpoint.BEST
    if finish_only:
        data = json.loads((run / "data.json").read_text(encoding="utf-8"))
        state = checkpoint.load(run / "checkpoints" / checkpoint.LAST)
        chosen = best_path if checkpoint_name == "best" else run / "checkpoints" / checkpoint.LAST
        return _finish(config, child, chosen, state["epoch"], train_cases, val_cases, data["train_slices"])
    started = time.perf_counter()
    train_set = load_slices(folder, train_cases, child.input, config.keep_empty_fraction, config.seed)
    val_set = load_slices(folder, val_cases, child.input, config.keep_empty_fraction, config.seed + 1)
    torch.manual_seed(config.seed)
    parent_state = load_state_dict(Path(config.parent_model), parent_config)
    parent_net = build_network(parent_config)
    parent_net.load_state_dict(parent_state)
    train_parent = parent_predictions(parent_net, train_set.images)
    val_parent = parent_predictions(parent_net, val_set.images)
    del parent_net
    (run / "data.json").write_text(json.dumps({"train_cases": len(train_cases), "val_cases": len(val_cases),
                                               "train_slices": len(train_set), "val_slices": len(val_set)}) + "\n")
    print(f"data: {len(train_cases)} training / {len(val_cases)} validation cases, {len(train_set)} / "
          f"{len(val_set)} slices, parent predictions done in {(time.perf_counter() - started) / 60:.1f} min",
          flush=True)
    # Fixed validation guidance: the same simulated clicks every epoch, so epochs are comparable.
    val_guidance = torch.from_numpy(guidance_batch(val_set.targets[:, 0].numpy(), val_parent[:, 0].numpy(), config,
                                                   np.random.default_rng(12345), val_set.images[:, 0].numpy())[0])
    network = build_network(child)
    network.load_state_dict(initial_state(config, child, parent_state), strict=True)
    device = torch.device("cpu")
    precision = acceleration.resolve_training_precision(config.precision, device)
    print(f"{precision} autocast; starting from {config.init_model or 'the widened parent'}", flush=True)
    optimiser = torch.optim.Adam(network.parameters(), lr=config.learning_rate)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimiser, mode="max", factor=0.5,
                                                           patience=config.lr_patience)
    loss_fn = DiceCELoss(sigmoid=True, batch=True)
    last = run / "checkpoints" / checkpoint.LAST
    first, best, stale, spent = 1, -1.0, 0, 0.0
    if last.exists():
        state = checkpoint.load(last)
        network.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        first, best, stale, spent = state["epoch"] + 1, state["best_dice"], state["stale"], state["seconds"]
        print(f"resuming after epoch {state['epoch']} (best validation Dice {best:.4f})", flush=True)
    augmenter = SliceAugmenter(config.augment, tuple(child.input.in_plane_size), config.seed)
    loop_started = time.perf_counter()
    epoch = first - 1
    for epoch in range(first, config.epochs + 1):
        if stale >= config.patience or (config.max_minutes and spent > 60 * config.max_minutes):
            break
        augmenter.reseed(config.seed * 1_000_003 + epoch * 101)
        rng = np.random.default_rng([config.seed, epoch])
        network.train()
        losses = []
        for _ in range(config.steps_per_epoch):
            index = torch.from_numpy(rng.integers(0, len(train_set), config.batch_size))
            images, both = augmenter(train_set.images[index],
                                     torch.cat([train_set.targets[index], train_parent[index]], dim=1))
            targets = (both[:, :1] >= 0.5).float()
            guidance, focus = guidance_batch(targets[:, 0].numpy(), both[:, 1].numpy(), config, rng,
                                             images[:, 0].float().numpy())
            with acceleration.autocast(device, precision):
                logits = network(torch.cat([images, torch.from_numpy(guidance)], dim=1))
            loss = loss_fn(logits.float(), targets)
            if config.click_loss_weight:
                loss = loss + config.click_loss_weight * click_focus_loss(logits, targets,
                                                                          torch.from_numpy(focus)[:, None])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
        dice = _validate(network, val_set.images, val_guidance, val_set.targets, device, precision)
        scheduler.step(dice)
        spent_now = spent + time.perf_counter() - loop_started
        improved = dice > best
        best, stale = (dice, 0) if improved else (best, stale + 1)
        if improved:
            checkpoint.save(best_path, {"model": checkpoint.cpu_state(network), "epoch": epoch, "val_dice": dice})
        checkpoint.save(last, {"model": checkpoint.cpu_state(network), "optimizer": optimiser.state_dict(),
                               "scheduler": scheduler.state_dict(), "epoch": epoch, "val_dice": dice,
                               "best_dice": best,
                               "stale": stale, "seconds": spent_now})
        with open(run / "log.csv", "a", encoding="utf-8") as log:
            log.write(f"{epoch},{np.mean(losses):.5f},{dice:.5f},{optimiser.param_groups[0]['lr']:.3g},"
                      f"{spent_now:.1f}\n")
        print(f"epoch {epoch:3d}  loss {np.mean(losses):.4f}  val Dice (with clicks) {dice:.4f}  "
              f"{spent_now / 60:.1f} min{'  *' if improved else ''}", flush=True)
        spent, loop_started = spent_now, time.perf_counter()
    return _finish(config, child, best_path, epoch, train_cases, val_cases, len(train_set))


def _validate(network: torch.nn.Module, images: torch.Tensor, guidance: torch.Tensor,
              targets: torch.Tensor, device: torch.device, precision: str) -> float:
    network.eval()
    overlap = PooledOverlap()
    with torch.inference_mode(), acceleration.autocast(device, precision):
        for start in range(0, len(images), 32):
            logits = network(torch.cat([images[start:start + 32], guidance[start:start + 32]], dim=1))
            overlap.add(logits > 0, targets[start:start + 32] >= 0.5)
    return float(overlap.dice)


def _checkpoint_val_dice(state: dict, log: Path) -> float:
    """The validation Dice of a checkpoint's epoch: stored in it, or (older last checkpoints) in log.csv."""
    if "val_dice" in state:
        return float(state["val_dice"])
    for row in log.read_text(encoding="utf-8").splitlines():
        fields = row.split(",")
        if fields[0] == str(state["epoch"]):
            return float(fields[2])
    raise ValueError(f"{log}: no row for epoch {state['epoch']}")


def _finish(config: RefineTrainConfig, child: ModelConfig, best_path: Path, epochs: int, train_cases: list,
            val_cases: list, train_slices: int) -> Path:
    best = checkpoint.load(best_path)
    val_dice = _checkpoint_val_dice(best, best_path.parent.parent / "log.csv")
    start = read_config(Path(config.init_model)) if config.init_model else None
    training = {**child.training, "data": config.data_description,
                "training_cases": len(train_cases), "validation_cases": len(val_cases),
                "training_slices": train_slices, "epochs_run": epochs, "best_epoch": best["epoch"],
                "checkpoint": "best validation Dice" if best_path.name == checkpoint.BEST else "end of training",
                "recipe": (f"simulated clicks (<= {config.max_clicks} per slice, iterative protocol) on an empty "
                           f"mask ({config.empty_fraction:.0%}), the parent's prediction "
                           f"({config.parent_fraction:.0%}), "
                           + (f"the reference too generous along a stretch of border, into partial volume "
                              f"({config.rim_fraction:.0%}), " if config.rim_fraction else "")
                           + "or a perturbed reference; BCE + Dice"
                           + (f" + {config.click_loss_weight:g} x BCE on the clicked error region"
                              if config.click_loss_weight else "")
                           + f", Adam lr {config.learning_rate:g}, poster augmentation"
                           + (f"; continued from {start.name} {start.version}" if start else ""))}
    validation = {"slice_dice_with_clicks": round(val_dice, 4),
                  "note": "pooled Dice on validation slices with fixed simulated clicks; volume NoC figures "
                          "are in docs/reports/click-refinement/"}
    model = dataclasses.replace(child, training=training, validation=validation)
    write_model_folder(Path(config.output), model, best["model"], dtype="float16")
    write_model_card(Path(config.output))
    return Path(config.output)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m neonatal_lung_training.interactive.train",
                                     description="Train the click-refinement network from a segmentation model.")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--finish-now", action="store_true",
                        help="write the model folder from the run's best checkpoint without training further")
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best",
                        help="with --finish-now: the best validation Dice (default) or the end of training")
    args = parser.parse_args(argv)

    def body() -> None:
        if args.checkpoint != "best" and not args.finish_now:
            raise ValueError("--checkpoint last applies to --finish-now only")
        print(f"wrote {train(RefineTrainConfig.read(args.config), args.finish_now, args.checkpoint)}")

    return exit_status(body, also=(FileExistsError, ValueError),
                       interrupted="interrupted: rerun the same command to resume from the last checkpoint")


if __name__ == "__main__":
    sys.exit(main())
