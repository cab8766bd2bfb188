"""Batch augmentation on tensors: the published method's geometry plus a little MRI intensity variation.

Done on whole batches with one ``affine_grid``/``grid_sample`` call, because on a 2-core CPU per-sample
transforms would cost more than the forward pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    rotation_degrees: float = 15.0
    translation_fraction: float = 0.10
    zoom_fraction: float = 0.10
    gamma_range: tuple[float, float] = (0.7, 1.5)
    noise_std: float = 0.03
    probability: float = 0.8


def augment_batch(images: torch.Tensor, targets: torch.Tensor, config: AugmentConfig,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random rotation, translation, zoom (same for image and target), then gamma and noise (image only)."""
    n = images.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=generator)

    active = torch.rand(n, generator=generator) < config.probability
    angle = torch.where(active, uniform(-1, 1) * math.radians(config.rotation_degrees), torch.zeros(n))
    zoom = torch.where(active, uniform(1 - config.zoom_fraction, 1 + config.zoom_fraction), torch.ones(n))
    shift = torch.where(active[:, None], (torch.rand(n, 2, generator=generator) * 2 - 1)
                        * 2 * config.translation_fraction, torch.zeros(n, 2))  # grid spans [-1, 1]
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    targets = F.grid_sample(targets, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    low, high = config.gamma_range
    gamma = torch.exp(uniform(math.log(low), math.log(high)))[:, None, None, None]
    images = images.clamp(min=0) ** gamma
    images = images + config.noise_std * torch.rand(n, 1, 1, 1, generator=generator) * torch.randn(
        images.shape, generator=generator)
    return images, targets
