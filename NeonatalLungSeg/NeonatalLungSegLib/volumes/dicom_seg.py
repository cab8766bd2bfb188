"""DICOM Segmentation output: lung labels that travel beside the source series into a PACS.

Hospitals exchange segmentations as DICOM SEG objects that reference the images they were drawn on; every
peer tool that talks to a PACS writes them. The object is built with highdicom (a maintained implementation
of the IOD), names right and left lung with SNOMED CT codes, and identifies the model (name and version) as
the algorithm: AUTOMATIC for the model's own output, SEMIAUTOMATIC once a clinician has corrected it. It is
read back and compared voxel for voxel before it counts as written.

Unlike the training folder, a DICOM SEG belongs to the patient's study and carries its patient and study
modules (copied from the source series by highdicom): it is for the hospital, not for sharing.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import InputError, OutputError

SOFTWARE_NAME = "NeonatalLungSeg"
SERIES_NUMBER = 9901
SERIES_DESCRIPTION = "Lung segmentation (NeonatalLungSeg, research use only)"
# SNOMED CT codes of the structures the engine labels (label name -> code, meaning).
SNOMED = {"right_lung": ("3341006", "Right lung"), "left_lung": ("44029006", "Left lung"),
          "lung": ("39607008", "Lung")}
AUTOMATIC, SEMIAUTOMATIC = "AUTOMATIC", "SEMIAUTOMATIC"


def algorithm_type_for(ai_labels: np.ndarray | None, labels: np.ndarray) -> str:
    """AUTOMATIC when ``labels`` is the model's output untouched, SEMIAUTOMATIC once anyone changed it."""
    return AUTOMATIC if ai_labels is not None and np.array_equal(ai_labels, labels) else SEMIAUTOMATIC


def check_seg_labels(label_names: dict[str, int]) -> None:
    """Every label must have a SNOMED CT code: a DICOM SEG segment cannot be written without one."""
    unknown = sorted(set(label_names) - set(SNOMED))
    if unknown:
        raise OutputError(f"cannot write a DICOM SEG: no SNOMED CT code for label(s) {', '.join(unknown)} (known: "
                          f"{', '.join(SNOMED)}); choose --format nii.gz, nrrd or mha for these labels")


def _read_sources(series_files: list[str]) -> list[Any]:
    import pydicom

    datasets = []
    for file in series_files:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pydicom's notes on odd values: not lines for the user
                datasets.append(pydicom.dcmread(file))
        except (OSError, pydicom.errors.InvalidDicomError) as exc:
            raise InputError(f"{file}: unreadable DICOM slice ({exc})") from None
    return datasets


def _positive(value: Any) -> bool:
    try:
        return value not in (None, "") and math.isfinite(float(value)) and float(value) > 0
    except (TypeError, ValueError):
        return False


def _slice_spacing(folder: Path, sources: list[Any]) -> float:
    """The distance between neighbouring slices along the slice normal, from the slice positions."""
    try:
        cosines = np.array([float(v) for v in sources[0].ImageOrientationPatient], dtype=float)
        normal = np.cross(cosines[:3], cosines[3:6])
        along = sorted(float(np.array([float(v) for v in s.ImagePositionPatient], dtype=float) @ normal)
                       for s in sources)
        spacing = float(np.median(np.diff(along))) if len(along) > 1 else math.nan
    except (AttributeError, TypeError, ValueError, IndexError):
        spacing = math.nan
    if not (math.isfinite(spacing) and spacing > 0):
        raise InputError(f"{folder}: cannot build a DICOM SEG for this series: it gives no Slice Thickness "
                         "(0018,0050) and no slice positions to derive the spacing between slices from")
    return spacing


def _with_slice_thickness(folder: Path, sources: list[Any]) -> None:
    """highdicom copies the first source's Slice Thickness into the SEG's pixel measures, but MR series often
    leave it empty (Type 2). Where it is missing or empty, the spacing between the slices (from their
    positions: the series' own geometry) stands in, on these in-memory datasets only."""
    if all(_positive(s.get("SliceThickness")) for s in sources):
        return
    spacing = _slice_spacing(folder, sources)
    for dataset in sources:
        if not _positive(dataset.get("SliceThickness")):
            dataset.SliceThickness = f"{spacing:.6g}"


