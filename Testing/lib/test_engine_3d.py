"""Volumetric (3D) models through the engine: a real tiny MONAI 3D U-Net, sliding windows, geometry, progress,
cancel, and the model-folder rules for spatial_dims / patch_slices / window_overlap."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import BUNDLED_MODEL, REPO, tiny_config
from NeonatalLungSegLib.inference.engine import Segmenter
from NeonatalLungSegLib.errors import Cancelled, ModelFolderError
from NeonatalLungSegLib.geometry import Geometry
from NeonatalLungSegLib.models.model_folder import (CONFIG_NAME, InputConfig, ModelConfig, NetworkConfig, read_config,
                                             write_model_folder)
from NeonatalLungSegLib.models.network import build_network
from NeonatalLungSegLib.inference.postprocess import PostprocessOptions
from NeonatalLungSegLib.inference.preprocess import prepare, resize_batch
from NeonatalLungSegLib.inference.volume_inference import stacked_input, window_count
from stored_volumes import store_differently

OBLIQUE_FLIPPED = tuple((np.array([[0.9396926, -0.3420201, 0], [0.3420201, 0.9396926, 0], [0, 0, 1]])
                         @ np.diag([-1, 1, -1])).ravel())
TINY_3D_ARGS = {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 0, "norm": "batch"}


def config_3d(**input_overrides) -> ModelConfig:
    values = {"spatial_dims": 3, "patch_slices": 16, "window_overlap": 0.5, "in_plane_size": (32, 32),
              **input_overrides}
    return ModelConfig(name="tiny-3d", version="0.0.1",
                       network=NetworkConfig(library="monai", architecture="UNet", args=dict(TINY_3D_ARGS)),
                       input=InputConfig(**values))


def chest(geometry: Geometry, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Dark "lungs" in bright tissue, placed in PHYSICAL (LPS) coordinates: the right lung (label 1) at
    x = -11 mm is larger, longer and higher than the left one at x = +11 mm, and neither is centred in y or z,
    so a swapped side, a reversed axis or transposed axes all show."""
    k, j, i = np.meshgrid(*(np.arange(n) for n in geometry.array_shape), indexing="ij")
    lps = geometry.array_index_to_lps(np.stack([k, j, i], axis=-1).reshape(-1, 3)).reshape(*k.shape, 3)
    x, y, z = lps[..., 0], lps[..., 1], lps[..., 2]
    label = np.zeros(geometry.array_shape, np.uint8)
    label[((x + 11) / 8) ** 2 + ((y - 3) / 9) ** 2 + ((z - 6) / 16) ** 2 < 1] = 1
    label[((x - 11) / 6) ** 2 + ((y + 2) / 7) ** 2 + ((z + 6) / 11) ** 2 < 1] = 2
    rng = np.random.default_rng(seed)
    image = 800.0 - 650.0 * (label > 0) + rng.normal(0, 30, label.shape)
    return image.astype(np.float32), label


def centred(shape, spacing, direction=tuple(np.eye(3).ravel())) -> Geometry:
    size = (shape[2], shape[1], shape[0])
    matrix = np.asarray(direction, float).reshape(3, 3)
    centre = matrix @ (np.array(size, float) - 1) / 2 * np.array(spacing)
    return Geometry(size, spacing, tuple(-centre), direction)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / max(1, a.sum() + b.sum())


@pytest.fixture(scope="module")
def trained_3d_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny 3D U-Net fitted in a few seconds to "dark = lung" on one axis-aligned volume, prepared with the
    engine's own preprocessing, then written through the real model-folder writer."""
    torch.manual_seed(0)
    config = config_3d()
    network = build_network(config)
    geometry = centred((32, 40, 44), (0.9, 0.8, 1.5))
    image, label = chest(geometry)
    prepared = prepare(image, geometry, config.input)
    volume = stacked_input(prepared.slices, prepared.scale, config.input, chunk=16)
    lung = prepared.slices_of((label > 0).astype(np.float32))
    target = resize_batch(torch.from_numpy(np.ascontiguousarray(lung[:, None])), (32, 32))[:, 0][None, None]
    optimiser = torch.optim.Adam(network.parameters(), lr=0.01)
    generator = torch.Generator().manual_seed(0)
    for _ in range(60):
        start = int(torch.randint(0, volume.shape[2] - 16 + 1, (1,), generator=generator))
        window, truth = volume[:, :, start:start + 16], target[:, :, start:start + 16]
        logits = network(torch.cat([window, window.flip(-1)]))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.cat([truth, truth.flip(-1)]))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    folder = tmp_path_factory.mktemp("models3d") / "tiny-3d"
    write_model_folder(folder, config, network.state_dict(), dtype="float32")
    return folder


@pytest.fixture(scope="module")
def segmenter(trained_3d_folder: Path) -> Segmenter:
    return Segmenter.load(trained_3d_folder, device="cpu", batch_size=8)


