"""Per-case random tissue contrast (SynthSeg-style), with the named protocols as special cases.

Every tissue class gets its own mean and spread, drawn per case. In most random cases the lungs are the
darkest tissue inside the body (physics: aerated lung has few protons and a very short T2*), but by how
much, and how fat, muscle, liver, heart and blood compare with each other, is free; in the others all
classes, lungs included, are drawn independently, so that lung can even be brighter than its
neighbours. A network trained on this cannot use "dark = lung"; it has to use shape and context, which
is what separates lung from stomach gas, airway and a dark heart.

Named modes reuse the project's tables (``..contrast``: UTE, T2 HASTE-like) plus a gradient-echo /
bSSFP-like table (fat and blood bright, lung near air), each jittered per class. Proton-free classes (air,
airway, gas, cysts) always stay dark; both lungs always share one mean, so intensity never tells the side.
"""

from __future__ import annotations

import numpy as np

from NeonatalLungSegLib.geometry import Geometry

from ..anatomy.procedural import Tissue, axis_coordinates, smooth_field
from ..neonatal.contrast import T2_HASTE_MEAN, UTE_MEAN
from .body import BOWEL, GAS, N_CLASSES, SPLEEN
from .ranges import CONTRAST_MODES, DomainRanges

T = Tissue
PROTON_FREE = (int(T.AIR), int(T.AIRWAY), int(T.CYST), GAS)
LUNG = (int(T.LUNG_RIGHT), int(T.LUNG_LEFT))
PARENCHYMA = (int(T.LUNG_RIGHT), int(T.LUNG_LEFT), int(T.ATELECTASIS), int(T.INTERSTITIAL))
BODY_TISSUES = tuple(c for c in range(N_CLASSES) if c not in PROTON_FREE + LUNG)

# Gradient echo / bSSFP-like (short TE): fat and flowing blood bright, lungs near air, liver below muscle.
GRADIENT_ECHO_MEAN = {
    T.AIR: 0.0, T.FAT: 900.0, T.MUSCLE: 380.0, T.RIB: 250.0, T.LUNG_RIGHT: 50.0, T.LUNG_LEFT: 50.0,
    T.VESSEL: 600.0, T.MYOCARDIUM: 420.0, T.BLOOD: 850.0, T.MEDIASTINUM: 650.0, T.THYMUS: 500.0,
    T.VERTEBRA: 420.0, T.SPINAL_CANAL: 700.0, T.LIVER: 300.0, T.ABDOMEN: 480.0, T.STOMACH: 600.0,
    T.AIRWAY: 10.0, T.ATELECTASIS: 420.0, T.CYST: 20.0, T.INTERSTITIAL: 250.0,
}
_TABLES = {"ute": UTE_MEAN, "t2_haste": T2_HASTE_MEAN, "gradient_echo": GRADIENT_ECHO_MEAN}
# New classes in the named modes: like their nearest existing tissue.
_LIKE = {GAS: T.AIR, SPLEEN: T.LIVER, BOWEL: T.STOMACH}


def draw_tables(rng: np.random.Generator, mode: str, ranges: DomainRanges
                ) -> tuple[np.ndarray, np.ndarray, dict]:
    """Per-class mean and relative spread for one case, and a record of the choices."""
    if mode not in CONTRAST_MODES:
        raise ValueError(f"unknown contrast mode {mode!r}: use one of {', '.join(CONTRAST_MODES)}")
    mean = np.zeros(N_CLASSES, np.float32)
    spread = rng.uniform(*ranges.tissue_spread_rel, N_CLASSES).astype(np.float32)
    record: dict = {"contrast_mode": mode}
    if mode == "random":
        darkest = bool(rng.random() < ranges.lung_darkest_probability)
        record["lung_darkest"] = darkest
        mean[:] = rng.uniform(*ranges.random_mean, N_CLASSES)
        if darkest:
            lung = rng.uniform(*ranges.lung_dark_mean)
            margin = rng.uniform(*ranges.dark_margin)
            low = min(lung + margin, ranges.random_mean[1] - 1.0)
            mean[list(BODY_TISSUES)] = rng.uniform(low, ranges.random_mean[1], len(BODY_TISSUES))
            mean[list(LUNG)] = lung
            record["dark_margin"] = float(margin)
        else:
            mean[list(LUNG)] = mean[LUNG[0]]
    else:
        table = _TABLES[mode]
        jitter = ranges.fixed_contrast_jitter
        for c in range(N_CLASSES):
            base = table[_LIKE.get(c, c)] if c in _LIKE or c < len(T) else 0.0
            mean[c] = base * rng.uniform(1.0 - jitter, 1.0 + jitter)
        mean[list(LUNG)] = mean[LUNG[0]]
        spread = np.minimum(spread, 0.12)
    mean[list(PROTON_FREE)] = rng.uniform(*ranges.gas_mean, len(PROTON_FREE))
    mean[int(T.AIR)] = min(float(mean[int(T.AIR)]), 20.0)      # outside the body: noise floor only
    spread[list(PROTON_FREE)] = np.minimum(spread[list(PROTON_FREE)], 0.1)
    record["lung_mean"] = float(mean[LUNG[0]])
    record["means"] = [round(float(m), 2) for m in mean]
    return mean, spread, record


def paint(tissue: np.ndarray, geometry: Geometry, rng: np.random.Generator, mode: str,
          ranges: DomainRanges) -> tuple[np.ndarray, dict]:
    """Noise-free float32 image of the tissue map (before the acquisition chain) and what was drawn.

    Texture is a smooth field (correlation 1-6 mm) plus white noise, scaled per class by its spread; the
    lung also gets coarse heterogeneity and a dependent (posterior) gradient, as real parenchyma does.
    """
    mean, spread, record = draw_tables(rng, mode, ranges)
    spacing = tuple(geometry.spacing[::-1])
    corr = float(rng.uniform(*ranges.texture_corr_mm))
    fine = smooth_field(rng, tissue.shape, spacing, max(corr, 1.01 * min(spacing)))
    white = rng.standard_normal(tissue.shape, dtype=np.float32)
    mix = np.float32(rng.uniform(*ranges.texture_smooth_share))
    texture = mix * fine + (np.float32(1.0) - mix) * white
    hetero = float(rng.uniform(*ranges.lung_heterogeneity))
    coarse = smooth_field(rng, tissue.shape, spacing, 4.0 * max(spacing) + 10.0)
    _, y, _ = axis_coordinates(geometry)
    extent = max(float(np.ptp(y)), 1.0)
    gradient = float(rng.uniform(*ranges.lung_dependent_gradient))
    dependent = np.float32(gradient / extent) * (y - np.float32(y.mean()))
    in_lung = np.zeros(N_CLASSES, np.float32)
    in_lung[list(PARENCHYMA)] = 1.0
    lung_factor = in_lung[tissue] * (np.float32(hetero) * coarse + dependent)
    image = mean[tissue] * (np.float32(1.0) + spread[tissue] * texture + lung_factor)
    np.maximum(image, 0.0, out=image)
    record.update({"texture_corr_mm": corr, "texture_smooth_share": float(mix), "lung_heterogeneity": hetero,
                   "lung_dependent_gradient": gradient})
    return image.astype(np.float32, copy=False), record
