"""`neonatal-lung-seg synthesize`: write synthetic cases to disk (the bundled sample is made this way).

Files are written as a labelled folder (images/, labels/) so the same cases can be segmented, evaluated
or trained on; images are stored as int16 (the generator's range is 0..~1000) to keep them small.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import SimpleITK as sitk

from .synthetic import default_atlas_dir, generate_case


def write_synthetic_cases(output: Path, cases: int, seed: int, anatomy: str,
                          shape: tuple[int, int, int], spacing: tuple[float, float, float],
                          prefix: str = "synthetic") -> list[tuple[Path, Path]]:
    """Write ``cases`` volumes with seeds seed, seed+1, ...; refuses to replace existing files."""
    images, labels = output / "images", output / "labels"
    written = []
    for index in range(cases):
        name = f"{prefix}-{seed + index:06d}"
        image_path, label_path = images / f"{name}.nii.gz", labels / f"{name}.nii.gz"
        for path in (image_path, label_path):
            if path.exists():
                raise FileExistsError(f"{path}: already exists; choose another output folder or seed")
        case = generate_case(seed + index, anatomy=anatomy, shape=shape, spacing=spacing,
                             atlas_dir=default_atlas_dir() if anatomy == "atlas" else None)
        images.mkdir(parents=True, exist_ok=True)
        labels.mkdir(parents=True, exist_ok=True)
        image = sitk.Cast(sitk.Clamp(sitk.Round(case.image), lowerBound=-32768, upperBound=32767),
                          sitk.sitkInt16)
        sitk.WriteImage(image, str(image_path), useCompression=True)
        sitk.WriteImage(case.label, str(label_path), useCompression=True)
        written.append((image_path, label_path))
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="neonatal-lung-seg synthesize",
                                     description="Write synthetic neonatal chest MRI cases with lung labels "
                                                 "(1 right, 2 left) into OUTPUT/images and OUTPUT/labels.")
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--cases", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--anatomy", choices=("procedural", "atlas"), default="procedural")
    parser.add_argument("--shape", type=int, nargs=3, default=(96, 256, 256), metavar=("K", "J", "I"),
                        help="voxels per axis: slices, rows, columns (default 96 256 256)")
    parser.add_argument("--spacing", type=float, nargs=3, default=(1.5, 0.55, 0.55), metavar=("K", "J", "I"),
                        help="mm per axis: slices, rows, columns (default 1.5 0.55 0.55)")
    args = parser.parse_args(argv)
    try:
        written = write_synthetic_cases(args.output, args.cases, args.seed, args.anatomy,
                                        tuple(args.shape), tuple(args.spacing))
    except (FileExistsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for image_path, label_path in written:
        print(f"{image_path}  {label_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
