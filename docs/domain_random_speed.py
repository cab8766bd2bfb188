"""Cost of one domain-randomised case, beside the older generate_case, measured in one run.

    OMP_NUM_THREADS=1 .venv/bin/python docs/domain_random_speed.py [N]

Prints median and 90th percentile of wall and process CPU time per case over N seeds (default 20),
the largest volume drawn, and the same for ``generate_case`` at its 64 x 128 x 128 default. CPU time is
quoted because the development machine is shared: wall time there depends on the other jobs.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "NeonatalLungSeg"), str(ROOT / "Training")]

import numpy as np  # noqa: E402

from neonatal_lung_training.synthesis.randomised import generate_random_case  # noqa: E402
from neonatal_lung_training.synthesis.neonatal.generator import generate_case  # noqa: E402


def measure(make, seeds):
    wall, cpu, voxels = [], [], []
    for seed in seeds:
        w, c = time.perf_counter(), time.process_time()
        case = make(seed)
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
        voxels.append(int(np.prod(case.image.GetSize())))
    q = lambda xs, p: float(np.percentile(xs, p))  # noqa: E731
    return (f"wall median {statistics.median(wall):.2f} s (p90 {q(wall, 90):.2f}), "
            f"CPU median {statistics.median(cpu):.2f} s (p90 {q(cpu, 90):.2f}, max {max(cpu):.2f}); "
            f"voxels median {statistics.median(voxels) / 1e6:.2f} M, max {max(voxels) / 1e6:.2f} M")


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    print("generate_random_case:", measure(generate_random_case, range(1000, 1000 + n)))
    print("generate_case (64x128x128):", measure(generate_case, range(1000, 1000 + max(3, n // 4))))
