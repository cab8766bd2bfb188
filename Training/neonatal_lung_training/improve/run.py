"""``improve``: a parent model fine-tuned on a training folder's reviewed cases, judged, written and registered.

One function serves the command line and the Slicer module (which runs ``neonatal-lung-seg improve`` in its
own process), so both make the same model from the same folder. The steps:

1. check everything first (the folder, its reviewed cases, the parent, the output): bad input is one line
   and nothing is written;
2. hold out part of the subjects (``HOLDOUT_FRACTION``, at least one when there are two or more): training
   never sees them, the before/after figures and the promotion rule use only them;
3. generate the rehearsal and anchor cases (``anchors.py``) and fine-tune from the parent for a time budget,
   a share of every batch rehearsing what the parent knew (``training/train.py``);
4. add the int8 network where the parent had one, score parent and child on the held-out cases and the anchor
   sets, give the child its domain gate (``gating.py``: the parent kept whole for scans unlike the corrected
   cases) and score it again as users get it, decide (``promotion.py``), and write the decision into the folder
   (``improvement.json``, the card);
5. remember the folder in the model registry, as the default when promoted.

The defaults are the ones measured on the real ventilation MRI experiment (docs/improve.md): the learning
rate, rehearsal share and time budget a clinician never has to set.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

from NeonatalLungSegLib.errors import InputError, ModelFolderError, OutputExistsError
from NeonatalLungSegLib.json_input import dump_json
from NeonatalLungSegLib.models.model_folder import read_config
from NeonatalLungSegLib.dataset.training_folder import read_training_folder

from ..training.config import TrainConfig
from ..training.dataset import select_cases
from ..training.model_card import write_model_card
from ..training.split import split_subjects
from .anchors import AnchorSet, anchor_sets, rehearsal_folders
from .gating import attach_gate, thin_references_note
from .promotion import Decision, Rule, decide
from .scoring import score_gated, score_pair

RECORD_NAME = "improvement.json"
RECORD_FORMAT = "neonatal-lung-seg-improvement"
HOLDOUT_FRACTION = 0.2


@dataclass(frozen=True)
class ImproveSettings:
    """Everything ``improve`` decides by default; the command line exposes only the budget and the device."""

    minutes: float = 5.0              # fine-tuning wall time on any device (docs/improve-experiment.md)
    # at most this many epochs of steps_per_epoch steps as well: a budget in steps gives the same fine-tune on a
    # busy machine as on an idle one (tests, reproducible runs); the default leaves the wall time in charge
    max_epochs: int = 100_000
    learning_rate: float = 3e-4       # below the recipe's 1e-3: the parent is already trained
    rehearsal_fraction: float = 0.75  # share of every batch drawn from the rehearsal cases
    rehearsal_targets: str = "parent"  # the parent's own probabilities on the rehearsal slices (distillation)
    # the corrected masks are drawn the expert's way: learned grown to the network's own convention, so the
    # parent's boundary convention (which the new model inherits) gives them back (docs/improve.md)
    label_boundary: str = "network"
    rehearsal_cases: int = 8          # per generator
    # full-size UTE cases whose slabs through dense (BPD-like) lung join the rehearsal (0 = none; anchors.py)
    rehearsal_dense: int = 0
    anchor_cases: int = 3             # per generator
    batch_size: int = 8
    steps_per_epoch: int = 10
    device: str = "auto"
    seed: int = 0
    int8: bool = True                 # add the int8 network where the parent has one
    freeze_encoder: bool = False      # train the decoder only (measured in docs/improve-experiment.md)
    freeze_batchnorm: bool = False    # keep the parent's batch-norm statistics (docs/improve-experiment.md)
    # pull towards the parent's weights, in learning rates per step (TrainConfig): chosen on N = 5, seed 0 of the
    # ventilation experiment among 10, 30, 100 (CT slices 0.907 -> 0.976, ventilation 0.953 -> 0.950; 100 cost
    # ventilation 0.011), confirmed on the other seeds and N (docs/improve-experiment.md)
    anchor_decay: float = 30.0
    weight_average: float = 0.0       # TrainConfig.weight_average (0 = the last trained weights)
    adam_eps: float = 1e-8            # TrainConfig.adam_eps
    warmup_steps: int = 0             # TrainConfig.warmup_steps
    batchnorm_momentum: float = 0.1   # TrainConfig.batchnorm_momentum
    # the domain gate (gating.py): scans unlike the corrected cases keep the parent's network
    gate: bool = True
    rule: Rule = field(default_factory=Rule)


def holdout_subjects(subjects: list[str], fraction: float = HOLDOUT_FRACTION, seed: int = 0) -> list[str]:
    """The held-out subjects: a seeded ``fraction`` (at least one) when there are two subjects or more."""
    if len(subjects) < 2:
        return []
    count = max(1, round(fraction * len(subjects)))
    split = split_subjects(sorted(subjects), (1 - count / len(subjects), 0.0, count / len(subjects)), seed)
    return split["test"] or sorted(subjects)[-1:]


def check_inputs(data: Path, output: Path, parent: Path) -> tuple[list, object]:
    """Everything ``improve`` needs, checked before anything is written: (reviewed cases, parent config)."""
    if output.exists():
        raise OutputExistsError(f"{output}: already exists; an improved model is a new folder")
    if not output.parent.is_dir():
        raise InputError(f"{output.parent}: no such folder to write the new model in")
    config = read_config(parent)
    if config.input.guidance or config.input.spatial_dims != 2:
        raise ModelFolderError(f"{parent}: only slice-wise segmentation models can be improved here")
    if not Path(data).is_dir():
        raise InputError(f"{data}: no such training folder")
    folder = read_training_folder(data)
    cases = select_cases(folder, reviewed_only=True, latest_only=False)
    if not cases:
        raise InputError(f"{data}: no reviewed cases (export corrected cases first; only reviewed or reference "
                         f"labels are used, {len(folder.cases)} other case(s) found)")
    return cases, config


def improve(data: Path | str, output: Path | str, parent: Path | str | None = None,
            settings: ImproveSettings = ImproveSettings(), echo: Callable[..., None] = print,
            register: bool = True, rehearsal: Sequence[Path] | None = None,
            anchors: Sequence[AnchorSet] | None = None) -> Decision:
    """Fine-tune ``parent`` (default: the current default model) on ``data``'s reviewed cases into ``output``.

    ``rehearsal`` and ``anchors`` replace the generated synthetic folders (tests with a tiny parent that never
    saw the generators' cases, experiments that rehearse other data)."""
    from NeonatalLungSegLib.models import registry

    from ..training.train import train

    data, output = Path(data), Path(output)
    parent = Path(parent) if parent else registry.default_model_folder()
    cases, parent_config = check_inputs(data, output, parent)
    subjects = sorted({c.subject for c in cases})
    heldout = holdout_subjects(subjects, seed=settings.seed)
    work = output.with_name(output.name + ".run")
    work.mkdir(parents=True, exist_ok=True)
    echo(f"improve {parent_config.name} {parent_config.version} on {len(cases)} reviewed case(s) of "
         f"{len(subjects)} subject(s); held out: {len(heldout)} subject(s)", flush=True)
    if rehearsal is None or anchors is None:
        echo("making the rehearsal and anchor cases (synthetic, from fixed seeds)...", flush=True)
    rehearsal = list(rehearsal) if rehearsal is not None else rehearsal_folders(work, settings.rehearsal_cases,
                                                                                       settings.rehearsal_dense)
    anchors = list(anchors) if anchors is not None else anchor_sets(work, settings.anchor_cases)
    split_file = work / "split.json"
    split_file.write_text(json.dumps({"train": [s for s in subjects if s not in heldout], "val": [],
                                      "test": heldout}, indent=1) + "\n", encoding="utf-8")
    config = TrainConfig(
        data=str(data), output=str(output), run_dir=str(work / "train"), split_file=str(split_file),
        test_description=f"{len(heldout)} held-out subject(s) of the corrected cases", reviewed_only=True,
        latest_only=False, init_model=str(parent), seed=settings.seed, epochs=settings.max_epochs,
        patience=100_000, steps_per_epoch=settings.steps_per_epoch, batch_size=settings.batch_size,
        max_minutes=settings.minutes,
        learning_rate=settings.learning_rate, device=settings.device, weights_dtype="float16",
        freeze_encoder=settings.freeze_encoder, freeze_batchnorm=settings.freeze_batchnorm,
        anchor_decay=settings.anchor_decay, weight_average=settings.weight_average, adam_eps=settings.adam_eps,
        warmup_steps=settings.warmup_steps, batchnorm_momentum=settings.batchnorm_momentum,
        rehearsal_data=tuple(str(f) for f in rehearsal),
        rehearsal_fraction=settings.rehearsal_fraction if rehearsal else 0.0,
        rehearsal_targets=settings.rehearsal_targets, label_boundary=settings.label_boundary,
        description=f"{parent_config.description} Improved from {parent_config.name} {parent_config.version} "
                    f"on the reviewed cases of {data.name}.".strip())
    train(config)
    # the int8 network first: quantize compares it with the fine-tuned network alone, before any gate routes
    int8_note = _add_int8(parent, output, data, settings) if settings.int8 else "not asked for"
    echo("scoring the parent and the new model...", flush=True)
    held, anchor_scores = score_pair(parent, output, data, cases, heldout, anchors, settings.device, echo)
    alone, gated_anchors, gate_note = held, [], "not asked for"
    if settings.gate:
        gate_note = attach_gate(output, parent, data, [c for c in cases if c.subject not in set(heldout)],
                                rehearsal, echo)
        if read_config(output).gate:
            held, gated_anchors = score_gated(output, data, cases, heldout, held, anchors, anchor_scores,
                                              settings.device, echo)
    decision = decide(held, anchor_scores, settings.rule, gated_anchors)
    gate = read_config(output).gate if settings.gate else {}
    thin = thin_references_note(gate["adapted_cases"]) if gate else None
    if thin:
        decision = replace(decision, reasons=[*decision.reasons, thin])
    record = {"format": RECORD_FORMAT, "parent": {"folder": str(parent.resolve()), "name": parent_config.name,
                                                  "version": parent_config.version},
              "training_folder": str(data.resolve()), "settings": {**asdict(settings), "rule": asdict(settings.rule)},
              "decision": decision.to_dict(), "int8": int8_note, "gate": gate_note,
              "heldout_fine_tuned_alone": None if alone is None else
              {"parent": round(alone.parent, 4), "child": round(alone.child, 4)}}
    (output / RECORD_NAME).write_text(dump_json(record, indent=1) + "\n", encoding="utf-8")
    write_model_card(output)
    if register:
        registry.remember(output)
        if decision.promoted:
            registry.set_default(output)
    _tidy(work)
    echo(decision.summary(), flush=True)
    return decision


def _add_int8(parent: Path, output: Path, data: Path, settings: ImproveSettings) -> str:
    """The int8 network where the parent had one; why not otherwise (never fatal: the torch path works)."""
    from NeonatalLungSegLib.models.int8_network import INT8_NAME

    if not (parent / INT8_NAME).is_file():
        return "the parent has no int8 network"
    try:
        from ..release import quantize
    except ImportError as exc:
        return f"not made: {exc} (pip install onnx onnxruntime)"
    try:
        status = quantize.main(["--model", str(output), "--calibration", str(data), "--seed", str(settings.seed)])
    except ImportError as exc:
        return f"not made: {exc} (pip install onnx onnxruntime)"
    return "made (network-int8.onnx)" if status == 0 else f"not made: quantize exited with status {status}"


def _tidy(work: Path) -> None:
    """Drop what a finished run no longer needs (checkpoints, generated cases): keep the log and split."""
    for name in ("rehearsal-neonatal", "rehearsal-randomised", "rehearsal-slices", "rehearsal-dense-source",
                 "rehearsal-dense", "anchor-neonatal",
                 "anchor-randomised", "anchor-slices", "anchor-dense-source", "anchor-dense"):
        shutil.rmtree(work / name, ignore_errors=True)
    for checkpoint in (work / "train").glob("*.pt"):
        checkpoint.unlink()
