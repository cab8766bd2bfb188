"""Checks on input files that ITK does not make, and the library output that reading prints.

ITK reads a truncated NIfTI as if whole (the missing part is garbage or zeros), turns NaN voxels of a NIfTI
into 0, coerces a sheared direction matrix to an orthogonal one (moving the grid by centimetres), allocates
whatever size a forged header claims, turns a zero or missing spacing into 1 mm, and reads a DICOM series with
a missing slice, a sideways-drifting stack or a negative pixel spacing on a wrong grid. Each of these used to
end in a plausible but wrong mask with exit status 0, so each is refused here with one line naming the file
and the problem. The C++ libraries' own messages (ITK, GDCM, niftilib, MetaIO, VNL) are captured while
reading and folded (``FoldedItkWarnings``), so the user sees one line per problem.

The header-level checks live in ``header_checks`` and the NIfTI reader (which checks the bytes it decodes)
in ``nifti_reader``; both are re-exported here.
"""

from __future__ import annotations

import math
import os
import re
import sys
import tempfile
import threading
import zlib
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from .header_checks import (DEFAULT_MAX_VOXELS, DEFLATE_MAX_RATIO, MAX_VOXELS_ENV, ORTHOGONAL_TOLERANCE,  # noqa: F401
                            FileStamp, check_claimed_size, check_direction, check_origin,
                            check_spacing, human_bytes, max_voxels, stamp_file, unchanged_since, voxel_bytes)
from .nifti_reader import check_nifti  # noqa: F401  (the NIfTI check and the NIfTI reader are one pass)

_human = human_bytes  # the name the first round used


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
DRIFT_TOLERANCE_PIXELS = 0.1  # sideways drift of a DICOM stack that still counts as "along the normal"


def check_header_spacing_declared(path: Path) -> None:
    """A MetaImage or NRRD header must give the voxel spacing: without it ITK assumes 1 mm in silence."""
    name = path.name.lower()
    if not name.endswith((".mha", ".mhd", ".nrrd", ".nhdr")):
        return
    try:
        with path.open("rb") as handle:
            head = handle.read(1 << 16).decode("latin-1")
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if name.endswith((".mha", ".mhd")):
        keys = set()
        for line in head.splitlines():
            key = line.split("=", 1)[0].strip().lower()
            keys.add(key)
            if key == "elementdatafile":
                break
        wanted, field = {"elementspacing", "elementsize"}, "ElementSpacing"
    else:
        keys = set()
        for line in head.splitlines()[1:]:
            if not line.strip():
                break
            if not line.startswith("#"):
                keys.add(line.split(":", 1)[0].strip().lower())
        wanted, field = {"space directions", "spacings"}, "space directions or spacings"
    if keys and not keys & wanted:
        raise InputError(f"{path}: header gives no voxel spacing ({field}); the volume's size in mm is unknown")


def check_metaimage_stream(path: Path) -> None:
    """A compressed MetaImage's zlib stream must be whole and match its checksum: MetaIO ignores zlib's error
    and hands back the voxels it could inflate, some of them wrong, without a word."""
    name = path.name.lower()
    if not name.endswith((".mha", ".mhd")):
        return
    try:
        with path.open("rb") as handle:
            head = handle.read(1 << 16)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    fields, start = {}, None
    for line in head.split(b"\n"):
        key, _, value = line.decode("latin-1").partition("=")
        fields[key.strip().lower()] = value.strip()
        if key.strip().lower() == "elementdatafile":
            start = head.index(line) + len(line) + 1
            break
    if fields.get("compresseddata", "").lower() != "true" or start is None:
        return
    where = fields.get("elementdatafile", "")
    if where.upper() == "LOCAL":
        data, offset = path, start
    elif where and where.upper() != "LIST" and "%" not in where and " " not in where:
        data, offset = path.parent / where, 0
    else:
        return
    inflate = zlib.decompressobj()
    try:
        with open(data, "rb") as handle:
            handle.seek(offset)
            while block := handle.read(1 << 22):
                while block and not inflate.eof:
                    inflate.decompress(block, 1 << 24)
                    block = inflate.unconsumed_tail
    except zlib.error as exc:
        raise InputError(f"{path}: unreadable image (compressed voxel data damaged: {exc})") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read {data.name} ({exc.strerror or exc})") from None
    if not inflate.eof:
        raise InputError(f"{path}: truncated: the compressed voxel data ends before its stream does")


