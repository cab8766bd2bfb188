"""Whether an improved model replaces its parent as the default: one rule, in words a clinician can read.

The child is offered as the default only when

1. it is better than the parent on the held-out corrected cases (cases of the clinic's own folder that
   training never saw) by at least ``min_gain`` mean Dice,
2. it agrees with those held-out corrections at ``min_agreement`` mean Dice or more: a model that learned
   consistent corrections reproduces unseen ones closely (0.95-0.97 on real ventilation MRI), while labels
   that do not fit their images (shuffled between cases, say) teach only an average shape (0.64 on toy
   chests), which can still beat a parent that failed on the domain, and
3. on every anchor set (what the parent knew: ``anchors.py``) it loses at most ``anchor_margin`` mean Dice.

A gated child (``gating.py``) is judged as users get it on 1 and 2 (its gate chooses the network for each
held-out case), and on 3 twice: gated, and its fine-tuned network alone, since any scan the gate sends there
gets that network; so a fine-tune that forgets is refused whatever its gate would have protected.

Otherwise it is kept as a candidate, with every reason written down; a user can still choose it by hand.
Without held-out cases (a folder of one subject) nothing can show the child is better, so it stays a
candidate. The margins are part of every decision record, so a decision can be re-read later.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

MIN_GAIN = 0.01        # mean Dice on held-out corrected cases: more than the noise of a few cases
ANCHOR_MARGIN = 0.01   # mean Dice any anchor set may lose (the "loses at most 0.01")
MIN_AGREEMENT = 0.85   # mean Dice with the held-out corrections below which they are not learned consistently


@dataclass(frozen=True)
class Rule:
    min_gain: float = MIN_GAIN
    anchor_margin: float = ANCHOR_MARGIN
    min_agreement: float = MIN_AGREEMENT

    def __post_init__(self) -> None:
        if not all(0 <= v < 1 for v in (self.min_gain, self.anchor_margin, self.min_agreement)):
            raise ValueError(f"margins must lie in [0, 1), got {self.min_gain}, {self.anchor_margin} and "
                             f"{self.min_agreement}")

    def text(self) -> str:
        return (f"the new model becomes the default only if it beats the parent by at least {self.min_gain:.3f} "
                f"mean Dice on the held-out corrected cases, reaches at least {self.min_agreement:.2f} there, and "
                f"loses at most {self.anchor_margin:.3f} on each anchor set")


@dataclass(frozen=True)
class Score:
    """Parent and child mean Dice on one set of cases."""

    key: str
    title: str
    cases: int
    parent: float
    child: float
    routed: float | None = None  # a gated child: share of the cases it sent to its fine-tuned network

    @property
    def change(self) -> float:
        return self.child - self.parent


@dataclass(frozen=True)
class Decision:
    promoted: bool
    reasons: list[str]
    rule: Rule
    heldout: Score | None
    anchors: list[Score] = field(default_factory=list)
    gated_anchors: list[Score] = field(default_factory=list)  # the gated child on the same anchor sets

    @property
    def status(self) -> str:
        return "default" if self.promoted else "candidate"

    def summary(self) -> str:
        head = ("Promoted: the new model is now the default." if self.promoted
                else "Kept as a candidate: the parent stays the default.")
        return " ".join([head, *self.reasons])

    def to_dict(self) -> dict[str, Any]:
        def score(s: Score) -> dict[str, Any]:
            return {**asdict(s), "parent": round(s.parent, 4), "child": round(s.child, 4),
                    "change": round(s.change, 4)}

        return {"status": self.status, "promoted": self.promoted, "reasons": self.reasons,
                "rule": {**asdict(self.rule), "text": self.rule.text()},
                "heldout": score(self.heldout) if self.heldout else None,
                "anchors": [score(a) for a in self.anchors],
                "gated_anchors": [score(a) for a in self.gated_anchors]}


def decide(heldout: Score | None, anchors: list[Score], rule: Rule = Rule(),
           gated_anchors: list[Score] | None = None) -> Decision:
    """Apply ``rule``; every reason for or against is kept, in the order the rule states them. ``anchors``:
    the fine-tuned network alone; ``gated_anchors``: a gated child as users get it."""
    reasons: list[str] = []
    ok = True
    if heldout is None or heldout.cases == 0:
        ok = False
        reasons.append("No held-out corrected case: with one subject nothing can show the new model is better "
                       "(export more cases, then improve again).")
    elif heldout.change >= rule.min_gain:
        reasons.append(f"Held-out corrected cases ({heldout.cases}): Dice {heldout.parent:.3f} -> "
                       f"{heldout.child:.3f} ({heldout.change:+.3f}, at least {rule.min_gain:+.3f} needed).")
    else:
        ok = False
        reasons.append(f"Not better on the held-out corrected cases ({heldout.cases}): Dice {heldout.parent:.3f} "
                       f"-> {heldout.child:.3f} ({heldout.change:+.3f}; at least {rule.min_gain:+.3f} needed).")
    if heldout is not None and heldout.cases and heldout.child < rule.min_agreement:
        ok = False
        reasons.append(f"Agrees with the held-out corrections only at Dice {heldout.child:.3f} (at least "
                       f"{rule.min_agreement:.2f} needed): the corrections may not fit their images (labels of "
                       "other cases?) or be too few to learn from.")
    if heldout is not None and heldout.routed is not None:
        reasons.append(f"The domain gate sent {heldout.routed:.0%} of the held-out corrected cases to the "
                       "fine-tuned network (the rest to the parent).")
    gated = list(gated_anchors or [])
    for label, scores in (("", anchors), ("With the domain gate: ", gated)):
        for anchor in scores:
            routed = "" if anchor.routed is None else f"; {anchor.routed:.0%} of them to the fine-tuned network"
            if anchor.change >= -rule.anchor_margin:
                reasons.append(f"{label}Kept what it knew on {anchor.title} ({anchor.cases} cases{routed}): Dice "
                               f"{anchor.parent:.3f} -> {anchor.child:.3f}.")
            else:
                ok = False
                reasons.append(f"{label}Forgot part of {anchor.title} ({anchor.cases} cases{routed}): Dice "
                               f"{anchor.parent:.3f} -> {anchor.child:.3f} ({anchor.change:+.3f}; at most "
                               f"{-rule.anchor_margin:+.3f} allowed).")
    return Decision(ok, reasons, rule, heldout, list(anchors), gated)
