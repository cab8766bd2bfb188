"""A whole `neonatal-lung-seg segment` command, timed from process start to exit, with the CPU named.

A benchmark, not a test. It times what a clinician waits for on the command line: Python start-up, imports,
model load, read, infer, post-process, write. Each configuration runs as a fresh subprocess; the repeats go
round robin (each configuration once per round) so that all meet the same load, and the figures are medians.

    .venv/bin/python benchmarks/segment_time.py [--repeats 5] [--input VOLUME] [--device cpu]

Configurations:
- ``default``: the command as shipped (nothing is cached between runs: the network is built from the model
  folder's verified files every time): on a CPU where ``auto`` takes the model folder's int8 network (VNNI),
  OpenVINO compiles the ONNX file and torch is never imported; elsewhere the torch network is built;
- ``torch path`` (only where the default is int8): ``--precision`` set to what ``auto`` picks for torch on this
  CPU, so the int8 path's saving (torch's import among it) is measured in the same run;
- ``import torch``: ``python -c "import torch"`` alone, the floor any torch-based command pays.
The case time `segment` records in its volumes JSON (read to write, inside the process) is reported too, so
the start-up share is the difference. Default input: the bundled sample (192 x 192 x 80).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "NeonatalLungSeg")]
from NeonatalLungSegLib.inference.acceleration import (cpu_is_the_device, cpu_line, cpu_precision,  # noqa: E402
                                                       cpu_prefers_int8)

SAMPLE = REPO / "Resources" / "Sample" / "sample-neonatal-chest.nii.gz"


def machine() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu_line()}, {cores} logical cores available"


def segment_command(volume: Path, out: Path, device: str, precision: str = "auto") -> list[str]:
    code = ("import sys; from NeonatalLungSegLib.cli.main import main; "
            f"sys.exit(main(['segment', {str(volume)!r}, '-o', {str(out)!r}, '--device', {device!r}, "
            f"'--precision', {precision!r}, '--overwrite']))")
    return [sys.executable, "-c", code]


def timed(command: list[str], env: dict) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"command failed ({done.returncode}): {' '.join(command)}\n{done.stderr[-2000:]}")
    return elapsed, done.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--input", type=Path, default=SAMPLE, help="volume to segment (default: bundled sample)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    volume = args.input.resolve()
    base_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "NeonatalLungSeg"), str(REPO / "Training")])}
    if base_env.get("OMP_NUM_THREADS"):
        print(f"warning: OMP_NUM_THREADS={base_env['OMP_NUM_THREADS']} is set; the command's own thread choice is "
              "overridden", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="nls-segment-time-") as tmp:
        tmp_path = Path(tmp)
        configs = {
            "default": (segment_command(volume, tmp_path / "out-default", args.device), base_env),
            "import torch": ([sys.executable, "-c", "import torch"], base_env),
        }
        if cpu_is_the_device(args.device) and cpu_prefers_int8()[0]:
            configs["torch path"] = (segment_command(volume, tmp_path / "out-torch", args.device,
                                                     cpu_precision()[0]), base_env)
        first, header = timed(configs["default"][0], base_env)  # warms the file system cache: not a repeat
        header = header.splitlines()[0] if header else ""
        times: dict[str, list[float]] = {name: [] for name in configs}
        case_s: dict[str, list[float]] = {name: [] for name in configs if name != "import torch"}
        outs = {"default": "out-default", "torch path": "out-torch"}
        loads = []
        for _ in range(args.repeats):
            loads.append(os.getloadavg()[0])
            for name, (command, env) in configs.items():
                elapsed, _ = timed(command, env)
                times[name].append(elapsed)
                if name in case_s:
                    out = tmp_path / outs[name]
                    report = json.loads(next(out.glob("*_volumes.json")).read_text(encoding="utf-8"))
                    case_s[name].append(report["seconds"])
    print(f"machine: {machine()}")
    print(f"input: {volume.name}; segment says: {header}")
    print(f"load average (1 min) before each round: {', '.join(f'{v:.2f}' for v in loads)}"
          + ("  (machine busy: figures are upper bounds)" if statistics.median(loads) > 0.5 else ""))
    print(f"first run (cold file system cache): {first:.2f} s")
    results = {"machine": machine(), "input": str(volume), "segment_header": header, "first_run_s": first,
               "load1": loads, "configurations": {}}
    for name, values in times.items():
        median = statistics.median(values)
        line = f"{name:>13}: median {median:.2f} s over {len(values)} (min {min(values):.2f}, max {max(values):.2f})"
        entry = {"median_s": median, "runs_s": values}
        if name in case_s:
            case = statistics.median(case_s[name])
            line += f"; case (read to write) {case:.2f} s, so start-up and model load {median - case:.2f} s"
            entry["case_median_s"] = case
        print(line)
        results["configurations"][name] = entry
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
