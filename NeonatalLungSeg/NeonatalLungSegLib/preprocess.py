"""Preprocessing shared by inference and training, driven entirely by the model config.

Training imports these same functions, so the network sees identical input at training and inference
time; a mismatch here (another resize filter, another percentile) silently costs accuracy.

In-plane policy (``InputConfig.in_plane_policy``): ``fixed_size`` stretches every slice to the network's
size, whatever its field of view (the policy of model folders before 2.0.0, kept so they give identical
output); ``keep_aspect`` first pads the slice, centred, to the network's aspect ratio *in millimetres*, so a
375 x 234 mm adult field of view or a 0.7 x 1.4 mm anisotropic grid is not distorted. The padding is undone
on the way back (``InPlaneFrame.from_network``), so labels land on the input's exact grid either way.

Framing and resizing take torch tensors (training, the torch inference path, on any device) or NumPy arrays
(the int8 path, which never imports torch: ``array_resize.py`` computes what torch's resize computes), so
both paths share one framing rule. torch is imported only where a tensor is handled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

import numpy as np

from .array_resize import pad_array, resize_array
from .geometry import Geometry, Reorientation, reorientation
from .model_folder import InputConfig

if TYPE_CHECKING:
    import torch

_MAX_STAT_SAMPLES = 2_000_000
Batch = Union[np.ndarray, "torch.Tensor"]


@dataclass(frozen=True)
class IntensityScale:
    """``(x - offset) / scale``, then clipped to [0, 1] for percentile scaling."""

    offset: float
    scale: float
    clip: bool
    background: float = 0.0  # raw intensity of the darkest tissue (lower percentile): fills in-plane padding

    def apply(self, values: Batch) -> Batch:
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
        return IntensityScale(float(low), float(max(high - low, 1e-6)), clip=True, background=float(low))
    if config.intensity_method == "zscore":
        low = np.percentile(sample, config.lower_percentile) if config.in_plane_policy != "fixed_size" else 0.0
        return IntensityScale(float(sample.mean()), float(max(sample.std(), 1e-6)), clip=False,
                              background=float(low))
    raise ValueError(f"unknown intensity method {config.intensity_method!r}")


@dataclass(frozen=True)
class InPlaneFrame:
    """Padding (rows before, rows after, columns before, columns after) that puts a slice in the network's frame.

    ``value`` fills the padding in normalised units: the intensity of the volume's darkest tissue (its lower
    percentile), which is what lies outside a patient in any MR or CT image.
    """

    pad: tuple[int, int, int, int] = (0, 0, 0, 0)
    value: float = 0.0

    def to_network(self, batch: Batch, size: tuple[int, int], value: float | None = None) -> Batch:
        """(B, C, rows, cols) -> padded and resized to ``size``; ``value`` overrides the fill (0 for labels)."""
        if any(self.pad):
            fill = self.value if value is None else value
            if isinstance(batch, np.ndarray):
                batch = pad_array(batch, self.pad, fill)
            else:
                import torch.nn.functional as F

                top, bottom, left, right = self.pad
                batch = F.pad(batch, (left, right, top, bottom), value=fill)
        return resize_batch(batch, size)

    def from_network(self, output: Batch, shape: tuple[int, int]) -> Batch:
        """(B, C, H, W) at network size -> (B, C, rows, cols) on the slice's own grid (padding cut away)."""
        if not any(self.pad):
            return resize_batch(output, shape)
        top, bottom, left, right = self.pad
        padded = resize_batch(output, (shape[0] + top + bottom, shape[1] + left + right))
        return padded[..., top:top + shape[0], left:left + shape[1]]


