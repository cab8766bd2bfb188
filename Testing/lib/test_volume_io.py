"""Reading every supported format with its geometry intact, refusing bad volumes, writing atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from NeonatalLungSegLib.errors import InputError, OutputExistsError
from NeonatalLungSegLib.geometry import Geometry, array_to_image, image_to_array, reorientation
from NeonatalLungSegLib.volumes.volume_io import AtomicOutputs, case_name, check_values, read_volume

OBLIQUE = (0.9396926, -0.3420201, 0.0, 0.3420201, 0.9396926, 0.0, 0.0, 0.0, -1.0)  # 20 deg about z, k flipped


def sample_image(direction=OBLIQUE) -> sitk.Image:
    geometry = Geometry((12, 10, 6), (0.7, 0.8, 2.5), (-20.0, 15.5, 3.0), direction)
    array = np.random.default_rng(0).integers(0, 1000, geometry.array_shape).astype(np.int16)
    return array_to_image(array, geometry)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha", ".mhd"])
def test_file_formats_round_trip_with_geometry(tmp_path: Path, suffix: str) -> None:
    image = sample_image()
    path = tmp_path / f"case{suffix}"
    sitk.WriteImage(image, str(path))
    loaded = read_volume(path)
    assert loaded.GetPixelID() == sitk.sitkFloat32
    original, geometry = image_to_array(image)
    array, loaded_geometry = image_to_array(loaded)
    np.testing.assert_array_equal(array, original)
    assert loaded_geometry.size == geometry.size
    np.testing.assert_allclose(loaded_geometry.spacing, geometry.spacing, atol=1e-5)
    np.testing.assert_allclose(loaded_geometry.origin, geometry.origin, atol=1e-4)
    np.testing.assert_allclose(loaded_geometry.direction, geometry.direction, atol=1e-5)


def write_dicom_series(image: sitk.Image, folder: Path) -> None:
    """A minimal but valid MR DICOM series, one file per slice, as a scanner export would be."""
    folder.mkdir()
    image = sitk.Cast(image, sitk.sitkInt16)
    direction = image.GetDirection()
    series_uid = "1.2.826.0.1.3680043.2.1125.1.12345"
    for k in range(image.GetDepth()):
        slice_image = image[:, :, k]
        tags = {
            "0008|0060": "MR", "0020|000e": series_uid, "0020|000d": series_uid + ".1",
            "0020|0013": str(k + 1), "0018|0050": str(image.GetSpacing()[2]),
            "0020|0037": "\\".join(f"{v:.7f}" for v in (direction[0], direction[3], direction[6],
                                                         direction[1], direction[4], direction[7])),
            "0020|0032": "\\".join(f"{v:.5f}" for v in image.TransformIndexToPhysicalPoint((0, 0, k))),
            "0028|0030": f"{image.GetSpacing()[1]}\\{image.GetSpacing()[0]}",
        }
        for key, value in tags.items():
            slice_image.SetMetaData(key, value)
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(slice_image)


def test_dicom_series_folder_is_read_with_its_geometry(tmp_path: Path) -> None:
    """DICOM readers order slices along the slice normal, so the voxel order may differ from what was
    written; what must hold is that every voxel sits at the same physical place."""
    image = sample_image()
    write_dicom_series(image, tmp_path / "series")
    loaded = read_volume(tmp_path / "series")
    original, geometry = image_to_array(image)
    array, loaded_geometry = image_to_array(loaded)
    plan, loaded_plan = reorientation(geometry), reorientation(loaded_geometry)
    np.testing.assert_array_equal(loaded_plan.to_canonical(array), plan.to_canonical(original))
    np.testing.assert_allclose(loaded_plan.target.spacing, plan.target.spacing, atol=1e-4)
    np.testing.assert_allclose(loaded_plan.target.origin, plan.target.origin, atol=1e-3)
    np.testing.assert_allclose(loaded_plan.target.direction, plan.target.direction, atol=1e-5)


def _write(tmp_path: Path, image: sitk.Image, name: str = "bad.nrrd") -> Path:
    path = tmp_path / name
    sitk.WriteImage(image, str(path))
    return path


def test_bad_inputs_give_one_clear_line(tmp_path: Path) -> None:
    cases = {
        "no such file": tmp_path / "missing.nii.gz",
        "unsupported file type": (tmp_path / "notes.txt"),
        "unreadable image": tmp_path / "garbage.nii.gz",
        "image is 2D": _write(tmp_path, sitk.Image(16, 16, sitk.sitkFloat32), "flat.nrrd"),
        "image is 4D": _write(tmp_path, sitk.Image([8, 8, 8, 3], sitk.sitkFloat32), "time.nrrd"),
        "components per voxel": _write(tmp_path, sitk.Image([8, 8, 8], sitk.sitkVectorFloat32, 3), "rgb.nrrd"),
        "at least 2 voxels": _write(tmp_path, sitk.Image([16, 16, 1], sitk.sitkFloat32), "single.nrrd"),
        "constant": _write(tmp_path, sitk.Image([8, 8, 8], sitk.sitkFloat32), "constant.nrrd"),
        "no DICOM series": tmp_path / "empty_folder",
    }
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "garbage.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    (tmp_path / "empty_folder").mkdir()
    for message, path in cases.items():
        with pytest.raises(InputError, match=message) as info:
            read_volume(path)
        assert "\n" not in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize("value, message", [(np.nan, "NaN or infinite"), (np.inf, "NaN or infinite")])
def test_non_finite_voxels_are_refused(tmp_path: Path, value: float, message: str) -> None:
    array = np.random.default_rng(0).random((6, 8, 8)).astype(np.float32)
    array[2, 3, 4] = value
    path = _write(tmp_path, array_to_image(array, Geometry((8, 8, 6), (1, 1, 1), (0, 0, 0),
                                                           tuple(np.eye(3).ravel()))))
    with pytest.raises(InputError, match=message):
        read_volume(path)
    with pytest.raises(InputError, match="empty"):
        check_values(np.zeros((0, 4, 4)), "x")


def test_case_names_are_sanitised() -> None:
    assert case_name(Path("/data/Baby_01.nii.gz")) == "Baby_01"
    assert case_name(Path("scan.v2.nrrd")) == "scan.v2"
    assert case_name(Path("../../etc/passwd")) == "passwd"
    # non-ASCII letters are lost in cleaning, so a short hash of the original keeps Müller and Mäller apart
    assert case_name(Path("Müller, Anna (MRN 123).mha")).startswith("M_ller_Anna_MRN_123-")
    assert case_name(Path("Müller.mha")) != case_name(Path("Mäller.mha"))
    assert case_name(Path("...")) == "case"


def test_atomic_outputs_all_or_nothing(tmp_path: Path) -> None:
    image = sample_image()
    with AtomicOutputs() as out:
        out.write_image(image, tmp_path / "a.nii.gz")
        out.write_json({"x": 1}, tmp_path / "a.json")
        assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".tmp-")) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.nii.gz"]

    with pytest.raises(KeyboardInterrupt):
        with AtomicOutputs() as out:
            out.write_image(image, tmp_path / "b.nii.gz")
            raise KeyboardInterrupt  # Ctrl-C between two files of one case
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.nii.gz"]


def test_atomic_outputs_never_overwrite_unless_asked(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("precious")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        with AtomicOutputs() as out:
            out.write_json({"x": 1}, tmp_path / "a.json")
    assert (tmp_path / "a.json").read_text(encoding="utf-8") == "precious"
    with AtomicOutputs(overwrite=True) as out:
        out.write_json({"x": 1}, tmp_path / "a.json")
    assert "precious" not in (tmp_path / "a.json").read_text(encoding="utf-8")
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
