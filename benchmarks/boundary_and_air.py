"""Time and peak memory of the boundary convention and the air rules on a 300 x 512 x 512 label volume.

    .venv/bin/python benchmarks/boundary_and_air.py

Two ellipsoid lungs filling a 512-matrix adult chest, a tube (trachea) and 200 specks near the bases (the
worst case for the per-piece loops). Prints seconds and the peak resident memory added, with the CPU.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "NeonatalLungSeg"))

from NeonatalLungSegLib.inference.acceleration import cpu_line  # noqa: E402
from NeonatalLungSegLib.inference.boundary import keep_expert_share  # noqa: E402
from NeonatalLungSegLib.inference.extrapulmonary_air import drop_extrapulmonary_air  # noqa: E402


def phantom(shape=(300, 512, 512)) -> np.ndarray:
    k, j, i = np.ogrid[:shape[0], :shape[1], :shape[2]]
    labels = np.zeros(shape, np.uint8)
    labels[((k - 150) / 120.0) ** 2 + ((j - 256) / 150.0) ** 2 + ((i - 170) / 90.0) ** 2 <= 1] = 1
    labels[((k - 150) / 120.0) ** 2 + ((j - 256) / 150.0) ** 2 + ((i - 342) / 90.0) ** 2 <= 1] = 2
    labels[(k > 200) & ((j - 230) ** 2 + (i - 256) ** 2 <= 100)] = 1
    rng = np.random.default_rng(0)
    for _ in range(200):
        kk, jj, ii = rng.integers(30, 80), rng.integers(150, 360), rng.integers(90, 420)
        labels[kk:kk + 2, jj:jj + 2, ii:ii + 2] = 1 if ii < 256 else 2
    return labels


def main() -> int:
    labels = phantom()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    cleaned = drop_extrapulmonary_air(labels)
    air = time.perf_counter() - started
    started = time.perf_counter()
    keep_expert_share(cleaned, 0.75, 0.7)
    rim = time.perf_counter() - started
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    print(f"{cpu_line()}\n300x512x512: air rules {air:.2f} s, boundary convention {rim:.2f} s, "
          f"peak memory added {peak:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
