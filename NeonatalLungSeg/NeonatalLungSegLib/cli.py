"""The ``neonatal-lung-seg`` command: one subcommand per pipeline step, each a thin layer over a function.

Every user error ends as one line on stderr and exit status 2, with nothing written; Ctrl-C exits 130,
also with nothing partial left behind.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from .errors import InputError, NeonatalLungSegError
from .volume_io import (OUTPUT_FORMATS, AtomicOutputs, case_name, dicom_series_files, probe_volume,
                        volume_suffix)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL_NAME = "neonatal-lung-unet-r50"
MODEL_ENV = "NEONATAL_LUNG_SEG_MODEL"


def default_model_dir() -> Path:
    """The bundled model, or the folder named by $NEONATAL_LUNG_SEG_MODEL."""
    override = os.environ.get(MODEL_ENV)
    return Path(override) if override else REPO_ROOT / "Resources" / "Models" / DEFAULT_MODEL_NAME


@dataclass(frozen=True)
class Case:
    source: Path
    name: str


def collect_cases(inputs: Sequence[Path]) -> list[Case]:
    """Expand files, DICOM series folders and folders of volume files into uniquely named cases."""
    cases: list[Case] = []
    for path in map(Path, inputs):
        if path.is_dir() and volume_suffix(path) is None:
            files = sorted(p for p in path.iterdir() if p.is_file() and volume_suffix(p))
            if files:
                cases += [Case(p, case_name(p)) for p in files]
                continue
            dicom_series_files(path)  # a folder with no volume files must hold a DICOM series; raises a clear error when it holds no series either
        cases.append(Case(path, case_name(path)))
    seen: dict[str, Path] = {}
    for case in cases:
        if case.name in seen:
            raise InputError(f"{case.source}: same case name {case.name!r} as {seen[case.name]}; "
                             "outputs would collide")
        seen[case.name] = case.source
    return cases


def output_paths(out_dir: Path, name: str, fmt: str) -> dict[str, Path]:
    return {"labels": out_dir / f"{name}_lungs.{fmt}", "volumes": out_dir / f"{name}_volumes.json",
            "probabilities": out_dir / f"{name}_lung_probability.{fmt}"}


def _progress_bar(name: str) -> tuple[Callable[[float], None], Callable[[], None]]:
    """A tqdm bar on an interactive terminal; silence in logs and pipes."""
    if not sys.stderr.isatty():
        return (lambda fraction: None), (lambda: None)
    from tqdm import tqdm

    bar = tqdm(total=100, desc=name, unit="%", leave=False, file=sys.stderr)
    return (lambda fraction: bar.update(round(100 * fraction) - bar.n)), bar.close


def run_segment(args: argparse.Namespace) -> int:
    from .engine import Segmenter
    from .measure import format_volumes
    from .postprocess import PostprocessOptions
    from .volume_io import read_volume

    cases = collect_cases(args.inputs)
    for case in cases:
        probe_volume(case.source)
    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: output exists and is not a folder")
    checker = AtomicOutputs(overwrite=args.overwrite)
    paths_of = {case.name: output_paths(out_dir, case.name, args.format) for case in cases}
    for paths in paths_of.values():
        for key in ("labels", "volumes") + (("probabilities",) if args.probabilities else ()):
            checker.check(paths[key])
    segmenter = Segmenter.load(args.model, device=args.device, batch_size=args.batch_size)
    options = None if args.no_postprocess else PostprocessOptions()
    print(f"model {segmenter.config.name} {segmenter.config.version} on {segmenter.device}; "
          f"{len(cases)} case(s)", flush=True)
    for case in cases:
        started = time.perf_counter()
        image = read_volume(case.source)
        update, close = _progress_bar(case.name)
        try:
            result = segmenter.segment_image(image, options=options, with_probabilities=args.probabilities,
                                             progress=update)
        finally:
            close()
        paths = paths_of[case.name]
        report = {"case": case.name, "model": {"name": segmenter.config.name,
                                               "version": segmenter.config.version},
                  "labels": result.label_names, "postprocessed": options is not None, **result.volumes}
        with AtomicOutputs(overwrite=args.overwrite) as outputs:
            outputs.write_image(result.labels_image(), paths["labels"])
            if args.probabilities:
                outputs.write_image(result.probabilities_image(), paths["probabilities"])
            report["seconds"] = round(time.perf_counter() - started, 3)
            outputs.write_json(report, paths["volumes"])
        print(f"{case.name}: {format_volumes(result.volumes)} ({report['seconds']:.1f} s) -> {paths['labels']}")
    return 0


TRAINING_COMMANDS = {
    "train": ("neonatal_lung_training.train", "train or fine-tune a model folder on a training folder"),
    "synthesize": ("neonatal_lung_training.synthesize", "write synthetic neonatal chest MRI with labels"),
    "prepare-ct": ("neonatal_lung_training.prepare_ct", "convert the public CT lung slices to a training folder"),
    "evaluate": ("neonatal_lung_training.evaluate",
                 "evaluate model folders on a labelled folder: metrics CSV/JSON, plots, Markdown report"),
}


def run_training_command(command: str, argv: Sequence[str]) -> int:
    """Training commands own their options, so they get the raw argv; imported only when used."""
    import importlib

    try:
        module = importlib.import_module(TRAINING_COMMANDS[command][0])
    except ImportError as exc:
        raise NeonatalLungSegError(f"training package not installed ({exc}); install the project with "
                                   "`pip install -e .[train]`") from None
    return module.main(list(argv))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="neonatal-lung-seg", description=(
        "Segment the right and left lungs in neonatal chest MRI (research use only; "
        "not clinically validated)."))
    sub = parser.add_subparsers(dest="command", required=True)
    seg = sub.add_parser("segment", help="segment volumes: lung labels + volumes in mL")
    seg.add_argument("inputs", nargs="+", type=Path,
                     help="volume files (.nii.gz .nrrd .mha ...), DICOM series folders, or folders of volumes")
    seg.add_argument("-o", "--output", required=True, type=Path, help="output folder")
    seg.add_argument("--model", type=Path, default=None, help="model folder (default: the bundled model)")
    seg.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    seg.add_argument("--batch-size", type=int, default=None, help="slices per batch (default 8 CPU, 32 GPU)")
    seg.add_argument("--probabilities", action="store_true", help="also write the lung probability map")
    seg.add_argument("--no-postprocess", action="store_true",
                     help="raw thresholded network output as one 'lung' label (no cleaning, no L/R split)")
    seg.add_argument("--format", choices=OUTPUT_FORMATS, default="nii.gz", help="output file format")
    seg.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    seg.set_defaults(func=run_segment)
    for command, (_, summary) in TRAINING_COMMANDS.items():
        sub.add_parser(command, help=f"{summary} (see `{command} --help`)", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] and argv[0] in TRAINING_COMMANDS:
        try:
            return run_training_command(argv[0], argv[1:])
        except NeonatalLungSegError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    args = build_parser().parse_args(argv)
    if getattr(args, "model", "unset") is None:
        args.model = default_model_dir()
    if getattr(args, "batch_size", None) is not None and args.batch_size < 1:
        print(f"error: --batch-size must be >= 1, got {args.batch_size}", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except NeonatalLungSegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing partial was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
