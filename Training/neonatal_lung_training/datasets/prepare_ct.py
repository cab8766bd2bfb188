"""Convert the public CT lung slices (../shared/data/ct-lung-slices) into a training folder.

These 213 axial chest CT slices with lung masks are the only real image-and-mask data this project can
reach. They are CT, not neonatal MRI, on purpose: they show that the pipeline learns real anatomy, and they
measure how fast fine-tuning adapts a model to an unseen domain. Their subjects are not published, so each
slice is its own pseudo-subject. Near-duplicate slices, which could be neighbours in one scan, are grouped
into one subject so a near-copy can never sit on both sides of a split. On the distributed files no two
slices are that close: the nearest pair differs by an RMS of 0.06 on the 0..1 scale, against a grouping
threshold of 0.03.

The masks were interpolated when the slices were resized to 64×64. Here they are thresholded at 0.5 and
written with the "lung" label scheme (no sides). The pixel spacing is not distributed, so a nominal
5 mm × 5 mm is written (512 pixels of about 0.7 mm, resized to 64). That makes volumes in mL nominal, but
Dice does not depend on it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from NeonatalLungSegLib.errors import InputError, exit_status
from NeonatalLungSegLib.dataset.training_folder import add_case, new_training_folder

from ..locations import shared_data

NOMINAL_SPACING_MM = (5.0, 5.0, 5.0)
DUPLICATE_RMS = 0.03
DESCRIPTION = ("213 real axial chest CT slices (64x64, 0..1) with lung masks from the public 'Finding and "
               "Measuring Lungs in CT Data' set as redistributed in IzPerfect/CT-Image-Segmentation (MIT); "
               "CT, not neonatal MRI")


def default_source() -> Path:
    return shared_data("ct-lung-slices")


def load_ct_slices(source: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 64, 64) float32 and binary masks (N, 64, 64) uint8, checked for shape and range."""
    paths = [source / "x_train.npy", source / "y_train.npy"]
    for path in paths:
        if not path.is_file():
            raise InputError(f"{path}: not found (expected the ct-lung-slices data folder)")
    images, masks = (np.load(p, allow_pickle=False) for p in paths)
    if images.ndim != 4 or images.shape != masks.shape or images.shape[-1] != 1:
        raise InputError(f"{source}: expected two arrays of shape (N, H, W, 1), got {images.shape} and "
                         f"{masks.shape}")
    if not np.isfinite(images).all():
        raise InputError(f"{paths[0]}: holds NaN or infinite values")
    return images[..., 0].astype(np.float32), (masks[..., 0] >= 0.5).astype(np.uint8)


def pseudo_subjects(images: np.ndarray, threshold: float = DUPLICATE_RMS) -> np.ndarray:
    """Group index per slice: slices closer than ``threshold`` (RMS) end up in one group (union-find)."""
    flat = images.reshape(len(images), -1).astype(np.float64)
    squared = (flat ** 2).sum(1)
    distance = np.sqrt(np.maximum(squared[:, None] + squared[None] - 2 * flat @ flat.T, 0) / flat.shape[1])
    parent = np.arange(len(images))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in zip(*np.nonzero(np.triu(distance < threshold, k=1))):
        parent[root(i)] = root(j)
    roots = np.array([root(i) for i in range(len(images))])
    return np.unique(roots, return_inverse=True)[1]


def _volume(array2d: np.ndarray, dtype: type) -> sitk.Image:
    image = sitk.GetImageFromArray(array2d[None].astype(dtype))  # one axial slice = a volume of depth 1
    image.SetSpacing(NOMINAL_SPACING_MM)
    return image


def prepare_ct(source: Path, output: Path) -> int:
    """Write every slice as a case into a NEW folder, all or nothing; returns the number of cases."""
    if output.exists():
        raise InputError(f"{output}: already exists; choose a new folder for the training folder")
    images, masks = load_ct_slices(source)
    groups = pseudo_subjects(images)
    with new_training_folder(output) as staging:
        for index, (image, mask) in enumerate(zip(images, masks)):
            add_case(staging, _volume(image, np.float32), _volume(mask, np.uint8), f"ct-{groups[index]:03d}",
                     review_status="reference", label_scheme="lung", source="ct-lung-slices",
                     metadata={"source_file": "x_train.npy", "source_index": index,
                               "pixel_spacing": "nominal 5 mm (not distributed)"},
                     description=DESCRIPTION)
    return len(images)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="neonatal-lung-seg prepare-ct", description=__doc__.split("\n")[0])
    parser.add_argument("-o", "--output", type=Path, required=True, help="new training folder")
    parser.add_argument("--source", type=Path, default=default_source(),
                        help="folder with x_train.npy and y_train.npy (default: ../shared/data/ct-lung-slices)")
    args = parser.parse_args(argv)
    return exit_status(lambda: print(f"wrote {prepare_ct(args.source, args.output)} cases to {args.output}"))


if __name__ == "__main__":
    sys.exit(main())
