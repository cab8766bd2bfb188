"""BPD-like lung parenchyma: dense atelectatic patches, cystic lucencies and interstitial streaks.

Preterm newborns scanned for lung disease often have bronchopulmonary dysplasia (BPD): on MRI the lungs
show bright, consolidated or atelectatic regions (mostly dependent, i.e. posterior in a supine baby),
dark air-filled cysts and thin linear opacities. A model that has only seen uniformly dark lungs would
cut these out of the mask, yet annotators label all of it as lung. So the patterns are painted *inside*
the finished lung label as extra tissue classes: the label itself is never changed, which is what
guarantees that bright patches and dark cysts both stay labelled lung.

Everything works on the lungs' bounding box only, which keeps the cost to a fraction of a second.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from NeonatalLungSegLib.geometry import Geometry

from .procedural import Tissue, smooth_field

BPD_PROBABILITY = 0.5               # share of cases with BPD-like patterns when the severity is drawn
SEVERITY_RANGE = (0.15, 1.0)        # drawn severity when a case has BPD-like patterns
ATELECTASIS_FRACTION = (0.08, 0.25)  # share of lung that is dense, times the severity
INTERSTITIAL_FRACTION = (0.08, 0.18)  # share of lung in streaks, times the severity
CYST_COUNT = (2, 14)                # number of cysts at severity 1 (scaled by the severity)
CYST_RADIUS_MM = (1.5, 4.5)
_CYST_TRIES = 20                    # candidate centres per cyst before giving up on it
_PARENCHYMA = (Tissue.LUNG_RIGHT, Tissue.LUNG_LEFT)


def draw_severity(rng: np.random.Generator) -> float:
    """A random BPD-like severity: 0 (normal lungs) for half of the cases, else within SEVERITY_RANGE."""
    if rng.random() >= BPD_PROBABILITY:
        return 0.0
    return float(rng.uniform(*SEVERITY_RANGE))


def _threshold_fraction(values: np.ndarray, fraction: float) -> float:
    """The value above which ``fraction`` of ``values`` lie (a quantile, safe for empty input)."""
    if values.size == 0 or fraction <= 0.0:
        return math.inf
    return float(np.quantile(values, 1.0 - min(fraction, 1.0)))


def _cysts(tissue: np.ndarray, lung: np.ndarray, spacing: np.ndarray, rng: np.random.Generator,
           count: int) -> int:
    """Place up to ``count`` ellipsoidal air cysts with a thin denser wall, in place; returns how many.

    ``lung`` marks the voxels that may change (inside the label, not vessels). A candidate centre is
    kept only when at least 90 % of its ball is such lung, so cysts sit inside the lung (subpleural ones
    may touch the pleura) rather than being cut into the lung's edge, where an air-dark region would be
    indistinguishable from the outside of the lung.
    """
    candidates = np.argwhere(lung)
    if len(candidates) == 0:
        return 0
    placed = 0
    for _ in range(count):
        radii = rng.uniform(*CYST_RADIUS_MM) * rng.uniform(0.75, 1.25, 3)
        reach = np.ceil(1.4 * radii / spacing).astype(int)
        for _ in range(_CYST_TRIES):
            centre = candidates[rng.integers(len(candidates))]
            lo = np.maximum(centre - reach, 0)
            hi = np.minimum(centre + reach + 1, lung.shape)
            box = tuple(slice(a, b) for a, b in zip(lo, hi))
            k, j, i = np.ogrid[box]
            r2 = sum(((c - m) * s / r) ** 2 for c, m, s, r in zip((k, j, i), centre, spacing, radii))
            ball = r2 < 1.0
            lung_here = lung[box]
            if lung_here[ball].mean() < 0.9:
                continue
            wall = (r2 < 1.35 ** 2) & ~ball & lung_here
            tissue[box][wall] = Tissue.INTERSTITIAL
            tissue[box][ball & lung_here] = Tissue.CYST
            placed += 1
            break
    return placed


def add_bpd_patterns(tissue: np.ndarray, label: np.ndarray, geometry: Geometry, rng: np.random.Generator,
                     severity: float) -> dict[str, float]:
    """Paint BPD-like patterns into the lung parenchyma of ``tissue`` (in place); ``label`` is read only.

    ``severity`` in [0, 1] scales everything (0 changes nothing): the dense share of the lungs (mostly
    dependent), the interstitial streak share and the number of cysts. Only plain lung voxels are
    changed, so vessels drawn earlier stay. Returns what was drawn, for the case's record.
    """
    record = {"bpd_severity": float(severity), "atelectasis_fraction": 0.0, "interstitial_fraction": 0.0,
              "cysts": 0.0}
    if severity <= 0.0 or not label.any():
        return record
    box = ndimage.find_objects((label > 0).astype(np.uint8))[0]
    sub = tissue[box]                                           # a view: writes go to ``tissue``
    inside = label[box] > 0
    parenchyma = np.isin(sub, _PARENCHYMA) & inside
    spacing = np.asarray(geometry.spacing[::-1], float)
    shape = sub.shape

    # Interstitial streaks: thin sheets around the zero level of a smooth field, which cut through any
    # slice as lines and a fine reticular pattern.
    streak_share = severity * rng.uniform(*INTERSTITIAL_FRACTION)
    ridge = -np.abs(smooth_field(rng, shape, tuple(spacing), rng.uniform(6.0, 10.0)))
    streaks = parenchyma & (ridge > _threshold_fraction(ridge[parenchyma], streak_share))
    sub[streaks] = Tissue.INTERSTITIAL

    # Dense patches: a coarser field, tilted towards the posterior (dependent) lung of a supine baby.
    dense_share = severity * rng.uniform(*ATELECTASIS_FRACTION)
    rows = np.arange(shape[1], dtype=np.float32)[None, :, None] / max(shape[1] - 1, 1)
    patches = smooth_field(rng, shape, tuple(spacing), rng.uniform(4.0, 9.0)) \
        + np.float32(rng.uniform(0.2, 0.8)) * rows
    dense = parenchyma & (patches > _threshold_fraction(patches[parenchyma], dense_share))
    sub[dense] = Tissue.ATELECTASIS

    count = int(round(severity * rng.integers(CYST_COUNT[0], CYST_COUNT[1] + 1)))
    cysts = _cysts(sub, inside & (sub != Tissue.VESSEL), spacing, rng, count)
    lung_voxels = max(int(np.count_nonzero(label)), 1)
    record.update(atelectasis_fraction=float(np.count_nonzero(sub == Tissue.ATELECTASIS)) / lung_voxels,
                  interstitial_fraction=float(np.count_nonzero(sub == Tissue.INTERSTITIAL)) / lung_voxels,
                  cysts=float(cysts))
    return record
