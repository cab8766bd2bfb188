"""Volumetric (3D) training: whole cases at the model's in-plane size, windows around lung slices.

A 3D model (``input.spatial_dims`` 3) sees a window of ``patch_slices`` consecutive slices, each prepared
exactly as a 2D model's slice (``NeonatalLungSegLib.inference.volume_inference.stacked_input`` over the engine's
``preprocess``). Every case is prepared once and kept in memory as one (slices, H, W) tensor with its soft
lung target. A training item is one slice of the same selection the 2D path uses (every lung slice and a
seeded ``keep_empty_fraction`` of the lung-free ones); its window is the ``patch_slices`` slices centred on
it, moved inside the volume at the ends, and padded symmetrically with zeros when the volume is thinner
than a window, as MONAI's sliding window pads at inference. So the sampling is biased to windows holding
lung, an epoch is one window per selected slice, and a shuffled epoch is as deterministic as the 2D one,
which resume relies on.

``VolumeSet.images[index]`` and ``.targets[index]`` give (B, 1, D, H, W) windows, so ``train.py``'s loop
is the same for both dimensionalities; validation (``volume_scores``) runs the engine's sliding-window
inference over whole validation volumes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from NeonatalLungSegLib.geometry import image_to_array
from NeonatalLungSegLib.models.model_folder import InputConfig
from NeonatalLungSegLib.inference.preprocess import prepare
from NeonatalLungSegLib.dataset.training_folder import CaseRecord, TrainingFolder
from NeonatalLungSegLib.inference.volume_inference import sliding_window_logits, stacked_input

from ..evaluation.metrics import PooledOverlap
from .config import TrainConfig


def network_args(config: TrainConfig) -> tuple[str, dict[str, Any]]:
    """MONAI architecture name and keyword arguments for the model folder (in/out channels are derived)."""
    if config.monai_network == "BasicUNet":
        features = list(config.monai_channels)
        if len(features) == 5:
            features.append(features[0])  # the last up-block's width, as in MONAI's default
        return "BasicUNet", {"spatial_dims": 3, "features": features, "norm": config.monai_norm}
    return "UNet", {"spatial_dims": 3, "channels": list(config.monai_channels),
                    "strides": list(config.monai_strides), "num_res_units": config.monai_res_units,
                    "norm": config.monai_norm}


def sample_size(config: InputConfig) -> tuple[int, ...]:
    """The spatial size of one training sample: (H, W) for slices, (D, H, W) for 3D windows."""
    size = tuple(int(s) for s in config.in_plane_size)
    return (config.patch_slices, *size) if config.spatial_dims == 3 else size


def window_bounds(centre: int, slices: int, depth: int) -> tuple[int, int, int, int]:
    """(start, stop, pad_before, pad_after) of the window around ``centre`` in a volume of ``slices``."""
    if slices <= depth:
        missing = depth - slices
        return 0, slices, missing // 2, missing - missing // 2  # as sliding_window_inference pads
    start = min(max(centre - depth // 2, 0), slices - depth)
    return start, start + depth, 0, 0


class _Windows:
    """``windows[index]`` -> (B, 1, D, H, W) float32 windows of one per-case tensor list."""

    def __init__(self, owner: VolumeSet, tensors: list[torch.Tensor]) -> None:
        self.owner, self.tensors = owner, tensors

    def __getitem__(self, index: torch.Tensor | np.ndarray | list[int]) -> torch.Tensor:
        rows = self.owner.items[np.asarray(index, dtype=np.int64).reshape(-1)]
        depth = self.owner.config.patch_slices
        out = []
        for volume, centre in rows:
            data = self.tensors[volume]
            start, stop, before, after = window_bounds(int(centre), len(data), depth)
            window = data[start:stop]
            if before or after:
                window = torch.nn.functional.pad(window, (0, 0, 0, 0, before, after))
            out.append(window.float())
        return torch.stack(out)[:, None]


@dataclass
class VolumeSet:
    """Prepared cases and the training items (case index, centre slice), one per selected slice."""

    volumes: list[torch.Tensor]   # (slices, H, W) float32 network input per case
    lungs: list[torch.Tensor]     # (slices, H, W) float32 soft lung target per case
    items: np.ndarray             # (N, 2) int64: case index, centre slice
    config: InputConfig

    def __post_init__(self) -> None:
        self.images = _Windows(self, self.volumes)
        self.targets = _Windows(self, self.lungs)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def case_ids(self) -> np.ndarray:
        return self.items[:, 0]


def load_volumes(folder: TrainingFolder, cases: list[CaseRecord], config: InputConfig,
                 keep_empty_fraction: float, seed: int) -> VolumeSet:
    """Prepare every case once; items are its lung slices plus a seeded share of lung-free ones (as 2D)."""
    if not cases:
        raise ValueError("no cases to load")
    volumes, lungs, items = [], [], []
    for index, record in enumerate(cases):
        image, label = folder.read_case(record)
        array, geometry = image_to_array(image)
        label_array, label_geometry = image_to_array(label)
        if label_geometry.size != geometry.size:
            raise ValueError(f"case {record.case_id}: label size {label_geometry.size} != image size "
                             f"{geometry.size}")
        prepared = prepare(array.astype(np.float32), geometry, config)
        lung_slices = prepared.slices_of((label_array > 0).astype(np.float32))
        volumes.append(stacked_input(prepared.slices, prepared.scale, config, chunk=16,
                                     frame=prepared.frame)[0, 0].contiguous())
        target = torch.empty((len(lung_slices), *config.in_plane_size), dtype=torch.float32)
        for start in range(0, len(lung_slices), 16):
            chunk = torch.from_numpy(np.ascontiguousarray(lung_slices[start:start + 16, None]))
            target[start:start + 16] = prepared.frame.to_network(chunk, config.in_plane_size, 0.0).clamp_(0, 1)[:, 0]
        lungs.append(target)
        has_lung = lung_slices.reshape(len(lung_slices), -1).any(axis=1)
        rng = np.random.default_rng([seed, index])
        keep = np.flatnonzero(has_lung | (rng.random(len(has_lung)) < keep_empty_fraction))
        items.append(np.stack([np.full(len(keep), index), keep], axis=1))
    return VolumeSet(volumes, lungs, np.concatenate(items).astype(np.int64), config)


def volume_scores(network: torch.nn.Module, data: VolumeSet, loss_fn: torch.nn.Module,
                  batch_size: int) -> tuple[float, float, float]:
    """Validation loss (mean over volumes), Dice and IoU pooled over all validation voxels at model size,
    with the engine's sliding-window inference over whole volumes."""
    network.eval()
    device = next(network.parameters()).device
    windows = max(1, batch_size // data.config.patch_slices)
    overlap, losses = PooledOverlap(), []
    with torch.inference_mode():
        for volume, lung in zip(data.volumes, data.lungs):
            logits = sliding_window_logits(network, volume[None, None], data.config, device, windows)
            target = lung[None, None]
            losses.append(float(loss_fn(logits, target)))
            overlap.add(logits > 0, target >= 0.5)
    return float(np.mean(losses)), overlap.dice, overlap.iou
