"""Child processes of the benchmark: one configuration on one volume, and the model-level figures.

Each runs in its own process so its peak RSS is its own and OpenMP settings apply before torch loads.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "Resources" / "Models" / "neonatal-lung-unet-r50"

def worker(spec: dict) -> None:
    """Runs in a child process: one configuration on one volume, commands from the parent on stdin."""
    import resource

    sys.path[:0] = [str(REPO / "NeonatalLungSeg")]
    from NeonatalLungSegLib.inference import acceleration

    if spec["config"]["passive"]:
        acceleration.configure_process()
    import torch

    from NeonatalLungSegLib.inference.engine import Segmenter
    from NeonatalLungSegLib.volumes.volume_io import AtomicOutputs, read_volume

    config = spec["config"]
    if config["threads"] == "physical cores":
        acceleration.configure_cpu_threads()
    cuda = spec["device"] == "cuda"
    started = time.perf_counter()
    segmenter = Segmenter.load(MODEL, device=spec["device"], batch_size=config["batch_size"],
                               precision=config["precision"], channels_last=config["channels_last"])
    load_s = time.perf_counter() - started
    predict_times: list[float] = []
    original_predict = segmenter.predict

    def timed_predict(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return original_predict(*args, **kwargs)
        finally:
            predict_times.append(time.perf_counter() - t0)

    segmenter.predict = timed_predict
    out = Path(spec["out"])
    gpu_peaks: list[int] = []

    def end_to_end() -> dict:
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        image = read_volume(spec["volume"], check=config["check_twice"])
        t1 = time.perf_counter()
        result = segmenter.segment_image(image)
        t2 = time.perf_counter()
        with AtomicOutputs(overwrite=True) as outputs:
            outputs.write_image(result.labels_image(), out / "labels.nii.gz")
            outputs.write_json(result.volumes, out / "volumes.json")
        t3 = time.perf_counter()
        if cuda:
            gpu_peaks.append(torch.cuda.max_memory_allocated())
        infer = predict_times[-1]
        return {"total_s": t3 - t0, "read_s": t1 - t0, "preprocess_infer_s": infer,
                "postprocess_s": t2 - t1 - infer, "write_s": t3 - t2}

    def cpu_seconds() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    # Commands on stdin, one JSON answer per line on stdout: the parent interleaves the configurations'
    # runs (round robin), so that every configuration meets the same load on a shared machine.
    reply({"load_s": load_s, "batch_size": segmenter.batch_size, "precision": segmenter.precision,
           "precision_reason": segmenter.precision_reason, "backend": segmenter.inference["backend"],
           "channels_last": segmenter.channels_last, "threads": torch.get_num_threads(),
           "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default)")})
    for command in sys.stdin:
        command = command.strip()
        before = cpu_seconds()
        if command == "run":
            answer = end_to_end()
        elif command == "forward":
            answer = forward_only(segmenter, spec["device"])
        elif command == "profile":
            answer = profile(segmenter, end_to_end)
        else:
            answer = {"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
            if cuda and gpu_peaks:
                answer["peak_gpu_bytes"] = max(gpu_peaks)
            reply(answer)
            return
        answer["_cpu_s"] = cpu_seconds() - before
        reply(answer)


def reply(answer: dict) -> None:
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()


def forward_only(segmenter, device: str) -> dict:
    """Network forward alone on slices at the model's size, in the configuration's batch size and precision."""
    import torch

    from NeonatalLungSegLib.inference.acceleration import autocast

    inp = segmenter.config.input
    batch = segmenter.batch_size
    total = max(48, 4 * batch) if device == "cuda" else max(16, 4 * batch)
    total = -(-total // batch) * batch
    layout = torch.channels_last if segmenter.channels_last else torch.contiguous_format
    x = torch.rand((batch, inp.channels, *inp.in_plane_size), device=device).contiguous(memory_format=layout)

    def once() -> float:
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.inference_mode(), autocast(segmenter.device, segmenter.precision):
            for _ in range(total // batch):
                segmenter.network(x)
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    once()  # warm-up: oneDNN / cuDNN pick their kernels
    times = [once() for _ in range(3)]
    median = statistics.median(times)
    return {"slices": total, "ms_per_slice": 1000 * median / total, "slices_per_s": total / median}


def profile(segmenter, end_to_end) -> dict:
    """cProfile of one end-to-end run and torch.profiler's top operators in one forward batch."""
    import cProfile
    import io
    import pstats

    import torch

    from NeonatalLungSegLib.inference.acceleration import autocast

    profiler = cProfile.Profile()
    profiler.enable()
    end_to_end()
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(25)
    inp = segmenter.config.input
    layout = torch.channels_last if segmenter.channels_last else torch.contiguous_format
    x = torch.rand((segmenter.batch_size, inp.channels, *inp.in_plane_size),
                   device=str(segmenter.device)).contiguous(memory_format=layout)
    with torch.inference_mode(), autocast(segmenter.device, segmenter.precision):
        segmenter.network(x)
        with torch.profiler.profile() as prof:
            segmenter.network(x)
    key = "self_cuda_time_total" if segmenter.device.type == "cuda" else "self_cpu_time_total"
    ops = prof.key_averages().table(sort_by=key, row_limit=12)
    return {"cprofile": _trim(text.getvalue()), "torch_ops": ops}


def _trim(text: str) -> str:
    keep = [ln for ln in text.splitlines() if ln.strip()]
    start = next((i for i, ln in enumerate(keep) if "ncalls" in ln), 0)
    return "\n".join(keep[start:start + 26])


def model_worker(spec: dict) -> dict:
    """FLOPs per slice (FlopCounterMode) and training throughput in fp32 and bf16 autocast."""
    sys.path[:0] = [str(REPO / "NeonatalLungSeg")]
    from NeonatalLungSegLib.inference import acceleration

    acceleration.configure_process()
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from NeonatalLungSegLib.models.model_folder import read_config
    from NeonatalLungSegLib.models.network import build_network

    acceleration.configure_cpu_threads()
    device = torch.device(spec["device"])
    config = read_config(MODEL)
    inp = config.input
    network = build_network(config).eval()
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        network(torch.zeros((1, inp.channels, *inp.in_plane_size)))
    report = {"flops_per_slice": counter.get_total_flops(),
              "parameters": sum(p.numel() for p in network.parameters()), "training": {}}
    if spec.get("training"):
        network = network.to(device).train()
        batch = 16
        steps, warmup = (20, 5) if device.type == "cuda" else (3, 1)
        optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
        x = torch.rand((batch, inp.channels, *inp.in_plane_size), device=device)
        y = (torch.rand((batch, 1, *inp.in_plane_size), device=device) > 0.7).float()
        for mode in ("fp32", "bf16 autocast"):
            context = (torch.autocast(device.type, dtype=torch.bfloat16) if mode != "fp32"
                       else torch.autocast(device.type, enabled=False))

            def step() -> None:
                optimizer.zero_grad(set_to_none=True)
                with context:
                    logits = network(x)
                logits = logits.float()
                prob = torch.sigmoid(logits)
                dice = 1 - (2 * (prob * y).sum() + 1) / (prob.sum() + y.sum() + 1)
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y) + dice
                loss.backward()
                optimizer.step()

            for _ in range(warmup):
                step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            report["training"][mode] = batch * steps / (time.perf_counter() - t0)
        report["training_batch"] = batch
    return report
