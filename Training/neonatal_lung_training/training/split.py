"""Subject-level train / validation / test split.

Slices of one subject are near-copies of each other; a split by slice would let the model be tested on the
neighbours of its training slices and report a Dice it will never reach on a new baby. So the unit is the
subject, the split is seeded, and it is saved in the run folder so a resumed or repeated run uses the same one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

SPLIT_NAMES = ("train", "val", "test")


def split_subjects(subjects: Sequence[str], fractions: Sequence[float], seed: int) -> dict[str, list[str]]:
    """Shuffle subjects with ``seed`` and cut them by ``fractions`` (largest-remainder rounding).

    Validation and test get at least one subject each whenever their fraction is positive and there are
    enough subjects, because early stopping without validation data is not early stopping. A single
    subject (one corrected case) goes to training alone.
    """
    unique = sorted(set(subjects))
    if len(unique) != len(subjects):
        raise ValueError("subjects must be unique")
    if len(fractions) != 3 or abs(sum(fractions) - 1) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {list(fractions)}")
    n = len(unique)
    exact = np.array(fractions, dtype=float) * n
    counts = np.floor(exact).astype(int)
    for index in np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]:
        counts[index] += 1
    for index in (1, 2):
        if fractions[index] > 0 and counts[index] == 0 and counts[0] > 1:
            counts[index], counts[0] = 1, counts[0] - 1
    order = np.random.default_rng(seed).permutation(n)
    shuffled = [unique[i] for i in order]
    cut1, cut2 = counts[0], counts[0] + counts[1]
    return {"train": sorted(shuffled[:cut1]), "val": sorted(shuffled[cut1:cut2]),
            "test": sorted(shuffled[cut2:])}


def read_split(path: Path, known_subjects: Sequence[str]) -> dict[str, list[str]]:
    """An explicit split file; every subject it names must exist, and no subject may sit in two sets."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not set(data) >= {"train", "val"}:
        raise ValueError(f"{path}: a split file maps 'train', 'val' (and optionally 'test') to subject lists")
    split = {name: sorted(str(s) for s in data.get(name, [])) for name in SPLIT_NAMES}
    check_split(split, known_subjects, str(path))
    return split


def check_split(split: dict[str, list[str]], known_subjects: Sequence[str], where: str) -> None:
    known = set(known_subjects)
    seen: dict[str, str] = {}
    for name in SPLIT_NAMES:
        for subject in split.get(name, []):
            if subject not in known:
                raise ValueError(f"{where}: subject {subject!r} is not in the training folder")
            if subject in seen:
                raise ValueError(f"{where}: subject {subject!r} is in both {seen[subject]} and {name}")
            seen[subject] = name
    if not split.get("train"):
        raise ValueError(f"{where}: the split needs at least one training subject")


def write_split(path: Path, split: dict[str, list[str]]) -> None:
    Path(path).write_text(json.dumps(split, indent=2) + "\n", encoding="utf-8")
