"""Volumetric (3D) training at toy scale: real MONAI 3D U-Net, real files, resume and DDP processes,
plus the 3D data windows and the dimension-aware augmentation."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from NeonatalLungSegLib.cli.main import main
from NeonatalLungSegLib.inference.engine import Segmenter
from NeonatalLungSegLib.models.model_folder import read_config
from NeonatalLungSegLib.dataset.training_folder import read_training_folder
from neonatal_lung_training.training.augment import AugmentConfig, SliceAugmenter, build_transform
from neonatal_lung_training.training.config import TrainConfig
from neonatal_lung_training.training.lineage import model_config_for
from neonatal_lung_training.training.split import split_subjects
from neonatal_lung_training.training.volumes3d import load_volumes, window_bounds
from training_fixtures import toy_case, toy_training_folder

REPO = Path(__file__).resolve().parents[2]
TINY_3D_ARGS = ["--spatial-dims", "3", "--patch-slices", "16", "--in-plane-size", "32", "--monai-channels", "4", "8",
                "16", "--monai-strides", "2", "2", "--monai-res-units", "1", "--batch-size", "2",
                "--weights-dtype", "float32"]


@pytest.fixture(scope="module")
def toy_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return toy_training_folder(tmp_path_factory.mktemp("data3d") / "toy", subjects=10)


def _env() -> dict[str, str]:
    paths = [str(REPO / "NeonatalLungSeg"), str(REPO / "Training"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p), "OMP_NUM_THREADS": "1"}


def _args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--data", str(data), "--output", str(out), *TINY_3D_ARGS, *extra]


def test_3d_training_writes_a_loadable_volumetric_model_folder(toy_folder: Path, tmp_path: Path) -> None:
    out, run = tmp_path / "model3d", tmp_path / "run3d"
    assert main(["train", *_args(toy_folder, out, "--run-dir", str(run), "--epochs", "2")]) == 0
    config = read_config(out)
    assert config.network.library == "monai" and config.network.architecture == "UNet"
    assert config.network.args["spatial_dims"] == 3 and config.network.args["channels"] == [4, 8, 16]
    assert (config.input.spatial_dims, config.input.patch_slices, config.input.channels) == (3, 16, 1)
    assert config.training["subjects"] == {"train": 7, "val": 2, "test": 1}
    assert "windows of 16 slices" in config.training["samples"]
    assert config.validation["cases"] == 1 and 0 <= config.validation["mean_dice_lungs"] <= 1
    assert len((run / "log.csv").read_text(encoding="utf-8").splitlines()) == 3
    card = (out / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "sliding 3D windows of 16 slices" in card and "not clinically validated" in card.lower()
    segmenter = Segmenter.load(out, device="cpu")
    image, _ = toy_case(99, shape=(11, 40, 36))
    result = segmenter.segment_image(image)
    assert result.labels.shape == (11, 40, 36) and set(np.unique(result.labels)) <= {0, 1, 2}


def test_3d_training_resumes_after_a_kill(toy_folder: Path, tmp_path: Path) -> None:
    out, run = tmp_path / "model", tmp_path / "run"
    command = [sys.executable, "-m", "neonatal_lung_training.training.train",
               *_args(toy_folder, out, "--run-dir", str(run), "--epochs", "3", "--patience", "10",
                      "--steps-per-epoch", "12", "--no-augment")]
    process = subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    last = run / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 300
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    assert process.returncode == -signal.SIGKILL, process.stdout.read().decode()[-2000:]
    first_epoch = torch.load(last, weights_only=True)["epoch"]
    assert first_epoch < 3 and not out.exists()
    again = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert f"after epoch {first_epoch}" in again.stdout
    epochs = [int(line.split(",")[0]) for line in (run / "log.csv").read_text(encoding="utf-8").splitlines()[1:]]
    assert epochs == [1, 2, 3]
    assert read_config(out).input.spatial_dims == 3


@pytest.mark.slow
def test_3d_training_runs_under_torchrun_with_two_gloo_processes(toy_folder: Path, tmp_path: Path) -> None:
    out, run = tmp_path / "model", tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "neonatal_lung_training.training.train",
               *_args(toy_folder, out, "--run-dir", str(run), "--epochs", "1", "--steps-per-epoch", "4",
                      "--device", "cpu")]
    result = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("epoch   1") == 1
    assert read_config(out).input.spatial_dims == 3


def test_windows_centre_on_selected_slices_and_keep_subjects_apart(toy_folder: Path) -> None:
    folder = read_training_folder(toy_folder)
    split = split_subjects(folder.subjects(), (0.7, 0.2, 0.1), seed=0)
    config = TrainConfig(data="x", output="y", spatial_dims=3, patch_slices=16, in_plane_size=32)
    input_config = model_config_for(config)[0].input
    cases = [c for c in folder.cases if c.subject in set(split["train"])]
    data = load_volumes(folder, cases, input_config, keep_empty_fraction=0.0, seed=0)
    assert {cases[i].subject for i in set(data.case_ids.tolist())} <= set(split["train"])
    assert all(v.shape == (8, 32, 32) for v in data.volumes)  # toy cases: 8 slices, resized in-plane
    images, targets = data.images[[0, len(data) - 1]], data.targets[[0, len(data) - 1]]
    assert images.shape == targets.shape == (2, 1, 16, 32, 32)
    # 8 slices in a 16-slice window: 4 zero slices each side, as sliding_window_inference pads at inference
    assert float(images[:, :, :4].abs().sum()) == 0 and float(images[:, :, -4:].abs().sum()) == 0
    assert all(float(targets[n, 0, 4 + int(data.items[i, 1])].sum()) > 0
               for n, i in enumerate([0, len(data) - 1]))  # every item's centre slice holds lung here


def test_window_bounds_stay_inside_the_volume() -> None:
    assert window_bounds(0, 100, 32) == (0, 32, 0, 0)
    assert window_bounds(50, 100, 32) == (34, 66, 0, 0)
    assert window_bounds(99, 100, 32) == (68, 100, 0, 0)
    assert window_bounds(3, 9, 16) == (0, 9, 3, 4)


def test_3d_augmentation_keeps_shapes_and_rotates_in_plane_only() -> None:
    config = AugmentConfig(geometry_probability=1.0, zoom_fraction=0.0, translation_fraction=0.0,
                           bias_field_probability=0, rician_noise_probability=0, gamma_probability=0,
                           breathing_blur_probability=0, streak_probability=0, low_resolution_probability=0)
    transform = build_transform(config, (16, 32, 32), seed=3)
    label = torch.zeros(1, 16, 32, 32)
    label[:, :, 12:20, 4:28] = 1  # the same bar on every slice
    out = transform({"image": label.clone(), "label": label})["label"]
    out = torch.as_tensor(out)
    assert out.shape == (1, 16, 32, 32)
    assert torch.allclose(out[:, 0], out[:, 15], atol=1e-5)  # nothing moved across slices
    assert not torch.allclose(out, label)  # but it did rotate in-plane
    everything = SliceAugmenter(AugmentConfig(breathing_blur_probability=1.0, streak_probability=1.0,
                                              low_resolution_probability=1.0), (16, 32, 32), seed=0)
    images, targets = everything(torch.rand(2, 1, 16, 32, 32), (torch.rand(2, 1, 16, 32, 32) > 0.5).float())
    assert images.shape == targets.shape == (2, 1, 16, 32, 32)
    assert 0 <= float(targets.min()) and float(targets.max()) <= 1
    with pytest.raises(ValueError, match="size must be"):
        build_transform(AugmentConfig(), (32,), seed=0)


@pytest.mark.parametrize("extra, message", [
    (["--channels", "3"], "channels must be 1"),
    (["--patch-slices", "24"], "patch_slices must be a multiple of 16"),
    (["--monai-strides", "2"], "monai_strides needs one value fewer"),
    (["--monai-network", "SegResNet"], "monai_network must be one of"),
    (["--spatial-dims", "4"], "spatial_dims must be 2"),
])
def test_bad_3d_train_settings_are_refused(toy_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                          extra: list[str], message: str) -> None:
    assert main(["train", *_args(toy_folder, tmp_path / "m", *extra)]) == 2
    assert message in capsys.readouterr().err


def test_basic_unet_is_choosable() -> None:
    config = TrainConfig(data="x", output="y", spatial_dims=3, monai_network="BasicUNet",
                         monai_channels=(4, 4, 8, 16, 32), patch_slices=16, in_plane_size=32)
    assert not config.problems()
    model_config = model_config_for(config)[0]
    assert model_config.network.architecture == "BasicUNet" and model_config.network.args["features"][-1] == 4
    from NeonatalLungSegLib.models.network import build_network

    network = build_network(model_config)
    assert network(torch.zeros(1, 1, 16, 32, 32)).shape == (1, 1, 16, 32, 32)


def test_a_run_folder_from_before_the_3d_fields_still_resumes(tmp_path: Path) -> None:
    from neonatal_lung_training.training.train import RunFolder

    config = TrainConfig(data="d", output=str(tmp_path / "m"), run_dir=str(tmp_path / "run"))
    old = {k: v for k, v in config.to_dict().items()
           if k not in ("spatial_dims", "patch_slices", "window_overlap") and not k.startswith("monai_")}
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run_config.json").write_text(json.dumps({"config": old}))
    assert RunFolder(config).claim(config) is False  # accepted (no last checkpoint yet, so not resuming)
    changed = TrainConfig(data="d", output=str(tmp_path / "m"), run_dir=str(tmp_path / "run"), spatial_dims=3)
    with pytest.raises(ValueError, match="spatial_dims"):
        RunFolder(changed).claim(changed)


def test_downsampling_rule_follows_the_strides() -> None:
    config = TrainConfig(data="x", output="y", spatial_dims=3, monai_channels=(4, 8, 16, 32, 64, 128),
                         monai_strides=(2, 2, 2, 2, 2), patch_slices=16, in_plane_size=64)
    assert any("multiple of 32" in p for p in config.problems())
    assert math.prod(config.monai_strides) == 32
