"""The body_crop in-plane policy: each slice cropped to the body's in-plane extent, then framed as keep_aspect;
geometry round-trips, nothing outside the box is ever lung, NumPy and torch frame alike, other policies are
untouched."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from NeonatalLungSegLib.inference.array_inference import sigmoid
from NeonatalLungSegLib.inference.engine import Segmenter
from NeonatalLungSegLib.geometry import Geometry
from NeonatalLungSegLib.models.model_folder import InputConfig, ModelConfig, read_config
from NeonatalLungSegLib.models.network import build_network
from NeonatalLungSegLib.inference.preprocess import body_box, in_plane_frame, prepare

CROP = InputConfig(in_plane_policy="body_crop", in_plane_size=(64, 64))
KEEP = dataclasses.replace(CROP, in_plane_policy="keep_aspect")


def small_body_volume(seed: int = 0) -> np.ndarray:
    """A bright elliptic body with two dark lungs, filling rows 60..140 and columns 50..170 of 200 x 220, in
    air with noise and a few bright specks (what a naive bounding box would be fooled by)."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:200, 0:220]
    body = ((rows - 100) / 40.0) ** 2 + ((cols - 110) / 60.0) ** 2 < 1
    lungs = (((rows - 100) / 25.0) ** 2 + ((np.abs(cols - 110) - 28) / 18.0) ** 2) < 1
    slice_ = np.where(body, 600.0, 0.0) - 500.0 * lungs
    volume = np.repeat(slice_[None], 12, axis=0) + rng.normal(0, 15, (12, 200, 220))
    volume[3, 5, 5] = volume[7, 190, 210] = 900.0  # specks in the air
    return volume.astype(np.float32)


def test_the_box_holds_the_body_and_ignores_specks_in_the_air() -> None:
    r0, r1, c0, c1 = body_box(small_body_volume())
    assert 52 <= r0 <= 60 and 140 <= r1 <= 148  # rows 60..140 plus a 5 % margin (4 rows)
    assert 40 <= c0 <= 50 and 170 <= c1 <= 180
    assert body_box(np.zeros((3, 40, 50), np.float32)) == (0, 40, 0, 50)  # nothing but air: no crop


@pytest.mark.parametrize("box", [(30, 150, 20, 200), (0, 200, 40, 100), (10, 60, 0, 220)])
def test_the_cropped_frame_is_square_in_millimetres_around_the_box(box) -> None:
    shape, spacing = (200, 220), (1.0, 0.8)
    frame = in_plane_frame(shape, spacing, CROP, box=box)
    top, bottom, left, right = frame.pad
    height = (shape[0] + top + bottom) * spacing[0]
    width = (shape[1] + left + right) * spacing[1]
    assert abs(height - width) <= max(spacing)
    assert -top <= box[0] and shape[0] + bottom >= box[1]  # the box stays whole inside the frame
    assert -left <= box[2] and shape[1] + right >= box[3]
    assert in_plane_frame(shape, spacing, KEEP) == in_plane_frame(shape, spacing, CROP)  # no box: keep_aspect


def test_to_and_from_the_network_round_trips_and_outside_the_box_is_never_lung() -> None:
    frame = in_plane_frame((200, 220), (1.0, 1.0), CROP, box=(50, 150, 40, 180))
    assert frame.pad == (-30, -30, -40, -40)  # 100 x 140 box, squared to 140 x 140 around its centre
    ramp = (np.linspace(0, 1, 200)[:, None] * np.linspace(0, 1, 220)[None, :])[None, None].astype(np.float32)
    for batch in (ramp, torch.from_numpy(ramp)):
        there = frame.to_network(batch, (64, 64))
        assert tuple(there.shape) == (1, 1, 64, 64)
        back = frame.from_network(there, (200, 220))
        back = back.numpy() if isinstance(back, torch.Tensor) else back
        assert back.shape == ramp.shape
        inside = (slice(None), slice(None), slice(32, 168), slice(42, 178))
        assert np.abs(back[inside] - ramp[inside]).max() < 0.03  # resampled twice, on the same grid
        assert sigmoid(back[..., :30, :]).max() < 1e-6 and sigmoid(back[..., :, 180:]).max() < 1e-6
        assert sigmoid(back[..., 31:169, 41:179]).min() > 0.5  # inside the frame: the network's own output
    numpy_net = frame.to_network(ramp, (64, 64))
    torch_net = frame.to_network(torch.from_numpy(ramp), (64, 64)).numpy()
    np.testing.assert_allclose(numpy_net, torch_net, atol=2e-5)


