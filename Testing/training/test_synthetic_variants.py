"""The rich generator: anatomy families, neonatal size, BPD-like lungs, contrasts, artefacts, CLI options.

What these promise matters for the evaluation built on them: held-out anatomy must really lie outside the
training ranges, pathology and artefacts must never move a label, and the right/left label must follow the
patient's physical side under every new deformation. Cases are small (24 x 48 x 48 voxels) to stay fast;
the few atlas cases skip where the GPL-3.0 atlas is absent.
"""

from __future__ import annotations

import json
import math
from dataclasses import fields
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from NeonatalLungSegLib.geometry import image_to_array
from neonatal_lung_training.synthesis import synthesize
from neonatal_lung_training.synthesis.anatomy.procedural import Tissue, procedural_tissue
from neonatal_lung_training.synthesis.neonatal.contrast import CONTRASTS, paint
from neonatal_lung_training.synthesis.anatomy.lung_topology import finalize_lungs
from neonatal_lung_training.synthesis.neonatal.mr_artefacts import low_resolution, radial_streaks
from neonatal_lung_training.synthesis.anatomy.pathology import add_bpd_patterns
from neonatal_lung_training.synthesis.neonatal.generator import (SyntheticCase, _centred_geometry, default_atlas_dir,
                                              generate_case)
from neonatal_lung_training.synthesis.anatomy.variants import (FAMILIES, FAMILY_NAMES, draw_pose, family_seed,
                                             lung_volume_for_age)

ATLAS = default_atlas_dir()
needs_atlas = pytest.mark.skipif(not ATLAS.is_dir(), reason=f"fetal thorax atlas not found at {ATLAS}")
ANATOMIES = ["procedural", pytest.param("atlas", marks=needs_atlas)]
SMALL = {"shape": (24, 48, 48), "spacing": (4.0, 2.9, 2.9)}


@lru_cache(maxsize=None)
def small(seed: int, anatomy: str = "procedural", **options) -> SyntheticCase:
    return generate_case(seed, anatomy=anatomy, atlas_dir=ATLAS if anatomy == "atlas" else None,
                         **SMALL, **options)


def arrays(c: SyntheticCase) -> tuple[np.ndarray, np.ndarray]:
    return image_to_array(c.image)[0], image_to_array(c.label)[0]


def lps_x(label: np.ndarray, value: int, c: SyntheticCase) -> float:
    """Physical LPS x (mm; +x is the patient's left) of a label's centroid, read from the geometry."""
    geometry = image_to_array(c.label)[1]
    return float(geometry.array_index_to_lps(np.argwhere(label == value).mean(axis=0))[0])


def inside(value: float, intervals: tuple[tuple[float, float], ...]) -> bool:
    return any(lo <= value <= hi for lo, hi in intervals)


# ---------------------------------------------------------------------------------------------------
# Families and neonatal size
# ---------------------------------------------------------------------------------------------------

def test_family_ranges_are_disjoint_parameter_by_parameter() -> None:
    train, heldout = FAMILIES["train"], FAMILIES["heldout"]
    for spec in fields(train):
        for lo, hi in getattr(train, spec.name):
            for h_lo, h_hi in getattr(heldout, spec.name):
                assert lo <= hi and h_lo <= h_hi
                assert h_hi < lo or h_lo > hi, f"{spec.name}: [{lo}, {hi}] overlaps [{h_lo}, {h_hi}]"
    assert family_seed(5, "train").entropy == family_seed(5, "heldout").entropy
    assert family_seed(5, "train").spawn_key != family_seed(5, "heldout").spawn_key


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_drawn_poses_stay_in_their_family_and_never_mirror(family: str) -> None:
    rng = np.random.default_rng(0)
    ranges = FAMILIES[family]
    for _ in range(300):
        pose = draw_pose(rng, family)
        assert inside(pose.age_weeks, ranges.age_weeks) and inside(pose.aspect, ranges.aspect)
        assert inside(pose.elongation, ranges.elongation)
        assert all(inside(abs(s), ranges.shear) for s in pose.shear)
        assert inside(pose.elastic_mm, ranges.elastic_mm)
        assert inside(pose.elastic_corr_mm, ranges.elastic_corr_mm)
        assert np.linalg.det(pose.matrix) > 0.0           # a reflection would swap right and left
        forward = np.linalg.inv(pose.matrix)
        assert np.linalg.det(forward) == pytest.approx(pose.scale ** 3, rel=1e-6)


def test_generated_case_records_its_family_parameters() -> None:
    for family in FAMILY_NAMES:
        c = small(2, variant_family=family)
        ranges = FAMILIES[family]
        assert c.variant_family == family
        assert inside(c.parameters["age_weeks"], ranges.age_weeks)
        assert inside(c.parameters["aspect"], ranges.aspect)
    assert not np.array_equal(arrays(small(2))[1], arrays(small(2, variant_family="heldout"))[1])


