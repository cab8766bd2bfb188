"""Preprocessing shared by inference and training, driven entirely by the model config.

Training imports these same functions, so the network sees identical input at training and inference
time; a mismatch here (another resize filter, another percentile) silently costs accuracy.

In-plane policy (``InputConfig.in_plane_policy``): ``fixed_size`` stretches every slice to the network's
size, whatever its field of view (the policy of model folders before 2.0.0, kept so they give identical
output); ``keep_aspect`` first pads the slice, centred, to the network's aspect ratio *in millimetres*, so a
375 x 234 mm adult field of view or a 0.7 x 1.4 mm anisotropic grid is not distorted. The padding is undone
on the way back (``InPlaneFrame.from_network``), so labels land on the input's exact grid either way.
``body_crop`` first crops every slice of a volume to one box, the body's in-plane extent (``body_box``), then
frames it as ``keep_aspect`` does: a newborn in an adult-sized field of view gets as many network pixels
across its lungs as an adult, and nothing outside the body can be called lung. The crop is negative padding
in the same frame, undone the same way (what lies outside the box comes back as "certainly not lung").

Framing and resizing take torch tensors (training, the torch inference path, on any device) or NumPy arrays
(the int8 path, which never imports torch: ``array_resize.py`` computes what torch's resize computes), so
both paths share one framing rule. torch is imported only where a tensor is handled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

import numpy as np

from .array_resize import pad_array, resize_array
from ..geometry import Geometry, Reorientation, reorientation
from ..models.model_folder import InputConfig

if TYPE_CHECKING:
    import torch

_MAX_STAT_SAMPLES = 2_000_000
LOGIT_OUTSIDE = -30.0  # network output outside a body_crop box: sigmoid 1e-13, certainly not lung
Batch = Union[np.ndarray, "torch.Tensor"]


@dataclass(frozen=True)
class IntensityScale:
    """``(x - offset) / scale``, then clipped to [0, 1] for percentile scaling.

    ``factor`` (a power of two, 1 for any ordinary scan) first brings a volume whose values reach towards the
    float32 limit (+-3.4e38) into a safe range: both normalisations are scale-invariant, and multiplying by a
    power of two is exact, so the result is the same as for the volume scaled down, where ``x - offset`` and
    ``scale`` themselves would overflow float32 to inf (the network then saw zeros or NaN: an empty mask).
    """

    offset: float
    scale: float
    clip: bool
    background: float = 0.0  # raw intensity of the darkest tissue (lower percentile): fills in-plane padding
    factor: float = 1.0

    def apply(self, values: Batch) -> Batch:
        if self.factor == 1.0:
            out = (values - self.offset) / self.scale
        else:
            out = (values * self.factor - self.offset * self.factor) / (self.scale * self.factor)
        if self.clip:
            out = out.clip(0.0, 1.0)
        return out


_SAFE_MAGNITUDE = 2.0 ** 64  # far below float32's 2 ** 128: differences and spreads of such values stay finite


def _safe_factor(array: np.ndarray) -> float:
    """A power of two that brings the volume's largest magnitude to at most 2 ** 64 (1.0 when it is already)."""
    if array.size == 0:
        return 1.0
    peak = max(abs(float(np.max(array))), abs(float(np.min(array))))
    if not np.isfinite(peak) or peak <= _SAFE_MAGNITUDE:
        return 1.0
    return 2.0 ** -(int(np.ceil(np.log2(peak))) - 64)


