"""Where the bundled model's lung boundary sits: Dice and volume error against the probability threshold.

    .venv/bin/python Training/scripts/threshold_sweep.py --set synthetic=FOLDER --set ct=FOLDER \
        --set proton=FOLDER [--model DIR] [--out runs/threshold-sweep.json]

Each set is a training folder with reference labels. The network runs once per case; every threshold then
goes through the engine's own post-processing. Volume error is (predicted - reference) / reference of both
lungs; a positive error means the mask is too large. Which sets choose a threshold and which confirm it is
the caller's decision: report them apart.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "NeonatalLungSeg"), str(REPO / "Training")]

from NeonatalLungSegLib.dataset.training_folder import read_training_folder  # noqa: E402
from NeonatalLungSegLib.geometry import image_to_array  # noqa: E402
from NeonatalLungSegLib.inference.engine import Segmenter  # noqa: E402
from NeonatalLungSegLib.inference.measure import dice  # noqa: E402
from NeonatalLungSegLib.inference.postprocess import PostprocessOptions, postprocess  # noqa: E402
from NeonatalLungSegLib.models.registry import bundled_model_folder  # noqa: E402

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def sweep_case(segmenter: Segmenter, image, label) -> list[dict]:
    array, geometry = image_to_array(image)
    reference, _ = image_to_array(label)
    probability, plan = segmenter.predict(array.astype(np.float32), geometry)
    rows = []
    for threshold in THRESHOLDS:
        labels = plan.from_canonical(postprocess(probability >= threshold, plan.target, PostprocessOptions()))
        predicted, truth = labels > 0, reference > 0
        rows.append({"threshold": threshold, "dice": dice(predicted, truth),
                     "volume_error": float(predicted.sum() - truth.sum()) / max(1, int(truth.sum()))})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", required=True, metavar="NAME=FOLDER")
    parser.add_argument("--model", type=Path, default=bundled_model_folder())
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    segmenter = Segmenter.load(args.model, device="cpu", precision=args.precision)
    results = {"model": f"{segmenter.config.name} {segmenter.config.version}", "precision": segmenter.precision,
               "sets": {}}
    for spec in args.set:
        name, _, folder_path = spec.partition("=")
        folder = read_training_folder(folder_path)
        per_case = [sweep_case(segmenter, *folder.read_case(record)) for record in folder.cases]
        table = []
        for index, threshold in enumerate(THRESHOLDS):
            table.append({"threshold": threshold,
                          "dice": round(float(np.mean([c[index]["dice"] for c in per_case])), 4),
                          "volume_error": round(float(np.mean([c[index]["volume_error"] for c in per_case])), 4),
                          "volume_error_per_case": [round(c[index]["volume_error"], 4) for c in per_case]})
        results["sets"][name] = {"cases": len(per_case), "by_threshold": table}
        print(name, f"({len(per_case)} cases)")
        for row in table:
            print(f"  t={row['threshold']:.1f}  Dice {row['dice']:.4f}  volume error {row['volume_error']:+.3f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