def test_lung_volume_grows_with_age_within_the_neonatal_range() -> None:
    assert lung_volume_for_age(27.0) == pytest.approx(60.0)
    assert lung_volume_for_age(41.0) == pytest.approx(195.0)
    ages = np.linspace(27.0, 41.0, 15)
    assert np.all(np.diff([lung_volume_for_age(a) for a in ages]) > 0)


def test_measured_lung_volume_follows_the_drawn_size() -> None:
    measured, targets = [], []
    for seed in range(4):
        c = generate_case(seed, shape=(40, 64, 64), spacing=(3.0, 2.4, 2.4), bpd_severity=0.0,
                          artefacts=False)
        _, label = arrays(c)
        voxel_ml = math.prod(c.label.GetSpacing()) / 1000.0
        per_lung = [(label == v).sum() * voxel_ml for v in (1, 2)]
        assert all(20.0 < v < 130.0 for v in per_lung), per_lung
        measured.append(sum(per_lung))
        targets.append(c.parameters["target_lungs_ml"])
    ratio = np.asarray(measured) / np.asarray(targets)
    assert np.all((ratio > 0.7) & (ratio < 1.35)), ratio


# ---------------------------------------------------------------------------------------------------
# Right / left under the new deformations
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("anatomy", ANATOMIES)
@pytest.mark.parametrize("family", FAMILY_NAMES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_label_1_stays_on_the_patients_right(anatomy: str, family: str, seed: int) -> None:
    c = small(seed, anatomy, variant_family=family)
    _, label = arrays(c)
    assert set(np.unique(label).tolist()) == {0, 1, 2}
    assert lps_x(label, 1, c) < -5.0 < 5.0 < lps_x(label, 2, c)


# ---------------------------------------------------------------------------------------------------
# BPD-like lungs
# ---------------------------------------------------------------------------------------------------

def test_bpd_patterns_lie_inside_the_label_and_leave_it_unchanged() -> None:
    geometry = _centred_geometry((32, 64, 64), (3.0, 2.2, 2.2))
    rng = np.random.default_rng(4)
    tissue = procedural_tissue(rng, geometry, touching=False)
    label = finalize_lungs(tissue, geometry, rng, touching=False)
    before_tissue, before_label = tissue.copy(), label.copy()
    record = add_bpd_patterns(tissue, label, geometry, rng, severity=1.0)
    assert np.array_equal(label, before_label)
    for t in (Tissue.ATELECTASIS, Tissue.CYST, Tissue.INTERSTITIAL):
        assert np.any(tissue == t), t.name
        assert np.all(label[tissue == t] > 0), t.name
    changed = tissue != before_tissue
    assert np.all(label[changed] > 0) and not np.any(before_tissue[changed] == Tissue.VESSEL)
    assert 0.05 < record["atelectasis_fraction"] < 0.4 and record["cysts"] >= 1
    assert add_bpd_patterns(before_tissue.copy(), label, geometry, rng, 0.0)["atelectasis_fraction"] == 0.0


def test_bpd_severity_changes_the_image_not_the_label() -> None:
    plain, severe = small(3, bpd_severity=0.0, artefacts=False), small(3, bpd_severity=1.0, artefacts=False)
    (image_0, label_0), (image_1, label_1) = arrays(plain), arrays(severe)
    assert np.array_equal(label_0, label_1)
    lungs = label_0 > 0
    # Dense patches brighten the lungs on UTE; the label still covers them.
    assert image_1[lungs].mean() > 1.1 * image_0[lungs].mean()
    assert severe.parameters["bpd_severity"] == 1.0 and plain.parameters["cysts"] == 0.0


def test_cysts_are_dark_and_dense_patches_bright_on_ute() -> None:
    geometry = _centred_geometry((32, 64, 64), (3.0, 2.2, 2.2))
    rng = np.random.default_rng(8)
    tissue = procedural_tissue(rng, geometry, touching=False)
    label = finalize_lungs(tissue, geometry, rng, touching=False)
    add_bpd_patterns(tissue, label, geometry, rng, severity=1.0)
    image = paint(tissue, geometry, rng, "ute")
    lung = image[np.isin(tissue, (Tissue.LUNG_RIGHT, Tissue.LUNG_LEFT))].mean()
    assert image[tissue == Tissue.CYST].mean() < 0.6 * lung
    assert image[tissue == Tissue.ATELECTASIS].mean() > 2.0 * lung


# ---------------------------------------------------------------------------------------------------
# Contrasts and artefacts
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("contrast", CONTRASTS)
def test_every_contrast_is_deterministic_and_keeps_the_label(contrast: str) -> None:
    c = small(5, contrast=contrast, bpd_severity=0.5)
    again = generate_case(5, contrast=contrast, bpd_severity=0.5, **SMALL)
    assert np.array_equal(arrays(c)[0], arrays(again)[0]) and c.contrast == contrast
    assert np.array_equal(arrays(c)[1], arrays(small(5, bpd_severity=0.5))[1])
    image = arrays(c)[0]
    assert image.dtype == np.float32 and np.all(np.isfinite(image)) and image.min() >= 0.0


def test_randomized_contrast_changes_intensities_but_not_labels() -> None:
    ute, label = arrays(small(6, artefacts=False))
    ratios = []
    for seed in (6, 7, 8):
        randomized, randomized_label = arrays(small(seed, contrast="randomized", artefacts=False))
        if seed == 6:
            assert np.array_equal(randomized_label, label)
            assert not np.allclose(randomized, ute, rtol=0.2)
        lungs = randomized_label > 0
        body = ndimage.binary_dilation(lungs, iterations=3) & ~lungs
        ratios.append(randomized[lungs].mean() / randomized[body].mean())
    # The lung-to-surroundings contrast itself is random: not always dark lungs, as on UTE.
    assert max(ratios) / min(ratios) > 1.3, ratios


def test_t2_haste_has_bright_fluid_and_dark_blood() -> None:
    geometry = _centred_geometry((32, 64, 64), (3.0, 2.2, 2.2))
    rng = np.random.default_rng(2)
    tissue = procedural_tissue(rng, geometry, touching=False)
    finalize_lungs(tissue, geometry, rng, touching=False)
    image = paint(tissue, geometry, rng, "t2_haste")

    def mean(t: Tissue) -> float:
        return float(image[tissue == t].mean())

    assert mean(Tissue.SPINAL_CANAL) > 3.0 * mean(Tissue.LUNG_RIGHT)
    assert mean(Tissue.BLOOD) < mean(Tissue.MYOCARDIUM) < mean(Tissue.FAT)


def test_artefacts_change_the_image_not_the_label() -> None:
    for seed in (9, 10):
        clean, with_artefacts = small(seed, artefacts=False), small(seed, artefacts=True)
        assert np.array_equal(arrays(clean)[1], arrays(with_artefacts)[1])
        assert not np.allclose(arrays(clean)[0], arrays(with_artefacts)[0])
        assert "bias_strength" in with_artefacts.parameters and "bias_strength" not in clean.parameters


def test_radial_streaks_and_low_resolution_keep_the_grid() -> None:
    image = np.zeros((5, 33, 31), np.float32)
    image[:, 10:20, 8:22] = 800.0
    streaky, record = radial_streaks(image, np.array([3.0, 1.0, 1.2]), np.random.default_rng(0))
    assert streaky.shape == image.shape and streaky.dtype == np.float32
    assert streaky[:, :4, :4].mean() > 0.0 and record["radial_spokes"] >= 8
    coarse, drawn = low_resolution(image, np.random.default_rng(1))
    assert coarse.shape == image.shape
    assert 1.0 <= drawn["slice_factor"] <= 2.5 and coarse.max() <= 800.0 + 1e-3


# ---------------------------------------------------------------------------------------------------
# Arguments and the command line
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    ({"contrast": "flair"}, "unknown contrast"),
    ({"variant_family": "test"}, "unknown variant_family"),
    ({"bpd_severity": 1.5}, "bpd_severity"),
    ({"bpd_severity": -0.1}, "bpd_severity"),
    ({"bpd_severity": math.nan}, "bpd_severity"),
    ({"bpd_severity": "severe"}, "bpd_severity"),
    ({"bpd_severity": True}, "bpd_severity"),
    ({"artefacts": "yes"}, "artefacts"),
])
def test_bad_new_arguments_raise_value_error(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_case(0, **SMALL, **kwargs)


@pytest.mark.parametrize("seed", [-1, 1.5, "3", None])
def test_bad_seed_raises_value_error(seed: object) -> None:
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        generate_case(seed, **SMALL)


def test_synthesize_exposes_the_new_options(tmp_path: Path) -> None:
    args = ["-o", str(tmp_path), "--cases", "1", "--seed", "4", "--shape", "16", "40", "40",
            "--spacing", "6", "3.4", "3.4", "--contrast", "randomized", "--variant-family", "heldout",
            "--bpd-severity", "0.8", "--no-artefacts", "--touching-lungs", "no"]
    assert synthesize.main(args) == 0
    record = json.loads((tmp_path / "parameters" / "synthetic-000004.json").read_text(encoding="utf-8"))
    assert record["contrast"] == "randomized" and record["variant_family"] == "heldout"
    assert record["parameters"]["bpd_severity"] == 0.8 and record["artefacts"] is False
    assert record["parameters"]["touching_lungs"] is False
    assert inside(record["parameters"]["age_weeks"], FAMILIES["heldout"].age_weeks)
    assert (tmp_path / "images" / "synthetic-000004.nii.gz").is_file()
    assert synthesize.main(args) == 2                   # never overwrites
    assert synthesize.main(["-o", str(tmp_path / "b"), "--bpd-severity", "2"]) == 2
