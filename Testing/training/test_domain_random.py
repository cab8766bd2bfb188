"""Domain-randomised generator (Training/neonatal_lung_training/synthesis): ranges, geometry, labels.

Volumes are kept small with range overrides (``SMALL``) so the whole file runs in well under a minute on
one core; the default ranges only differ in the voxel budget.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from neonatal_lung_training.synthesis.anatomy.procedural import Tissue
from neonatal_lung_training.synthesis.randomised import DEFAULT_RANGES, generate_random_case
from neonatal_lung_training.synthesis.randomised.body import GAS
from neonatal_lung_training.synthesis.randomised.generator import _generate

SMALL = {"in_plane_matrix": (24, 64), "max_voxels": 120_000, "max_slices": 60, "total_lung_ml_log": (40.0, 500.0)}


def _arrays(case):
    return sitk.GetArrayFromImage(case.image), sitk.GetArrayFromImage(case.label)


def _physical_centroid(label_image: sitk.Image, value: int) -> np.ndarray:
    array = sitk.GetArrayFromImage(label_image)
    index = np.argwhere(array == value)[:, ::-1].astype(float)       # (i, j, k)
    direction = np.asarray(label_image.GetDirection()).reshape(3, 3)
    points = np.asarray(label_image.GetOrigin()) + (index * np.asarray(label_image.GetSpacing())) @ direction.T
    return points.mean(axis=0)


def test_same_seed_gives_identical_case_and_other_seeds_differ():
    a = generate_random_case(7, **SMALL)
    b = generate_random_case(7, **SMALL)
    c = generate_random_case(8, **SMALL)
    assert np.array_equal(_arrays(a)[0], _arrays(b)[0]) and np.array_equal(_arrays(a)[1], _arrays(b)[1])
    assert a.image.GetDirection() == b.image.GetDirection() and a.parameters == b.parameters
    assert a.parameters != c.parameters


def test_image_and_label_share_geometry_and_types():
    case = generate_random_case(3, **SMALL)
    assert case.image.GetPixelID() == sitk.sitkFloat32 and case.label.GetPixelID() == sitk.sitkUInt8
    for getter in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"):
        assert getattr(case.image, getter)() == getattr(case.label, getter)()
    assert set(np.unique(_arrays(case)[1])) <= {0, 1, 2}


@pytest.mark.parametrize("orientation", ["axial", "coronal", "sagittal"])
def test_right_lung_is_on_the_patients_right_in_every_orientation(orientation):
    for seed in range(4):
        case = generate_random_case(seed, orientation=orientation, **SMALL)
        right, left = _physical_centroid(case.label, 1), _physical_centroid(case.label, 2)
        assert right[0] < left[0], (seed, orientation, case.parameters["direction"])   # LPS: +x = left


def test_right_lung_stays_right_on_oblique_flipped_swapped_grids():
    for seed in range(8):
        case = generate_random_case(seed, oblique_probability=1.0, axis_flip_probability=0.5,
                                    swap_in_plane_probability=0.5, **SMALL)
        assert _physical_centroid(case.label, 1)[0] < _physical_centroid(case.label, 2)[0], seed
        direction = np.asarray(case.image.GetDirection()).reshape(3, 3)
        assert not np.allclose(np.abs(direction), np.eye(3), atol=0.05)        # really oblique


def test_gas_and_airway_are_never_labelled():
    for seed in range(3):
        debug: dict = {}
        _generate(seed, "train", {**SMALL, "stomach_gas_probability": 1.0, "bowel_gas_probability": 1.0},
                  debug)
        tissue, label = debug["canonical_tissue"], debug["canonical_label"]
        assert (tissue == GAS).any()
        for never in (GAS, Tissue.AIRWAY, Tissue.MYOCARDIUM, Tissue.BLOOD, Tissue.LIVER):
            assert not (label[tissue == never] > 0).any(), never


def test_draws_stay_in_their_ranges():
    r = DEFAULT_RANGES
    for seed in range(12):
        p = generate_random_case(seed, **SMALL).parameters
        assert SMALL["total_lung_ml_log"][0] <= p["total_lung_ml"] <= SMALL["total_lung_ml_log"][1]
        assert r.slice_thickness_mm_log[0] <= p["slice_thickness_mm"] <= r.slice_thickness_mm_log[1]
        assert all(r.in_plane_mm_log[0] <= s <= r.in_plane_mm_log[1] for s in p["in_plane_mm"])
        assert np.prod(p["size"]) <= SMALL["max_voxels"] * 1.05


# ----------------------------------------------------------------------------------------------------
# Every randomisation axis draws inside its documented range (cheap draws, many seeds)
# ----------------------------------------------------------------------------------------------------

from neonatal_lung_training.synthesis.randomised.acquisition import apply_artefacts, draw_grid  # noqa: E402
from neonatal_lung_training.synthesis.randomised.contrast import (BODY_TISSUES, LUNG, PROTON_FREE,  # noqa: E402
                                                                  draw_tables)
from neonatal_lung_training.synthesis.neonatal.mr_artefacts import RADIAL_UNDERSAMPLING  # noqa: E402
from neonatal_lung_training.synthesis.randomised.generator import (acquired_geometry, draw_subject,  # noqa: E402
                                                        to_acquired)
from neonatal_lung_training.synthesis.randomised.ranges import (CONTRAST_MODES, FAMILY_SHAPES,  # noqa: E402
                                                     ORIENTATIONS, DomainRanges)
from NeonatalLungSegLib.geometry import Geometry  # noqa: E402


def _inside(value: float, intervals) -> bool:
    if isinstance(intervals[0], (int, float)):
        intervals = (intervals,)
    return any(lo - 1e-9 <= value <= hi + 1e-9 for lo, hi in intervals)


@pytest.mark.parametrize("family", ["train", "heldout"])
def test_subject_axes_stay_in_range(family):
    r = DEFAULT_RANGES.with_family(family)
    seen_arms, seen_fat = set(), []
    for seed in range(300):
        d = draw_subject(np.random.default_rng(seed), r, {})
        assert _inside(d["total_lung_ml"], r.total_lung_ml_log)
        for name in ("aspect", "elongation", "elastic_rel", "elastic_corr_rel"):
            assert _inside(d[name], getattr(r, name)), name
        assert all(_inside(abs(s), r.shear) for s in d["shear"])
        assert all(abs(t) <= m for t, m in zip(d["tilt_deg"], r.rotation_deg))
        assert d["extra_fat_rel"] == 0.0 or _inside(d["extra_fat_rel"], r.extra_fat_rel)
        for name in ("arm_radius_rel", "arm_gap_rel", "arm_ap_offset_rel", "neck_radius_rel", "shoulder_rel",
                     "bowel_fluid_fraction", "spleen_size_rel", "bronchus_length_mm"):
            assert _inside(d[name], getattr(r, name)), name
        for name in ("stomach_gas_fraction", "bowel_gas_fraction"):
            assert d[name] == 0.0 or _inside(d[name], getattr(r, name)), name
        seen_arms.add(d["arms"])
        seen_fat.append(d["extra_fat_rel"])
    assert seen_arms == {True, False} and min(seen_fat) == 0.0 and max(seen_fat) > 0.2
    sizes = [draw_subject(np.random.default_rng(s), r, {})["total_lung_ml"] for s in range(300)]
    assert min(sizes) < 80 and max(sizes) > 3000           # newborn and adult both drawn


def test_family_shape_intervals_are_disjoint():
    for name, train in FAMILY_SHAPES["train"].items():
        for lo, hi in FAMILY_SHAPES["heldout"][name]:
            assert all(hi < t_lo or lo > t_hi for t_lo, t_hi in train), name


def test_grid_axes_stay_in_range():
    r = DEFAULT_RANGES
    seen = set()
    for seed in range(300):
        rng = np.random.default_rng(seed)
        scale = float(np.exp(rng.uniform(np.log(0.7), np.log(4.0))))
        grid, rec = draw_grid(rng, r, np.array([60.0, 45.0]) * scale, 55.0 * scale, 10.0 * scale)
        seen.add(grid.orientation)
        assert all(_inside(s, r.in_plane_mm_log) for s in grid.spacing[:2])
        assert _inside(grid.spacing[2], r.slice_thickness_mm_log)
        assert grid.size[2] <= r.max_slices + 1 and np.prod(grid.size) <= r.max_voxels * 1.05
        assert all(abs(a) <= r.oblique_deg for a in rec["oblique_deg"])
        assert np.allclose(grid.direction.T @ grid.direction, np.eye(3))          # orthonormal
        assert _inside(rec["fov_si_centre_rel"], r.fov_si_centre_rel)
        assert rec["wrap_rel"] == 0.0 or _inside(rec["wrap_rel"], r.wrap_rel)
        assert rec["wrap_fov_rel"] is None or _inside(rec["wrap_fov_rel"], r.wrap_fov_rel)
        seen.add(("wrap", rec["wrap"]))
    assert seen >= set(ORIENTATIONS) | {("wrap", True), ("wrap", False)}


def test_contrast_axes_stay_in_range():
    r = DEFAULT_RANGES
    modes = set()
    for seed in range(300):
        rng = np.random.default_rng(seed)
        mode = CONTRAST_MODES[seed % len(CONTRAST_MODES)]
        mean, spread, rec = draw_tables(rng, mode, r)
        modes.add(mode)
        assert mean[LUNG[0]] == mean[LUNG[1]]                       # intensity never tells the side
        assert all(_inside(mean[c], r.gas_mean) for c in PROTON_FREE)
        assert np.all(spread >= 0) and np.all(spread <= r.tissue_spread_rel[1])
        if mode == "random":
            assert all(_inside(m, r.random_mean) for m in mean)
            if rec["lung_darkest"]:
                assert _inside(mean[LUNG[0]], r.lung_dark_mean)
                assert mean[LUNG[0]] + rec["dark_margin"] <= min(mean[list(BODY_TISSUES)]) + 1e-3
    assert modes == set(CONTRAST_MODES)


def test_artefact_axes_stay_in_range():
    r = DEFAULT_RANGES
    base = np.full((12, 24, 24), 500.0, np.float32)
    radial_seen = set()
    for seed in range(40):
        _, rec = apply_artefacts(base.copy(), np.array([3.0, 2.0, 2.0]), np.random.default_rng(seed), r,
                                 radial=seed % 2 == 0)
        radial_seen.add("radial_undersampling" in rec)
        assert _inside(rec["psf_sigma_vox"], r.psf_sigma_vox) and _inside(rec["bias_strength"], r.bias_strength)
        assert rec["extra_slice_blur_vox"] == 0.0 or _inside(rec["extra_slice_blur_vox"], r.extra_slice_blur_vox)
        assert _inside(rec["noise_rel"], r.noise_rel) and _inside(np.log(rec["gamma"]), r.log_gamma)
        assert _inside(rec["intensity_scale"], r.intensity_scale)
        if "breathing_mm" in rec:
            assert _inside(rec["breathing_mm"], r.breathing_mm)
        if "ghost_strength" in rec:
            assert _inside(rec["ghost_strength"], r.ghost_strength)
        if "radial_undersampling" in rec:
            assert _inside(rec["radial_undersampling"], RADIAL_UNDERSAMPLING)
        if "coil_floor" in rec:
            assert _inside(rec["coil_floor"], r.coil_floor)
            assert r.coil_elements[0] <= rec["coil_elements"] <= r.coil_elements[1]


    assert radial_seen == {True, False}


def test_unknown_override_and_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown override"):
        generate_random_case(0, not_an_axis=1)
    with pytest.raises(ValueError, match="family"):
        generate_random_case(0, "test")
    with pytest.raises(ValueError, match="seed"):
        generate_random_case(-1)
    with pytest.raises(ValueError, match="orientation"):
        generate_random_case(0, orientation="oblique")


# ----------------------------------------------------------------------------------------------------
# Labels move with their images under every spatial transform
# ----------------------------------------------------------------------------------------------------

def test_acquired_voxels_sit_where_the_canonical_voxels_were():
    """Every grid (orientation, flips, swaps, oblique, anisotropic): a tagged canonical voxel lands at
    the same patient position in the acquired volume, read through its direction matrix."""
    for seed in range(40):
        rng = np.random.default_rng(seed)
        grid, _ = draw_grid(rng, DomainRanges(max_voxels=40_000, in_plane_matrix=(12, 40)),
                            np.array([80.0, 60.0]), 90.0, 10.0)
        centre = grid.oblique.T @ grid.centre
        size_c = [grid.size[grid.axes.index(c)] for c in range(3)]
        spacing_c = [grid.spacing[grid.axes.index(c)] for c in range(3)]
        origin_c = [centre[c] - (size_c[c] - 1) / 2.0 * spacing_c[c] for c in range(3)]
        canonical = Geometry(tuple(size_c), tuple(spacing_c), tuple(origin_c), (1, 0, 0, 0, 1, 0, 0, 0, 1))
        tags = np.arange(np.prod(canonical.array_shape)).reshape(canonical.array_shape)
        translation = rng.uniform(-50, 50, 3)
        acquired = to_acquired(tags, grid)
        geometry = acquired_geometry(grid, centre, translation)
        assert acquired.shape == geometry.array_shape
        for m in rng.integers(0, tags.size, 20):
            kji_c = np.array(np.unravel_index(m, tags.shape))
            kji_a = np.argwhere(acquired == m)[0]
            expected = grid.oblique @ canonical.array_index_to_lps(kji_c) + translation
            assert np.allclose(geometry.array_index_to_lps(kji_a), expected, atol=1e-6)


@pytest.mark.parametrize("mode", ["ute", "gradient_echo"])
def test_labelled_lung_is_darker_than_the_body_around_it_on_every_grid(mode):
    """Image and label agree after the whole chain (slab averaging, coarsening, reorientation)."""
    from scipy import ndimage

    for seed in range(6):
        case = generate_random_case(seed, contrast_mode=mode, wrap_probability=0.0, **SMALL)
        image, label = _arrays(case)
        lung = label > 0
        ring = ndimage.binary_dilation(lung, iterations=2) & ~lung & (image > np.percentile(image, 30))
        assert np.median(image[lung]) < np.median(image[ring]), (seed, case.parameters["orientation"])


def test_cli_writes_a_training_folder_that_does_not_depend_on_the_worker_count(tmp_path):
    from NeonatalLungSegLib.dataset.training_folder import read_training_folder
    from neonatal_lung_training.synthesis.synthesize import main

    for workers in (1, 2):
        assert main(["--domain-random", "-o", str(tmp_path / f"w{workers}"), "--cases", "2", "--seed", "5",
                     "--family", "heldout", "--workers", str(workers)]) == 0
    one, two = (read_training_folder(tmp_path / f"w{w}") for w in (1, 2))
    assert [c.case_id for c in one.cases] == [c.case_id for c in two.cases] == \
        ["dr-heldout-0000005_v001", "dr-heldout-0000006_v001"]
    for a, b in zip(one.cases, two.cases):
        for part in ("image", "label"):
            x = sitk.ReadImage(str(one.root / getattr(a, part)))
            y = sitk.ReadImage(str(two.root / getattr(b, part)))
            assert np.array_equal(sitk.GetArrayFromImage(x), sitk.GetArrayFromImage(y))
            assert x.GetDirection() == y.GetDirection()
    assert main(["--domain-random", "-o", str(tmp_path / "w1"), "--cases", "1"]) != 0   # never overwrites
