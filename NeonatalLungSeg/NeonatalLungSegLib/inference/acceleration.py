"""Speed settings for slice-wise inference: precision, memory layout, batch size and CPU threads.

Every choice here was measured against the fp32 path on real and synthetic volumes (``benchmarks/run.py``,
``Testing/lib/test_accuracy_preserved.py``); none changes a label by more than Dice 0.001.

- Precision ``auto`` on the CPU follows its instruction set (``cpu_precision``): fp16 autocast with AMX-FP16
  (oneDNN runs the convolutions on the AMX tiles; fp16's 10-bit mantissa keeps the labels within Dice 0.9999
  of fp32, bf16 only within 0.999 there), bf16 autocast with AVX512-BF16 or AMX-BF16 (an AMD EPYC with
  AVX512-BF16 and no AMX: 2.6x faster than fp32, Dice >= 0.9997; fp16 there is 7x *slower* than fp32, so fp16
  is never chosen without AMX-FP16), fp32 everywhere else (AVX2 laptops and workstations). On CUDA GPUs with
  tensor cores fp16. A batch whose half-precision logits overflow is recomputed in fp32.
- Before those, on a CPU with VNNI and without AMX-FP16 (``cpu_prefers_int8``), ``Segmenter.load`` takes the
  model folder's int8 network (``int8_network.py``, run by OpenVINO) where the folder has a verified one.
- channels_last (NHWC) for 2D networks: oneDNN and cuDNN's fast convolution kernels want it.
- Batch size: 8 slices on the CPU; on a GPU as many slices as half the free memory holds, measured once.
- CPU threads: one per physical core, and OpenMP's passive wait policy so that spinning worker threads do
  not fight other processes for the cores (on the shared 2-core machine active spinning made a 2-thread
  forward 3-5x slower than 1 thread whenever another process was busy).
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import sys
from dataclasses import dataclass, fields
from pathlib import Path

PRECISIONS = ("auto", "fp32", "fp16", "bf16")  # torch's
SEGMENT_PRECISIONS = PRECISIONS + ("int8",)  # what segment / evaluate accept: int8 is a model folder's int8 network
CPU_BATCH_SIZE = 8
GPU_MAX_BATCH_SIZE = 512
_GPU_MEMORY_FRACTION = 0.5


def configure_process() -> None:
    """Call before torch is imported (the CLI does): OpenMP threads wait passively, not by spinning.

    libgomp reads ``OMP_WAIT_POLICY`` once, when torch loads it; a value already in the environment wins.
    """
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@functools.lru_cache(maxsize=1)
def cpuinfo_text() -> str:
    """Linux's /proc/cpuinfo, read once per process ("" elsewhere): model name, flags and cores come from it."""
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return ""


def cpu_model() -> str:
    """The CPU's marketing name, so that timings and run records name the machine they came from."""
    for line in cpuinfo_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def cpu_signature(text: str | None = None) -> str:
    """"family 6 model 106 stepping 6": a VM's CPU often has a generic marketing name ("Intel(R) Xeon(R)
    Processor @ 2.60GHz") that several generations share; only this tells them apart beside a timing."""
    fields = {}
    for line in (cpuinfo_text() if text is None else text).splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if key in ("cpu family", "model", "stepping") and key not in fields:
            fields[key] = value
        if key == "" and fields:  # end of the first processor's block
            break
    return " ".join(f"{k.split()[-1]} {fields[k]}" for k in ("cpu family", "model", "stepping") if k in fields)


@dataclass(frozen=True)
class CpuFeatures:
    """The instruction-set features that decide the CPU's inference precision (and name it beside timings)."""

    avx2: bool = False
    fma: bool = False
    avx_vnni: bool = False
    avx512f: bool = False
    avx512_vnni: bool = False
    avx512_bf16: bool = False
    amx_bf16: bool = False
    amx_fp16: bool = False

    LABELS = {"avx2": "AVX2", "fma": "FMA", "avx_vnni": "AVX-VNNI", "avx512f": "AVX-512",
              "avx512_vnni": "AVX512-VNNI", "avx512_bf16": "AVX512-BF16",
              "amx_bf16": "AMX-BF16", "amx_fp16": "AMX-FP16"}

    @classmethod
    def from_flags(cls, flags) -> CpuFeatures:
        """From Linux's /proc/cpuinfo flag names (``avx512_bf16``, ``amx_fp16``, ...)."""
        flags = set(flags)
        return cls(**{f.name: f.name in flags for f in fields(cls)})

    def describe(self) -> str:
        """E.g. ``"AVX2, FMA; no AVX-512, no AMX"`` or ``"AVX2, FMA, AVX-512, AVX512-BF16; no AMX"``."""
        present = [label for name, label in self.LABELS.items() if getattr(self, name)]
        missing = [] if self.avx512f else ["no AVX-512"]
        missing += [] if (self.amx_bf16 or self.amx_fp16) else ["no AMX"]
        return ", ".join(present or ["no AVX2"]) + (f"; {', '.join(missing)}" if missing else "")


