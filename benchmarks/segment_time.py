"""End-to-end `segment` time on a 256x256x96 synthetic volume (read, preprocess, infer, post-process, write).

A benchmark, not a test: it prints the machine beside the figures. Run from the repository root:

    .venv/bin/python benchmarks/segment_time.py [--repeats 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "NeonatalLungSeg")]
from NeonatalLungSegLib.acceleration import cpu_model  # noqa: E402


def machine() -> str:
    text = f"{cpu_model()}, {os.cpu_count()} cores"
    try:
        import torch
        if torch.cuda.is_available():
            text += f", GPU {torch.cuda.get_device_name(0)}"
        text += f", torch {torch.__version__} ({torch.get_num_threads()} threads)"
    except ImportError:
        pass
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    cli = [sys.executable, "-m", "NeonatalLungSegLib.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        subprocess.run(cli + ["synthesize", "-o", str(data), "--seed", "5150", "--shape", "96", "256", "256",
                              "--spacing", "1.5", "0.55", "0.55"], check=True, capture_output=True)
        volume = next((data / "images").glob("*.nii.gz"))
        times = []
        for repeat in range(args.repeats):
            started = time.perf_counter()
            subprocess.run(cli + ["segment", str(volume), "-o", str(Path(tmp) / f"out{repeat}"), "--device",
                                  args.device], check=True, capture_output=True)
            times.append(time.perf_counter() - started)
    print(f"machine: {machine()}")
    print(f"segment 256x256x96 end to end (process start, model load, read, infer, post-process, write): "
          f"median {statistics.median(times):.1f} s over {len(times)} runs "
          f"(min {min(times):.1f}, max {max(times):.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
