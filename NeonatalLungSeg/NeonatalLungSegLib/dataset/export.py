"""Export a reviewed lung segmentation to a training folder, and prove what was written.

This is the library half of the Slicer module's "Export for retraining": the module turns its MRML nodes
into arrays and calls :func:`export_case`; everything that decides what goes into the training folder lives
here so it is tested without Slicer. Three rules shape it:

- No patient identifiers leave the scanner's world. The case is named after a SHA-256 of the voxel array
  and its geometry (never a node, file or patient name), and the sidecar holds only that hash, the model,
  the reviewer's name as typed, the time and how much the reviewer changed.
- A corrected mask is worth more than any run of the model, so it is never overwritten: the training folder
  appends a new version for every export (see ``training_folder.add_case``).
- An export that silently swapped the lungs or shifted the grid would poison every later model, so the
  written label is read back through the training folder's own reader and compared voxel for voxel (and the
  grid to the micrometre) before the export counts as done.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..inference.measure import dice
from ..errors import NeonatalLungSegError
from ..geometry import Geometry, array_to_image, image_to_array
from ..inference.measure import measure_volumes
from .training_folder import LABEL_SCHEMES, CaseRecord, add_case, read_training_folder

SOFTWARE_NAME = "NeonatalLungSeg"
SUBJECT_PREFIX = "vol-"


class ExportVerificationError(NeonatalLungSegError):
    """What was read back from the training folder differs from what was meant to be written."""


@dataclass(frozen=True)
class ExportResult:
    """The manifest entry of the new case, its sidecar and the label as read back from disk."""

    root: Path
    record: CaseRecord
    sidecar: dict[str, Any]
    label: np.ndarray  # uint8 (k, j, i), read back from the folder and verified

    @property
    def label_path(self) -> Path:
        return self.root / self.record.label

    @property
    def image_path(self) -> Path:
        return self.root / self.record.image


def source_fingerprint(array: np.ndarray, geometry: Geometry) -> str:
    """SHA-256 of the voxel values and where they sit: the same scan gives the same hash on any machine.

    The dtype and shape are hashed with the bytes (so an int16 and a float32 copy differ only if their values
    do not survive the cast), and the geometry is rounded to 1e-4 mm so that a float round trip through a
    file header does not change the identity of the scan.
    """
    if tuple(array.shape) != geometry.array_shape:
        raise ValueError(f"array shape {tuple(array.shape)} does not match geometry {geometry.array_shape}")
    digest = hashlib.sha256()
    contiguous = np.ascontiguousarray(array)
    digest.update(f"{contiguous.dtype.str}|{contiguous.shape}|".encode())
    digest.update(contiguous.tobytes())
    rounded = [round(float(v), 4) + 0.0 for v in (*geometry.spacing, *geometry.origin, *geometry.direction)]
    digest.update(repr((tuple(geometry.size), rounded)).encode())
    return digest.hexdigest()


def subject_for(fingerprint: str) -> str:
    """Subject name used in the training folder: a prefix and the first 16 hex digits of the fingerprint."""
    return SUBJECT_PREFIX + fingerprint[:16]


def change_summary(ai_labels: np.ndarray, corrected: np.ndarray, label_names: dict[str, int]) -> dict[str, Any]:
    """How much the reviewer changed the model's mask, per structure and for all lung together.

    ``voxels_added`` counts voxels the reviewer gave to a structure that the model had not; ``voxels_removed``
    the reverse. A voxel moved from one lung to the other counts as removed from one and added to the other,
    and not at all in ``lungs`` (both masks call it lung).
    """
    if ai_labels.shape != corrected.shape:
        raise ValueError(f"AI labels {ai_labels.shape} and corrected labels {corrected.shape} differ in shape")
    summary: dict[str, Any] = {"dice": {}, "voxels_added": {}, "voxels_removed": {}}
    structures = {**{name: (value,) for name, value in label_names.items()},
                  "lungs": tuple(label_names.values())}
    for name, values in structures.items():
        before = np.isin(ai_labels, values)
        after = np.isin(corrected, values)
        summary["dice"][name] = round(dice(before, after), 6)
        summary["voxels_added"][name] = int(np.count_nonzero(after & ~before))
        summary["voxels_removed"][name] = int(np.count_nonzero(before & ~after))
    summary["unchanged"] = bool(np.array_equal(ai_labels, corrected))
    return summary


def build_sidecar(image: np.ndarray, labels: np.ndarray, geometry: Geometry, *, reviewer: str,
                  fingerprint: str, label_scheme: str, model: dict[str, Any] | None,
                  ai_labels: np.ndarray | None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The provenance written beside the case. Only the keys below: nothing copied from the scan's header."""
    names = LABEL_SCHEMES[label_scheme]
    volumes = measure_volumes(labels, geometry, split=label_scheme == "right_left")
    return {
        "software": {"name": SOFTWARE_NAME, "library_version": __version__},
        "model": dict(model) if model else None,
        "reviewer": reviewer,
        "exported_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source_sha256": fingerprint,
        "source_dtype": str(image.dtype),
        "geometry": {"size": list(geometry.size), "spacing_mm": list(geometry.spacing),
                     "origin_lps_mm": list(geometry.origin), "direction": list(geometry.direction)},
        "volumes": volumes,
        "changes_from_ai": None if ai_labels is None else change_summary(ai_labels, labels, names),
        **(extra or {}),
    }


