"""Would a change at inference time lift a model's Dice on a test folder? Measured, not assumed.

    .venv/bin/python Training/scripts/inference_variants.py --data runs/syn-heldout-test \\
        --model Resources/Models/neonatal-lung-unet-r50 --precision fp32 --out docs/reports/.../variants.json

Why: the bundled model 2.3.0 scores 0.946 on the synthetic held-out anatomy family against issue 12's 0.95,
and cheap remedies were candidates before spending hours of CPU on training. Per case, both lungs together,
after the engine's own post-processing, this scores the engine's probabilities:

- ``plain``: as ``segment`` does it (threshold from the model folder);
- ``flip``: averaged with the prediction of the left-right mirrored volume (test-time augmentation);
- ``zsmooth``: smoothed across neighbouring slices (weights 1/4, 1/2, 1/4), against ragged slice-to-slice edges;
- ``threshold 0.45`` / ``0.55``: another threshold (a hint only: a threshold chosen on a test set is not a result);
- ``body crop``: the engine's ``body_crop`` in-plane policy instead of the folder's (``preprocess.body_box``:
  every slice cropped to the body's in-plane extent before framing, so the lungs fill more of the network's
  128 x 128 grid);
- ``ceiling``: the reference itself taken down to the network's in-plane grid and back, each lung apart (how
  much the 128 x 128 grid alone would cost, were the network perfect).

Evaluation data only; nothing is trained. Writes a JSON of per-case figures and means.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "NeonatalLungSeg"), str(REPO / "Training")]

from NeonatalLungSegLib.inference.acceleration import cpu_line  # noqa: E402
from NeonatalLungSegLib.inference.array_resize import resize_array  # noqa: E402


def variants(segmenter, array: np.ndarray, geometry, reference: np.ndarray) -> dict[str, float]:
    from scipy import ndimage

    from NeonatalLungSegLib.inference.measure import dice
    from NeonatalLungSegLib.inference.postprocess import PostprocessOptions, postprocess

    probability, plan = segmenter.predict(array, geometry)
    probability = probability.astype(np.float32)
    mirrored, _ = segmenter.predict(np.ascontiguousarray(plan.to_canonical(array)[:, :, ::-1]), plan.target)
    mirrored = mirrored.astype(np.float32)[:, :, ::-1]
    slice_axis = 2 - segmenter.config.input.slice_axis
    threshold = segmenter.config.output.threshold
    candidates = {
        "plain": (probability, threshold),
        "flip": ((probability + mirrored) / 2, threshold),
        "zsmooth": (ndimage.convolve1d(probability, [0.25, 0.5, 0.25], axis=slice_axis, mode="nearest"), threshold),
        "threshold 0.45": (probability, 0.45),
        "threshold 0.55": (probability, 0.55),
    }
    out = {}
    for name, (values, cut) in candidates.items():
        labels = plan.from_canonical(postprocess(values >= cut, plan.target, PostprocessOptions()))
        out[name] = round(float(dice(labels > 0, reference > 0)), 5)
    if segmenter.config.input.in_plane_policy != "body_crop":  # a body_crop folder's "plain" is this already
        out["body crop"] = round(float(dice(body_crop_labels(segmenter, array, geometry) > 0, reference > 0)), 5)
    size = segmenter.config.input.in_plane_size
    ceiling = []
    for value in (1, 2):
        lung = (plan.to_canonical(reference) == value).astype(np.float32)
        stack = np.moveaxis(lung, slice_axis, 0)[:, None]
        back = resize_array(resize_array(stack, size), stack.shape[-2:])[:, 0] >= 0.5
        ceiling.append(dice(back, stack[:, 0] > 0))
    out["ceiling"] = round(float(np.mean(ceiling)), 5)
    return out


def body_crop_labels(segmenter, array: np.ndarray, geometry) -> np.ndarray:
    """Labels from the same segmenter with the ``body_crop`` in-plane policy (the weights unchanged)."""
    import copy

    from NeonatalLungSegLib.inference.postprocess import PostprocessOptions

    cropped = copy.copy(segmenter)
    cropped.config = dataclasses.replace(segmenter.config, input=dataclasses.replace(segmenter.config.input,
                                                                                     in_plane_policy="body_crop"))
    return cropped.segment_array(array, geometry, PostprocessOptions()).labels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a training folder with reference labels")
    parser.add_argument("--model", type=Path, default=REPO / "Resources" / "Models" / "neonatal-lung-unet-r50")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--out", type=Path, default=None, help="JSON of per-case figures and means")
    args = parser.parse_args(argv)
    import SimpleITK as sitk

    from NeonatalLungSegLib.inference.engine import Segmenter
    from NeonatalLungSegLib.geometry import image_to_array
    from NeonatalLungSegLib.dataset.training_folder import read_training_folder

    if (args.data / "manifest.json").is_file():
        pairs = [(case.case_id, args.data / case.image, args.data / case.label)
                 for case in read_training_folder(args.data).cases]
    else:  # images/NAME.nii.gz beside labels/NAME.nii.gz (runs/proton-eval, linked by scripts/link-proton-eval.sh)
        pairs = [(p.name.split(".")[0], p, args.data / "labels" / p.name)
                 for p in sorted((args.data / "images").glob("*.nii.gz"))]
    if not pairs:
        parser.error(f"{args.data}: no cases (a training folder, or images/ and labels/)")
    segmenter = Segmenter.load(args.model, device="cpu", precision=args.precision)
    cases = {}
    for name, image, label in pairs:
        array, geometry = image_to_array(sitk.ReadImage(str(image)))
        reference = sitk.GetArrayFromImage(sitk.ReadImage(str(label)))
        cases[name] = variants(segmenter, array.astype(np.float32), geometry, reference)
        print(name, cases[name], flush=True)
    names = next(iter(cases.values())).keys()
    means = {name: round(float(np.mean([c[name] for c in cases.values()])), 4) for name in names}
    print("means (Dice, both lungs):", means)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"model": f"{segmenter.config.name} {segmenter.config.version}",
                                        "precision": segmenter.precision, "data": args.data.name,
                                        "machine": cpu_line(), "means": means, "cases": cases}, indent=1) + "\n",
                            encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