def intensity_scale(array: np.ndarray, config: InputConfig) -> IntensityScale:
    """Statistics from an evenly strided subsample, so a 512x512x300 volume costs milliseconds.

    The statistics are computed once per volume, and applied batch by batch, so no normalised float copy of
    the whole volume is ever held in memory. They are computed in float64 on values brought into a safe range
    (``IntensityScale.factor``) and reported in the volume's own units.
    """
    flat = array.reshape(-1)
    factor = _safe_factor(array)
    sample = flat[:: max(1, flat.size // _MAX_STAT_SAMPLES)].astype(np.float64) * factor
    if config.intensity_method == "percentile_minmax":
        low, high = np.percentile(sample, [config.lower_percentile, config.upper_percentile])
        return IntensityScale(float(low) / factor, float(max(high - low, 1e-6)) / factor, clip=True,
                              background=float(low) / factor, factor=factor)
    if config.intensity_method == "zscore":
        low = np.percentile(sample, config.lower_percentile) if config.in_plane_policy != "fixed_size" else 0.0
        return IntensityScale(float(sample.mean()) / factor, float(max(sample.std(), 1e-6)) / factor, clip=False,
                              background=float(low) / factor, factor=factor)
    raise ValueError(f"unknown intensity method {config.intensity_method!r}")


@dataclass(frozen=True)
class InPlaneFrame:
    """Padding (rows before, rows after, columns before, columns after) that puts a slice in the network's frame.

    ``value`` fills the padding in normalised units: the intensity of the volume's darkest tissue (its lower
    percentile), which is what lies outside a patient in any MR or CT image.
    """

    pad: tuple[int, int, int, int] = (0, 0, 0, 0)  # negative: that many rows / columns cropped away
    value: float = 0.0

    def to_network(self, batch: Batch, size: tuple[int, int], value: float | None = None) -> Batch:
        """(B, C, rows, cols) -> cropped, padded and resized to ``size``; ``value`` overrides the fill (0 for
        labels)."""
        top, bottom, left, right = self.pad
        if min(self.pad) < 0:
            rows, cols = batch.shape[-2:]
            batch = batch[..., max(0, -top):rows - max(0, -bottom), max(0, -left):cols - max(0, -right)]
        grow = (max(0, top), max(0, bottom), max(0, left), max(0, right))
        if any(grow):
            fill = self.value if value is None else value
            if isinstance(batch, np.ndarray):
                batch = pad_array(batch, grow, fill)
            else:
                import torch.nn.functional as F

                batch = F.pad(batch, (grow[2], grow[3], grow[0], grow[1]), value=fill)
        return resize_batch(batch, size)

    def from_network(self, output: Batch, shape: tuple[int, int], outside: float = LOGIT_OUTSIDE) -> Batch:
        """(B, C, H, W) logits at network size -> (B, C, rows, cols) on the slice's own grid: padding cut away,
        cropped-away pixels filled with ``outside``."""
        if not any(self.pad):
            return resize_batch(output, shape)
        top, bottom, left, right = self.pad
        framed = resize_batch(output, (shape[0] + top + bottom, shape[1] + left + right))
        if min(self.pad) >= 0:
            return framed[..., top:top + shape[0], left:left + shape[1]]
        r0, c0 = max(0, -top), max(0, -left)  # first slice row / column inside the frame
        rows, cols = shape[0] - r0 - max(0, -bottom), shape[1] - c0 - max(0, -right)
        inner = framed[..., max(0, top):max(0, top) + rows, max(0, left):max(0, left) + cols]
        if isinstance(output, np.ndarray):
            full = np.full(output.shape[:-2] + tuple(shape), outside, dtype=output.dtype)
        else:
            import torch

            full = torch.full(tuple(output.shape[:-2]) + tuple(shape), outside, dtype=output.dtype,
                              device=output.device)
        full[..., r0:r0 + rows, c0:c0 + cols] = inner
        return full


def in_plane_frame(shape: tuple[int, int], spacing: tuple[float, float], config: InputConfig,
                   value: float = 0.0, box: tuple[int, int, int, int] | None = None) -> InPlaneFrame:
    """The padding that gives a (rows, cols) slice of ``spacing`` mm the network input's aspect in mm;
    ``box`` (first row, end row, first column, end column) crops the slice to it first (``body_crop``)."""
    if config.in_plane_policy == "fixed_size":
        return InPlaneFrame()
    if config.in_plane_policy not in ("keep_aspect", "body_crop"):
        raise ValueError(f"unknown in-plane policy {config.in_plane_policy!r}")
    r0, r1, c0, c1 = box if box is not None else (0, int(shape[0]), 0, int(shape[1]))
    rows, cols = r1 - r0, c1 - c0
    aspect = config.in_plane_size[0] / config.in_plane_size[1]  # wanted height / width, in mm
    height, width = rows * float(spacing[0]), cols * float(spacing[1])
    if height < aspect * width:
        extra_rows, extra_cols = max(0, round(aspect * width / spacing[0]) - rows), 0
    else:
        extra_rows, extra_cols = 0, max(0, round(height / aspect / spacing[1]) - cols)
    return InPlaneFrame((extra_rows // 2 - r0, extra_rows - extra_rows // 2 - (int(shape[0]) - r1),
                         extra_cols // 2 - c0, extra_cols - extra_cols // 2 - (int(shape[1]) - c1)), float(value))


def body_box(slices: np.ndarray, margin: float = 0.05) -> tuple[int, int, int, int]:
    """(first row, end row, first column, end column) of the body on (n, rows, cols) slices, one box for all.

    Body: brighter than 10 % of the way from the 2nd to the 98th percentile (air outside a patient is the
    darkest thing in MR and CT alike; the lungs inside are enclosed by the chest wall, so the box holds them
    even where they are as dark as air). A row or column belongs to the box where at least 5 % as much of it
    is body as in the fullest one, so noise specks in the air do not widen it; then ``margin`` of its size
    is added each side. Every 32nd slice or so is enough for a box: milliseconds on a 512 x 512 x 300 volume.
    """
    n, rows, cols = slices.shape
    sample = np.asarray(slices[:: max(1, n // 32)], dtype=np.float32)
    if sample.size and _safe_factor(sample) != 1.0:  # values near the float32 limit: spreads need float64
        sample = sample.astype(np.float64)
    low, high = np.percentile(sample[:, ::2, ::2], [2, 98])
    if not high > low:
        return (0, rows, 0, cols)
    body = sample > low + 0.1 * (high - low)
    box = []
    for share, size in ((body.mean(axis=(0, 2)), rows), (body.mean(axis=(0, 1)), cols)):
        inside = np.flatnonzero(share >= 0.05 * share.max())
        if inside.size == 0:
            box += [0, size]
            continue
        extra = max(2, int(round(margin * (inside[-1] + 1 - inside[0]))))
        box += [max(0, int(inside[0]) - extra), min(size, int(inside[-1]) + 1 + extra)]
    return tuple(box)


@dataclass(frozen=True)
class PreparedVolume:
    """A volume in the model's canonical voxel order, with slices along the first axis (a view)."""

    slices: np.ndarray           # (n_slices, rows, cols), raw intensities
    scale: IntensityScale
    reorientation: Reorientation
    frame: InPlaneFrame = InPlaneFrame()
    slice_axis_kji: int = 0      # the canonical (k, j, i) array axis the slices were cut across

    @property
    def canonical_geometry(self) -> Geometry:
        return self.reorientation.target

    def slices_of(self, other: np.ndarray) -> np.ndarray:
        """Another array on the same grid (the reference labels) cut into the same slices, without planning
        the reorientation, intensity scaling or body box again; frame them with ``self.frame``."""
        return np.moveaxis(self.reorientation.to_canonical(other), self.slice_axis_kji, 0)


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
        box = body_box(slices) if config.in_plane_policy == "body_crop" else None
        frame = in_plane_frame(slices.shape[1:], in_plane, config, float(scale.apply(np.float64(scale.background))),
                               box)
    return PreparedVolume(slices=slices, scale=scale, reorientation=plan, frame=frame,
                          slice_axis_kji=2 - config.slice_axis)


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
