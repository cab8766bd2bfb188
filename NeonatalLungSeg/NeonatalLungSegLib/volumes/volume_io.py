"""Reading volumes safely and writing results atomically.

Clinicians' files are the one thing we must never damage, and a half-written mask that looks complete is
worse than none. So inputs are checked up front with one clear message per problem, and every output is
written under a temporary name in its final folder and renamed into place only when all outputs of a case
are complete (a rename within one folder is atomic on POSIX and Windows).
"""

from __future__ import annotations

import gzip
import json
import os
import time
import zlib
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import SimpleITK as sitk

from ..errors import InputError, OutputError, OutputExistsError
from ..geometry import Geometry, image_to_array
from .header_checks import (FileStamp, check_claimed_size, check_direction, check_origin, check_spacing, stamp_file,
                            unchanged_since, voxel_bytes)
from .input_checks import (FoldedItkWarnings, check_dicom_series, check_float64_range, check_header_spacing_declared,
                           check_metaimage_stream, library_reason)
from .nifti_reader import is_nifti, read_nifti, scan as scan_nifti

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
OUTPUT_FORMATS = ("nii.gz", "nrrd", "mha")
OWN_OUTPUT_ENDINGS = ("_lungs", "_lung_probability")  # stems this tool writes: never read back as scans
TEMP_PATTERN = re.compile(r"^\.tmp-[0-9a-f]{8}-")
STALE_TEMP_SECONDS = 3600.0  # a temporary file this old belongs to a crashed or killed run


def is_scan_file(path: Path) -> bool:
    """A volume file in a folder input that is a scan: not hidden (temporary files of a running or crashed
    run are hidden) and not one of this tool's own outputs, which would otherwise be segmented again."""
    suffix = volume_suffix(path)
    if suffix is None or path.name.startswith("."):
        return False
    return not path.name[: -len(suffix)].endswith(OWN_OUTPUT_ENDINGS)


def clean_stale_temporaries(folder: Path, older_than_s: float = STALE_TEMP_SECONDS) -> list[Path]:
    """Delete this tool's temporary files left in ``folder`` by a crashed run (old enough not to be a
    concurrent run's); returns what was removed."""
    removed: list[Path] = []
    if not Path(folder).is_dir():
        return removed
    cutoff = time.time() - older_than_s
    for path in Path(folder).iterdir():
        try:
            if TEMP_PATTERN.match(path.name) and path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed.append(path)
        except OSError:
            pass  # not ours to fight over: another process may be renaming it
    return removed


def check_output_folder(folder: Path) -> None:
    """Refuse early (before any computing) an output folder that cannot be created or written."""
    folder = Path(folder)
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"{folder}: cannot create the output folder: {probe} is a file")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"{folder}: cannot write there ({probe}: permission denied or read-only)")


def volume_suffix(path: Path) -> str | None:
    name = path.name.lower()
    return next((s for s in VOLUME_SUFFIXES if name.endswith(s)), None)


def case_name(path: Path) -> str:
    """A safe file-name stem for a case: its file name without the volume suffix, or its folder name.

    Sanitised because it becomes part of output paths: only letters, digits, '.', '_' and '-' survive,
    so a crafted name cannot climb out of the output folder. A name with non-ASCII letters also gets a
    short hash of the original, so "患者" and "病人" do not both become "case".
    """
    path = Path(path)
    suffix = volume_suffix(path)
    stem = path.name[: -len(suffix)] if suffix else path.name
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._")
    if not stem.isascii():
        import hashlib

        safe = f"{safe[:55] or 'case'}-{hashlib.sha256(stem.encode('utf-8')).hexdigest()[:8]}"
    return safe or "case"


def dicom_series_files(folder: Path) -> list[str]:
    """The files of the one DICOM series in ``folder``, in the order ITK stacks them (GDCM's, by position)."""
    with FoldedItkWarnings(folder, emit=False):  # GDCM's notes on files that are not DICOM: not the user's concern
        series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
        if not series:
            raise InputError(f"{folder}: folder holds no DICOM series (and is not a volume file)")
        if len(series) > 1:
            raise InputError(f"{folder}: folder holds {len(series)} DICOM series; pass a folder with one series")
        return list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series[0]))