def test_a_body_in_a_wide_field_of_view_gets_more_network_pixels(tiny_model_folder) -> None:
    geometry = Geometry((220, 200, 12), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()))
    volume = small_body_volume()
    keep, crop = prepare(volume, geometry, KEEP), prepare(volume, geometry, CROP)
    width = {}
    for name, prepared in (("keep", keep), ("crop", crop)):
        picture = prepared.frame.to_network(prepared.scale.apply(volume[:1, None]), (64, 64))[0, 0]
        body_cols = np.flatnonzero((picture > 0.5).any(0))
        width[name] = body_cols[-1] - body_cols[0] + 1
    assert width["crop"] > 1.5 * width["keep"]  # 120 of 220 mm wide: 35 -> 60 network pixels
    config = dataclasses.replace(read_config(tiny_model_folder), input=dataclasses.replace(
        read_config(tiny_model_folder).input, in_plane_policy="body_crop"))
    torch.manual_seed(0)
    segmenter = Segmenter(config, build_network(config), torch.device("cpu"), precision="fp32")
    result = segmenter.segment_array(volume, geometry, with_probabilities=True)
    assert result.labels.shape == geometry.array_shape
    r0, r1, c0, c1 = crop.frame.pad[0] * -1, 200 + crop.frame.pad[1], -crop.frame.pad[2], 220 + crop.frame.pad[3]
    outside = np.ones((200, 220), bool)
    outside[max(0, r0):r1, max(0, c0):c1] = False
    assert outside.any() and float(result.probabilities[:, outside].max()) == 0.0
    assert not result.labels[:, outside].any()


def test_the_policy_is_recorded_and_validated() -> None:
    config = ModelConfig(input=CROP)
    assert ModelConfig.from_dict(config.to_dict()).input.in_plane_policy == "body_crop"


def test_training_slices_crop_labels_with_their_images() -> None:
    from neonatal_lung_training.training.slices import volume_slices
    from NeonatalLungSegLib.geometry import array_to_image

    geometry = Geometry((220, 200, 12), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()))
    volume = small_body_volume()
    label = ((volume > 20) & (volume < 300)).astype(np.uint8)  # the dark lungs inside the bright body
    slices = volume_slices(array_to_image(volume, geometry), array_to_image(label, geometry), CROP, case_id=0)
    target, picture = slices.targets[0, 0].numpy() > 0.5, slices.images[0, 0].numpy()
    assert target.sum() > 0.1 * target.size  # the lungs fill far more of the input than under keep_aspect
    assert picture[target].mean() < 0.3 < picture[~target & (picture > 0.3)].mean()  # lung pixels are dark


@pytest.mark.parametrize("slice_axis", [0, 1, 2])
def test_labels_are_cut_into_the_image_slices_without_preparing_them_again(slice_axis) -> None:
    geometry = Geometry((20, 16, 12), (1.0, 1.2, 2.0), (0.0, 0.0, 0.0), (-1, 0, 0, 0, 0, 1, 0, 1, 0))
    config = dataclasses.replace(CROP, slice_axis=slice_axis)
    label = np.random.default_rng(slice_axis).integers(0, 3, geometry.array_shape).astype(np.float32)
    prepared = prepare(np.random.default_rng(9).random(geometry.array_shape).astype(np.float32), geometry, config)
    np.testing.assert_array_equal(prepared.slices_of(label), prepare(label, geometry, config).slices)
