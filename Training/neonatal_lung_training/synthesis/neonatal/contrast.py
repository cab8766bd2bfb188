"""Tissue contrast: how each tissue class of a synthetic chest is painted into an MR magnitude image.

Three contrasts, chosen per case:

- ``"ute"``: the target protocol, UTE / spoiled gradient echo of a newborn. Aerated lung is dark (very
  short T2*, low proton density) but above air; fat and blood are brightest. BPD-like dense lung is
  bright like soft tissue, cysts are nearly air-dark, interstitial streaks in between.
- ``"t2_haste"``: a single-shot T2-weighted turbo spin echo (HASTE-like). Fluid (CSF, stomach, bowel) is
  brightest, flowing blood is dark (flow voids), muscle and liver dark, aerated lung dark-intermediate;
  dense BPD-like lung is bright (fluid-rich). Kept out of training, it tests a protocol never seen.
- ``"randomized"``: domain randomisation in the manner of SynthSeg (Billot et al., 2023): each tissue
  class gets a random mean and a random texture amplitude, then a random gamma is applied, so a network
  cannot rely on any one contrast and must learn shape. Only physics is kept: air, airway and cysts
  hold no protons and stay dark; both lungs share one mean so that intensity never tells the side.

Parenchymal heterogeneity (a coarse random field and a dependent, posterior density gradient) is added
to the lungs in every contrast. MR acquisition effects (bias, blur, streaks, noise) come later, in
``mr_artefacts.py``.
"""

from __future__ import annotations

import numpy as np

from NeonatalLungSegLib.geometry import Geometry

from ..anatomy.procedural import N_TISSUES, Tissue, axis_coordinates, smooth_field

CONTRASTS = ("ute", "randomized", "t2_haste")
T = Tissue

# Typical signal per tissue (arbitrary units, roughly 0..1000); each is jittered +-10 % per case.
UTE_MEAN = {
    T.AIR: 0.0, T.FAT: 880.0, T.MUSCLE: 620.0, T.RIB: 420.0, T.LUNG_RIGHT: 140.0, T.LUNG_LEFT: 140.0,
    T.VESSEL: 680.0, T.MYOCARDIUM: 600.0, T.BLOOD: 840.0, T.MEDIASTINUM: 740.0, T.THYMUS: 580.0,
    T.VERTEBRA: 400.0, T.SPINAL_CANAL: 320.0, T.LIVER: 500.0, T.ABDOMEN: 430.0, T.STOMACH: 260.0,
    T.AIRWAY: 20.0, T.ATELECTASIS: 520.0, T.CYST: 35.0, T.INTERSTITIAL: 330.0,
}
T2_HASTE_MEAN = {
    T.AIR: 0.0, T.FAT: 650.0, T.MUSCLE: 230.0, T.RIB: 180.0, T.LUNG_RIGHT: 130.0, T.LUNG_LEFT: 130.0,
    T.VESSEL: 60.0, T.MYOCARDIUM: 210.0, T.BLOOD: 90.0, T.MEDIASTINUM: 420.0, T.THYMUS: 480.0,
    T.VERTEBRA: 320.0, T.SPINAL_CANAL: 950.0, T.LIVER: 260.0, T.ABDOMEN: 620.0, T.STOMACH: 930.0,
    T.AIRWAY: 10.0, T.ATELECTASIS: 560.0, T.CYST: 25.0, T.INTERSTITIAL: 330.0,
}
_FIXED = {"ute": UTE_MEAN, "t2_haste": T2_HASTE_MEAN}
UTE_LUNG_RANGE = (90.0, 190.0)      # aerated lung varies most between newborns (inflation, sequence)
# Relative amplitude of fine texture (flow, fibres, bowel content) per tissue in the fixed contrasts.
TEXTURE = {T.BLOOD: 0.12, T.MYOCARDIUM: 0.06, T.ABDOMEN: 0.15, T.STOMACH: 0.15, T.LIVER: 0.04,
           T.MUSCLE: 0.05, T.FAT: 0.03, T.MEDIASTINUM: 0.06, T.THYMUS: 0.05, T.VERTEBRA: 0.08,
           T.ATELECTASIS: 0.08, T.INTERSTITIAL: 0.1}
