"""Add an int8 copy of a model folder's network (``network-int8.onnx`` + ``network-int8.json``), checked
against fp32 before it is written.

    neonatal-lung-seg quantize --model Resources/Models/neonatal-lung-unet-r50 --calibration runs/dr-train190

How: the network built from the folder (``build_checked``) is exported to ONNX, its convolutions are quantized
with ONNX Runtime's static post-training quantization (QDQ; int8 weights per output channel, uint8
activations with min/max ranges from calibration slices cut from training volumes by the engine's own
preprocessing), except the layers in ``FLOAT_LAYERS``. Then every check volume is segmented in fp32 (torch)
and int8 (OpenVINO); the files are written only if each lung keeps Dice >= ``--min-dice`` against fp32, and
the record keeps those figures. Calibration must be training data, never the evaluation-only real MRI.

Why these float layers: Dice per lung against fp32 (AMD EPYC with AVX512-VNNI/BF16, one thread, under load) on
the real fetal thorax atlas (small lungs: the most sensitive volume), proton-0006 and the benchmark volume.
Model 2.2.0, all int8 but the first convolution, decoder blocks 3-4 and the head: 0.9945 / 0.9989 / 0.9995
(forward 2.0x torch bf16); also the first ResNet stage and decoder block 2 float: 0.9969 / 0.9993 / 0.9997.
Model 2.3.0 (2.5D) with that set: 0.9951 / 0.9987 / 0.9995, below bf16's 0.9976-0.9981 on the atlas; with
``FLOAT_LAYERS`` (also the second stage and decoder block 1): 0.9973-0.9977 / 0.9989-0.9995 / 0.9995, as close
as bf16, for about a third more forward time than the smaller set. Three times as many calibration slices, or
percentile instead of min/max calibration, did worse.

On a CPU without bf16 (a 2-core Intel Xeon with AVX512-VNNI only, where the float layers run in fp32 and
take three quarters of the forward time), model 2.3.0, forward ms/slice (median of 11 interleaved rounds) and
Dice per lung against fp32 on the atlas / the benchmark volume: that set 15.8 ms, 0.9994-0.9997 / 0.99998;
decoder block 1 in int8 too (``FLOAT_LAYERS`` now) 13.9 ms, 0.9988 / 0.9999; blocks 1 and 2 in int8 12.4 ms,
0.9970-0.9975 / 0.9997; the second ResNet stage in int8 instead 14.7 ms, 0.9969-0.9975: the second stage moves
the small lungs most for its time, decoder block 1 least.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from NeonatalLungSegLib.errors import ModelFolderError, NeonatalLungSegError, OutputExistsError, exit_status
from NeonatalLungSegLib.models.int8_network import INT8_NAME, INT8_RECORD, RECORD_FORMAT, Int8Network, read_record
from NeonatalLungSegLib.models.model_folder import read_config, sha256_of

# ONNX node-name prefixes kept in float (OpenVINO runs them in bf16 on a CPU with AVX512-BF16): the first
# convolution (raw intensities), the first two ResNet stages (the 32 x 32 and 16 x 16 skip connections), the
# decoder blocks from 16 x 16 up and the head, where rounding moves the lung boundary. What stays int8 is the
# deep half of the encoder and the first decoder block, where most of the work is.
FLOAT_LAYERS = ("/encoder/conv1", "/encoder/layer1", "/encoder/layer2", "/decoder/blocks.2", "/decoder/blocks.3",
                "/decoder/blocks.4", "/segmentation_head")
# The benchmark's volume (benchmarks/run.py, 256x256x96): the accuracy guard is measured on it.
BENCHMARK_VOLUME = {"seed": 5150, "shape": (96, 256, 256), "spacing": (1.5, 0.55, 0.55)}


def calibration_slices(data: Path, cases: int, slices: int, seed: int, config) -> np.ndarray:
    """``slices`` network inputs (N, C, H, W) from ``cases`` volumes of a training folder, seeded."""
    import torch

    from NeonatalLungSegLib.dataset.training_folder import read_training_folder

    from ..training.dataset import load_slices

    folder = read_training_folder(data)
    rng = np.random.default_rng(seed)
    if not folder.cases:
        raise NeonatalLungSegError(f"{data}: no cases to calibrate on")
    picked = [folder.cases[i] for i in sorted(rng.choice(len(folder.cases), min(cases, len(folder.cases)),
                                                         replace=False))]
    images = load_slices(folder, picked, config.input, 0.3, seed, storage=torch.float32).images.numpy()
    return images[np.sort(rng.choice(len(images), min(slices, len(images)), replace=False))]


def quantize_network(folder: Path, config, calibration: np.ndarray, out: Path) -> list[str]:
    """Write the int8 ONNX network to ``out``; returns the node names kept in float."""
    import onnx
    import torch
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from NeonatalLungSegLib.models.network import build_checked

    network = build_checked(folder, config).eval()
    with tempfile.TemporaryDirectory() as tmp:
        exported, prepared = Path(tmp) / "network.onnx", Path(tmp) / "network.pre.onnx"
        example = torch.from_numpy(calibration[:2])
        torch.onnx.export(network, (example,), str(exported), input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "slices"}, "logits": {0: "slices"}}, opset_version=17,
                          dynamo=False)
        quant_pre_process(str(exported), str(prepared))
        kept = [node.name for node in onnx.load(str(prepared)).graph.node
                if node.name.startswith(FLOAT_LAYERS)]

        class Batches(CalibrationDataReader):
            def __init__(self) -> None:
                self.batches = iter([{"image": calibration[i:i + 8]} for i in range(0, len(calibration), 8)])

            def get_next(self):
                return next(self.batches, None)

        quantize_static(str(prepared), str(out), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=kept)
    return kept


def check_volumes(paths: list[Path]) -> list[tuple[str, object]]:
    """(name, SimpleITK image) of each check volume; the benchmark's synthetic volume when none is given."""
    import SimpleITK as sitk

    if paths:
        return [(p.name, sitk.ReadImage(str(p))) for p in paths]
    from ..synthesis.neonatal.generator import generate_case

    image = generate_case(BENCHMARK_VOLUME["seed"], shape=BENCHMARK_VOLUME["shape"],
                          spacing=BENCHMARK_VOLUME["spacing"]).image
    return [("synthetic-256x256x96 (benchmark volume, seed 5150)", image)]


