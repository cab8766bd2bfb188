"""Volume error and Dice of the bundled model under partial-volume boundary conventions (inference/boundary.py).

    .venv/bin/python Training/scripts/boundary_convention.py --set proton=FOLDER:expert \
        --set synthetic=FOLDER:physical --set ct=FOLDER:physical --out runs/boundary-convention.json \
        [--overlays docs/reports/volume-bias]

A set's references follow the ``expert`` convention (drawn by people: partial-volume voxels at the wall left
out) or the ``physical`` one (every voxel at least half lung: the generators' labels, the CT slices'
interpolated masks). The network runs once per case with the convention switched off; every (PSF sigma,
minimum share) pair of the grid is then applied to the cleaned labels exactly as the engine applies it, and
after it the folder's signal check where the folder sets one (``output.boundary_signal_min_share``). A
physical reference is scored twice: as stored, and converted with the same pair (what that set's labels would
be under the expert convention). Which sets choose the pair and which confirm it is the caller's decision:
report them apart. ``--overlays`` draws each expert-convention case with the pair of ``--chosen``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "NeonatalLungSeg"), str(REPO / "Training")]

from NeonatalLungSegLib.dataset.training_folder import read_training_folder  # noqa: E402
from NeonatalLungSegLib.geometry import image_to_array  # noqa: E402
from NeonatalLungSegLib.inference.air.airway_column import drop_airway_column  # noqa: E402
from NeonatalLungSegLib.inference.boundary import drop_tissue_signal, keep_expert_share  # noqa: E402
from NeonatalLungSegLib.inference.engine import Segmenter  # noqa: E402
from NeonatalLungSegLib.models.registry import bundled_model_folder  # noqa: E402

SIGMAS = (0.5, 0.6, 0.7, 0.8, 1.0)
SHARES = (0.5, 0.65, 0.7, 0.75, 0.8, 0.85)


def _scores(predicted: np.ndarray, reference: np.ndarray) -> dict:
    row = {}
    for name, value in (("right", 1), ("left", 2), ("both", None)):
        p, r = (predicted > 0, reference > 0) if value is None else (predicted == value, reference == value)
        if not r.any():
            continue
        row[f"{name}_volume_error"] = float(p.sum()) / float(r.sum()) - 1
        row[f"{name}_dice"] = 2 * float((p & r).sum()) / float(p.sum() + r.sum())
    return row


def _checked(labels: np.ndarray, array: np.ndarray, signal: float, geometry) -> np.ndarray:
    """The folder's signal check and the air rule on its levels after a convention, as the engine runs them
    (a no-op at 0)."""
    if signal <= 0:
        return labels
    checked = drop_tissue_signal(labels, array, signal)
    return drop_airway_column(checked, array, signal, geometry.direction_matrix, geometry.spacing)


def score_case(segmenter: Segmenter, image, label, convention: str, signal: float = 0.0) -> dict:
    array, geometry = image_to_array(image)
    reference, _ = image_to_array(label)
    reference = np.where(reference > 0, np.where(reference == 2, 2, 1), 0).astype(np.uint8)
    labels = segmenter.segment_array(array.astype(np.float32), geometry).labels
    rows = {}
    for sigma in SIGMAS:
        for share in SHARES:
            if share == 0.5 and sigma != SIGMAS[0]:
                continue
            kept = _checked(keep_expert_share(labels, share, sigma), array, signal, geometry)
            row = {"as_stored": _scores(kept, reference)}
            if convention == "physical":
                row["converted"] = _scores(kept, keep_expert_share(reference, share, sigma))
            rows[f"{sigma}/{share}"] = row
    return {"rows": rows, "labels": labels, "reference": reference, "image": array, "geometry": geometry,
            "signal": signal}


def summarise(cases: list[dict]) -> dict:
    keys = cases[0]["rows"].keys()
    out = {}
    for key in keys:
        out[key] = {}
        for kind in cases[0]["rows"][key]:
            metrics = cases[0]["rows"][key][kind].keys()
            out[key][kind] = {m: {"mean": round(float(np.mean([c["rows"][key][kind][m] for c in cases])), 4),
                                  "per_case": [round(c["rows"][key][kind][m], 4) for c in cases]}
                              for m in metrics}
    return out


def draw_overlay(case: dict, name: str, sigma: float, share: float, path: Path) -> None:
    """Axial, coronal and sagittal sections in radiological display (patient right on the image's left,
    anterior and superior up): expert mask green, the model under the chosen convention red. The first row
    passes through the lungs' centre, the second through the slices where the two disagree most."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import SimpleITK as sitk

    from NeonatalLungSegLib.geometry import array_to_image

    geometry = case["geometry"]
    model = _checked(keep_expert_share(case["labels"], share, sigma), case["image"], case["signal"], geometry)
    image, reference, model = (sitk.GetArrayFromImage(sitk.DICOMOrient(array_to_image(a, geometry), "LPS"))
                               for a in (case["image"].astype(np.float32), case["reference"], model))
    spacing = sitk.DICOMOrient(array_to_image(case["reference"], geometry), "LPS").GetSpacing()  # (i, j, k)
    centre = [int(round(c)) for c in np.argwhere(reference > 0).mean(axis=0)]
    wrong = (model > 0) != (reference > 0)
    worst = [int(np.argmax(wrong.sum(axis=tuple(a for a in range(3) if a != axis)))) for axis in range(3)]
    vmax = float(np.percentile(image, 99.5))
    views = (("axial", 0, False, spacing[1] / spacing[0]), ("coronal", 1, True, spacing[2] / spacing[0]),
             ("sagittal", 2, True, spacing[2] / spacing[1]))
    fig, axes = plt.subplots(2, 3, figsize=(13, 8.5))
    for row, (where, title) in enumerate(((centre, "lungs' centre"), (worst, "largest disagreement"))):
        for ax, (view, axis, flip, aspect) in zip(axes[row], views):
            cut = [slice(None)] * 3
            cut[axis] = where[axis]
            origin = "lower" if flip else "upper"
            ax.imshow(image[tuple(cut)], cmap="gray", vmax=vmax, interpolation="nearest", origin=origin,
                      aspect=aspect)
            ax.contour(reference[tuple(cut)] > 0, [0.5], colors="lime", linewidths=0.9, origin=origin)
            ax.contour(model[tuple(cut)] > 0, [0.5], colors="red", linewidths=0.9, origin=origin)
            ax.set_title(f"{view} {where[axis]} ({title})", fontsize=9)
            ax.set_axis_off()
    check = f"; signal check at lung share {case['signal']}" if case["signal"] else ""
    model_name = case.get("model", "bundled model")
    fig.suptitle(f"{name}: expert mask (green), {model_name} (red). Patient right on the left.\n"
                 f"Boundary voxels kept at lung share >= {share} through a {sigma}-voxel PSF{check}.", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", required=True, metavar="NAME=FOLDER:expert|physical")
    parser.add_argument("--model", type=Path, default=bundled_model_folder())
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--overlays", type=Path, default=None, help="folder for the expert sets' overlay PNGs")
    parser.add_argument("--chosen", default="0.7/0.75", help="SIGMA/SHARE drawn in the overlays")
    args = parser.parse_args(argv)
    segmenter = Segmenter.load(args.model, device="cpu", precision=args.precision)
    own = segmenter.config.output
    # the network's own boundary: the folder's convention is what this script varies
    # (and its signal check, which the engine runs after the convention: so does score_case)
    segmenter.config = replace(segmenter.config, output=replace(own, boundary_min_share=0.5,
                                                                boundary_signal_min_share=0.0))
    results = {"model": f"{segmenter.config.name} {segmenter.config.version}", "precision": segmenter.precision,
               "folder_convention": {"psf_sigma": own.boundary_psf_sigma, "min_share": own.boundary_min_share,
                                     "signal_min_share": own.boundary_signal_min_share},
               "sets": {}}
    sigma, share = (float(v) for v in args.chosen.split("/"))
    for spec in args.set:
        name, _, rest = spec.partition("=")
        folder_path, _, convention = rest.rpartition(":")
        if convention not in ("expert", "physical"):
            print(f"error: {spec}: say :expert or :physical after the folder", file=sys.stderr)
            return 2
        folder = read_training_folder(folder_path)
        cases = []
        for record in folder.cases:
            case = score_case(segmenter, *folder.read_case(record), convention, own.boundary_signal_min_share)
            case["model"] = results["model"]
            if args.overlays and convention == "expert":
                draw_overlay(case, record.subject, sigma, share, args.overlays / f"overlay-{record.subject}.png")
            cases.append({"case": record.subject, "rows": case["rows"]})
        results["sets"][name] = {"convention": convention, "cases": [c["case"] for c in cases],
                                 "by_convention": summarise(cases)}
        print(f"{name} ({len(cases)} cases, {convention} references)", flush=True)
        for key, kinds in results["sets"][name]["by_convention"].items():
            text = "  ".join(f"{kind}: Dice {v['both_dice']['mean']:.4f} volume {v['both_volume_error']['mean']:+.3f}"
                             for kind, v in kinds.items())
            print(f"  sigma/share {key:9s} {text}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
