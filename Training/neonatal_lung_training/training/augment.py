"""Slice augmentation with MONAI transforms: the published method's geometry plus MRI degradations.

The geometry (rotation ±15°, translation ±10 %, zoom ±10 %) is the poster's recipe. The degradations are
what separates a synthetic or CT-trained model from real neonatal MRI: coil bias fields, Rician noise at low
SNR, contrast (gamma) differences between protocols, breathing blur along one direction, radial-UTE streaks
and ringing, and thicker or lower-resolution acquisitions. They touch the image only; the target moves with
the geometry alone, so a label never disagrees with its image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from monai.transforms import (Compose, Rand2DElasticd, RandAdjustContrastd, RandAffined, RandBiasFieldd,
                              RandGaussianSmoothd, RandGibbsNoised, RandKSpaceSpikeNoised, RandRicianNoised,
                              RandSimulateLowResolutiond, ScaleIntensityRanged)


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges; ``enabled=False`` trains on the plain slices."""

    enabled: bool = True
    rotation_degrees: float = 15.0
    translation_fraction: float = 0.10
    zoom_fraction: float = 0.10
    geometry_probability: float = 0.8
    # Beyond the poster: chest-shape variation. Shear (fraction, each in-plane term) rides on the affine;
    # the smooth elastic warp (2D only; displacement in pixels of the network grid, control points
    # elastic_spacing pixels apart) stands in for individual lung shape. Both off by default.
    shear_fraction: float = 0.0
    elastic_probability: float = 0.0
    elastic_magnitude: tuple[float, float] = (1.0, 3.0)
    elastic_spacing: float = 24.0
    bias_field_probability: float = 0.3
    rician_noise_probability: float = 0.3
    rician_noise_std: float = 0.05
    gamma_probability: float = 0.4
    gamma_range: tuple[float, float] = (0.7, 1.5)
    breathing_blur_probability: float = 0.2
    streak_probability: float = 0.1
    low_resolution_probability: float = 0.2

    def __post_init__(self) -> None:
        for name in ("geometry_probability", "bias_field_probability", "rician_noise_probability",
                     "gamma_probability", "breathing_blur_probability", "streak_probability",
                     "low_resolution_probability", "elastic_probability"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"augment.{name} must be within [0, 1], got {value}")
        if not 0 <= self.rotation_degrees <= 180 or not 0 <= self.zoom_fraction < 1:
            raise ValueError("augment.rotation_degrees must be 0..180 and augment.zoom_fraction 0..1")
        if not 0 <= self.shear_fraction < 1:
            raise ValueError(f"augment.shear_fraction must be within [0, 1), got {self.shear_fraction}")
        low, high = self.elastic_magnitude
        if not 0 <= low <= high or self.elastic_spacing <= 0:
            raise ValueError("augment.elastic_magnitude must be [low, high] with 0 <= low <= high, "
                             "and augment.elastic_spacing > 0")

    def describe(self) -> str:
        """The augmentation in words, naming only the terms that can fire (for model cards)."""
        if not self.enabled:
            return "no augmentation"
        terms = []
        if self.geometry_probability > 0:
            terms += [f"rotation {self.rotation_degrees:g} deg", f"translation {100 * self.translation_fraction:g} %",
                      f"zoom {100 * self.zoom_fraction:g} %"]
            if self.shear_fraction > 0:
                terms.append(f"shear {100 * self.shear_fraction:g} %")
        if self.elastic_probability > 0:
            low, high = self.elastic_magnitude
            terms.append(f"elastic warp {low:g}-{high:g} px on {100 * self.elastic_probability:g} % of slices")
        for name, probability in (("bias field", self.bias_field_probability),
                                  ("Rician noise", self.rician_noise_probability),
                                  ("gamma", self.gamma_probability),
                                  ("breathing blur", self.breathing_blur_probability),
                                  ("streaks", self.streak_probability),
                                  ("low resolution", self.low_resolution_probability)):
            if probability > 0:
                terms.append(name)
        return "MONAI augmentation: " + ", ".join(terms) if terms else "no augmentation"


