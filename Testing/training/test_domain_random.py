"""Domain-randomised generator (Training/neonatal_lung_training/synthesis): ranges, geometry, labels.

Volumes are kept small with range overrides (``SMALL``) so the whole file runs in well under a minute on
one core; the default ranges only differ in the voxel budget.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from neonatal_lung_training.anatomy import Tissue
from neonatal_lung_training.synthesis import DEFAULT_RANGES, generate_random_case
from neonatal_lung_training.synthesis.body import GAS
from neonatal_lung_training.synthesis.generator import _generate

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
