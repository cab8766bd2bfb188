"""Engine mechanics with a real (small, untrained) smp U-Net: batching, devices, progress, cancel, grids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_config
from NeonatalLungSegLib.inference.engine import Segmenter, resolve_device
from NeonatalLungSegLib.errors import Cancelled, DeviceError, InputError
from NeonatalLungSegLib.geometry import Geometry, array_to_image
from NeonatalLungSegLib.models.model_folder import write_model_folder
from NeonatalLungSegLib.models.network import build_network
from NeonatalLungSegLib.inference.postprocess import PostprocessOptions

OBLIQUE_FLIPPED = tuple((np.array([[0.9396926, -0.3420201, 0], [0.3420201, 0.9396926, 0], [0, 0, 1]])
                         @ np.diag([-1, 1, -1])).ravel())


def volume(shape=(9, 40, 50), direction=tuple(np.eye(3).ravel())) -> tuple[np.ndarray, Geometry]:
    geometry = Geometry((shape[2], shape[1], shape[0]), (0.8, 0.7, 2.0), (5.0, -3.0, 10.0), direction)
    rng = np.random.default_rng(1)
    return rng.normal(100, 30, shape).astype(np.float32), geometry


@pytest.fixture(scope="module")
def segmenter(tiny_model_folder: Path) -> Segmenter:
    return Segmenter.load(tiny_model_folder, device="cpu", batch_size=4)


def test_output_lies_on_the_input_grid(segmenter: Segmenter) -> None:
    array, geometry = volume(direction=OBLIQUE_FLIPPED)
    result = segmenter.segment_array(array, geometry, with_probabilities=True)
    assert result.labels.shape == array.shape and result.labels.dtype == np.uint8
    assert set(np.unique(result.labels)) <= {0, 1, 2}
    assert result.probabilities.shape == array.shape
    assert 0.0 <= result.probabilities.min() and result.probabilities.max() <= 1.0
    image = result.labels_image()
    assert image.GetSize() == geometry.size
    np.testing.assert_allclose(image.GetDirection(), geometry.direction)
    np.testing.assert_allclose(image.GetOrigin(), geometry.origin)
    np.testing.assert_allclose(image.GetSpacing(), geometry.spacing)
    assert set(result.volumes) >= {"right_lung", "left_lung", "total"}


def test_batch_size_does_not_change_the_result(tiny_model_folder: Path) -> None:
    array, geometry = volume()
    one = Segmenter.load(tiny_model_folder, device="cpu", batch_size=1).predict(array, geometry)[0]
    many = Segmenter.load(tiny_model_folder, device="cpu", batch_size=7).predict(array, geometry)[0]
    np.testing.assert_allclose(one.astype(np.float32), many.astype(np.float32), atol=2e-3)


def test_raw_mode_is_the_thresholded_probability(segmenter: Segmenter) -> None:
    array, geometry = volume()
    result = segmenter.segment_array(array, geometry, options=None, with_probabilities=True)
    np.testing.assert_array_equal(result.labels, (result.probabilities >= 0.5).astype(np.uint8))
    assert result.label_names == {"lung": 1}
    assert set(result.volumes) == {"lung", "total", "voxel_volume_ml", "spacing_mm"}


def test_progress_rises_to_one_and_cancel_stops_within_a_batch(segmenter: Segmenter) -> None:
    array, geometry = volume()
    seen: list[float] = []
    segmenter.segment_array(array, geometry, progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0) and len(seen) == 3  # 9 slices / 4

    calls = []

    def cancel() -> bool:
        calls.append(1)
        return len(calls) > 1  # allow one batch, then ask to stop

    progress: list[float] = []
    with pytest.raises(Cancelled):
        segmenter.segment_array(array, geometry, progress=progress.append, cancel=cancel)
    assert progress == [pytest.approx(4 / 9)]


def test_2p5d_config_runs_with_neighbouring_slices(tmp_path: Path) -> None:
    config = tiny_config(channels=3)
    folder = tmp_path / "m25d"
    write_model_folder(folder, config, build_network(config).state_dict(), dtype="float32")
    seg = Segmenter.load(folder, device="cpu")
    assert seg.network.encoder.conv1.in_channels == 3
    array, geometry = volume()
    assert seg.segment_array(array, geometry).labels.shape == array.shape


def test_constant_and_nan_volumes_are_refused(segmenter: Segmenter) -> None:
    array, geometry = volume()
    with pytest.raises(InputError, match="constant"):
        segmenter.segment_array(np.ones_like(array), geometry)
    array[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        segmenter.segment_array(array, geometry)


def test_shape_mismatch_is_refused(segmenter: Segmenter) -> None:
    array, geometry = volume()
    with pytest.raises(ValueError, match="does not match"):
        segmenter.segment_array(array[:-1], geometry)


def test_devices() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device("tpu-please")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_image_entry_point_matches_array_entry_point(segmenter: Segmenter) -> None:
    array, geometry = volume(direction=OBLIQUE_FLIPPED)
    from_array = segmenter.segment_array(array, geometry)
    from_image = segmenter.segment_image(array_to_image(array, geometry))
    np.testing.assert_array_equal(from_array.labels, from_image.labels)


def test_postprocess_options_are_passed_through(segmenter: Segmenter) -> None:
    array, geometry = volume()
    unsplit = segmenter.segment_array(array, geometry, options=PostprocessOptions(split_left_right=False))
    assert set(np.unique(unsplit.labels)) <= {0, 1}
    assert "lung" in unsplit.volumes


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_matches_cpu(tiny_model_folder: Path) -> None:
    array, geometry = volume()
    cpu = Segmenter.load(tiny_model_folder, device="cpu").predict(array, geometry)[0].astype(np.float32)
    gpu = Segmenter.load(tiny_model_folder, device="cuda").predict(array, geometry)[0].astype(np.float32)
    assert np.mean(np.abs(cpu - gpu)) < 0.02