@pytest.fixture(scope="module")
def random_3d_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(1)
    config = config_3d()
    folder = tmp_path_factory.mktemp("models3d") / "random-3d"
    write_model_folder(folder, config, build_network(config).state_dict(), dtype="float32")
    return folder


def test_a_3d_model_folder_loads_as_a_monai_3d_network(segmenter: Segmenter) -> None:
    assert segmenter.config.input.spatial_dims == 3
    convs = [m for m in segmenter.network.modules() if isinstance(m, torch.nn.Conv3d)]
    assert convs and convs[0].in_channels == 1


def test_oblique_anisotropic_volume_gets_labels_on_its_grid_on_the_right_sides(segmenter: Segmenter) -> None:
    """Flipped, 20 degrees oblique, 2 mm slices at 0.7 x 0.8 mm in-plane, 37 slices (not a window multiple)."""
    geometry = centred((37, 44, 52), (0.8, 0.7, 2.0), OBLIQUE_FLIPPED)
    image, reference = chest(geometry, seed=5)
    result = segmenter.segment_array(image, geometry, with_probabilities=True)
    assert result.labels.shape == image.shape and result.labels.dtype == np.uint8
    assert result.probabilities.shape == image.shape
    labels_image = result.labels_image()
    assert labels_image.GetSize() == geometry.size
    np.testing.assert_allclose(labels_image.GetDirection(), geometry.direction)
    np.testing.assert_allclose(labels_image.GetOrigin(), geometry.origin)
    for value in (1, 2):
        assert dice(result.labels == value, reference == value) >= 0.85, value
    right = geometry.array_index_to_lps(np.argwhere(result.labels == 1).mean(axis=0))
    left = geometry.array_index_to_lps(np.argwhere(result.labels == 2).mean(axis=0))
    assert right[0] < 0 < left[0]  # LPS x grows towards the patient's left
    assert result.volumes["right_lung"]["volume_ml"] > result.volumes["left_lung"]["volume_ml"]


def test_a_mirrored_header_swaps_the_labels(segmenter: Segmenter) -> None:
    geometry = centred((30, 40, 48), (0.8, 0.8, 1.6))
    image, reference = chest(geometry, seed=6)
    mirrored = Geometry(geometry.size, geometry.spacing, geometry.origin,
                        tuple((geometry.direction_matrix @ np.diag([-1.0, 1.0, 1.0])).ravel()))
    labels = segmenter.segment_array(image, mirrored).labels
    assert dice(labels == 2, reference == 1) >= 0.85 and dice(labels == 1, reference == 2) >= 0.85


@pytest.mark.parametrize("axes, flips", [((0, 1, 2), (True, False, True)), ((2, 0, 1), (False, True, False))])
def test_storage_order_does_not_change_the_physical_mask(random_3d_folder: Path, axes, flips) -> None:
    """Even an untrained 3D network must give voxel-identical physical output however the file is stored:
    the canonical volume, hence every window, is the same."""
    segmenter = Segmenter.load(random_3d_folder, device="cpu")
    geometry = centred((21, 30, 34), (0.8, 0.7, 2.0))
    image, _ = chest(geometry, seed=7)
    baseline = segmenter.segment_array(image, geometry, options=None, with_probabilities=True)
    stored_image, stored_geometry = store_differently(image, geometry, axes, flips)
    again = segmenter.segment_array(stored_image, stored_geometry, options=None, with_probabilities=True)
    np.testing.assert_array_equal(again.labels, store_differently(baseline.labels, geometry, axes, flips)[0])
    np.testing.assert_allclose(again.probabilities, store_differently(baseline.probabilities, geometry, axes, flips)[0],
                               atol=1e-3)


def test_progress_rises_to_one_per_window_and_cancel_stops(segmenter: Segmenter) -> None:
    geometry = centred((37, 30, 30), (1.0, 1.0, 2.0))
    image, _ = chest(geometry)
    windows = window_count(37, segmenter.config.input)
    assert windows == 4  # step 8 slices: starts 0, 8, 16, 21
    seen: list[float] = []
    segmenter.segment_array(image, geometry, progress=seen.append)
    assert seen == sorted(seen) and len(seen) == windows and seen[-1] == pytest.approx(1.0)

    calls: list[int] = []

    def cancel() -> bool:
        calls.append(1)
        return len(calls) > 2  # the up-front check and one window, then stop

    progress: list[float] = []
    with pytest.raises(Cancelled):
        segmenter.segment_array(image, geometry, progress=progress.append, cancel=cancel)
    assert progress == [pytest.approx(1 / windows)]