def build_dicom_seg(labels: np.ndarray, series_files: list[str], label_names: dict[str, int], *,
                    model_name: str, model_version: str, algorithm_type: str = AUTOMATIC) -> Any:
    """A highdicom Segmentation of ``labels`` ((k, j, i) on the series' grid, slice k = ``series_files[k]``,
    the order the series was read in) with one SNOMED-coded segment per entry of ``label_names``."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    if algorithm_type not in (AUTOMATIC, SEMIAUTOMATIC):
        raise ValueError(f"algorithm_type must be {AUTOMATIC} or {SEMIAUTOMATIC}, got {algorithm_type!r}")
    check_seg_labels(label_names)
    sources = _read_sources(series_files)
    if labels.ndim != 3 or labels.shape[0] != len(sources) or \
            labels.shape[1:] != (int(sources[0].Rows), int(sources[0].Columns)):
        raise ValueError(f"labels of shape {labels.shape} do not match the series ({len(sources)} slices of "
                         f"{sources[0].Rows}x{sources[0].Columns})")
    _with_slice_thickness(Path(series_files[0]).parent, sources)
    ordered = sorted(label_names.items(), key=lambda item: item[1])
    algorithm = hd.AlgorithmIdentificationSequence(name=model_name, version=model_version,
                                                   family=codes.cid7162.ArtificialIntelligence)
    descriptions = [hd.seg.SegmentDescription(
        segment_number=number, segment_label=SNOMED[name][1],
        segmented_property_category=codes.SCT.AnatomicalStructure,
        segmented_property_type=hd.sr.CodedConcept(value=SNOMED[name][0], scheme_designator="SCT",
                                                   meaning=SNOMED[name][1]),
        algorithm_type=getattr(hd.seg.SegmentAlgorithmTypeValues, algorithm_type),
        algorithm_identification=algorithm) for number, (name, _) in enumerate(ordered, start=1)]
    # label value -> segment number (1..n in label order): a label map of segment numbers
    segment_map = np.zeros(max(v for _, v in ordered) + 1, np.uint8)
    for number, (_, value) in enumerate(ordered, start=1):
        segment_map[value] = number
    if labels.max(initial=0) >= segment_map.size or np.any(segment_map[np.unique(labels)][1:] == 0):
        raise ValueError(f"label values {sorted(np.unique(labels).tolist())} not all named in {label_names}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # highdicom's and pydicom's notes: not lines for the user
            return hd.seg.Segmentation(
                source_images=sources, pixel_array=segment_map[labels],
                segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=descriptions,
                series_instance_uid=hd.UID(), series_number=SERIES_NUMBER, sop_instance_uid=hd.UID(),
                instance_number=1, manufacturer=SOFTWARE_NAME, manufacturer_model_name=model_name,
                software_versions=f"{SOFTWARE_NAME} {__version__}; model {model_name} {model_version}",
                device_serial_number="none", series_description=SERIES_DESCRIPTION, omit_empty_frames=False)
    except (ValueError, AttributeError, TypeError) as exc:  # e.g. a source series lacking required attributes
        raise InputError(f"{Path(series_files[0]).parent}: cannot build a DICOM SEG for this series "
                         f"({str(exc).splitlines()[0]})") from None


def read_dicom_seg(path: Path | str, series_files: list[str]) -> tuple[np.ndarray, dict[str, int], list[str]]:
    """Labels ((k, j, i), label values as the engine numbers them) of a DICOM SEG written here, read back on
    ``series_files``' grid; also the label names and each segment's algorithm type."""
    import highdicom as hd

    sources = _read_sources(series_files)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seg = hd.seg.segread(str(path))
        numbers = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=[d.SOPInstanceUID for d in sources], combine_segments=True,
            skip_overlap_checks=True)
    by_code = {code: name for name, (code, _) in SNOMED.items()}
    names, lookup, types = {}, np.zeros(len(seg.SegmentSequence) + 1, np.uint8), []
    engine_values = {"right_lung": 1, "left_lung": 2, "lung": 1}
    for item in seg.SegmentSequence:
        name = by_code[item.SegmentedPropertyTypeCodeSequence[0].CodeValue]
        names[name] = engine_values[name]
        lookup[int(item.SegmentNumber)] = engine_values[name]
        types.append(str(item.SegmentAlgorithmType))
    return lookup[np.asarray(numbers)], names, types


def write_dicom_seg(path: Path, labels: np.ndarray, series_files: list[str], label_names: dict[str, int], *,
                    model_name: str, model_version: str, algorithm_type: str = AUTOMATIC) -> Path:
    """Build, write to ``path`` and verify by reading back voxel for voxel. The caller provides an atomic
    temporary path (``AtomicOutputs.path_for``) for the final name, or any path it owns.

    This is the hook for the Slicer module's export: pass the corrected labels on the source series' grid
    with ``algorithm_type=algorithm_type_for(ai_labels, labels)``.
    """
    seg = build_dicom_seg(labels, series_files, label_names, model_name=model_name,
                          model_version=model_version, algorithm_type=algorithm_type)
    try:
        seg.save_as(str(path))
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc}); nothing was written") from None
    try:
        back, _, _ = read_dicom_seg(path, series_files)
    except Exception as exc:  # any reader failure means the file is not what was meant
        raise OutputError(f"{path}: verification after writing failed ({exc})") from None
    if back.shape != labels.shape or not np.array_equal(back, labels):
        raise OutputError(f"{path}: verification after writing failed (voxels differ); nothing was written")
    return Path(path)
