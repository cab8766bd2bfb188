"""From a training folder and a subject split to in-memory slice sets for each part of the split.

Slices are prepared once with the engine's own preprocessing (``slices.volume_slices``) and kept as one
tensor per split part, because on a 2-core CPU decoding NIfTI files every epoch would cost more than the
network. Each slice remembers its case, so subject separation can be checked on the tensors themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import SimpleITK as sitk
import torch

from NeonatalLungSegLib.models.model_folder import InputConfig
from NeonatalLungSegLib.dataset.training_folder import CaseRecord, TrainingFolder

from .slices import SliceSet, volume_slices


@dataclass
class SplitData:
    train: SliceSet
    val: SliceSet
    test_cases: list[CaseRecord]
    train_cases: list[CaseRecord]
    val_cases: list[CaseRecord]


def select_cases(folder: TrainingFolder, reviewed_only: bool, latest_only: bool) -> list[CaseRecord]:
    """The cases a run may use: optionally reviewed or reference only, optionally newest version only."""
    cases = folder.latest_versions() if latest_only else list(folder.cases)
    if reviewed_only:
        cases = [c for c in cases if c.review_status in ("reviewed", "reference")]
    return cases


def cases_of(cases: list[CaseRecord], subjects: list[str]) -> list[CaseRecord]:
    wanted = set(subjects)
    return [c for c in cases if c.subject in wanted]


def load_slices(folder: TrainingFolder, cases: list[CaseRecord], config: InputConfig,
                keep_empty_fraction: float, seed: int, storage: torch.dtype = torch.float32,
                label_transform: Callable[[sitk.Image], sitk.Image] | None = None) -> SliceSet:
    """Every lung slice of the cases and a seeded share of the lung-free ones; case index = position
    (``storage``: see ``volume_slices``; ``label_transform``: applied to each label first, on its own grid)."""
    if not cases:
        raise ValueError("no cases to load")
    parts = []
    for index, record in enumerate(cases):
        image, label = folder.read_case(record)
        if label_transform is not None:
            label = label_transform(label)
        rng = np.random.default_rng([seed, index])
        parts.append(volume_slices(image, label, config, case_id=index,
                                   keep_empty_fraction=keep_empty_fraction, rng=rng, storage=storage))
    return SliceSet.concat(parts)
