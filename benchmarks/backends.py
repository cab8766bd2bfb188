"""Issue 16, item 2: torch eager against ONNX Runtime and OpenVINO on the same model, on this CPU.

A benchmark, not a test; it decides whether an optional inference backend earns its dependency (the rule:
adopt one only if it is >= 1.3x faster than torch with identical masks, Dice >= 0.999 per lung).

    .venv/bin/python -m pip install onnx onnxruntime openvino      # not project dependencies
    .venv/bin/python benchmarks/backends.py [--rounds 5] [--slices 32] [--no-dice]

All three run the bundled model's network, built from its config by ``build_network`` and exported from that
same module (``torch.onnx.export``; OpenVINO reads the ONNX file), in fp32 (the precision ``auto`` picks on a
CPU without AVX512-BF16 or AMX; run it where those exist and torch's bf16/fp16 is the one to beat). Forward
time: batches of 8 slices of 128 x 128, each backend with as many threads as physical cores, round robin
(each backend once per round) and medians, wall time and the process's CPU time (which a busy machine
distorts less). Masks: the whole engine (preprocess, infer, post-process) on the benchmark's 256x256x96
synthetic volume with each backend as the network, Dice per lung against torch's labels.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "NeonatalLungSeg"), str(REPO / "Training")]
MODEL = REPO / "Resources" / "Models" / "neonatal-lung-unet-r50"
BATCH = 8


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--slices", type=int, default=32, help="slices per timed forward pass (multiple of 8)")
    parser.add_argument("--no-dice", action="store_true", help="skip the end-to-end mask comparison")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    from NeonatalLungSegLib.inference import acceleration

    acceleration.configure_process()
    import numpy as np
    import torch

    from NeonatalLungSegLib.inference.engine import Segmenter
    from NeonatalLungSegLib.models.model_folder import read_config
    from NeonatalLungSegLib.models.network import build_checked

    threads = acceleration.configure_cpu_threads()
    config = read_config(MODEL)
    inp = config.input
    network = build_checked(MODEL, config)
    versions = {"torch": torch.__version__}
    backends: dict[str, object] = {}
    torch_net = network.to(memory_format=torch.channels_last)

    def run_torch(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return torch_net(torch.from_numpy(x).contiguous(memory_format=torch.channels_last)).numpy()

    backends["torch eager (channels_last)"] = run_torch
    with tempfile.TemporaryDirectory(prefix="nls-backends-") as tmp:
        onnx_path = Path(tmp) / "network.onnx"
        example = torch.zeros((BATCH, inp.channels, *inp.in_plane_size))
        started = time.perf_counter()
        torch.onnx.export(network, (example,), str(onnx_path), input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17,
                          dynamo=False)
        export_s = time.perf_counter() - started
        try:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
            backends["onnxruntime"] = lambda x: session.run(None, {"image": x})[0]
            versions["onnxruntime"] = ort.__version__
        except ImportError:
            print("onnxruntime not installed: skipped", file=sys.stderr)
        try:
            import openvino as ov

            compiled = ov.Core().compile_model(str(onnx_path), "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                                        "PERFORMANCE_HINT": "LATENCY"})
            request = compiled.create_infer_request()
            backends["openvino"] = lambda x: request.infer({0: x})[0].copy()
            versions["openvino"] = ov.__version__
            versions["openvino inference precision"] = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
        except ImportError:
            print("openvino not installed: skipped", file=sys.stderr)

        rng = np.random.default_rng(0)
        x = rng.standard_normal((BATCH, inp.channels, *inp.in_plane_size)).astype(np.float32)
        reference = run_torch(x)
        agreement = {}
        for name, run in backends.items():  # warm-up (kernel selection) and logits against torch's
            out = run(x)
            agreement[name] = {"max_abs_logit_difference": float(np.abs(out - reference).max()),
                               "same_sign_share": float(((out > 0) == (reference > 0)).mean())}
        wall: dict[str, list[float]] = {name: [] for name in backends}
        cpu: dict[str, list[float]] = {name: [] for name in backends}
        loads = []
        for _ in range(args.rounds):
            loads.append(os.getloadavg()[0])
            for name, run in backends.items():
                c0, t0 = time.process_time(), time.perf_counter()
                for _ in range(max(1, args.slices // BATCH)):
                    run(x)
                wall[name].append((time.perf_counter() - t0) / args.slices * 1000)
                cpu[name].append((time.process_time() - c0) / args.slices * 1000)

        dice = {}
        if not args.no_dice:
            from neonatal_lung_training.synthesis.neonatal.generator import generate_case

            from NeonatalLungSegLib.geometry import image_to_array
            from NeonatalLungSegLib.inference.measure import dice as dice_of

            image = generate_case(5150, shape=(96, 256, 256), spacing=(1.5, 0.55, 0.55)).image
            array, geometry = image_to_array(image)
            array = array.astype(np.float32, copy=False)
            labels = {}
            for name, run in backends.items():
                adapter = _Adapter(run) if not name.startswith("torch") else network
                segmenter = Segmenter(config, adapter, torch.device("cpu"), precision="fp32",
                                      channels_last=name.startswith("torch"))
                labels[name] = segmenter.segment_array(array, geometry).labels
            base = labels["torch eager (channels_last)"]
            for name, got in labels.items():
                dice[name] = {"right": dice_of(got == 1, base == 1), "left": dice_of(got == 2, base == 2)}

    line = acceleration.cpu_line()
    torch_ms = statistics.median(wall["torch eager (channels_last)"])
    torch_cpu = statistics.median(cpu["torch eager (channels_last)"])
    print(f"machine: {line}, {threads} threads; {json.dumps(versions)}")
    print(f"load average (1 min) before each round: {', '.join(f'{v:.2f}' for v in loads)}")
    print(f"ONNX export (torch.onnx.export, opset 17): {export_s:.1f} s")
    results = {"machine": line, "threads": threads, "versions": versions, "load1": loads, "export_s": export_s,
               "backends": {}}
    for name in backends:
        ms, cpu_ms = statistics.median(wall[name]), statistics.median(cpu[name])
        entry = {"ms_per_slice": ms, "cpu_ms_per_slice": cpu_ms, "speedup_wall": torch_ms / ms,
                 "speedup_cpu": torch_cpu / cpu_ms, **agreement[name], "dice_vs_torch": dice.get(name),
                 "runs_ms_per_slice": wall[name]}
        results["backends"][name] = entry
        d = dice.get(name)
        print(f"{name:>28}: {ms:6.1f} ms/slice wall ({torch_ms / ms:.2f}x torch), {cpu_ms:6.1f} ms/slice CPU "
              f"({torch_cpu / cpu_ms:.2f}x); max |logit diff| {entry['max_abs_logit_difference']:.1e}"
              + (f"; Dice vs torch right {d['right']:.5f} left {d['left']:.5f}" if d else "")
              + f"; fp32; {line}")
    winners = [n for n, e in results["backends"].items() if not n.startswith("torch") and e["speedup_wall"] >= 1.3
               and e["speedup_cpu"] >= 1.3 and (not e["dice_vs_torch"] or min(e["dice_vs_torch"].values()) >= 0.999)]
    print("adopt (>= 1.3x wall and CPU time, Dice >= 0.999): " + (", ".join(winners) or "none"))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0


class _Adapter:
    """A backend's session behind the torch module interface the engine calls (tensor in, tensor out)."""

    def __init__(self, run) -> None:
        self.run = run

    def __call__(self, batch):
        import numpy as np
        import torch

        return torch.from_numpy(self.run(np.ascontiguousarray(batch.float().numpy())))

    def to(self, *args, **kwargs):
        return self

    def eval(self):
        return self


if __name__ == "__main__":
    sys.exit(main())
