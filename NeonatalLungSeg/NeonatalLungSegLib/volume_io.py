"""Reading volumes safely and writing results atomically.

Clinicians' files are the one thing we must never damage, and a half-written mask that looks complete is
worse than none. So inputs are checked up front with one clear message per problem, and every output is
written under a temporary name in its final folder and renamed into place only when all outputs of a case
are complete (a rename within one folder is atomic on POSIX and Windows).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import SimpleITK as sitk

from .errors import InputError, OutputExistsError

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
OUTPUT_FORMATS = ("nii.gz", "nrrd", "mha")


def volume_suffix(path: Path) -> str | None:
    name = path.name.lower()
    return next((s for s in VOLUME_SUFFIXES if name.endswith(s)), None)


def case_name(path: Path) -> str:
    """A safe file-name stem for a case: its file name without the volume suffix, or its folder name.

    Sanitised because it becomes part of output paths: only letters, digits, '.', '_' and '-' survive,
    so a crafted name cannot climb out of the output folder.
    """
    path = Path(path)
    suffix = volume_suffix(path)
    stem = path.name[: -len(suffix)] if suffix else path.name
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._")
    return safe or "case"


def _first_line(exc: Exception) -> str:
    """ITK errors span many lines; keep the one that says what went wrong."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln for ln in lines if "Description:" in ln or "ERROR" in ln.upper()]
    text = (useful or lines or [type(exc).__name__])[-1]
    return text.replace("Description:", "").strip()


def dicom_series_files(folder: Path) -> list[str]:
    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise InputError(f"{folder}: folder holds no DICOM series (and is not a volume file)")
    if len(series) > 1:
        raise InputError(f"{folder}: folder holds {len(series)} DICOM series; pass a folder with one series")
    return list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series[0]))


def _check_header(path: Path, dimension: int, size: tuple[int, ...], components: int) -> None:
    if dimension != 3:
        raise InputError(f"{path}: image is {dimension}D; a 3D chest volume is needed")
    if components != 1:
        raise InputError(f"{path}: image has {components} components per voxel; a scalar volume is needed")
    if min(size) < 2:
        raise InputError(f"{path}: image has size {list(size)}; every axis needs at least 2 voxels")


def probe_volume(path: Path) -> None:
    """Cheap checks from the header only, so a batch fails before anything is computed or written."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        dicom_series_files(path)
        return
    if volume_suffix(path) is None:
        raise InputError(f"{path}: unsupported file type; use one of {', '.join(VOLUME_SUFFIXES)} "
                         "or a DICOM series folder")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise InputError(f"{path}: unreadable image ({_first_line(exc)})") from None
    _check_header(path, reader.GetDimension(), reader.GetSize(), reader.GetNumberOfComponents())


def read_volume(path: Path, check: bool = True) -> sitk.Image:
    """Read a 3D scalar volume from a file or a DICOM series folder, as float32, checking its values.

    ``check=False`` leaves the value check to the engine (``Segmenter.segment_array`` always makes it), so
    the CLI scans the voxels once, not twice.
    """
    path = Path(path)
    probe_volume(path)
    try:
        if path.is_dir():
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(dicom_series_files(path))
            image = reader.Execute()
        else:
            image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputError(f"{path}: unreadable image ({_first_line(exc)})") from None
    _check_header(path, image.GetDimension(), image.GetSize(), image.GetNumberOfComponentsPerPixel())
    image = sitk.Cast(image, sitk.sitkFloat32)
    if check:
        check_values(sitk.GetArrayViewFromImage(image), str(path))
    return image


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
    if low == high:
        raise InputError(f"{source}: volume is constant ({low}); nothing to segment")


class AtomicOutputs:
    """Write several files as one unit: all appear, or none does.

    Use ``path_for(final)`` to get a temporary path (same folder, same suffix so ITK picks the right
    writer); on a clean exit every temporary file is renamed to its final name, on any exception
    (KeyboardInterrupt included) they are deleted. Existing finals are refused unless ``overwrite``.
    """

    def __init__(self, overwrite: bool = False) -> None:
        self.overwrite = overwrite
        self._pending: list[tuple[Path, Path]] = []

    def check(self, final: Path) -> None:
        if Path(final).exists() and not self.overwrite:
            raise OutputExistsError(f"{final}: already exists; pass --overwrite to replace it")

    def path_for(self, final: Path) -> Path:
        final = Path(final)
        self.check(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        temporary = final.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{final.name}")
        self._pending.append((temporary, final))
        return temporary

    def write_image(self, image: sitk.Image, final: Path) -> None:
        sitk.WriteImage(image, str(self.path_for(final)), useCompression=True)

    def write_json(self, data: Any, final: Path) -> None:
        self.path_for(final).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")

    def __enter__(self) -> AtomicOutputs:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if exc_type is None:
                for _, final in self._pending:  # re-check: another process may have created it meanwhile
                    self.check(final)
                for temporary, final in self._pending:
                    os.replace(temporary, final)
        finally:
            for temporary, _ in self._pending:  # only leftovers remain after the renames
                temporary.unlink(missing_ok=True)
            self._pending.clear()