def _dicom_info(file: str) -> tuple[dict[str, str], sitk.ImageFileReader]:
    reader = sitk.ImageFileReader()
    reader.SetFileName(file)
    reader.LoadPrivateTagsOff()
    reader.ReadImageInformation()
    return {k: reader.GetMetaData(k).strip() for k in reader.GetMetaDataKeys()}, reader


def _transfer_syntax(file: str) -> str:
    """The slice's transfer syntax from its file meta group (ITK's DICOM reader does not report group 0002)."""
    try:
        from pydicom.filereader import read_file_meta_info

        return str(read_file_meta_info(file).get("TransferSyntaxUID", "")).rstrip("\x00 ")
    except Exception:  # no pydicom, or no meta group: the size check is skipped, as for compressed slices
        return ""


def _stored_pixel_bytes(tags: dict[str, str], reader: sitk.ImageFileReader) -> int:
    """Bytes the slice's pixels take in the file (Bits Allocated, Samples per Pixel, frames); 0 if unknown."""
    try:
        bits = int(tags["0028|0100"].strip("\x00 "))
        samples = int(tags.get("0028|0002", "1").strip("\x00 ") or 1)
        frames = int(tags.get("0028|0008", "1").strip("\x00 ") or 1)
    except (KeyError, ValueError):
        return 0
    return math.prod(reader.GetSize()[:2]) * samples * max(1, frames) * bits // 8


def _numbers(folder: Path, file: str, tags: dict[str, str], tag: str, count: int, what: str) -> np.ndarray:
    if tag not in tags or not tags[tag].strip("\\ \x00"):
        unknown = "the voxel size is unknown" if tag == "0028|0030" else "the slices cannot be placed"
        raise InputError(f"{folder}: DICOM slice {Path(file).name} has no {what} ({tag.replace('|', ',')}); "
                         f"{unknown}")
    try:
        values = np.array([float(v) for v in tags[tag].strip("\x00 ").split("\\")], dtype=float)
    except ValueError:
        values = np.array([])
    if values.size != count or not np.isfinite(values).all():
        raise InputError(f"{folder}: DICOM slice {Path(file).name} has an unreadable {what} "
                         f"({tags[tag].strip()}: {count} finite numbers needed)")
    return values


