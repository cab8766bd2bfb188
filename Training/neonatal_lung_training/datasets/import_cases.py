"""Bring existing labelled data in: an nnU-Net raw dataset, or image/mask pairs, into a NEW training folder.

    neonatal-lung-seg import-cases -o TRAINING_FOLDER --nnunet Dataset501_X [--label-map JSON]
    neonatal-lung-seg import-cases -o TRAINING_FOLDER --pairs IMAGES_DIR LABELS_DIR [--label-map JSON]

Every case goes through the library's ``add_case``, so the training folder's checks, its privacy filter and
its manifest apply as for any export. The cases are stored as ``reference`` labels (expert labels from a
curated dataset), which ``train --reviewed-only`` keeps. Labels are mapped to the folder's schemes (1 right
lung and 2 left lung, or 1 lung): from the label names in the nnU-Net ``dataset.json``, from an explicit
``--label-map``, or, for pairs without a map, a binary mask is read as "lung". Every other label (the trachea
of BPD-Neo, say) becomes background, and the sidecar of each case says so. 2D slices are cases of depth 1; a
2D image whose mask is stored 1 x H x W is read on one grid. Bad input gets one ``error:`` line and exit
status 2, and nothing is written. The source layouts and the reverse export are in ``nnunet``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import re
import struct
import sys
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from NeonatalLungSegLib.dataset.training_folder import add_case, new_training_folder, safe_name
from NeonatalLungSegLib.dataset.training_folder_checks import identifying_value
from NeonatalLungSegLib.errors import InputError, exit_status
from NeonatalLungSegLib.volumes.input_checks import (FoldedItkWarnings, check_claimed_size, check_direction,
                                                     check_metaimage_stream, check_origin, check_spacing,
                                                     library_reason, voxel_bytes)
from NeonatalLungSegLib.volumes.nifti_reader import is_nifti, read_nifti
from NeonatalLungSegLib.volumes.volume_io import VOLUME_SUFFIXES, read_checked, volume_suffix

from .nnunet import nnunet_cases, pair_cases

TARGETS = {"background": 0, "right_lung": 1, "left_lung": 2, "lung": 1}
# Label names as datasets write them, compared in lower case without spaces, '_' or '-'.
_NAMES = {"background": "background", "bg": "background",
          "rightlung": "right_lung", "lungright": "right_lung", "rlung": "right_lung", "lungr": "right_lung",
          "leftlung": "left_lung", "lungleft": "left_lung", "llung": "left_lung", "lungl": "left_lung",
          "lung": "lung", "lungs": "lung", "bothlungs": "lung"}
GRID_TOLERANCE = {"spacing_rtol": 1e-4, "origin_atol": 1e-3, "direction_atol": 1e-4}  # as read_case checks


def _key(name: str) -> str:
    return re.sub(r"[^a-z]", "", name.lower())


def target_of(name: str) -> str | None:
    """The training folder's label for a dataset's label name ("Right Lung", "lung_left", ...), or None."""
    return _NAMES.get(_key(name))


@dataclass
class LabelMap:
    """Source label value -> training-folder label name; what is not listed is background."""

    targets: dict[int, str]
    names: dict[int, str] = field(default_factory=dict)  # the source's own names, lower case (for the record)
    strict: bool = True  # values the source does not declare are refused (else: background)
    origin: str = "dataset.json"

    def __post_init__(self) -> None:
        lungs = {t for t in self.targets.values() if t != "background"}
        if not lungs:
            raise InputError(f"{self.origin}: no label names a lung ({self.describe() or 'no labels'}); pass "
                             "--label-map, e.g. '{\"1\": \"right_lung\", \"2\": \"left_lung\"}' or '{\"1\": \"lung\"}'")
        if "lung" in lungs and lungs & {"right_lung", "left_lung"}:
            raise InputError(f"{self.origin}: labels name both 'lung' and a side ({self.describe()}); pass "
                             "--label-map to choose one scheme")
        if self.targets.get(0, "background") != "background":
            raise InputError(f"{self.origin}: label value 0 must be background")
        self.scheme = "lung" if "lung" in lungs else "right_left"

    def describe(self) -> str:
        values = sorted(set(self.targets) | set(self.names))
        return ", ".join(f"{v}{' ' + self.names[v] if v in self.names else ''} -> "
                         f"{self.targets.get(v, 'background')}" for v in values if v != 0)

    def record(self) -> dict[str, dict[str, str]]:
        """The mapping as the sidecar keeps it (names in lower case: label names are not people's)."""
        return {str(v): {**({"label": self.names[v]} if v in self.names else {}),
                         "to": self.targets.get(v, "background")}
                for v in sorted(set(self.targets) | set(self.names)) if v != 0}

    def apply(self, array: np.ndarray, where: str) -> tuple[np.ndarray, list[int]]:
        """The mapped uint8 mask and the non-zero source values that became background."""
        if array.dtype.kind == "f":
            if not np.isfinite(array).all():
                raise InputError(f"{where}: mask holds NaN or infinite values")
            if not np.array_equal(array, np.round(array)):
                raise InputError(f"{where}: mask holds values that are not whole numbers (a soft or resampled "
                                 "mask); threshold it to labels first")
        values = [int(v) for v in np.unique(array)]
        unknown = [v for v in values if v != 0 and v not in self.targets and v not in self.names]
        if self.strict and unknown:
            hint = ("a mask without --label-map must be binary (1 = lung)" if self.origin == "--pairs"
                    else f"{self.origin} does not declare them")
            raise InputError(f"{where}: mask holds label values {unknown[:8]}; {hint}; pass --label-map")
        out = np.zeros(array.shape, np.uint8)
        for value, target in self.targets.items():
            if TARGETS[target]:
                out[array == value] = TARGETS[target]
        dropped = [v for v in values if v != 0 and self.targets.get(v, "background") == "background"]
        return out, dropped


def parse_label_map(text: str) -> LabelMap:
    """``--label-map``: JSON text or a JSON file, source value -> right_lung / left_lung / lung / background."""
    try:
        raw = json.loads(text if text.lstrip().startswith("{") else Path(text).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InputError(f"--label-map: neither a JSON object nor a readable JSON file ({str(error)[:120]})") from None
    if not isinstance(raw, dict) or not raw:
        raise InputError("--label-map: a JSON object of label value -> name is needed, e.g. '{\"1\": \"lung\"}'")
    targets = {}
    for value, name in raw.items():
        if not re.fullmatch(r"\d+", str(value).strip()):
            raise InputError(f"--label-map: key {value!r} is not a label value (a whole number >= 0)")
        target = target_of(name) if isinstance(name, str) else None
        if target is None:
            raise InputError(f"--label-map: {name!r} is not one of right_lung, left_lung, lung, background")
        targets[int(value)] = target
    return LabelMap(targets, strict=False, origin="--label-map")


def dataset_label_map(labels: object, where: str) -> LabelMap:
    """dataset.json's ``labels``: nnU-Net v2 (name -> value) or v1 / MSD (value -> name)."""
    if not isinstance(labels, dict) or not labels:
        raise InputError(f"{where}: 'labels' must be an object of label names and values")
    if all(isinstance(k, str) and k.strip().isdigit() and isinstance(v, str) for k, v in labels.items()):
        pairs = [(name, int(value)) for value, name in labels.items()]  # v1: {"0": "background", "1": "lung"}
    else:
        pairs = []
        for name, value in labels.items():
            if isinstance(value, (list, tuple)):
                raise InputError(f"{where}: label {name!r} is a region (a list of values); region-based labels "
                                 "are not supported, pass --label-map")
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InputError(f"{where}: label {name!r} has value {value!r}; a whole number >= 0 is needed")
            pairs.append((str(name), value))
    if any(_key(name) == "ignore" for name, _ in pairs):
        raise InputError(f"{where}: the dataset uses nnU-Net's 'ignore' label (partly labelled cases), which a "
                         "training folder cannot hold")
    targets = {value: target_of(name) or "background" for name, value in pairs}
    names = {value: name.lower() for name, value in pairs}
    return LabelMap(targets, names, strict=True, origin=where)


# Reading: 2D slices and slices of depth 1 as volumes of depth 1, with the library's checks where it has them.

def _nifti_2d_as_3d(path: Path) -> sitk.Image:
    """A 2D NIfTI read by the library's checked reader, through a copy whose header says 3D of depth 1."""
    try:
        data = path.read_bytes()
        data = gzip.decompress(data) if path.name.lower().endswith(".gz") else data
    except (OSError, EOFError, zlib.error) as error:
        raise InputError(f"{path}: unreadable image (truncated or damaged file: {str(error)[:120]})") from None
    raw = bytearray(data)
    for endian in "<>":
        size = struct.unpack_from(f"{endian}i", raw, 0)[0] if len(raw) >= 4 else 0
        if size in (348, 540):
            break
    else:
        raise InputError(f"{path}: unreadable image (not a NIfTI file)")
    dim_fmt, dim_at, pix_fmt, pix_at = ("8h", 40, "8f", 76) if size == 348 else ("8q", 16, "8d", 104)
    dims, pixdim = list(struct.unpack_from(endian + dim_fmt, raw, dim_at)), \
        list(struct.unpack_from(endian + pix_fmt, raw, pix_at))
    if not 2 <= dims[0] <= 7 or any(d != 1 for d in dims[3:dims[0] + 1]):
        raise InputError(f"{path}: unreadable image (header dimensions {dims}, expected a 2D slice)")
    dims[0], dims[3:] = 3, [1] * 5
    pixdim[3] = pixdim[3] if math.isfinite(pixdim[3]) and pixdim[3] > 0 else 1.0
    struct.pack_into(endian + dim_fmt, raw, dim_at, *dims)
    struct.pack_into(endian + pix_fmt, raw, pix_at, *pixdim)
    with tempfile.TemporaryDirectory(prefix="nls-import-") as folder:
        copy = Path(folder) / "slice.nii"
        copy.write_bytes(bytes(raw))
        try:
            return read_nifti(copy)[0]
        except InputError as error:
            raise InputError(str(error).replace(str(copy), str(path))) from None


def read_case_file(path: Path) -> tuple[sitk.Image, bool]:
    """A scalar 2D or 3D image as a 3D image (a 2D slice has depth 1), and whether the file was 2D."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if volume_suffix(path) is None:
        raise InputError(f"{path}: unsupported file type; use one of {', '.join(VOLUME_SUFFIXES)}")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    with FoldedItkWarnings(path, emit=False) as folded:
        try:
            reader.ReadImageInformation()
        except RuntimeError as exc:
            raise InputError(f"{path}: unreadable image ({library_reason(exc, folded)})") from None
        dimension, size = reader.GetDimension(), reader.GetSize()
        if reader.GetNumberOfComponents() != 1:
            raise InputError(f"{path}: {reader.GetNumberOfComponents()} components per voxel; one channel is "
                             "supported")
        if dimension not in (2, 3):
            raise InputError(f"{path}: image is {dimension}D; 2D slices and 3D volumes are supported")
        if is_nifti(path):
            image = read_nifti(path)[0] if dimension == 3 else _nifti_2d_as_3d(path)
        elif dimension == 3 and min(size) >= 2:
            image = read_checked(path, check=False).image
        else:  # NRRD / MetaImage of one slice: the library's reader wants every axis >= 2
            check_claimed_size(path, size, voxel_bytes(reader.GetPixelID(), 1))
            check_metaimage_stream(path)
            try:
                image = sitk.ReadImage(str(path))
            except RuntimeError as exc:
                raise InputError(f"{path}: unreadable image ({library_reason(exc, folded)})") from None
            if dimension == 2:
                image = sitk.JoinSeries(image)
    array = sitk.GetArrayViewFromImage(image)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise InputError(f"{path}: holds {int(np.count_nonzero(~np.isfinite(array)))} NaN or infinite voxels")
    check_spacing(path, image.GetSpacing())
    check_origin(path, image.GetOrigin())
    check_direction(path, image.GetDirection())
    return image, dimension == 2


def label_on_grid(image: sitk.Image, label: sitk.Image, in_plane: bool, where: str) -> None:
    """Refuse a label on another grid; ``in_plane``: a 2D file against a slice of depth 1 (compare the plane)."""
    axes = 2 if in_plane else 3
    a, b = np.asarray(image.GetDirection()).reshape(3, 3), np.asarray(label.GetDirection()).reshape(3, 3)
    same = (image.GetSize()[:axes] == label.GetSize()[:axes] and label.GetSize()[2] == image.GetSize()[2]
            and np.allclose(label.GetSpacing()[:axes], image.GetSpacing()[:axes],
                            rtol=GRID_TOLERANCE["spacing_rtol"])
            and np.allclose(label.GetOrigin()[:axes], image.GetOrigin()[:axes],
                            atol=GRID_TOLERANCE["origin_atol"])
            and np.allclose(a[:axes, :axes], b[:axes, :axes], atol=GRID_TOLERANCE["direction_atol"]))
    if not same:
        raise InputError(f"{where}: label is not on its image's grid (size {list(label.GetSize())} vs "
                         f"{list(image.GetSize())}, or another spacing, origin or direction)")


def known_subjects(meta: dict) -> dict[str, str]:
    """Case -> subject as ``export-nnunet`` records it in dataset.json, so subjects survive a round trip."""
    ours = meta.get("neonatal_lung_seg")
    subjects = ours.get("subjects") if isinstance(ours, dict) else None
    return {k: v for k, v in subjects.items() if isinstance(v, str) and v} if isinstance(subjects, dict) else {}


def subject_of(case: str, pattern: re.Pattern[str] | None, known: dict[str, str]) -> str:
    """The subject of a case: from ``--subject-regex`` when given, else as recorded, else the case name."""
    if pattern is None:
        return known.get(case, case)
    match = pattern.search(case)
    subject = None if match is None else (match.group("subject") if "subject" in pattern.groupindex
                                          else match.group(1) if pattern.groups else match.group(0))
    if not subject:
        raise InputError(f"case {case!r}: --subject-regex {pattern.pattern!r} finds no subject in its name")
    return subject


def import_cases(output: Path, *, nnunet: Path | None = None, pairs: tuple[Path, Path] | None = None,
                 label_map: str | None = None, reviewer: str | None = None, description: str | None = None,
                 subject_regex: str | None = None, echo=print) -> int:
    """Write every case into a NEW training folder, all or nothing; returns the number of cases."""
    if output.exists():
        raise InputError(f"{output}: already exists; choose a new folder for the training folder")
    try:
        pattern = re.compile(subject_regex) if subject_regex else None
    except re.error as error:
        raise InputError(f"--subject-regex: not a regular expression ({error})") from None
    if nnunet is not None:
        cases, meta = nnunet_cases(nnunet)
        kind = "nnunet-raw"
        labels = parse_label_map(label_map) if label_map else \
            dataset_label_map(meta.get("labels"), str(nnunet / "dataset.json"))
    else:
        cases, kind, meta = pair_cases(*pairs), "image-mask-pairs", {}
        labels = parse_label_map(label_map) if label_map else LabelMap({1: "lung"}, origin="--pairs")
    known = known_subjects(meta)
    subjects = {name: subject_of(name, pattern, known) for name, _, _ in cases}
    text = description or (f"imported by neonatal-lung-seg import-cases from "
                           f"{'an nnU-Net raw dataset' if nnunet is not None else 'image/mask pairs'}; "
                           f"labels {labels.describe()}; every other label is background")
    empty = 0
    with new_training_folder(output) as staging:
        for name, image_path, label_path in cases:
            image, image_2d = read_case_file(image_path)
            label, label_2d = read_case_file(label_path)
            label_on_grid(image, label, image_2d != label_2d or image.GetSize()[2] == 1, str(label_path))
            mask, dropped = labels.apply(sitk.GetArrayViewFromImage(label), str(label_path))
            empty += not mask.any()
            label = sitk.GetImageFromArray(mask)
            label.CopyInformation(image)
            metadata = {"imported_from": kind, "label_mapping": labels.record(), "slice_2d": image_2d,
                        **({"source_case": name} if identifying_value(name) is None else {}),
                        **({"labels_made_background": dropped} if dropped else {}),
                        **({"reviewer": reviewer} if reviewer else {})}
            try:
                add_case(staging, image, label, subjects[name], review_status="reference",
                         label_scheme=labels.scheme, source=f"{kind}-import", metadata=metadata,
                         description=text)
            except (InputError, ValueError) as error:
                raise InputError(f"case {name!r}: {error}") from None
    count = len({safe_name(s, 'subject') for s in subjects.values()})
    echo(f"imported {len(cases)} case(s) of {count} subject(s) into {output} as reference labels "
         f"(scheme {labels.scheme}: {labels.describe()}; other labels are background)"
         + (f"; {empty} mask(s) are empty" if empty else ""))
    return len(cases)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="neonatal-lung-seg import-cases", description=__doc__.split("\n")[0])
    parser.add_argument("-o", "--output", type=Path, required=True, help="new training folder")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--nnunet", type=Path, metavar="DATASET_DIR",
                        help="nnU-Net raw dataset: imagesTr/CASE_0000.EXT, labelsTr/CASE.EXT, dataset.json")
    source.add_argument("--pairs", type=Path, nargs=2, metavar=("IMAGES_DIR", "LABELS_DIR"),
                        help="two folders holding images and masks with the same names (NIfTI, NRRD, MHA)")
    parser.add_argument("--label-map", metavar="JSON",
                        help="source label value -> right_lung / left_lung / lung / background, as JSON text or a "
                             "JSON file, e.g. '{\"1\": \"right_lung\", \"2\": \"left_lung\"}'; values not named "
                             "become background (default: dataset.json's label names; for --pairs a binary mask "
                             "is lung)")
    parser.add_argument("--subject-regex", metavar="REGEX",
                        help="derive the subject from the case name (group 'subject', else group 1, else the match), "
                             "so several slices of one person stay one subject")
    parser.add_argument("--reviewer", help="who vouches for the labels (stored in each case's sidecar)")
    parser.add_argument("--description", help="the training folder's description (default: where the labels came "
                                              "from and how they were mapped)")
    args = parser.parse_args(argv)

    def run() -> int:
        import_cases(args.output, nnunet=args.nnunet, pairs=tuple(args.pairs) if args.pairs else None,
                     label_map=args.label_map, reviewer=args.reviewer, description=args.description,
                     subject_regex=args.subject_regex)
        return 0

    return exit_status(run)


if __name__ == "__main__":
    sys.exit(main())

