"""NeonatalLungSegLib.models.registry and `neonatal-lung-seg models`: bundled, given and remembered model folders."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from NeonatalLungSegLib.models import registry
from NeonatalLungSegLib.cli.main import main
from NeonatalLungSegLib.models.model_folder import read_config, write_model_folder

REPO = Path(__file__).resolve().parents[2]
BUNDLED = REPO / "Resources" / "Models" / "neonatal-lung-unet-r50"


@pytest.fixture(autouse=True)
def private_registry(tmp_path, monkeypatch):
    monkeypatch.setenv(registry.REGISTRY_ENV, str(tmp_path / "registry" / "models.json"))
    monkeypatch.delenv(registry.SEARCH_ENV, raising=False)


@pytest.fixture
def child_model(tiny_model_folder, tmp_path):
    """A fine-tuned-looking model folder: parent, training size and validation Dice in its model.json."""
    import torch

    from NeonatalLungSegLib.models.model_folder import load_state_dict

    config = read_config(tiny_model_folder)
    child = dataclasses.replace(config, version="0.1.0", parent_version="0.0.1",
                                training={"parent": {"name": config.name, "version": "0.0.1"},
                                          "training_cases": 7, "training_slices": 70},
                                validation={"data": "2 held-out toys", "mean_dice_lungs": 0.9123})
    folder = tmp_path / "models" / "child"
    state = {k: torch.as_tensor(v) for k, v in load_state_dict(tiny_model_folder, config).items()}
    write_model_folder(folder, child, state, dtype="float32")
    return folder


def test_bundled_model_is_listed_first_with_its_figures():
    entries = registry.find_models()
    first = entries[0]
    assert first.origin == "bundled" and first.folder.resolve() == BUNDLED.resolve()
    stored = json.loads((BUNDLED / "model.json").read_text(encoding="utf-8"))  # the figures must be the folder's
    parent = stored["training"].get("parent")
    assert (first.name, first.version) == ("neonatal-lung-unet-r50", stored["version"])
    assert first.parent == (f"{parent['name']} {parent['version']}" if parent else None)
    assert first.training_cases == stored["training"]["training_cases"] > 0
    assert first.training_slices == stored["training"]["training_slices"] > 0
    assert first.validation_dice == pytest.approx(stored["validation"]["mean_dice_lungs"])
    assert first.validation_dice_right == pytest.approx(stored["validation"]["mean_dice_right_lung"])
    assert first.label == f"neonatal-lung-unet-r50 {stored['version']} (bundled)"
    assert (f"parent {first.parent}" if parent else "no parent") in first.describe()
    assert f"validation Dice {stored['validation']['mean_dice_lungs']:.3f}" in first.describe()


def test_given_folders_of_models_and_lineage(child_model, tiny_model_folder):
    entries = registry.find_models([child_model.parent, tiny_model_folder, child_model])  # child listed once
    given = [e for e in entries if e.origin == "given"]
    assert [e.folder for e in given] == [child_model, tiny_model_folder]
    child = given[0]
    assert child.parent == "tiny-test-model 0.0.1" and child.training_cases == 7
    assert child.validation_dice == pytest.approx(0.9123) and child.validation_data == "2 held-out toys"


def test_unusable_given_folder_is_reported_not_dropped(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.json").write_text("{not json")
    entries = registry.find_models([broken, tmp_path / "missing"], bundled=False)
    assert [e.usable for e in entries] == [False, False]
    assert "model.json" in entries[0].problem
    assert "(unusable)" in registry.format_table(entries)


def test_remember_and_forget_persist_across_calls(child_model, tmp_path):
    assert registry.remember(child_model.parent) is True
    assert registry.remember(child_model.parent) is False
    assert registry.remembered_paths() == [child_model.parent.resolve()]
    entries = registry.find_models()
    assert any(e.origin == "remembered" and e.folder.name == "child" for e in entries)
    assert registry.forget(child_model.parent) is True
    assert not any(e.origin == "remembered" for e in registry.find_models())


def test_environment_search_path(child_model, monkeypatch):
    monkeypatch.setenv(registry.SEARCH_ENV, str(child_model.parent))
    assert any(e.origin == "environment" and e.folder == child_model for e in registry.find_models())


def test_cli_models_table_json_remember(child_model, tmp_path, capsys):
    assert main(["models", "--path", str(child_model)]) == 0
    out = capsys.readouterr().out
    assert "neonatal-lung-unet-r50" in out and "tiny-test-model" in out and "0.9123" in out
    assert out.splitlines()[0].split()[:3] == ["name", "version", "parent"]
    assert main(["models", "--json", "--path", str(child_model)]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["origin"] == "bundled" and listed[-1]["parent"] == "tiny-test-model 0.0.1"
    assert main(["models", "--remember", "--path", str(child_model.parent)]) == 0
    capsys.readouterr()
    assert main(["models", "--json"]) == 0
    assert any(e["origin"] == "remembered" for e in json.loads(capsys.readouterr().out))
    assert main(["models", "--forget", str(child_model.parent)]) == 0
    assert "forgot" in capsys.readouterr().out
    assert main(["models", "--remember", "--path", str(tmp_path / "nothing-here")]) == 2
    assert "neither a model folder" in capsys.readouterr().err


def test_copied_bundled_model_elsewhere_is_not_bundled(tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(BUNDLED, copy, ignore=shutil.ignore_patterns("*.safetensors"))
    entry = registry.entry_for(copy)
    assert entry.usable and entry.origin == "given"  # listing reads model.json only, never the weights


def test_only_the_registry_knows_the_bundled_model():
    """One source of truth: the bundled model's name and place are spelled out in registry.py alone (the CLI,
    the Slicer module and its parameter defaults ask the registry)."""
    module_dir = Path(__file__).resolve().parents[2] / "NeonatalLungSeg"
    spelled = sorted(str(p.relative_to(module_dir)) for p in module_dir.rglob("*.py")
                     if "neonatal-lung-unet-r50" in p.read_text(encoding="utf-8"))
    assert spelled == ["NeonatalLungSegLib/models/registry.py"]
    from NeonatalLungSegLib.models import registry

    folder = registry.default_model_folder()
    assert (folder / "model.json").is_file() and folder.name == registry.BUNDLED_MODEL_NAME