def check_dicom_series(folder: Path, files: list[str]) -> None:
    """Every slice complete, on one plane orientation and pixel spacing, the slice positions evenly spaced
    along the slice normal and not drifting sideways; else one line naming the problem.

    GDCM silently drops a truncated or unreadable slice and ITK then stretches the spacing over the hole
    (5.83 mm instead of 5 mm for one missing slice of eight); ITK places a sheared stack (positions drifting
    across the slice plane, as a gantry tilt makes) on an orthogonal grid with a stretched slice spacing, turns
    a zero or missing Pixel Spacing into 1 mm and a negative one into a flipped axis. Each lands the mask on a
    wrong grid, so each is refused.
    """
    if len(files) < 2:
        return  # one file: a single slice (refused as 2D later) or a multi-frame object ITK places itself
    slices = []
    for file in files:
        name = Path(file).name
        try:
            tags, reader = _dicom_info(file)
        except RuntimeError:
            raise InputError(f"{folder}: DICOM series has an unreadable slice {name}") from None
        if _transfer_syntax(file) in _UNCOMPRESSED_SYNTAXES:
            need = _stored_pixel_bytes(tags, reader)  # as stored: ITK reports float once a rescale slope is set
            if need and os.path.getsize(file) < need:
                raise InputError(f"{folder}: DICOM series slice {name} is truncated "
                                 f"({os.path.getsize(file)} bytes, its pixels alone need {need})")
        position = _numbers(folder, file, tags, "0020|0032", 3, "Image Position (Patient)")
        cosines = _numbers(folder, file, tags, "0020|0037", 6, "Image Orientation (Patient)")
        spacing = _numbers(folder, file, tags, "0028|0030", 2, "Pixel Spacing")
        if not (spacing > 0).all():
            raise InputError(f"{folder}: DICOM slice {name} has Pixel Spacing (0028,0030) {spacing.tolist()}: it "
                             "must be positive (a zero spacing would become 1 mm, a negative one swap the sides)")
        slices.append((name, position, cosines, spacing))
    name0, _, cosines0, spacing0 = slices[0]
    row, column = cosines0[:3], cosines0[3:]
    if abs(np.linalg.norm(row) - 1) > 1e-3 or abs(np.linalg.norm(column) - 1) > 1e-3 or abs(row @ column) > 1e-3:
        raise InputError(f"{folder}: DICOM slice {name0} has an Image Orientation (Patient) {cosines0.tolist()} "
                         "that is not two orthogonal unit vectors")
    for name, _, cosines, spacing in slices[1:]:
        if np.abs(cosines - cosines0).max() > 1e-4:
            raise InputError(f"{folder}: DICOM series slices have different orientations ({name0}: "
                             f"{cosines0.tolist()}, {name}: {cosines.tolist()}); one series must be one stack")
        if np.abs(spacing - spacing0).max() > 1e-4 * spacing0.max():
            raise InputError(f"{folder}: DICOM series slices have different pixel spacings ({name0}: "
                             f"{spacing0.tolist()} mm, {name}: {spacing.tolist()} mm)")
    normal = np.cross(row, column)
    ordered = sorted(slices, key=lambda s: float(s[1] @ normal))
    positions = [(float(s[1] @ normal), s[0]) for s in ordered]
    steps = np.diff([p for p, _ in positions])
    step = float(np.median(steps))
    for (before, name_a), (after, name_b), gap in zip(positions, positions[1:], steps):
        if gap < 1e-3 or abs(gap - step) > 0.01 * step + 1e-3:
            problem = "two slices at the same position" if gap < 1e-3 else \
                f"gap of {gap:.2f} mm where the series steps {step:.2f} mm"
            raise InputError(f"{folder}: DICOM series is not evenly spaced: {problem} between slice positions "
                             f"{before:.2f} and {after:.2f} mm ({name_a}, {name_b}); a slice is missing, "
                             "truncated or unreadable")
    # Sideways: the in-plane coordinates of every slice's first pixel must be the first slice's. Pixel Spacing
    # is (between rows, between columns): along the row direction the pixels are spacing[1] apart.
    first = ordered[0][1]
    across = np.array([[(s[1] - first) @ row, (s[1] - first) @ column] for s in ordered])
    pixels = np.abs(across) / spacing0[::-1]
    if pixels.max() > DRIFT_TOLERANCE_PIXELS:
        worst = int(np.argmax(pixels.max(axis=1)))
        drift = float(np.linalg.norm(across[worst]))
        raise InputError(f"{folder}: DICOM series slices drift sideways: slice {ordered[worst][0]} lies {drift:.2f} mm "
                         f"({pixels[worst].max():.1f} pixels) across the slice plane from {ordered[0][0]}, so the "
                         "positions are not along the slice normal (a sheared or gantry-tilted stack); resample it "
                         "onto an orthogonal grid first")


