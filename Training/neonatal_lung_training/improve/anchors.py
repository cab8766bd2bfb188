"""What the parent knew, made on demand: rehearsal cases for training and anchor sets for the check.

A clinic's folder holds only its own cases, and fine-tuning on them alone makes a model forget the rest:
the bundled model fine-tuned on 20 real ventilation slices fell from Dice 0.92 to 0.10 on real proton MRI.
The bundled model learned from the two synthetic generators, so both are rehearsed: their cases are
generated here (no data has to be shipped or downloaded) from fixed seeds that no bundled training run
used, into the improvement's work folder, and reused when the run is repeated.

- rehearsal: training-family cases of the neonatal generator (30 % randomised contrast, the rest UTE: the
  bundled model's neonatal cases were about 27 % randomised, its 160 UTE volumes seen twice beside 200 of
  the earlier 70 %-randomised mix) and of the domain-randomised generator, drawn into every batch
  (``TrainConfig.rehearsal_fraction``). Rehearsing the 70 % mix alone left UTE two or three cases in eight,
  and the synthetic UTE test set fell from 0.950 to 0.930 after five ventilation slices;
- anchors: held-out-family cases of each generator (shapes outside the training ranges), scored with parent
  and child: a child that loses more than the promotion margin on one of them has forgotten something.

The neonatal anchors are small grids (scoring time), and on them a fine-tune tends to gain while full-size UTE
volumes lose a little, and what they lose is **dense, BPD-like lung** (signal half-way from aerated lung to
tissue). So the anchors also hold **slabs through dense lung**: a few sections round the densest section of
full-size held-out-family UTE cases that have such lung, cheap to score and where forgetting shows first.

Both also hold **single axial slices** (depth-1 cases) cut from the neonatal cases. A clinic's new cases may
be 2D slices (the real ventilation MRI are): a 2.5D network then sees three identical channels only on the new
domain and learns that cue as "new contrast". Fine-tuned on five ventilation slices with volumes alone
rehearsed, the bundled model kept real proton MRI (0.936 -> 0.933) but fell from 0.982 to 0.380 on real CT
slices, the other depth-1 images it knew. Rehearsing and checking single slices of the known contrast
removes the shortcut and lets the rule see it.
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
SMALL_NEONATAL = SyntheticMix(randomized_contrast_fraction=0.3, matrices=(96, 112, 128), thickness_mm=(3.0, 4.0))
SMALL_RANDOMISED = {"in_plane_matrix": (48, 128), "max_slices": 48, "max_voxels": 800_000}


# The parent's neonatal contrast mix: mostly UTE (see the module docstring).
PARENT_NEONATAL = SyntheticMix(randomized_contrast_fraction=0.3)
# Full-size UTE cases for the dense-lung slabs; about half of the generator's cases have BPD-like lung.
DENSE_UTE = SyntheticMix(randomized_contrast_fraction=0.0)
DENSE_SHARE = 0.35     # a lung voxel is dense when its signal lies this share of the way from lung to tissue
MIN_DENSE_FRACTION = 0.02  # of the lung's core, for a case to give a slab
SLAB_SECTIONS = 9


def _neonatal(folder: Path, seeds: range, family: str, small: bool = False) -> None:
    if not folder.exists():
        mix = SMALL_NEONATAL if small else PARENT_NEONATAL
        write_synthetic_folder(folder, seeds, mix, variant_family=family, echo=_quiet)


def _randomised(folder: Path, seeds: range, family: str, small: bool = False) -> None:
    if not folder.exists():
        write_domain_random_folder(folder, seeds, family=family, echo=_quiet,
                                   overrides=SMALL_RANDOMISED if small else None)


def single_slices(source: Path, out: Path, per_case: int, seed: int) -> Path:
    """``per_case`` axial slices through the lungs of each axial case of ``source``, as depth-1 cases."""
    import numpy as np
    import SimpleITK as sitk

    from NeonatalLungSegLib.dataset.training_folder import add_case

    if out.exists():
        return out
    folder = read_training_folder(source)
    rng = np.random.default_rng(seed)
    staging = out.with_name(out.name + ".tmp")
    if staging.exists():
        import shutil

        shutil.rmtree(staging)
    for record in folder.cases:
        image, label = folder.read_case(record)
        if abs(abs(image.GetDirection()[8]) - 1.0) > 1e-3:  # only axial stacks cut into axial slices
            continue
        lungs = np.flatnonzero(sitk.GetArrayViewFromImage(label).reshape(label.GetSize()[2], -1).any(axis=1))
        for k in sorted(rng.choice(lungs, size=min(per_case, len(lungs)), replace=False)):
            piece = [image[:, :, int(k):int(k) + 1], label[:, :, int(k):int(k) + 1]]
            add_case(staging, piece[0], piece[1], f"{record.subject}-slice{int(k):03d}", review_status="reference",
                     source="synthetic", description="single axial slices of synthetic neonatal chest MRI")
    staging.rename(out)
    return out


def dense_fraction(image, label) -> tuple[float, int]:
    """(the share of the lung's core whose signal lies DENSE_SHARE or more of the way from the aerated lung's
    (its core's lowest quartile) to the surrounding tissue's median, the section holding most of it)."""
    import numpy as np
    import SimpleITK as sitk
    from scipy import ndimage

    signal = sitk.GetArrayViewFromImage(image).astype(np.float64)
    lung = sitk.GetArrayViewFromImage(label) > 0
    core = ndimage.binary_erosion(lung, iterations=2)
    shell = ndimage.binary_dilation(lung, iterations=4) & ~ndimage.binary_dilation(lung, iterations=2)
    if core.sum() < 27 or not shell.any():
        return 0.0, 0
    aerated, tissue = np.percentile(signal[core], 25), np.median(signal[shell])
    if tissue == aerated:
        return 0.0, 0
    dense = core & ((signal - aerated) / (tissue - aerated) >= DENSE_SHARE)
    return float(dense.sum() / core.sum()), int(np.argmax(dense.sum(axis=(1, 2))))


def dense_slabs(source: Path, out: Path) -> Path | None:
    """SLAB_SECTIONS axial sections round the densest section of each axial case of ``source`` with at least
    MIN_DENSE_FRACTION dense lung, as cases of a training folder ``out``; None when no case has any."""
    from NeonatalLungSegLib.dataset.training_folder import add_case

    if out.exists():
        return out
    folder = read_training_folder(source)
    staging = out.with_name(out.name + ".tmp")
    if staging.exists():
        import shutil

        shutil.rmtree(staging)
    for record in folder.cases:
        image, label = folder.read_case(record)
        if abs(abs(image.GetDirection()[8]) - 1.0) > 1e-3:
            continue
        fraction, k = dense_fraction(image, label)
        if fraction < MIN_DENSE_FRACTION:
            continue
        low = max(0, min(k - SLAB_SECTIONS // 2, image.GetSize()[2] - SLAB_SECTIONS))
        high = min(image.GetSize()[2], low + SLAB_SECTIONS)
        add_case(staging, image[:, :, low:high], label[:, :, low:high], f"{record.subject}-dense",
                 review_status="reference", source="synthetic",
                 description="slabs through dense (BPD-like) lung of synthetic neonatal UTE MRI")
    if not staging.exists():
        return None
    staging.rename(out)
    return out


def rehearsal_folders(work: Path, cases: int, dense_cases: int = 0) -> list[Path]:
    """``cases`` training-family cases of each generator and single slices of the neonatal ones, in three
    training folders under ``work``; with ``dense_cases``, a fourth of slabs through dense lung (see below)."""
    neonatal, randomised = work / "rehearsal-neonatal", work / "rehearsal-randomised"
    _neonatal(neonatal, range(REHEARSAL_SEED, REHEARSAL_SEED + cases), "train")
    _randomised(randomised, range(REHEARSAL_SEED, REHEARSAL_SEED + cases), "train")
    folders = [neonatal, randomised, single_slices(neonatal, work / "rehearsal-slices", 12, REHEARSAL_SEED)]
    dense = dense_rehearsal(work, dense_cases) if dense_cases > 0 else None
    return folders + ([dense] if dense is not None else [])


def dense_rehearsal(work: Path, cases: int) -> Path | None:
    """Slabs through dense lung of those of ``cases`` full-size training-family UTE cases that have it: the
    part of the parent's knowledge a fine-tune loses first, rehearsed more often than the rest of the mix
    gives it (ImproveSettings.rehearsal_dense). None when no case has dense lung."""
    source, out = work / "rehearsal-dense-source", work / "rehearsal-dense"
    if not out.exists() and not source.exists():
        write_synthetic_folder(source, range(REHEARSAL_SEED + 100, REHEARSAL_SEED + 100 + cases), DENSE_UTE,
                               variant_family="train", echo=_quiet)
    return dense_slabs(source, out)


def anchor_sets(work: Path, cases: int) -> list[AnchorSet]:
    """``cases`` held-out-family cases of each generator, for the parent-against-child check."""
    neonatal, randomised = work / "anchor-neonatal", work / "anchor-randomised"
    _neonatal(neonatal, range(ANCHOR_SEED, ANCHOR_SEED + cases), "heldout", small=True)
    _randomised(randomised, range(ANCHOR_SEED, ANCHOR_SEED + cases), "heldout", small=True)
    slices = single_slices(neonatal, work / "anchor-slices", 6, ANCHOR_SEED)
    full = work / "anchor-dense-source"
    if not (work / "anchor-dense").exists() and not full.exists():
        write_synthetic_folder(full, range(ANCHOR_SEED + 100, ANCHOR_SEED + 100 + 4 * cases), DENSE_UTE,
                               variant_family="heldout", echo=_quiet)
    dense = dense_slabs(full, work / "anchor-dense")
    sets = [AnchorSet("synthetic-neonatal", "synthetic neonatal MRI, held-out anatomy family", neonatal),
            AnchorSet("synthetic-randomised", "domain-randomised chest MRI, held-out shape family", randomised),
            AnchorSet("synthetic-slices", "single axial slices of held-out synthetic neonatal MRI", slices)]
    if dense is not None:
        sets.append(AnchorSet("synthetic-dense", "dense (BPD-like) lung of full-size synthetic neonatal UTE, "
                                                 "held-out anatomy family", dense))
    return sets


def case_count(folder: Path) -> int:
    return len(read_training_folder(folder).cases)
