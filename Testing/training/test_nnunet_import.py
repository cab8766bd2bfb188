"""Labelled data in and out: nnU-Net raw datasets and image/mask pairs become training folders through
``add_case`` (``import-cases``), and a training folder becomes an nnU-Net raw dataset (``export-nnunet``).
Real SimpleITK files throughout; the real ventilation MRI slices where they are present."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from NeonatalLungSegLib.cli.main import main
from NeonatalLungSegLib.dataset.training_folder import add_case, read_training_folder
from neonatal_lung_training.locations import shared_data

VENTILATION = shared_data("ventilation-mri-slices")
# A rotated, anisotropic grid (LPS direction about z by 30 degrees) so geometry errors cannot hide.
COS, SIN = np.cos(np.pi / 6), np.sin(np.pi / 6)
GRID = {"spacing": (0.8, 0.9, 2.5), "origin": (-40.5, 12.25, 7.0),
        "direction": (COS, -SIN, 0.0, SIN, COS, 0.0, 0.0, 0.0, 1.0)}


def write(path: Path, array: np.ndarray, spacing=GRID["spacing"], origin=GRID["origin"],
          direction=GRID["direction"]) -> Path:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing[:array.ndim])
    image.SetOrigin(origin[:array.ndim])
    if array.ndim == 3:
        image.SetDirection(direction)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=True)
    return path


def case_arrays(seed: int, shape=(6, 20, 24)) -> tuple[np.ndarray, np.ndarray]:
    """An int16 image and a label with right (1), left (2) and trachea (3) blobs."""
    rng = np.random.default_rng(seed)
    image = rng.integers(-200, 900, shape).astype(np.int16)
    label = np.zeros(shape, np.uint8)
    label[1:5, 4:15, 2:10] = 1
    label[1:5, 4:15, 14:22] = 2
    label[0:3, 0:3, 11:13] = 3
    return image, label


def nnunet_dataset(root: Path, n: int = 3, labels: dict | None = None, **meta) -> Path:
    for index in range(n):
        image, label = case_arrays(index)
        write(root / "imagesTr" / f"BPD_{index:03d}_0000.nii.gz", image)
        write(root / "labelsTr" / f"BPD_{index:03d}.nii.gz", label)
    data = {"channel_names": {"0": "MRI"}, "file_ending": ".nii.gz", "numTraining": n,
            "labels": labels or {"background": 0, "Right Lung": 1, "lung_left": 2, "trachea": 3}, **meta}
    (root / "dataset.json").write_text(json.dumps(data), encoding="utf-8")
    return root


def refused(capsys: pytest.CaptureFixture, argv: list[str], *, says: str, output: Path) -> None:
    """One ``error:`` line, status 2, no output and no staging folder left beside it."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and says in err, err
    if not output.is_dir() or not any(output.iterdir()):
        assert not any(p.name.startswith(f".{output.name}.") for p in output.parent.iterdir())


