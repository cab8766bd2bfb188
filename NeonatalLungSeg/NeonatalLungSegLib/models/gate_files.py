"""The domain gate of an improved model folder: its record in model.json and its reference features file.

A model fine-tuned on a clinic's corrected cases is better on that clinic's scans and a little worse on what
its parent knew (docs/improve.md: batch-norm statistics of the mixed batches move in the first steps). A gated
folder keeps the parent's network untouched beside the fine-tuned one and sends each scan to the network
whose cases it resembles, so the parent's domains keep the parent's output by construction. The references
are pooled features of the fine-tuned network's own encoder (``inference/gate``) for the fine-tune's corrected
cases and for the parent's rehearsal cases; they are numbers, stored as safetensors (no pickle), and every
file is checksummed in model.json, so a folder whose gate was altered is refused, never silently routed
differently.

Layout (docs/model-folder.md, *The domain gate*): ``gate.safetensors`` beside ``model.safetensors``, and the
parent as a complete, ungated model folder in ``fallback/``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelFolderError
from .checksums import sha256_of

GATE_FILE = "gate.safetensors"
FALLBACK_FOLDER = "fallback"        # fixed: no name from a file ever becomes a path
RULE = "nearer_centroid_cosine"     # the nearer centroid of the two reference sets (cosine) decides
FEATURES = "own_encoder_deepest_mean"  # the folder's own (fine-tuned) encoder's deepest map, pooled
MAX_SLICES = 64
MAX_REFERENCES = 4096
_HEX = re.compile(r"^[0-9a-f]{64}$")
_KEYS = {"file": str, "sha256": str, "fallback": str, "fallback_weights_sha256": str, "rule": str,
         "features": str, "slices": int, "adapted_cases": int, "fallback_cases": int}


@dataclass(frozen=True)
class GateReferences:
    """Unit feature vectors: one row per reference case."""

    adapted: np.ndarray    # (n, d): the corrected cases the fine-tuned network learned
    fallback: np.ndarray   # (m, d): the parent's rehearsal cases

    @property
    def dimension(self) -> int:
        return int(self.adapted.shape[1])


def gate_problems(gate: dict[str, Any]) -> list[str]:
    """Problems of a model.json ``gate`` record (empty record = no gate)."""
    if not gate:
        return []
    found = [f"gate.{key} must be {'a whole number' if kind is int else 'text'}, got {gate.get(key)!r}"
             for key, kind in _KEYS.items()
             if not isinstance(gate.get(key), kind) or isinstance(gate.get(key), bool)]
    found += [f"gate.{key} is not a gate field" for key in gate if key not in _KEYS]
    if found:
        return found
    if gate["file"] != GATE_FILE or gate["fallback"] != FALLBACK_FOLDER:
        found.append(f"gate.file and gate.fallback must be {GATE_FILE!r} and {FALLBACK_FOLDER!r}")
    if gate["rule"] != RULE or gate["features"] != FEATURES:
        found.append(f"gate.rule and gate.features must be {RULE!r} and {FEATURES!r}, got {gate['rule']!r} and "
                     f"{gate['features']!r}")
    if not (_HEX.match(gate["sha256"]) and _HEX.match(gate["fallback_weights_sha256"])):
        found.append("gate.sha256 and gate.fallback_weights_sha256 must be SHA-256 hex digests")
    if not 1 <= gate["slices"] <= MAX_SLICES:
        found.append(f"gate.slices must lie in 1..{MAX_SLICES}, got {gate['slices']}")
    if not (1 <= gate["adapted_cases"] <= MAX_REFERENCES and 1 <= gate["fallback_cases"] <= MAX_REFERENCES):
        found.append(f"gate.adapted_cases and gate.fallback_cases must lie in 1..{MAX_REFERENCES}")
    return found


def gate_record(sha256: str, fallback_weights_sha256: str, slices: int, references: GateReferences) -> dict:
    """The model.json ``gate`` record for references written to ``GATE_FILE``."""
    return {"file": GATE_FILE, "sha256": sha256, "fallback": FALLBACK_FOLDER,
            "fallback_weights_sha256": fallback_weights_sha256, "rule": RULE, "features": FEATURES,
            "slices": int(slices), "adapted_cases": int(len(references.adapted)),
            "fallback_cases": int(len(references.fallback))}


def write_references(path: Path, references: GateReferences) -> None:
    from safetensors.numpy import save_file

    save_file({"adapted": np.ascontiguousarray(references.adapted, dtype=np.float32),
               "fallback": np.ascontiguousarray(references.fallback, dtype=np.float32)}, str(path),
              metadata={"format": "neonatal-lung-seg-gate"})


def read_references(folder: Path, gate: dict[str, Any]) -> GateReferences:
    """The checked reference features of a gated folder (safetensors only: nothing is unpickled)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = Path(folder) / GATE_FILE
    if not path.is_file():
        raise ModelFolderError(f"{path}: missing domain-gate references")
    if sha256_of(path) != gate["sha256"]:
        raise ModelFolderError(f"{path}: checksum mismatch (file truncated or altered)")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFolderError(f"{path}: not a valid safetensors file ({exc})") from None
    adapted, fallback = tensors.get("adapted"), tensors.get("fallback")
    counts = (gate["adapted_cases"], gate["fallback_cases"])
    if adapted is None or fallback is None or adapted.ndim != 2 or fallback.ndim != 2 \
            or adapted.shape[1] != fallback.shape[1] or (len(adapted), len(fallback)) != counts \
            or not (np.isfinite(adapted).all() and np.isfinite(fallback).all()):
        raise ModelFolderError(f"{path}: the references do not match model.json's gate record "
                               f"({counts[0]} corrected and {counts[1]} rehearsal cases, finite features)")
    return GateReferences(adapted.astype(np.float32), fallback.astype(np.float32))
