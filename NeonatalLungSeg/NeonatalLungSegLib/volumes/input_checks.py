"""Checks on input files that ITK does not make, run before a volume is read.

ITK reads a truncated NIfTI as if whole (the missing part is garbage or zeros), turns NaN voxels of a NIfTI
into 0, coerces a sheared direction matrix to an orthogonal one (moving the grid by centimetres), allocates
whatever size a forged header claims, and reads a DICOM series with a missing slice on a stretched grid.
Each of these used to end in a plausible but wrong mask with exit status 0, so each is refused here with one
line naming the file and the problem.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError

MAX_VOXELS_ENV = "NEONATAL_LUNG_SEG_MAX_VOXELS"
DEFAULT_MAX_VOXELS = 512 * 1024 * 1024  # 2 GiB as float32; a neonatal chest MRI is a few million voxels
DEFLATE_MAX_RATIO = 1032  # deflate cannot compress better than about 1032:1
ORTHOGONAL_TOLERANCE = 1e-4  # |cos| between axes; ITK writes directions with ~1e-7 round-off
_CHUNK = 1 << 22
_PIXEL_BYTES = {sitk.sitkUInt8: 1, sitk.sitkInt8: 1, sitk.sitkUInt16: 2, sitk.sitkInt16: 2, sitk.sitkUInt32: 4,
                sitk.sitkInt32: 4, sitk.sitkFloat32: 4, sitk.sitkFloat64: 8}
# NIfTI datatype codes of the float types whose voxels must be finite.
_NIFTI_FLOATS = {16: "f4", 64: "f8"}


def max_voxels() -> int:
    """The memory budget: $NEONATAL_LUNG_SEG_MAX_VOXELS, else 512 M voxels or 1/32 of physical memory."""
    override = os.environ.get(MAX_VOXELS_ENV)
    if override:
        try:
            return max(1, int(override))
        except ValueError:
            raise InputError(f"${MAX_VOXELS_ENV} must be a whole number, got {override!r}") from None
    try:
        physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        return int(min(DEFAULT_MAX_VOXELS, physical // 32))
    except (AttributeError, ValueError, OSError):
        return DEFAULT_MAX_VOXELS


def _human(n: float) -> str:
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def _maybe_compressed(path: Path) -> bool:
    """Whether the voxel data may be deflated (then the file can be up to ~1000x smaller than the data)."""
    name = path.name.lower()
    if name.endswith(".gz"):
        return True
    if name.endswith((".nrrd", ".mha")):
        with path.open("rb") as handle:
            head = handle.read(4096).decode("latin-1").lower()
        raw = ("encoding: raw" in head) if name.endswith(".nrrd") else ("compresseddata = true" not in head)
        return not raw
    return name.endswith((".nhdr", ".mhd"))  # detached data: its size is not checked here


def voxel_bytes(pixel_id: int, components: int) -> int:
    return components * _PIXEL_BYTES.get(pixel_id, 8)


def check_claimed_size(path: Path, size: tuple[int, ...], bytes_per_voxel: int) -> None:
    """Refuse a header claiming more voxels than the memory budget or than the file can hold."""
    voxels = math.prod(int(s) for s in size)
    shape = "x".join(str(int(s)) for s in size)
    budget = max_voxels()
    if voxels > budget:
        raise InputError(f"{path}: header claims {shape} voxels, more than the memory budget of {budget} voxels "
                         f"(set ${MAX_VOXELS_ENV} to allow more)")
    claimed = voxels * bytes_per_voxel
    if path.is_file() and not path.name.lower().endswith((".nhdr", ".mhd")):
        held = path.stat().st_size
        limit = held * DEFLATE_MAX_RATIO if _maybe_compressed(path) else held
        if claimed > limit:
            raise InputError(f"{path}: header claims {shape} voxels ({_human(claimed)}) but the file holds only "
                             f"{_human(held)}: truncated file or forged header")


def check_direction(path: Path | str, direction: tuple[float, ...]) -> None:
    """Refuse a non-orthogonal (sheared) direction matrix: no exact, interpolation-free grid exists for it."""
    matrix = np.asarray(direction, dtype=float).reshape(3, 3)
    norms = np.linalg.norm(matrix, axis=0)
    if np.any(norms < 1e-9):
        raise InputError(f"{path}: direction matrix has a zero axis; the image grid is undefined")
    unit = matrix / norms
    cosines = np.abs(unit.T @ unit - np.eye(3)).max()
    if cosines > ORTHOGONAL_TOLERANCE:
        degrees = 90 - math.degrees(math.acos(min(1.0, float(cosines))))
        raise InputError(f"{path}: direction matrix is not orthogonal (axes sheared by {degrees:.2f} degrees); "
                         "resample the volume onto an orthogonal grid first")


def _nifti_header(path: Path, head: bytes) -> dict[str, object]:
    """The few NIfTI-1/2 header fields the checks need; InputError if the header itself is short."""
    for endian in ("<", ">"):
        if len(head) >= 348 and struct.unpack(f"{endian}i", head[:4])[0] == 348:
            dims = struct.unpack(f"{endian}8h", head[40:56])
            return {"dims": dims, "datatype": struct.unpack(f"{endian}h", head[70:72])[0],
                    "bitpix": struct.unpack(f"{endian}h", head[72:74])[0],
                    "offset": int(struct.unpack(f"{endian}f", head[108:112])[0]),
                    "sform_code": struct.unpack(f"{endian}h", head[254:256])[0],
                    "srow": struct.unpack(f"{endian}12f", head[280:328]), "endian": endian}
        if len(head) >= 540 and struct.unpack(f"{endian}i", head[:4])[0] == 540:
            dims = struct.unpack(f"{endian}8q", head[16:80])
            return {"dims": dims, "datatype": struct.unpack(f"{endian}h", head[12:14])[0],
                    "bitpix": struct.unpack(f"{endian}h", head[14:16])[0],
                    "offset": struct.unpack(f"{endian}q", head[168:176])[0],
                    "sform_code": struct.unpack(f"{endian}i", head[348:352])[0],
                    "srow": struct.unpack(f"{endian}12d", head[400:496]), "endian": endian}
    raise InputError(f"{path}: unreadable image (no complete NIfTI-1/2 header: truncated or not NIfTI)")


def check_nifti(path: Path) -> None:
    """Stream a .nii / .nii.gz once: complete gzip stream, every promised byte present, no NaN/inf, no shear.

    Streaming keeps memory at a few MB whatever the volume size; the size claimed in the header has been
    checked against the memory budget before this runs.
    """
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            head = handle.read(540)
            header = _nifti_header(path, head)
            ndim = max(0, min(7, int(header["dims"][0])))
            voxels = math.prod(max(1, int(d)) for d in header["dims"][1:1 + ndim])
            expected = voxels * max(1, int(header["bitpix"])) // 8
            offset = int(header["offset"]) if int(header["offset"]) >= 348 else 352
            check_claimed_size(path, tuple(int(d) for d in header["dims"][1:1 + ndim]),
                               max(1, int(header["bitpix"])) // 8 or 1)
            if int(header["sform_code"]) > 0:  # before ITK, which refuses it with a misleading message
                srow = np.asarray(header["srow"], dtype=float).reshape(3, 4)[:, :3]
                check_direction(path, tuple(srow.ravel()))
            float_code = _NIFTI_FLOATS.get(int(header["datatype"]))
            dtype = np.dtype(f"{header['endian']}{float_code}") if float_code else None
            seen, bad, pending = 0, 0, b""

            def consume(block: bytes) -> None:
                nonlocal seen, bad, pending
                block = block[: max(0, expected - seen)]
                seen += len(block)
                if dtype is not None:
                    data = pending + block
                    usable = len(data) - len(data) % dtype.itemsize
                    values = np.frombuffer(data[:usable], dtype=dtype)
                    bad += int(values.size - np.count_nonzero(np.isfinite(values)))
                    pending = data[usable:]

            to_skip = offset - len(head)
            while to_skip > 0:
                block = handle.read(min(to_skip, _CHUNK))
                if not block:
                    break
                to_skip -= len(block)
            consume(head[offset:])
            while seen < expected:
                block = handle.read(min(_CHUNK, expected - seen))
                if not block:
                    break
                consume(block)
            while handle.read(_CHUNK):  # drain, so a damaged gzip tail is still noticed
                pass
    except (EOFError, zlib.error, gzip.BadGzipFile, OSError) as exc:
        raise InputError(f"{path}: unreadable image (truncated or damaged file: {exc})") from None
    if seen < expected:
        raise InputError(f"{path}: truncated: header promises {_human(expected)} of voxel data, the file holds "
                         f"{_human(seen)}")
    if bad:
        raise InputError(f"{path}: volume contains {bad} NaN or infinite voxels")


def check_float64_range(path: Path | str, image: sitk.Image) -> None:
    """A float64 volume whose values overflow float32 would become inf on the cast; say so instead."""
    if image.GetPixelID() != sitk.sitkFloat64:
        return
    array = sitk.GetArrayViewFromImage(image)
    finite = np.abs(array[np.isfinite(array)])
    largest = float(finite.max()) if finite.size else 0.0
    if largest > float(np.finfo(np.float32).max):
        raise InputError(f"{path}: values up to {largest:.3g} lie beyond the float32 range (+-3.4e38) the "
                         "model computes in; rescale the volume")


_UNCOMPRESSED_SYNTAXES = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2")


def _dicom_info(file: str) -> tuple[dict[str, str], sitk.ImageFileReader]:
    reader = sitk.ImageFileReader()
    reader.SetFileName(file)
    reader.LoadPrivateTagsOff()
    reader.ReadImageInformation()
    return {k: reader.GetMetaData(k).strip() for k in reader.GetMetaDataKeys()}, reader


def check_dicom_series(folder: Path, files: list[str]) -> None:
    """Every slice complete and the slice positions evenly spaced; else one line naming the gap.

    GDCM silently drops a truncated or unreadable slice and ITK then stretches the spacing over the hole
    (5.83 mm instead of 5 mm for one missing slice of eight), so the mask lands on a wrong grid.
    """
    if len(files) < 2:
        return
    positions: list[tuple[float, str]] = []
    normal = None
    for file in files:
        try:
            tags, reader = _dicom_info(file)
        except RuntimeError:
            raise InputError(f"{folder}: DICOM series has an unreadable slice {Path(file).name}") from None
        syntax = tags.get("0002|0010", "").rstrip("\x00 ")
        if syntax in _UNCOMPRESSED_SYNTAXES:
            need = math.prod(reader.GetSize()[:2]) * reader.GetNumberOfComponents() * \
                _PIXEL_BYTES.get(reader.GetPixelID(), 1)
            if os.path.getsize(file) < need:
                raise InputError(f"{folder}: DICOM series slice {Path(file).name} is truncated "
                                 f"({os.path.getsize(file)} bytes, its pixels alone need {need})")
        if "0020|0032" not in tags or "0020|0037" not in tags:
            return  # no positions to check (rare: ITK then falls back to the slice thickness)
        try:
            cosines = [float(v) for v in tags["0020|0037"].split("\\")]
            origin = np.array([float(v) for v in tags["0020|0032"].split("\\")])
        except ValueError:
            raise InputError(f"{folder}: DICOM slice {Path(file).name} has an unreadable position") from None
        if normal is None:
            normal = np.cross(cosines[:3], cosines[3:6])
        positions.append((float(origin @ normal), Path(file).name))
    positions.sort()
    steps = np.diff([p for p, _ in positions])
    step = float(np.median(steps))
    for (before, name_a), (after, name_b), gap in zip(positions, positions[1:], steps):
        if gap < 1e-3 or abs(gap - step) > 0.01 * step + 1e-3:
            problem = "two slices at the same position" if gap < 1e-3 else \
                f"gap of {gap:.2f} mm where the series steps {step:.2f} mm"
            raise InputError(f"{folder}: DICOM series is not evenly spaced: {problem} between slice positions "
                             f"{before:.2f} and {after:.2f} mm ({name_a}, {name_b}); a slice is missing, "
                             "truncated or unreadable")


class FoldedItkWarnings:
    """Capture what ITK prints on the C stderr while reading and re-emit each warning as one line.

    ITK warnings span three lines ("WARNING: In <source file>, line N", "<Class> (0x...): text", blank),
    which breaks the one-line-per-message promise of the command line.
    """

    def __init__(self, source: Path | str) -> None:
        self.source = str(source)
        self.warnings: list[str] = []

    def __enter__(self) -> FoldedItkWarnings:
        import sys
        import tempfile

        sys.stderr.flush()
        self._saved = os.dup(2)
        self._sink = tempfile.TemporaryFile()
        os.dup2(self._sink.fileno(), 2)
        return self

    def __exit__(self, *exc: object) -> None:
        import re
        import sys

        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._sink.seek(0)
        text = self._sink.read().decode("utf-8", "replace")
        self._sink.close()
        for block in re.split(r"\n\s*\n", text):
            lines = [ln.strip() for ln in block.splitlines() if ln.strip()]
            if not lines:
                continue
            if lines[0].startswith("WARNING: In ") and len(lines) > 1:
                message = re.sub(r"^\w+ \(0x[0-9a-fA-F]+\):\s*", "", " ".join(lines[1:]))
                self.warnings.append(message)
                print(f"warning: {self.source}: {message}", file=sys.stderr)
            else:
                print(" ".join(lines), file=sys.stderr)