def _check_header(path: Path, dimension: int, size: tuple[int, ...], components: int,
                  single_slices: bool = False) -> None:
    if dimension != 3:
        raise InputError(f"{path}: image is {dimension}D; a 3D chest volume is needed")
    if components != 1:
        raise InputError(f"{path}: image has {components} components per voxel; a scalar volume is needed")
    if min(size) < (1 if single_slices else 2):
        raise InputError(f"{path}: image has size {list(size)}; every axis needs at least 2 voxels")


def _check_file_type(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if not path.is_dir() and volume_suffix(path) is None:
        raise InputError(f"{path}: unsupported file type; use one of {', '.join(VOLUME_SUFFIXES)} "
                         "or a DICOM series folder")
    if not path.is_dir() and not path.is_file():
        raise InputError(f"{path}: not a regular file (a pipe or device cannot be read as a volume)")


def _detached_data_files(path: Path) -> list[Path]:
    """The data file a detached header (.nhdr, .mhd) names, where it names one file (not a list or pattern)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(1 << 16).decode("latin-1")
    except OSError:
        return []
    found = re.search(r"^(?:data ?file:|ElementDataFile\s*=)\s*(.+?)\s*$", head, re.MULTILINE | re.IGNORECASE)
    if not found or found.group(1).upper() in ("LOCAL", "LIST") or "%" in found.group(1) or " " in found.group(1):
        return []
    data = path.parent / found.group(1)
    return [data] if data.is_file() else []


def source_files(path: Path) -> list[str]:
    """Every file a volume is read from: a DICOM series' slices, a detached header and its data, or the file."""
    path = Path(path)
    if path.is_dir():
        return dicom_series_files(path)
    return [str(path), *map(str, _detached_data_files(path))] if path.name.lower().endswith((".nhdr", ".mhd")) \
        else [str(path)]


def _probe(path: Path, series: list[str] | None = None, single_slices: bool = False) -> None:
    _check_file_type(path)
    if path.is_dir():
        check_dicom_series(path, dicom_series_files(path) if series is None else series)
        return
    if is_nifti(path):
        scan_nifti(path, header_only=True)  # header, size against budget and file, geometry as ITK reads it
        return
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    with FoldedItkWarnings(path) as folded:
        try:
            reader.ReadImageInformation()
        except RuntimeError as exc:
            raise InputError(f"{path}: unreadable image ({library_reason(exc, folded)})") from None
    _check_header(path, reader.GetDimension(), reader.GetSize(), reader.GetNumberOfComponents(), single_slices)
    check_claimed_size(path, reader.GetSize(), voxel_bytes(reader.GetPixelID(), reader.GetNumberOfComponents()))
    check_direction(path, reader.GetDirection())
    check_header_spacing_declared(path)
    check_spacing(path, reader.GetSpacing())
    check_origin(path, reader.GetOrigin())


def probe_volume(path: Path) -> None:
    """Checks before any voxel is allocated, so a batch fails before anything is computed or written.

    From the header: dimension, size against the memory budget and the file size, an orthogonal direction,
    a finite and positive spacing; a NIfTI header field by field (``nifti_reader``); a DICOM series must have
    complete slices on one evenly spaced stack along the slice normal. The read (``read_checked``) makes these
    checks again on the bytes it reads, so a probe is an early answer, not a licence.
    """
    path = Path(path)
    with FoldedItkWarnings(path, emit=False):
        _probe(path)


@dataclass(frozen=True)
class CheckedVolume:
    """A volume read and checked, and the stamp of the bytes it was read from (one per source file)."""

    image: sitk.Image
    fingerprint: tuple[FileStamp, ...]


def _identity(fingerprint: tuple[FileStamp, ...]) -> tuple[tuple[str, int, str], ...]:
    return tuple((s.path, s.size, s.sha256) for s in fingerprint)


def read_checked(path: Path, check: bool = True, expect: tuple[FileStamp, ...] | None = None,
                 single_slices: bool = False) -> CheckedVolume:
    """Read a 3D scalar volume from a file or a DICOM series folder as float32, checking what is read.

    Every read checks the bytes it uses: a NIfTI file in one pass that hashes, checks and decodes the same
    bytes (``nifti_reader``); other formats are stamped (size, time, SHA-256), checked and read by ITK, and
    refused if they changed meanwhile. ``expect``: the fingerprint an earlier read of this run recorded; the
    bytes must be those (an input changed or truncated since it was checked is refused, not segmented).
    ``check=False`` leaves the value check (NaN, constant) to the engine, which always makes it.
    ``single_slices``: an axis of one voxel is accepted (a training folder's CT slice is a volume of depth 1);
    a chest volume to segment needs at least 2 voxels on every axis.
    """
    path = Path(path)
    with FoldedItkWarnings(path, emit=expect is None) as folded:
        _check_file_type(path)
        if path.is_file() and is_nifti(path):
            if expect is not None and len(expect) == 1 and path.stat().st_size != expect[0].size:
                _same_as_checked(path, (stamp_file(path),), expect)  # say "changed", not what the change broke
            try:
                image, stamp = read_nifti(path)
            except InputError:
                if expect is not None:
                    _same_as_checked(path, (stamp_file(path),), expect)
                raise
            fingerprint = (stamp,)
            _same_as_checked(path, fingerprint, expect)
        else:
            files = source_files(path)
            fingerprint = tuple(stamp_file(f) for f in files)
            _same_as_checked(path, fingerprint, expect)
            _probe(path, files if path.is_dir() else None, single_slices)
            if path.is_file():
                check_metaimage_stream(path)
            try:
                if path.is_dir():
                    reader = sitk.ImageSeriesReader()
                    reader.SetFileNames(files)
                    image = reader.Execute()
                else:
                    image = sitk.ReadImage(str(path))
            except RuntimeError as exc:
                raise InputError(f"{path}: unreadable image ({library_reason(exc, folded)})") from None
            if not unchanged_since(fingerprint):
                raise InputError(f"{path}: changed while it was being read; read it again when nothing writes to it")
        _check_header(path, image.GetDimension(), image.GetSize(), image.GetNumberOfComponentsPerPixel(),
                      single_slices)
        check_direction(path, image.GetDirection())
        check_spacing(path, image.GetSpacing())
        check_origin(path, image.GetOrigin())
        check_float64_range(path, image)
        image = sitk.Cast(image, sitk.sitkFloat32)
        if check:
            check_values(sitk.GetArrayViewFromImage(image), str(path))
    return CheckedVolume(image, fingerprint)


def _same_as_checked(path: Path, fingerprint: tuple[FileStamp, ...], expect: tuple[FileStamp, ...] | None) -> None:
    if expect is not None and _identity(fingerprint) != _identity(expect):
        raise InputError(f"{path}: changed since this run checked it (other bytes or files than were checked); "
                         "it was not segmented")


def read_volume(path: Path, check: bool = True, expect: tuple[FileStamp, ...] | None = None,
                single_slices: bool = False) -> sitk.Image:
    """``read_checked``'s image: a 3D scalar float32 volume, checked as it is read."""
    return read_checked(path, check=check, expect=expect, single_slices=single_slices).image


def check_values(array: np.ndarray, source: str) -> None:
    """Refuse volumes no model can segment meaningfully: non-finite, empty or constant."""
    if array.size == 0:
        raise InputError(f"{source}: volume is empty")
    # min and max propagate NaN and expose infinities, so two passes and no volume-sized temporary
    # suffice; the non-finite voxels are only counted on the error path.
    low, high = float(np.min(array)), float(np.max(array))
    if not (np.isfinite(low) and np.isfinite(high)):
        raise InputError(f"{source}: volume contains {int(np.count_nonzero(~np.isfinite(array)))} NaN or "
                         "infinite voxels")
    if low == high:  # NaN never gets here: an all-NaN volume is reported as NaN above
        raise InputError(f"{source}: volume is constant ({low}); nothing to segment")


class AtomicOutputs:
    """Write several files as one unit: all appear, or none does.

    Use ``path_for(final)`` to get a temporary path (same folder, same suffix so ITK picks the right
    writer); on a clean exit every temporary file is renamed to its final name, on any exception
    (KeyboardInterrupt included) they are deleted. Existing finals are refused unless ``overwrite``.
    """

    def __init__(self, overwrite: bool = False, protected: set[Path] | None = None) -> None:
        self.overwrite = overwrite
        self.protected = {Path(p).resolve() for p in (protected or ())}
        self._pending: list[tuple[Path, Path]] = []

    def check(self, final: Path) -> None:
        if Path(final).resolve() in self.protected:
            raise OutputError(f"{final}: is an input of this run; refusing to write over it (even with --overwrite)")
        if Path(final).is_dir():  # a file cannot replace it: the rename would fail after others were made
            raise OutputError(f"{final}: is a folder where this output goes; refusing to replace it (even with "
                              "--overwrite): move or rename it")
        if Path(final).exists() and not self.overwrite:
            raise OutputExistsError(f"{final}: already exists; pass --overwrite to replace it")

    def path_for(self, final: Path) -> Path:
        final = Path(final)
        self.check(final)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{final.parent}: cannot create the output folder ({exc.strerror or exc})") from None
        temporary = final.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{final.name}")
        self._pending.append((temporary, final))
        return temporary

    def write_image(self, image: sitk.Image, final: Path) -> None:
        """Write, then read back and compare voxel for voxel: ITK's writers can short-write without raising."""
        temporary = self.path_for(final)
        try:
            with FoldedItkWarnings(final):  # ITK's writers warn over three lines: one line at most
                sitk.WriteImage(image, str(temporary), useCompression=True)
        except (OSError, RuntimeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).strip().splitlines()[-1]
            raise OutputError(f"{final}: cannot write ({reason}); nothing was written") from None
        verify_image_file(temporary, image, final)

    def write_text(self, text: str, final: Path) -> None:
        temporary = self.path_for(final)
        try:
            temporary.write_text(text, encoding="utf-8")
            if temporary.read_text(encoding="utf-8") != text:
                raise OutputError(f"{final}: verification after writing failed (read back differs)")
        except OSError as exc:
            raise OutputError(f"{final}: cannot write ({exc.strerror or exc}); nothing was written") from None

    def write_json(self, data: Any, final: Path) -> None:
        self.write_text(json.dumps(data, indent=2) + "\n", final)

    def __enter__(self) -> AtomicOutputs:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if exc_type is None:
                for _, final in self._pending:  # re-check: another process may have created it meanwhile
                    self.check(final)
                for temporary, final in self._pending:
                    try:
                        os.replace(temporary, final)
                    except OSError as error:
                        raise OutputError(f"{final}: cannot move into place ({error.strerror or error})") from None
        finally:
            for temporary, _ in self._pending:  # only leftovers remain after the renames
                temporary.unlink(missing_ok=True)
            self._pending.clear()


def verify_image_file(path: Path, image: sitk.Image, final: Path | None = None) -> None:
    """The file at ``path`` holds ``image``: complete gzip stream, same size, same voxels; else OutputError."""
    where = final or path
    try:
        if path.stat().st_size == 0:
            raise OutputError(f"{where}: verification after writing failed (empty file); nothing was written")
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rb") as handle:
                while handle.read(1 << 22):
                    pass
        with FoldedItkWarnings(where):
            back = sitk.ReadImage(str(path))
    except (OSError, EOFError, zlib.error, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise OutputError(f"{where}: verification after writing failed ({reason}); nothing was written") from None
    if back.GetSize() != image.GetSize() or not np.array_equal(sitk.GetArrayViewFromImage(back),
                                                               sitk.GetArrayViewFromImage(image)):
        raise OutputError(f"{where}: verification after writing failed (voxels differ); nothing was written")


def read_labels_on_grid(path: Path, geometry: Geometry) -> np.ndarray:
    """Lung labels (0, 1 right, 2 left) that must lie on ``geometry``'s grid, as uint8 (k, j, i).

    Checked for grid and values only: an empty (all-zero) mask is a valid start for click refinement,
    whether it comes from ``refine --labels`` or an evaluation's starting masks."""
    array, labels_geometry = image_to_array(read_volume(path, check=False))
    if labels_geometry.size != geometry.size or not np.allclose(labels_geometry.spacing, geometry.spacing,
                                                                 atol=1e-3) \
            or not np.allclose(labels_geometry.origin, geometry.origin, atol=1e-2) \
            or not np.allclose(labels_geometry.direction, geometry.direction, atol=1e-4):
        raise InputError(f"{path}: labels are not on the scan's grid (size {labels_geometry.size} vs "
                         f"{geometry.size}, or another spacing, origin or direction)")
    values = np.unique(array)
    if not set(values.tolist()) <= {0, 1, 2}:
        raise InputError(f"{path}: labels must be 0, 1 (right lung) and 2 (left lung), found {values[:8].tolist()}")
    return array.astype(np.uint8)
