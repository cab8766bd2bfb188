"""A precision's labels against fp32's on the bundled sample, with the network built from config and traced
(the copy `segment` loads from its cache), and the time each took, with the CPU named.

    .venv/bin/python benchmarks/precision_check.py [--precision bf16] [--input VOLUME]

Where the CPU lacks the feature ``auto`` would pick the precision for, the half-precision kernels are emulated:
the Dice still says whether the precision keeps the labels, the time says why ``auto`` does not pick it there.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "NeonatalLungSeg"), str(REPO / "Training")]
MODEL = REPO / "Resources" / "Models" / "neonatal-lung-unet-r50"
SAMPLE = REPO / "Resources" / "Sample" / "sample-neonatal-chest.nii.gz"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", default="bf16", choices=["fp16", "bf16"])
    parser.add_argument("--input", type=Path, default=SAMPLE)
    args = parser.parse_args(argv)
    from NeonatalLungSegLib.inference import acceleration

    acceleration.configure_process()
    import numpy as np

    from NeonatalLungSegLib.inference.engine import Segmenter
    from NeonatalLungSegLib.geometry import image_to_array
    from NeonatalLungSegLib.inference.measure import dice
    from NeonatalLungSegLib.volumes.volume_io import read_volume

    acceleration.configure_cpu_threads()
    array, geometry = image_to_array(read_volume(args.input))
    array = array.astype(np.float32, copy=False)
    started = time.perf_counter()
    reference = Segmenter.load(MODEL, device="cpu", precision="fp32").segment_array(array, geometry).labels
    fp32_s = time.perf_counter() - started
    chosen, reason = acceleration.cpu_precision()
    print(f"machine: {acceleration.cpu_line()}; auto picks {chosen} ({reason}); input {args.input.name}")
    print(f"fp32 (built): {fp32_s:.1f} s")
    started = time.perf_counter()
    segmenter = Segmenter.load(MODEL, device="cpu", precision=args.precision)
    labels = segmenter.segment_array(array, geometry).labels
    seconds = time.perf_counter() - started
    print(f"{args.precision} ({segmenter.network_origin}): {seconds:.1f} s; Dice vs fp32 right "
          f"{dice(labels == 1, reference == 1):.5f}, left {dice(labels == 2, reference == 2):.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