def check_labels(labels: np.ndarray, geometry: Geometry, label_scheme: str) -> np.ndarray:
    """The label array as uint8 after checking its grid and values; a clear ValueError otherwise."""
    if label_scheme not in LABEL_SCHEMES:
        raise ValueError(f"label_scheme must be one of {', '.join(LABEL_SCHEMES)}, got {label_scheme!r}")
    if tuple(labels.shape) != geometry.array_shape:
        raise ValueError(f"labels shape {tuple(labels.shape)} does not match geometry {geometry.array_shape}")
    allowed = {0, *LABEL_SCHEMES[label_scheme].values()}
    present = set(np.unique(labels).tolist())
    if not present <= allowed:
        raise ValueError(f"label values {sorted(present)} do not fit scheme {label_scheme!r} "
                         f"(allowed {sorted(allowed)})")
    return labels.astype(np.uint8, copy=False)


def export_case(root: Path | str, image: np.ndarray, labels: np.ndarray, geometry: Geometry, *,
                reviewer: str, model: dict[str, Any] | None = None, ai_labels: np.ndarray | None = None,
                label_scheme: str = "right_left", review_status: str = "reviewed",
                source: str = "3D Slicer NeonatalLungSeg export",
                extra: dict[str, Any] | None = None) -> ExportResult:
    """Append ``image`` + ``labels`` (both (k, j, i) on ``geometry``) to the training folder at ``root``.

    Returns only after the written case has been read back through ``read_training_folder`` and found
    identical; otherwise raises :class:`ExportVerificationError` naming the case (which stays in the folder as
    a record of what went wrong, because the folder is append-only).
    """
    reviewer = (reviewer or "").strip()
    if review_status == "reviewed" and not reviewer:
        raise ValueError("a reviewed case needs the reviewer's name (enter it before exporting)")
    labels = check_labels(labels, geometry, label_scheme)
    if tuple(image.shape) != geometry.array_shape:
        raise ValueError(f"image shape {tuple(image.shape)} does not match geometry {geometry.array_shape}")
    if ai_labels is not None and ai_labels.shape != labels.shape:
        ai_labels = None  # a model result on another grid cannot be compared voxel by voxel
    fingerprint = source_fingerprint(image, geometry)
    sidecar = build_sidecar(image, labels, geometry, reviewer=reviewer, fingerprint=fingerprint,
                            label_scheme=label_scheme, model=model, ai_labels=ai_labels, extra=extra)
    record = add_case(root, array_to_image(image, geometry), array_to_image(labels, geometry),
                      subject_for(fingerprint), review_status=review_status, label_scheme=label_scheme,
                      source=source, metadata=sidecar)
    read_back = verify_case(root, record, image, labels, geometry)
    folder = read_training_folder(root)
    written = next(c for c in folder.cases if c.case_id == record.case_id)
    return ExportResult(root=Path(root), record=record, sidecar=folder.read_sidecar(written), label=read_back)


def verify_case(root: Path | str, record: CaseRecord, image: np.ndarray, labels: np.ndarray,
                geometry: Geometry) -> np.ndarray:
    """Read the case back as Training will and require exactly what was meant; returns the read label."""
    folder = read_training_folder(root)
    matches = [c for c in folder.cases if c.case_id == record.case_id]
    if len(matches) != 1:
        raise ExportVerificationError(f"{root}: case {record.case_id} is listed {len(matches)} times in the manifest")
    image_read, label_read = folder.read_case(matches[0])
    label_array, label_geometry = image_to_array(label_read)
    image_array, _ = image_to_array(image_read)
    where = f"{Path(root) / record.label}"
    if label_array.shape != labels.shape:
        raise ExportVerificationError(f"{where}: read back with shape {label_array.shape}, expected {labels.shape}")
    differing = int(np.count_nonzero(label_array != labels))
    if differing:
        raise ExportVerificationError(f"{where}: {differing} voxels differ from the segmentation after writing")
    if not np.array_equal(image_array, np.asarray(image, dtype=np.float32)):
        raise ExportVerificationError(f"{Path(root) / record.image}: image values changed on the way to disk")
    for name, got, want, tolerance in (("spacing", label_geometry.spacing, geometry.spacing, 1e-5),
                                       ("origin", label_geometry.origin, geometry.origin, 1e-3),
                                       ("direction", label_geometry.direction, geometry.direction, 1e-4)):
        if not np.allclose(got, want, atol=tolerance, rtol=0):
            raise ExportVerificationError(f"{where}: {name} read back as {list(got)}, expected {list(want)}")
    return label_array
