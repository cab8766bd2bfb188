"""Fuzz suite, model folders and commands: every model.json field is checked for type and range before a
network is built, a bad remembered folder never breaks `models`, and odd options end in one line."""

from __future__ import annotations

import copy
import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from fuzz_helpers import assert_one_error_line, run, write_volume
from NeonatalLungSegLib.models import registry
from NeonatalLungSegLib.inference.engine import Segmenter
from NeonatalLungSegLib.errors import ModelFolderError
from NeonatalLungSegLib.models.model_folder import CONFIG_NAME, ModelConfig, read_config

BAD_FIELDS: list[tuple[str, Any]] = [
    ("name", 5), ("version", []), ("parent_version", 3), ("description", {"a": 1}), ("network", "unet"),
    ("network.library", 7), ("network.architecture", None), ("network.args", [1, 2]),
    ("network.args.decoder_channels", ["a", "b", "c"]), ("network.args.decoder_channels", [100000, 8, 8]),
    ("network.args.encoder_depth", "3"), ("network.args.encoder_depth", 40), ("input", [1]),
    ("input.channels", "1"), ("input.channels", 1.5), ("input.channels", True), ("input.channels", 99),
    ("input.in_plane_size", "128"), ("input.in_plane_size", [64.5, 64]), ("input.in_plane_size", [65536, 65536]),
    ("input.lower_percentile", "0.5"), ("input.slice_axis", None), ("input.canonical_orientation", 5),
    ("input.spatial_dims", "2"), ("output", None), ("output.threshold", "0.5"), ("output.labels", [1, 2]),
    ("output.labels", {"right_lung": "1", "left_lung": 2}), ("training", 5), ("validation", "good"),
    ("weights_sha256", 5), ("weights_dtype", "float64"), ("clinical_use", None),
]


def mutated(data: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(data)
    *parents, last = dotted.split(".")
    node = data
    for key in parents:
        node = node[key]
    node[last] = value
    return data


def bad_folder(tmp_path: Path, model: Path, dotted: str, value: Any) -> Path:
    folder = tmp_path / f"bad-{dotted}-{abs(hash(repr(value)))}"
    shutil.copytree(model, folder)
    data = json.loads((model / CONFIG_NAME).read_text(encoding="utf-8"))
    (folder / CONFIG_NAME).write_text(json.dumps(mutated(data, dotted, value)))
    return folder


@pytest.mark.parametrize("dotted, value", BAD_FIELDS)
def test_every_model_json_field_is_type_and_range_checked(tmp_path: Path, tiny_model_folder: Path,
                                                          dotted: str, value: Any) -> None:
    folder = bad_folder(tmp_path, tiny_model_folder, dotted, value)
    with pytest.raises(ModelFolderError) as caught:
        read_config(folder)
    assert "\n" not in str(caught.value) and dotted.split(".")[-1] in str(caught.value)


def test_valid_config_still_reads(tiny_model_folder: Path) -> None:
    config = read_config(tiny_model_folder)
    assert ModelConfig.from_dict(config.to_dict()) == config


def test_one_bad_remembered_folder_never_breaks_models(tmp_path: Path, tiny_model_folder: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv(registry.REGISTRY_ENV, str(tmp_path / "registry.json"))
    good = tmp_path / "good"
    shutil.copytree(tiny_model_folder, good)
    assert run(["models", "--path", good, "--remember"], capsys)[0] == 0
    for dotted, value in BAD_FIELDS:  # the remembered folder is edited into every bad shape in turn
        data = json.loads((tiny_model_folder / CONFIG_NAME).read_text(encoding="utf-8"))
        (good / CONFIG_NAME).write_text(json.dumps(mutated(data, dotted, value)))
        code, out, err = run(["models"], capsys)
        assert code == 0 and "Traceback" not in err, (dotted, err)
        assert "unusable" in out or "not a usable" in out, (dotted, out)
    (good / CONFIG_NAME).write_text(json.dumps(["not", "an", "object"]))
    assert run(["models", "--json"], capsys)[0] == 0


def test_huge_network_is_refused_before_allocating(tmp_path: Path, tiny_model_folder: Path) -> None:
    """Sizes inside the per-field ranges but far beyond what the weights hold: refused from the weights'
    header without building the network (this config would need gigabytes)."""
    data = json.loads((tiny_model_folder / CONFIG_NAME).read_text(encoding="utf-8"))
    data["network"]["args"]["decoder_channels"] = [2048, 2048, 2048]
    folder = tmp_path / "huge"
    shutil.copytree(tiny_model_folder, folder)
    (folder / CONFIG_NAME).write_text(json.dumps(data))
    started = time.perf_counter()
    with pytest.raises(ModelFolderError, match="parameters") as caught:
        Segmenter.load(folder, device="cpu")
    assert time.perf_counter() - started < 10
    assert "\n" not in str(caught.value)


def test_weights_mismatch_names_the_keys_and_shapes(tmp_path: Path, tiny_model_folder: Path) -> None:
    data = json.loads((tiny_model_folder / CONFIG_NAME).read_text(encoding="utf-8"))
    data["network"]["args"]["decoder_channels"] = [32, 16, 16]  # last decoder block differs
    folder = tmp_path / "mismatch"
    shutil.copytree(tiny_model_folder, folder)
    (folder / CONFIG_NAME).write_text(json.dumps(data))
    with pytest.raises(ModelFolderError) as caught:
        Segmenter.load(folder, device="cpu")
    message = str(caught.value)
    assert "\n" not in message and "shape" in message and "decoder" in message and "[" in message


def test_segment_with_a_bad_model_json_is_one_line(tmp_path: Path, tiny_model_folder: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    source = write_volume(tmp_path / "a.nii.gz")
    for dotted, value in BAD_FIELDS[::4]:
        folder = bad_folder(tmp_path, tiny_model_folder, dotted, value)
        code, _, err = run(["segment", source, "-o", tmp_path / "out", "--model", folder, "--device", "cpu"],
                           capsys)
        assert_one_error_line(code, err, CONFIG_NAME)


@pytest.mark.parametrize("setup", ["missing", "not json", "not an object", "wrong type"])
def test_train_config_problems_are_one_line(tmp_path: Path, setup: str, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "config.json"
    if setup == "not json":
        config.write_text("{ nope")
    elif setup == "not an object":
        config.write_text("[1, 2]")
    elif setup == "wrong type":
        config.write_text(json.dumps({"epochs": "many", "data": str(tmp_path), "output": str(tmp_path / "m")}))
    code, _, err = run(["train", "--config", config], capsys)
    assert_one_error_line(code, err, "config")


def test_synthesize_zero_cases_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, _, err = run(["synthesize", "-o", tmp_path / "syn", "--cases", "0"], capsys)
    assert_one_error_line(code, err, "--cases")
    assert not (tmp_path / "syn").exists()
