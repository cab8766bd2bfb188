"""Fuzz suite, inputs: broken, hostile and odd volumes must be refused with status 2 and one line, before
anything is written. Each case here once went through silently (wrong mask, exit 0) or with a traceback."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from fuzz_helpers import (assert_one_error_line, nifti_claiming, run, sheared_nifti, truncate, write_dicom_series,
                          write_volume)
from NeonatalLungSegLib.errors import InputError
from NeonatalLungSegLib.volumes.volume_io import read_volume


def segment(tmp_path: Path, inputs: list[Path], model: Path | None = None, *extra: str) -> list[str]:
    args = ["segment", *inputs, "-o", tmp_path / "out", "--device", "cpu"]
    return args + (["--model", model] if model else []) + list(extra)


def nothing_written(tmp_path: Path) -> bool:
    out = tmp_path / "out"
    return not out.exists() or not any(out.iterdir())


# 1. Silent corruption ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["cut.nii.gz", "cut.nii"])
def test_truncated_nifti_is_refused(tmp_path: Path, name: str, tiny_model_folder: Path,
                                    capsys: pytest.CaptureFixture) -> None:
    source = truncate(write_volume(tmp_path / name))
    code, _, err = run(segment(tmp_path, [source], tiny_model_folder), capsys)
    assert_one_error_line(code, err, name, "truncated")
    assert nothing_written(tmp_path)


def test_gzip_with_trailing_garbage_or_cut_trailer_is_refused(tmp_path: Path) -> None:
    source = write_volume(tmp_path / "trailer.nii.gz")
    source.write_bytes(source.read_bytes()[:-4])  # the gzip length trailer is gone: stream never ends
    with pytest.raises(InputError, match="truncated"):
        read_volume(source)


@pytest.mark.parametrize("damage", ["missing", "truncated", "garbage"])
def test_dicom_series_with_a_bad_slice_is_refused_naming_the_gap(tmp_path: Path, damage: str,
                                                                capsys: pytest.CaptureFixture) -> None:
    series = write_dicom_series(tmp_path / "series")
    victim = series / "slice004.dcm"
    if damage == "missing":
        victim.unlink()
    elif damage == "truncated":
        victim.write_bytes(victim.read_bytes()[:-700])
    else:
        victim.write_bytes(os.urandom(victim.stat().st_size))
    code, _, err = run(segment(tmp_path, [series]), capsys)
    assert_one_error_line(code, err, "series is not evenly spaced", "gap")
    assert "15" in err and "25" in err  # the positions either side of the hole (slice 4 sits at 20 mm)
    assert nothing_written(tmp_path)


def test_dicom_series_with_duplicate_position_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    series = write_dicom_series(tmp_path / "series")
    other = write_dicom_series(tmp_path / "other", seed=1)
    image = sitk.ReadImage(str(other / "slice003.dcm"))  # same position as slice003, another instance UID
    image.SetMetaData("0008|0018", "1.2.826.0.1.3680043.8.498.3.99")
    image.SetMetaData("0020|000e", "1.2.826.0.1.3680043.8.498.2")
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    writer.SetFileName(str(series / "slice099.dcm"))
    writer.Execute(image)
    code, _, err = run(segment(tmp_path, [series]), capsys)
    assert_one_error_line(code, err, "same position")
    assert nothing_written(tmp_path)


def test_complete_dicom_series_reads_on_its_grid(tmp_path: Path) -> None:
    image = read_volume(write_dicom_series(tmp_path / "series"))
    assert image.GetSize() == (32, 40, 8)
    assert image.GetSpacing()[2] == pytest.approx(5.0)


@pytest.mark.parametrize("name", ["shear.nii.gz", "shear.nrrd"])
def test_sheared_direction_is_refused(tmp_path: Path, name: str, capsys: pytest.CaptureFixture) -> None:
    source = sheared_nifti(tmp_path / name) if ".nii" in name else \
        write_volume(tmp_path / name, direction=(1, 0.3, 0, 0, 1, 0, 0, 0, 1))
    code, _, err = run(segment(tmp_path, [source]), capsys)
    assert_one_error_line(code, err, name, "orthogonal")
    assert nothing_written(tmp_path)


def test_oblique_but_orthogonal_direction_is_accepted(tmp_path: Path) -> None:
    c, s = np.cos(0.3), np.sin(0.3)
    source = write_volume(tmp_path / "oblique.nii.gz", direction=(c, -s, 0, s, c, 0, 0, 0, 1))
    assert np.allclose(read_volume(source).GetDirection(), (c, -s, 0, s, c, 0, 0, 0, 1), atol=1e-5)


def test_batch_checks_every_input_before_writing_anything(tmp_path: Path, tiny_model_folder: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    good = write_volume(tmp_path / "in" / "a_good.nii.gz")
    array = np.random.default_rng(1).normal(200, 50, (8, 40, 32)).astype(np.float32)
    array[2, 3, 4] = np.nan
    bad = write_volume(tmp_path / "in" / "b_bad.nii.gz", array)
    code, _, err = run(segment(tmp_path, [good, bad], tiny_model_folder), capsys)
    assert_one_error_line(code, err, "b_bad.nii.gz", "nan")
    assert nothing_written(tmp_path)


# 3. Bad values ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_non_finite_nifti_is_refused(tmp_path: Path, value: float, suffix: str) -> None:
    array = np.random.default_rng(0).normal(200, 50, (8, 40, 32)).astype(np.float32)
    array[3, 3, 3] = value
    with pytest.raises(InputError, match="NaN or infinite"):
        read_volume(write_volume(tmp_path / f"v{suffix}", array))


def test_all_nan_is_not_called_constant(tmp_path: Path) -> None:
    source = write_volume(tmp_path / "nan.nii.gz", np.full((8, 40, 32), np.nan, np.float32))
    with pytest.raises(InputError) as caught:
        read_volume(source)
    assert "constant" not in str(caught.value) and "NaN" in str(caught.value)


def test_float64_beyond_float32_range_says_so(tmp_path: Path) -> None:
    array = np.random.default_rng(0).normal(200, 50, (8, 40, 32))
    array[1, 1, 1] = 1e300
    with pytest.raises(InputError, match="beyond the float32 range"):
        read_volume(write_volume(tmp_path / "big.nrrd", array))


# 4. Resource abuse ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["huge.nii", "huge.nii.gz"])
def test_header_claiming_a_billion_voxels_is_refused_before_allocating(tmp_path: Path, name: str,
                                                                        capsys: pytest.CaptureFixture) -> None:
    source = nifti_claiming(tmp_path / name, (1000, 1000, 1000))
    started = time.perf_counter()
    code, _, err = run(segment(tmp_path, [source]), capsys)
    assert_one_error_line(code, err, name, "1000x1000x1000")
    assert time.perf_counter() - started < 5
    assert nothing_written(tmp_path)


def test_raw_metaimage_claiming_more_than_its_data_is_refused(tmp_path: Path) -> None:
    header = (b"ObjectType = Image\nNDims = 3\nDimSize = 200 200 200\nElementType = MET_FLOAT\n"
              b"ElementDataFile = LOCAL\n")
    source = tmp_path / "forged.mha"
    source.write_bytes(header + bytes(4096))
    with pytest.raises(InputError, match="200x200x200"):
        read_volume(source)


def test_memory_budget_refuses_a_volume_too_big_for_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEONATAL_LUNG_SEG_MAX_VOXELS", "1000")
    with pytest.raises(InputError, match="voxels"):
        read_volume(write_volume(tmp_path / "fine.nii.gz"))


# 5. One line ------------------------------------------------------------------------------------------

def test_itk_multi_line_warnings_are_folded_into_one_line(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    from NeonatalLungSegLib.volumes.input_checks import FoldedItkWarnings

    image = sitk.GetImageFromArray(np.zeros((4, 4, 4), np.float32))
    image.SetDirection((1, 0.3, 0, 0, 1, 0, 0, 0, 1))
    capfd.readouterr()
    with FoldedItkWarnings("x.nii") as folded:
        sitk.WriteImage(image, str(tmp_path / "x.nii"))  # ITK's NIfTI writer warns over three lines
    err = capfd.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert folded.warnings and len(lines) == 1, err
    assert lines[0].startswith("warning: x.nii: ") and "orthogonal" in lines[0] and "0x" not in lines[0]


# 8. Random damage: whatever the bytes, one InputError or a correct read, never another exception -------

@pytest.mark.parametrize("name", ["v.nii.gz", "v.nii", "v.nrrd", "v.mha"])
def test_random_byte_damage_never_escapes_as_another_exception(tmp_path: Path, name: str) -> None:
    source = write_volume(tmp_path / name)
    pristine = source.read_bytes()
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    outcomes = {"read": 0, "refused": 0}
    for trial in range(25):
        data = bytearray(pristine)
        if trial % 3 == 0:
            data = data[: int(rng.integers(0, len(data)))]  # cut anywhere, header included
        else:
            for at in rng.integers(0, min(len(data), 600), size=int(rng.integers(1, 6))):  # mostly the header
                data[int(at)] = int(rng.integers(0, 256))
        damaged = tmp_path / f"d{trial}-{name}"
        damaged.write_bytes(bytes(data))
        try:
            image = read_volume(damaged)
        except InputError as error:
            assert "\n" not in str(error) and str(damaged) in str(error)
            outcomes["refused"] += 1
        else:
            assert image.GetDimension() == 3
            outcomes["read"] += 1
    assert outcomes["refused"] >= 8  # every cut is refused, whatever else happens
