"""Parent and child scored on the same cases with the same inference path, for the promotion rule.

Whole-lung Dice (right and left together) of the engine's final labels, so folders with a single "lung"
label and folders with right and left are judged alike. Both models run at the child's precision: the
parent's int8 network against the child's bf16 network would compare two inference paths, not two models.
"""

from __future__ import annotations

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
    scores = [evaluate_case(segmenter, *folder.read_case(record), references=references)["dice_lungs"]
              for record in cases]
    return float(np.mean(scores)) if scores else float("nan")


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
