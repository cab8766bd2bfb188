"""Preprocessing is a contract between training and inference: check each step does what the config says."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from NeonatalLungSegLib.geometry import Geometry
from NeonatalLungSegLib.models.model_folder import InputConfig
from NeonatalLungSegLib.inference.preprocess import intensity_scale, network_input, prepare, resize_batch, slice_stack


def test_percentile_scaling_maps_the_percentiles_to_0_and_1() -> None:
    array = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    scale = intensity_scale(array, InputConfig(lower_percentile=10, upper_percentile=90))
    np.testing.assert_allclose([scale.offset, scale.offset + scale.scale], np.percentile(array, [10, 90]))
    out = scale.apply(array)
    assert out.min() == 0.0 and out.max() == 1.0


def test_zscore_scaling_is_not_clipped() -> None:
    array = np.random.default_rng(0).normal(50, 10, (8, 16, 16)).astype(np.float32)
    out = intensity_scale(array, InputConfig(intensity_method="zscore")).apply(array)
    assert abs(out.mean()) < 1e-3 and abs(out.std() - 1) < 1e-3 and out.min() < -2


def test_slice_stack_clamps_neighbours_at_the_ends() -> None:
    slices = np.arange(5, dtype=np.float32)[:, None, None] * np.ones((5, 2, 2), np.float32)
    stack = slice_stack(slices, np.array([0, 2, 4]), channels=3)
    assert stack.shape == (3, 3, 2, 2)
    np.testing.assert_array_equal(stack[:, :, 0, 0], [[0, 0, 1], [1, 2, 3], [3, 4, 4]])


def test_resize_is_identity_at_size_and_preserves_mean_when_shrinking() -> None:
    batch = torch.rand(2, 1, 64, 64)
    assert resize_batch(batch, (64, 64)) is batch
    small = resize_batch(batch, (32, 32))
    assert small.shape == (2, 1, 32, 32)
    assert abs(float(small.mean() - batch.mean())) < 1e-3


@pytest.mark.parametrize("slice_axis, expected_shape", [(2, (6, 5, 4)), (1, (5, 6, 4)), (0, (4, 6, 5))])
def test_prepare_takes_slices_across_the_configured_axis(slice_axis: int, expected_shape) -> None:
    geometry = Geometry((4, 5, 6), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()))
    array = np.random.default_rng(0).random(geometry.array_shape).astype(np.float32)
    prepared = prepare(array, geometry, InputConfig(slice_axis=slice_axis))
    assert prepared.slices.shape == expected_shape
    tensor = network_input(slice_stack(prepared.slices, np.arange(2), 1), prepared.scale,
                           InputConfig(in_plane_size=(32, 32)), torch.device("cpu"))
    assert tensor.shape == (2, 1, 32, 32) and tensor.dtype == torch.float32


def test_prepare_reorients_a_flipped_volume_to_lps() -> None:
    geometry = Geometry((4, 5, 6), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), tuple(np.diag([-1.0, 1, 1]).ravel()))
    array = np.random.default_rng(0).random(geometry.array_shape).astype(np.float32)
    prepared = prepare(array, geometry, InputConfig())
    np.testing.assert_array_equal(prepared.slices, array[:, :, ::-1])
    np.testing.assert_allclose(prepared.canonical_geometry.direction_matrix, np.eye(3))