# Randomised contrast: mean per class within RANDOM_MEAN (proton-free classes within RANDOM_DARK),
# texture amplitude within RANDOM_TEXTURE, then intensity ** gamma with log(gamma) within RANDOM_LOG_GAMMA.
RANDOM_MEAN = (0.0, 1000.0)
RANDOM_DARK = (0.0, 40.0)
RANDOM_TEXTURE = (0.0, 0.25)
RANDOM_LOG_GAMMA = (-0.5, 0.5)
_PROTON_FREE = (T.AIR, T.AIRWAY, T.CYST)
# Classes that receive the lung heterogeneity (not vessels or cysts).
_PARENCHYMA = (T.LUNG_RIGHT, T.LUNG_LEFT, T.ATELECTASIS, T.INTERSTITIAL)


def tissue_tables(contrast: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per-class mean signal and relative texture amplitude for one case (indexed by ``Tissue``)."""
    mean = np.zeros(N_TISSUES, np.float32)
    texture = np.zeros(N_TISSUES, np.float32)
    if contrast == "randomized":
        for t in Tissue:
            mean[t] = rng.uniform(*(RANDOM_DARK if t in _PROTON_FREE else RANDOM_MEAN))
            texture[t] = rng.uniform(*RANDOM_TEXTURE)
        mean[T.LUNG_LEFT] = mean[T.LUNG_RIGHT]
        return mean, texture
    for t, value in _FIXED[contrast].items():
        mean[t] = value * rng.uniform(0.9, 1.1)
    if contrast == "ute":
        mean[[T.LUNG_RIGHT, T.LUNG_LEFT]] = rng.uniform(*UTE_LUNG_RANGE)
    else:
        mean[[T.LUNG_RIGHT, T.LUNG_LEFT]] = mean[T.LUNG_RIGHT]
    for t, value in TEXTURE.items():
        texture[t] = value
    return mean, texture


def paint(tissue: np.ndarray, geometry: Geometry, rng: np.random.Generator, contrast: str) -> np.ndarray:
    """Noise-free float32 image of ``tissue`` in ``contrast`` (one of ``CONTRASTS``)."""
    if contrast not in CONTRASTS:
        raise ValueError(f"unknown contrast {contrast!r}: use one of {', '.join(CONTRASTS)}")
    shape = tissue.shape
    spacing = geometry.spacing[::-1]
    mean, texture = tissue_tables(contrast, rng)
    parenchyma = np.zeros(N_TISSUES, np.float32)
    parenchyma[list(_PARENCHYMA)] = 1.0

    # Fine texture everywhere, plus low-frequency parenchymal heterogeneity and a dependent (posterior)
    # density gradient in the lungs, as in a supine newborn.
    fine = smooth_field(rng, shape, spacing, rng.uniform(3.0, 6.0))
    coarse = smooth_field(rng, shape, spacing, rng.uniform(12.0, 20.0))
    _, y, _ = axis_coordinates(geometry)
    dependent = np.float32(rng.uniform(0.0, 0.004)) * y
    in_lung = parenchyma[tissue]
    image = mean[tissue] * (1.0 + texture[tissue] * fine
                            + in_lung * (np.float32(rng.uniform(0.12, 0.25)) * coarse + dependent))
    np.maximum(image, 0.0, out=image)
    if contrast == "randomized":
        top = max(float(mean.max()), 1.0)
        gamma = float(np.exp(rng.uniform(*RANDOM_LOG_GAMMA)))
        image = np.float32(top) * (image / np.float32(top)) ** np.float32(gamma)
    return image.astype(np.float32, copy=False)
