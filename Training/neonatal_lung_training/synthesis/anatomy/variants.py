"""Anatomy families and the random pose (neonatal size, affine, elastic warp) applied to either anatomy.

A model trained on synthetic data should also be scored on anatomy it has never seen, not only on new
seeds of the same distribution. So every shape parameter of the warp that turns a template chest into a
patient is drawn from one of two *families* whose ranges do not overlap:

- ``"train"``: the ranges used to make training data;
- ``"heldout"``: for every parameter, values outside the training range (smaller and larger babies,
  rounder and flatter chests, stronger shear, finer and stronger elastic fields), drawn moreover from a
  different seed space (``numpy.random.SeedSequence`` spawn key 1 instead of 0), so no held-out case
  shares its random fields with a training case of the same seed.

Pose (rotation, translation) is acquisition, not anatomy, and is drawn from the same range in both.
The ranges are listed in ``FAMILIES`` and in ``docs/synthetic-data.md``; a test checks they are disjoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


FAMILY_NAMES = ("train", "heldout")
FAMILY_SPAWN_KEYS = {"train": 0, "heldout": 1}

# Newborn size: corrected (postmenstrual) age in weeks sets the total lung volume, interpolated
# log-linearly between these anchors. 27 weeks gives about 30 mL per lung, 41 weeks about 105 mL for
# the right lung; the right lung is the larger by the anatomy itself.
AGE_ANCHORS_WEEKS = (27.0, 41.0)
LUNG_ANCHORS_ML = (60.0, 195.0)
# Total lung volume (both lungs, mL) of each template at scale 1, measured over many seeds.
REFERENCE_LUNGS_ML = 100.0

Interval = tuple[float, float]


@dataclass(frozen=True)
class FamilyRanges:
    """Where each anatomy parameter of one family is drawn from: a union of closed intervals.

    A value is drawn by first picking an interval with probability proportional to its length.
    """

    age_weeks: tuple[Interval, ...]        # corrected age: sets the overall size (lung volume)
    aspect: tuple[Interval, ...]           # left-right over antero-posterior width of the chest
    elongation: tuple[Interval, ...]       # cranio-caudal length over the geometric mean width
    shear: tuple[Interval, ...]            # magnitude of each of the three shear terms (sign random)
    elastic_mm: tuple[Interval, ...]       # standard deviation of the elastic displacement
    elastic_corr_mm: tuple[Interval, ...]  # correlation length of the elastic displacement


FAMILIES = {
    "train": FamilyRanges(
        age_weeks=((29.0, 38.0),), aspect=((0.92, 1.08),), elongation=((0.92, 1.08),),
        shear=((0.0, 0.05),), elastic_mm=((1.5, 3.0),), elastic_corr_mm=((30.0, 45.0),)),
    "heldout": FamilyRanges(
        age_weeks=((27.0, 28.5), (38.5, 41.0)), aspect=((0.82, 0.91), (1.09, 1.18)),
        elongation=((0.84, 0.91), (1.09, 1.16)), shear=((0.06, 0.11),), elastic_mm=((3.2, 4.5),),
        elastic_corr_mm=((20.0, 28.0),)),
}
ROTATION_DEGREES = (5.0, 5.0, 10.0)     # about x (left-right), y (antero-posterior), z (cranio-caudal)
TRANSLATION_MM = 4.0


@dataclass(frozen=True)
class Pose:
    """The warp from the output grid's LPS millimetres into template millimetres, and what made it.

    ``matrix @ p + offset`` is the template position of output position ``p`` (both LPS, mm), to which
    a smooth elastic displacement of standard deviation ``elastic_mm`` is added per axis.
    """

    matrix: np.ndarray          # (3, 3) output LPS -> template LPS, determinant > 0 (no mirroring)
    offset: np.ndarray          # (3,) mm
    elastic_mm: float
    elastic_corr_mm: float
    age_weeks: float
    lung_ml: float              # target total lung volume that sets the scale
    scale: float                # isotropic template-to-patient scale, (lung_ml / REFERENCE_LUNGS_ML)^(1/3)
    aspect: float
    elongation: float
    shear: tuple[float, float, float]

    def summary(self) -> dict[str, float]:
        """The drawn anatomy parameters as plain numbers (for a case's record)."""
        return {"age_weeks": self.age_weeks, "target_lungs_ml": self.lung_ml, "scale": self.scale,
                "aspect": self.aspect, "elongation": self.elongation, "shear_xy": self.shear[0],
                "shear_xz": self.shear[1], "shear_yz": self.shear[2], "elastic_mm": self.elastic_mm,
                "elastic_corr_mm": self.elastic_corr_mm}


def rotation_matrix(rng: np.random.Generator, max_degrees: tuple[float, float, float]) -> np.ndarray:
    """Random rotation about x, y, z, each angle uniform within +-max_degrees."""
    ax, ay, az = np.radians([rng.uniform(-m, m) for m in max_degrees])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def lung_volume_for_age(age_weeks: float) -> float:
    """Total lung volume (mL) of a newborn of this corrected age, log-linear between the anchors."""
    (a0, a1), (v0, v1) = AGE_ANCHORS_WEEKS, LUNG_ANCHORS_ML
    t = (age_weeks - a0) / (a1 - a0)
    return float(math.exp(math.log(v0) + t * (math.log(v1) - math.log(v0))))


def draw_from(rng: np.random.Generator, intervals: tuple[Interval, ...]) -> float:
    """A uniform draw from a union of intervals (each interval weighted by its length)."""
    lengths = np.array([hi - lo for lo, hi in intervals], float)
    which = int(rng.choice(len(intervals), p=lengths / lengths.sum())) if len(intervals) > 1 else 0
    lo, hi = intervals[which]
    return float(rng.uniform(lo, hi))


def family_seed(seed: int, family: str) -> np.random.SeedSequence:
    """The root of all randomness of one case: the families use disjoint spawn keys of the seed."""
    return np.random.SeedSequence(int(seed), spawn_key=(FAMILY_SPAWN_KEYS[family],))


def draw_pose(rng: np.random.Generator, family: str = "train") -> Pose:
    """Draw one newborn's size, chest shape, affine and elastic parameters from ``family``'s ranges.

    The template-to-patient map is ``R @ S @ diag(sx, sy, sz) * scale``: anisotropic factors with
    product 1 (so only ``scale`` changes the volume), ``sx / sy = aspect`` and
    ``sz / sqrt(sx * sy) = elongation``; S is a unit upper-triangular shear; R a rotation.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown variant_family {family!r}: use one of {', '.join(FAMILY_NAMES)}")
    ranges = FAMILIES[family]
    age = draw_from(rng, ranges.age_weeks)
    lung_ml = lung_volume_for_age(age)
    scale = (lung_ml / REFERENCE_LUNGS_ML) ** (1.0 / 3.0)
    aspect = draw_from(rng, ranges.aspect)
    elongation = draw_from(rng, ranges.elongation)
    log_a, log_e = math.log(aspect), math.log(elongation)
    factors = np.exp([0.5 * log_a - log_e / 3.0, -0.5 * log_a - log_e / 3.0, 2.0 * log_e / 3.0])
    shear = tuple(draw_from(rng, ranges.shear) * float(rng.choice([-1.0, 1.0])) for _ in range(3))
    shear_matrix = np.array([[1.0, shear[0], shear[1]], [0.0, 1.0, shear[2]], [0.0, 0.0, 1.0]])
    forward = rotation_matrix(rng, ROTATION_DEGREES) @ shear_matrix @ np.diag(factors * scale)
    offset = rng.uniform(-TRANSLATION_MM, TRANSLATION_MM, 3)
    return Pose(matrix=np.linalg.inv(forward), offset=offset,
                elastic_mm=draw_from(rng, ranges.elastic_mm),
                elastic_corr_mm=draw_from(rng, ranges.elastic_corr_mm), age_weeks=age, lung_ml=lung_ml,
                scale=float(scale), aspect=aspect, elongation=elongation,
                shear=(float(shear[0]), float(shear[1]), float(shear[2])))
