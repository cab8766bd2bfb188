"""Synthetic neonatal chest MRI (UTE, T2 HASTE-like or randomised contrast) with right/left lung labels.

No public neonatal lung MRI with lung masks exists, so the model is trained on volumes generated here:

1. anatomy: a chest (procedural, or the real fetal thorax atlas's lung, heart and thymus shapes) under
   a random newborn size, affine (rotation, anisotropic scale, shear) and elastic warp drawn from an
   anatomy family (``variants.py``: "train", or "heldout" for anatomy never seen in training), rasterised
   into tissue classes on the requested grid;
2. lung topology and vessels (``lung_topology.py``), which fix the label: 1 right, 2 left lung;
3. BPD-like parenchyma painted inside the finished label (``pathology.py``);
4. contrast (``contrast.py``) and the MR acquisition chain (``mr_artefacts.py``).

The label is the rasterised lung tissue itself, fixed before steps 3 and 4, so image and label can never
disagree and no contrast or artefact setting can change a label. ``docs/synthetic-data.md`` lists every
parameter and range.

Randomness comes from one ``numpy.random.SeedSequence`` per (seed, family), split into independent
streams for anatomy, pathology, contrast and acquisition: the same arguments always give bit-identical
volumes, and changing the contrast, BPD severity or artefacts of a seed leaves its anatomy unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from NeonatalLungSegLib.geometry import Geometry, array_to_image

from ..anatomy.procedural import procedural_tissue
from ..anatomy.atlas import ATLAS_IMAGE, ATLAS_LABELS, atlas_tissue
from .contrast import CONTRASTS, paint
from ..anatomy.lung_topology import finalize_lungs
from .mr_artefacts import acquire
from ..anatomy.pathology import add_bpd_patterns, draw_severity
from ..anatomy.variants import FAMILY_NAMES, draw_pose, family_seed
from ...locations import shared_data

ANATOMIES = ("procedural", "atlas")
TOUCHING_PROBABILITY = 0.3


@dataclass(frozen=True)
class SyntheticCase:
    """One generated volume: MR magnitude image and its lung label on the same geometry."""

    image: sitk.Image   # float32 MR magnitude, arbitrary units (roughly 0..1000)
    label: sitk.Image   # uint8: 0 background, 1 RIGHT lung, 2 LEFT lung
    seed: int
    anatomy: str        # "procedural" or "atlas"
    contrast: str = "ute"
    variant_family: str = "train"
    # What was drawn (newborn age and size, affine, elastic, BPD, artefacts): plain numbers and flags.
    parameters: dict[str, Any] = field(default_factory=dict)


def default_atlas_dir() -> Path:
    """Where the fetal thorax atlas lives beside a checkout (never inside it: it is GPL-3.0 data)."""
    return shared_data("fetal-thorax-atlas")


def _validate(anatomy: str, shape: tuple[int, int, int], spacing: tuple[float, float, float],
              atlas_dir: Path | None, touching_lungs: bool | None, contrast: str, variant_family: str,
              bpd_severity: float | None, artefacts: bool) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Check the arguments early, with messages that say what to pass instead."""
    if anatomy not in ANATOMIES:
        raise ValueError(f"unknown anatomy {anatomy!r}: use one of {', '.join(ANATOMIES)}")
    if contrast not in CONTRASTS:
        raise ValueError(f"unknown contrast {contrast!r}: use one of {', '.join(CONTRASTS)}")
    if variant_family not in FAMILY_NAMES:
        raise ValueError(f"unknown variant_family {variant_family!r}: use one of {', '.join(FAMILY_NAMES)}")
    try:
        shape_t = tuple(int(s) for s in shape)
        spacing_t = tuple(float(s) for s in spacing)
    except (TypeError, ValueError) as error:
        raise ValueError(f"shape and spacing must be three numbers each: {error}") from None
    if len(shape_t) != 3 or any(s <= 0 or s != t for s, t in zip(shape_t, shape)):
        raise ValueError(f"shape must be three positive integers (k, j, i), got {shape!r}")
    if len(spacing_t) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing_t):
        raise ValueError(f"spacing must be three positive finite mm values (k, j, i), got {spacing!r}")
    if touching_lungs is not None and not isinstance(touching_lungs, (bool, np.bool_)):
        raise ValueError(f"touching_lungs must be True, False or None, got {touching_lungs!r}")
    if bpd_severity is not None and (isinstance(bpd_severity, (bool, np.bool_))
                                     or not isinstance(bpd_severity, (int, float, np.floating, np.integer))
                                     or not 0.0 <= float(bpd_severity) <= 1.0):
        raise ValueError(f"bpd_severity must be None (random) or a number from 0 to 1, got {bpd_severity!r}")
    if not isinstance(artefacts, (bool, np.bool_)):
        raise ValueError(f"artefacts must be True or False, got {artefacts!r}")
    if anatomy == "atlas":
        if atlas_dir is None:
            raise ValueError("anatomy='atlas' needs atlas_dir (for example default_atlas_dir())")
        missing = [n for n in (ATLAS_IMAGE, ATLAS_LABELS) if not (Path(atlas_dir) / n).is_file()]
        if missing:
            raise ValueError(f"atlas directory {atlas_dir} lacks {', '.join(missing)}")
    return shape_t, spacing_t


