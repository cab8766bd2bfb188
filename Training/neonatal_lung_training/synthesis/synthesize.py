"""`neonatal-lung-seg synthesize`: write synthetic cases to disk (the bundled sample is made this way).

Files are written as a labelled folder (images/, labels/) so the same cases can be segmented, evaluated
or trained on; images are stored as int16 (the generator's range is 0..~1000) to keep them small.
What was drawn for each case (newborn age, warp, BPD, artefacts, and the options used) goes to
parameters/NAME.json beside them, so a held-out test set documents itself.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import SimpleITK as sitk

from NeonatalLungSegLib.errors import exit_status

from .neonatal.contrast import CONTRASTS
from .neonatal.generator import ANATOMIES, default_atlas_dir, generate_case
from .anatomy.variants import FAMILY_NAMES


def write_synthetic_cases(output: Path, cases: int, seed: int, anatomy: str,
                          shape: tuple[int, int, int], spacing: tuple[float, float, float],
                          prefix: str = "synthetic", *, contrast: str = "ute", variant_family: str = "train",
                          bpd_severity: float | None = None, artefacts: bool = True,
                          touching_lungs: bool | None = None) -> list[tuple[Path, Path]]:
    """Write ``cases`` volumes with seeds seed, seed+1, ...; refuses to replace existing files.

    The keyword options are passed to ``generate_case`` unchanged (see its docstring).
    """
    images, labels, records = output / "images", output / "labels", output / "parameters"
    written = []
    for index in range(cases):
        name = f"{prefix}-{seed + index:06d}"
        image_path, label_path = images / f"{name}.nii.gz", labels / f"{name}.nii.gz"
        record_path = records / f"{name}.json"
        for path in (image_path, label_path, record_path):
            if path.exists():
                raise FileExistsError(f"{path}: already exists; choose another output folder or seed")
        case = generate_case(seed + index, anatomy=anatomy, shape=shape, spacing=spacing,
                             atlas_dir=default_atlas_dir() if anatomy == "atlas" else None,
                             touching_lungs=touching_lungs, contrast=contrast, variant_family=variant_family,
                             bpd_severity=bpd_severity, artefacts=artefacts)
        for folder in (images, labels, records):
            folder.mkdir(parents=True, exist_ok=True)
        record = {"seed": case.seed, "anatomy": case.anatomy, "contrast": case.contrast,
                  "variant_family": case.variant_family, "shape": list(shape), "spacing": list(spacing),
                  "requested_bpd_severity": bpd_severity, "artefacts": artefacts,
                  "parameters": case.parameters}
        record_path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
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
    parser.add_argument("--anatomy", choices=ANATOMIES, default="procedural",
                        help="procedural shapes, or the fetal thorax atlas's shapes (read from "
                             "../shared/data/fetal-thorax-atlas beside the checkout)")
    parser.add_argument("--contrast", choices=CONTRASTS, default="ute",
                        help="ute: the target protocol (aerated lungs dark); randomized: random intensity "
                             "per tissue and gamma (protocol robustness); t2_haste: fluid bright, lungs "
                             "dark-intermediate, blood dark (a contrast to keep out of training)")
    parser.add_argument("--variant-family", "--family", dest="variant_family", choices=FAMILY_NAMES,
                        default="train",
                        help="anatomy family: train, or heldout for size, chest shape and warp ranges "
                             "disjoint from training (docs/synthetic-data.md)")
    parser.add_argument("--bpd-severity", type=float, default=None, metavar="S",
                        help="BPD-like dense patches, cysts and streaks inside the lungs, 0 (none) to 1; "
                             "default: none for half of the cases, 0.15-1 for the others")
    parser.add_argument("--no-artefacts", action="store_true",
                        help="no bias field, breathing blur, radial streaks or lower acquired resolution "
                             "(partial volume and Rician noise remain)")
    parser.add_argument("--touching-lungs", choices=("random", "yes", "no"), default="random",
                        help="lungs touching anteriorly (one component), or at least two voxels apart; "
                             "random: about 30 %% touch")
    parser.add_argument("--shape", type=int, nargs=3, default=(96, 256, 256), metavar=("K", "J", "I"),
                        help="voxels per axis: slices, rows, columns (default 96 256 256)")
    parser.add_argument("--spacing", type=float, nargs=3, default=(1.5, 0.55, 0.55), metavar=("K", "J", "I"),
                        help="mm per axis: slices, rows, columns (default 1.5 0.55 0.55)")
    parser.add_argument("--mix", action="store_true",
                        help="draw anatomy (atlas or procedural), matrix, field of view, slice thickness "
                             "(1-4 mm) and contrast per case, and write a training folder with a manifest "
                             "(the bundled model's recipe; --anatomy, --contrast, --shape, --spacing ignored)")
    parser.add_argument("--randomized-fraction", type=float, default=0.3,
                        help="with --mix: share of cases with randomized contrast, the rest UTE (default 0.3)")
    parser.add_argument("--domain-random", action="store_true",
                        help="domain-randomised cases, newborn to adult: random tissue contrast, orientation, "
                             "voxel size, field of view and artefacts (synthesis/; docs/synthetic-data.md), "
                             "written as a training folder; only -o, --cases, --seed, --family, --workers apply")
    parser.add_argument("--workers", type=int, default=1,
                        help="with --domain-random: generate in this many processes (default 1)")
    args = parser.parse_args(argv)
    if args.cases < 1:
        print(f"error: --cases must be >= 1, got {args.cases}", file=sys.stderr)
        return 2
    if args.domain_random:
        return exit_status(lambda: _write_domain_random(args), also=(FileExistsError, ValueError))
    return exit_status(lambda: _write_mix(args) if args.mix else _write_cases(args),
                       also=(FileExistsError, ValueError))


def _write_cases(args: argparse.Namespace) -> None:
    written = write_synthetic_cases(
        args.output, args.cases, args.seed, args.anatomy, tuple(args.shape), tuple(args.spacing),
        contrast=args.contrast, variant_family=args.variant_family, bpd_severity=args.bpd_severity,
        artefacts=not args.no_artefacts,
        touching_lungs={"random": None, "yes": True, "no": False}[args.touching_lungs])
    for image_path, label_path in written:
        print(f"{image_path}  {label_path}")


def _write_mix(args: argparse.Namespace) -> None:
    from .neonatal.folder import SyntheticMix, write_synthetic_folder

    mix = SyntheticMix(randomized_contrast_fraction=args.randomized_fraction)
    count = write_synthetic_folder(args.output, range(args.seed, args.seed + args.cases), mix,
                                   variant_family=args.variant_family)
    print(f"wrote a training folder of {count} cases to {args.output}")


def _write_domain_random(args: argparse.Namespace) -> None:
    from .randomised.folder import write_domain_random_folder

    if args.cases < 1:
        raise ValueError(f"--cases must be at least 1, got {args.cases}")
    if args.seed < 0:
        raise ValueError(f"--seed must be non-negative, got {args.seed}")
    count = write_domain_random_folder(args.output, range(args.seed, args.seed + args.cases),
                                       family=args.variant_family, workers=args.workers)
    print(f"wrote a training folder of {count} domain-randomised cases to {args.output}")


if __name__ == "__main__":
    sys.exit(main())
