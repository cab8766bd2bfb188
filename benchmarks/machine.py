"""The machine a benchmark ran on, its load while it ran, and the peak rate of its devices.

Every figure is printed beside this description: a timing without its machine means nothing.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

from NeonatalLungSegLib.inference.acceleration import cpu_features, cpu_model, cpu_precision, cpu_signature

# Dense tensor-core peaks (FLOP/s) for bf16/fp16 with fp32 accumulation, from the vendors' data sheets.
GPU_PEAKS = [("H200", 989e12), ("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H100", 989e12),
             ("A100", 312e12), ("L40S", 362e12), ("A10", 125e12), ("L4", 121e12), ("V100", 125e12)]


def cpu_ghz() -> float:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("cpu MHz"):
                return float(line.split(":", 1)[1]) / 1000
    except (OSError, ValueError):
        pass
    return 2.5


def cpu_busy_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs since boot, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text(encoding="utf-8").splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields[:8]) - idle, sum(fields[:8])


def auto_cpu_choice(model: Path) -> str:
    """What ``auto`` runs on this CPU for ``model``: the engine's own choice (its int8 network with VNNI),
    else the torch precision."""
    from NeonatalLungSegLib.inference.engine import HOST_CPU, int8_choice
    from NeonatalLungSegLib.models.model_folder import read_config

    reason = int8_choice(model, read_config(model), HOST_CPU, "auto")
    return f"int8 ({reason}, OpenVINO)" if reason else "%s (%s)" % cpu_precision()


def machine_info(model: Path | None = None) -> dict:
    import torch

    caps = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    info = {"cpu": cpu_model(), "cpu_signature": cpu_signature(), "logical_cores": os.cpu_count(),
            "physical_cores": caps.get("num_physical_cores", os.cpu_count()), "cpu_ghz": cpu_ghz(),
            "amx_fp16": cpu_features().amx_fp16, "amx_bf16": cpu_features().amx_bf16,
            "avx512_bf16": cpu_features().avx512_bf16, "avx512f": cpu_features().avx512f,
            "avx512_vnni": cpu_features().avx512_vnni, "avx_vnni": cpu_features().avx_vnni,
            "avx2": cpu_features().avx2, "fma": cpu_features().fma,
            "cpu_features": cpu_features().describe(),
            "cpu_precision": auto_cpu_choice(model) if model else "%s (%s)" % cpu_precision(),
            "torch": torch.__version__, "python": platform.python_version(), "gpu": None}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = f"{props.name} ({props.total_memory / 2**30:.0f} GiB)"
        info["gpu_name"] = props.name
    try:
        info["ram_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    return info


def machine_line(info: dict) -> str:
    signature = f"; {info['cpu_signature']}" if info.get("cpu_signature") else ""  # as acceleration.cpu_line
    text = (f"{info['cpu']} ({info.get('cpu_features', '?')}{signature}), {info['physical_cores']} physical / "
            f"{info['logical_cores']} logical cores, {info.get('ram_gib', '?')} GiB RAM")
    text += f", GPU {info['gpu']}" if info.get("gpu") else ", no GPU"
    return text + f"; torch {info['torch']}"


def peak_flops(info: dict, device: str, precision: str) -> tuple[float | None, str]:
    """Peak FLOP/s of the device at ``precision`` and where the figure comes from."""
    if device == "cuda":
        name = info.get("gpu_name", "")
        for key, peak in GPU_PEAKS:
            if key.lower() in name.lower():
                if precision == "fp32":
                    return peak / 2, f"{key} TF32 dense (data sheet; cuDNN runs fp32 convolutions as TF32)"
                return peak, f"{key} bf16/fp16 dense (data sheet)"
        return None, f"no peak known for {name}"
    cores, ghz = info["physical_cores"], info["cpu_ghz"]
    if precision in ("fp16", "bf16") and info.get(f"amx_{precision}"):
        return cores * ghz * 1e9 * 1024, f"estimate: {cores} cores x {ghz:.2f} GHz x 1024 FLOP/cycle (AMX)"
    if precision == "int8" and (info.get("avx512_vnni") or info.get("avx_vnni")):
        width = 256 if info.get("avx512_vnni") else 128
        return cores * ghz * 1e9 * width, (f"estimate: {cores} cores x {ghz:.2f} GHz x {width} int8 op/cycle (VNNI; "
                                           "the layers kept float run at the bf16 rate)")
    if precision == "bf16" and info.get("avx512_bf16"):
        return cores * ghz * 1e9 * 128, f"estimate: {cores} cores x {ghz:.2f} GHz x 128 FLOP/cycle (AVX512-BF16)"
    if info.get("avx512f", True):
        return cores * ghz * 1e9 * 64, f"estimate: {cores} cores x {ghz:.2f} GHz x 64 FLOP/cycle (AVX-512, 2 FMA)"
    return cores * ghz * 1e9 * 32, f"estimate: {cores} cores x {ghz:.2f} GHz x 32 FLOP/cycle (AVX2, 2 FMA)"