@functools.lru_cache(maxsize=1)
def cpu_features() -> CpuFeatures:
    """This CPU's features: Linux's /proc/cpuinfo flags (no torch import needed), else torch's probes."""
    for line in cpuinfo_text().splitlines():
        if line.startswith("flags"):
            return CpuFeatures.from_flags(line.split(":", 1)[1].split())
    import torch

    def probe(name: str) -> bool:
        try:
            return bool(getattr(torch.cpu, name)())
        except (AttributeError, RuntimeError):
            return False

    return CpuFeatures(avx2=probe("_is_avx2_supported"), fma=probe("_is_avx2_supported"),
                       avx512f=probe("_is_avx512_supported"), avx512_bf16=probe("_is_avx512_bf16_supported"),
                       amx_bf16=probe("_is_amx_tile_supported") and probe("_is_avx512_bf16_supported"),
                       amx_fp16=probe("_is_amx_fp16_supported"))


def cpu_precision(features: CpuFeatures | None = None) -> tuple[str, str]:
    """The precision ``auto`` picks on this CPU and why: (``fp16|bf16|fp32``, reason naming the feature).

    fp16 only with AMX-FP16 (without it oneDNN emulates fp16 and runs 7x slower than fp32); bf16 with
    AVX512-BF16 or AMX-BF16; fp32 otherwise. Each half-precision choice is checked against fp32 (Dice >= 0.999
    per lung) by ``Testing/lib/test_accuracy_preserved.py`` on CPUs that have the feature.
    """
    features = cpu_features() if features is None else features
    if features.amx_fp16:
        return "fp16", "AMX-FP16"
    if features.amx_bf16:
        return "bf16", "AMX-BF16"
    if features.avx512_bf16:
        return "bf16", "AVX512-BF16"
    return "fp32", "no AVX512-BF16 or AMX"


def cpu_prefers_int8(features: CpuFeatures | None = None) -> tuple[bool, str]:
    """Whether ``auto`` takes a model folder's int8 network (``int8_network.py``) on this CPU, and why.

    Yes with VNNI (AVX512-VNNI or AVX-VNNI: int8 dot products at twice bf16's rate) unless the CPU has AMX-FP16,
    where fp16 is about as fast and keeps Dice 0.9999. Measured on the 2-core AVX512-VNNI/BF16 EPYC (model 2.3.0):
    forward 10.5-11.2 ms/slice against bf16 autocast's 23-24, end to end 1.33-1.54 s against 2.35-2.53 s, Dice
    0.9994-0.9996 per lung against fp32 on the benchmark volume (BENCHMARKS.md). On the 2-core Xeon with
    AVX512-VNNI and no bf16: forward 13.3 ms/slice against fp32's 31.8, end to end 2.04 s against 3.78 s.
    """
    features = cpu_features() if features is None else features
    if features.amx_fp16:
        return False, "AMX-FP16 (fp16 is as fast and closer to fp32)"
    if features.avx512_vnni:
        return True, "AVX512-VNNI"
    if features.avx_vnni:
        return True, "AVX-VNNI"
    return False, "no VNNI"


def describe_inference(inference: dict) -> str:
    """``"cpu, bf16 (chosen for AVX512-BF16)"`` from a result's, a segmenter's or the worker's ``inference``
    dict; here, torch-free, so that the Slicer panel can say where Segment ran without importing torch."""
    text = f"{inference.get('device', '?')}, {inference.get('precision', '?')}"
    if inference.get("precision_reason"):
        text += f" ({inference['precision_reason']})"
    if inference.get("backend", "torch") != "torch":
        text += f", {inference['backend']}"
    gate = inference.get("gate")
    if isinstance(gate, dict):
        text += f"; {describe_route(gate)}"
    return text


