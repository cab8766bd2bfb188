"""The model-folder contract: what is written is what is read, and any damage is refused in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from conftest import tiny_config
from NeonatalLungSegLib.inference.engine import Segmenter
from NeonatalLungSegLib.errors import ModelFolderError
from NeonatalLungSegLib.models.model_folder import (CONFIG_NAME, WEIGHTS_NAME, ModelConfig, read_config,
                                             write_model_folder)
from NeonatalLungSegLib.models.network import build_network


@pytest.fixture
def folder_copy(tiny_model_folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(tiny_model_folder, target)
    return target


def test_round_trip_keeps_config_and_weights(tiny_model_folder: Path) -> None:
    config = read_config(tiny_model_folder)
    assert config.name == "tiny-test-model" and config.input.in_plane_size == (64, 64)
    assert len(config.weights_sha256) == 64
    torch.manual_seed(0)
    expected = build_network(tiny_config()).state_dict()
    loaded = Segmenter.load(tiny_model_folder, device="cpu").network.state_dict()
    for key, value in expected.items():
        torch.testing.assert_close(loaded[key].cpu(), value)


def test_default_config_is_the_published_architecture() -> None:
    config = ModelConfig()
    net = build_network(config)
    assert config.network.args["encoder_name"] == "resnet50"
    assert list(config.network.args["decoder_channels"]) == [256, 128, 64, 32, 16]
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.decoder.modules())
    assert sum(p.numel() for p in net.parameters()) > 30_000_000
    assert net(torch.zeros(1, 1, 64, 64)).shape == (1, 1, 64, 64)  # one logit channel


def test_fp16_weights_are_stored_half_size(tmp_path: Path) -> None:
    config = tiny_config()
    state = build_network(config).state_dict()
    half = write_model_folder(tmp_path / "half", config, state, dtype="float16")
    full = write_model_folder(tmp_path / "full", config, state, dtype="float32")
    assert half.weights_dtype == "float16" and full.weights_dtype == "float32"
    ratio = (tmp_path / "half" / WEIGHTS_NAME).stat().st_size / (tmp_path / "full" / WEIGHTS_NAME).stat().st_size
    assert 0.45 < ratio < 0.6
    Segmenter.load(tmp_path / "half", device="cpu")  # loads as float32


def test_writer_refuses_existing_folder(tiny_model_folder: Path) -> None:
    with pytest.raises(ModelFolderError, match="already exists"):
        write_model_folder(tiny_model_folder, tiny_config(), {}, dtype="float32")


def test_writer_leaves_nothing_on_failure(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_model_folder(tmp_path / "m", tiny_config(), {}, dtype="int8")
    assert list(tmp_path.iterdir()) == []


def _damage_truncate(folder: Path) -> None:
    data = (folder / WEIGHTS_NAME).read_bytes()
    (folder / WEIGHTS_NAME).write_bytes(data[: len(data) // 2])


def _damage_flip_byte(folder: Path) -> None:
    data = bytearray((folder / WEIGHTS_NAME).read_bytes())
    data[-100] ^= 0xFF
    (folder / WEIGHTS_NAME).write_bytes(bytes(data))


def _edit_config(folder: Path, change) -> None:
    data = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
    change(data)
    (folder / CONFIG_NAME).write_text(json.dumps(data))


@pytest.mark.parametrize("damage, message", [
    (lambda f: (f / WEIGHTS_NAME).unlink(), "missing weights"),
    (lambda f: (f / CONFIG_NAME).unlink(), "missing model config"),
    (_damage_truncate, "checksum mismatch"),
    (_damage_flip_byte, "checksum mismatch"),
    (lambda f: (f / CONFIG_NAME).write_text("{not json"), "not valid JSON"),
    (lambda f: _edit_config(f, lambda d: d.pop("format")), "format"),
    (lambda f: _edit_config(f, lambda d: d.update(format_version=99)), "format_version"),
    (lambda f: _edit_config(f, lambda d: d.pop("network")), "invalid or missing field"),
    (lambda f: _edit_config(f, lambda d: d["input"].update(channels=2)), "odd number"),
    (lambda f: _edit_config(f, lambda d: d["input"].update(in_plane_size=[100, 100])), "multiples of 32"),
    (lambda f: _edit_config(f, lambda d: d["input"].update(canonical_orientation="XYZ")), "orientation"),
    (lambda f: _edit_config(f, lambda d: d["output"].update(labels={"lung": 1})), "right and left"),
    (lambda f: _edit_config(f, lambda d: d.update(weights_sha256="0" * 64)), "checksum mismatch"),
    (lambda f: _edit_config(f, lambda d: d["network"].update(architecture="NoSuchNet")), "cannot build"),
    (lambda f: _edit_config(f, lambda d: d["network"]["args"].update(encoder_name="resnet34")), "do not fit"),
    (lambda f: _edit_config(f, lambda d: d["network"]["args"].update(in_channels=3)), "must not set"),
])
def test_damaged_folder_gives_one_line_naming_the_problem(folder_copy: Path, damage, message: str) -> None:
    damage(folder_copy)
    with pytest.raises(ModelFolderError, match=message) as info:
        Segmenter.load(folder_copy, device="cpu")
    assert "\n" not in str(info.value)
    assert str(folder_copy) in str(info.value)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelFolderError, match="does not exist"):
        read_config(tmp_path / "nowhere")