def build_transform(config: AugmentConfig, size: tuple[int, ...], seed: int) -> Compose:
    """A seeded MONAI pipeline over {"image": (C, *size), "label": (1, *size)} tensors.

    ``size`` is (H, W) for slices or (D, H, W) for 3D windows (D along the slice axis). In 3D the geometry
    stays in-plane as in 2D (rotation about the slice axis, in-plane translation; zoom in all three
    directions, as slice spacing varies between protocols) and the breathing blur runs along the slice axis,
    the direction a free-breathing acquisition smears.
    """
    if len(size) not in (2, 3):
        raise ValueError(f"size must be (H, W) or (D, H, W), got {tuple(size)}")
    keys, image = ["image", "label"], ["image"]
    both_modes = ["bilinear", "bilinear"]  # soft targets stay soft; BCE + Dice take them as they are
    angle = math.radians(config.rotation_degrees)
    if len(size) == 2:
        rotate, shift = angle, [config.translation_fraction * s for s in size]
        blur = {"sigma_x": (0.1, 0.3), "sigma_y": (0.8, 2.0)}  # motion blurs along one in-plane direction only
        upsample = "bilinear"
        shear = (config.shear_fraction,) * 2
    else:
        if config.elastic_probability > 0:
            raise ValueError("augment.elastic_probability applies to 2D slices only; set it to 0 for 3D")
        # MONAI's first 3D angle turns the plane of the last two axes, i.e. in-plane about the slice axis.
        rotate, shift = (angle, 0.0, 0.0), [0.0] + [config.translation_fraction * s for s in size[1:]]
        blur = {"sigma_x": (0.8, 2.0), "sigma_y": (0.1, 0.3), "sigma_z": (0.1, 0.3)}  # across slices
        upsample = "trilinear"
        shear = (config.shear_fraction,) * 6
    transforms = [
        RandAffined(keys, prob=config.geometry_probability, rotate_range=rotate,
                    translate_range=shift, scale_range=(config.zoom_fraction,) * len(size),
                    shear_range=shear if config.shear_fraction > 0 else None,
                    mode=both_modes, padding_mode="zeros"),
        *_elastic(config, keys, both_modes),
        RandBiasFieldd(image, prob=config.bias_field_probability, coeff_range=(0.0, 0.3)),
        RandGaussianSmoothd(image, prob=config.breathing_blur_probability, **blur),
        RandKSpaceSpikeNoised(image, prob=config.streak_probability, intensity_range=(9.0, 11.0)),
        RandGibbsNoised(image, prob=config.streak_probability, alpha=(0.3, 0.7)),
        RandSimulateLowResolutiond(image, prob=config.low_resolution_probability, zoom_range=(0.5, 0.9),
                                   upsample_mode=upsample),
        ScaleIntensityRanged(image, a_min=0.0, a_max=1.0, b_min=0.0, b_max=1.0, clip=True),
        RandAdjustContrastd(image, prob=config.gamma_probability, gamma=config.gamma_range),
        RandRicianNoised(image, prob=config.rician_noise_probability, std=config.rician_noise_std,
                         relative=False, sample_std=True),
    ]
    pipeline = Compose(transforms)
    pipeline.set_random_state(seed=seed % (2**32))
    return pipeline


def _elastic(config: AugmentConfig, keys: list[str], modes: list[str]) -> list:
    """The elastic warp as a list of zero or one transform, so the pipeline stays unchanged when it is off."""
    if config.elastic_probability == 0:
        return []
    return [Rand2DElasticd(keys, spacing=(config.elastic_spacing,) * 2, magnitude_range=config.elastic_magnitude,
                           prob=config.elastic_probability, mode=modes, padding_mode="zeros")]


class SliceAugmenter:
    """Applies the pipeline per slice (or per 3D window) of a batch (MONAI's random transforms are per-sample)."""

    def __init__(self, config: AugmentConfig, size: tuple[int, ...], seed: int) -> None:
        self.config = config
        self.pipeline = build_transform(config, size, seed) if config.enabled else None

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.pipeline is None:
            return images, targets
        out_images, out_targets = [], []
        for image, target in zip(images, targets):
            sample = self.pipeline({"image": image, "label": target})
            out_images.append(torch.as_tensor(sample["image"], dtype=torch.float32))
            out_targets.append(torch.as_tensor(sample["label"], dtype=torch.float32).clamp(0, 1))
        return torch.stack(out_images), torch.stack(out_targets)

    def reseed(self, seed: int) -> None:
        """Seed per epoch (and rank), so a run resumed at an epoch boundary replays the same stream."""
        if self.pipeline is not None:
            self.pipeline.set_random_state(seed=seed % (2**32))
