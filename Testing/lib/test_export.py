"""NeonatalLungSegLib.dataset.export: the training-folder export behind the Slicer module (no Slicer needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from NeonatalLungSegLib.dataset import export
from NeonatalLungSegLib.geometry import Geometry
from NeonatalLungSegLib.dataset.training_folder import read_training_folder

GEOMETRY = Geometry(size=(12, 10, 8), spacing=(0.7, 0.8, 1.5), origin=(-10.0, 20.0, 5.0),
                    direction=(-1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, -1.0, 0.0))


@pytest.fixture
def case():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 400, GEOMETRY.array_shape).astype(np.int16)
    labels = np.zeros(GEOMETRY.array_shape, np.uint8)
    labels[2:6, 2:8, 1:5] = 1
    labels[2:6, 2:8, 7:11] = 2
    return image, labels


def test_fingerprint_depends_on_voxels_and_geometry_only(case):
    image, _ = case
    first = export.source_fingerprint(image, GEOMETRY)
    assert first == export.source_fingerprint(image.copy(), GEOMETRY)
    changed = image.copy()
    changed[0, 0, 0] += 1
    assert export.source_fingerprint(changed, GEOMETRY) != first
    moved = Geometry(GEOMETRY.size, GEOMETRY.spacing, (-10.0, 20.0, 5.5), GEOMETRY.direction)
    assert export.source_fingerprint(image, moved) != first
    assert export.subject_for(first) == "vol-" + first[:16]


def test_change_summary_counts_what_the_reviewer_changed(case):
    _, ai = case
    corrected = ai.copy()
    corrected[2, 2:8, 1:5] = 0          # 24 voxels erased from the right lung
    corrected[6, 2:8, 7:11] = 2         # 24 voxels painted onto the left lung
    corrected[3, 2, 1] = 2              # one voxel moved from right to left
    summary = export.change_summary(ai, corrected, {"right_lung": 1, "left_lung": 2})
    assert summary["voxels_removed"] == {"right_lung": 25, "left_lung": 0, "lungs": 24}
    assert summary["voxels_added"] == {"right_lung": 0, "left_lung": 25, "lungs": 24}
    right_before, right_after = 96, 71
    assert summary["dice"]["right_lung"] == pytest.approx(2 * 71 / (right_before + right_after), abs=1e-6)
    assert summary["unchanged"] is False
    assert export.change_summary(ai, ai, {"right_lung": 1, "left_lung": 2})["unchanged"] is True


def test_export_writes_verifies_and_appends_versions(case, tmp_path):
    image, labels = case
    ai = labels.copy()
    ai[5] = 0
    result = export.export_case(tmp_path, image, labels, GEOMETRY, reviewer="Dr A",
                                model={"name": "m", "version": "1.2.3"}, ai_labels=ai)
    assert result.record.case_id.startswith("vol-") and result.record.version == 1
    assert np.array_equal(result.label, labels)
    written = sitk.ReadImage(str(result.label_path))
    assert np.array_equal(sitk.GetArrayFromImage(written), labels)
    assert np.allclose(written.GetDirection(), GEOMETRY.direction) and np.allclose(written.GetOrigin(), GEOMETRY.origin)
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(result.image_path))).dtype == np.int16
    sidecar = json.loads((tmp_path / result.record.sidecar).read_text(encoding="utf-8"))
    assert sidecar["reviewer"] == "Dr A" and sidecar["model"]["version"] == "1.2.3"
    assert sidecar["source_sha256"] == export.source_fingerprint(image, GEOMETRY)
    assert sidecar["changes_from_ai"]["voxels_added"]["lungs"] == int((labels[5] > 0).sum())
    assert sidecar["volumes"]["right_lung"]["voxels"] == int((labels == 1).sum())
    again = export.export_case(tmp_path, image, labels, GEOMETRY, reviewer="Dr A")
    assert again.record.version == 2 and again.sidecar["changes_from_ai"] is None
    assert [c.version for c in read_training_folder(tmp_path).cases] == [1, 2]


def test_export_refuses_bad_input_before_writing(case, tmp_path):
    image, labels = case
    with pytest.raises(ValueError, match="reviewer"):
        export.export_case(tmp_path / "a", image, labels, GEOMETRY, reviewer=" ")
    bad = labels.copy()
    bad[0, 0, 0] = 3
    with pytest.raises(ValueError, match="do not fit scheme"):
        export.export_case(tmp_path / "b", image, bad, GEOMETRY, reviewer="Dr A")
    with pytest.raises(ValueError, match="does not match geometry"):
        export.export_case(tmp_path / "c", image[:-1], labels[:-1], GEOMETRY, reviewer="Dr A")
    assert not any((tmp_path / d).exists() for d in "abc")


def test_verification_catches_a_label_that_differs_on_disk(case, tmp_path):
    image, labels = case
    result = export.export_case(tmp_path, image, labels, GEOMETRY, reviewer="Dr A")
    swapped = np.where(labels == 1, 2, np.where(labels == 2, 1, 0)).astype(np.uint8)
    with pytest.raises(export.ExportVerificationError, match="voxels differ"):
        export.verify_case(tmp_path, result.record, image, swapped, GEOMETRY)
    shifted = Geometry(GEOMETRY.size, GEOMETRY.spacing, (-10.0, 20.0, 7.0), GEOMETRY.direction)
    with pytest.raises(export.ExportVerificationError, match="origin"):
        export.verify_case(tmp_path, result.record, image, labels, shifted)
