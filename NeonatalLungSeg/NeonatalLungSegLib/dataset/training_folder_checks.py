"""What keeps a training folder private and whole: metadata stripped, free text checked, a lost manifest
rebuilt from the sidecars.

A training folder travels (to a collaborator, into a model's lineage), so nothing from a scan's header may
reach it: ITK writes an image's metadata dictionary into the NIfTI description and into NRRD keys, which put
a PatientName into the folder. And the manifest is only an index of the sidecars: losing it must never make
the next export start a new index that orphans every earlier case.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from ..errors import InputError

MAX_TEXT_CHARS = 2000
MAX_SIDECAR_BYTES = 1 << 20
# Keys that name a person or an identifying attribute (DICOM group 0010 is the patient module).
_IDENTIFYING_KEY = re.compile(r"patient|birth|accession|institution|physician|operator|address|phone|"
                              r"^\(?0010[|,]|^0010[0-9a-f]{4}$|^(ssn|mrn|dob)$", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_RECORD_KEYS = ("case_id", "subject", "version", "image", "label", "sidecar", "review_status", "label_scheme",
                "source", "created")


def without_metadata(image: sitk.Image) -> sitk.Image:
    """The same voxels on the same grid with an empty metadata dictionary (only what the format defines
    is written: size, spacing, origin, direction, pixel type)."""
    clean = sitk.GetImageFromArray(sitk.GetArrayViewFromImage(image), isVector=image.GetNumberOfComponentsPerPixel() > 1)
    clean.CopyInformation(image)
    for key in clean.GetMetaDataKeys():
        clean.EraseMetaData(key)
    return clean


def check_free_text(value: Any, where: str = "metadata") -> None:
    """ValueError unless ``value`` is plain JSON with string keys, no identifying key, and short, printable
    strings: the sidecar is free text that anyone reading the folder sees."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where}: keys must be strings, got {key!r}")
            if _IDENTIFYING_KEY.search(key.strip()):
                raise ValueError(f"{where}.{key}: looks like a patient identifier; the training folder must "
                                 "stay de-identified")
            check_free_text(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_free_text(item, f"{where}[{index}]")
    elif isinstance(value, str):
        if len(value) > MAX_TEXT_CHARS:
            raise ValueError(f"{where}: text of {len(value)} characters; at most {MAX_TEXT_CHARS}")
        if _CONTROL.search(value):
            raise ValueError(f"{where}: text holds control characters")
    elif value is not None and not isinstance(value, (bool, int, float, np.integer, np.floating)):
        raise ValueError(f"{where}: {type(value).__name__} is not plain JSON")


def check_sidecar_size(sidecar: dict[str, Any]) -> str:
    """The sidecar as JSON text, refused beyond MAX_SIDECAR_BYTES."""
    text = json.dumps(sidecar, indent=2) + "\n"
    if len(text.encode("utf-8")) > MAX_SIDECAR_BYTES:
        raise ValueError(f"sidecar of {len(text)} bytes; at most {MAX_SIDECAR_BYTES}")
    return text


def records_from_sidecars(root: Path) -> list[dict[str, Any]]:
    """Manifest entries rebuilt from ``cases/*.json``, oldest first; InputError if any sidecar is unreadable
    or names a missing file (refusing beats rebuilding an index that silently drops a case)."""
    entries = []
    for path in sorted((Path(root) / "cases").glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise InputError(f"{path}: unreadable sidecar, so the lost manifest cannot be rebuilt ({error}); "
                             "repair or remove it") from None
        if not isinstance(data, dict) or not all(k in data for k in _RECORD_KEYS[:6]):
            raise InputError(f"{path}: sidecar lacks the case's manifest fields; the lost manifest cannot be "
                             "rebuilt")
        entry = {k: data[k] for k in _RECORD_KEYS if k in data}
        for key in ("image", "label"):
            if not isinstance(entry[key], str) or not (Path(root) / entry[key]).is_file():
                raise InputError(f"{path}: names {key} {entry[key]!r}, which is missing; the lost manifest "
                                 "cannot be rebuilt")
        entries.append(entry)
    return sorted(entries, key=lambda e: (str(e.get("created", "")), str(e["case_id"])))