def _centred_geometry(shape: tuple[int, ...], spacing: tuple[float, ...]) -> Geometry:
    """Identity-direction grid whose centre is the LPS origin (the generator's anatomy is centred)."""
    size = (shape[2], shape[1], shape[0])
    spacing_ijk = (spacing[2], spacing[1], spacing[0])
    origin = tuple(-(n - 1) * s / 2.0 for n, s in zip(size, spacing_ijk))
    return Geometry(size, spacing_ijk, origin, (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))


def generate_case(seed: int, *, anatomy: str = "procedural", shape: tuple[int, int, int] = (64, 128, 128),
                  spacing: tuple[float, float, float] = (1.5, 1.0, 1.0), atlas_dir: Path | None = None,
                  touching_lungs: bool | None = None, contrast: str = "ute", variant_family: str = "train",
                  bpd_severity: float | None = None, artefacts: bool = True) -> SyntheticCase:
    """Generate one synthetic neonatal chest MRI and its right/left lung label.

    Args:
        seed: any non-negative integer; with the other arguments it fixes the volume bit for bit.
        anatomy: "procedural" (shapes written as functions) or "atlas" (the fetal thorax atlas's
            lung, heart and thymus shapes, which needs ``atlas_dir``).
        shape, spacing: the output grid in array order (k, j, i) = (slice, row, column), voxels and mm.
            The anatomy is in millimetres, so other grids show the same-sized baby with another field
            of view; the grid is centred on the chest with identity direction (LPS).
        atlas_dir: folder holding the atlas files (``default_atlas_dir()`` beside a checkout).
        touching_lungs: lungs touching anteriorly (one connected component) or at least two voxels
            apart; None draws touching for about 30 % of cases.
        contrast: "ute" (the target protocol: aerated lungs dark), "t2_haste" (fluid bright, lungs
            dark-intermediate, blood dark) or "randomized" (random intensity per tissue and gamma).
        variant_family: "train" or "heldout": which disjoint range of newborn size, chest shape, shear
            and elastic warp the anatomy comes from (see ``variants.FAMILIES``), and which seed space.
        bpd_severity: BPD-like dense patches, cysts and streaks inside the lungs, 0 (none) to 1
            (severe); None draws none for half of the cases and a severity of 0.15-1 otherwise.
        artefacts: bias field, breathing blur, radial undersampling streaks and lower acquired
            resolution, each drawn at random; False keeps only partial volume and Rician noise.

    Raises:
        ValueError: for any argument outside the values above, before any work is done.
    """
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    shape_t, spacing_t = _validate(anatomy, shape, spacing, atlas_dir, touching_lungs, contrast,
                                   variant_family, bpd_severity, artefacts)
    streams = [np.random.default_rng(s) for s in family_seed(seed, variant_family).spawn(4)]
    rng, pathology_rng, contrast_rng, acquisition_rng = streams
    draw = rng.random()
    touching = bool(draw < TOUCHING_PROBABILITY) if touching_lungs is None else bool(touching_lungs)
    geometry = _centred_geometry(shape_t, spacing_t)
    pose = draw_pose(rng, variant_family)
    if anatomy == "procedural":
        tissue = procedural_tissue(rng, geometry, touching, pose)
    else:
        tissue = atlas_tissue(rng, geometry, Path(atlas_dir), pose)
    label = finalize_lungs(tissue, geometry, rng, touching)
    severity = draw_severity(pathology_rng) if bpd_severity is None else float(bpd_severity)
    bpd = add_bpd_patterns(tissue, label, geometry, pathology_rng, severity)
    image = paint(tissue, geometry, contrast_rng, contrast)
    image, acquisition = acquire(image, geometry, acquisition_rng, contrast, bool(artefacts))
    parameters = {"touching_lungs": touching, **pose.summary(), **bpd, **acquisition}
    return SyntheticCase(array_to_image(image, geometry), array_to_image(label, geometry), int(seed), anatomy,
                         contrast, variant_family, parameters)


def write_case(case: SyntheticCase, image_path: Path, label_path: Path) -> None:
    """Write image and label (compressed; e.g. ``.nii.gz`` or ``.nrrd``), creating parent folders."""
    for image, path in ((case.image, Path(image_path)), (case.label, Path(label_path))):
        path.parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(image, str(path), useCompression=True)
