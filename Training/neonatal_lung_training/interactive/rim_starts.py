"""Starting masks that are too generous at the lungs' rims, for developing click refinement.

Why: on the real adult proton MRI the segmentation model's remaining error, once its large leaks are
clicked away, is a one-voxel rim of partial volume over the lung bases and tips (docs/reports/click-
refinement). Our synthetic development volumes never show it: starting from the model's output there, the
errors are blobs, and twice a refinement network chosen on them was rejected by the real MRI. This builds
that kind of error on volumes we may tune on, so rim edits are chosen here and the real MRI stays a test.

For each lung of a reference mask: the voxels just outside it (one 6-connected layer) are added over its
base (the lowest ``BASE_SHARE`` of its head-foot extent, in physical LPS z) and its apex (the top
``APEX_SHARE``), and ``PATCHES`` random surface patches elsewhere get two layers, as a model over-reaching
at one wall would. Never into the other lung. Deterministic for a seed.

``--partial-volume``: the rims grow (two layers over the bands, three in the patches) only into partial
volume, voxels less than ``simulate.PARTIAL_SHARE`` (3/4) of the way from the lung's level (its median
deep inside) to the tissue's (the median two to four voxels outside it). A model over-reaches there, and
the darkest of them look like lung to a rule that judges the clicked voxel; without the option the rims
take every voxel of the shell, mostly the brighter partial volume and tissue.

    python -m neonatal_lung_training.interactive.rim_starts --data runs/dr-dev6 --seed 5

writes DATA/starts/NAME.nii.gz (on each image's grid), read by ``evaluate-clicks --start given``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

from NeonatalLungSegLib.errors import exit_status
from NeonatalLungSegLib.geometry import Geometry, array_to_image, image_to_array
from NeonatalLungSegLib.volumes.volume_io import AtomicOutputs, read_labels_on_grid, read_volume

from .simulate import grow_into, partial_volume

BASE_SHARE = 0.4
APEX_SHARE = 0.1
PATCHES = 2
PATCH_REACH = 0.25   # patch radius as a share of the lung's size (cube root of its volume)
SIX = ndimage.generate_binary_structure(3, 1)


def head_foot_mm(geometry: Geometry) -> np.ndarray:
    """LPS z (mm, + towards the head) of every voxel, shape (k, j, i)."""
    k, j, i = np.indices(geometry.array_shape, dtype=np.float32)
    return geometry.array_index_to_lps(np.stack([k, j, i], axis=-1))[..., 2].astype(np.float32)


def rim_start(reference: np.ndarray, geometry: Geometry, rng: np.random.Generator,
              labels: tuple[int, int] = (1, 2), image: np.ndarray | None = None) -> np.ndarray:
    """``reference`` with rims added as described in the module docstring (a new array).

    With ``image`` (same grid), the partial-volume variant: rims only into partial-volume voxels.
    """
    start = reference.astype(np.uint8, copy=True)
    z_mm = head_foot_mm(geometry)
    sampling = tuple(float(s) for s in geometry.spacing[::-1])
    positions = None
    for value in labels:
        lung = reference == value
        if not lung.any():
            continue
        free = reference == 0
        if image is None:
            shell1 = ndimage.binary_dilation(lung, SIX) & free
            shell2 = ndimage.binary_dilation(lung, SIX, iterations=2) & free
        else:   # one layer deeper each, through partial volume only
            like = free & partial_volume(image, lung)
            shell1, shell2 = grow_into(lung, like, 2), grow_into(lung, like, 3)
        low, high = float(z_mm[lung].min()), float(z_mm[lung].max())
        extent = high - low
        bands = (z_mm < low + BASE_SHARE * extent) | (z_mm > high - APEX_SHARE * extent)
        added = shell1 & bands
        surface = np.argwhere(shell1 & ~bands)
        size_mm = (float(lung.sum()) * float(np.prod(geometry.spacing))) ** (1 / 3)
        if positions is None:
            positions = np.indices(reference.shape, dtype=np.float32)
        for _ in range(PATCHES if len(surface) else 0):
            centre = surface[rng.integers(len(surface))]
            distance2 = sum(((positions[a] - centre[a]) * sampling[a]) ** 2 for a in range(3))
            added |= shell2 & (distance2 <= (PATCH_REACH * size_mm) ** 2)
        start[added & (start == 0)] = value
    return start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rim_starts", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with images/ and labels/")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--partial-volume", action="store_true",
                        help="rims only into partial volume (under 3/4 of the way from lung level to tissue level)")
    args = parser.parse_args(argv)

    def body() -> None:
        from .noc import volume_pairs

        rng = np.random.default_rng(args.seed)
        with AtomicOutputs() as outputs:  # all starting masks or none; an existing one is refused, never replaced
            for name, image_path, label_path in volume_pairs(args.data):
                image = None
                if args.partial_volume:
                    image, geometry = image_to_array(read_volume(image_path, check=True))
                    reference = read_labels_on_grid(label_path, geometry)
                else:
                    reference, geometry = image_to_array(read_volume(label_path, check=True))
                start = rim_start(reference.astype(np.uint8), geometry, rng, image=image)
                outputs.write_image(array_to_image(start, geometry), args.data / "starts" / f"{name}.nii.gz")
                added, lungs = int((start != reference).sum()), max(1, int((reference > 0).sum()))
                print(f"{name}: {added} rim voxels added ({added / lungs:.1%} of the lungs)")

    return exit_status(body)


if __name__ == "__main__":
    sys.exit(main())
