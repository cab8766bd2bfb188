"""Time and peak memory of the boundary convention, the signal check and the air rules (the island and gas rules,
and the air-above-the-apices rule) on a 300 x 512 x 512
label volume.

    .venv/bin/python benchmarks/boundary_and_air.py

Two ellipsoid lungs filling a 512-matrix adult chest, a tube (trachea) and 200 specks near the bases (the
worst case for the per-piece loops); for the signal check, an image with dark lungs in brighter tissue and
noise, and a tongue of tissue under each base. Prints seconds and the peak resident memory added, with the CPU.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "NeonatalLungSeg"))

from NeonatalLungSegLib.inference.acceleration import cpu_line  # noqa: E402
from NeonatalLungSegLib.inference.boundary import drop_tissue_signal, keep_expert_share  # noqa: E402
from NeonatalLungSegLib.inference.air.airway_column import drop_airway_column  # noqa: E402
from NeonatalLungSegLib.inference.air.extrapulmonary_air import drop_extrapulmonary_air  # noqa: E402


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


def image_of(labels: np.ndarray) -> np.ndarray:
    """Lung 0.15, tissue 1.4 (the medians measured on real proton MRI), noise 0.1; labels get a 3-voxel-wide
    tongue of tissue under each base."""
    rng = np.random.default_rng(1)
    image = np.where(labels > 0, 0.15, 1.4).astype(np.float32) + rng.normal(0, 0.1, labels.shape).astype(np.float32)
    for i in (170, 342):
        labels[25:32, 250:253, i:i + 3] = 1 if i < 256 else 2
        image[25:32, 250:253, i:i + 3] = 1.4
    return image


def main() -> int:
    labels = phantom()
    image = image_of(labels)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    cleaned = drop_extrapulmonary_air(labels)
    air = time.perf_counter() - started
    started = time.perf_counter()
    kept = keep_expert_share(cleaned, 0.75, 0.7)
    rim = time.perf_counter() - started
    started = time.perf_counter()
    checked = drop_tissue_signal(kept, image, 0.5)
    signal = time.perf_counter() - started
    started = time.perf_counter()
    cleared = drop_airway_column(checked, image, 0.5)
    airway = time.perf_counter() - started
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    print(f"{cpu_line()}\n300x512x512: air rules {air:.2f} s, boundary convention {rim:.2f} s, signal check "
          f"{signal:.2f} s (took {int(np.count_nonzero(kept) - np.count_nonzero(checked))} voxels), air above "
          f"the apices {airway:.2f} s (took {int(np.count_nonzero(checked) - np.count_nonzero(cleared))}), "
          f"peak memory added {peak:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
