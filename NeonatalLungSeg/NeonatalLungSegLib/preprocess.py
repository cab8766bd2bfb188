"""Preprocessing shared by inference and training, driven entirely by the model config.

Training imports these same functions, so the network sees identical input at training and inference
time; a mismatch here (another resize filter, another percentile) silently costs accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .geometry import Geometry, Reorientation, reorientation
from .model_folder import InputConfig

_MAX_STAT_SAMPLES = 2_000_000


@dataclass(frozen=True)
class IntensityScale:
    """``(x - offset) / scale``, then clipped to [0, 1] for percentile scaling."""

    offset: float
    scale: float
    clip: bool

    def apply(self, values: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        out = (values - self.offset) / self.scale
        if self.clip:
            out = out.clip(0.0, 1.0)
        return out


def intensity_scale(array: np.ndarray, config: InputConfig) -> IntensityScale:
    """Statistics from an evenly strided subsample, so a 512x512x300 volume costs milliseconds.

    The statistics are computed once per volume, and applied batch by batch, so no normalised float copy of
    the whole volume is ever held in memory.
    """
    flat = array.reshape(-1)
    sample = flat[:: max(1, flat.size // _MAX_STAT_SAMPLES)].astype(np.float64)
    if config.intensity_method == "percentile_minmax":
        low, high = np.percentile(sample, [config.lower_percentile, config.upper_percentile])
        return IntensityScale(float(low), float(max(high - low, 1e-6)), clip=True)
    if config.intensity_method == "zscore":
        return IntensityScale(float(sample.mean()), float(max(sample.std(), 1e-6)), clip=False)
    raise ValueError(f"unknown intensity method {config.intensity_method!r}")


@dataclass(frozen=True)
class PreparedVolume:
    """A volume in the model's canonical voxel order, with slices along the first axis (a view)."""

    slices: np.ndarray           # (n_slices, rows, cols), raw intensities
    scale: IntensityScale
    reorientation: Reorientation

    @property
    def canonical_geometry(self) -> Geometry:
        return self.reorientation.target


def prepare(array: np.ndarray, geometry: Geometry, config: InputConfig) -> PreparedVolume:
    """Reorient without interpolation and expose slices along ``config.slice_axis``."""
    plan = reorientation(geometry, config.canonical_orientation)
    canonical = plan.to_canonical(array)
    slices = np.moveaxis(canonical, 2 - config.slice_axis, 0)
    return PreparedVolume(slices=slices, scale=intensity_scale(array, config), reorientation=plan)


def slice_stack(slices: np.ndarray, indices: np.ndarray, channels: int) -> np.ndarray:
    """(B, C, rows, cols) float32: each slice with its C // 2 neighbours each side (clamped), for 2.5D."""
    half = channels // 2
    neighbours = np.clip(indices[:, None] + np.arange(-half, half + 1)[None, :], 0, len(slices) - 1)
    return slices[neighbours].astype(np.float32, copy=False)


def resize_batch(batch: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (B, C, H, W); antialiased when shrinking so thin structures are not aliased."""
    if tuple(batch.shape[-2:]) == tuple(size):
        return batch
    shrinking = batch.shape[-2] > size[0] or batch.shape[-1] > size[1]
    return F.interpolate(batch, size=tuple(size), mode="bilinear", align_corners=False,
                         antialias=shrinking and batch.device.type != "mps")


def network_input(stack: np.ndarray, scale: IntensityScale, config: InputConfig,
                  device: torch.device) -> torch.Tensor:
    """Raw slice stack -> normalised, resized tensor on ``device``, exactly as training sees it."""
    tensor = torch.from_numpy(np.ascontiguousarray(stack)).to(device, non_blocking=True)
    return resize_batch(scale.apply(tensor.float()), config.in_plane_size)
