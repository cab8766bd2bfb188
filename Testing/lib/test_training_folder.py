"""The training-folder contract: append-only versions, atomic manifest, safe names, readable by Training."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from NeonatalLungSegLib.errors import InputError
from NeonatalLungSegLib.dataset.training_folder import (MANIFEST_NAME, add_case, read_training_folder,
                                                safe_name)


def _pair(seed: int = 0, shape=(6, 10, 12)) -> tuple[sitk.Image, sitk.Image]:
    rng = np.random.default_rng(seed)
    image = sitk.GetImageFromArray(rng.normal(size=shape).astype(np.float32))
    image.SetSpacing((0.7, 0.8, 1.5))
    image.SetOrigin((1.0, -2.0, 3.0))
    label_array = np.zeros(shape, np.uint8)
    label_array[1:4, 2:6, 1:5] = 1
    label_array[1:4, 2:6, 7:11] = 2
    label = sitk.GetImageFromArray(label_array)
    label.CopyInformation(image)
    return image, label


def test_add_then_read_round_trips_voxels_and_geometry(tmp_path: Path) -> None:
    image, label = _pair()
    record = add_case(tmp_path, image, label, "subject-a", source="test", metadata={"reviewer": "dr x"})
    folder = read_training_folder(tmp_path)
    assert [c.case_id for c in folder.cases] == [record.case_id] == ["subject-a_v001"]
    read_image, read_label = folder.read_case(folder.cases[0])
    assert np.array_equal(sitk.GetArrayFromImage(read_label), sitk.GetArrayFromImage(label))
    assert np.allclose(sitk.GetArrayFromImage(read_image), sitk.GetArrayFromImage(image))
    assert read_label.GetSpacing() == pytest.approx(image.GetSpacing())
    sidecar = folder.read_sidecar(folder.cases[0])
    assert sidecar["reviewer"] == "dr x" and sidecar["labels"] == {"right_lung": 1, "left_lung": 2}
    assert len(folder.manifest_sha256) == 64


def test_second_export_of_a_subject_is_a_new_version_and_nothing_is_overwritten(tmp_path: Path) -> None:
    image, label = _pair()
    first = add_case(tmp_path, image, label, "s")
    before = (tmp_path / first.label).read_bytes()
    second = add_case(tmp_path, image, sitk.Cast(label > 1, sitk.sitkUInt8), "s")
    assert (first.version, second.version) == (1, 2)
    assert (tmp_path / first.label).read_bytes() == before
    folder = read_training_folder(tmp_path)
    assert len(folder.cases) == 2 and [c.version for c in folder.latest_versions()] == [2]


def test_stray_files_from_a_crashed_export_are_skipped_not_overwritten(tmp_path: Path) -> None:
    image, label = _pair()
    add_case(tmp_path, image, label, "s")
    stray = tmp_path / "labels" / "s_v002.nii.gz"
    stray.write_bytes(b"someone's file")
    record = add_case(tmp_path, image, label, "s")
    assert record.version == 3 and stray.read_bytes() == b"someone's file"


def test_subject_names_are_sanitised_so_they_cannot_escape_the_folder(tmp_path: Path) -> None:
    image, label = _pair()
    record = add_case(tmp_path / "tf", image, label, "../../etc/passwd")
    assert "/" not in record.subject and ".." not in record.subject
    assert (tmp_path / "tf" / record.image).is_file()
    assert safe_name("") == "case" and safe_name("a b/c") == "a_b_c"


@pytest.mark.parametrize("problem", ["size", "values", "scheme"])
def test_bad_pairs_are_refused_and_leave_no_files(tmp_path: Path, problem: str) -> None:
    image, label = _pair()
    kwargs = {}
    if problem == "size":
        label = _pair(shape=(6, 10, 13))[1]
    elif problem == "values":
        label = sitk.Cast(label * 3, sitk.sitkUInt8)
    else:
        kwargs["label_scheme"] = "lobes"
    with pytest.raises(ValueError):
        add_case(tmp_path, image, label, "s", **kwargs)
    assert not (tmp_path / MANIFEST_NAME).exists()
    assert not any(p.is_file() and not p.name.startswith(".") for p in tmp_path.rglob("*"))


def test_lung_only_scheme_is_recorded(tmp_path: Path) -> None:
    image, label = _pair()
    add_case(tmp_path, image, sitk.Cast(label > 0, sitk.sitkUInt8), "ct", label_scheme="lung")
    assert read_training_folder(tmp_path).cases[0].label_scheme == "lung"


def test_plain_images_and_labels_folder_is_read_without_a_manifest(tmp_path: Path) -> None:
    image, label = _pair()
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    sitk.WriteImage(image, str(tmp_path / "images" / "c1.nrrd"))
    sitk.WriteImage(label, str(tmp_path / "labels" / "c1.nii.gz"))
    folder = read_training_folder(tmp_path)
    assert [c.case_id for c in folder.cases] == ["c1"]
    folder.read_case(folder.cases[0])


@pytest.mark.parametrize("content", ["not json", json.dumps({"format": "other"}),
                                     json.dumps({"format": "neonatal-lung-training-folder",
                                                 "format_version": 1,
                                                 "cases": [{"case_id": "x", "subject": "x", "version": 1,
                                                            "image": "../../x.nii.gz", "label": "l",
                                                            "sidecar": "s"}]})])
def test_bad_manifests_get_one_clear_error(tmp_path: Path, content: str) -> None:
    (tmp_path / MANIFEST_NAME).write_text(content)
    with pytest.raises(InputError, match=MANIFEST_NAME):
        read_training_folder(tmp_path)


def test_not_a_training_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a training folder"):
        read_training_folder(tmp_path)


def _export_many(root: str, worker: int) -> None:
    image, label = _pair(worker)
    for _ in range(3):
        add_case(root, image, label, "shared", metadata={"worker": worker})


def test_concurrent_exports_keep_the_manifest_consistent(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_export_many, args=(str(tmp_path), w)) for w in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
        assert w.exitcode == 0
    folder = read_training_folder(tmp_path)
    assert sorted(c.version for c in folder.cases) == list(range(1, 10))
    for case in folder.cases:
        assert (tmp_path / case.image).is_file() and (tmp_path / case.sidecar).is_file()
