"""Slice-wise inference on NumPy arrays, for networks that are not torch modules (the int8 OpenVINO network).

Why a second loop beside ``slice_inference.predict_slices``: that one moves tensors between devices and runs
autocast, which needs torch, and importing torch costs a command about 2 s before its first case. The int8
network takes and returns arrays, so on its path nothing imports torch. The preprocessing is the same
functions (``preprocess.network_input`` with ``device=None``, ``InPlaneFrame.from_network`` on arrays), so
both loops feed the network identical numbers (``Testing/lib/test_array_inference.py`` compares them).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .errors import Cancelled
from .model_folder import InputConfig
from .preprocess import PreparedVolume, network_input, slice_stack

ProgressCallback = Callable[[float], None]
CancelCheck = Callable[[], bool]
ArrayNetwork = Callable[[np.ndarray], np.ndarray]  # float32 (N, C, H, W) -> logits (N, 1, H, W)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Float32 logistic that never overflows: exp of minus the magnitude only (it may underflow to 0)."""
    out = np.exp(-np.abs(logits))
    return np.where(logits >= 0, 1.0 / (1.0 + out), out / (1.0 + out)).astype(np.float32, copy=False)


def predict_slices_array(network: ArrayNetwork, prepared: PreparedVolume, config: InputConfig, batch_size: int,
                         progress: ProgressCallback | None = None,
                         cancel: CancelCheck | None = None) -> np.ndarray:
    """Lung probability, float16 (n_slices, rows, cols), for ``prepared.slices`` (as ``predict_slices``)."""
    slices = prepared.slices
    count = len(slices)
    out = np.empty(slices.shape, dtype=np.float16)
    for start in range(0, count, batch_size):
        if cancel is not None and cancel():
            raise Cancelled("segmentation cancelled; nothing was written")
        indices = np.arange(start, min(start + batch_size, count))
        batch = network_input(slice_stack(slices, indices, config.channels), prepared.scale, config, None,
                              prepared.frame)
        logits = network(np.ascontiguousarray(batch, dtype=np.float32))
        logits = prepared.frame.from_network(np.asarray(logits, dtype=np.float32), slices.shape[1:])
        out[indices] = sigmoid(logits[:, 0])
        if progress is not None:
            progress((indices[-1] + 1) / count)
    return out
