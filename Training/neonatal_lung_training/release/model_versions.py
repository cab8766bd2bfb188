"""New versions of a model folder made without training: a weight average, or another in-plane framing.

Why: an hour of CPU training is the expensive step; two cheap ones can still make a better model, and each
result is an ordinary, versioned, checksummed model folder with its own model card (parents never edited):

- ``average``: the weighted mean of the weights of folders that share one network and preprocessing, e.g.
  two fine-tunings of one parent, which sit in one loss basin, so their average often keeps the strengths
  of both ("model soup", Wortsman et al., 2022). Anything else is refused with one line. The ``training``
  record names every ingredient by version, share and weights hash.
- ``reframe``: the same weights with another in-plane policy (docs/model-folder.md). The policy decides what
  the network sees, not what it learned, so a better framing found after training (``body_crop``, measured
  on a development set) reaches users without retraining. The parent's validation figures are dropped
  (measured under the other framing) and its int8 network is not copied (calibrated and checked under the
  other framing): run ``neonatal-lung-seg quantize`` on the new folder.

    python -m neonatal_lung_training.release.model_versions average -o runs/soup --version 2.5.0 \
        --model Resources/Models/neonatal-lung-unet-r50 --model runs/candidate-2.4.0 [--weight 0.5 --weight 0.5]
    python -m neonatal_lung_training.release.model_versions reframe -o runs/candidate-2.6.0 --version 2.6.0 \
        --model Resources/Models/neonatal-lung-unet-r50 --policy body_crop
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any, Sequence

from NeonatalLungSegLib.models.model_folder import (IN_PLANE_POLICIES, ModelConfig, ModelFolderError, load_state_dict,
                                             read_config, write_model_folder)

from ..training.model_card import write_model_card


def check_compatible(configs: Sequence[ModelConfig], states: Sequence[dict[str, Any]],
                     names: Sequence[str]) -> None:
    """Refuse folders whose average would be meaningless: another network, framing or tensor layout."""
    first, first_state = configs[0], states[0]
    for config, state, name in zip(configs[1:], states[1:], names[1:]):
        for section in ("network", "input", "output"):
            if getattr(config, section) != getattr(first, section):
                raise ModelFolderError(f"{name}: its '{section}' differs from {names[0]}'s; only models of one "
                                       "network and preprocessing can be averaged")
        if state.keys() != first_state.keys():
            raise ModelFolderError(f"{name}: its tensors are named differently from {names[0]}'s")
        for key, tensor in state.items():
            if tuple(tensor.shape) != tuple(first_state[key].shape):
                raise ModelFolderError(f"{name}: tensor {key} has shape {tuple(tensor.shape)}, "
                                       f"{names[0]} has {tuple(first_state[key].shape)}")


def normalised(weights: Sequence[float] | None, count: int) -> list[float]:
    if not weights:
        return [1.0 / count] * count
    if len(weights) != count:
        raise ValueError(f"{len(weights)} weights for {count} models")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError("weights must be non-negative and not all zero")
    total = float(sum(weights))
    return [w / total for w in weights]


def average_state(states: Sequence[dict[str, Any]], weights: Sequence[float]) -> dict[str, Any]:
    """Weighted mean of floating tensors (batch-norm statistics included, as soups do); integer tensors
    (batch-norm step counters) are taken from the first model."""
    out: dict[str, Any] = {}
    for key, first in states[0].items():
        if first.is_floating_point():
            total = first.double() * weights[0]
            for state, w in zip(states[1:], weights[1:]):
                total += state[key].double() * w
            out[key] = total.float()
        else:
            out[key] = first.clone()
    return out


def average_models(folders: Sequence[Path], output: Path, version: str,
                   weights: Sequence[float] | None = None) -> ModelConfig:
    folders = [Path(f) for f in folders]
    if len(folders) < 2:
        raise ValueError("give at least two model folders to average")
    configs = [read_config(f) for f in folders]
    states = [load_state_dict(f, c) for f, c in zip(folders, configs)]
    names = [f"{c.name} {c.version} ({f})" for c, f in zip(configs, folders)]
    check_compatible(configs, states, names)
    shares = normalised(weights, len(folders))
    last = configs[-1]
    ingredients = [{"version": c.version, "weights_sha256": c.weights_sha256, "share": round(s, 6)}
                   for c, s in zip(configs, shares)]
    recipe = ", ".join(f"{s:.2f} x {c.version}" for c, s in zip(configs, shares))
    training = dict(last.training)
    training["averaged_from"] = ingredients
    training["recipe"] = (f"weight average of fine-tunings of one parent ({recipe}), no further training; "
                          f"the ingredients' recipe: {last.training.get('recipe', 'see their model cards')}")
    config = dataclasses.replace(last, version=version, parent_version=last.parent_version,
                                 training=training, validation={}, weights_sha256="")
    final = write_model_folder(output, config, average_state(states, shares), dtype=last.weights_dtype)
    write_model_card(output)
    return final


def reframe(folder: Path, output: Path, policy: str, version: str) -> ModelConfig:
    parent = read_config(folder)
    if policy not in IN_PLANE_POLICIES:
        raise ValueError(f"unknown in-plane policy {policy!r}; one of {', '.join(IN_PLANE_POLICIES)}")
    if policy == parent.input.in_plane_policy:
        raise ValueError(f"{folder} already frames its slices by {policy!r}")
    if parent.input.spatial_dims != 2:
        raise ValueError(f"{folder}: only slice-wise models can be reframed (a 3D model's windows assume its framing)")
    if version == parent.version:
        raise ValueError(f"the new folder needs a new version, not the parent's {version}")
    training = dict(parent.training)
    training["reframed_from"] = {"version": parent.version, "weights_sha256": parent.weights_sha256,
                                 "in_plane_policy": parent.input.in_plane_policy}
    config = dataclasses.replace(parent, version=version, parent_version=parent.version, validation={},
                                 input=dataclasses.replace(parent.input, in_plane_policy=policy),
                                 training=training, weights_sha256="")
    final = write_model_folder(output, config, load_state_dict(folder, parent), dtype=parent.weights_dtype)
    write_model_card(output)
    return final


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    average = commands.add_parser("average", help="the weighted mean of model folders of one network")
    average.add_argument("--model", type=Path, action="append", required=True, help="model folder (twice or more)")
    average.add_argument("--weight", type=float, action="append", help="share of each --model (default: equal)")
    framing = commands.add_parser("reframe", help="the same weights with another in-plane policy")
    framing.add_argument("--model", type=Path, required=True, help="the parent model folder")
    framing.add_argument("--policy", required=True, help=f"the new in-plane policy ({', '.join(IN_PLANE_POLICIES)})")
    for sub in (average, framing):
        sub.add_argument("--version", required=True, help="version of the new model")
        sub.add_argument("-o", "--output", type=Path, required=True, help="new model folder (must not exist)")
    args = parser.parse_args(argv)
    try:
        if args.command == "average":
            final = average_models(args.model, args.output, args.version, args.weight)
        else:
            final = reframe(args.model, args.output, args.policy, args.version)
    except (ModelFolderError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}: {final.name} {final.version}, in-plane policy {final.input.in_plane_policy}, "
          f"weights {final.weights_sha256[:12]}"
          + ("; make its int8 network with `neonatal-lung-seg quantize`" if args.command == "reframe" else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
