"""A gated model folder loaded: the fine-tuned segmenter, its parent's, and the references between them.

The parent is a complete model folder of its own (``fallback/``), loaded by the same ``Segmenter.load`` with
the same device and precision, so whichever network the gate picks runs exactly as it would alone: its own
int8 file, boundary convention and batch size. The gate reads the fine-tuned network's encoder (in fp32).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from ...errors import ModelFolderError
from ...geometry import Geometry
from ...models.gate_files import FALLBACK_FOLDER, GateReferences, read_references
from ...models.model_folder import read_config
from .routing import ADAPTED, route, scan_features

Segmenter = Any  # engine.Segmenter (not imported: the engine imports this module)


@dataclass
class DomainGate:
    encoder: torch.nn.Module
    device: torch.device
    references: GateReferences
    fallback: Segmenter
    slices: int

    def choose(self, adapted: Segmenter, array: np.ndarray, geometry: Geometry) -> tuple[Segmenter, dict]:
        features = scan_features(self.encoder, array, geometry, adapted.config.input, self.slices, self.device)
        decision = route(features, self.references)
        record = {**decision.to_dict(),
                  "parent": f"{self.fallback.config.name} {self.fallback.config.version}"}
        return (adapted if decision.network == ADAPTED else self.fallback), record


def attach_gate(segmenter: Segmenter, load: Callable[..., Segmenter], device: str, batch_size: int | None,
                precision: str, channels_last: bool | None) -> None:
    """Load a gated folder's parent (with ``load``: ``Segmenter.load``) and references into ``segmenter``, every
    file checked first."""
    from ...models.network import build_checked

    folder, gate = segmenter.folder, segmenter.config.gate
    references = read_references(folder, gate)
    parent_folder = folder / FALLBACK_FOLDER
    parent_config = read_config(parent_folder)
    if parent_config.gate:
        raise ModelFolderError(f"{parent_folder}: a fallback model must not be gated itself")
    if parent_config.weights_sha256 != gate["fallback_weights_sha256"]:
        raise ModelFolderError(f"{parent_folder}: not the parent model.json's gate names (weights checksum "
                               f"{parent_config.weights_sha256[:12]}..., expected "
                               f"{gate['fallback_weights_sha256'][:12]}...)")
    if parent_config.input != segmenter.config.input:
        raise ModelFolderError(f"{parent_folder}: the parent prepares scans differently from the fine-tuned "
                               "network (input settings differ)")
    fallback = load(parent_folder, device=device, batch_size=batch_size, precision=precision,
                              channels_last=channels_last)
    if segmenter.backend == "torch":
        network, where = segmenter.network, segmenter.device
    else:  # the fine-tuned network runs from its int8 file: the gate still needs its torch encoder
        network, where = build_checked(folder, segmenter.config).eval(), torch.device("cpu")
    encoder = getattr(network, "encoder", None)
    width = getattr(encoder, "out_channels", [None])[-1]
    if encoder is None or width != references.dimension:
        raise ModelFolderError(f"{folder}: the gate's references ({references.dimension} features) do not fit "
                               f"the network's encoder ({width})")
    segmenter.gate = DomainGate(encoder, where, references, fallback, int(gate["slices"]))
