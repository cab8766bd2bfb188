"""A new version of a model folder that frames its slices by another in-plane policy, with the same weights.

Why: the in-plane policy decides what the network sees (docs/model-folder.md), not what it learned, so a
better framing found after training (``body_crop``, measured on a development set) reaches users without an
hour of retraining. It is still a new model: another version, a new model card, its figures measured again;
the parent folder is never edited.

    python -m neonatal_lung_training.reframe --model Resources/Models/neonatal-lung-unet-r50 \
        --policy body_crop --version 2.6.0 -o runs/candidate-2.6.0

The weights are copied through the model-folder writer (same tensors, so the same checksum); the int8
network is not copied, because it was calibrated and checked under the parent's framing: run
``neonatal-lung-seg quantize`` on the new folder. The parent's validation figures are dropped (they were
measured under the other framing); the training record is kept, with the reframing added to it.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Sequence

from NeonatalLungSegLib.model_folder import (IN_PLANE_POLICIES, ModelConfig, ModelFolderError, load_state_dict,
                                             read_config, write_model_folder)

from .model_card import write_model_card


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
    parser.add_argument("--model", type=Path, required=True, help="the parent model folder")
    parser.add_argument("--policy", required=True, help=f"the new in-plane policy ({', '.join(IN_PLANE_POLICIES)})")
    parser.add_argument("--version", required=True, help="version of the new model")
    parser.add_argument("-o", "--output", type=Path, required=True, help="new model folder (must not exist)")
    args = parser.parse_args(argv)
    try:
        final = reframe(args.model, args.output, args.policy, args.version)
    except (ModelFolderError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}: {final.name} {final.version}, in-plane policy {args.policy}, "
          f"weights {final.weights_sha256[:12]}; make its int8 network with `neonatal-lung-seg quantize`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