def test_thin_volume_and_window_batches_agree(segmenter: Segmenter) -> None:
    """Fewer slices than a window (padded like MONAI pads), and several windows per forward pass."""
    thin = centred((9, 30, 30), (1.0, 1.0, 2.0))
    image, _ = chest(thin)
    assert segmenter.segment_array(image, thin).labels.shape == image.shape
    geometry = centred((40, 30, 30), (1.0, 1.0, 2.0))
    image, _ = chest(geometry)
    one = Segmenter(segmenter.config, segmenter.network, torch.device("cpu"), batch_size=1)
    three = Segmenter(segmenter.config, segmenter.network, torch.device("cpu"), batch_size=48)
    np.testing.assert_allclose(one.predict(image, geometry)[0].astype(np.float32),
                               three.predict(image, geometry)[0].astype(np.float32), atol=2e-3)


def test_raw_mode_and_postprocess_options(segmenter: Segmenter) -> None:
    geometry = centred((20, 30, 30), (1.0, 1.0, 2.0))
    image, _ = chest(geometry)
    raw = segmenter.segment_array(image, geometry, options=None, with_probabilities=True)
    np.testing.assert_array_equal(raw.labels, (raw.probabilities >= 0.5).astype(np.uint8))
    unsplit = segmenter.segment_array(image, geometry, options=PostprocessOptions(split_left_right=False))
    assert set(np.unique(unsplit.labels)) <= {0, 1}


def test_old_configs_without_the_new_keys_load_as_2d(tmp_path: Path) -> None:
    data = tiny_config().to_dict()
    for key in ("spatial_dims", "patch_slices", "window_overlap"):
        del data["input"][key]
    config = ModelConfig.from_dict(data)
    assert (config.input.spatial_dims, config.input.patch_slices, config.input.window_overlap) == (2, 32, 0.5)
    bundled = json.loads((BUNDLED_MODEL / CONFIG_NAME).read_text(encoding="utf-8"))
    if "spatial_dims" not in bundled["input"]:  # the committed bundled model predates the keys
        assert read_config(BUNDLED_MODEL).input.spatial_dims == 2


@pytest.mark.parametrize("change, message", [
    (lambda c: dataclasses.replace(c, network=NetworkConfig()), "needs network.library 'monai'"),
    (lambda c: dataclasses.replace(c, input=dataclasses.replace(c.input, channels=3)), "needs input.channels 1"),
    (lambda c: dataclasses.replace(c, input=dataclasses.replace(c.input, patch_slices=24)), "patch_slices"),
    (lambda c: dataclasses.replace(c, input=dataclasses.replace(c.input, patch_slices=0)), "patch_slices"),
    (lambda c: dataclasses.replace(c, input=dataclasses.replace(c.input, window_overlap=1.0)), "window_overlap"),
    (lambda c: dataclasses.replace(c, input=dataclasses.replace(c.input, spatial_dims=4)), "spatial_dims must be"),
    (lambda c: dataclasses.replace(c, network=dataclasses.replace(
        c.network, args={**TINY_3D_ARGS, "spatial_dims": 2})), "contradicts input.spatial_dims"),
])
def test_bad_3d_configs_are_refused_with_one_line(tmp_path: Path, change, message: str) -> None:
    good = config_3d()
    write_model_folder(tmp_path / "good", good, build_network(good).state_dict(), dtype="float32")
    data = json.loads((tmp_path / "good" / CONFIG_NAME).read_text(encoding="utf-8"))
    bad = change(good).to_dict()
    bad["weights_sha256"] = data["weights_sha256"]
    (tmp_path / "good" / CONFIG_NAME).write_text(json.dumps(bad))
    with pytest.raises(ModelFolderError, match=message) as error:
        Segmenter.load(tmp_path / "good", device="cpu")
    assert "\n" not in str(error.value) and CONFIG_NAME in str(error.value)


def test_2d_models_never_import_monai(tiny_model_folder: Path) -> None:
    code = ("import sys; sys.path.insert(0, 'NeonatalLungSeg'); import numpy as np; "
            "from NeonatalLungSegLib.inference.engine import Segmenter; "
            "from NeonatalLungSegLib.geometry import Geometry; "
            f"s = Segmenter.load({str(tiny_model_folder)!r}, device='cpu'); "
            "s.predict(np.random.rand(2, 32, 32).astype('float32'), Geometry((32, 32, 2), (1, 1, 1), (0, 0, 0), "
            "(1, 0, 0, 0, 1, 0, 0, 0, 1))); print('monai' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_matches_cpu_under_autocast(trained_3d_folder: Path) -> None:
    geometry = centred((37, 44, 52), (0.8, 0.7, 2.0), OBLIQUE_FLIPPED)
    image, _ = chest(geometry)
    cpu = Segmenter.load(trained_3d_folder, device="cpu").predict(image, geometry)[0].astype(np.float32)
    gpu = Segmenter.load(trained_3d_folder, device="cuda").predict(image, geometry)[0].astype(np.float32)
    assert np.mean(np.abs(cpu - gpu)) < 0.02
