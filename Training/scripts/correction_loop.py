"""The correction loop, measured (issue 5): fine-tune the bundled model on N corrected cases and score it.

    OMP_NUM_THREADS=1 .venv/bin/python Training/scripts/correction_loop.py --work runs/correction-loop
    make correction-loop                      # the same, full size

Domains the bundled model (synthetic UTE-like MRI) never saw:
- ``ct``: the real CT lung slices (``neonatal-lung-seg prepare-ct``), ``--heldout`` (60) slices held out;
- ``t2_haste``: synthetic MRI with the T2-HASTE contrast left out of the bundled model's training
  (``neonatal-lung-seg synthesize --contrast t2_haste``), separate seeds for pool and held-out volumes.

Each corrected case goes through the Slicer module's own path on real MRML (slicer-core wheel, with the
Qt stand-ins of Testing/slicer): the volume file is loaded into a volume node, the module Logic's
``segment`` makes the AI segmentation with the bundled model, the segments are redrawn from the reference
label through Slicer's segment editor logic (as a reviewer correcting every voxel would), and the Logic's
``exportForTraining`` writes the case to the strategy's training folder (verified voxel for voxel). Then
``neonatal-lung-seg train --init-model <bundled>`` fine-tunes on that folder; the selections are nested, so
the folder grows exactly as a reviewer's would. Selection: ``uncertainty`` (``neonatal-lung-seg rank``'s
order: expected benefit of correction, with left-right flip agreement) against ``random`` (seeded).

Writes ``--out`` (Markdown table, default docs/correction-loop.md), ``--figure`` (PNG learning curve,
default docs/images/correction-loop.png) and WORK/results.json. Everything under WORK is reused on a rerun.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
for _path in (REPO / "NeonatalLungSeg", REPO / "Training", REPO / "Training" / "scripts", REPO / "Testing" / "slicer"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

BUNDLED = REPO / "Resources" / "Models" / "neonatal-lung-unet-r50"
REVIEWER = "simulated reviewer (reference labels)"


class SlicerCorrector:
    """Reference labels pushed through the module Logic's real export path on slicer-core MRML."""

    def __init__(self, model: Path, device: str = "cpu") -> None:
        import slicer_harness  # real MRML + Qt stand-ins; must come before the module's imports

        self.module = slicer_harness.import_module()
        self.slicer = slicer_harness.slicer
        self.scene = slicer_harness.mrml_environment()["scene"]
        self.logic = self.module.NeonatalLungSegLogic()
        # Its own parameter node, so the module's singleton (and anything using it) is left alone.
        node = self.scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", "NeonatalLungSeg correction loop")
        self.parameterNode = self.module.NeonatalLungSegParameterNode(node)
        self.parameterNode.modelFolder = str(model)
        self.parameterNode.device = {"cpu": "CPU"}.get(device, "auto")
        self.parameterNode.reviewSliceCount = 0
        self.parameterNode.showProbabilities = False
        self.parameterNode.replacePrevious = True

    def export(self, case, folder: Path) -> dict[str, Any]:
        import SimpleITK as sitk

        from NeonatalLungSegSlicerLib import mrmlNodes, resources, segmentEditing

        volume = resources.loadVolumeFile(case.image, self.scene, "correction-loop case")
        nodes = [volume, volume.GetStorageNode()]
        try:
            self.parameterNode.inputVolume = volume
            self.parameterNode.splitLeftRight = case.label_scheme == "right_left"
            outputs = self.logic.segment(self.parameterNode)
            segmentation = outputs.segmentationNode
            nodes += [segmentation, outputs.tableNode, segmentation.GetNodeReference(mrmlNodes.AI_LABELS_ROLE)]
            reference = sitk.GetArrayFromImage(sitk.ReadImage(str(case.label)))
            if reference.shape != self.slicer.util.arrayFromVolume(volume).shape:
                raise ValueError(f"{case.label}: label grid differs from its image")
            names = mrmlNodes.EXPORT_ORDER[case.label_scheme]
            values = {name: value for value, name in enumerate(names, start=1)}
            if case.label_scheme == "lung":
                reference = (reference > 0).astype("uint8")
            segmentEditing.replaceSegmentsWithLabels(self.scene, segmentation, volume, reference, values)
            result = self.logic.exportForTraining(segmentation, volume, folder, REVIEWER)
            if (result.label != reference).any():
                raise RuntimeError(f"{result.label_path}: exported label differs from the reference")
            changes = result.sidecar.get("changes_from_ai") or {}
            return {"case_id": result.record.case_id, "subject": result.record.subject,
                    "ai_dice": changes.get("dice", {}).get("lungs"),
                    "model": result.sidecar.get("model", {}).get("version")}
        finally:
            self.parameterNode.inputVolume = None
            self.parameterNode.outputSegmentation = None
            self.parameterNode.volumeTable = None
            for node in nodes:
                if node is not None and self.scene.IsNodePresent(node):
                    self.scene.RemoveNode(node)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "correction-loop")
    parser.add_argument("--domains", nargs="+", choices=("ct", "t2_haste"), default=["ct", "t2_haste"])
    parser.add_argument("--sizes", type=_positive, nargs="+", default=[1, 2, 5, 10, 20],
                        help="numbers of corrected cases to fine-tune on")
    parser.add_argument("--strategies", nargs="+", choices=("uncertainty", "random"),
                        default=["uncertainty", "random"])
    parser.add_argument("--heldout", type=int, default=60, help="CT slices held out for evaluation")
    parser.add_argument("--ct-source", type=Path, default=None, help="x_train.npy / y_train.npy folder")
    parser.add_argument("--mri-pool", type=int, default=30, help="synthetic pool volumes")
    parser.add_argument("--mri-heldout", type=int, default=6, help="synthetic held-out volumes")
    parser.add_argument("--mri-shape", type=int, nargs=3, default=[48, 160, 160])
    parser.add_argument("--mri-spacing", type=float, nargs=3, default=[3.0, 0.88, 0.88])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps-per-epoch", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--freeze-encoder", action="store_true")
    parser.add_argument("--no-flip", action="store_true", help="rank without left-right flip agreement")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", type=Path, default=BUNDLED, help="the model to start from")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "correction-loop.md")
    parser.add_argument("--figure", type=Path, default=REPO / "docs" / "images" / "correction-loop.png")
    return parser.parse_args(argv)


