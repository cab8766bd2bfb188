"""Precision chosen per CPU (issue 16): each instruction-set case with the CPU's features mocked, and the
choice reported by the engine's result and by `segment`.

Whether each half precision keeps the labels (Dice >= 0.999 per lung against fp32) is checked on real
hardware by ``test_accuracy_preserved.py``, which runs where the CPU has the feature and skips elsewhere.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from NeonatalLungSegLib.inference import acceleration
from NeonatalLungSegLib.inference.acceleration import CpuFeatures, cpu_precision, describe_precision, resolve_precision

# /proc/cpuinfo flag sets of the CPU families the project has met (trimmed to the features that matter,
# plus a few irrelevant ones so parsing is exercised).
AVX2_LAPTOP = "fpu sse4_2 avx f16c fma avx2 bmi2"                                   # AMD EPYC here, Core i7
AVX512_NO_BF16 = AVX2_LAPTOP + " avx512f avx512bw avx512vl avx512_vnni"              # Skylake/Cascade Lake
AMD_AVX512_BF16 = AVX512_NO_BF16 + " avx512_bf16"                                    # AMD EPYC Zen 4
INTEL_AMX_BF16 = AMD_AVX512_BF16 + " amx_tile amx_bf16 amx_int8"                     # Sapphire Rapids
INTEL_AMX_FP16 = INTEL_AMX_BF16 + " amx_fp16 avx512_fp16"                            # Granite Rapids
ARM = "fp asimd evtstrm aes sha1 crc32 asimdhp"                                      # Apple / Graviton

CASES = [  # flags, precision auto picks, the reason it names
    (AVX2_LAPTOP, "fp32", "no AVX512-BF16 or AMX"),
    (AVX512_NO_BF16, "fp32", "no AVX512-BF16 or AMX"),
    (AMD_AVX512_BF16, "bf16", "AVX512-BF16"),
    (INTEL_AMX_BF16, "bf16", "AMX-BF16"),
    (INTEL_AMX_FP16, "fp16", "AMX-FP16"),
    (ARM, "fp32", "no AVX512-BF16 or AMX"),
]



@pytest.mark.parametrize("flags, expected, reason", CASES)
def test_auto_precision_follows_the_cpu_features(mock_cpu, flags: str, expected: str, reason: str) -> None:
    features = mock_cpu(flags)
    assert cpu_precision(features) == (expected, reason)
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == expected
    precision, why = describe_precision("auto", cpu)
    assert precision == expected and reason in why


@pytest.mark.parametrize("flags, expected", [(AVX2_LAPTOP, "fp32"), (AVX512_NO_BF16, "fp32"), (ARM, "fp32"),
                                             (AMD_AVX512_BF16, "bf16"), (INTEL_AMX_BF16, "bf16"),
                                             (INTEL_AMX_FP16, "bf16")])
def test_training_autocast_is_bf16_exactly_where_the_cpu_has_bf16_hardware(mock_cpu, flags: str,
                                                                           expected: str) -> None:
    mock_cpu(flags)
    assert acceleration.resolve_training_precision("auto", torch.device("cpu")) == expected
    assert acceleration.resolve_training_precision("fp32", torch.device("cpu")) == "fp32"


@pytest.mark.parametrize("flags", [AVX2_LAPTOP, AMD_AVX512_BF16, INTEL_AMX_FP16])
def test_fp16_is_never_chosen_without_amx_fp16(mock_cpu, flags: str) -> None:
    """fp16 without AMX-FP16 is emulated: 7x slower than fp32 on the AVX512-BF16 EPYC."""
    features = mock_cpu(flags)
    assert (resolve_precision("auto", torch.device("cpu")) == "fp16") == features.amx_fp16


@pytest.mark.parametrize("requested", ["fp32", "fp16", "bf16"])
def test_a_requested_precision_is_kept_whatever_the_cpu(mock_cpu, requested: str) -> None:
    mock_cpu(AVX2_LAPTOP)
    assert describe_precision(requested.upper(), torch.device("cpu")) == (requested, "requested")
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("int8", torch.device("cpu"))


def test_features_are_parsed_and_named() -> None:
    laptop = CpuFeatures.from_flags(AVX2_LAPTOP.split())
    assert laptop == CpuFeatures(avx2=True, fma=True)
    assert laptop.describe() == "AVX2, FMA; no AVX-512, no AMX"
    assert CpuFeatures.from_flags(AMD_AVX512_BF16.split()).describe() == \
        "AVX2, FMA, AVX-512, AVX512-VNNI, AVX512-BF16; no AMX"
    assert CpuFeatures.from_flags(INTEL_AMX_FP16.split()).describe() == \
        "AVX2, FMA, AVX-512, AVX512-VNNI, AVX512-BF16, AMX-BF16, AMX-FP16"
    assert CpuFeatures.from_flags(ARM.split()).describe() == "no AVX2; no AVX-512, no AMX"


def test_the_cpu_signature_tells_apart_cpus_sold_under_one_name() -> None:
    block = "processor\t: {n}\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: {model}\n" \
            "model name\t: Intel(R) Xeon(R) Processor @ 2.60GHz\nstepping\t: {step}\n\n"
    ice_lake = block.format(n=0, model=106, step=6) + block.format(n=1, model=106, step=6)
    assert acceleration.cpu_signature(ice_lake) == "family 6 model 106 stepping 6"
    assert acceleration.cpu_signature(block.format(n=0, model=143, step=8)) == "family 6 model 143 stepping 8"
    assert acceleration.cpu_signature("") == ""  # no /proc/cpuinfo (macOS, Windows): nothing invented


def test_this_cpu_is_described_without_importing_anything_heavy() -> None:
    acceleration.cpu_features.cache_clear()
    features = acceleration.cpu_features()
    assert isinstance(features, CpuFeatures)
    assert acceleration.cpu_model() in acceleration.cpu_line()
    assert features.describe() in acceleration.cpu_line()
    assert acceleration.cpu_signature() in acceleration.cpu_line()  # the generation, beside every figure


@pytest.mark.parametrize("flags, expected", [(AVX2_LAPTOP, "fp32"), (AMD_AVX512_BF16, "bf16")])
def test_the_result_and_segment_say_which_precision_was_used(mock_cpu, flags: str, expected: str,
                                                             tiny_model_folder: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    """bf16 autocast runs (emulated, slowly) on any CPU, so the tiny model exercises the path everywhere."""
    from test_cli import write_volume

    from NeonatalLungSegLib.cli.main import main
    from NeonatalLungSegLib.inference.engine import Segmenter
    from NeonatalLungSegLib.geometry import image_to_array
    from NeonatalLungSegLib.volumes.volume_io import read_volume

    mock_cpu(flags)
    source = write_volume(tmp_path / "case.nii.gz")
    segmenter = Segmenter.load(tiny_model_folder, device="cpu")
    array, geometry = image_to_array(read_volume(source))
    result = segmenter.segment_array(array.astype(np.float32), geometry)
    assert result.inference["precision"] == expected and result.inference["device"] == "cpu"
    assert f"cpu, {expected}" in result.summary() and "mL" in result.summary()

    assert main(["segment", str(source), "-o", str(tmp_path / "out"), "--model", str(tiny_model_folder),
                 "--device", "cpu"]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert f"on cpu, {expected}" in header and acceleration.cpu_model() in header
    report = json.loads((tmp_path / "out" / "case_volumes.json").read_text(encoding="utf-8"))
    assert report["inference"]["precision"] == expected


class _OverflowsInHalf(torch.nn.Module):
    """Logits that are finite in fp32 but overflow when computed in a half precision's autocast (fp16)."""

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        big = torch.nn.functional.linear(batch.flatten(1), torch.full((1, batch[0].numel()), 1e3))
        return big.view(-1, 1, 1, 1) * 1e2


def test_a_half_precision_batch_that_overflows_is_recomputed_in_fp32() -> None:
    cpu = torch.device("cpu")
    batch = torch.ones(2, 1, 4, 4)
    with torch.autocast("cpu", dtype=torch.float16):
        assert not torch.isfinite(_OverflowsInHalf()(batch)).all()       # the overflow is real
        logits = acceleration.checked_forward(_OverflowsInHalf(), batch, cpu, "fp16")
    assert torch.isfinite(logits).all() and logits.dtype == torch.float32
    assert float(logits[0, 0, 0, 0]) == pytest.approx(1.6e6)
