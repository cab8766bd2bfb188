"""Render docs/images/synthetic-samples.png: a few synthetic cases with their lung label outlines.

Run from the repository root: ``.venv/bin/python docs/make_synthetic_figure.py`` (about half a minute on a
2-core CPU). The atlas row is skipped, with a note on stdout, where the fetal thorax atlas is absent.
Each row is one case, shown as two axial slices (upper and lower lung) and one coronal slice through the
lungs, in radiological orientation: patient right on the image left, anterior and superior at the top.
Red outlines label 1 (right lung), cyan label 2 (left lung).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402  (installed with matplotlib)

from NeonatalLungSegLib.geometry import image_to_array  # noqa: E402
from neonatal_lung_training.synthesis.neonatal.generator import (SyntheticCase, default_atlas_dir,  # noqa: E402
                                                                 generate_case)

SHAPE = (80, 160, 160)
SPACING = (1.6, 0.9, 0.9)
# (title, generate_case keyword arguments): one row each.
ROWS = (
    ("UTE, procedural, no BPD", dict(seed=11, bpd_severity=0.0, artefacts=False)),
    ("UTE, atlas, no BPD", dict(seed=51, anatomy="atlas", bpd_severity=0.0)),
    ("UTE, procedural, severe BPD", dict(seed=13, bpd_severity=1.0, artefacts=False)),
    ("UTE, atlas, moderate BPD", dict(seed=14, anatomy="atlas", bpd_severity=0.6)),
    ("randomized contrast, procedural", dict(seed=15, contrast="randomized")),
    ("T2 HASTE-like, procedural, BPD", dict(seed=16, contrast="t2_haste", bpd_severity=0.7)),
    ("held-out family, UTE, procedural", dict(seed=17, variant_family="heldout", bpd_severity=0.0)),
)
PALETTE_COLOURS = 64     # the PNG is stored with a palette: half the size of full colour


def _artefact_note(parameters: dict) -> str:
    """Which optional acquisition effects this case drew, in a few words."""
    notes = []
    if "bias_strength" in parameters:
        notes.append("bias")
    if "motion_mm" in parameters:
        notes.append(f"breathing {parameters['motion_mm']:.1f} mm")
    if "radial_undersampling" in parameters:
        notes.append(f"radial R={parameters['radial_undersampling']:.1f}")
    if "slice_factor" in parameters:
        notes.append(f"low-res x{parameters['slice_factor']:.1f}")
    return ", ".join(notes) if notes else "no artefacts"


def _views(case: SyntheticCase) -> list[tuple[np.ndarray, np.ndarray, float, str]]:
    """(picture, label, aspect, title) for two axial slices and one coronal slice through the lungs."""
    image, geometry = image_to_array(case.image)
    label, _ = image_to_array(case.label)
    k_lungs = np.flatnonzero(label.any(axis=(1, 2)))
    j_lungs = np.flatnonzero(label.any(axis=(0, 2)))
    views = []
    for fraction, name in ((0.7, "axial, upper"), (0.3, "axial, lower")):
        k = int(k_lungs[int(fraction * (len(k_lungs) - 1))])
        views.append((image[k], label[k], 1.0, f"{name} (k={k})"))
    j = int(j_lungs[int(0.55 * (len(j_lungs) - 1))])
    aspect = geometry.spacing[2] / geometry.spacing[0]
    views.append((image[::-1, j], label[::-1, j], aspect, f"coronal (j={j})"))
    return views


def render(output: Path, atlas_dir: Path) -> Path:
    """Generate the cases, draw the grid and write it as a PNG; returns the path written."""
    rows = [(title, kw) for title, kw in ROWS if kw.get("anatomy") != "atlas" or atlas_dir.is_dir()]
    if len(rows) < len(ROWS):
        print(f"atlas not found at {atlas_dir}: atlas rows skipped")
    figure, axes = plt.subplots(len(rows), 3, figsize=(9.0, 3.0 * len(rows)), squeeze=False)
    for row, (title, kw) in enumerate(rows):
        kw = dict(kw)
        seed = kw.pop("seed")
        if kw.get("anatomy") == "atlas":
            kw["atlas_dir"] = atlas_dir
        case = generate_case(seed, shape=SHAPE, spacing=SPACING, **kw)
        top = float(np.percentile(image_to_array(case.image)[0], 99.5))
        for axis, (picture, outline, aspect, view) in zip(axes[row], _views(case)):
            axis.imshow(picture, cmap="gray", vmin=0.0, vmax=top, aspect=aspect, interpolation="nearest")
            axis.contour(outline == 1, levels=[0.5], colors="red", linewidths=0.6)
            axis.contour(outline == 2, levels=[0.5], colors="cyan", linewidths=0.6)
            axis.set_title(view, fontsize=7)
            axis.set_xticks([])
            axis.set_yticks([])
        p = case.parameters
        axes[row][0].set_ylabel(f"{title}, seed {seed}\n{p['age_weeks']:.0f} wk, {_artefact_note(p)}",
                                fontsize=7)
    figure.suptitle("Synthetic neonatal chest MRI (red: label 1 = right lung, cyan: label 2 = left lung;\n"
                    "radiological view: patient right on the image left)", fontsize=8)
    figure.tight_layout(rect=(0.0, 0.0, 1.0, 0.975))
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=72)
    plt.close(figure)
    with Image.open(output) as picture:
        picture.convert("RGB").quantize(PALETTE_COLOURS).save(output, optimize=True)
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path,
                        default=Path(__file__).resolve().parent / "images" / "synthetic-samples.png")
    parser.add_argument("--atlas-dir", type=Path, default=default_atlas_dir())
    args = parser.parse_args()
    print(render(args.output, args.atlas_dir))


if __name__ == "__main__":
    main()
