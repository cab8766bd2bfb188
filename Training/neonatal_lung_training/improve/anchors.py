"""What the parent knew, made on demand: rehearsal cases for training and anchor sets for the check.

A clinic's folder holds only its own cases, and fine-tuning on them alone makes a model forget the rest:
the bundled model fine-tuned on 20 real ventilation slices fell from Dice 0.92 to 0.10 on real proton MRI.
The bundled model learned from the two synthetic generators, so both are rehearsed: their cases are
generated here (no data has to be shipped or downloaded) from fixed seeds that no bundled training run
used, into the improvement's work folder, and reused when the run is repeated.

- rehearsal: training-family cases of the neonatal generator (70 % randomised contrast, as in the parent's
  mix) and of the domain-randomised generator, drawn into every batch (``TrainConfig.rehearsal_fraction``);
- anchors: held-out-family cases of each generator (shapes outside the training ranges), scored with parent
  and child: a child that loses more than the promotion margin on one of them has forgotten something.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from NeonatalLungSegLib.dataset.training_folder import read_training_folder

from ..synthesis.neonatal.folder import SyntheticMix, write_synthetic_folder
from ..synthesis.randomised.folder import write_domain_random_folder

REHEARSAL_SEED = 700_000  # beyond every seed range of the bundled models' recipes (Training/configs)
ANCHOR_SEED = 800_000


@dataclass(frozen=True)
class AnchorSet:
    key: str          # "synthetic-neonatal", "synthetic-randomised"
    title: str
    folder: Path


def _quiet(*_args, **_kwargs) -> None:
    pass


# Anchors are scored by two models on every improve: grids of at most about 128 x 128 x 50 keep that to a
# minute or two on a 2-core CPU (full-size cases took over five); rehearsal keeps the generators' full range.
SMALL_NEONATAL = SyntheticMix(randomized_contrast_fraction=0.7, matrices=(96, 112, 128), thickness_mm=(3.0, 4.0))
SMALL_RANDOMISED = {"in_plane_matrix": (48, 128), "max_slices": 48, "max_voxels": 800_000}


def _neonatal(folder: Path, seeds: range, family: str, small: bool = False) -> None:
    if not folder.exists():
        mix = SMALL_NEONATAL if small else SyntheticMix(randomized_contrast_fraction=0.7)
        write_synthetic_folder(folder, seeds, mix, variant_family=family, echo=_quiet)


def _randomised(folder: Path, seeds: range, family: str, small: bool = False) -> None:
    if not folder.exists():
        write_domain_random_folder(folder, seeds, family=family, echo=_quiet,
                                   overrides=SMALL_RANDOMISED if small else None)


def rehearsal_folders(work: Path, cases: int) -> list[Path]:
    """``cases`` training-family cases of each generator, in two training folders under ``work``."""
    neonatal, randomised = work / "rehearsal-neonatal", work / "rehearsal-randomised"
    _neonatal(neonatal, range(REHEARSAL_SEED, REHEARSAL_SEED + cases), "train")
    _randomised(randomised, range(REHEARSAL_SEED, REHEARSAL_SEED + cases), "train")
    return [neonatal, randomised]


def anchor_sets(work: Path, cases: int) -> list[AnchorSet]:
    """``cases`` held-out-family cases of each generator, for the parent-against-child check."""
    neonatal, randomised = work / "anchor-neonatal", work / "anchor-randomised"
    _neonatal(neonatal, range(ANCHOR_SEED, ANCHOR_SEED + cases), "heldout", small=True)
    _randomised(randomised, range(ANCHOR_SEED, ANCHOR_SEED + cases), "heldout", small=True)
    return [AnchorSet("synthetic-neonatal", "synthetic neonatal MRI, held-out anatomy family", neonatal),
            AnchorSet("synthetic-randomised", "domain-randomised chest MRI, held-out shape family", randomised)]


def case_count(folder: Path) -> int:
    return len(read_training_folder(folder).cases)
