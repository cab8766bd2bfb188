"""`neonatal-lung-seg quantize` (issue 16): the int8 network is written only after its labels were checked
against fp32, never half-written, never replacing an existing one unasked."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import BUNDLED_MODEL, BUNDLED_SAMPLE
from NeonatalLungSegLib.inference.engine import Segmenter
from NeonatalLungSegLib.models.int8_network import INT8_NAME, INT8_RECORD, unavailable_reason
from NeonatalLungSegLib.models.model_folder import read_config
from training_fixtures import toy_training_folder

pytest.importorskip("openvino")
pytest.importorskip("onnxruntime")


@pytest.mark.slow
def test_quantize_writes_only_a_checked_network_and_never_replaces_one_unasked(tmp_path: Path, capsys) -> None:
    from neonatal_lung_training.release.quantize import main as quantize

    folder = tmp_path / "model"
    shutil.copytree(BUNDLED_MODEL, folder)
    (folder / INT8_NAME).unlink()
    (folder / INT8_RECORD).unlink()
    data = toy_training_folder(tmp_path / "calibration")
    args = ["--model", str(folder), "--calibration", str(data), "--cases", "2", "--slices", "16",
            "--check", str(BUNDLED_SAMPLE)]
    assert quantize(args + ["--min-dice", "1.01"]) == 2  # a check nothing can pass: nothing is written
    assert "nothing written" in capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in BUNDLED_MODEL.iterdir()
                                                              if not p.name.startswith("network-int8"))
    assert quantize(args) == 0
    record = json.loads((folder / INT8_RECORD).read_text(encoding="utf-8"))
    assert record["calibration"]["slices"] == 16 and record["dice_vs_fp32"][BUNDLED_SAMPLE.name]["right"] >= 0.99
    assert unavailable_reason(folder, read_config(folder)) is None
    before = (folder / INT8_NAME).read_bytes()
    assert quantize(args) == 2  # an existing int8 network is never replaced unasked
    assert "--replace" in capsys.readouterr().err and (folder / INT8_NAME).read_bytes() == before
    labels = Segmenter.load(folder, device="cpu", precision="int8").segment_image(
        sitk.ReadImage(str(BUNDLED_SAMPLE))).labels
    assert np.count_nonzero(labels == 1) > 1000 and np.count_nonzero(labels == 2) > 1000


def test_the_model_card_names_a_current_int8_network_only(tmp_path: Path) -> None:
    from neonatal_lung_training.training.model_card import write_model_card

    folder = tmp_path / "model"
    shutil.copytree(BUNDLED_MODEL, folder)
    card = write_model_card(folder).read_text(encoding="utf-8")
    assert "int8 network: `network-int8.onnx`" in card and "Dice of its labels against fp32" in card
    record = json.loads((folder / INT8_RECORD).read_text(encoding="utf-8"))
    record["weights_sha256"] = "0" * 64  # made from other weights: the card must not claim it
    (folder / INT8_RECORD).write_text(json.dumps(record))
    assert "int8 network" not in write_model_card(folder).read_text(encoding="utf-8")
    (folder / INT8_RECORD).unlink()
    (folder / INT8_NAME).unlink()
    assert "int8 network" not in write_model_card(folder).read_text(encoding="utf-8")
