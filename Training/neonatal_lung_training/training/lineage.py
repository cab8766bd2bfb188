"""Where a model comes from: a fresh config or a parent model folder, and the lineage written into the child.

Fine-tuning keeps the parent's network and preprocessing (a child that preprocesses differently is a
different model, not a better version of the same one) with two deliberate exceptions a config must ask
for: another in-plane policy (the weights are unchanged, only the framing of the slice), and more input
channels (2D -> 2.5D), where the parent's first convolution becomes the centre channel's and the
neighbours' weights start at zero, so the child starts out computing exactly what its parent did. The child
records its parent's version
and weights hash, the training folder's manifest hash and how much data it saw, so any model folder can be
traced back to the exact cases that made it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from NeonatalLungSegLib.inference.engine import Segmenter
from NeonatalLungSegLib.models.model_folder import (InputConfig, ModelConfig, NetworkConfig, load_state_dict,
                                             read_config, write_model_folder)
from NeonatalLungSegLib.dataset.training_folder import CaseRecord, TrainingFolder, read_training_folder

from .augment import AugmentConfig
from .config import TrainConfig
from ..evaluation.evaluate import dice, evaluate_case, summarise
from .model_card import write_model_card
from .volumes3d import network_args


def recipe(augment: AugmentConfig) -> str:
    """The training recipe in words, from the run's own settings: a model card must not describe a recipe
    the run did not use."""
    return ("MONAI DiceCELoss (BCE + Dice), Adam, ReduceLROnPlateau, early stopping on validation Dice; "
            + augment.describe())


def bump_minor(version: str) -> str:
    parts = (version.split(".") + ["0", "0"])[:3]
    try:
        return f"{int(parts[0])}.{int(parts[1]) + 1}.0"
    except ValueError:
        return f"{version}.1"


def widen_input_channels(state: dict[str, torch.Tensor], child: ModelConfig,
                         channels: int) -> dict[str, torch.Tensor]:
    """The parent's weights for a network with ``channels`` input slices: each weight whose input-channel
    dimension grew gets the parent's values on the centre slice and zeros on the neighbours."""
    from NeonatalLungSegLib.models.network import build_network

    shapes = {name: tensor.shape for name, tensor in build_network(child).state_dict().items()}
    widened = dict(state)
    for name, tensor in state.items():
        target = shapes.get(name)
        if target is None or target == tensor.shape:
            continue
        if tensor.dim() < 2 or tensor.shape[1] != 1 or target[1] != channels \
                or (target[0],) + tuple(target[2:]) != (tensor.shape[0],) + tuple(tensor.shape[2:]):
            raise ValueError(f"cannot widen {name} from {tuple(tensor.shape)} to {tuple(target)}")
        grown = torch.zeros(target, dtype=tensor.dtype)
        grown[:, channels // 2] = tensor[:, 0]
        widened[name] = grown
    return widened


def model_config_for(config: TrainConfig) -> tuple[ModelConfig, dict | None, ModelConfig | None]:
    """The child's config, the parent's weights (or None) and the parent's config (or None)."""
    if config.init_model:
        parent = read_config(Path(config.init_model))
        state = load_state_dict(Path(config.init_model), parent)  # checksum verified
        version = config.version or bump_minor(parent.version)
        if version == parent.version:
            raise ValueError(f"version {version} is the parent's own; a fine-tuned model needs a new version")
        inp = parent.input
        if config.in_plane_policy and config.in_plane_policy != inp.in_plane_policy:
            inp = dataclasses.replace(inp, in_plane_policy=config.in_plane_policy)  # same weights, new framing
        if config.channels > 1 and config.channels != inp.channels:
            if inp.spatial_dims != 2 or inp.channels != 1:
                raise ValueError(f"channels {config.channels}: only a 2D single-channel parent can be widened "
                                 f"to 2.5D, the parent has {inp.channels} channel(s)")
            inp = dataclasses.replace(inp, channels=config.channels)
            state = widen_input_channels(state, dataclasses.replace(parent, input=inp), config.channels)
        child = dataclasses.replace(parent, name=config.name or parent.name, version=version,
                                    parent_version=parent.version, description=config.description,
                                    input=inp, training={}, validation={}, weights_sha256="",
                                    gate={})  # one network; ``improve`` gives it a gate of its own
        return child, state, parent
    if config.spatial_dims == 3:  # a MONAI 3D network on sliding windows (volumes3d.py)
        architecture, args = network_args(config)
        network = NetworkConfig(library="monai", architecture=architecture, args=args)
        inp = InputConfig(channels=1, in_plane_size=(config.in_plane_size,) * 2, spatial_dims=3,
                          patch_slices=config.patch_slices, window_overlap=config.window_overlap,
                          in_plane_policy=config.in_plane_policy or "keep_aspect")
        default_name = f"neonatal-lung-{architecture.lower()}-3d"
    else:
        network = NetworkConfig(args={**NetworkConfig().args, "encoder_name": config.encoder,
                                      "encoder_depth": config.encoder_depth,
                                      "decoder_channels": list(config.decoder_channels)})
        inp = InputConfig(channels=config.channels, in_plane_size=(config.in_plane_size,) * 2,
                          in_plane_policy=config.in_plane_policy or "keep_aspect")
        default_name = "neonatal-lung-unet-r50"
    return ModelConfig(name=config.name or default_name, version=config.version or "0.1.0",
                       description=config.description, network=network, input=inp), None, None


def _evaluate(model_config: ModelConfig, network: torch.nn.Module, folder: TrainingFolder,
              cases: list[CaseRecord]) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Volumetric scores of the final engine output on the test subjects; per side where labels have sides."""
    segmenter = Segmenter(model_config, network, torch.device("cpu"))
    per_case = []
    for record in cases:
        image, label = folder.read_case(record)
        if record.label_scheme == "right_left":
            scores = evaluate_case(segmenter, image, label)
        else:
            import SimpleITK as sitk
            result = segmenter.segment_image(image)
            reference = sitk.GetArrayViewFromImage(label) > 0
            scores = {"dice_lungs": dice(result.labels > 0, reference)}
        per_case.append({"case_id": record.case_id, **scores})
    numeric = [{k: v for k, v in row.items() if k != "case_id"} for row in per_case]
    keys = set.intersection(*(set(r) for r in numeric)) if numeric else set()
    return per_case, summarise([{k: r[k] for k in sorted(keys)} for r in numeric])


def finish_model(config: TrainConfig, model_config: ModelConfig, network: torch.nn.Module,
                 folder: TrainingFolder, cases: list[CaseRecord], split: dict[str, list[str]],
                 parent: ModelConfig | None, run_dir: Path, *, epochs_run: int, best_epoch: int,
                 best_dice: float, train_slices: int, minutes: float) -> dict:
    """Evaluate the best weights exactly as they will be stored, then write the model folder and card."""
    stored = getattr(torch, config.weights_dtype)
    network.load_state_dict({k: v.to(stored).to(v.dtype) if v.is_floating_point() else v
                             for k, v in network.state_dict().items()})
    network.eval()
    test_cases = [c for c in cases if c.subject in set(split.get("test", []))]
    test_folder, test_what = folder, (f"{len(test_cases)} held-out test cases (subject-level split) of the "
                                      "training folder; engine with post-processing")
    if config.test_data:  # a separate held-out set (e.g. anatomy variants never used in training) wins
        test_folder = read_training_folder(config.test_data)
        test_cases = test_folder.latest_versions()
        test_what = (f"{len(test_cases)} cases of a separate folder: "
                     f"{config.test_description or test_folder.description}; engine with post-processing")
    per_case, summary = _evaluate(model_config, network, test_folder, test_cases) if test_cases else ([], {})
    (run_dir / "test_per_case.json").write_text(json.dumps(per_case, indent=2) + "\n", encoding="utf-8")
    data = config.data_description or folder.description or f"training folder {Path(config.data).name}"
    training = {
        "data": data,
        "training_folder_manifest_sha256": folder.manifest_sha256,
        "training_cases": sum(c.subject in set(split["train"]) for c in cases),
        "validation_cases": sum(c.subject in set(split["val"]) for c in cases),
        "test_cases": len(test_cases),
        "subjects": {name: len(split.get(name, [])) for name in ("train", "val", "test")},
        # the subjects themselves, so a model can be traced to its cases without its run folder
        "split_subjects": {name: sorted(split.get(name, [])) for name in ("train", "val", "test")},
        "training_slices": train_slices,
        "reviewed_only": config.reviewed_only,
        "parent": None if parent is None else {"name": parent.name, "version": parent.version,
                                               "weights_sha256": parent.weights_sha256},
        "frozen_encoder": config.freeze_encoder,
        "frozen_batchnorm_statistics": config.freeze_batchnorm,
        "anchor_decay": config.anchor_decay,
        "weight_average": config.weight_average, "adam_eps": config.adam_eps, "warmup_steps": config.warmup_steps,
        "batchnorm_momentum": config.batchnorm_momentum,
        "label_boundary": config.label_boundary,
        "epochs_run": epochs_run, "best_epoch": best_epoch, "best_val_slice_dice": round(best_dice, 4),
        "recipe": recipe(config.augment), "learning_rate": config.learning_rate, "batch_size": config.batch_size,
        "seed": config.seed, "minutes": round(minutes, 1),
    }
    if config.rehearsal_fraction > 0:
        folders = [(Path(path), read_training_folder(path)) for path in config.rehearsal_data]
        training["rehearsal"] = {"batch_fraction": config.rehearsal_fraction, "targets": config.rehearsal_targets,
                                 "folders": [
            {"data": rehearsed.description or path.name, "cases": len(rehearsed.cases),
             "training_folder_manifest_sha256": rehearsed.manifest_sha256} for path, rehearsed in folders]}
    if model_config.input.spatial_dims == 3:
        training["samples"] = (f"3D windows of {model_config.input.patch_slices} slices centred on the training "
                               "slices; validation by sliding-window inference over whole volumes")
    validation = ({"data": test_what, **summary}
                  if test_cases else {"data": "no test subjects in this split; see a separate evaluate report"})
    final = dataclasses.replace(model_config, training=training, validation=validation)
    written = write_model_folder(Path(config.output), final, network.state_dict(), dtype=config.weights_dtype)
    write_model_card(Path(config.output))
    print("held-out test cases:", json.dumps(summary), flush=True)
    return written.to_dict()
