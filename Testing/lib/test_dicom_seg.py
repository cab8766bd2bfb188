"""DICOM SEG output: a synthetic MR series is segmented with the tiny model, written as a DICOM Segmentation,
read back and compared voxel for voxel with the NIfTI labels of the same run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("highdicom")

import pydicom  # noqa: E402

from fuzz_helpers import assert_one_error_line, run, write_dicom_series, write_volume  # noqa: E402
from NeonatalLungSegLib.volumes.dicom_seg import (AUTOMATIC, SEMIAUTOMATIC, algorithm_type_for,  # noqa: E402
                                                  read_dicom_seg, write_dicom_seg)
from NeonatalLungSegLib.volumes.volume_io import dicom_series_files  # noqa: E402


def test_segment_dicom_series_to_dicom_seg_round_trips_voxel_for_voxel(tmp_path: Path, tiny_model_folder: Path,
                                                                        capsys: pytest.CaptureFixture) -> None:
    series = write_dicom_series(tmp_path / "series", slices=8)
    common = ["--model", tiny_model_folder, "--device", "cpu"]
    code, _, err = run(["segment", series, "-o", tmp_path / "nii", *common], capsys)
    assert code == 0, err
    code, _, err = run(["segment", series, "-o", tmp_path / "seg", "--format", "dicom-seg", *common], capsys)
    assert code == 0, err
    nifti = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "nii" / "series_lungs.nii.gz")))
    files = dicom_series_files(series)
    labels, names, types = read_dicom_seg(tmp_path / "seg" / "series_lungs.dcm", files)
    assert labels.shape == nifti.shape == (8, 40, 32)
    assert np.array_equal(labels, nifti)
    assert names == {"right_lung": 1, "left_lung": 2} and set(types) == {AUTOMATIC}

    seg = pydicom.dcmread(tmp_path / "seg" / "series_lungs.dcm")
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"  # Segmentation Storage
    assert seg.Modality == "SEG"
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == pydicom.dcmread(files[0]).SeriesInstanceUID
    assert seg.StudyInstanceUID == pydicom.dcmread(files[0]).StudyInstanceUID
    assert seg.FrameOfReferenceUID == pydicom.dcmread(files[0]).FrameOfReferenceUID
    codes = {s.SegmentLabel: s.SegmentedPropertyTypeCodeSequence[0] for s in seg.SegmentSequence}
    assert (codes["Right lung"].CodeValue, codes["Right lung"].CodingSchemeDesignator) == ("3341006", "SCT")
    assert codes["Left lung"].CodeValue == "44029006"
    algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmName == "tiny-test-model" and algorithm.AlgorithmVersion == "0.0.1"
    assert not list((tmp_path / "seg").glob(".tmp-*"))


def test_corrected_labels_are_semiautomatic_and_round_trip(tmp_path: Path) -> None:
    """The hook for the Slicer module's export: corrected masks go out as SEMIAUTOMATIC."""
    series = write_dicom_series(tmp_path / "series", slices=6)
    files = dicom_series_files(series)
    ai = np.zeros((6, 40, 32), np.uint8)
    ai[1:4, 10:30, 2:12], ai[1:4, 10:30, 18:30] = 1, 2
    corrected = ai.copy()
    corrected[4, 10:30, 2:12] = 1
    assert algorithm_type_for(ai, ai) == AUTOMATIC and algorithm_type_for(ai, corrected) == SEMIAUTOMATIC
    out = write_dicom_seg(tmp_path / "corrected.dcm", corrected, files, {"right_lung": 1, "left_lung": 2},
                          model_name="m", model_version="1.0", algorithm_type=algorithm_type_for(ai, corrected))
    labels, _, types = read_dicom_seg(out, files)
    assert np.array_equal(labels, corrected) and set(types) == {SEMIAUTOMATIC}


def test_dicom_seg_needs_dicom_inputs(tmp_path: Path, tiny_model_folder: Path,
                                      capsys: pytest.CaptureFixture) -> None:
    source = write_volume(tmp_path / "a.nii.gz")
    code, _, err = run(["segment", source, "-o", tmp_path / "out", "--format", "dicom-seg", "--model",
                        tiny_model_folder, "--device", "cpu"], capsys)
    assert_one_error_line(code, err, "dicom-seg", "a.nii.gz")
    assert not (tmp_path / "out").exists()
