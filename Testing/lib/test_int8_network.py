"""The int8 network of a model folder (issue 16): when ``auto`` takes it, that it is verified before it runs,
that it keeps the labels of fp32, and that ``neonatal-lung-seg quantize`` writes it only after checking it."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from conftest import BUNDLED_MODEL, BUNDLED_SAMPLE
from NeonatalLungSegLib.inference import acceleration
from NeonatalLungSegLib.inference.engine import Segmenter
from NeonatalLungSegLib.errors import ModelFolderError
from NeonatalLungSegLib.models.int8_network import INT8_NAME, INT8_RECORD, unavailable_reason
from NeonatalLungSegLib.inference.measure import dice
from NeonatalLungSegLib.models.model_folder import read_config

pytest.importorskip("openvino")
# flag sets as in test_cpu_precision.py
AVX2_LAPTOP = "avx fma avx2"
AMD_ZEN4 = AVX2_LAPTOP + " avx512f avx512_vnni avx512_bf16"
ALDER_LAKE = AVX2_LAPTOP + " avx_vnni"
INTEL_AMX_FP16 = AMD_ZEN4 + " amx_tile amx_bf16 amx_fp16"



@pytest.fixture(scope="module")
def model_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled model folder, copied so that tests may damage it."""
    folder = tmp_path_factory.mktemp("int8") / "model"
    shutil.copytree(BUNDLED_MODEL, folder)
    return folder


def test_the_bundled_model_carries_a_verified_int8_network() -> None:
    config = read_config(BUNDLED_MODEL)
    assert unavailable_reason(BUNDLED_MODEL, config) is None
    record = json.loads((BUNDLED_MODEL / INT8_RECORD).read_text(encoding="utf-8"))
    assert record["weights_sha256"] == config.weights_sha256
    assert min(v for lungs in record["dice_vs_fp32"].values() for v in lungs.values()) >= 0.999


@pytest.mark.parametrize("flags, expected", [(AMD_ZEN4, "int8"), (ALDER_LAKE, "int8"), (AVX2_LAPTOP, "fp32"),
                                             (INTEL_AMX_FP16, "fp16")])
def test_auto_takes_int8_exactly_on_cpus_with_vnni_and_without_amx_fp16(mock_cpu, flags: str,
                                                                      expected: str) -> None:
    mock_cpu(flags)
    segmenter = Segmenter.load(BUNDLED_MODEL, device="cpu")
    assert segmenter.precision == expected
    assert (segmenter.inference["backend"].startswith("openvino")) == (expected == "int8")
    if expected == "int8":
        assert "VNNI" in segmenter.precision_reason


def test_a_damaged_stale_or_missing_int8_network_is_never_run(model_copy: Path, mock_cpu,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    mock_cpu(AMD_ZEN4)
    config = read_config(model_copy)
    onnx_path, record_path = model_copy / INT8_NAME, model_copy / INT8_RECORD
    original_onnx, original_record = onnx_path.read_bytes(), record_path.read_text(encoding="utf-8")
    try:
        onnx_path.write_bytes(original_onnx[:-10] + b"0123456789")  # altered in place
        assert "SHA-256" in unavailable_reason(model_copy, config)
        assert Segmenter.load(model_copy, device="cpu").precision == "bf16"  # auto falls back to torch
        with pytest.raises(ModelFolderError, match="int8 unavailable: .*SHA-256"):
            Segmenter.load(model_copy, device="cpu", precision="int8")
        onnx_path.write_bytes(original_onnx)
        record = json.loads(original_record)
        record["weights_sha256"] = "0" * 64  # made from other weights (the folder was retrained)
        record_path.write_text(json.dumps(record))
        assert "other weights" in unavailable_reason(model_copy, config)
        record_path.write_text("{not json")
        with pytest.raises(ModelFolderError, match="not valid JSON"):
            unavailable_reason(model_copy, config)
        record_path.write_text(original_record)
        monkeypatch.setitem(sys.modules, "openvino", None)  # not installed
        assert "openvino" in unavailable_reason(model_copy, config)
        monkeypatch.delitem(sys.modules, "openvino")
        onnx_path.unlink()
        assert "missing" in unavailable_reason(model_copy, config)
        record_path.unlink()
        assert "no network-int8.onnx" in unavailable_reason(model_copy, config)
    finally:
        onnx_path.write_bytes(original_onnx)
        record_path.write_text(original_record)
    assert unavailable_reason(model_copy, config) is None


def test_int8_is_cpu_only_and_not_for_other_model_kinds(tiny_model_folder: Path) -> None:
    from NeonatalLungSegLib.inference.engine import int8_choice

    with pytest.raises(ValueError, match="CPU only"):
        int8_choice(BUNDLED_MODEL, read_config(BUNDLED_MODEL), torch.device("cuda"), "int8")
    with pytest.raises(ModelFolderError, match="no network-int8.onnx"):
        Segmenter.load(tiny_model_folder, device="cpu", precision="int8")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bundled-sample", "synthetic-256x256x96"])
def test_int8_keeps_dice_within_0_001_of_fp32(name: str) -> None:
    """Issue 16's guard for the int8 choice, on the volumes the benchmark times. Runs where ``auto`` takes
    int8 (VNNI); elsewhere OpenVINO emulates int8 with other rounding, which says nothing about the choice."""
    if not acceleration.cpu_prefers_int8()[0]:
        pytest.skip(f"auto never takes int8 on this CPU: {acceleration.cpu_line()}")
    if name == "bundled-sample":
        image = sitk.ReadImage(str(BUNDLED_SAMPLE))
    else:
        from neonatal_lung_training.synthesis.neonatal.generator import generate_case

        image = generate_case(5150, shape=(96, 256, 256), spacing=(1.5, 0.55, 0.55)).image
    reference = Segmenter.load(BUNDLED_MODEL, device="cpu", precision="fp32").segment_image(image).labels
    int8 = Segmenter.load(BUNDLED_MODEL, device="cpu", precision="int8")
    labels = int8.segment_image(image).labels
    assert int8.inference["precision"] == "int8" and np.count_nonzero(reference) > 1000
    for value in (1, 2):
        assert dice(labels == value, reference == value) >= 0.999, (name, value)
