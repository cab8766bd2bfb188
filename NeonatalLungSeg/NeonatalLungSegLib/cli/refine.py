"""``neonatal-lung-seg refine``: correct a lung mask with clicks from a JSON file, for scripts and evaluation.

    neonatal-lung-seg refine scan.nii.gz --labels scan_lungs.nii.gz --clicks clicks.json -o fixed_lungs.nii.gz

The clicks are applied in order, each to the result of the ones before, exactly as the Slicer module applies
them one at a time (``refine.RefineSession``). Everything is read and checked before anything is written;
the output is written atomically and never replaces an input.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..errors import InputError


def add_parser(sub: argparse._SubParsersAction) -> None:
    refine = sub.add_parser("refine", help="correct a lung mask with positive / negative clicks (JSON)",
                            description="Apply clicks to a lung mask with the click-refinement model: a positive "
                                        "click adds missed lung, a negative click removes false lung; only the "
                                        "clicked lung's error connected to the click changes.")
    refine.add_argument("input", type=Path, help="the scan (volume file or DICOM series folder)")
    refine.add_argument("--labels", type=Path, required=True,
                        help="current lung labels on the scan's grid (1 = right, 2 = left; 0 elsewhere)")
    refine.add_argument("--clicks", type=Path, required=True,
                        help='clicks JSON: {"clicks": [{"point": [x, y, z] (LPS mm) or "index": [k, j, i], '
                             '"sign": "+" or "-", "lung": "right" or "left" (optional)}, ...]}')
    refine.add_argument("-o", "--output", type=Path, required=True, help="corrected labels file to write")
    refine.add_argument("--model", type=Path, default=None,
                        help="click-refinement model folder (default: the bundled one)")
    refine.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    refine.add_argument("--report", type=Path, default=None, help="also write what each click did as JSON")
    refine.add_argument("--no-image-contrast", action="store_true",
                        help="negative clicks use the network only, not the image's contrast (which can take "
                             "consolidated lung beside false tissue)")
    refine.add_argument("--no-rim-peel", action="store_true",
                        help="negative clicks on the mask's outer layers do not peel the rim around them")
    refine.add_argument("--overwrite", action="store_true", help="replace an existing output")
    refine.set_defaults(func=run_refine, own_default_model=True)  # its model is the click-refinement one


def run_refine(args: argparse.Namespace) -> int:
    from ..correction.clicks import read_clicks
    from ..geometry import array_to_image, image_to_array
    from ..correction.refine import Refiner
    from ..models.registry import bundled_refine_model_folder
    from ..volumes.volume_io import AtomicOutputs, read_labels_on_grid, read_volume

    protected = {Path(args.input), Path(args.labels), Path(args.clicks)}
    if any(Path(args.output).resolve() == p.resolve() for p in protected):
        raise InputError(f"{args.output}: the output would replace an input; choose another file")
    if args.report and Path(args.report).resolve() == Path(args.output).resolve():
        raise InputError(f"{args.report}: the report would be written over the corrected labels; choose "
                         "another file for --report")
    if args.report and any(Path(args.report).resolve() == p.resolve() for p in protected):
        raise InputError(f"{args.report}: the report would replace an input; choose another file")
    image = read_volume(args.input, check=True)
    array, geometry = image_to_array(image)
    labels = read_labels_on_grid(args.labels, geometry)
    clicks = read_clicks(args.clicks, geometry)
    outputs = AtomicOutputs(overwrite=args.overwrite, protected=protected)
    outputs.check(args.output)
    if args.report:
        outputs.check(args.report)
    if args.device.strip().lower() in ("auto", "cpu"):
        from ..inference.acceleration import configure_cpu_threads

        configure_cpu_threads()
    refiner = Refiner.load(args.model or bundled_refine_model_folder(), device=args.device)
    session = refiner.session(array.astype(np.float32, copy=False), geometry, source=str(args.input),
                              image_contrast=not args.no_image_contrast, rim_peel=not args.no_rim_peel)
    report = []
    for number, click in enumerate(clicks, 1):
        labels, outcome = session.apply(labels, click)
        print(f"click {number} ({'+' if click.positive else '-'} at k,j,i {list(click.index)}): {outcome.message}",
              flush=True)
        fields = {k: v for k, v in asdict(outcome).items() if k != "message"}  # every field the engine reports
        report.append({"click": click.to_dict(), **fields, "seconds": round(outcome.seconds, 3)})
    started = time.perf_counter()
    with outputs:
        outputs.write_image(array_to_image(labels, geometry), args.output)
        if args.report:
            outputs.write_json({"model": {"name": refiner.config.name, "version": refiner.config.version},
                                "clicks": report}, args.report)
    print(f"wrote {args.output} ({time.perf_counter() - started:.1f} s)")
    return 0

