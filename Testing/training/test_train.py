"""The train and synthesize commands end to end at toy scale, with real networks and real files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from NeonatalLungSegLib.cli import main
from NeonatalLungSegLib.engine import Segmenter
from NeonatalLungSegLib.model_folder import read_config
from neonatal_lung_training.evaluate import dice, summarise


def test_train_writes_a_loadable_model_folder_with_card_and_metrics(tmp_path: Path) -> None:
    out = tmp_path / "model"
    code = main(["train", "--output", str(out), "--run-dir", str(tmp_path / "run"), "--train-cases", "2",
                 "--val-cases", "1", "--test-cases", "1", "--epochs", "2", "--steps-per-epoch", "2",
                 "--batch-size", "4", "--encoder", "resnet18", "--in-plane-size", "64",
                 "--atlas-fraction", "0", "--version", "0.0.1"])
    assert code == 0
    config = read_config(out)
    assert config.version == "0.0.1" and config.network.args["encoder_name"] == "resnet18"
    assert config.training["training_cases"] == 2 and "synthetic" in config.training["data"]
    assert 0.0 <= config.validation["mean_dice_right_lung"] <= 1.0 and config.validation["cases"] == 1
    assert "not clinically validated" in (out / "MODEL_CARD.md").read_text().lower()
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert log[0].startswith("epoch") and len(log) == 3
    assert json.loads((tmp_path / "run" / "run_config.json").read_text())["train_cases"] == 2
    Segmenter.load(out, device="cpu")  # checksum and strict weight loading pass


def test_train_refuses_an_existing_output(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "model").mkdir()
    assert main(["train", "--output", str(tmp_path / "model")]) == 2
    assert "already exists" in capsys.readouterr().err


def test_synthesize_writes_labelled_pairs_and_never_overwrites(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    args = ["synthesize", "-o", str(tmp_path), "--cases", "2", "--seed", "3", "--shape", "24", "64", "64",
            "--spacing", "2", "1.5", "1.5"]
    assert main(args) == 0
    images = sorted((tmp_path / "images").iterdir())
    labels = sorted((tmp_path / "labels").iterdir())
    assert [p.name for p in images] == [p.name for p in labels] == ["synthetic-000003.nii.gz",
                                                                  "synthetic-000004.nii.gz"]
    image = sitk.ReadImage(str(images[0]))
    label = sitk.ReadImage(str(labels[0]))
    assert image.GetPixelID() == sitk.sitkInt16 and image.GetSize() == (64, 64, 24)
    assert set(np.unique(sitk.GetArrayViewFromImage(label))) == {0, 1, 2}
    before = images[0].read_bytes()
    assert main(args) == 2 and "already exists" in capsys.readouterr().err
    assert images[0].read_bytes() == before


def test_dice_and_summary() -> None:
    a = np.zeros((4, 4), bool)
    b = a.copy()
    assert dice(a, b) == 1.0
    a[0, :2] = b[0, 1:3] = True
    assert dice(a, b) == pytest.approx(0.5)
    summary = summarise([{"dice_x": 0.8}, {"dice_x": 1.0}])
    assert summary == {"cases": 2, "mean_dice_x": 0.9, "min_dice_x": 0.8}
