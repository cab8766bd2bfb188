"""Best and last checkpoints of a run, written atomically and read without unpickling code.

A killed run must lose at most one epoch, and a checkpoint file from elsewhere must not be able to run
code: ``torch.load(weights_only=True)`` only accepts tensors and plain containers, so everything stored
here is tensors, numbers, strings, lists and dicts.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import torch

LAST = "last.pt"
BEST = "best.pt"


def save(path: Path, payload: dict[str, Any]) -> None:
    """Write next to the target and rename, so a kill during the write leaves the previous file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{path.name}")
    try:
        torch.save(payload, temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def load(path: Path) -> dict[str, Any]:
    try:
        return torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as error:  # corrupt, truncated, or holding objects that need unpickling
        raise ValueError(f"{path}: not a readable checkpoint ({str(error).splitlines()[0]})") from None


def cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    # contiguous: a channels_last network's weights are saved in the standard layout
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in module.state_dict().items()}
