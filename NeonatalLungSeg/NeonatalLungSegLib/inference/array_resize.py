"""Bilinear resizing in NumPy that gives what ``torch.nn.functional.interpolate`` gives, to float rounding.

Why: the int8 network runs in OpenVINO on arrays, and importing torch only to resize slices costs a command
about 2 s before the first case. A bilinear resize is separable, so each axis is one small weight matrix
(output pixels x input pixels) and a batch is resized by two matrix products. The weights follow torch's
own rules for ``mode="bilinear", align_corners=False``: the plain rule when enlarging and, with
``antialias=True``, a triangle filter widened by the shrink factor (the rule of PIL's resampling), so a
model trained on torch-resized slices sees the same numbers here (``Testing/lib/test_array_resize.py``
compares both on random and real slices).
"""

from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=64)
def resize_weights(in_size: int, out_size: int, antialias: bool) -> np.ndarray:
    """(out_size, in_size) float32 interpolation matrix for one axis; each row sums to 1."""
    if in_size < 1 or out_size < 1:
        raise ValueError(f"sizes must be >= 1, got {in_size} -> {out_size}")
    scale = in_size / out_size
    weights = np.zeros((out_size, in_size), dtype=np.float64)
    if antialias:
        support = scale if scale >= 1.0 else 1.0          # triangle of half-width 1, stretched when shrinking
        inverse = 1.0 / scale if scale >= 1.0 else 1.0
        for i in range(out_size):
            centre = scale * (i + 0.5)
            low = max(int(centre - support + 0.5), 0)
            high = min(int(centre + support + 0.5), in_size)
            taps = np.arange(low, high)
            w = np.clip(1.0 - np.abs((taps - centre + 0.5) * inverse), 0.0, None)
            total = w.sum()
            weights[i, low:high] = w / total if total > 0 else w
    else:
        # in float32, as torch computes the source coordinate: float64 would differ by up to 3e-5 on 4x
        scale32 = np.float32(in_size) / np.float32(out_size)
        source = np.maximum(scale32 * (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5),
                            np.float32(0.0))
        first = np.minimum(source.astype(np.int64), in_size - 1)
        second = np.minimum(first + 1, in_size - 1)
        fraction = (source - first.astype(np.float32)).astype(np.float64)
        rows = np.arange(out_size)
        np.add.at(weights, (rows, first), 1.0 - fraction)
        np.add.at(weights, (rows, second), fraction)
    weights = weights.astype(np.float32)
    weights.setflags(write=False)  # cached and shared: nobody may change it
    return weights


def resize_array(batch: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float32 (..., H, W) array to ``size``; antialiased when either axis shrinks, as
    ``preprocess.resize_batch`` does on torch tensors."""
    rows, cols = int(size[0]), int(size[1])
    height, width = batch.shape[-2:]
    if (height, width) == (rows, cols):
        return batch
    antialias = height > rows or width > cols
    out = batch
    if width != cols:
        out = out @ resize_weights(width, cols, antialias).T
    if height != rows:
        out = resize_weights(height, rows, antialias) @ out
    return out.astype(np.float32, copy=False)


def pad_array(batch: np.ndarray, pad: tuple[int, int, int, int], value: float) -> np.ndarray:
    """(..., H, W) padded by (top, bottom, left, right) with ``value``, as ``torch.nn.functional.pad``."""
    top, bottom, left, right = pad
    widths = [(0, 0)] * (batch.ndim - 2) + [(top, bottom), (left, right)]
    return np.pad(batch, widths, mode="constant", constant_values=value)