def describe_route(gate: dict) -> str:
    """Which network of a gated model (inference/gate) segmented a scan, from its result's ``gate`` record."""
    if gate.get("network") == "fine-tuned":
        return "fine-tuned network: scan like the corrected cases"
    return f"parent network ({gate.get('parent', '?')}): scan unlike the corrected cases"


def cpu_line() -> str:
    """``"AMD EPYC (AVX2, FMA; no AVX-512, no AMX; family 25 model 17 stepping 1)"``: the CPU named with its
    features and, where /proc/cpuinfo gives it, its signature, beside every figure."""
    signature = cpu_signature()
    return f"{cpu_model()} ({cpu_features().describe()}{'; ' + signature if signature else ''})"


def cores_in_cpuinfo(text: str, allowed: set[int] | None = None) -> int:
    """Distinct (physical id, core id) pairs among the processors of a /proc/cpuinfo text that are in
    ``allowed`` (all when None): hyperthread siblings count once. 0 where the text names no cores."""
    cores, processor, physical = set(), None, "0"
    for line in text.splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if key == "processor":
            processor, physical = int(value), "0"
        elif key == "physical id":
            physical = value
        elif key == "core id" and processor is not None and (allowed is None or processor in allowed):
            cores.add((physical, value))
    return len(cores)


def physical_cores() -> int:
    """Physical cores this process may use: from Linux's /proc/cpuinfo and the affinity mask, so that the int8
    path need not import torch to ask; elsewhere torch's probe."""
    try:
        allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        cores = cores_in_cpuinfo(cpuinfo_text(), allowed)
        if cores:
            return cores
    except (OSError, ValueError):
        pass
    import torch

    try:
        return max(1, int(torch.cpu.get_capabilities()["num_physical_cores"]))
    except (AttributeError, KeyError, TypeError, RuntimeError):
        return max(1, os.cpu_count() or 1)


def cpu_threads() -> int:
    """Inference threads for a CPU path that is not torch's (OpenVINO): OMP_NUM_THREADS where it is set to a
    positive number (the user's, or a shared machine's, limit), else one per physical core."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    return physical_cores()


def configure_cpu_threads() -> int:
    """One intra-op thread per physical core, unless OMP_NUM_THREADS says otherwise; returns the count.

    A process-wide setting for torch, so the CLI (which owns its process) calls it, not the engine; it imports
    torch, so callers on the int8 path use ``cpu_threads`` instead.
    """
    import torch

    if not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(physical_cores())
    return torch.get_num_threads()


def gpu_may_be_present() -> bool:
    """Whether torch could find a GPU here, decided without importing torch: False only where that is
    certain (Linux or Windows without NVIDIA's or AMD's driver); macOS may have MPS. A wrong True costs only
    torch's import, never the choice: ``resolve_device`` then asks torch itself."""
    if sys.platform.startswith("linux"):
        nodes = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")  # CUDA, ROCm, WSL's GPU
        return any(os.path.exists(node) for node in nodes)
    if sys.platform == "win32":
        import ctypes.util

        return ctypes.util.find_library("nvcuda") is not None
    return True


def cpu_is_the_device(name: str | None) -> bool:
    """``device`` names the CPU: 'cpu', or 'auto' where no GPU can be present (``gpu_may_be_present``)."""
    name = (name or "auto").strip().lower()
    return name == "cpu" or (name == "auto" and not gpu_may_be_present())


def cpu_has_fast_fp16() -> bool:
    """AMX-FP16 tiles (Intel Granite Rapids and later): oneDNN runs fp16 convolutions on them."""
    import torch

    probe = getattr(torch.cpu, "_is_amx_fp16_supported", None)
    try:
        return bool(probe()) if probe is not None else False
    except RuntimeError:
        return False


def cpu_has_fast_bf16(features: CpuFeatures | None = None) -> bool:
    """bf16 dot products in hardware: AMX-BF16 tiles (Intel Sapphire Rapids and later) or AVX512-BF16 (AMD
    Zen 4 and later, Intel Cooper Lake). Measured on the 2-core AMD EPYC with AVX512-BF16 and no AMX: a
    U-Net/ResNet-50 training step on 12 slices of 128 x 128 takes 0.76 s in bf16 autocast against 1.50 s in
    fp32; on the AMX Xeon 0.8 s against 1.6 s."""
    features = cpu_features() if features is None else features
    return bool(features.amx_bf16 or features.avx512_bf16)


