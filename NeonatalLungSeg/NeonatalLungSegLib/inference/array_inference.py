"""Slice-wise inference on NumPy arrays, for networks that are not torch modules (the int8 OpenVINO network).

Why a second loop beside ``slice_inference.predict_slices``: that one moves tensors between devices and runs
autocast, which needs torch, and importing torch costs a command about 2 s before its first case. The int8
network takes and returns arrays, so on its path nothing imports torch. The preprocessing is the same
functions (``preprocess.network_input`` with ``device=None``, ``InPlaneFrame.from_network`` on arrays), so
both loops feed the network identical numbers (``Testing/lib/test_array_inference.py`` compares them).
"""

from __future__ import annotations

import contextlib
from typing import Callable

import numpy as np

from ..errors import Cancelled
from ..models.model_folder import InputConfig
from .preprocess import PreparedVolume, network_input, slice_stack

ProgressCallback = Callable[[float], None]
CancelCheck = Callable[[], bool]
ArrayNetwork = Callable[[np.ndarray], np.ndarray]  # float32 (N, C, H, W) -> logits (N, 1, H, W)
# Probabilities below float16's smallest normal number are stored as 0: NumPy converts values that become
# float16 subnormals 12x slower than others (0.5 s of a 96-slice volume, most of it background), and a
# probability under 6e-5 means the same as 0 to every consumer (threshold 0.5, confidence, review).
HALF_TINY = float(np.finfo(np.float16).tiny)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Float32 logistic, clipped to +-30 first: beyond that the result is 0 or 1 in float16 anyway, and
    unclipped background logits (-100 and below) made exp produce subnormal floats, which ran 10x slower
    (0.34 s of a 96-slice volume on the 2-core Xeon)."""
    out = np.clip(logits, -30.0, 30.0).astype(np.float32, copy=False)
    np.negative(out, out=out)
    np.exp(out, out=out)
    out += 1.0
    return np.reciprocal(out, out=out)


def one_blas_thread() -> contextlib.AbstractContextManager:
    """NumPy's BLAS limited to one thread while the network runs: the resize products are small, and
    OpenBLAS's idle threads spin for a while after each, taking a core from OpenVINO's threads (forward
    1.6 s became 2.2-2.3 s on the 96-slice benchmark volume, 2-core Xeon). Without threadpoolctl: unchanged."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def predict_slices_array(network: ArrayNetwork, prepared: PreparedVolume, config: InputConfig, batch_size: int,
                         progress: ProgressCallback | None = None,
                         cancel: CancelCheck | None = None) -> np.ndarray:
    """Lung probability, float16 (n_slices, rows, cols), for ``prepared.slices`` (as ``predict_slices``)."""
    slices = prepared.slices
    count = len(slices)
    out = np.empty(slices.shape, dtype=np.float16)
    with one_blas_thread():
        for start in range(0, count, batch_size):
            if cancel is not None and cancel():
                raise Cancelled("segmentation cancelled; nothing was written")
            indices = np.arange(start, min(start + batch_size, count))
            batch = network_input(slice_stack(slices, indices, config.channels), prepared.scale, config, None,
                                  prepared.frame)
            logits = network(np.ascontiguousarray(batch, dtype=np.float32))
            logits = prepared.frame.from_network(np.asarray(logits, dtype=np.float32), slices.shape[1:])
            probability = sigmoid(logits[:, 0])
            probability[probability < HALF_TINY] = 0.0  # see HALF_TINY
            out[indices] = probability
            if progress is not None:
                progress((indices[-1] + 1) / count)
    return out
