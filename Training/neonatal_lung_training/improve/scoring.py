"""Parent and child scored on the same cases with the same inference path, for the promotion rule.

Whole-lung Dice (right and left together) of the engine's final labels, so folders with a single "lung"
label and folders with right and left are judged alike. Both models run at the child's precision: the
parent's int8 network against the child's bf16 network would compare two inference paths, not two models.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from NeonatalLungSegLib.dataset.training_folder import CaseRecord, read_training_folder
from NeonatalLungSegLib.inference.engine import Segmenter

from ..evaluation.evaluate import evaluate_case
from .anchors import AnchorSet
from .promotion import Score


def mean_dice(segmenter: Segmenter, folder, cases: Sequence[CaseRecord], references: str = "expert") -> float:
    """``references``: "physical" for generated labels (the anchors), "expert" for drawn ones (evaluate.py)."""
    return dice_and_route(segmenter, folder, cases, references)[0]


def dice_and_route(segmenter: Segmenter, folder, cases: Sequence[CaseRecord], references: str = "expert"
                   ) -> tuple[float, float | None]:
    """Mean whole-lung Dice, and the share of cases a gated model sent to its fine-tuned network (None: no
    gate)."""
    rows = [evaluate_case(segmenter, *folder.read_case(record), references=references) for record in cases]
    if not rows:
        return float("nan"), None
    routed = [r["gate_fine_tuned"] for r in rows if "gate_fine_tuned" in r]
    return float(np.mean([r["dice_lungs"] for r in rows])), (float(np.mean(routed)) if routed else None)


def score_pair(parent: Path, child: Path, data: Path, cases: Sequence[CaseRecord], heldout: Sequence[str],
               anchors: Sequence[AnchorSet], device: str, echo: Callable[..., None] = print
               ) -> tuple[Score | None, list[Score]]:
    """(held-out corrected cases, one score per anchor set); held-out is None without held-out subjects."""
    new = Segmenter.load(child, device=device)
    old = Segmenter.load(parent, device=device, precision=new.precision)
    held = None
    wanted = set(heldout)
    held_cases = [c for c in cases if c.subject in wanted]
    if held_cases:
        folder = read_training_folder(data)
        held = Score("heldout", "the held-out corrected cases", len(held_cases), mean_dice(old, folder, held_cases),
                     mean_dice(new, folder, held_cases))
        echo(f"held-out corrected cases: Dice {held.parent:.4f} -> {held.child:.4f}", flush=True)
    scores = []
    for anchor in anchors:
        folder = read_training_folder(anchor.folder)
        anchor_cases = list(folder.cases)
        score = Score(anchor.key, anchor.title, len(anchor_cases), mean_dice(old, folder, anchor_cases, "physical"),
                      mean_dice(new, folder, anchor_cases, "physical"))
        echo(f"{anchor.title}: Dice {score.parent:.4f} -> {score.child:.4f}", flush=True)
        scores.append(score)
    return held, scores


def score_gated(child: Path, data: Path, cases: Sequence[CaseRecord], heldout: Sequence[str], held: Score | None,
                anchors: Sequence[AnchorSet], anchor_scores: Sequence[Score], device: str,
                echo: Callable[..., None] = print) -> tuple[Score | None, list[Score]]:
    """The gated ``child`` on the sets ``score_pair`` scored (the parent's figures reused), with the share of
    each set's cases the gate sent to the fine-tuned network."""
    gated = Segmenter.load(child, device=device)
    new_held = None
    if held is not None:
        wanted = set(heldout)
        held_cases = [c for c in cases if c.subject in wanted]
        dice, routed = dice_and_route(gated, read_training_folder(data), held_cases)
        new_held = replace(held, child=dice, routed=routed)
        echo(f"with the domain gate, held-out corrected cases: Dice {held.parent:.4f} -> {dice:.4f} "
             f"({_share(routed)} to the fine-tuned network)", flush=True)
    scores = []
    for anchor, before in zip(anchors, anchor_scores):
        folder = read_training_folder(anchor.folder)
        dice, routed = dice_and_route(gated, folder, list(folder.cases), "physical")
        scores.append(replace(before, child=dice, routed=routed))
        echo(f"with the domain gate, {anchor.title}: Dice {before.parent:.4f} -> {dice:.4f} "
             f"({_share(routed)} to the fine-tuned network)", flush=True)
    return new_held, scores


def _share(routed: float | None) -> str:
    return "none" if routed is None else f"{routed:.0%}"
