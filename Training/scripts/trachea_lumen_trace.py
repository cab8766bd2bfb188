"""How many of the network's voxels at a trachea-apex junction a lumen trace could take, and how many of them
the experts drew as lung: the experiment behind *Limits* in docs/reports/volume-bias/README.md.

    .venv/bin/neonatal-lung-seg segment ../shared/data/adult-proton-lung-mri/proton-0006.nii.gz -o /tmp/seg
    .venv/bin/python Training/scripts/trachea_lumen_trace.py \
        --case /tmp/seg/proton-0006_lungs.nii.gz:../shared/data/adult-proton-lung-mri/proton-0006 \
        [--air-share 0.25] [--pad 0.5] [--dark-percentile 75]

The trachea is a tube of air that goes on up the neck. Its lumen is found a few sections above both apices
(the darkest unlabelled air in the midline band, inside the body) and followed down, section by section, through
unlabelled air inside a disc of the tube's own radius plus ``--pad`` voxels. In each section the network's lung
voxels that touch the traced lumen in plane, lie in that disc and are no brighter than the lumen's own
``--dark-percentile`` signal above the apices are what the trace would take. Nothing is changed: the script
counts them against the experts' masks. It was not adopted in the engine (the report says why).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "NeonatalLungSeg")]

from NeonatalLungSegLib.inference.boundary import _structure, signal_levels  # noqa: E402

SECTIONS_ABOVE_APEX = 3  # where the lumen is taken: 11.7 mm above the apices at 3.9 mm sections
MIDLINE_BAND = 0.2  # of the distance between the lungs' centres, as the engine's air rules


def _lps(path: str) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.DICOMOrient(sitk.ReadImage(path), "LPS"))  # (S, P, L) index axes


def trace(labels: np.ndarray, image: np.ndarray, air_share: float, pad: float, percentile: float) -> np.ndarray:
    """The voxels of ``labels`` (k = superior) the trace takes; an empty mask when no lumen is found."""
    taken = np.zeros(labels.shape, bool)
    lung = labels > 0
    levels = signal_levels(lung, ~lung, image, _structure(lung.shape))
    if levels is None:
        return taken
    level, contrast = levels
    air = (image - level) / contrast <= air_share
    sections = np.flatnonzero(lung.any(axis=(1, 2)))
    start = sections[-1] + SECTIONS_ABOVE_APEX
    low = int(np.ceil(sections[0] + 2 * (sections[-1] - sections[0]) / 3))  # the upper third only
    if start >= labels.shape[0]:
        return taken
    centres = [np.argwhere(labels == value)[:, 2].mean() for value in (1, 2)]
    band = np.abs(np.arange(labels.shape[2]) - np.mean(centres)) <= MIDLINE_BAND * abs(centres[1] - centres[0])
    rows = np.flatnonzero(lung.any(axis=(0, 2)))
    inside = np.zeros(labels.shape[1], bool)
    inside[rows[0]:rows[-1] + 1] = True
    parts, count = ndimage.label(air[start])
    border = np.unique(np.concatenate([parts[0], parts[-1], parts[:, 0], parts[:, -1]]))
    pieces, count = ndimage.label(air[start] & band[None, :] & inside[:, None] & ~np.isin(parts, border[border > 0]))
    sizes = np.bincount(pieces.ravel(), minlength=count + 1)
    medians = [np.median(image[start][pieces == q]) if sizes[q] >= 2 else np.inf for q in range(1, count + 1)]
    if not count or not np.isfinite(min(medians)):
        return taken
    front = pieces == 1 + int(np.argmin(medians))
    radius = np.sqrt(front.sum() / np.pi) + pad
    dark = np.percentile(image[start][front], percentile)
    rows_grid, cols_grid = np.mgrid[:labels.shape[1], :labels.shape[2]]
    cross = ndimage.generate_binary_structure(2, 1)
    for k in range(start - 1, low - 1, -1):
        centre = ndimage.center_of_mass(front)
        disc = (rows_grid - centre[0]) ** 2 + (cols_grid - centre[1]) ** 2 <= radius ** 2
        free = air[k] & ~lung[k] & band[None, :] & disc
        parts, _ = ndimage.label(free)
        touched = np.unique(parts[free & ndimage.binary_dilation(front, np.ones((3, 3), bool))])
        if not touched.size:
            break
        front = np.isin(parts, touched)
        centre = ndimage.center_of_mass(front)
        disc = (rows_grid - centre[0]) ** 2 + (cols_grid - centre[1]) ** 2 <= radius ** 2
        taken[k] = lung[k] & (image[k] <= dark) & ndimage.binary_dilation(front, cross) & band[None, :] & disc
    return taken


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", action="append", required=True, metavar="PREDICTED:DATA_STEM",
                        help="the network's labels, and the stem of IMAGE.nii.gz and its experts' STEM_lungs.nii.gz")
    parser.add_argument("--air-share", type=float, default=0.25, help="air: (signal - lung) / contrast at most this")
    parser.add_argument("--pad", type=float, default=0.5, help="voxels added to the tube's radius")
    parser.add_argument("--dark-percentile", type=float, default=75.0)
    args = parser.parse_args(argv)
    report = {}
    for case in args.case:
        predicted, stem = case.split(":", 1)
        labels, expert = _lps(predicted), _lps(stem + "_lungs.nii.gz") > 0
        taken = trace(labels, _lps(stem + ".nii.gz").astype(np.float64), args.air_share, args.pad,
                      args.dark_percentile)
        report[Path(stem).name] = {"taken": int(taken.sum()), "experts_lung": int((taken & expert).sum()),
                                   "voxels_k_j_i": [list(map(int, v)) for v in np.argwhere(taken)]}
    print(json.dumps({"settings": vars(args) | {"case": None}, "cases": report}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
