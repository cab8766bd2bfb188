"""Combine training folders into one, with an explicit split: synthetic volumes beside real CT slices.

Why: training reads exactly one training folder, but the bundled model learns from two sources of very
different size (thousands of synthetic slices, 213 real CT slices). Combining keeps each source's label
scheme (a CT mask is "lung", not right/left) and lets a small real source be repeated, as further versions
of the same subject, so it is not drowned (validation subjects are copied once); repeats stay with their
subject, so the subject-level split never puts a copy of a validation or test case into training. Subjects
that a source's own split holds out for testing are left out of the combined folder entirely, so they stay
unseen.

    python -m neonatal_lung_training.datasets.combine -o runs/mix --source runs/syn --source runs/ct:3:SPLIT.json \
        --val-fraction 0.1

writes ``runs/mix`` (a training folder) and ``runs/mix.split.json`` (train / val / test subjects; test is
empty: each source's test cases are evaluated on their own folder).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from NeonatalLungSegLib.errors import InputError, exit_status
from NeonatalLungSegLib.dataset.training_folder import add_case, new_training_folder, read_training_folder

from ..training.split import write_split


@dataclass(frozen=True)
class Source:
    """One folder to take cases from, how often to repeat each case, and its own split (optional)."""

    folder: Path
    repeat: int = 1
    split: Path | None = None

    @staticmethod
    def parse(text: str) -> Source:
        """``FOLDER[:REPEAT[:SPLIT_JSON]]``."""
        parts = text.split(":")
        if not 1 <= len(parts) <= 3 or not parts[0]:
            raise InputError(f"--source {text!r}: expected FOLDER[:REPEAT[:SPLIT_JSON]]")
        try:
            repeat = int(parts[1]) if len(parts) > 1 and parts[1] else 1
        except ValueError:
            raise InputError(f"--source {text!r}: REPEAT must be a whole number") from None
        if repeat < 1:
            raise InputError(f"--source {text!r}: REPEAT must be >= 1")
        return Source(Path(parts[0]), repeat, Path(parts[2]) if len(parts) > 2 and parts[2] else None)


def _source_split(source: Source) -> dict[str, list[str]] | None:
    if source.split is None:
        return None
    try:
        data = json.loads(source.split.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InputError(f"{source.split}: cannot read the split ({error})") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k, []), list) for k in ("train", "val", "test")):
        raise InputError(f"{source.split}: a split is {{'train': [...], 'val': [...], 'test': [...]}}")
    return data


def combine(sources: Sequence[Source], output: Path, val_fraction: float = 0.1, seed: int = 0,
            echo=print) -> dict[str, list[str]]:
    """Write the combined folder and ``<output>.split.json``; returns the split."""
    if not 0 <= val_fraction < 1:
        raise InputError(f"val_fraction must lie in [0, 1), got {val_fraction}")
    split_path = output.with_name(output.name + ".split.json")
    if split_path.exists():
        raise InputError(f"{split_path}: already exists; choose a new output folder")
    split: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    with new_training_folder(output) as staging:
        for number, source in enumerate(sources):
            folder = read_training_folder(source.folder)
            own = _source_split(source)
            prefix = f"s{number}-"
            subjects = folder.subjects()
            if own is not None:
                held_out, own_val = set(own.get("test", [])), set(own.get("val", []))
                val = [s for s in subjects if s in own_val]
                train = [s for s in subjects if s not in held_out and s not in own_val]
            else:
                shuffled = sorted(subjects)
                random.Random(seed + number).shuffle(shuffled)
                cut = int(round(val_fraction * len(shuffled)))
                val, train = sorted(shuffled[:cut]), sorted(shuffled[cut:])
            training_subjects = set(train)
            keep = training_subjects | set(val)
            copied = 0
            for record in folder.cases:
                if record.subject not in keep:
                    continue
                image, label = folder.read_case(record)
                # Repeats weight training; a validation subject counts once, as it would alone.
                for _ in range(source.repeat if record.subject in training_subjects else 1):
                    # the origin is the subject (prefix + source subject): case ids may be seeds or other digit
                    # runs, which free text may not hold (de-identification)
                    add_case(staging, image, label, prefix + record.subject, review_status=record.review_status,
                             label_scheme=record.label_scheme, source=f"combined from {source.folder.name}",
                             description="combined: " + ", ".join(str(s.folder) for s in sources))
                    copied += 1
            split["train"] += [prefix + s for s in train]
            split["val"] += [prefix + s for s in val]
            echo(f"{source.folder}: {len(train)} train + {len(val)} val subjects, {copied} cases "
                 f"(x{source.repeat}); {len(subjects) - len(keep)} held-out subjects left out")
    write_split(split_path, split)
    return split


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m neonatal_lung_training.datasets.combine",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("-o", "--output", type=Path, required=True, help="new combined training folder")
    parser.add_argument("--source", action="append", required=True, metavar="FOLDER[:REPEAT[:SPLIT_JSON]]",
                        help="a training folder; REPEAT copies of each case; its own split (test subjects "
                             "are left out, val subjects stay val)")
    parser.add_argument("--val-fraction", type=float, default=0.1,
                        help="share of subjects held for validation in sources without a split (default 0.1)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    return exit_status(lambda: combine([Source.parse(s) for s in args.source], args.output, args.val_fraction,
                                       args.seed))


if __name__ == "__main__":
    sys.exit(main())
