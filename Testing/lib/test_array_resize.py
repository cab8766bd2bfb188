"""The torch-free preprocessing of the int8 path (issue 16) computes what torch's computes: resizing, padding,
framing and the whole network input, on random batches and on the bundled sample's real slices."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
import torch.nn.functional as F

from conftest import BUNDLED_MODEL, BUNDLED_SAMPLE
from NeonatalLungSegLib.inference.array_resize import pad_array, resize_array, resize_weights
from NeonatalLungSegLib.geometry import image_to_array
from NeonatalLungSegLib.models.model_folder import read_config
from NeonatalLungSegLib.inference.preprocess import InPlaneFrame, network_input, prepare, resize_batch, slice_stack


def torch_resize(batch: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The reference: ``preprocess.resize_batch`` on a tensor."""
    return resize_batch(torch.from_numpy(batch), size).numpy()


@pytest.mark.parametrize("shape, size", [
    ((192, 192), (128, 128)),   # the bundled sample: shrink both axes (antialiased)
    ((96, 80), (128, 128)),     # enlarge both (plain bilinear)
    ((300, 90), (128, 128)),    # shrink one axis, enlarge the other (antialias applies to both, as in torch)
    ((128, 128), (512, 384)),   # logits back to a large slice
    ((7, 513), (128, 128)),     # odd and extreme ratios
    ((1, 5), (3, 2)),           # a one-pixel axis
])
def test_resize_matches_torch(shape: tuple[int, int], size: tuple[int, int]) -> None:
    batch = np.random.default_rng(sum(shape)).normal(size=(3, 2, *shape)).astype(np.float32)
    got, want = resize_array(batch, size), torch_resize(batch, size)
    assert got.shape == want.shape == (3, 2, *size) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-5)


def test_resize_weights_are_cached_read_only_and_sum_to_one() -> None:
    for antialias in (False, True):
        weights = resize_weights(192, 128, antialias)
        assert resize_weights(192, 128, antialias) is weights and not weights.flags.writeable
        np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-6)
    assert resize_array(np.ones((1, 1, 4, 4), np.float32), (4, 4)).shape == (1, 1, 4, 4)
    with pytest.raises(ValueError, match="sizes"):
        resize_weights(0, 4, False)


def test_padding_and_framing_match_torch() -> None:
    batch = np.random.default_rng(1).random((2, 3, 50, 70)).astype(np.float32)
    pad = (3, 4, 0, 9)
    want = F.pad(torch.from_numpy(batch), (pad[2], pad[3], pad[0], pad[1]), value=-0.5).numpy()
    np.testing.assert_array_equal(pad_array(batch, pad, -0.5), want)
    frame = InPlaneFrame(pad=pad, value=0.25)
    np.testing.assert_allclose(frame.to_network(batch, (128, 128)),
                               frame.to_network(torch.from_numpy(batch), (128, 128)).numpy(), atol=2e-5)
    logits = np.random.default_rng(2).normal(size=(2, 1, 128, 128)).astype(np.float32)
    back = frame.from_network(logits, (50, 70))
    assert back.shape == (2, 1, 50, 70)
    np.testing.assert_allclose(back, frame.from_network(torch.from_numpy(logits), (50, 70)).numpy(), atol=2e-5)


def test_network_input_without_torch_equals_torch_on_the_bundled_sample() -> None:
    config = read_config(BUNDLED_MODEL).input
    array, geometry = image_to_array(sitk.ReadImage(str(BUNDLED_SAMPLE)))
    prepared = prepare(array.astype(np.float32), geometry, config)
    indices = np.arange(30, 38)
    stack = slice_stack(prepared.slices, indices, config.channels)
    got = network_input(stack, prepared.scale, config, None, prepared.frame)
    want = network_input(stack, prepared.scale, config, torch.device("cpu"), prepared.frame).numpy()
    assert isinstance(got, np.ndarray) and got.shape == want.shape == (8, config.channels, *config.in_plane_size)
    np.testing.assert_allclose(got, want, atol=2e-5)