TRAINING_PRECISIONS = ("auto", "fp32", "bf16")


def resolve_training_precision(precision: str, device) -> str:
    """``auto`` -> bf16 autocast where the hardware has fast bf16 (CUDA GPUs that support it, CPUs with AMX-BF16
    or AVX512-BF16).

    Training uses bf16 rather than inference's fp16: bf16 has fp32's exponent range, so gradients need no
    loss scaling, and the weights stay fp32 (autocast only lowers the matrix work). Measured on the 2-core
    AMX Xeon: a U-Net/ResNet-50 step on 12 slices of 128 x 128 takes 0.8 s instead of 1.6 s.
    """
    import torch

    precision = _checked(precision, TRAINING_PRECISIONS, device)
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        return "bf16" if device.type == "cpu" and cpu_has_fast_bf16() else "fp32"
    return precision


def _checked(precision: str, allowed: tuple[str, ...], device) -> str:
    """Normalised ``precision``, refused if not in ``allowed`` or bf16 on a GPU without bf16."""
    import torch

    precision = (precision or "auto").strip().lower()
    if precision not in allowed:
        raise ValueError(f"precision must be one of {', '.join(allowed)}, got {precision!r}")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("precision bf16 requested but this GPU does not support bfloat16")
    return precision


def resolve_precision(precision: str, device) -> str:
    """``auto`` -> the fastest precision that keeps the labels: ``cpu_precision`` on the CPU, fp16 on CUDA GPUs
    with tensor cores, else fp32."""
    return describe_precision(precision, device)[0]


def describe_precision(precision: str, device) -> tuple[str, str]:
    """(resolved precision, why): ``"chosen for AVX512-BF16"``, ``"requested"``, ... for logs and results."""
    import torch

    precision = _checked(precision, PRECISIONS, device)
    if precision != "auto":
        return precision, "requested"
    if device.type == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        return ("fp16", "chosen for tensor cores") if major >= 7 else ("fp32", "chosen: no tensor cores")
    if device.type == "cpu":
        chosen, reason = cpu_precision()
        return chosen, f"chosen for {reason}" if chosen != "fp32" else f"chosen: {reason}"
    return "fp32", f"chosen for {device.type}"


def autocast(device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast region for ``precision`` on ``device`` (disabled for fp32 and on MPS)."""
    import torch

    if precision not in ("fp16", "bf16") or device.type not in ("cpu", "cuda"):  # fp32, and int8 (OpenVINO's)
        return torch.autocast("cpu", enabled=False)
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype)


def checked_forward(network, batch, device, precision: str):
    """``network(batch)`` under the caller's autocast; where half precision overflowed (a non-finite logit,
    possible with fp16's range), the batch is computed again in fp32, so a rare extreme input costs time,
    never a wrong mask. Shared by segmentation and click refinement."""
    import torch

    logits = network(batch)
    if precision != "fp32" and not bool(torch.isfinite(logits).all()):
        with torch.autocast(device.type if device.type in ("cpu", "cuda") else "cpu", enabled=False):
            logits = network(batch.float())
    return logits


def uses_channels_last(device, spatial_dims: int) -> bool:
    return spatial_dims == 2 and device.type in ("cpu", "cuda")


def default_batch_size(network, in_plane_size: tuple[int, int], channels: int, device, precision: str,
                       channels_last: bool) -> int:
    """8 slices on CPU/MPS; on CUDA as many as half the free memory holds (one probe forward measures it)."""
    if device.type != "cuda":
        return CPU_BATCH_SIZE
    import torch

    probe = 4
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    batch = torch.zeros((probe, channels, *in_plane_size), device=device)
    if channels_last:
        batch = batch.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), autocast(device, precision):
        network(batch)
    torch.cuda.synchronize(device)
    per_slice = max(1, (torch.cuda.max_memory_allocated(device) - before) // probe)
    per_slice += 2 * 4 * 512 * 512  # the logits resized back to a 512 x 512 slice, and their sigmoid
    del batch
    torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info(device)
    return int(max(1, min(GPU_MAX_BATCH_SIZE, _GPU_MEMORY_FRACTION * free // per_slice)))
