"""The training folder: labelled cases written by the Slicer module's export and read by Training.

One format on both sides is what closes the correction loop: a clinician's corrected mask becomes training
data without conversion. The folder is append-only. A case is never rewritten; exporting the same subject
again adds a new version, so nothing a reviewer made is lost and every model can name exactly the cases it
was trained on (the manifest hash goes into its lineage). Exports and training may run at the same time,
so the manifest is only ever replaced whole, under a lock. The format is documented in
docs/training-folder.md.

Layout::

    manifest.json              format, version, and one entry per case (the index; the files are the data)
    images/<case_id>.nii.gz    image volume (any VOLUME_SUFFIXES format is read; export writes .nii.gz)
    labels/<case_id>.nii.gz    uint8 label on the image's exact grid: 0 background, see LABEL_SCHEMES
    cases/<case_id>.json       sidecar: provenance, review status, how much the reviewer changed
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from .training_folder_checks import (check_finite, check_free_text, check_identifying, check_sidecar_size,
                                     label_as_uint8, records_from_sidecars, without_metadata)
from ..volumes.volume_io import VOLUME_SUFFIXES, read_volume, verify_image_file

FORMAT_NAME = "neonatal-lung-training-folder"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
LOCK_NAME = ".manifest.lock"
IMAGE_FORMATS = ("nii.gz", "nrrd")
# "right_left": 1 right lung, 2 left lung (what the engine writes). "lung": 1 lung, sides not told apart
# (e.g. public CT masks). Training uses label > 0 either way; per-side metrics need "right_left".
LABEL_SCHEMES = {"right_left": {"right_lung": 1, "left_lung": 2}, "lung": {"lung": 1}}
REVIEW_STATUSES = ("reviewed", "unreviewed", "reference")
_SAFE = re.compile(r"[^A-Za-z0-9_-]+")


def safe_name(text: str, fallback: str = "case") -> str:
    """A name that can become part of a path: letters, digits, '_' and '-' only, at most 64 characters.

    When cleaning loses information that told names apart (non-ASCII letters, or a name cut to length), a
    short hash of the original is appended, so "Müller" and "Mäller" (or two long names sharing 64
    characters) stay two subjects instead of silently merging into one.
    """
    text = str(text)
    cleaned = _SAFE.sub("_", text).strip("_-")
    if text and (not text.isascii() or len(cleaned) > 64):
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]
        return f"{cleaned[:55].strip('_-') or fallback}-{digest}"
    return cleaned[:64] or fallback


@dataclass(frozen=True)
class CaseRecord:
    """One manifest entry. Paths are relative to the folder so the folder can be moved or copied."""

    case_id: str
    subject: str
    version: int
    image: str
    label: str
    sidecar: str
    review_status: str = "reviewed"
    label_scheme: str = "right_left"
    source: str = ""
    created: str = ""

    @staticmethod
    def from_dict(data: dict[str, Any], where: str) -> CaseRecord:
        if not isinstance(data, dict):
            raise InputError(f"{where}: malformed case entry (an object is needed, got {type(data).__name__})")
        try:
            record = CaseRecord(**{k: data[k] for k in CaseRecord.__dataclass_fields__ if k in data})
        except TypeError as error:
            raise InputError(f"{where}: malformed case entry ({error})") from None
        for name, value in asdict(record).items():
            wanted = int if name == "version" else str
            if not isinstance(value, wanted) or isinstance(value, bool):
                raise InputError(f"{where}: case {data.get('case_id')!r}: {name} must be "
                                 f"{'a whole number' if wanted is int else 'text'}, got {value!r}")
        for name in (record.image, record.label, record.sidecar):
            if Path(name).is_absolute() or ".." in Path(name).parts:
                raise InputError(f"{where}: case {record.case_id!r} points outside the folder ({name})")
        if record.label_scheme not in LABEL_SCHEMES:
            raise InputError(f"{where}: case {record.case_id!r} has unknown label_scheme {record.label_scheme!r}")
        return record


@dataclass
class TrainingFolder:
    """A snapshot of a training folder's manifest, taken once so a run sees a fixed set of cases."""

    root: Path
    cases: list[CaseRecord] = field(default_factory=list)
    description: str = ""
    manifest_sha256: str = ""

    def subjects(self) -> list[str]:
        return sorted({c.subject for c in self.cases})

    def latest_versions(self) -> list[CaseRecord]:
        """One case per subject, the newest export: older versions are history, not extra data."""
        latest: dict[str, CaseRecord] = {}
        for case in self.cases:
            if case.subject not in latest or case.version > latest[case.subject].version:
                latest[case.subject] = case
        return [latest[s] for s in sorted(latest)]

    def read_case(self, record: CaseRecord) -> tuple[sitk.Image, sitk.Image]:
        """Image (float32) and label (uint8), checked to share one grid.

        Both files are read by the engine's checked reader, as ``segment`` reads a scan: a NIfTI in one pass
        that checks and decodes the same bytes (ITK reads a truncated one as whole, and training would learn
        garbage), other formats checked for what ITK lets through (no spacing, a damaged stream, a sheared
        grid). A slice of depth 1 is a case; one InputError line names the file and the problem.
        """
        image_path, label_path = self.root / record.image, self.root / record.label
        for path in (image_path, label_path):
            if not path.is_file():
                raise InputError(f"{path}: listed in {MANIFEST_NAME} but missing")
        image = read_volume(image_path, check=False, single_slices=True)
        check_finite(image, image_path)  # the NIfTI reader refuses NaN itself; other formats are checked here
        label = label_as_uint8(read_volume(label_path, check=False, single_slices=True), label_path)
        if (label.GetSize() != image.GetSize()
                or not np.allclose(label.GetSpacing(), image.GetSpacing(), rtol=1e-4)
                or not np.allclose(label.GetOrigin(), image.GetOrigin(), atol=1e-3)
                or not np.allclose(label.GetDirection(), image.GetDirection(), atol=1e-4)):
            raise InputError(f"{label_path}: label grid differs from its image {image_path.name}")
        label.CopyInformation(image)
        return image, label

    def read_sidecar(self, record: CaseRecord) -> dict[str, Any]:
        path = self.root / record.sidecar
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as error:
            raise InputError(f"{path}: unreadable sidecar ({str(error)[:200]})") from None


