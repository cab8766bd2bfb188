"""Volumetric (3D) inference: sliding windows of a MONAI network over the canonical volume.

Each slice is reoriented, normalised and resized in-plane by the same functions as the slice-wise path
(``preprocess.prepare``, ``network_input``, ``resize_batch``), so a 3D model sees its slices exactly as a
2D model would; the slices are then stacked into one (1, 1, slices, rows, cols) volume at the model's
in-plane size, and ``monai.inferers.sliding_window_inference`` runs the network over windows of
``patch_slices`` slices by ``in_plane_size``, blended with Gaussian weights where windows overlap. The
blended logits are resized back to the volume's own in-plane size slice chunk by slice chunk.

Memory: the stacked input and the blended logits are held on the CPU at the model's in-plane size (a
300-slice volume at 128 x 128 is 20 MB each); the device holds one batch of windows. MONAI is imported here
only, so 2D models never need it.
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable

import numpy as np
import torch

from ..errors import Cancelled
from ..geometry import Geometry, Reorientation
from ..models.model_folder import InputConfig
from .preprocess import InPlaneFrame, IntensityScale, network_input, prepare

ProgressCallback = Callable[[float], None]
CancelCheck = Callable[[], bool]


def window_count(slices: int, config: InputConfig) -> int:
    """Windows sliding_window_inference runs over ``slices`` slices (in-plane there is exactly one).

    The same rule as MONAI's scan interval: a step of ``patch_slices * (1 - overlap)`` slices (at least one),
    the last window flush with the end; a volume thinner than a window is padded to one window.
    """
    depth = config.patch_slices
    if slices <= depth:
        return 1
    step = max(1, int(depth * (1 - config.window_overlap)))
    return math.ceil((slices - depth) / step) + 1


def stacked_input(slices: np.ndarray, scale: IntensityScale, config: InputConfig, chunk: int,
                  frame: InPlaneFrame = InPlaneFrame()) -> torch.Tensor:
    """(1, 1, n_slices, rows, cols) float32 on the CPU: every slice prepared as the 2D path prepares it."""
    out = torch.empty((1, 1, len(slices), *config.in_plane_size), dtype=torch.float32)
    for start in range(0, len(slices), chunk):
        stop = min(start + chunk, len(slices))
        out[0, 0, start:stop] = network_input(slices[start:stop, None], scale, config, torch.device("cpu"),
                                              frame)[:, 0]
    return out


def sliding_window_logits(network: torch.nn.Module, volume: torch.Tensor, config: InputConfig,
                          device: torch.device, windows_per_batch: int = 1,
                          autocast: contextlib.AbstractContextManager | None = None,
                          before: Callable[[int], None] | None = None,
                          after: Callable[[int], None] | None = None) -> torch.Tensor:
    """Blended float32 logits (B, 1, D, H, W) on the CPU for a (B, 1, D, H, W) CPU volume at model size.

    ``before(n)`` is called before each forward pass of ``n`` windows (it may raise: that is how cancel
    works) and ``after(n)`` after it (that is where progress is counted).
    """
    from monai.inferers import sliding_window_inference

    context = autocast if autocast is not None else contextlib.nullcontext()

    def predictor(windows: torch.Tensor) -> torch.Tensor:
        if before is not None:
            before(len(windows))
        with context:
            logits = network(windows).float()
        if after is not None:
            after(len(windows))
        return logits

    roi = (config.patch_slices, *config.in_plane_size)
    return sliding_window_inference(volume, roi_size=roi, sw_batch_size=windows_per_batch, predictor=predictor,
                                    overlap=config.window_overlap, mode="gaussian", padding_mode="constant",
                                    cval=0.0, sw_device=device, device=torch.device("cpu"), progress=False)


def predict_volume(network: torch.nn.Module, array: np.ndarray, geometry: Geometry, config: InputConfig,
                   device: torch.device, batch_size: int, autocast: contextlib.AbstractContextManager,
                   progress: ProgressCallback | None = None,
                   cancel: CancelCheck | None = None) -> tuple[np.ndarray, Reorientation]:
    """Lung probability (float16) on the canonical grid, like ``Segmenter.predict`` for 2D models.

    ``batch_size`` counts slices as in 2D: ``batch_size // patch_slices`` windows (at least one) go through
    the network together; the blended logits are resized back ``batch_size`` slices at a time. Progress is
    reported after every window batch (reaching 1.0 with the last) and cancel polled before each.
    """
    prepared = prepare(array, geometry, config)
    slices = prepared.slices
    if cancel is not None and cancel():
        raise Cancelled("segmentation cancelled; nothing was written")
    total = window_count(len(slices), config)
    done = [0]

    def before(count: int) -> None:
        if cancel is not None and cancel():
            raise Cancelled("segmentation cancelled; nothing was written")

    def after(count: int) -> None:
        done[0] += count
        if progress is not None:
            progress(min(done[0] / total, 1.0))

    with torch.inference_mode():
        volume = stacked_input(slices, prepared.scale, config, batch_size, prepared.frame)
        logits = sliding_window_logits(network, volume, config, device,
                                       max(1, batch_size // config.patch_slices), autocast, before, after)
        del volume
        out_slices = np.empty(slices.shape, dtype=np.float16)
        for start in range(0, len(slices), batch_size):
            stop = min(start + batch_size, len(slices))
            chunk = prepared.frame.from_network(logits[0, :, start:stop].transpose(0, 1).to(device),
                                                slices.shape[1:])
            out_slices[start:stop] = torch.sigmoid(chunk[:, 0]).to("cpu", torch.float16).numpy()
    if progress is not None and done[0] < total:  # never left short of 1.0, whatever MONAI's window count
        progress(1.0)
    canonical = np.moveaxis(out_slices, 0, 2 - config.slice_axis)
    return canonical, prepared.reorientation
