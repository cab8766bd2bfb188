"""Fuzz suite, training folder: a lost manifest, wrong types, identifying metadata and odd subject names must
never lose a case, leak a patient's name or merge two subjects."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from fuzz_helpers import labelled_pair
from fuzz_helpers import hand_nifti
from NeonatalLungSegLib.dataset import training_folder
from NeonatalLungSegLib.errors import InputError, NeonatalLungSegError
from NeonatalLungSegLib.dataset.training_folder import MANIFEST_NAME, add_case, read_training_folder, safe_name
from NeonatalLungSegLib.volumes.volume_io import case_name


pair = labelled_pair


# 1. Loss ----------------------------------------------------------------------------------------------

def test_lost_manifest_is_rebuilt_from_sidecars_not_orphaned(tmp_path: Path) -> None:
    root = tmp_path / "tf"
    first = [add_case(root, *pair(i), f"subject{i}") for i in range(3)]
    (root / MANIFEST_NAME).unlink()
    add_case(root, *pair(9), "subject9")
    ids = {c.case_id for c in read_training_folder(root).cases}
    assert {r.case_id for r in first} <= ids and "subject9_v001" in ids
    again = add_case(root, *pair(1), "subject1")  # versions continue from the rebuilt history
    assert again.version == 2


def test_lost_manifest_is_read_from_sidecars(tmp_path: Path) -> None:
    root = tmp_path / "tf"
    add_case(root, *pair(0), "a", review_status="unreviewed")
    (root / MANIFEST_NAME).unlink()
    folder = read_training_folder(root)
    assert [(c.case_id, c.review_status) for c in folder.cases] == [("a_v001", "unreviewed")]


def test_unreadable_sidecar_without_manifest_is_refused_not_skipped(tmp_path: Path) -> None:
    root = tmp_path / "tf"
    add_case(root, *pair(0), "a")
    add_case(root, *pair(1), "b")
    (root / MANIFEST_NAME).unlink()
    (root / "cases" / "a_v001.json").write_text("{ not json")
    with pytest.raises(InputError, match="a_v001.json"):
        add_case(root, *pair(2), "c")
    assert not (root / MANIFEST_NAME).exists()


def test_written_image_is_verified_before_it_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = sitk.WriteImage

    def short_write(image: sitk.Image, path: str, *args: object, **kwargs: object) -> None:
        real(image, path, *args, **kwargs)
        Path(path).write_bytes(Path(path).read_bytes()[:100])

    monkeypatch.setattr(training_folder.sitk, "WriteImage", short_write)
    with pytest.raises(NeonatalLungSegError, match="verif"):
        add_case(tmp_path / "tf", *pair(0), "a")
    assert not any((tmp_path / "tf" / "images").iterdir())


# 5. Wrong types in a manifest -------------------------------------------------------------------------

@pytest.mark.parametrize("entry", [1, "case", None, {"case_id": 5, "subject": "a", "version": 1, "image": "i",
                                                     "label": "l", "sidecar": "s"},
                                   {"case_id": "a", "subject": "a", "version": "one", "image": "i", "label": "l",
                                    "sidecar": "s"},
                                   {"case_id": "a", "subject": "a", "version": True, "image": "i", "label": "l",
                                    "sidecar": "s"},
                                   {"case_id": "a", "subject": ["a"], "version": 1, "image": "i", "label": "l",
                                    "sidecar": "s"}])
def test_wrong_types_in_a_manifest_are_one_input_error(tmp_path: Path, entry: object) -> None:
    root = tmp_path / "tf"
    add_case(root, *pair(0), "a")
    data = json.loads((root / MANIFEST_NAME).read_text(encoding="utf-8"))
    data["cases"].append(entry)
    (root / MANIFEST_NAME).write_text(json.dumps(data))
    for action in (lambda: read_training_folder(root), lambda: add_case(root, *pair(1), "a")):
        with pytest.raises(InputError, match=MANIFEST_NAME) as caught:
            action()
        assert "\n" not in str(caught.value)


# 2. Privacy -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("image_format", ["nii.gz", "nrrd"])
def test_add_case_strips_the_image_metadata(tmp_path: Path, image_format: str) -> None:
    image, label = pair(0)
    for key, value in (("0010|0010", "Doe^Jane"), ("PatientName", "Doe^Jane"), ("ITK_FileNotes", "Doe^Jane"),
                       ("descrip", "Doe^Jane")):
        image.SetMetaData(key, value)
        label.SetMetaData(key, value)
    record = add_case(tmp_path / "tf", image, label, "a", image_format=image_format)
    for name in (record.image, record.label, record.sidecar):
        raw = (tmp_path / "tf" / name).read_bytes()
        text = gzip.decompress(raw) if name.endswith(".gz") else raw
        assert b"Doe" not in text, name
    back = sitk.ReadImage(str(tmp_path / "tf" / record.image))
    assert "PatientName" not in back.GetMetaDataKeys() and "0010|0010" not in back.GetMetaDataKeys()


@pytest.mark.parametrize("metadata", [{"PatientName": "Doe^Jane"}, {"extra": {"0010|0020": "PID-1"}},
                                      {"patient_birth_date": "20260101"}, {"notes": "x" * 5000},
                                      {"notes": "line\x00break"}, {"thing": object()}, {3: "not a str key"}])
def test_free_text_sidecar_fields_are_checked(tmp_path: Path, metadata: dict) -> None:
    with pytest.raises(ValueError):
        add_case(tmp_path / "tf", *pair(0), "a", metadata=metadata)
    assert not (tmp_path / "tf" / MANIFEST_NAME).exists()


def test_free_text_source_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        add_case(tmp_path / "tf", *pair(0), "a", source="s" * 5000)


# 6. Names ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("first, second", [("患者", "病人"), ("x" * 70 + "1", "x" * 70 + "2"),
                                           ("Müller", "Mäller"), ("ÅÅ", "ÄÄ")])
def test_lossy_subject_names_do_not_merge_subjects(tmp_path: Path, first: str, second: str) -> None:
    assert safe_name(first) != safe_name(second)
    assert len(safe_name(first)) <= 64 and safe_name(first) == safe_name(first)
    a = add_case(tmp_path / "tf", *pair(0), first)
    b = add_case(tmp_path / "tf", *pair(1), second)
    assert a.subject != b.subject and b.version == 1


def test_plain_names_are_unchanged() -> None:
    assert safe_name("case_01") == "case_01" and safe_name("a b/c") == "a_b_c" and safe_name("") == "case"


def test_unicode_file_names_give_distinct_case_names() -> None:
    assert case_name(Path("患者.nii.gz")) != case_name(Path("病人.nii.gz"))
    assert case_name(Path("baby 01.nrrd")) == "baby_01"


def test_truncated_image_in_a_training_folder_is_refused_when_read(tmp_path: Path) -> None:
    root = tmp_path / "tf"
    record = add_case(root, *pair(0, shape=(6, 40, 48)), "a")
    path = root / record.image
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    folder = read_training_folder(root)
    with pytest.raises(InputError, match="truncated"):
        folder.read_case(folder.cases[0])


# 7. Reading: the engine's checked reader, one pass over the bytes it decodes --------------------------

def plain_folder(root: Path, image: tuple[str, bytes], label: tuple[str, bytes]) -> training_folder.TrainingFolder:
    """A training folder of one images/ + labels/ pair, files given by name and bytes."""
    for sub, (name, data) in (("images", image), ("labels", label)):
        (root / sub).mkdir(parents=True, exist_ok=True)
        (root / sub / name).write_bytes(data)
    return read_training_folder(root)


def image_bytes(image: sitk.Image, name: str, tmp_path: Path) -> bytes:
    path = tmp_path / "written" / name
    path.parent.mkdir(exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=name.endswith((".gz", ".mha")))
    return path.read_bytes()


def assert_refused_in_one_line(folder: training_folder.TrainingFolder, needle: str, name: str) -> None:
    with pytest.raises(InputError, match=needle) as caught:
        folder.read_case(folder.cases[0])
    assert name in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("which", ["images", "labels"])
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_bitpix_disagreeing_with_datatype_cannot_hide_a_truncated_case_file(tmp_path: Path, which: str,
                                                                             suffix: str) -> None:
    """bitpix 8 on int16 data: ITK reads the datatype's bytes, the missing half as zeros, without a word."""
    image = np.random.default_rng(0).normal(300, 60, (6, 40, 48)).clip(1, 4000).astype(np.int16)
    label = np.zeros(image.shape, np.uint8)
    label[1:4, 5:20, 5:20] = 1
    files = {"images": hand_nifti(image), "labels": hand_nifti(label)}
    whole = hand_nifti(image if which == "images" else label.astype(np.int16), bitpix=8)
    files[which] = whole[: 352 + (len(whole) - 352) // 2 + 100]
    for key in files:
        files[key] = gzip.compress(files[key]) if suffix == ".nii.gz" else files[key]
    folder = plain_folder(tmp_path / "tf", (f"c1{suffix}", files["images"]), (f"c1{suffix}", files["labels"]))
    assert_refused_in_one_line(folder, "truncated", f"{which}/c1{suffix}")


def _without_spacing(data: bytes) -> bytes:
    start = data.index(b"ElementSpacing")
    return data[:start] + data[data.index(b"\n", start) + 1:]


def _damaged_stream(data: bytes) -> bytes:
    """A compressed MetaImage with bytes in the middle of its zlib stream flipped (the header left whole)."""
    damaged = bytearray(data)
    start = data.index(b"ElementDataFile = LOCAL\n") + len(b"ElementDataFile = LOCAL\n")
    middle = start + (len(data) - start) // 2
    for at in range(middle - 4, middle + 4):
        damaged[at] ^= 0xFF
    return bytes(damaged)


@pytest.mark.parametrize("which, problem, needle", [
    ("images", "no spacing", "spacing"), ("labels", "no spacing", "spacing"),
    ("images", "damaged stream", "damaged|truncated"), ("labels", "damaged stream", "damaged|truncated"),
    ("images", "nan voxels", "NaN")])
def test_case_files_itk_would_read_silently_are_refused_in_one_line(tmp_path: Path, which: str, problem: str,
                                                                     needle: str) -> None:
    """A MetaImage without ElementSpacing reads as 1 mm, a damaged zlib stream as partly wrong voxels, NaN
    voxels of a non-NIfTI image went into training: each is one line naming the file, as ``segment`` says it."""
    image, label = pair(0, shape=(6, 40, 48))
    if problem == "no spacing":  # 1 mm: ITK's guess then agrees with the other file's grid
        image.SetSpacing((1.0, 1.0, 1.0))
        label.SetSpacing((1.0, 1.0, 1.0))
    if problem == "nan voxels":
        array = sitk.GetArrayFromImage(image)
        array[2, 3, 4] = np.nan
        nan_image = sitk.GetImageFromArray(array)
        nan_image.CopyInformation(image)
        image = nan_image
    files = {"images": image_bytes(image, "image.mha", tmp_path), "labels": image_bytes(label, "label.mha", tmp_path)}
    if problem == "no spacing":
        files[which] = _without_spacing(files[which])
    elif problem == "damaged stream":
        files[which] = _damaged_stream(files[which])
    folder = plain_folder(tmp_path / "tf", ("c1.mha", files["images"]), ("c1.mha", files["labels"]))
    assert_refused_in_one_line(folder, needle, f"{which}/c1.mha")


def test_labels_that_do_not_fit_uint8_are_refused_not_wrapped(tmp_path: Path) -> None:
    """A uint16 label of 257 became 1 (right lung) when cast to uint8; a fraction was cut to a whole label."""
    image, label = pair(0)
    for bad in (257, 1.5):
        array = sitk.GetArrayFromImage(label).astype(np.float32 if isinstance(bad, float) else np.uint16)
        array[0, 0, 0] = bad
        wide = sitk.GetImageFromArray(array)
        wide.CopyInformation(image)
        root = tmp_path / f"tf{bad}"
        folder = plain_folder(root, ("c1.nii.gz", image_bytes(image, "i.nii.gz", tmp_path)),
                              ("c1.nii.gz", image_bytes(wide, "l.nii.gz", tmp_path)))
        assert_refused_in_one_line(folder, "label", "labels/c1.nii.gz")


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_single_slice_cases_are_still_read(tmp_path: Path, suffix: str) -> None:
    """CT slices are cases of depth 1 (``prepare-ct``); an empty label is a valid label."""
    image, label = pair(0, shape=(1, 16, 20))
    label = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    label.CopyInformation(image)
    folder = plain_folder(tmp_path / "tf", (f"c1{suffix}", image_bytes(image, f"i{suffix}", tmp_path)),
                          (f"c1{suffix}", image_bytes(label, f"l{suffix}", tmp_path)))
    read_image, read_label = folder.read_case(folder.cases[0])
    assert read_image.GetSize() == (20, 16, 1) and read_image.GetPixelID() == sitk.sitkFloat32
    assert read_label.GetPixelID() == sitk.sitkUInt8 and not sitk.GetArrayViewFromImage(read_label).any()
    assert np.array_equal(sitk.GetArrayViewFromImage(read_image), sitk.GetArrayViewFromImage(image))
