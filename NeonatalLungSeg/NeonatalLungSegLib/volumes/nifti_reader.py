"""NIfTI-1/2 files read in one pass that checks the bytes it decodes the voxels from.

ITK's NIfTI reader and a separate check used to disagree about which bytes are voxels: the check trusted
``bitpix`` where ITK uses ``datatype`` (a header with bitpix 8 on int16 data passed a file cut in half, read
as zeros), treated a ``vox_offset`` inside the header as 352 where ITK read elsewhere, and sized an int16
file with ``scl_slope`` as float32 (refusing a valid file as truncated). Here the header is parsed once, each
field validated, and the voxels decoded from exactly the bytes that were hashed and counted, in one pass over
the file. ITK only turns a private copy of the same header bytes into the geometry (qform / sform to LPS
direction, origin and spacing), by its established rules, so a volume reads on the same grid as before.

The NIfTI standard's rules are followed where ITK and the standard could differ: ``datatype`` decides the
voxel size (``bitpix`` is informative), ``scl_slope`` 0 or not finite means no scaling at all.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import shutil
import struct
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from .header_checks import FileStamp, check_claimed_size, check_direction, check_spacing, human_bytes

NIFTI_SUFFIXES = (".nii", ".nii.gz")
_CHUNK = 1 << 22
# datatype code -> NumPy type of the scalar types; the other codes the standard defines, by name.
SCALAR_TYPES = {2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 256: "i1", 512: "u2", 768: "u4", 1024: "i8",
                1280: "u8"}
OTHER_TYPES = {1: "binary", 32: "complex64", 128: "RGB24", 1536: "float128", 1792: "complex128",
               2048: "complex256", 2304: "RGBA32"}
_MAGIC = {1: b"n+1\0", 2: b"n+2\0\r\n\x1a\n"}
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def is_nifti(path: Path) -> bool:
    return Path(path).name.lower().endswith(NIFTI_SUFFIXES)


@dataclass(frozen=True)
class NiftiHeader:
    """The fields of a NIfTI-1/2 header that decide which bytes are voxels and what they mean."""

    raw: bytes                   # the header as read (348 or 540 bytes)
    version: int
    endian: str
    dims: tuple[int, int, int]   # (nx, ny, nz)
    datatype: int
    offset: int                  # vox_offset: where the voxels start
    slope: float
    inter: float

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(f"{self.endian}{SCALAR_TYPES[self.datatype]}")

    @property
    def voxels(self) -> int:
        return math.prod(self.dims)

    @property
    def data_bytes(self) -> int:
        return self.voxels * self.dtype.itemsize

    @property
    def scaled(self) -> bool:
        """The standard's rule: a finite, non-zero slope scales (with the intercept, 0 where not finite)."""
        return math.isfinite(self.slope) and self.slope != 0 and not (self.slope == 1 and self._intercept == 0)

    @property
    def _intercept(self) -> float:
        return self.inter if math.isfinite(self.inter) else 0.0


def parse_header(path: Path, head: bytes) -> NiftiHeader:
    """Parse and validate the header at the start of ``head``; one InputError line naming the first problem."""
    for endian in ("<", ">"):
        size = struct.unpack(f"{endian}i", head[:4])[0] if len(head) >= 4 else 0
        if size == 348 and len(head) >= 348:
            return _validated(path, head[:348], 1, endian)
        if size == 540 and len(head) >= 540:
            return _validated(path, head[:540], 2, endian)
    raise InputError(f"{path}: unreadable image (no complete NIfTI-1/2 header: truncated or not NIfTI)")