def settings_of(args: argparse.Namespace):
    from neonatal_lung_training.loop.correction_loop import LoopSettings

    return LoopSettings(sizes=tuple(args.sizes), strategies=tuple(args.strategies), epochs=args.epochs,
                        steps_per_epoch=args.steps_per_epoch, batch_size=args.batch_size,
                        learning_rate=args.learning_rate, freeze_encoder=args.freeze_encoder,
                        flip=not args.no_flip, seed=args.seed)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from neonatal_lung_training.loop import correction_loop as loop

    args.work = args.work.resolve()  # the module's export wants a full path
    settings = settings_of(args)
    corrector = SlicerCorrector(args.model, settings.device)
    results = {"command": command_line(), "machine": machine(), "settings": vars(settings) | {
        "sizes": list(settings.sizes), "strategies": list(settings.strategies)}, "domains": []}
    started = time.perf_counter()
    for key in args.domains:
        work = args.work / key
        if key == "ct":
            domain = loop.prepare_ct_domain(work, args.heldout, args.seed, args.ct_source)
        else:
            domain = loop.prepare_synthetic_domain(work, key, args.mri_pool, args.mri_heldout, args.seed,
                                                   args.mri_shape, args.mri_spacing)
        results["domains"].append(loop.run_domain(domain, settings, corrector, work, args.model))
        results["minutes"] = round((time.perf_counter() - started) / 60, 1)
        write_outputs(results, args)  # after every domain, so a long run shows its first results early
    return results


def write_outputs(results: dict[str, Any], args: argparse.Namespace) -> None:
    from correction_loop_report import write_figure, write_markdown

    (args.work / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    write_figure(results, args.figure)
    write_markdown(results, args.out, args.figure)
    print(f"wrote {args.out} and {args.figure}", flush=True)


def command_line() -> str:
    script = Path(sys.argv[0])
    shown = script.relative_to(REPO) if script.is_absolute() and REPO in script.parents else script
    return "OMP_NUM_THREADS=1 .venv/bin/python " + " ".join(shlex.quote(a) for a in [str(shown), *sys.argv[1:]])


def machine() -> str:
    import torch

    from NeonatalLungSegLib.inference.acceleration import cpu_model

    return (f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"with {torch.get_num_threads()} thread(s), no GPU")


def main(argv: list[str] | None = None) -> int:
    from NeonatalLungSegLib.errors import exit_status

    args = parse_args(argv)
    return exit_status(lambda: run(args), also=(ValueError, FileExistsError),
                       interrupted="interrupted")


if __name__ == "__main__":
    sys.exit(main())
