"""Average the weights of model folders that share one network and preprocessing ("model soup").

Why: two fine-tunings of one parent sit in the same loss basin, and the average of their weights often keeps
the strengths of both (Wortsman et al., 2022) without an hour of CPU training. Here it is the cheap way to
combine a model that is better on real scanner images with one fine-tuned towards the synthetic neonatal UTE
contrast. Only folders that compute the same function family may be averaged: same network, input and
output sections, same tensor names and shapes; anything else is refused with one line.

    python -m neonatal_lung_training.average_models -o runs/soup --version 2.5.0 \
        --model Resources/Models/neonatal-lung-unet-r50 --model runs/candidate-2.4.0 [--weight 0.5 --weight 0.5]

The result is an ordinary model folder (float16 weights, checksum, model card) whose ``training`` record
names every ingredient by version and weights hash, and whose data description is that of the last
ingredient (the one trained on the most).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any, Sequence

from NeonatalLungSegLib.model_folder import (ModelConfig, ModelFolderError, load_state_dict, read_config,
                                             write_model_folder)

from .model_card import write_model_card


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", type=Path, required=True, help="new model folder (must not exist)")
    parser.add_argument("--model", type=Path, action="append", required=True, help="model folder (twice or more)")
    parser.add_argument("--weight", type=float, action="append", help="share of each --model (default: equal)")
    parser.add_argument("--version", required=True, help="version of the averaged model")
    args = parser.parse_args(argv)
    try:
        final = average_models(args.model, args.output, args.version, args.weight)
    except (ModelFolderError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}: {final.name} {final.version}, weights {final.weights_sha256[:12]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