def _validated(path: Path, raw: bytes, version: int, endian: str) -> NiftiHeader:
    def unpack(fmt: str, at: int) -> tuple:
        return struct.unpack_from(f"{endian}{fmt}", raw, at)

    if version == 1:
        magic, dim, (datatype,), pixdim = raw[344:348], unpack("8h", 40), unpack("h", 70), unpack("8f", 76)
        (offset, slope, inter), codes = unpack("3f", 108), unpack("2h", 252)
        quatern, srow = unpack("6f", 256), unpack("12f", 280)
    else:
        magic, (datatype,), dim, pixdim = raw[4:12], unpack("h", 12), unpack("8q", 16), unpack("8d", 104)
        (offset,), (slope, inter), codes = unpack("q", 168), unpack("2d", 176), unpack("2i", 344)
        quatern, srow = unpack("6d", 352), unpack("12d", 400)
    if magic != _MAGIC[version]:
        if magic[:3] == _MAGIC[version][:1] + b"i" + _MAGIC[version][2:3]:  # "ni1" / "ni2"
            raise InputError(f"{path}: header says its voxels are in a separate .img file (a two-file NIfTI); "
                             "save it as a single .nii or .nii.gz")
        raise InputError(f"{path}: unreadable image (not a NIfTI-{version} file: no magic string)")
    ndim = int(dim[0])
    if not 1 <= ndim <= 7 or any(int(d) < 1 for d in dim[1:1 + ndim]):
        raise InputError(f"{path}: unreadable image (header dimensions {[int(d) for d in dim]} are not 1 to 7 "
                         "axes of at least one voxel each)")
    sizes = [int(d) for d in dim[1:1 + ndim]]
    while len(sizes) > 3 and sizes[-1] == 1:
        sizes.pop()
    if len(sizes) != 3:
        raise InputError(f"{path}: image is {len(sizes)}D; a 3D chest volume is needed")
    if datatype not in SCALAR_TYPES:
        kind = OTHER_TYPES.get(datatype)
        raise InputError(f"{path}: voxels of NIfTI datatype {datatype} ({kind}) are not scalar; a scalar volume "
                         "is needed" if kind else f"{path}: unreadable image (unknown NIfTI datatype {datatype})")
    header_size = 352 if version == 1 else 544
    if not math.isfinite(offset) or offset != int(offset) or offset < header_size:
        raise InputError(f"{path}: header's vox_offset {offset:g} is not a whole byte position past the "
                         f"{header_size}-byte header; the voxels cannot be located")
    spacing = pixdim[1:4]
    if not all(math.isfinite(s) and s != 0 for s in spacing):
        raise InputError(f"{path}: voxel spacing {[float(s) for s in spacing]} (pixdim) in the header is zero or "
                         "not finite (ITK would read it as 1 mm); the volume's size in mm is unknown")
    if (codes[0] > 0 and not all(map(math.isfinite, quatern))) or \
            (codes[1] > 0 and not all(map(math.isfinite, srow))):
        raise InputError(f"{path}: header's orientation (qform or sform) holds NaN or infinite values; the image "
                         "grid is undefined")
    if codes[1] > 0:  # before ITK, which refuses a sheared sform with a misleading message
        check_direction(path, tuple(np.asarray(srow, dtype=float).reshape(3, 4)[:, :3].ravel()))
    return NiftiHeader(raw=bytes(raw), version=version, endian=endian, dims=tuple(sizes), datatype=int(datatype),
                       offset=int(offset), slope=float(slope), inter=float(inter))