def _fold(text: str) -> list[str]:
    """Library output -> one short message per warning or complaint, in order, without repeats.

    ITK warnings span three lines ("WARNING: In <source file>, line N", "<Class> (0x...): text", blank); niftilib,
    MetaIO and GDCM write bare lines; VNL writes its source path and a matrix dump.
    """
    messages: list[str] = []
    for block in re.split(r"\n\s*\n", text):
        lines = [ln.strip() for ln in block.splitlines() if ln.strip()]
        if not lines:
            continue
        if re.match(r"^(WARNING|ERROR|Warning|Error): In ", lines[0]) and len(lines) > 1:
            found = [re.sub(r"^\w+ \(0x[0-9a-fA-F]+\):\s*", "", " ".join(lines[1:]))]
        else:
            found = []
            for line in lines:
                line = re.sub(r"^(?:\S*/)+\S+?:\s*", "", line)  # a leading source path (VNL)
                line = re.sub(r"^\**\s*(ERROR|WARNING|Warning|Error)?:?\s*", "", line)
                if sum(c.isalpha() for c in line) >= 4 and not line.startswith(("M = [", "M is ")):
                    found.append(line)
        for message in found:
            message = re.sub(r"\s+", " ", message).strip()[:200]
            if message and message not in messages:
                messages.append(message)
    return messages


class FoldedItkWarnings:
    """Capture what C++ libraries print on the process's stderr (file descriptor 2) while reading, and fold it.

    ITK, GDCM, niftilib, MetaIO and VNL write warnings and complaints there, over several lines, around the one
    line the user should see. On a clean exit the captured text becomes at most one ``warning:`` line (none
    with ``emit=False``); on an error nothing is printed: the error line says what is wrong, and may quote the
    libraries' reason (``messages()``). Nested captures (a read inside a read) fold into the outermost one.
    """

    _lock = threading.Lock()
    _active: FoldedItkWarnings | None = None

    def __init__(self, source: Path | str, emit: bool = True) -> None:
        self.source = str(source)
        self.emit = emit
        self.warnings: list[str] = []
        self._owner: FoldedItkWarnings | None = None

    def __enter__(self) -> FoldedItkWarnings:
        with FoldedItkWarnings._lock:
            if FoldedItkWarnings._active is not None:
                self._owner = FoldedItkWarnings._active
                return self
            FoldedItkWarnings._active = self
        self._saved: int | None = None
        try:
            sys.stderr.flush()
            self._sink = tempfile.TemporaryFile()
            self._saved = os.dup(2)
            os.dup2(self._sink.fileno(), 2)
        except (OSError, ValueError):  # no usable file descriptor 2 (a GUI without a console): nothing to fold
            if self._saved is not None:
                os.close(self._saved)
                self._saved = None
        return self

    def messages(self) -> list[str]:
        """What the libraries said so far (the outermost capture's)."""
        if self._owner is not None:
            return self._owner.messages()
        if getattr(self, "_saved", None) is None or self._sink.closed:
            return list(self.warnings)
        sys.stderr.flush()
        self._sink.seek(0)
        text = self._sink.read().decode("utf-8", "replace")
        self._sink.seek(0, os.SEEK_END)
        return _fold(text)

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if self._owner is not None:
            return
        try:
            if self._saved is not None:
                self.warnings = self.messages()
                try:
                    sys.stderr.flush()
                except (OSError, ValueError):
                    pass
                os.dup2(self._saved, 2)
        finally:
            if self._saved is not None:
                os.close(self._saved)
                self._saved = None
            if hasattr(self, "_sink"):
                self._sink.close()
            FoldedItkWarnings._active = None
        if exc_type is None and self.emit and self.warnings:
            more = f" (and {len(self.warnings) - 3} more)" if len(self.warnings) > 3 else ""
            print(f"warning: {self.source}: {'; '.join(self.warnings[:3])}{more}", file=sys.stderr)


def library_reason(exc: Exception, folded: FoldedItkWarnings | None = None) -> str:
    """The useful line of an ITK exception (they span many lines), without object addresses, plus what the
    libraries printed about it, if anything."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln for ln in lines if "Description:" in ln or "ERROR" in ln.upper()]
    text = (useful or lines or [type(exc).__name__])[-1].replace("Description:", "").strip()
    text = re.sub(r"\b\w+\s?\(0x[0-9a-fA-F]+\):\s*", "", text)
    said = folded.messages() if folded is not None else []
    extra = next((m for m in said if m not in text), None)
    return f"{text}; {extra}" if extra else text
