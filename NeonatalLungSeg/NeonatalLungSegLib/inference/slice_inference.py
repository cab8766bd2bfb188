"""Slice-wise (2D / 2.5D) inference: batches of slices through the network, probabilities back on the CPU.

The preprocessing is exactly ``preprocess.network_input`` (normalise, frame in-plane, then resize to the
model's in-plane size), done on the device. On a CUDA GPU the whole canonical volume is uploaded once and each batch's
slices (and 2.5D neighbours) are gathered there, so the host does no per-batch copying; on the CPU each
batch is gathered from the (possibly strided) canonical view, so no float copy of the volume is made.
Autocast spans the whole loop, so the weights are cast to half precision once per volume, not per batch.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from .acceleration import autocast, checked_forward
from ..errors import Cancelled
from ..models.model_folder import InputConfig
from .preprocess import PreparedVolume, network_input, slice_stack

ProgressCallback = Callable[[float], None]
CancelCheck = Callable[[], bool]


def neighbour_indices(indices: np.ndarray, count: int, channels: int) -> np.ndarray:
    """(B, C) slice indices: each slice with its C // 2 neighbours each side, clamped (as ``slice_stack``)."""
    half = channels // 2
    return np.clip(indices[:, None] + np.arange(-half, half + 1)[None, :], 0, count - 1)


def predict_slices(network: torch.nn.Module, prepared: PreparedVolume, config: InputConfig,
                   device: torch.device, batch_size: int, precision: str, channels_last: bool,
                   progress: ProgressCallback | None = None,
                   cancel: CancelCheck | None = None) -> np.ndarray:
    """Lung probability, float16 (n_slices, rows, cols), for ``prepared.slices``."""
    slices = prepared.slices
    count = len(slices)
    out = np.empty(slices.shape, dtype=np.float16)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    volume = None
    if device.type == "cuda":  # one upload; gathering, normalising and resizing then happen on the GPU
        volume = torch.from_numpy(np.ascontiguousarray(slices, dtype=np.float32)).to(device)
    full_precision = torch.autocast(device.type if device.type in ("cpu", "cuda") else "cpu", enabled=False)
    with torch.inference_mode(), autocast(device, precision):
        for start in range(0, count, batch_size):
            if cancel is not None and cancel():
                raise Cancelled("segmentation cancelled; nothing was written")
            indices = np.arange(start, min(start + batch_size, count))
            with full_precision:
                if volume is not None:
                    picked = torch.from_numpy(neighbour_indices(indices, count, config.channels)).to(device)
                    batch = prepared.frame.to_network(prepared.scale.apply(volume[picked]), config.in_plane_size)
                else:
                    batch = network_input(slice_stack(slices, indices, config.channels), prepared.scale, config,
                                          device, prepared.frame)
                batch = batch.contiguous(memory_format=layout)
            logits = checked_forward(network, batch, device, precision)
            with full_precision:
                logits = prepared.frame.from_network(logits.float(), slices.shape[1:])
                out[indices] = torch.sigmoid(logits[:, 0]).to(torch.float16).cpu().numpy()
            if progress is not None:
                progress((indices[-1] + 1) / count)
    return out