def test_nnunet_round_trip_keeps_voxels_geometry_and_subjects(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    source = nnunet_dataset(tmp_path / "Dataset777_BPD")
    folder_path = tmp_path / "folder"
    assert main(["import-cases", "-o", str(folder_path), "--nnunet", str(source), "--reviewer", "Dr Alice Smith"]) == 0
    out = capsys.readouterr().out
    assert "3 case(s) of 3 subject(s)" in out and "3 trachea -> background" in out
    folder = read_training_folder(folder_path)
    assert [c.case_id for c in folder.cases] == ["BPD_000_v001", "BPD_001_v001", "BPD_002_v001"]
    assert {(c.review_status, c.label_scheme) for c in folder.cases} == {("reference", "right_left")}
    assert "trachea -> background" in folder.description
    sidecar = folder.read_sidecar(folder.cases[0])
    assert sidecar["labels_made_background"] == [3] and sidecar["reviewer"] == "Dr Alice Smith"
    assert sidecar["label_mapping"]["1"] == {"label": "right lung", "to": "right_lung"}
    assert sidecar["label_mapping"]["3"] == {"label": "trachea", "to": "background"}
    image, label = folder.read_case(folder.cases[1])
    want_image, want_label = case_arrays(1)
    assert np.array_equal(sitk.GetArrayFromImage(image), want_image)
    assert np.array_equal(sitk.GetArrayFromImage(label), np.where(want_label == 3, 0, want_label))

    exported = tmp_path / "Dataset501_NeonatalLung"
    assert main(["export-nnunet", str(folder_path), "-o", str(exported), "--reviewed-only"]) == 0
    meta = json.loads((exported / "dataset.json").read_text(encoding="utf-8"))
    assert meta["channel_names"] == {"0": "MRI"} and meta["file_ending"] == ".nii.gz"
    assert meta["labels"] == {"background": 0, "right_lung": 1, "left_lung": 2} and meta["numTraining"] == 3
    assert meta["name"] == "Dataset501_NeonatalLung"
    assert meta["neonatal_lung_seg"]["training_folder_manifest_sha256"] == folder.manifest_sha256
    for index in range(3):
        before = sitk.ReadImage(str(source / "imagesTr" / f"BPD_{index:03d}_0000.nii.gz"))
        after = sitk.ReadImage(str(exported / "imagesTr" / f"BPD_{index:03d}_v001_0000.nii.gz"))
        mask = sitk.ReadImage(str(exported / "labelsTr" / f"BPD_{index:03d}_v001.nii.gz"))
        assert after.GetPixelID() == before.GetPixelID() == sitk.sitkInt16
        assert np.array_equal(sitk.GetArrayFromImage(after), sitk.GetArrayFromImage(before))
        expected = case_arrays(index)[1]
        assert np.array_equal(sitk.GetArrayFromImage(mask), np.where(expected == 3, 0, expected))
        for item in (after, mask):
            assert item.GetSize() == before.GetSize()
            assert np.allclose(item.GetSpacing(), before.GetSpacing())
            assert np.allclose(item.GetOrigin(), before.GetOrigin(), atol=1e-4)
            assert np.allclose(item.GetDirection(), before.GetDirection(), atol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Dataset501_NeonatalLung", "Dataset777_BPD", "folder"]

    again = tmp_path / "again"  # back in: the subjects and case ids export-nnunet recorded survive
    assert main(["import-cases", "-o", str(again), "--nnunet", str(exported)]) == 0
    assert [c.case_id for c in read_training_folder(again).cases] == [c.case_id for c in folder.cases]


def test_msd_style_labels_map_to_one_lung_label(tmp_path: Path) -> None:
    """dataset.json of nnU-Net v1 / the Decathlon: value -> name, "modality" instead of channel_names."""
    source = nnunet_dataset(tmp_path / "Task06", labels={"0": "background", "1": "Lungs", "2": "heart", "3": "x"},
                            modality={"0": "MRI"})
    assert main(["import-cases", "-o", str(tmp_path / "f"), "--nnunet", str(source)]) == 0
    folder = read_training_folder(tmp_path / "f")
    assert folder.cases[0].label_scheme == "lung"
    _, label = folder.read_case(folder.cases[0])
    assert np.array_equal(sitk.GetArrayFromImage(label), (case_arrays(0)[1] == 1).astype(np.uint8))


def test_a_label_map_replaces_label_names_the_tool_does_not_know(tmp_path: Path) -> None:
    source = nnunet_dataset(tmp_path / "ds", labels={"background": 0, "RL": 1, "LL": 2, "airway": 3})
    out = tmp_path / "f"
    assert main(["import-cases", "-o", str(out), "--nnunet", str(source),
                 "--label-map", '{"1": "right lung", "2": "LEFT_LUNG"}']) == 0
    folder = read_training_folder(out)
    assert folder.cases[0].label_scheme == "right_left"
    assert folder.read_sidecar(folder.cases[0])["labels_made_background"] == [3]
    _, label = folder.read_case(folder.cases[0])
    assert np.array_equal(sitk.GetArrayFromImage(label), np.where(case_arrays(0)[1] == 3, 0, case_arrays(0)[1]))


def test_pairs_in_nrrd_and_mha_with_a_label_map_and_subjects_from_names(tmp_path: Path) -> None:
    images, labels = tmp_path / "img", tmp_path / "msk"
    for name, suffix in (("s01_a", "nrrd"), ("s01_b", "mha"), ("s02_a", "nii.gz")):
        image, label = case_arrays(len(name) + ord(name[-1]))
        write(images / f"{name}.{suffix}", image.astype(np.float32))
        write(labels / f"{name}.{'nrrd' if suffix == 'mha' else suffix}", np.where(label == 1, 255, 0).astype(np.uint8))
    out = tmp_path / "f"
    (tmp_path / "map.json").write_text('{"255": "Lung"}')  # --label-map as a file
    assert main(["import-cases", "-o", str(out), "--pairs", str(images), str(labels),
                 "--label-map", str(tmp_path / "map.json"), "--subject-regex", r"^(?P<subject>s\d+)_"]) == 0
    folder = read_training_folder(out)
    assert [(c.subject, c.version) for c in folder.cases] == [("s01", 1), ("s01", 2), ("s02", 1)]
    assert all(c.label_scheme == "lung" and c.review_status == "reference" for c in folder.cases)
    _, label = folder.read_case(folder.cases[1])
    assert np.array_equal(sitk.GetArrayFromImage(label), (case_arrays(5 + ord("b"))[1] == 1).astype(np.uint8))
    assert folder.read_sidecar(folder.cases[1])["source_case"] == "s01_b"


def test_2d_slices_with_masks_stored_one_by_h_by_w_import_as_depth_one(tmp_path: Path) -> None:
    """Shaped like the ventilation slices: a 2D float image, its mask 1 x H x W; and a 2D NRRD pair."""
    images, labels = tmp_path / "img", tmp_path / "msk"
    rng = np.random.default_rng(3)
    slice_image = rng.random((32, 20)).astype(np.float32) * 1000
    slice_mask = np.zeros((1, 32, 20), np.float32)
    slice_mask[0, 5:25, 3:17] = 1.0
    write(images / "000655.nii.gz", slice_image, spacing=(3.9, 3.9), origin=(-156.25, -118.7))
    write(labels / "000655.nii.gz", slice_mask, spacing=(3.9, 3.9, 1.0), origin=(-156.25, -118.7, 0.0),
          direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    write(images / "b.nrrd", slice_image[::-1].copy(), spacing=(1.5, 2.0), origin=(0.0, 0.0))
    write(labels / "b.nrrd", slice_mask[0, ::-1].astype(np.uint8), spacing=(1.5, 2.0), origin=(0.0, 0.0))
    out = tmp_path / "f"
    assert main(["import-cases", "-o", str(out), "--pairs", str(images), str(labels)]) == 0
    folder = read_training_folder(out)
    for record, flip in zip(folder.cases, (1, -1)):  # 000655, then b (flipped)
        image, label = folder.read_case(record)
        assert image.GetSize() == (20, 32, 1) and folder.read_sidecar(record)["slice_2d"] is True
        assert np.array_equal(sitk.GetArrayFromImage(image)[0], slice_image[::flip])
        assert np.array_equal(sitk.GetArrayFromImage(label)[0], slice_mask[0, ::flip].astype(np.uint8))
    assert folder.read_case(folder.cases[0])[0].GetSpacing()[:2] == pytest.approx((3.9, 3.9))
    assert folder.read_case(folder.cases[1])[0].GetSpacing()[:2] == pytest.approx((1.5, 2.0))


@pytest.mark.skipif(not VENTILATION.is_dir(), reason=f"{VENTILATION} is absent (real data lives beside the checkout)")
def test_real_ventilation_slices_import_as_pairs(tmp_path: Path) -> None:
    ids = sorted(p.name[:-len("Mask.nii.gz")] for p in VENTILATION.glob("*Mask.nii.gz"))[:5]
    assert len(ids) == 5
    for sub, ending in (("images", "Ventilation"), ("labels", "Mask")):
        (tmp_path / sub).mkdir()
        for case in ids:
            (tmp_path / sub / f"{case}.nii.gz").symlink_to(VENTILATION / f"{case}{ending}.nii.gz")
    out = tmp_path / "ventilation"
    assert main(["import-cases", "-o", str(out), "--pairs", str(tmp_path / "images"), str(tmp_path / "labels")]) == 0
    folder = read_training_folder(out)
    assert [c.subject for c in folder.cases] == ids
    for record, case in zip(folder.cases, ids):
        assert record.label_scheme == "lung" and record.review_status == "reference"
        image, label = folder.read_case(record)
        source = sitk.ReadImage(str(VENTILATION / f"{case}Ventilation.nii.gz"))
        mask = sitk.GetArrayFromImage(sitk.ReadImage(str(VENTILATION / f"{case}Mask.nii.gz")))
        assert image.GetSize() == (*source.GetSize(), 1) and source.GetSize()[1] == 128
        assert image.GetSpacing()[:2] == pytest.approx(source.GetSpacing())
        assert np.array_equal(sitk.GetArrayFromImage(image)[0], sitk.GetArrayFromImage(source))
        assert np.array_equal(sitk.GetArrayFromImage(label), mask.astype(np.uint8))
        assert sitk.GetArrayFromImage(label).any()


def test_export_selects_like_training_and_merges_mixed_schemes(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "mixed"
    image, label = case_arrays(0)
    item = sitk.GetImageFromArray(image.astype(np.float32))
    as_label = lambda array: sitk.GetImageFromArray(array)  # noqa: E731
    add_case(root, item, as_label(np.where(label == 3, 0, label)), "a", review_status="reviewed")
    add_case(root, item, as_label((label == 1).astype(np.uint8)), "b", review_status="reference", label_scheme="lung")
    add_case(root, item, as_label(np.where(label == 3, 0, label)), "c", review_status="unreviewed")
    add_case(root, item, as_label(np.where(label == 2, 0, label % 3)), "a", review_status="reviewed")
    out = tmp_path / "empty-but-there"
    out.mkdir()
    assert main(["export-nnunet", str(root), "-o", str(out), "--reviewed-only", "--latest-only",
                 "--dataset-name", "Dataset502_Mixed"]) == 0
    said = capsys.readouterr().out
    assert "merged into lung" in said and "note: nnU-Net finds raw datasets by folder name" in said
    meta = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    assert meta["labels"] == {"background": 0, "lung": 1} and meta["numTraining"] == 2
    assert meta["name"] == "Dataset502_Mixed" and meta["neonatal_lung_seg"]["sides_merged"] is True
    assert sorted(p.name for p in (out / "labelsTr").iterdir()) == ["a_v002.nii.gz", "b_v001.nii.gz"]
    merged = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labelsTr" / "a_v002.nii.gz")))
    assert np.array_equal(merged, (label == 1).astype(np.uint8))


BAD = {
    "missing dataset.json": (lambda d: (d / "dataset.json").unlink(), [], "dataset.json: not found"),
    "image without label": (lambda d: (d / "labelsTr" / "BPD_001.nii.gz").unlink(), [], "no label for 1 image"),
    "label without image": (lambda d: (d / "imagesTr" / "BPD_002_0000.nii.gz").unlink(), [], "no image for 1 label"),
    "label on another grid": (lambda d: write(d / "labelsTr" / "BPD_002.nii.gz", case_arrays(2)[1],
                                              spacing=(0.8, 0.9, 3.0)), [], "not on its image's grid"),
    "label of another size": (lambda d: write(d / "labelsTr" / "BPD_001.nii.gz", case_arrays(1, (6, 20, 25))[1]),
                              [], "not on its image's grid"),
    "unknown label names": (lambda d: (d / "dataset.json").write_text(json.dumps(
        {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "organ": 1, "other": 2, "x": 3}})),
        [], "no label names a lung"),
    "undeclared label value": (lambda d: (d / "dataset.json").write_text(json.dumps(
        {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "right lung": 1, "left lung": 2}})),
        [], "label values [3]"),
    "second channel file": (lambda d: write(d / "imagesTr" / "BPD_000_0001.nii.gz", case_arrays(0)[0]), [],
                            "channel 0001; only single-channel"),
    "two channels declared": (lambda d: (d / "dataset.json").write_text(json.dumps(
        {"channel_names": {"0": "T1", "1": "T2"}, "labels": {"background": 0, "lung": 1}})), [],
        "2 channels (T1, T2); only single-channel"),
    "no channel suffix": (lambda d: (d / "imagesTr" / "BPD_000_0000.nii.gz").rename(d / "imagesTr" / "BPD_000.nii.gz"),
                          [], "lacks nnU-Net's channel suffix"),
    "unsupported file ending": (lambda d: (d / "dataset.json").write_text(json.dumps(
        {"file_ending": ".png", "labels": {"background": 0, "lung": 1}})), [], "file_ending '.png'"),
    "bad label-map target": (lambda d: None, ["--label-map", '{"1": "liver"}'], "'liver' is not one of"),
    "bad label-map key": (lambda d: None, ["--label-map", '{"one": "lung"}'], "is not a label value"),
    "label-map naming no lung": (lambda d: None, ["--label-map", '{"1": "background"}'], "no label names a lung"),
    "soft mask": (lambda d: write(d / "labelsTr" / "BPD_001.nii.gz", case_arrays(1)[1].astype(np.float32) / 2),
                  [], "not whole numbers"),
    "identifying reviewer": (lambda d: None, ["--reviewer", "Doe^John"], "DICOM person name"),
    "subject regex without match": (lambda d: None, ["--subject-regex", "^zz"], "finds no subject"),
}


@pytest.mark.parametrize("problem", BAD)
def test_bad_nnunet_input_is_one_line_and_writes_nothing(problem: str, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    spoil, extra, says = BAD[problem]
    source = nnunet_dataset(tmp_path / "Dataset777_BPD")
    spoil(source)
    out = tmp_path / "folder"
    refused(capsys, ["import-cases", "-o", str(out), "--nnunet", str(source), *extra], says=says, output=out)
    assert not out.exists()


def test_bad_pairs_bad_slices_and_existing_outputs_are_refused(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    images, labels = tmp_path / "img", tmp_path / "msk"
    write(images / "a.nii.gz", np.random.default_rng(0).random((16, 12)).astype(np.float32), spacing=(2, 2),
          origin=(0, 0))
    write(labels / "a.nii.gz", np.full((1, 16, 12), 2, np.uint8), spacing=(2, 2, 1), origin=(0, 0, 0),
          direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    out = tmp_path / "f"
    pairs = ["--pairs", str(images), str(labels)]
    refused(capsys, ["import-cases", "-o", str(out), *pairs], says="must be binary (1 = lung)", output=out)
    write(labels / "a.nii.gz", np.ones((1, 16, 12), np.uint8), spacing=(2.5, 2, 1), origin=(0, 0, 0),
          direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    refused(capsys, ["import-cases", "-o", str(out), *pairs], says="not on its image's grid", output=out)
    write(labels / "a.nii.gz", np.ones((2, 16, 12), np.uint8), spacing=(2, 2, 1), origin=(0, 0, 0),
          direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    refused(capsys, ["import-cases", "-o", str(out), *pairs], says="not on its image's grid", output=out)
    truncated = (images / "a.nii.gz").read_bytes()
    write(labels / "a.nii.gz", np.ones((1, 16, 12), np.uint8), spacing=(2, 2, 1), origin=(0, 0, 0),
          direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    (images / "a.nii.gz").write_bytes(truncated[: len(truncated) // 2])
    refused(capsys, ["import-cases", "-o", str(out), *pairs], says="truncated or damaged", output=out)
    nan = np.ones((16, 12), np.float32)
    nan[3, 3] = np.nan
    write(images / "a.nii.gz", nan, spacing=(2, 2), origin=(0, 0))
    refused(capsys, ["import-cases", "-o", str(out), *pairs], says="NaN or infinite", output=out)
    refused(capsys, ["import-cases", "-o", str(out), "--pairs", str(images), str(tmp_path / "nope")],
            says="not a folder", output=out)
    assert not out.exists()
    out.mkdir()
    refused(capsys, ["import-cases", "-o", str(out), "--nnunet", str(nnunet_dataset(tmp_path / "ds"))],
            says="already exists", output=out)
    (out / "something").write_text("x")
    refused(capsys, ["export-nnunet", str(tmp_path / "nope"), "-o", str(out)], says="already exists", output=out)
    assert [p.name for p in out.iterdir()] == ["something"]
    refused(capsys, ["export-nnunet", str(tmp_path / "nope"), "-o", str(tmp_path / "new")],
            says="not a training folder", output=tmp_path / "new")


def test_a_case_failing_half_way_leaves_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The first cases are written before the last one is read: the staging folder must go with them."""
    source = nnunet_dataset(tmp_path / "Dataset777_BPD", n=4)
    write(source / "labelsTr" / "BPD_003.nii.gz", case_arrays(3)[1], origin=(0, 0, 0))
    out = tmp_path / "folder"
    refused(capsys, ["import-cases", "-o", str(out), "--nnunet", str(source)], says="BPD_003.nii.gz", output=out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Dataset777_BPD"]
