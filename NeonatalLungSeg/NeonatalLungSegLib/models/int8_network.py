"""The int8 copy of a model folder's network, run by OpenVINO: the fastest CPU path where the CPU has VNNI.

Why: on a 2-core AMD EPYC with AVX512-BF16 and AVX512-VNNI (no AMX) bf16 autocast already runs the
ResNet-50 U-Net at about two thirds of the CPU's bf16 peak, so no bf16 kernel can reach issue 16's 3.5x over
the naive fp32 baseline; int8 dot products (VNNI) do twice the work per instruction.

What it is: the same network (built from the folder's config and weights, exported with ``torch.onnx.export``,
never a second copy of its code) with its convolutions quantized to int8 (``neonatal-lung-seg quantize``,
``neonatal_lung_training/release/quantize.py``). The deep half of the encoder and the first decoder block, where most of
the work is, run in int8; the layers that place the lung boundary stay float (``quantize.FLOAT_LAYERS``: on the
small lungs of a real fetal MRI atlas quantizing them moved Dice against fp32 to 0.995). Two files beside
``model.json``:

- ``network-int8.onnx``: the quantized network (ONNX is a protobuf graph, nothing is unpickled);
- ``network-int8.json``: its SHA-256, the SHA-256 of the weights it was made from (a retrained folder's stale
  int8 file is never used), how it was calibrated and its measured Dice against fp32.

``auto`` precision picks int8 only on a CPU with VNNI and without AMX-FP16 (there fp16 keeps Dice 0.9999 and is
as fast), only where both files verify and the optional ``openvino`` package is installed; otherwise the
torch path runs exactly as before. ``--precision int8`` asks for it explicitly (and says why it cannot run).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .model_folder import ModelConfig, ModelFolderError, read_json_file, sha256_of, verify_weights

INT8_NAME = "network-int8.onnx"
INT8_RECORD = "network-int8.json"
RECORD_FORMAT = "neonatal-lung-int8-network"
MAX_RECORD_BYTES = 1 << 16  # the bundled record is 1 kB


def read_record(folder: Path) -> dict[str, Any] | None:
    """The folder's int8 record, or None when it has none; a damaged record is an error, not a silent skip."""
    path = Path(folder) / INT8_RECORD
    if not path.is_file():
        return None
    record = read_json_file(path, MAX_RECORD_BYTES)  # bounded, and one line for any damage (deep nesting too)
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT \
            or not isinstance(record.get("sha256"), str) or not isinstance(record.get("weights_sha256"), str):
        raise ModelFolderError(f"{path}: not an int8 network record (format, sha256, weights_sha256)")
    return record


def unavailable_reason(folder: Path | None, config: ModelConfig) -> str | None:
    """Why the int8 network cannot run for this folder (None: it can). Checks files and checksums, not CPU.

    Where the int8 network could run, the folder's ``model.safetensors`` is checked against ``model.json`` too
    (ModelFolderError when missing, truncated or swapped), although this path never reads it: every file of
    a model folder is checked on every path, so a damaged folder is refused whichever precision runs it, not
    only once the CPU or the precision sends it down the torch path."""
    if folder is None:
        return "no model folder"
    if config.input.spatial_dims != 2 or config.input.guidance:
        return "only slice-wise segmentation models have an int8 network"
    record = read_record(folder)
    if record is None:
        return f"the model folder has no {INT8_NAME} (make one with `neonatal-lung-seg quantize`)"
    if record["weights_sha256"] != config.weights_sha256:
        return f"{INT8_NAME} was made from other weights than this folder's (re-run quantize)"
    onnx_path = Path(folder) / INT8_NAME
    if not onnx_path.is_file():
        return f"{INT8_RECORD} names {INT8_NAME}, which is missing"
    if sha256_of(onnx_path) != record["sha256"]:
        return f"{INT8_NAME} fails its SHA-256 check (altered or truncated)"
    try:
        import openvino  # noqa: F401
    except ImportError:
        return "the optional openvino package is not installed (pip install openvino)"
    verify_weights(folder, config)
    return None


class Int8Network:
    """The compiled int8 network: a float32 array batch (N, C, H, W) in, logits (N, 1, H, W) out, with no torch
    anywhere (``array_inference.py`` runs it), so a command on this path never pays torch's import."""

    def __init__(self, path: Path, threads: int) -> None:
        """Compiled from the checked ONNX file on every load (0.44 s): OpenVINO's blob cache is not used, since a
        blob in a folder other programs can write could not be verified as the model folder is."""
        import openvino as ov

        core = ov.Core()
        try:
            self.compiled = core.compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": int(threads),
                                                                  "PERFORMANCE_HINT": "LATENCY"})
            self.request = self.compiled.create_infer_request()
        except (RuntimeError, ValueError, TypeError, OSError) as exc:
            # A file whose record matches (rewritten with it) but that is no network OpenVINO can compile:
            # its message spans several lines of C++ locations; the last non-empty one says what is wrong.
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            detail = lines[-1][:200] if lines else type(exc).__name__
            raise ModelFolderError(f"{path}: OpenVINO cannot compile this int8 network ({detail}); re-run "
                                   "`neonatal-lung-seg quantize` or remove network-int8.onnx and "
                                   "network-int8.json to use the torch path") from None
        self.version = ov.__version__.split("-")[0]  # "2026.4.1", not the build string

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        array = np.ascontiguousarray(batch, dtype=np.float32)
        return self.request.infer({0: array})[0].copy()
