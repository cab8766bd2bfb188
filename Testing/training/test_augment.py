"""Chest-shape augmentation (shear, elastic warp): the label must move exactly with its image."""

from __future__ import annotations

import pytest
import torch

from neonatal_lung_training.training.augment import AugmentConfig, SliceAugmenter, build_transform

GEOMETRY_ONLY = dict(bias_field_probability=0.0, rician_noise_probability=0.0, gamma_probability=0.0,
                     breathing_blur_probability=0.0, streak_probability=0.0, low_resolution_probability=0.0)


def _blobs(size: int = 64) -> torch.Tensor:
    """Two lung-like ellipses on a batch of 4 slices, values in [0, 1]."""
    y, x = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                          indexing="ij")
    right = ((x - 20) / 10) ** 2 + ((y - 32) / 18) ** 2 <= 1
    left = ((x - 44) / 9) ** 2 + ((y - 32) / 17) ** 2 <= 1
    return (right | left).float()[None, None].repeat(4, 1, 1, 1)


@pytest.mark.parametrize("shape_terms", [dict(shear_fraction=0.15),
                                         dict(elastic_probability=1.0, elastic_magnitude=(2.0, 4.0))])
def test_shape_augmentation_moves_label_with_image(shape_terms: dict) -> None:
    config = AugmentConfig(geometry_probability=1.0, rotation_degrees=0.0, translation_fraction=0.0,
                           zoom_fraction=0.0, **GEOMETRY_ONLY, **shape_terms)
    slices = _blobs()
    images, targets = SliceAugmenter(config, (64, 64), seed=3)(slices.clone(), slices.clone())
    assert images.shape == targets.shape == slices.shape
    # The same warp on the same values: image and label agree voxel for voxel, and the shape did change.
    assert torch.allclose(images, targets, atol=1e-5)
    assert (images - slices).abs().sum() > 0.02 * slices.sum()


def test_poster_recipe_is_unchanged_by_default() -> None:
    config = AugmentConfig()
    assert config.shear_fraction == 0.0 and config.elastic_probability == 0.0
    names = [type(t).__name__ for t in build_transform(config, (64, 64), seed=0).transforms]
    assert "Rand2DElasticd" not in names


@pytest.mark.parametrize("bad", [dict(shear_fraction=1.0), dict(elastic_probability=1.5),
                                 dict(elastic_magnitude=(3.0, 1.0)), dict(elastic_spacing=0.0)])
def test_bad_shape_settings_are_refused(bad: dict) -> None:
    with pytest.raises(ValueError, match="augment"):
        AugmentConfig(**bad)


def test_elastic_warp_is_refused_for_3d_windows() -> None:
    with pytest.raises(ValueError, match="2D slices only"):
        build_transform(AugmentConfig(elastic_probability=0.5), (32, 64, 64), seed=0)


def test_model_card_recipe_names_the_augmentation_actually_used() -> None:
    from neonatal_lung_training.training.lineage import recipe

    assert "zoom 10 %" in recipe(AugmentConfig()) and "shear" not in recipe(AugmentConfig())
    shaped = recipe(AugmentConfig(zoom_fraction=0.2, shear_fraction=0.12, elastic_probability=0.3))
    assert "zoom 20 %" in shaped and "shear 12 %" in shaped and "elastic warp 1-3 px on 30 %" in shaped
    assert recipe(AugmentConfig(enabled=False)).endswith("no augmentation")
    assert "streaks" in recipe(AugmentConfig()) and "streaks" not in recipe(AugmentConfig(streak_probability=0.0))