def dice_against_fp32(folder: Path, int8_file: Path, volumes: list[tuple[str, object]]) -> dict:
    """Per check volume, Dice per lung of the int8 labels against the fp32 (torch) labels."""
    import torch

    from NeonatalLungSegLib.inference.engine import Segmenter
    from NeonatalLungSegLib.inference.measure import dice

    reference = Segmenter.load(folder, device="cpu", precision="fp32", gate=False)  # the network quantized
    int8 = Segmenter(reference.config, Int8Network(int8_file, torch.get_num_threads()), torch.device("cpu"))
    figures = {}
    for name, image in volumes:
        want, got = reference.segment_image(image).labels, int8.segment_image(image).labels
        if not np.any(want):
            raise NeonatalLungSegError(f"check volume {name}: fp32 finds no lung, so it checks nothing")
        figures[name] = {lung: round(dice(got == value, want == value), 5)
                         for lung, value in (("right", 1), ("left", 2))}
    return figures


def run(args: argparse.Namespace) -> int:
    folder = Path(args.model)
    config = read_config(folder)
    if config.input.spatial_dims != 2 or config.input.guidance:
        raise ModelFolderError(f"{folder}: only slice-wise segmentation models can be quantized")
    target, record_path = folder / INT8_NAME, folder / INT8_RECORD
    if (target.exists() or record_path.exists()) and not args.replace:
        raise OutputExistsError(f"{folder} already has an int8 network; --replace makes a new one")
    if args.replace and record_path.exists():
        read_record(folder)  # refuse to replace something that is not ours
    calibration = calibration_slices(Path(args.calibration), args.cases, args.slices, args.seed, config)
    print(f"calibration: {len(calibration)} slices from up to {args.cases} case(s) of {args.calibration}", flush=True)
    staging = folder / f".{INT8_NAME}.{os.getpid()}.tmp"
    try:
        kept = quantize_network(folder, config, calibration, staging)
        figures = dice_against_fp32(folder, staging, check_volumes([Path(p) for p in args.check]))
        for name, lungs in figures.items():
            print(f"Dice int8 vs fp32, {name}: right {lungs['right']:.5f}, left {lungs['left']:.5f}", flush=True)
        worst = min(v for lungs in figures.values() for v in lungs.values())
        if worst < args.min_dice:
            raise NeonatalLungSegError(f"int8 Dice against fp32 {worst:.5f} < {args.min_dice}: nothing written")
        import onnxruntime

        record = {"format": RECORD_FORMAT, "file": INT8_NAME, "sha256": sha256_of(staging),
                  "weights_sha256": config.weights_sha256, "model": f"{config.name} {config.version}",
                  "method": "ONNX Runtime static quantization, QDQ, int8 weights per channel, uint8 activations, "
                            "min/max calibration",
                  "float_layers": list(FLOAT_LAYERS), "float_nodes": len(kept),
                  "calibration": {"data": Path(args.calibration).name, "cases": args.cases,
                                  "slices": int(len(calibration)), "seed": args.seed,
                                  "slices_sha256": hashlib.sha256(calibration.tobytes()).hexdigest()},
                  "dice_vs_fp32": figures, "min_dice_required": args.min_dice,
                  "tools": {"onnxruntime": onnxruntime.__version__}}
        os.replace(staging, target)
        tmp_record = record_path.with_suffix(".json.tmp")
        tmp_record.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp_record, record_path)
    finally:
        staging.unlink(missing_ok=True)
    print(f"wrote {target} ({target.stat().st_size / 1e6:.1f} MB) and {record_path}; the model card names it once "
          "rewritten (neonatal_lung_training.training.model_card.write_model_card)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="neonatal-lung-seg quantize", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="the model folder to add the int8 network to")
    parser.add_argument("--calibration", required=True, help="a training folder (training data only)")
    parser.add_argument("--cases", type=int, default=5, help="volumes to cut calibration slices from")
    parser.add_argument("--slices", type=int, default=160, help="calibration slices")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check", nargs="*", default=[],
                        help="volumes to check Dice against fp32 on (default: the benchmark's synthetic volume)")
    parser.add_argument("--min-dice", type=float, default=0.999, help="per lung, against fp32, on every check")
    parser.add_argument("--replace", action="store_true", help="replace the folder's existing int8 network")
    args = parser.parse_args(argv)
    if args.cases < 1 or args.slices < 8:
        parser.error("--cases must be >= 1 and --slices >= 8")
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import openvino  # noqa: F401
    except ImportError as exc:
        print(f"error: quantize needs onnx, onnxruntime and openvino ({exc.name} is missing): "
              "pip install -e '.[quantize]'", file=sys.stderr)
        return 2
    return exit_status(lambda: run(args))


if __name__ == "__main__":
    raise SystemExit(main())
