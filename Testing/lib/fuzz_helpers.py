"""Small broken inputs for the fuzz suites: each helper makes one kind of damage a careless or hostile user
could hand the command line, on volumes small enough that a whole suite runs in seconds."""

from __future__ import annotations

import gzip
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from NeonatalLungSegLib.cli.main import main

SHAPE = (8, 40, 32)  # (k, j, i)


def volume_array(seed: int = 0, shape: tuple[int, int, int] = SHAPE, dtype: str = "float32") -> np.ndarray:
    return np.random.default_rng(seed).normal(200, 50, shape).astype(dtype)


def write_volume(path: Path, array: np.ndarray | None = None, *, spacing=(0.9, 0.8, 2.0),
                 direction=(1, 0, 0, 0, 1, 0, 0, 0, 1), seed: int = 0) -> Path:
    image = sitk.GetImageFromArray(volume_array(seed) if array is None else array)
    image.SetSpacing(spacing)
    image.SetOrigin((1.0, 2.0, 3.0))
    image.SetDirection(direction)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=str(path).endswith(".gz"))
    return path


def truncate(path: Path, keep: float = 0.6) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _patched_nifti(path: Path, patches: list[tuple[int, bytes]]) -> Path:
    """A valid small NIfTI written by ITK, then with header bytes replaced (gzipped again for .nii.gz)."""
    plain = path.with_name(path.name.replace(".nii.gz", ".nii")) if path.name.endswith(".gz") else path
    write_volume(plain)
    raw = bytearray(plain.read_bytes())
    for offset, value in patches:
        raw[offset:offset + len(value)] = value
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(bytes(raw)))
        plain.unlink()
    else:
        path.write_bytes(bytes(raw))
    return path


def nifti_claiming(path: Path, size: tuple[int, int, int]) -> Path:
    """A valid small NIfTI whose header then claims ``size`` voxels (the data stays a few kB)."""
    return _patched_nifti(path, [(42, struct.pack("<3h", *size))])


def sheared_nifti(path: Path) -> Path:
    """A NIfTI whose sform (the only orientation given) shears x into y, as other tools can write it;
    ITK's own writer coerces a sheared direction before writing, so the header is patched by hand."""
    return _patched_nifti(path, [(252, struct.pack("<2h", 0, 1)),  # qform_code 0, sform_code 1
                                 (280, struct.pack("<12f", 0.9, 0.24, 0, 1, 0, 0.8, 0, 2, 0, 0, 2.0, 3))])


# A NIfTI built byte by byte, so a header field can disagree with another as a foreign writer can make it do.
_DATATYPES = {np.dtype("uint8"): 2, np.dtype("int16"): 4, np.dtype(">i2"): 4, np.dtype("int32"): 8,
              np.dtype("float32"): 16, np.dtype("float64"): 64}


def hand_nifti(array: np.ndarray, *, datatype: int | None = None, bitpix: int | None = None,
               vox_offset: float = 352.0, slope: float = 0.0, inter: float = 0.0,
               pixdim: tuple[float, float, float] = (0.9, 0.8, 2.0), qform_code: int = 1, sform_code: int = 0,
               srow: tuple[float, ...] | None = None, magic: bytes = b"n+1\0") -> bytes:
    """A single-file NIfTI-1 (little endian) of a (k, j, i) array, every header field given by hand."""
    array = np.ascontiguousarray(array)
    header = bytearray(348)
    struct.pack_into("<i", header, 0, 348)
    struct.pack_into("<8h", header, 40, 3, array.shape[2], array.shape[1], array.shape[0], 1, 1, 1, 1)
    code = _DATATYPES[array.dtype] if datatype is None else datatype
    struct.pack_into("<2h", header, 70, code, array.dtype.itemsize * 8 if bitpix is None else bitpix)
    struct.pack_into("<8f", header, 76, 1.0, *pixdim, 1.0, 1.0, 1.0, 1.0)
    struct.pack_into("<3f", header, 108, vox_offset, slope, inter)
    struct.pack_into("<B", header, 123, 2)  # xyzt_units: mm
    struct.pack_into("<2h", header, 252, qform_code, sform_code)
    struct.pack_into("<6f", header, 256, 0, 0, 0, 1.0, 2.0, 3.0)  # identity quaternion, offset (1, 2, 3)
    rows = srow if srow is not None else (pixdim[0], 0, 0, 1.0, 0, pixdim[1], 0, 2.0, 0, 0, pixdim[2], 3.0)
    struct.pack_into("<12f", header, 280, *rows)
    header[344:348] = magic
    start = max(352, int(vox_offset)) if np.isfinite(vox_offset) else 352
    return bytes(header) + bytes(start - 348) + array.tobytes()


def write_nifti(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def write_dicom_series(folder: Path, slices: int = 8, spacing_z: float = 5.0, seed: int = 0,
                       rows: int = 40, columns: int = 32) -> Path:
    """A small synthetic MR Image Storage series (int16) with positions ``spacing_z`` mm apart."""
    folder.mkdir(parents=True, exist_ok=True)
    array = np.random.default_rng(seed).normal(500, 120, (slices, rows, columns)).clip(0, 4000).astype(np.int16)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.8, 0.8, spacing_z))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(slices):
        one = image[:, :, k]
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        for tag, value in (("0008|0016", "1.2.840.10008.5.1.4.1.1.4"), ("0008|0060", "MR"),
                           ("0020|000d", "1.2.826.0.1.3680043.8.498.1"), ("0020|000e", "1.2.826.0.1.3680043.8.498.2"),
                           ("0008|0018", f"1.2.826.0.1.3680043.8.498.3.{k + 1}"),
                           ("0020|0052", "1.2.826.0.1.3680043.8.498.4"), ("0020|0013", str(k + 1)),
                           ("0020|0032", "\\".join(f"{v:.4f}" for v in position)),
                           ("0020|0037", "1\\0\\0\\0\\1\\0"), ("0018|0050", f"{spacing_z}"),
                           ("0010|0010", "Doe^Jane"), ("0010|0020", "PID-123"),
                           ("0008|0020", "20260101"), ("0008|0030", "120000")):
            one.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(one)
    return folder


def copy_series(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def run(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_error_line(code: int, err: str, *needles: str) -> None:
    """Status 2, exactly one non-empty stderr line starting 'error:', naming every needle."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    # the test's own temporary folder (named after the test) must not satisfy a needle by accident
    text = re.sub(r"\S*/pytest-\d+/[^/\s]+", "", lines[0]).lower()
    for needle in needles:
        assert needle.lower() in text, lines[0]


def labelled_pair(seed: int = 0, shape: tuple[int, int, int] = (6, 10, 12)) -> tuple[sitk.Image, sitk.Image]:
    """A small image with right (1) and left (2) lung labels on its grid, for training-folder tests."""
    rng = np.random.default_rng(seed)
    image = sitk.GetImageFromArray(rng.normal(size=shape).astype(np.float32))
    image.SetSpacing((0.7, 0.8, 1.5))
    labels = np.zeros(shape, np.uint8)
    labels[1:4, 2:6, 1:5] = 1
    labels[1:4, 2:6, 7:11] = 2
    label = sitk.GetImageFromArray(labels)
    label.CopyInformation(image)
    return image, label