def _geometry(path: Path, header: NiftiHeader) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """(spacing, origin, direction) as ITK reads them from these header bytes (a private copy of them)."""
    folder = tempfile.mkdtemp(prefix="nls-nifti-")
    try:
        copy = os.path.join(folder, "header.nii")
        with open(copy, "wb") as handle:
            handle.write(header.raw + bytes(4))  # no extensions: they carry no geometry
        reader = sitk.ImageFileReader()
        reader.SetFileName(copy)
        try:
            reader.ReadImageInformation()
        except RuntimeError as exc:
            lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
            reason = (lines[-1] if lines else type(exc).__name__).replace(copy, path.name)
            raise InputError(f"{path}: unreadable image ({reason})") from None
        if reader.GetDimension() != 3 or tuple(reader.GetSize()) != header.dims:
            raise InputError(f"{path}: unreadable image (header read as size {list(reader.GetSize())}, its "
                             f"dimensions say {list(header.dims)})")
        return reader.GetSpacing(), reader.GetOrigin(), reader.GetDirection()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class _Hashing:
    """A read-only file wrapper that hashes and counts every byte read through it."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle, self.sha256, self.count = handle, hashlib.sha256(), 0

    def read(self, n: int = -1) -> bytes:
        block = self.handle.read(n)
        self.sha256.update(block)
        self.count += len(block)
        return block

    def readable(self) -> bool:
        return True


def _read_up_to(stream, n: int) -> bytes:
    parts, got = [], 0
    while got < n:
        block = stream.read(n - got)
        if not block:
            break
        parts.append(block)
        got += len(block)
    return b"".join(parts)


def scan(path: Path, sink: Callable[[NiftiHeader, memoryview], None] | None = None,
         header_only: bool = False) -> tuple[NiftiHeader, FileStamp | None, tuple]:
    """One pass over a .nii / .nii.gz: header parsed and checked, every voxel byte handed to ``sink`` in order,
    the gzip stream checked to its end; returns the header, the stamp of the bytes read and ITK's geometry.

    The stamp (size, modification time, SHA-256) is of the very bytes the voxels came from; a file that
    changes while it is read is refused. ``header_only`` stops after the header (no stamp).
    """
    path = Path(path)
    compressed = path.name.lower().endswith(".gz")
    try:
        with open(path, "rb") as raw:
            before = os.fstat(raw.fileno())
            source = _Hashing(raw)
            stream = gzip.GzipFile(fileobj=source, mode="rb") if compressed else source
            head = _read_up_to(stream, 540)
            header = parse_header(path, head)
            check_claimed_size(path, header.dims, header.dtype.itemsize)
            held = before.st_size
            if not compressed and held < header.offset + header.data_bytes:
                raise InputError(f"{path}: truncated: header promises {human_bytes(header.data_bytes)} of voxel "
                                 f"data from byte {header.offset}, the file holds {human_bytes(held)} in all")
            geometry = _geometry(path, header)
            check_spacing(path, geometry[0])
            check_direction(path, geometry[2])
            if header_only:
                return header, None, geometry
            seen = 0

            def take(block: bytes | memoryview) -> None:
                nonlocal seen
                block = memoryview(block)[: header.data_bytes - seen]
                seen += len(block)
                if sink is not None and len(block):
                    sink(header, block)

            if header.offset < len(head):
                take(head[header.offset:])
            else:
                to_skip = header.offset - len(head)
                while to_skip > 0:
                    block = stream.read(min(to_skip, _CHUNK))
                    if not block:
                        break
                    to_skip -= len(block)
            while seen < header.data_bytes:
                block = stream.read(min(_CHUNK, header.data_bytes - seen))
                if not block:
                    break
                take(block)
            while stream.read(_CHUNK):  # to the end: a damaged gzip tail is noticed, every byte is hashed
                pass
            while source.read(_CHUNK):
                pass
            after = os.fstat(raw.fileno())
    except (EOFError, zlib.error, gzip.BadGzipFile, OSError) as exc:
        if isinstance(exc, OSError) and not isinstance(exc, gzip.BadGzipFile) and exc.filename:
            raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
        raise InputError(f"{path}: unreadable image (truncated or damaged file: {exc})") from None
    if seen < header.data_bytes:
        raise InputError(f"{path}: truncated: header promises {human_bytes(header.data_bytes)} of voxel data, the "
                         f"file holds {human_bytes(seen)}")
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns) or source.count != after.st_size:
        raise InputError(f"{path}: changed while it was being read; read it again when nothing writes to it")
    return header, FileStamp(str(path), after.st_size, after.st_mtime_ns, source.sha256.hexdigest()), geometry


def check_nifti(path: Path) -> FileStamp:
    """Stream a .nii / .nii.gz once, holding a few MB: the checks ``read_nifti`` makes, without keeping voxels."""
    bad = 0
    pending = b""

    def count(header: NiftiHeader, block: memoryview) -> None:
        nonlocal bad, pending
        if header.dtype.kind != "f":
            return
        data = pending + bytes(block)
        usable = len(data) - len(data) % header.dtype.itemsize
        values = np.frombuffer(data[:usable], dtype=header.dtype)
        bad += int(values.size - np.count_nonzero(np.isfinite(values)))
        pending = data[usable:]
    _, stamp, _ = scan(path, count)
    if bad:
        raise InputError(f"{path}: volume contains {bad} NaN or infinite voxels")
    return stamp


def read_nifti(path: Path) -> tuple[sitk.Image, FileStamp]:
    """The volume (its own scalar type; float32 where scl_slope scales it) and the stamp of its bytes."""
    path = Path(path)
    buffer: bytearray | None = None
    filled = 0

    def keep(header: NiftiHeader, block: memoryview) -> None:
        nonlocal buffer, filled
        if buffer is None:
            buffer = bytearray(header.data_bytes)
        buffer[filled:filled + len(block)] = block
        filled += len(block)
    header, stamp, (spacing, origin, direction) = scan(path, keep)
    array = np.frombuffer(buffer, dtype=header.dtype).reshape(tuple(reversed(header.dims)))
    if not header.dtype.isnative:
        array = array.astype(header.dtype.newbyteorder("="))
    if header.dtype.kind == "f":
        low, high = float(np.min(array)), float(np.max(array))
        if not (math.isfinite(low) and math.isfinite(high)):
            raise InputError(f"{path}: volume contains {int(np.count_nonzero(~np.isfinite(array)))} NaN or "
                             "infinite voxels")
    if header.scaled:
        array = _scaled(path, array, header)
    del buffer
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    return image, stamp


def _scaled(path: Path, array: np.ndarray, header: NiftiHeader) -> np.ndarray:
    """``array * scl_slope + scl_inter``, in float32 (float64 for float64 voxels), refused where it overflows."""
    slope, inter = header.slope, header._intercept
    ends = [float(np.min(array)) * slope + inter, float(np.max(array)) * slope + inter]
    work = np.float64 if array.dtype == np.float64 else np.float32
    if max(abs(v) for v in ends) > _FLOAT32_MAX:
        raise InputError(f"{path}: scl_slope {slope:g} and scl_inter {inter:g} scale the voxels to "
                         f"{max(abs(v) for v in ends):.3g}, beyond the float32 range (+-3.4e38) the model "
                         "computes in")
    wide = array.dtype.itemsize > 2 and array.dtype != np.float32  # int32 / int64 / float64: exact in float64
    out = array.astype(np.float64 if wide else np.float32)
    out *= slope
    out += inter
    return out.astype(work, copy=False)
