"""The grid a header promises, checked before any voxel is used, and the stamp of the bytes that were checked.

A header's size is held against the memory budget and the file's length, its direction matrix must be
orthogonal and its voxel spacing finite and positive (ITK turns a zero, NaN or infinite spacing into 1 mm
without a word, which puts volumes off by the factor the spacing was). A ``FileStamp`` (size, modification
time, SHA-256) records which bytes a check saw, so a later read can prove it uses the same ones.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
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


def human_bytes(n: float) -> str:
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
            raise InputError(f"{path}: header claims {shape} voxels ({human_bytes(claimed)}) but the file holds "
                             f"only {human_bytes(held)}: truncated file or forged header")


def check_direction(path: Path | str, direction: tuple[float, ...]) -> None:
    """Refuse a non-orthogonal (sheared) or undefined direction matrix: no exact, interpolation-free grid exists."""
    matrix = np.asarray(direction, dtype=float).reshape(3, 3)
    if not np.isfinite(matrix).all():
        raise InputError(f"{path}: direction matrix holds NaN or infinite values; the image grid is undefined")
    norms = np.linalg.norm(matrix, axis=0)
    if np.any(norms < 1e-9):
        raise InputError(f"{path}: direction matrix has a zero axis; the image grid is undefined")
    unit = matrix / norms
    cosines = np.abs(unit.T @ unit - np.eye(3)).max()
    if cosines > ORTHOGONAL_TOLERANCE:
        degrees = 90 - math.degrees(math.acos(min(1.0, float(cosines))))
        raise InputError(f"{path}: direction matrix is not orthogonal (axes sheared by {degrees:.2f} degrees); "
                         "resample the volume onto an orthogonal grid first")


def check_spacing(path: Path | str, spacing: tuple[float, ...], what: str = "voxel spacing") -> None:
    """Every spacing finite and positive: the volumes in mL and the network's framing depend on it."""
    values = [float(s) for s in spacing]
    if not all(math.isfinite(s) and s > 0 for s in values):
        raise InputError(f"{path}: {what} {values} is not finite and positive; the volume's size in mm is unknown")


def check_origin(path: Path | str, origin: tuple[float, ...]) -> None:
    if not all(math.isfinite(float(v)) for v in origin):
        raise InputError(f"{path}: origin {list(origin)} holds NaN or infinite values; the image grid is undefined")


@dataclass(frozen=True)
class FileStamp:
    """Which bytes a file held when it was checked: size, modification time (ns) and SHA-256."""

    path: str
    size: int
    mtime_ns: int
    sha256: str


def stamp_file(path: Path | str) -> FileStamp:
    """The stamp of a file's current bytes, read once in chunks; refused if it changes while being read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            before = os.fstat(handle.fileno())
            count = 0
            while block := handle.read(_CHUNK):
                digest.update(block)
                count += len(block)
            after = os.fstat(handle.fileno())
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns) or count != after.st_size:
        raise InputError(f"{path}: changed while it was being read; read it again when nothing writes to it")
    return FileStamp(str(path), after.st_size, after.st_mtime_ns, digest.hexdigest())


def unchanged_since(stamps: tuple[FileStamp, ...]) -> bool:
    """Size and modification time of every stamped file as stamped (cheap: no bytes read)."""
    try:
        return all((s.size, s.mtime_ns) == ((st := os.stat(s.path)).st_size, st.st_mtime_ns) for s in stamps)
    except OSError:
        return False
