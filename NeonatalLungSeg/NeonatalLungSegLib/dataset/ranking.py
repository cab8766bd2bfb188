"""Rank unlabelled cases by the expected benefit of correcting them: the least confident first.

A reviewer's time is the scarce resource of the correction loop. Each case is segmented once (and, with
``flip``, once more mirrored) and scored by ``confidence.py``; the ranking key is the expected share of the
mask a correction would change, ``1 - estimated Dice``. ``neonatal-lung-seg rank`` writes the ranking as
CSV; ``Training/scripts/correction_loop.py`` measures whether correcting the top of it improves a model
faster than correcting random cases.
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import SimpleITK as sitk

from ..inference.confidence import segment_with_confidence
from ..geometry import image_to_array
from .training_folder import MANIFEST_NAME, read_training_folder
from ..volumes.volume_io import VOLUME_SUFFIXES, case_name, read_volume

CSV_COLUMNS = ("rank", "case", "benefit", "confidence", "mean_entropy_bits", "uncertain_fraction", "flip_dice",
               "lung_ml", "slices_to_check", "seconds", "source")


@dataclass(frozen=True)
class RankedCase:
    rank: int
    case: str
    benefit: float              # 1 - confidence: expected share of the mask a correction would change
    confidence: float           # estimated Dice
    mean_entropy_bits: float
    uncertain_fraction: float
    flip_dice: float | None
    lung_ml: float
    slices_to_check: str        # axial slice indices, least confident first, ';'-separated
    seconds: float
    source: str


def is_training_folder(path: Path) -> bool:
    path = Path(path)
    return path.is_dir() and ((path / MANIFEST_NAME).is_file() or (path / "images").is_dir())


def read_folder_image(path: Path) -> sitk.Image:
    """A training-folder image as Training reads it: any 3D scalar volume, single slices included, read by the
    checked reader (a NIfTI in one pass that checks and decodes the same bytes) as ``read_case`` reads it.

    Its values are not scanned here (a NIfTI's NaN aside): the engine checks them when the image is segmented."""
    return read_volume(path, check=False, single_slices=True)


def read_chest_volume(path: Path) -> sitk.Image:
    """A chest volume as ``segment`` reads it; the value check is left to the engine (one scan, not two)."""
    return read_volume(path, check=False)


def training_folder_images(root: Path) -> list[tuple[str, Path]]:
    """(name, image path) of a training folder's cases: the newest version of each subject, or, in a plain
    folder, every volume under images/ (labels are not needed: the cases are unlabelled)."""
    root = Path(root)
    if (root / MANIFEST_NAME).is_file():
        folder = read_training_folder(root)
        return [(c.case_id, root / c.image) for c in folder.latest_versions()]
    files = sorted(p for p in (root / "images").iterdir()
                   if p.is_file() and any(p.name.lower().endswith(s) for s in VOLUME_SUFFIXES))
    return [(case_name(p), p) for p in files]


def rank_cases(segmenter: Any, cases: Sequence[tuple[str, Path]], flip: bool = False, check_count: int = 3,
               echo: Callable[[str], None] | None = print,
               read: Callable[[Path], sitk.Image] = read_chest_volume) -> list[RankedCase]:
    """Segment and score every case; the list is ordered by benefit, highest first (ties: name).

    ``read`` turns a path into an image: ``read_chest_volume`` (a chest volume, as ``segment`` reads it) or
    ``read_folder_image`` (training-folder images, single slices included). Bad values are reported by path.
    """
    rows = []
    for number, (name, path) in enumerate(cases, 1):
        started = time.perf_counter()
        array, geometry = image_to_array(read(Path(path)))
        result, confidence = segment_with_confidence(segmenter, array.astype(np.float32, copy=False), geometry,
                                                     flip=flip, source=str(path))
        check = ";".join(str(s.index) for s in confidence.slices_to_check(check_count))
        rows.append(dict(case=name, benefit=round(confidence.benefit, 6),
                         confidence=round(confidence.confidence, 6),
                         mean_entropy_bits=round(confidence.mean_entropy, 6),
                         uncertain_fraction=round(confidence.uncertain_fraction, 6),
                         flip_dice=None if confidence.flip_dice is None else round(confidence.flip_dice, 6),
                         lung_ml=round(float(result.volumes["total"]["volume_ml"]), 3), slices_to_check=check,
                         seconds=round(time.perf_counter() - started, 3), source=str(path)))
        if echo is not None:
            echo(f"[{number}/{len(cases)}] {name}: confidence {confidence.confidence:.4f}"
                 + ("" if confidence.flip_dice is None else f", flip agreement {confidence.flip_dice:.4f}"))
    rows.sort(key=lambda r: (-r["benefit"], r["case"]))
    return [RankedCase(rank=i, **row) for i, row in enumerate(rows, 1)]


def ranking_csv(ranked: Sequence[RankedCase]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in ranked:
        writer.writerow({k: ("" if v is None else v) for k, v in asdict(row).items()})
    return buffer.getvalue()


def read_ranking_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))
