"""``neonatal-lung-seg describe`` and ``segment --describe``: lung descriptors, a CSV row and an HTML report
per case, and one cohort CSV for a folder (docs/descriptors.md).

    neonatal-lung-seg describe scan.nii.gz --labels scan_lungs.nii.gz -o out/ [--weight-kg 1.2]
    neonatal-lung-seg describe scans/ --labels labels/ -o out/        # out/cohort_descriptors.csv too

Every input is read and every case described before an output appears; the outputs of a run appear together
or not at all, and never replace an input.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from typing import TYPE_CHECKING

from ..errors import InputError
from ..volumes.volume_io import (VOLUME_SUFFIXES, AtomicOutputs, case_name, check_output_folder, is_scan_file,
                                 read_labels_on_grid, read_volume, source_files, volume_suffix)

if TYPE_CHECKING:
    from ..measurements.outputs import CaseDescription

# The measurements (SciPy, matplotlib) are imported when a command describes, not when the CLI starts.
COHORT_CSV = "cohort_descriptors.csv"  # measurements.outputs.COHORT_CSV, checked by the tests


def add_parser(sub: argparse._SubParsersAction) -> None:
    describe = sub.add_parser(
        "describe", help="lung descriptors (volume, shape, signal) with a CSV row and an HTML report per case",
        description="Describe the lungs of labelled scans: volume, surface, shape, regional fractions and the "
                    "normalised signal distribution per lung (docs/descriptors.md). Writes NAME_descriptors.json, "
                    "NAME_descriptors.csv and NAME_report.html per case; a folder of scans also gets "
                    f"{COHORT_CSV}. Research use, not clinically validated.")
    describe.add_argument("scan", type=Path, help="a volume file or DICOM series folder, or a folder of volumes")
    describe.add_argument("--labels", type=Path, required=True,
                          help="the lung labels on the scan's grid (1 = right, 2 = left), or for a folder of scans "
                               "a folder holding NAME_lungs.EXT (or NAME.EXT) for each scan NAME.EXT")
    describe.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    add_weight_option(describe)
    describe.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    describe.set_defaults(func=run_describe)


def add_weight_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weight-kg", type=float, default=None, metavar="W",
                        help="the infant's weight in kg (above 0, at most 10): volumes also in mL/kg")


def add_segment_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--describe", action="store_true",
                        help="also describe each case's lungs: NAME_descriptors.json / .csv and NAME_report.html "
                             f"(several cases: {COHORT_CSV} too)")
    add_weight_option(parser)


def _labels_for(scan: Path, labels_folder: Path) -> Path:
    suffix = volume_suffix(scan) or ""
    stem = scan.name[: -len(suffix)] if suffix else scan.name
    found = [labels_folder / f"{stem}{ending}{s}" for ending in ("_lungs", "") for s in VOLUME_SUFFIXES
             if (labels_folder / f"{stem}{ending}{s}").is_file()]
    if len(found) != 1:
        raise InputError(f"{labels_folder}: {'no' if not found else 'more than one'} label file for {scan.name} "
                         f"(looked for {stem}_lungs.EXT and {stem}.EXT)")
    return found[0]


def describe_inputs(scan: Path, labels: Path) -> tuple[list[tuple[str, Path, Path]], bool]:
    """(name, scan, labels) of each case, and whether this is a cohort (a folder of volume files)."""
    scans = sorted(p for p in scan.iterdir() if p.is_file() and is_scan_file(p)) if scan.is_dir() else []
    if not scans:  # one volume file or one DICOM series folder
        if scan.is_dir() and labels.is_dir():
            raise InputError(f"{scan}: holds no volume files to describe with the labels in {labels} (a DICOM "
                             "series folder takes one label file)")
        if labels.is_dir():
            raise InputError(f"{labels}: --labels of one scan must be a label file, not a folder")
        return [(case_name(scan), scan, labels)], False
    if not labels.is_dir():
        raise InputError(f"{labels}: a folder of scans needs a folder of labels (NAME_lungs.EXT for each NAME.EXT)")
    cases = [(case_name(p), p, _labels_for(p, labels)) for p in scans]
    names = [name for name, _, _ in cases]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InputError(f"{scan}: case names occur twice ({', '.join(twice[:5])}); outputs would collide")
    return cases, True


def run_describe(args: argparse.Namespace) -> int:
    from ..geometry import image_to_array
    from ..measurements.descriptors import check_weight
    from ..measurements.outputs import model_from_sidecar, output_paths, prepare_case, write_case, write_cohort

    check_weight(args.weight_kg)
    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: output exists and is not a folder")
    cases, cohort = describe_inputs(Path(args.scan), Path(args.labels))
    if cohort and args.weight_kg is not None:
        raise InputError("--weight-kg is one infant's weight; describe the scans of a folder one by one to give "
                         "each its weight")
    check_output_folder(out_dir)
    protected = {Path(f) for _, scan, labels in cases for f in (*source_files(scan), labels)}
    outputs = AtomicOutputs(overwrite=args.overwrite, protected=protected)
    for name, _, _ in cases:
        for path in output_paths(out_dir, name).values():
            outputs.check(path)
    if cohort:
        outputs.check(out_dir / COHORT_CSV)
    rows = []
    with outputs:  # each case goes to temporary files; all are renamed into place only if every case succeeds
        for name, scan, labels in cases:
            array, geometry = image_to_array(read_volume(scan, check=False))
            case = prepare_case(name, array, read_labels_on_grid(labels, geometry), geometry,
                                weight_kg=args.weight_kg, model=model_from_sidecar(labels), scan_source=str(scan),
                                labels_source=str(labels))
            write_case(outputs, out_dir, case)
            rows.append(case.row)
            print(f"{name}: {summary(case)}", flush=True)
        if cohort:
            write_cohort(outputs, out_dir, rows)
    written = f"{out_dir / COHORT_CSV} and " if cohort else ""
    print(f"wrote {written}the descriptors and report of {len(rows)} case(s) in {out_dir}")
    return 0


def summary(case: CaseDescription) -> str:
    lungs = case.descriptors["lungs"]
    return (f"right {lungs['right']['volume_ml']:.1f} mL, left {lungs['left']['volume_ml']:.1f} mL, "
            f"right/left {case.descriptors['right_left_volume_ratio']:.2f}, "
            f"signal mean {lungs['both']['intensity']['mean']:.3f}")


class SegmentDescriber:
    """``segment --describe``: the same outputs for the labels a run has just made, from memory."""

    def __init__(self, args: argparse.Namespace, out_dir: Path, names: list[str], checker: AtomicOutputs) -> None:
        from ..measurements.descriptors import check_weight
        from ..measurements.outputs import output_paths

        self.enabled, self.weight_kg, self.out_dir = args.describe, args.weight_kg, Path(out_dir)
        self.cohort = len(names) > 1
        self.rows: list[dict] = []
        if not self.enabled:
            if args.weight_kg is not None:
                raise InputError("--weight-kg is used only with --describe")
            return
        if args.no_postprocess:
            raise InputError("--describe needs the right and left lungs; leave out --no-postprocess")
        check_weight(args.weight_kg)
        if self.cohort and args.weight_kg is not None:
            raise InputError("--weight-kg is one infant's weight; segment the cases one by one to give each its "
                             "weight")
        for name in names:
            for path in output_paths(self.out_dir, name).values():
                checker.check(path)
        if self.cohort:
            checker.check(self.out_dir / COHORT_CSV)

    def prepare(self, name: str, image, labels, model: dict, source: str) -> CaseDescription | None:
        """Descriptors of one segmented case, or None (and why, in one line) when its lungs cannot be described:
        the segmentation itself is still written."""
        if not self.enabled:
            return None
        from ..geometry import image_to_array
        from ..measurements.outputs import prepare_case

        array, geometry = image_to_array(image)
        try:
            return prepare_case(name, array, labels, geometry, weight_kg=self.weight_kg, model=model,
                                scan_source=source, labels_source=f"segmented by {model['name']} {model['version']}")
        except InputError as exc:
            print(f"{name}: no descriptors ({exc})", flush=True)
            return None

    def write(self, outputs: AtomicOutputs, case: CaseDescription | None) -> None:
        if case is not None:
            from ..measurements.outputs import write_case

            write_case(outputs, self.out_dir, case)
            self.rows.append(case.row)

    def finish(self, overwrite: bool) -> None:
        if self.enabled and self.cohort and self.rows:
            from ..measurements.outputs import write_cohort

            with AtomicOutputs(overwrite=overwrite) as outputs:
                print(f"cohort: {len(self.rows)} case(s) -> {write_cohort(outputs, self.out_dir, self.rows)}")