def _manifest_bytes(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")


def _empty_manifest(description: str) -> dict[str, Any]:
    return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "description": description, "cases": []}


def _load_manifest(path: Path, raw: bytes | None = None) -> dict[str, Any]:
    """Parse the manifest; from ``raw`` when given (the bytes already read), so a hash and the cases it
    names always come from the same version of the file."""
    try:
        data = json.loads((path.read_bytes() if raw is None else raw).decode("utf-8"))
    except RecursionError:
        raise InputError(f"{path}: not a readable training-folder manifest (nested too deeply)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: not a readable training-folder manifest ({error})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise InputError(f"{path}: not a training-folder manifest (format must be {FORMAT_NAME!r})")
    if data.get("format_version") != FORMAT_VERSION:
        raise InputError(f"{path}: manifest format_version {data.get('format_version')!r} is not supported "
                         f"(this version reads {FORMAT_VERSION})")
    if not isinstance(data.get("cases"), list):
        raise InputError(f"{path}: manifest has no 'cases' list")
    return data


def _stem(path: Path) -> str | None:
    name = path.name
    suffix = next((s for s in VOLUME_SUFFIXES if name.lower().endswith(s)), None)
    return name[: -len(suffix)] if suffix else None


def _pairs_without_manifest(root: Path) -> list[CaseRecord]:
    """A plain images/ + labels/ folder (same stems) is read too, so any labelled set can be evaluated."""
    labels = {_stem(p): p for p in sorted((root / "labels").glob("*")) if _stem(p)}
    records = []
    for image in sorted((root / "images").glob("*")):
        stem = _stem(image)
        if stem and stem in labels:
            records.append(CaseRecord(case_id=stem, subject=stem, version=1,
                                      image=str(image.relative_to(root)),
                                      label=str(labels[stem].relative_to(root)), sidecar="",
                                      review_status="reference", label_scheme="right_left"))
    return records


def read_training_folder(root: Path | str) -> TrainingFolder:
    """Read the manifest (or, without one, pair images/ and labels/ by name); one clear error if unusable."""
    root = Path(root)
    manifest = root / MANIFEST_NAME
    if manifest.is_file():
        raw = manifest.read_bytes()  # read once: an export may replace the file at any moment
        data = _load_manifest(manifest, raw)
        cases = [CaseRecord.from_dict(c, str(manifest)) for c in data["cases"]]
        digest = hashlib.sha256(raw).hexdigest()
        description = str(data.get("description", ""))
    elif any((root / "cases").glob("*.json")):  # manifest lost: the sidecars still index every case
        cases = [CaseRecord.from_dict(e, str(root / "cases")) for e in records_from_sidecars(root)]
        description = "rebuilt from cases/*.json (manifest missing)"
        digest = hashlib.sha256(json.dumps([asdict(c) for c in cases], sort_keys=True).encode()).hexdigest()
    elif (root / "images").is_dir() and (root / "labels").is_dir():
        cases, description = _pairs_without_manifest(root), "images/ + labels/ pairs (no manifest)"
        digest = hashlib.sha256(json.dumps([asdict(c) for c in cases], sort_keys=True).encode()).hexdigest()
    else:
        raise InputError(f"{root}: not a training folder (no {MANIFEST_NAME}, and no images/ + labels/ folders)")
    if not cases:
        raise InputError(f"{root}: training folder holds no cases")
    return TrainingFolder(root=root, cases=cases, description=description, manifest_sha256=digest)


@contextlib.contextmanager
def _locked(root: Path, timeout_s: float = 60.0) -> Iterator[None]:
    """Exclusive lock on the folder's manifest, across processes (an export while training reads)."""
    lock_path = root / LOCK_NAME
    handle = open(lock_path, "a+b")
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                _try_lock(handle)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{lock_path}: could not lock the manifest within {timeout_s:.0f} s")
                time.sleep(0.05)
        yield
    finally:
        with contextlib.suppress(OSError):
            _unlock(handle)
        handle.close()


def _try_lock(handle: Any) -> None:
    if os.name == "nt":
        import msvcrt
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
    else:
        import fcntl
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def _unlock(handle: Any) -> None:
    if os.name == "nt":
        import msvcrt
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
    else:
        import fcntl
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _write_new(path: Path, write: Any) -> None:
    """Write through a temporary file and link it into place; fails rather than replace an existing file."""
    temporary = path.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{path.name}")
    try:
        write(temporary)
        os.link(temporary, path)  # atomic, and refuses an existing target (unlike os.replace)
    finally:
        temporary.unlink(missing_ok=True)


def _check_pair(image: sitk.Image, label: sitk.Image, label_scheme: str) -> None:
    if label_scheme not in LABEL_SCHEMES:
        raise ValueError(f"label_scheme must be one of {', '.join(LABEL_SCHEMES)}, got {label_scheme!r}")
    if image.GetDimension() != 3 or label.GetDimension() != 3:
        raise ValueError("image and label must be 3D (a single slice is a volume of depth 1)")
    if label.GetSize() != image.GetSize():
        raise ValueError(f"label size {label.GetSize()} differs from image size {image.GetSize()}")
    values = np.unique(sitk.GetArrayViewFromImage(label))
    allowed = {0, *LABEL_SCHEMES[label_scheme].values()}
    if not set(values.tolist()) <= allowed:
        raise ValueError(f"label values {sorted(values.tolist())} do not fit scheme {label_scheme!r} "
                         f"(allowed {sorted(allowed)})")


def add_case(root: Path | str, image: sitk.Image, label: sitk.Image, subject: str, *,
             review_status: str = "reviewed", label_scheme: str = "right_left", source: str = "",
             metadata: dict[str, Any] | None = None, image_format: str = "nii.gz",
             description: str = "") -> CaseRecord:
    """Append one case as the next version of ``subject``; returns its manifest entry.

    ``subject`` must already be free of patient identifiers (the module passes a hash of the volume); one
    that looks like a person's name is refused, and it is sanitised again here because it becomes a file
    name. ``metadata``, ``source`` and ``description`` go into the sidecar and the manifest after
    :func:`check_free_text` (identifying keys and values, non-finite numbers: one NotDeidentified line, an
    InputError, and nothing written); the image and label are written without their metadata dictionaries.
    A lost manifest is rebuilt from the sidecars first (never restarted, which would orphan earlier cases).
    """
    if review_status not in REVIEW_STATUSES:
        raise ValueError(f"review_status must be one of {', '.join(REVIEW_STATUSES)}, got {review_status!r}")
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {', '.join(IMAGE_FORMATS)}, got {image_format!r}")
    _check_pair(image, label, label_scheme)
    check_free_text(metadata or {}, "metadata")
    check_free_text(source, "source")
    check_free_text(description, "description", names=False)  # dataset titles: "Measuring Lungs in CT Data"
    check_identifying(str(subject), "subject", digits=False)  # hashes and seeds are digit runs; names are not
    geometry = {"size": list(image.GetSize()), "spacing_mm": list(image.GetSpacing())}
    check_free_text(geometry, "image")  # a non-finite spacing is refused before anything is written
    image = without_metadata(image)
    label = without_metadata(sitk.Cast(label, sitk.sitkUInt8))
    label.CopyInformation(image)
    root = Path(root)
    subject = safe_name(subject, "subject")
    for sub in ("images", "labels", "cases"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    with _locked(root):
        manifest_path = root / MANIFEST_NAME
        data = _load_manifest(manifest_path) if manifest_path.exists() else _rebuilt_manifest(root, description)
        known = [CaseRecord.from_dict(c, str(manifest_path)) for c in data["cases"]]
        used = {c.case_id for c in known}
        version = 1 + max((c.version for c in known if c.subject == subject), default=0)
        case_id = f"{subject}_v{version:03d}"
        while case_id in used or any((root / d / f"{case_id}{s}").exists()
                                     for d in ("images", "labels") for s in VOLUME_SUFFIXES):
            version += 1  # files left by a crashed export are never overwritten: skip past them
            case_id = f"{subject}_v{version:03d}"
        record = CaseRecord(case_id=case_id, subject=subject, version=version,
                            image=f"images/{case_id}.{image_format}", label=f"labels/{case_id}.{image_format}",
                            sidecar=f"cases/{case_id}.json", review_status=review_status,
                            label_scheme=label_scheme, source=source,
                            created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        sidecar = {**(metadata or {}), **asdict(record), "labels": LABEL_SCHEMES[label_scheme], **geometry}
        sidecar_text = check_sidecar_size(sidecar)
        written: list[Path] = []
        try:
            for final, write in (
                    (root / record.image, lambda p: _write_verified(image, p)),
                    (root / record.label, lambda p: _write_verified(label, p)),
                    (root / record.sidecar, lambda p: p.write_text(sidecar_text, encoding="utf-8"))):
                _write_new(final, write)
                written.append(final)
            data["cases"].append(asdict(record))
            temporary = manifest_path.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{MANIFEST_NAME}")
            temporary.write_bytes(_manifest_bytes(data))
            os.replace(temporary, manifest_path)  # readers see the old or the new manifest, never half
        except BaseException:
            for path in written:  # a case is in the folder only once the manifest lists it
                path.unlink(missing_ok=True)
            raise
    return record


def _write_verified(image: sitk.Image, path: Path) -> None:
    """Write and read back voxel for voxel: ITK's writers can short-write without raising."""
    sitk.WriteImage(image, str(path), useCompression=True)
    verify_image_file(path, image)


def _rebuilt_manifest(root: Path, description: str) -> dict[str, Any]:
    """The manifest to start from when there is none: rebuilt from the sidecars, or empty for a new folder;
    refused for a folder holding images but no index (adding to it would orphan them)."""
    entries = records_from_sidecars(root)
    if not entries and any(p for d in ("images", "labels") for p in (root / d).glob("*") if _stem(p)):
        raise InputError(f"{root}: holds images or labels but no {MANIFEST_NAME} and no sidecars; add cases to "
                         "a new folder instead of orphaning these")
    data = _empty_manifest(description)
    data["cases"] = entries
    return data


@contextlib.contextmanager
def new_training_folder(root: Path | str) -> Iterator[Path]:
    """Build a whole NEW training folder: yields a staging folder to ``add_case`` into, renamed to ``root``
    only when the block finishes, so a converter that fails half-way leaves nothing behind."""
    root = Path(root)
    if root.exists():
        raise FileExistsError(f"{root}: already exists; choose a new folder")
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        yield staging
        staging.chmod(0o755)
        os.replace(staging, root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
