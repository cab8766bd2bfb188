"""Fuzz suite, inputs, second round (issue 30): what the first round's checks let through.

Each case here went through silently (a wrong mask or wrong volumes with exit status 0), was wrongly refused,
or printed library lines or a traceback around its one ``error:`` line. The NIfTI files are built byte by
byte, so a header field can disagree with another exactly as a foreign writer (or a hostile user) can make
it do.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from fuzz_helpers import assert_one_error_line, hand_nifti, run, write_dicom_series, write_nifti, write_volume
from NeonatalLungSegLib.cli.main import main
from NeonatalLungSegLib.errors import InputError, OutputError
from NeonatalLungSegLib.volumes.volume_io import AtomicOutputs, dicom_series_files, read_volume

SHAPE = (8, 40, 32)  # (k, j, i)


def int16_volume(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(300, 60, SHAPE).clip(1, 4000).astype(np.int16)


def segment_args(tmp_path: Path, inputs: list[Path], model: Path, *extra: str) -> list:
    return ["segment", *inputs, "-o", tmp_path / "out", "--model", model, "--device", "cpu", *extra]


def nothing_written(tmp_path: Path) -> bool:
    out = tmp_path / "out"
    return not out.exists() or not any(out.iterdir())


def run_fd(args: list, capfd: pytest.CaptureFixture) -> tuple[int, str, str]:
    """Like ``run``, but sees what C++ libraries print on file descriptor 2 too."""
    capfd.readouterr()
    code = main([str(a) for a in args])
    captured = capfd.readouterr()
    return code, captured.out, captured.err


def modify_series(source: Path, target: Path, change) -> Path:
    """A copy of a DICOM series with ``change(dataset, index)`` applied to every slice (pydicom)."""
    import warnings

    import pydicom

    shutil.copytree(source, target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the invalid values these tests write on purpose
        for index, file in enumerate(sorted(target.iterdir())):
            dataset = pydicom.dcmread(file)
            change(dataset, index)
            dataset.save_as(file)
    return target


# 1. bitpix and vox_offset: the check and the reader read the same bytes -------------------------------

@pytest.mark.parametrize("name", ["half.nii", "half.nii.gz"])
def test_bitpix_disagreeing_with_datatype_cannot_hide_a_truncated_file(tmp_path: Path, name: str) -> None:
    """bitpix 8 on int16 data: the old check expected half the bytes, ITK read the datatype's, half as zeros."""
    data = hand_nifti(int16_volume(), bitpix=8)
    source = write_nifti(tmp_path / name, data[: 352 + int16_volume().nbytes // 2 + 100])
    with pytest.raises(InputError, match="truncated") as caught:
        read_volume(source)
    assert name in str(caught.value) and "\n" not in str(caught.value)


def test_bitpix_disagreeing_with_datatype_on_a_complete_file_reads_the_datatype(tmp_path: Path) -> None:
    array = int16_volume()
    image = read_volume(write_nifti(tmp_path / "bitpix.nii", hand_nifti(array, bitpix=8)))
    assert np.array_equal(sitk.GetArrayViewFromImage(image), array.astype(np.float32))


@pytest.mark.parametrize("offset", [0.0, 100.0, 348.0, -352.0, float("nan")])
def test_vox_offset_inside_the_header_is_refused(tmp_path: Path, offset: float) -> None:
    """vox_offset < 352: the old check read the voxels from byte 352, ITK from somewhere else."""
    source = write_nifti(tmp_path / "offset.nii", hand_nifti(int16_volume(), vox_offset=offset))
    with pytest.raises(InputError, match="vox_offset"):
        read_volume(source)


def test_vox_offset_past_the_header_reads_the_voxels_it_names(tmp_path: Path) -> None:
    array = int16_volume()
    source = write_nifti(tmp_path / "far.nii.gz", hand_nifti(array, vox_offset=432.0))
    assert np.array_equal(sitk.GetArrayFromImage(read_volume(source)), array.astype(np.float32))


def test_bitpix_truncation_is_one_line_and_nothing_written(tmp_path: Path, tiny_model_folder: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    data = hand_nifti(int16_volume(), bitpix=8)
    source = write_nifti(tmp_path / "cut.nii.gz", data[: 352 + int16_volume().nbytes // 2])
    code, _, err = run(segment_args(tmp_path, [source], tiny_model_folder), capsys)
    assert_one_error_line(code, err, "cut.nii.gz", "truncated")
    assert nothing_written(tmp_path)


# 2. An input is read once per use, and each use is of the bytes that were checked ---------------------

def _damage_before_use(monkeypatch: pytest.MonkeyPatch, damage) -> None:
    """Run ``damage`` between the up-front check of every input and the first segmentation."""
    from NeonatalLungSegLib.inference import engine

    load = engine.Segmenter.load

    def damaged_then_load(*args, **kwargs):
        damage()
        return load(*args, **kwargs)
    monkeypatch.setattr(engine.Segmenter, "load", damaged_then_load)


@pytest.mark.parametrize("change", ["truncated", "replaced"])
def test_input_changed_after_the_check_is_not_segmented(tmp_path: Path, change: str, tiny_model_folder: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture) -> None:
    first = write_nifti(tmp_path / "in" / "a.nii", hand_nifti(int16_volume(0)))
    second = write_nifti(tmp_path / "in" / "b.nii", hand_nifti(int16_volume(1)))

    def damage() -> None:
        if change == "truncated":
            second.write_bytes(second.read_bytes()[:-3000])
        else:
            second.write_bytes(hand_nifti(int16_volume(2)))  # valid, same size, not what was checked
    _damage_before_use(monkeypatch, damage)
    code, _, err = run(segment_args(tmp_path, [first, second], tiny_model_folder), capsys)
    assert_one_error_line(code, err, "b.nii", "changed")
    assert not list((tmp_path / "out").glob("b_*")) and not list((tmp_path / "out").glob(".tmp-*"))


def test_dicom_series_changed_after_the_check_is_not_segmented(tmp_path: Path, tiny_model_folder: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture) -> None:
    first = write_dicom_series(tmp_path / "in" / "a")
    second = write_dicom_series(tmp_path / "in" / "b", seed=1)
    _damage_before_use(monkeypatch, lambda: (second / "slice004.dcm").unlink())
    code, _, err = run(segment_args(tmp_path, [first, second], tiny_model_folder), capsys)
    assert_one_error_line(code, err, "changed")
    assert "/b" in err
    assert not list((tmp_path / "out").glob("b_*"))


def test_a_single_read_checks_the_bytes_it_returns(tmp_path: Path) -> None:
    """The stamp a read records is of the bytes it decoded: reading again with it passes, after a change not."""
    from NeonatalLungSegLib.volumes.volume_io import read_checked

    source = write_nifti(tmp_path / "a.nii.gz", hand_nifti(int16_volume()))
    checked = read_checked(source)
    assert read_checked(source, expect=checked.fingerprint).fingerprint == checked.fingerprint
    write_nifti(source, hand_nifti(int16_volume(5)))
    with pytest.raises(InputError, match="changed"):
        read_checked(source, expect=checked.fingerprint)


# 3. Voxel spacing: finite and positive in the header, or refused -------------------------------------

@pytest.mark.parametrize("axis", [0, 2])
@pytest.mark.parametrize("value", [0.0, float("nan"), float("inf")])
def test_nifti_spacing_that_is_not_finite_and_positive_is_refused(tmp_path: Path, axis: int,
                                                                  value: float) -> None:
    pixdim = [0.9, 0.8, 2.0]
    pixdim[axis] = value
    source = write_nifti(tmp_path / "spacing.nii", hand_nifti(int16_volume(), pixdim=tuple(pixdim)))
    with pytest.raises(InputError, match="spacing") as caught:
        read_volume(source)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("spacing, needle", [(["0", "0.8"], "pixel spacing"), (["-0.8", "0.8"], "pixel spacing"),
                                             (["0.8", "nan"], "pixel spacing"), (None, "pixel spacing")])
def test_dicom_pixel_spacing_that_is_not_finite_and_positive_is_refused(tmp_path: Path, spacing, needle: str,
                                                                        tiny_model_folder: Path,
                                                                        capfd: pytest.CaptureFixture) -> None:
    def change(dataset, _index: int) -> None:
        if spacing is None:
            del dataset.PixelSpacing
        else:
            dataset.PixelSpacing = spacing
    series = modify_series(write_dicom_series(tmp_path / "base"), tmp_path / "series", change)
    code, _, err = run_fd(segment_args(tmp_path, [series], tiny_model_folder), capfd)
    assert_one_error_line(code, err, needle)
    assert nothing_written(tmp_path)


def test_nrrd_and_metaimage_without_spacing_are_refused(tmp_path: Path) -> None:
    source = write_volume(tmp_path / "nospacing.mha")
    text = source.read_bytes()
    start = text.index(b"ElementSpacing")
    source.write_bytes(text[:start] + text[text.index(b"\n", start) + 1:])
    with pytest.raises(InputError, match="spacing"):
        read_volume(source)


def test_compressed_metaimage_with_damaged_voxel_data_is_refused(tmp_path: Path) -> None:
    """MetaIO ignores zlib's checksum error and returns the voxels it could inflate (57 of them wrong here)."""
    import os

    source = tmp_path / "packed.mha"
    sitk.WriteImage(sitk.ReadImage(str(write_volume(tmp_path / "plain.mha"))), str(source), useCompression=True)
    data = bytearray(source.read_bytes())
    data[-200:-100] = np.random.default_rng(7).integers(0, 256, 100, dtype=np.uint8).tobytes()
    source.write_bytes(bytes(data))
    assert os.path.getsize(source) == len(data)
    with pytest.raises(InputError, match="damaged|truncated"):
        read_volume(source)


# 4. A sheared DICOM stack (slice positions drifting sideways) -------------------------------------------

@pytest.mark.parametrize("drift", [(1.0, 0.0), (0.0, 0.5)])
def test_dicom_stack_drifting_sideways_is_refused_naming_the_drift(tmp_path: Path, drift, tiny_model_folder: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    def change(dataset, index: int) -> None:
        dataset.ImagePositionPatient = [index * drift[0], index * drift[1], index * 5.0]
    series = modify_series(write_dicom_series(tmp_path / "base"), tmp_path / "series", change)
    code, _, err = run(segment_args(tmp_path, [series], tiny_model_folder), capsys)
    assert_one_error_line(code, err, "drift")
    assert nothing_written(tmp_path)


def test_dicom_slices_with_different_orientations_are_refused(tmp_path: Path) -> None:
    def change(dataset, index: int) -> None:
        if index == 3:
            dataset.ImageOrientationPatient = [1, 0, 0, 0, 0.9950042, 0.0998334]
    series = modify_series(write_dicom_series(tmp_path / "base"), tmp_path / "series", change)
    with pytest.raises(InputError, match="orientation"):
        read_volume(series)


def test_dicom_series_with_a_rescale_slope_is_not_taken_for_truncated(tmp_path: Path) -> None:
    """ITK reports float voxels once Rescale Slope is set; the truncation check counts the stored bytes."""
    def change(dataset, _index: int) -> None:
        dataset.RescaleSlope, dataset.RescaleIntercept = "2.5", "-10"
    series = modify_series(write_dicom_series(tmp_path / "base"), tmp_path / "series", change)
    image = read_volume(series)
    assert image.GetSize() == (32, 40, 8) and image.GetSpacing()[2] == pytest.approx(5.0)


def test_dicom_slice_with_short_pixel_data_is_refused(tmp_path: Path) -> None:
    """A slice whose Pixel Data element is shorter than its rows x columns (lengths consistent, so GDCM reads it
    and pads): refused as truncated, not read with a band of zeros."""
    def change(dataset, index: int) -> None:
        if index == 4:
            dataset.PixelData = dataset.PixelData[:100]
    series = modify_series(write_dicom_series(tmp_path / "base"), tmp_path / "series", change)
    with pytest.raises(InputError, match="truncated"):
        read_volume(series)


# 5. Values near the float32 limit ------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["percentile_minmax", "zscore"])
@pytest.mark.parametrize("policy", ["fixed_size", "body_crop"])
def test_values_near_the_float32_limit_normalise_as_the_same_volume_scaled_down(method: str, policy: str) -> None:
    """Normalisation is scale-invariant, so a volume times 7e37 (values near +-3.4e38) must give the
    same network input; the old arithmetic overflowed to inf and gave all zeros (an empty mask)."""
    import torch

    from NeonatalLungSegLib.geometry import Geometry
    from NeonatalLungSegLib.inference.preprocess import network_input, prepare, slice_stack
    from NeonatalLungSegLib.models.model_folder import InputConfig

    config = InputConfig(in_plane_size=(32, 32), intensity_method=method, in_plane_policy=policy, channels=3)
    geometry = Geometry((32, 40, 8), (0.9, 0.8, 2.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()))
    array = np.random.default_rng(0).normal(0, 1, SHAPE).astype(np.float32)
    array[:, :4] = -4.5  # dark air around a body
    huge = (array.astype(np.float64) * 7e37).astype(np.float32)
    assert np.isfinite(huge).all() and np.abs(huge).max() > 3e38
    for device in (None, torch.device("cpu")):
        inputs = []
        for volume in (array, huge):
            prepared = prepare(volume, geometry, config)
            batch = network_input(slice_stack(prepared.slices, np.arange(len(prepared.slices)), 3),
                                  prepared.scale, config, device, prepared.frame)
            inputs.append(np.asarray(batch))
        assert np.isfinite(inputs[1]).all()
        assert np.allclose(inputs[1], inputs[0], atol=1e-4), (method, policy, device)


def test_volume_near_the_float32_limit_segments_like_the_volume_scaled_down(tiny_model_folder: Path) -> None:
    from NeonatalLungSegLib.geometry import Geometry
    from NeonatalLungSegLib.inference.engine import Segmenter

    segmenter = Segmenter.load(tiny_model_folder, device="cpu")
    geometry = Geometry((32, 40, 8), (0.9, 0.8, 2.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()))
    array = np.random.default_rng(3).normal(0, 1, SHAPE).astype(np.float32)
    huge = (array.astype(np.float64) * 7e37).astype(np.float32)
    small = segmenter.segment_array(array, geometry, options=None, with_probabilities=True)
    large = segmenter.segment_array(huge, geometry, options=None, with_probabilities=True)
    assert np.allclose(large.probabilities, small.probabilities, atol=1e-3)


# 6. scl_slope on integer data is not truncation -----------------------------------------------------------

@pytest.mark.parametrize("slope, inter", [(2.0, 0.0), (0.5, 0.0), (-1.0, 0.0), (2.0, -10.0)])
def test_int16_nifti_with_scl_slope_is_read_scaled(tmp_path: Path, slope: float, inter: float) -> None:
    array = int16_volume()
    source = write_nifti(tmp_path / "scaled.nii", hand_nifti(array, slope=slope, inter=inter))
    values = sitk.GetArrayFromImage(read_volume(source))
    assert np.allclose(values, array.astype(np.float64) * slope + inter)


@pytest.mark.parametrize("slope", [0.0, float("nan"), float("inf")])
def test_scl_slope_zero_or_not_finite_means_no_scaling(tmp_path: Path, slope: float) -> None:
    array = int16_volume()
    source = write_nifti(tmp_path / "unscaled.nii", hand_nifti(array, slope=slope, inter=7.0))
    assert np.array_equal(sitk.GetArrayFromImage(read_volume(source)), array.astype(np.float32))


def test_scaled_values_beyond_float32_are_refused(tmp_path: Path) -> None:
    source = write_nifti(tmp_path / "overflow.nii", hand_nifti(int16_volume(), slope=1e37))
    with pytest.raises(InputError, match="float32"):
        read_volume(source)


# 7. Library chatter: one error line, nothing before it ------------------------------------------------------

def _chatty_inputs(tmp_path: Path) -> dict[str, Path]:
    cases = {}
    data = bytearray(hand_nifti(int16_volume()))
    data[40:42] = struct.pack("<h", 9)  # niftilib: "bad dim[0]"
    cases["niftilib dim"] = write_nifti(tmp_path / "dim.nii", bytes(data))
    data = bytearray(hand_nifti(int16_volume()))
    data[70:72] = struct.pack("<h", 3)  # niftilib: "bad datatype"
    cases["niftilib datatype"] = write_nifti(tmp_path / "datatype.nii", bytes(data))
    meta = write_volume(tmp_path / "meta.mha")
    cases["metaio ndims"] = tmp_path / "ndims.mha"
    cases["metaio ndims"].write_bytes(meta.read_bytes().replace(b"NDims = 3", b"NDims = 9"))
    packed = tmp_path / "packed.mha"
    sitk.WriteImage(sitk.ReadImage(str(meta)), str(packed), useCompression=True)
    cases["metaio truncated"] = tmp_path / "cut.mha"
    cases["metaio truncated"].write_bytes(packed.read_bytes()[: packed.stat().st_size * 2 // 3])
    srow = (float("nan"), 0, 0, 1, 0, 0.8, 0, 2, 0, 0, 2.0, 3)
    cases["vnl sform"] = write_nifti(tmp_path / "sform.nii", hand_nifti(int16_volume(), qform_code=0,
                                                                        sform_code=1, srow=srow))
    series = write_dicom_series(tmp_path / "base")
    cases["vnl dicom"] = modify_series(series, tmp_path / "nan-spacing",
                                       lambda d, i: setattr(d, "PixelSpacing", ["nan", "0.8"]))
    cases["gdcm no series"] = tmp_path / "jpeg"
    shutil.copytree(series, cases["gdcm no series"])
    for file in cases["gdcm no series"].iterdir():  # a transfer syntax GDCM cannot decode the slices with
        file.write_bytes(file.read_bytes().replace(b"1.2.840.10008.1.2\x00", b"1.2.840.10008.1.2.4"))
    return cases


CHATTY = ["niftilib dim", "niftilib datatype", "metaio ndims", "metaio truncated", "vnl sform", "vnl dicom",
          "gdcm no series"]


@pytest.mark.parametrize("case", CHATTY)
def test_library_chatter_never_reaches_the_user_around_the_error(tmp_path: Path, case: str, tiny_model_folder: Path,
                                                                 capfd: pytest.CaptureFixture) -> None:
    source = _chatty_inputs(tmp_path / "in")[case]
    code, _, err = run_fd(segment_args(tmp_path, [source], tiny_model_folder), capfd)
    assert_one_error_line(code, err, source.name)
    assert nothing_written(tmp_path)


def test_a_warning_on_a_good_input_is_at_most_one_line(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    """An sform whose scales disagree with pixdim: ITK warns (three lines, once per read); the user sees one."""
    srow = (1.2, 0, 0, 1, 0, 0.8, 0, 2, 0, 0, 2.0, 3)
    source = write_nifti(tmp_path / "scales.nii", hand_nifti(int16_volume(), qform_code=0, sform_code=1, srow=srow))
    capfd.readouterr()
    read_volume(source)
    lines = [ln for ln in capfd.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) <= 1 and all(ln.startswith("warning: ") and "0x" not in ln for ln in lines), lines


# 8. DICOM SEG from an MR series without Slice Thickness, and labels without a SNOMED code -------------------

@pytest.mark.parametrize("thickness", ["missing", "empty"])
def test_dicom_seg_without_slice_thickness_is_built_from_the_positions(tmp_path: Path, thickness: str,
                                                                       tiny_model_folder: Path,
                                                                       capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("highdicom")
    import pydicom

    from NeonatalLungSegLib.volumes.dicom_seg import read_dicom_seg

    def change(dataset, _index: int) -> None:
        if thickness == "missing":
            del dataset.SliceThickness
        else:
            dataset.SliceThickness = None
    series = modify_series(write_dicom_series(tmp_path / "base"), tmp_path / "series", change)
    code, _, err = run(segment_args(tmp_path, [series], tiny_model_folder, "--format", "dicom-seg"), capsys)
    assert code == 0, err
    seg_file = tmp_path / "out" / "series_lungs.dcm"
    labels, names, _ = read_dicom_seg(seg_file, dicom_series_files(series))
    assert labels.shape == SHAPE and names == {"right_lung": 1, "left_lung": 2}
    measures = pydicom.dcmread(seg_file).SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert float(measures.SliceThickness) == pytest.approx(5.0)


def test_dicom_seg_of_labels_without_a_snomed_code_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The export hook (Slicer, scripts) with a label DICOM SEG cannot name: one error line, not a traceback."""
    pytest.importorskip("highdicom")
    from NeonatalLungSegLib.errors import exit_status
    from NeonatalLungSegLib.volumes.dicom_seg import write_dicom_seg

    series = write_dicom_series(tmp_path / "series")
    labels = np.zeros(SHAPE, np.uint8)
    labels[2:5, 10:30, 4:12], labels[2:5, 10:30, 20:28] = 1, 2
    code = exit_status(lambda: write_dicom_seg(tmp_path / "out" / "lobes.dcm", labels, dicom_series_files(series),
                                               {"upper_lobe": 1, "lower_lobe": 2}, model_name="m", model_version="1"))
    assert_one_error_line(code, capsys.readouterr().err, "snomed", "upper_lobe")
    assert nothing_written(tmp_path)


# 9. A folder named like an output ------------------------------------------------------------------------------

def test_folder_named_like_an_output_is_refused_up_front_even_with_overwrite(tmp_path: Path,
                                                                            tiny_model_folder: Path,
                                                                            capsys: pytest.CaptureFixture) -> None:
    source = write_volume(tmp_path / "a.nii.gz")
    out = tmp_path / "out"
    (out / "a_volumes.json").mkdir(parents=True)
    (out / "a_lungs.nii.gz").write_bytes(b"the previous run's labels")
    code, _, err = run(segment_args(tmp_path, [source], tiny_model_folder, "--overwrite"), capsys)
    assert_one_error_line(code, err, "a_volumes.json", "folder")
    assert (out / "a_lungs.nii.gz").read_bytes() == b"the previous run's labels"  # all or nothing
    assert sorted(p.name for p in out.iterdir()) == ["a_lungs.nii.gz", "a_volumes.json"]


def test_atomic_outputs_refuse_a_folder_in_the_way_before_renaming_anything(tmp_path: Path) -> None:
    (tmp_path / "b.json").mkdir()
    with pytest.raises(OutputError, match="folder"), AtomicOutputs(overwrite=True) as outputs:
        outputs.write_text("a", tmp_path / "a.json")
        outputs.write_text("b", tmp_path / "b.json")
    assert not (tmp_path / "a.json").exists() and not list(tmp_path.glob(".tmp-*"))


# The one NIfTI reader reads every valid file exactly as ITK does -------------------------------------------------

@pytest.mark.parametrize("dtype", ["uint8", "int16", "float32", "float64"])
@pytest.mark.parametrize("direction", ["identity", "flipped", "oblique"])
def test_nifti_reader_agrees_with_itk_on_valid_files(tmp_path: Path, dtype: str, direction: str) -> None:
    c, s = np.cos(0.3), np.sin(0.3)
    matrix = {"identity": (1, 0, 0, 0, 1, 0, 0, 0, 1), "flipped": (-1, 0, 0, 0, 1, 0, 0, 0, -1),
              "oblique": (c, -s, 0, s, c, 0, 0, 0, 1)}[direction]
    array = np.random.default_rng(1).normal(100, 30, SHAPE).clip(0, 250).astype(dtype)
    for name in ("v.nii", "v.nii.gz"):
        source = write_volume(tmp_path / f"{dtype}-{direction}-{name}", array, direction=matrix)
        ours, theirs = read_volume(source), sitk.Cast(sitk.ReadImage(str(source)), sitk.sitkFloat32)
        assert np.array_equal(sitk.GetArrayFromImage(ours), sitk.GetArrayFromImage(theirs))
        assert ours.GetSize() == theirs.GetSize() and ours.GetSpacing() == theirs.GetSpacing()
        assert ours.GetOrigin() == theirs.GetOrigin() and ours.GetDirection() == theirs.GetDirection()


def test_big_endian_nifti_reads_as_itk_reads_it(tmp_path: Path) -> None:
    array = int16_volume()
    data = bytearray(hand_nifti(array.astype(">i2")))
    for at, fmt in ((0, "i"), (40, "8h"), (70, "2h"), (76, "8f"), (108, "3f"), (252, "2h"), (256, "6f"), (280, "12f")):
        size = struct.calcsize("<" + fmt)
        data[at:at + size] = struct.pack(">" + fmt, *struct.unpack_from("<" + fmt, data, at))
    source = write_nifti(tmp_path / "big.nii", bytes(data))
    ours, theirs = read_volume(source), sitk.Cast(sitk.ReadImage(str(source)), sitk.sitkFloat32)
    assert np.array_equal(sitk.GetArrayFromImage(ours), array.astype(np.float32))
    assert np.array_equal(sitk.GetArrayFromImage(theirs), array.astype(np.float32))
    assert ours.GetOrigin() == theirs.GetOrigin() and ours.GetDirection() == theirs.GetDirection()
