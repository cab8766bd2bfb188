"""The ``neonatal-lung-seg`` command: one subcommand per pipeline step, each a thin layer over a function.

Every user error ends as one line on stderr and exit status 2, with nothing written; Ctrl-C exits 130,
also with nothing partial left behind.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..inference.acceleration import SEGMENT_PRECISIONS, configure_process
from ..errors import InputError, NeonatalLungSegError, exit_status
from .describe import SegmentDescriber, add_parser as add_describe_parser, add_segment_options
from ..volumes.volume_io import (OUTPUT_FORMATS, AtomicOutputs, case_name, check_output_folder, clean_stale_temporaries,
                        dicom_series_files, is_scan_file, probe_volume, source_files, volume_suffix)


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
            scans = [p for p in files if is_scan_file(p)]  # not our own outputs, not hidden temporaries
            if scans:
                cases += [Case(p, case_name(p)) for p in scans]
                continue
            if files:
                raise InputError(f"{path}: holds only this tool's outputs or temporary files, no scans")
            # a folder with no volume files must hold a DICOM series; raises a clear error when it holds no
            # series either
            dicom_series_files(path)
        cases.append(Case(path, case_name(path)))
    seen: dict[str, Path] = {}
    for case in cases:
        if case.name in seen:
            raise InputError(f"{case.source}: same case name {case.name!r} as {seen[case.name]}; "
                             "outputs would collide")
        seen[case.name] = case.source
    return cases


def input_files(cases: Sequence[Case]) -> set[Path]:
    """Every file a run reads (volume files, detached data files, DICOM slices): outputs must never land on one."""
    return {Path(f).resolve() for case in cases for f in source_files(case.source)}


DICOM_SEG = "dicom-seg"


def output_paths(out_dir: Path, name: str, fmt: str) -> dict[str, Path]:
    suffix = "dcm" if fmt == DICOM_SEG else fmt
    return {"labels": out_dir / f"{name}_lungs.{suffix}", "volumes": out_dir / f"{name}_volumes.json",
            "probabilities": out_dir / f"{name}_lung_probability.{fmt}",
            "confidence": out_dir / f"{name}_confidence.json"}


def _progress_bar(name: str) -> tuple[Callable[[float], None], Callable[[], None]]:
    """A tqdm bar on an interactive terminal; silence in logs and pipes."""
    if not sys.stderr.isatty():
        return (lambda fraction: None), (lambda: None)
    from tqdm import tqdm

    bar = tqdm(total=100, desc=name, unit="%", leave=False, file=sys.stderr)
    return (lambda fraction: bar.update(round(100 * fraction) - bar.n)), bar.close


def run_segment(args: argparse.Namespace) -> int:
    from ..inference.confidence import segment_with_confidence
    from ..inference.acceleration import configure_cpu_threads, cpu_line, describe_route
    from ..inference.engine import Segmenter, describe_inference
    from ..geometry import image_to_array
    from ..inference.measure import format_volumes
    from ..inference.postprocess import PostprocessOptions
    from ..volumes.volume_io import read_checked, read_volume

    cases = collect_cases(args.inputs)
    for case in cases:
        probe_volume(case.source)
    if args.format == DICOM_SEG:
        files = [c.source for c in cases if not c.source.is_dir()]
        if files:
            raise InputError(f"{files[0]}: --format dicom-seg needs DICOM series inputs (a DICOM SEG references "
                             "its source images); use nii.gz, nrrd or mha for volume files")
        inside = [c.source for c in cases if c.source.resolve() == Path(args.output).resolve()]
        if inside:
            raise InputError(f"{inside[0]}: write the DICOM SEG outside the series folder (it would join the "
                             "series and make the folder unreadable as one series)")
        if args.probabilities:
            raise InputError("--probabilities cannot be written as DICOM SEG; leave it out or choose another "
                             "--format")
    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: output exists and is not a folder")
    check_output_folder(out_dir)
    protected = input_files(cases)
    checker = AtomicOutputs(overwrite=args.overwrite, protected=protected)
    paths_of = {case.name: output_paths(out_dir, case.name, args.format) for case in cases}
    args.confidence = args.confidence or args.flip
    keys = ("labels", "volumes") + (("probabilities",) if args.probabilities else ()) + \
        (("confidence",) if args.confidence else ())
    for paths in paths_of.values():
        for key in keys:
            checker.check(paths[key])
    describer = SegmentDescriber(args, out_dir, [case.name for case in cases], checker)
    # Every input read and checked before anything is written (the README's promise). A single input is kept;
    # of several, each one's fingerprint (size, SHA-256 per file) is kept instead, and its read before use must
    # find those very bytes: an input changed or truncated since the check is refused, never segmented.
    kept, fingerprints = {}, {}
    for case in cases:
        checked = read_checked(case.source, check=True)
        fingerprints[case.name] = checked.fingerprint
        if len(cases) == 1:
            kept[case.name] = checked.image
    clean_stale_temporaries(out_dir)
    segmenter = Segmenter.load(args.model, device=args.device, batch_size=args.batch_size,
                               precision=args.precision)
    if segmenter.device.type == "cpu" and segmenter.backend == "torch":  # the int8 path never imports torch
        configure_cpu_threads()
    options = None if args.no_postprocess else PostprocessOptions()
    print(f"model {segmenter.config.name} {segmenter.config.version} on {describe_inference(segmenter.inference)}"
          f"{'; CPU ' + cpu_line() if segmenter.device.type == 'cpu' else ''}; {len(cases)} case(s)", flush=True)
    for case in cases:
        started = time.perf_counter()
        image = kept.pop(case.name, None) or read_volume(case.source, check=False, expect=fingerprints[case.name])
        update, close = _progress_bar(case.name)
        try:
            if args.confidence:
                array, geometry = image_to_array(image)
                result, confidence = segment_with_confidence(
                    segmenter, array.astype("float32", copy=False), geometry, options=options, flip=args.flip,
                    progress=update, source=str(case.source))
            else:
                result = segmenter.segment_image(image, options=options, with_probabilities=args.probabilities,
                                                 progress=update, source=str(case.source))
        finally:
            close()
        paths = paths_of[case.name]
        report = {"case": case.name, "model": {"name": segmenter.config.name,
                                               "version": segmenter.config.version},
                  "labels": result.label_names, "postprocessed": options is not None,
                  "inference": result.inference, **result.volumes}
        described = describer.prepare(case.name, image, result.labels, report["model"], str(case.source))
        with AtomicOutputs(overwrite=args.overwrite, protected=protected) as outputs:
            if args.format == DICOM_SEG:
                from ..volumes.dicom_seg import write_dicom_seg

                write_dicom_seg(outputs.path_for(paths["labels"]), result.labels, dicom_series_files(case.source),
                                result.label_names, model_name=segmenter.config.name,
                                model_version=segmenter.config.version)
            else:
                outputs.write_image(result.labels_image(), paths["labels"])
            if args.probabilities:
                outputs.write_image(result.probabilities_image(), paths["probabilities"])
            if args.confidence:
                outputs.write_json({"case": case.name, "model": report["model"],
                                    **confidence.to_dict(args.check_slices, result.geometry)}, paths["confidence"])
            describer.write(outputs, described)
            report["seconds"] = round(time.perf_counter() - started, 3)
            outputs.write_json(report, paths["volumes"])
        line = f"{case.name}: {format_volumes(result.volumes)} ({report['seconds']:.1f} s) -> {paths['labels']}"
        if "gate" in result.inference:  # a gated model: which of its two networks segmented this case
            line += f"\n  {describe_route(result.inference['gate'])}"
        if args.confidence:
            check = ", ".join(str(s.index) for s in confidence.slices_to_check(args.check_slices))
            line += f"\n  confidence {confidence.confidence:.3f}" + (
                f", flip agreement {confidence.flip_dice:.3f}" if confidence.flip_dice is not None else "") + \
                (f"; check slices {check} first" if check else "")
        print(line)
    describer.finish(args.overwrite)
    return 0


def run_rank(args: argparse.Namespace) -> int:
    """Rank unlabelled cases, least confident (most worth correcting) first; CSV to --out or stdout."""
    from ..inference.engine import Segmenter
    from ..dataset.ranking import (is_training_folder, rank_cases, ranking_csv, read_chest_volume, read_folder_image,
                          training_folder_images)

    folders = [p for p in args.data if is_training_folder(p)]
    others = [p for p in args.data if not is_training_folder(p)]
    if folders and others:
        raise InputError("give either training folders or volumes (files, series, folders of volumes), not both")
    if folders:
        cases = [case for folder in folders for case in training_folder_images(folder)]
        read = read_folder_image
    else:
        cases = [(c.name, c.source) for c in collect_cases(others)]
        read = read_chest_volume
        for _, source in cases:
            probe_volume(source)
    if not cases:
        raise InputError(f"no volumes found in {', '.join(map(str, args.data))}")
    names = [name for name, _ in cases]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputError(f"case names occur twice: {', '.join(duplicates[:5])}; rank one folder at a time")
    if args.out is not None:
        check_output_folder(Path(args.out).parent)
        AtomicOutputs(overwrite=args.overwrite, protected={Path(s) for _, s in cases if Path(s).is_file()}
                      ).check(args.out)
    segmenter = Segmenter.load(args.model, device=args.device, batch_size=args.batch_size)
    echo = (lambda text: print(text, file=sys.stderr, flush=True)) if args.out is None else print
    echo(f"model {segmenter.config.name} {segmenter.config.version} on {segmenter.device}; "
         f"ranking {len(cases)} case(s){' with a left-right flip' if args.flip else ''}")
    ranked = rank_cases(segmenter, cases, flip=args.flip, echo=echo, read=read)
    text = ranking_csv(ranked)
    if args.out is None:
        sys.stdout.write(text)
        return 0
    with AtomicOutputs(overwrite=args.overwrite) as outputs:
        outputs.write_text(text, args.out)
    top = ", ".join(f"{r.case} ({r.confidence:.3f})" for r in ranked[:5])
    print(f"wrote {args.out}; correct first: {top}")
    return 0


def run_models(args: argparse.Namespace) -> int:
    """List model folders: bundled, given (--path), remembered (--remember adds the given paths)."""
    import json

    from ..models import registry

    for path in args.forget or []:
        print(("forgot " if registry.forget(path) else "was not remembered: ") + str(path))
    if args.remember:
        for path in args.path:
            if not registry.model_folders_under(Path(path)):
                raise InputError(f"{path}: neither a model folder nor a folder holding model folders")
            print(("remembered " if registry.remember(path) else "already remembered: ") + str(path))
    if args.default is not None:
        if str(args.default) == "bundled":
            registry.set_default(None)
            print("default model: the bundled model")
        else:
            registry.set_default(args.default)
            print(f"default model: {Path(args.default).resolve()}")
    entries = registry.find_models(args.path)
    if args.json:
        print(json.dumps([e.to_dict() for e in entries], indent=2))
    else:
        print(registry.format_table(entries))
    return 0


TRAINING_COMMANDS = {
    "train": ("neonatal_lung_training.training.train", "train or fine-tune a model folder on a training folder"),
    "synthesize": ("neonatal_lung_training.synthesis.synthesize", "write synthetic neonatal chest MRI with labels"),
    "prepare-ct": ("neonatal_lung_training.datasets.prepare_ct", "convert the public CT lung slices to a training folder"),
    "quantize": ("neonatal_lung_training.release.quantize", "add a checked int8 copy of a model folder's network (CPU speed)"),
    "evaluate": ("neonatal_lung_training.evaluation.evaluate",
                 "evaluate model folders on a labelled folder: metrics CSV/JSON, plots, Markdown report"),
    "improve": ("neonatal_lung_training.improve.command",
                "fine-tune a model on a training folder's reviewed cases, without forgetting, and judge it"),
    "evaluate-clicks": ("neonatal_lung_training.interactive.noc",
                        "score click refinement with simulated clicks: NoC@90 / NoC@95, Dice per click"),
    "import-cases": ("neonatal_lung_training.datasets.import_cases",
                     "turn an nnU-Net raw dataset or image/mask pairs into a training folder (reference labels)"),
    "export-nnunet": ("neonatal_lung_training.datasets.nnunet",
                      "write a training folder as an nnU-Net v2 raw dataset (imagesTr, labelsTr, dataset.json)"),
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
    seg.add_argument("--batch-size", type=int, default=None,
                     help="slices per batch (default 8 on CPU; on a GPU, what half its free memory holds)")
    seg.add_argument("--precision", choices=SEGMENT_PRECISIONS, default="auto",
                     help="auto (default: fp16 on CUDA GPUs and AMX-FP16 CPUs; the model folder's int8 network "
                          "on CPUs with VNNI where it has one and openvino is installed; else bf16 on "
                          "AVX512-BF16 / AMX-BF16 CPUs, else fp32), fp32, fp16, bf16 or int8 (CPU, OpenVINO)")
    seg.add_argument("--probabilities", action="store_true", help="also write the lung probability map")
    seg.add_argument("--no-postprocess", action="store_true",
                     help="raw thresholded network output as one 'lung' label (no cleaning, no L/R split)")
    seg.add_argument("--format", choices=(*OUTPUT_FORMATS, DICOM_SEG), default="nii.gz",
                     help="output file format; dicom-seg (DICOM series inputs only) writes NAME_lungs.dcm, a DICOM "
                          "Segmentation referencing the source series")
    seg.add_argument("--confidence", action="store_true",
                     help="also write NAME_confidence.json: case confidence (estimated Dice, entropy) and the "
                          "axial slices most worth checking")
    seg.add_argument("--flip", action="store_true",
                     help="confidence with test-time augmentation: segment the left-right mirrored volume too "
                          "and report the agreement (implies --confidence; about twice the time)")
    seg.add_argument("--check-slices", type=int, default=5, metavar="N",
                     help="slices to list as most worth checking (default 5)")
    seg.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    add_segment_options(seg)
    seg.set_defaults(func=run_segment)
    rank = sub.add_parser("rank", help="rank unlabelled cases by the expected benefit of correcting them",
                          description="Segment every case and rank the cases by expected benefit of correction "
                                      "(1 - estimated Dice from the model's own probabilities), least confident "
                                      "first: the order in which a reviewer's corrections help most.")
    rank.add_argument("--model", type=Path, default=None, help="model folder (default: the bundled model)")
    rank.add_argument("--data", type=Path, nargs="+", required=True, metavar="FOLDER_OR_VOLUME",
                      help="training folders (their newest case of each subject), folders of volumes, volume "
                           "files or DICOM series folders")
    rank.add_argument("--out", type=Path, default=None, help="ranking CSV to write (default: print to stdout)")
    rank.add_argument("--flip", action="store_true", help="add left-right flip agreement (twice the time)")
    rank.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    rank.add_argument("--batch-size", type=int, default=None, help="slices per batch (default 8 CPU, 32 GPU)")
    rank.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    rank.set_defaults(func=run_rank)
    models = sub.add_parser("models", help="list available model folders with version, parent, data and Dice",
                            description="List the bundled model folders, the folders given with --path and "
                                        "those remembered earlier (and in $NEONATAL_LUNG_SEG_MODEL_PATH).")
    models.add_argument("--path", type=Path, action="append", default=[], metavar="DIR",
                        help="a model folder or a folder of model folders; repeatable")
    models.add_argument("--remember", action="store_true", help="remember the --path folders for later listings "
                        "(and the Slicer module)")
    models.add_argument("--forget", type=Path, action="append", metavar="DIR", help="stop remembering DIR")
    models.add_argument("--default", type=Path, metavar="DIR|bundled",
                        help="make DIR the default segmentation model (for `segment` and the Slicer module), or "
                             "'bundled' to go back to the bundled model")
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")
    models.set_defaults(func=run_models)
    from .refine import add_parser as add_refine_parser

    add_refine_parser(sub)
    add_describe_parser(sub)
    for command, (_, summary) in TRAINING_COMMANDS.items():
        sub.add_parser(command, help=f"{summary} (see `{command} --help`)", add_help=False)
    return parser


def fill_default_model(args: argparse.Namespace) -> None:
    """The default segmentation model for the commands that take one; a command with a model of another kind
    (``refine``: the click-refinement model) chooses its own."""
    if getattr(args, "model", "unset") is None and not getattr(args, "own_default_model", False):
        from ..models.registry import default_model_folder

        args.model = default_model_folder()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] and argv[0] in TRAINING_COMMANDS:
        try:
            return run_training_command(argv[0], argv[1:])
        except NeonatalLungSegError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    configure_process()  # inference commands, before torch is imported: OpenMP threads wait, not spin
    args = build_parser().parse_args(argv)
    fill_default_model(args)
    if getattr(args, "batch_size", None) is not None and args.batch_size < 1:
        print(f"error: --batch-size must be >= 1, got {args.batch_size}", file=sys.stderr)
        return 2
    if getattr(args, "check_slices", 0) < 0:
        print(f"error: --check-slices must be >= 0, got {args.check_slices}", file=sys.stderr)
        return 2
    return exit_status(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
