"""Synthetic neonatal chest MRI (UTE / gradient-echo contrast) with right/left lung labels.

No public neonatal lung MRI with lung masks exists, so the model is trained on volumes generated here:
a random chest anatomy (procedural, or the real fetal thorax atlas's lung and heart shapes, warped) is
rasterised into tissue classes on the requested grid, then painted with the contrast of a newborn's
aerated lungs and passed through a simple MR physics chain (bias field, partial volume, Rician noise).
The label is the rasterised lung tissue itself, so image and label can never disagree.

Everything is drawn from one ``numpy.random.Generator`` seeded by ``seed``: the same arguments always
give bit-identical volumes, which makes training sets reproducible from a list of seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from NeonatalLungSegLib.geometry import Geometry, array_to_image

from .anatomy import N_TISSUES, Tissue, axis_coordinates, procedural_tissue, smooth_field
from .atlas_anatomy import ATLAS_IMAGE, ATLAS_LABELS, atlas_tissue
from .lung_topology import finalize_lungs

ANATOMIES = ("procedural", "atlas")
TOUCHING_PROBABILITY = 0.3

# Typical signal of each tissue (arbitrary units) on a neonatal UTE / spoiled gradient-echo image:
# aerated lung is dark (very short T2*, low proton density) but above air; fat and blood are brightest.
_MEAN = {
    Tissue.AIR: 0.0, Tissue.FAT: 880.0, Tissue.MUSCLE: 620.0, Tissue.RIB: 420.0,
    Tissue.LUNG_RIGHT: 140.0, Tissue.LUNG_LEFT: 140.0, Tissue.VESSEL: 680.0,
    Tissue.MYOCARDIUM: 600.0, Tissue.BLOOD: 840.0, Tissue.MEDIASTINUM: 740.0, Tissue.THYMUS: 580.0,
    Tissue.VERTEBRA: 400.0, Tissue.SPINAL_CANAL: 320.0, Tissue.LIVER: 500.0, Tissue.ABDOMEN: 430.0,
    Tissue.STOMACH: 260.0, Tissue.AIRWAY: 20.0,
}
# Relative amplitude of fine texture (flow, fibres, bowel content) per tissue.
_TEXTURE = {Tissue.BLOOD: 0.12, Tissue.MYOCARDIUM: 0.06, Tissue.ABDOMEN: 0.15, Tissue.STOMACH: 0.15,
            Tissue.LIVER: 0.04, Tissue.MUSCLE: 0.05, Tissue.FAT: 0.03, Tissue.MEDIASTINUM: 0.06,
            Tissue.THYMUS: 0.05, Tissue.VERTEBRA: 0.08}
_LUNGS = (Tissue.LUNG_RIGHT, Tissue.LUNG_LEFT)


@dataclass(frozen=True)
class SyntheticCase:
    """One generated volume: MR magnitude image and its lung label on the same geometry."""

    image: sitk.Image   # float32 MR magnitude, arbitrary units (roughly 0..1000)
    label: sitk.Image   # uint8: 0 background, 1 RIGHT lung, 2 LEFT lung
    seed: int
    anatomy: str        # "procedural" or "atlas"


def default_atlas_dir() -> Path:
    """Where the fetal thorax atlas lives beside a checkout (never inside it: it is GPL-3.0 data)."""
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "fetal-thorax-atlas"


def _validate(anatomy: str, shape: tuple[int, int, int], spacing: tuple[float, float, float],
              atlas_dir: Path | None,
              touching_lungs: bool | None) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Check the arguments early, with messages that say what to pass instead."""
    if anatomy not in ANATOMIES:
        raise ValueError(f"unknown anatomy {anatomy!r}: use one of {', '.join(ANATOMIES)}")
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