def in_plane_frame(shape: tuple[int, int], spacing: tuple[float, float], config: InputConfig,
                   value: float = 0.0) -> InPlaneFrame:
    """The padding that gives a (rows, cols) slice of ``spacing`` mm the network input's aspect in mm."""
    if config.in_plane_policy == "fixed_size":
        return InPlaneFrame()
    if config.in_plane_policy != "keep_aspect":
        raise ValueError(f"unknown in-plane policy {config.in_plane_policy!r}")
    rows, cols = int(shape[0]), int(shape[1])
    aspect = config.in_plane_size[0] / config.in_plane_size[1]  # wanted height / width, in mm
    height, width = rows * float(spacing[0]), cols * float(spacing[1])
    if height < aspect * width:
        extra_rows, extra_cols = max(0, round(aspect * width / spacing[0]) - rows), 0
    else:
        extra_rows, extra_cols = 0, max(0, round(height / aspect / spacing[1]) - cols)
    return InPlaneFrame((extra_rows // 2, extra_rows - extra_rows // 2, extra_cols // 2,
                         extra_cols - extra_cols // 2), float(value))


@dataclass(frozen=True)
class PreparedVolume:
    """A volume in the model's canonical voxel order, with slices along the first axis (a view)."""

    slices: np.ndarray           # (n_slices, rows, cols), raw intensities
    scale: IntensityScale
    reorientation: Reorientation
    frame: InPlaneFrame = InPlaneFrame()

    @property
    def canonical_geometry(self) -> Geometry:
        return self.reorientation.target


def prepare(array: np.ndarray, geometry: Geometry, config: InputConfig) -> PreparedVolume:
    """Reorient without interpolation, expose slices along ``config.slice_axis``, and frame them in-plane."""
    plan = reorientation(geometry, config.canonical_orientation)
    canonical = plan.to_canonical(array)
    slices = np.moveaxis(canonical, 2 - config.slice_axis, 0)
    scale = intensity_scale(array, config)
    spacing_kji = tuple(reversed(plan.target.spacing))
    in_plane = tuple(float(s) for axis, s in enumerate(spacing_kji) if axis != 2 - config.slice_axis)
    frame = InPlaneFrame()
    if config.in_plane_policy != "fixed_size":
        frame = in_plane_frame(slices.shape[1:], in_plane, config, float(scale.apply(np.float64(scale.background))))
    return PreparedVolume(slices=slices, scale=scale, reorientation=plan, frame=frame)


def slice_stack(slices: np.ndarray, indices: np.ndarray, channels: int) -> np.ndarray:
    """(B, C, rows, cols) float32: each slice with its C // 2 neighbours each side (clamped), for 2.5D."""
    half = channels // 2
    neighbours = np.clip(indices[:, None] + np.arange(-half, half + 1)[None, :], 0, len(slices) - 1)
    return slices[neighbours].astype(np.float32, copy=False)


def resize_batch(batch: Batch, size: tuple[int, int]) -> Batch:
    """Bilinear resize of (B, C, H, W); antialiased when shrinking so thin structures are not aliased."""
    if tuple(batch.shape[-2:]) == tuple(size):
        return batch
    if isinstance(batch, np.ndarray):
        return resize_array(batch, size)
    import torch.nn.functional as F

    shrinking = batch.shape[-2] > size[0] or batch.shape[-1] > size[1]
    return F.interpolate(batch, size=tuple(size), mode="bilinear", align_corners=False,
                         antialias=shrinking and batch.device.type != "mps")


def network_input(stack: np.ndarray, scale: IntensityScale, config: InputConfig,
                  device: torch.device | None, frame: InPlaneFrame = InPlaneFrame()) -> Batch:
    """Raw slice stack -> normalised, framed, resized tensor on ``device``, exactly as training sees it;
    ``device=None``: a float32 NumPy array, without torch (the int8 path)."""
    if device is None:
        return frame.to_network(scale.apply(stack.astype(np.float32, copy=False)), config.in_plane_size)
    import torch

    tensor = torch.from_numpy(np.ascontiguousarray(stack)).to(device, non_blocking=True)
    return frame.to_network(scale.apply(tensor.float()), config.in_plane_size)
