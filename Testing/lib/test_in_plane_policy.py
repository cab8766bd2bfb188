"""The in-plane policy: keep_aspect frames a slice without distorting it; fixed_size stays bit-identical."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from NeonatalLungSegLib.inference.engine import Segmenter
from NeonatalLungSegLib.geometry import Geometry
from NeonatalLungSegLib.models.model_folder import InputConfig, ModelConfig
from NeonatalLungSegLib.models.network import build_network
from NeonatalLungSegLib.inference.preprocess import (InPlaneFrame, in_plane_frame, network_input, prepare, resize_batch,
                                           slice_stack)

KEEP = InputConfig(in_plane_policy="keep_aspect", in_plane_size=(64, 64))


@pytest.mark.parametrize("shape, spacing", [((60, 96), (3.9, 3.9)), ((96, 60), (3.9, 3.9)),
                                            ((128, 128), (0.5, 1.0)), ((100, 100), (1.0, 1.0)),
                                            ((37, 81), (2.2, 0.7))])
def test_keep_aspect_frame_has_the_network_aspect_in_millimetres(shape, spacing) -> None:
    frame = in_plane_frame(shape, spacing, KEEP)
    top, bottom, left, right = frame.pad
    assert min(frame.pad) >= 0 and abs(top - bottom) <= 1 and abs(left - right) <= 1
    assert (top + bottom == 0) or (left + right == 0)  # only the short side is padded
    height = (shape[0] + top + bottom) * spacing[0]
    width = (shape[1] + left + right) * spacing[1]
    assert abs(height - width) <= max(spacing)  # square in mm, to within one voxel


def test_fixed_size_frame_is_no_padding() -> None:
    assert in_plane_frame((60, 96), (3.9, 3.9), InputConfig()) == InPlaneFrame()


def test_a_physical_square_stays_square_at_network_input() -> None:
    """A 40 x 40 mm bright square on a 60 x 96 grid of 1 x 0.5 mm voxels: stretched under fixed_size, square
    under keep_aspect."""
    geometry = Geometry((96, 60, 1), (0.5, 1.0, 1.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()))
    array = np.zeros(geometry.array_shape, np.float32)
    array[0, 10:50, 8:88] = 100.0   # 40 rows x 1 mm, 80 columns x 0.5 mm: a 40 x 40 mm square
    extents = {}
    for name, config in (("fixed", dataclasses.replace(KEEP, in_plane_policy="fixed_size")), ("keep", KEEP)):
        prepared = prepare(array, geometry, config)
        tensor = network_input(slice_stack(prepared.slices, np.arange(1), 1), prepared.scale, config,
                               torch.device("cpu"), prepared.frame)[0, 0] > 0.5
        rows, cols = np.flatnonzero(tensor.any(1).numpy()), np.flatnonzero(tensor.any(0).numpy())
        extents[name] = (rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)
    assert abs(extents["keep"][0] - extents["keep"][1]) <= 1
    assert extents["fixed"][1] > 1.2 * extents["fixed"][0]  # the old policy distorts it (42 x 54)


def test_padding_is_undone_on_the_way_back() -> None:
    frame = in_plane_frame((30, 50), (1.0, 1.0), KEEP, value=0.0)
    assert frame.pad[:2] == (10, 10) and frame.pad[2:] == (0, 0)
    slice_ = (torch.linspace(0, 1, 30)[:, None] * torch.linspace(0, 1, 50)[None, :])[None, None]
    back = frame.from_network(frame.to_network(slice_, (64, 64)), (30, 50))
    assert back.shape == slice_.shape
    assert float((back - slice_).abs()[..., 2:-2, 2:-2].max()) < 0.02  # resampled twice, on the same grid
    marker = torch.zeros(1, 1, 30, 50)
    marker[..., 5:10, 40:45] = 1.0
    moved = frame.from_network(frame.to_network(marker, (64, 64)), (30, 50))[0, 0] > 0.5
    rows, cols = np.nonzero(moved.numpy())
    assert 4 <= rows.min() and rows.max() <= 10 and 39 <= cols.min() and cols.max() <= 45


def test_labels_are_padded_with_background_like_their_images() -> None:
    from neonatal_lung_training.training.slices import volume_slices
    from NeonatalLungSegLib.geometry import array_to_image

    geometry = Geometry((64, 32, 3), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()))
    image = np.full(geometry.array_shape, 50.0, np.float32)
    label = np.zeros(geometry.array_shape, np.uint8)
    label[:, 8:24, 10:30], image[:, 8:24, 10:30] = 1, 5.0
    slices = volume_slices(array_to_image(image, geometry), array_to_image(label, geometry), KEEP, case_id=0)
    target, picture = slices.targets[0, 0], slices.images[0, 0]
    assert float(target[:12].max()) == 0.0 and float(target[-12:].max()) == 0.0  # padded rows: no lung
    assert float(picture[:12].max()) == pytest.approx(0.0, abs=1e-6)  # padded with the darkest intensity
    lung_rows = np.flatnonzero((target > 0.5).any(1).numpy())
    assert 16 + 8 - 2 <= lung_rows[0] <= 16 + 8 + 2  # 16 rows of padding above, then 8 rows of body


def test_fixed_size_output_is_unchanged_by_the_policy_code(tiny_model_folder) -> None:
    """An older model folder (fixed_size) gives exactly what the pre-policy engine computed."""
    segmenter = Segmenter.load(tiny_model_folder, device="cpu", precision="fp32")
    assert segmenter.config.input.in_plane_policy == "fixed_size"
    geometry = Geometry((50, 30, 4), (0.8, 1.3, 2.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()))
    array = np.random.default_rng(1).random(geometry.array_shape).astype(np.float32) * 100
    probability, _ = segmenter.predict(array, geometry)
    prepared = prepare(array, geometry, segmenter.config.input)
    with torch.inference_mode():
        batch = resize_batch(prepared.scale.apply(torch.from_numpy(np.ascontiguousarray(
            prepared.slices[:, None]))), segmenter.config.input.in_plane_size)
        expected = torch.sigmoid(resize_batch(segmenter.network(batch).float(), (30, 50))[:, 0])
    np.testing.assert_array_equal(probability, expected.to(torch.float16).numpy())


def test_model_folder_records_and_validates_the_policy() -> None:
    config = ModelConfig(input=KEEP)
    assert ModelConfig.from_dict(config.to_dict()).input.in_plane_policy == "keep_aspect"
    bad = config.to_dict()
    bad["input"]["in_plane_policy"] = "stretch"
    with pytest.raises(Exception, match="in_plane_policy"):
        ModelConfig.from_dict(bad)


def test_keep_aspect_segments_on_the_input_grid(tiny_model_folder) -> None:
    from NeonatalLungSegLib.models.model_folder import read_config

    config = dataclasses.replace(read_config(tiny_model_folder),
                                 input=dataclasses.replace(read_config(tiny_model_folder).input,
                                                           in_plane_policy="keep_aspect"))
    network = build_network(config)
    segmenter = Segmenter(config, network, torch.device("cpu"), precision="fp32")
    geometry = Geometry((40, 24, 6), (3.9, 3.9, 3.9), (0.0, 0.0, 0.0), (1, 0, 0, 0, 0, 1, 0, 1, 0))
    array = np.random.default_rng(2).random(geometry.array_shape).astype(np.float32)
    result = segmenter.segment_array(array, geometry, with_probabilities=True)
    assert result.labels.shape == geometry.array_shape and result.probabilities.shape == geometry.array_shape