def _paint(tissue: np.ndarray, geometry: Geometry, rng: np.random.Generator) -> np.ndarray:
    """Neonatal contrast and MR physics on a tissue-class volume; returns float32 magnitude."""
    shape = tissue.shape
    spacing = geometry.spacing[::-1]
    mean = np.zeros(N_TISSUES, np.float32)
    for t, value in _MEAN.items():
        mean[t] = value * rng.uniform(0.9, 1.1)
    mean[list(_LUNGS)] = rng.uniform(90.0, 190.0)
    texture = np.zeros(N_TISSUES, np.float32)
    for t, value in _TEXTURE.items():
        texture[t] = value
    lung = np.zeros(N_TISSUES, np.float32)
    lung[list(_LUNGS)] = 1.0

    # Fine texture everywhere, plus low-frequency parenchymal heterogeneity and a dependent (posterior)
    # density gradient in the lungs, as in a supine newborn.
    fine = smooth_field(rng, shape, spacing, rng.uniform(3.0, 6.0))
    coarse = smooth_field(rng, shape, spacing, rng.uniform(12.0, 20.0))
    _, y, _ = axis_coordinates(geometry)
    dependent = np.float32(rng.uniform(0.0, 0.004)) * y
    in_lung = lung[tissue]
    image = mean[tissue] * (1.0 + texture[tissue] * fine
                            + in_lung * (np.float32(rng.uniform(0.12, 0.25)) * coarse + dependent))

    # Smooth multiplicative receive-coil bias within 0.7..1.3, then partial-volume blur.
    bias = smooth_field(rng, shape, spacing, rng.uniform(50.0, 90.0))
    image *= 1.0 + np.float32(rng.uniform(0.1, 0.3)) * np.tanh(bias)
    image = ndimage.gaussian_filter(image, sigma=rng.uniform(0.5, 0.8), mode="nearest")

    # Rician noise: magnitude of a complex signal with Gaussian noise in both channels.
    sigma = np.float32(rng.uniform(0.01, 0.04) * mean.max())
    real = image + sigma * rng.standard_normal(shape, dtype=np.float32)
    imaginary = sigma * rng.standard_normal(shape, dtype=np.float32)
    image = np.sqrt(real * real + imaginary * imaginary)
    image *= np.float32(rng.uniform(0.85, 1.15))
    return image.astype(np.float32, copy=False)


def generate_case(seed: int, *, anatomy: str = "procedural", shape: tuple[int, int, int] = (64, 128, 128),
                  spacing: tuple[float, float, float] = (1.5, 1.0, 1.0), atlas_dir: Path | None = None,
                  touching_lungs: bool | None = None) -> SyntheticCase:
    """Generate one synthetic neonatal chest MRI and its right/left lung label.

    ``shape`` and ``spacing`` are in array order (k, j, i) = (slice, row, column); the anatomy is in
    millimetres, so other grids show the same-sized baby with a different field of view. With
    ``touching_lungs=None`` about 30 % of cases have lungs touching anteriorly.
    """
    shape_t, spacing_t = _validate(anatomy, shape, spacing, atlas_dir, touching_lungs)
    rng = np.random.default_rng(seed)
    draw = rng.random()
    touching = bool(draw < TOUCHING_PROBABILITY) if touching_lungs is None else bool(touching_lungs)
    geometry = _centred_geometry(shape_t, spacing_t)
    if anatomy == "procedural":
        tissue = procedural_tissue(rng, geometry, touching)
    else:
        tissue = atlas_tissue(rng, geometry, Path(atlas_dir))
    label = finalize_lungs(tissue, geometry, rng, touching)
    image = _paint(tissue, geometry, rng)
    return SyntheticCase(array_to_image(image, geometry), array_to_image(label, geometry), int(seed), anatomy)


def write_case(case: SyntheticCase, image_path: Path, label_path: Path) -> None:
    """Write image and label (compressed; e.g. ``.nii.gz`` or ``.nrrd``), creating parent folders."""
    for image, path in ((case.image, Path(image_path)), (case.label, Path(label_path))):
        path.parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(image, str(path), useCompression=True)
