"""Seconds per click of the click-refinement engine on a 96 x 256 x 256 volume, with the CPU named.

A benchmark, not a test. The volume is a synthetic neonatal chest of the generator's default grid
(96 slices of 256 x 256, 1.5 x 0.55 x 0.55 mm, seeded, so every machine times the same case). Clicks are
simulated by the evaluation's own loop (``interactive/noc.simulate_case``: centre of the largest error), starting from
the bundled segmentation model's output and from an empty mask; the time of each ``RefineSession.apply``
call is what a user waits for after a click (the volume is prepared once per session, as in Slicer's
worker). Medians are reported, with the number of slices the network ran on.

    .venv/bin/python benchmarks/refine_click.py [--clicks 10] [--device cpu] [--refine-model DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "NeonatalLungSeg"), str(REPO / "Training")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clicks", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--refine-model", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    import numpy as np
    import torch

    from NeonatalLungSegLib.inference.acceleration import configure_cpu_threads, cpu_line
    from NeonatalLungSegLib.inference.engine import Segmenter
    from NeonatalLungSegLib.correction.refine import Refiner
    from NeonatalLungSegLib.models.registry import bundled_refine_model_folder, default_model_folder
    from neonatal_lung_training.interactive.noc import simulate_case
    from neonatal_lung_training.synthesis.neonatal.generator import generate_case

    configure_cpu_threads()
    image, reference, geometry = _case(generate_case)
    refiner = Refiner.load(args.refine_model or bundled_refine_model_folder(), device=args.device)
    start_model = Segmenter.load(default_model_folder(), device=args.device).segment_array(image, geometry).labels
    sampling = tuple(float(s) for s in geometry.spacing[::-1])
    figures = {}
    for name, start in (("from the model's output", start_model), ("from an empty mask", np.zeros_like(reference))):
        case = simulate_case(refiner.session(image, geometry), reference, start, args.clicks, sampling)
        seconds, slices = case["seconds"], case["slices_run"]
        figures[name] = {"clicks": len(seconds), "median_s": round(statistics.median(seconds), 3),
                         "max_s": round(max(seconds), 3), "median_slices": statistics.median(slices),
                         "seconds": [round(s, 3) for s in seconds]}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    result = {"volume": list(image.shape), "device": args.device, "cpu": cpu_line(), "cores": cores,
              "torch_threads": torch.get_num_threads(), "refine_model": f"{refiner.config.name} "
              f"{refiner.config.version}", "precision": refiner.precision, "figures": figures}
    print(f"{cpu_line()}, {cores} cores, torch threads {torch.get_num_threads()}, {refiner.precision}; volume "
          f"{'x'.join(map(str, image.shape))}")
    for name, item in figures.items():
        print(f"  {name}: median {item['median_s']:.2f} s per click (max {item['max_s']:.2f} s) over "
              f"{item['clicks']} clicks; median {item['median_slices']:.0f} slices through the network")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


def _case(generate_case):
    """The generator's default 96 x 256 x 256 grid, seed 7: a newborn-size chest with UTE contrast."""
    import numpy as np

    from NeonatalLungSegLib.geometry import image_to_array

    case = generate_case(seed=7, shape=(96, 256, 256), spacing=(1.5, 0.55, 0.55))
    image, geometry = image_to_array(case.image)
    labels, _ = image_to_array(case.label)
    return image.astype(np.float32), labels.astype(np.uint8), geometry


if __name__ == "__main__":
    sys.exit(main())
