"""What keeps a training folder private and whole: metadata stripped, free text checked, a lost manifest
rebuilt from the sidecars, a case's voxels as training may use them (finite images, labels that fit uint8).

A training folder travels (to a collaborator, into a model's lineage), so nothing from a scan's header may
reach it: ITK writes an image's metadata dictionary into the NIfTI description and into NRRD keys, which put
a PatientName into the folder. Free text is checked by its keys and by what its values look like (a key
filter alone let ``Name``, ``PN``, "Patiënt" and a name inside a comment through): see
:func:`identifying_value`. And the manifest is only an index of the sidecars: losing it must never make
the next export start a new index that orphans every earlier case.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from ..errors import InputError

MAX_TEXT_CHARS = 2000
MAX_SIDECAR_BYTES = 1 << 20


class NotDeidentified(InputError, ValueError):
    """Free text or metadata refused for the training folder: it looks identifying, or is not plain JSON.

    An InputError, so every command answers it with one ``error:`` line and status 2; a ValueError, as the
    checks raised before."""


def _fold(text: str) -> str:
    """Lower case without accents: "Patiënt" -> "patient" (CJK and Cyrillic letters are kept)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold().strip()


# Keys that name a person or an identifying attribute (DICOM group 0010 is the patient module), matched on
# the folded key: "patient" in the languages of the sites this is used at, any key containing "name" but
# a nested plain ``name`` (the software's and the model's own name; its value is still checked), the DICOM VR
# "PN", MRN, DOB.
_IDENTIFYING_KEY = re.compile(
    r"patient|pacjent|pacient|paziente|potilas|пациент|пацієнт|пацыент|患者|病人|病患|환자|benh ?nhan|"
    r"birth|geburt|nacimiento|naissance|nascita|urodzen|accession|institution|physician|operator|address|"
    r"phone|\wname|name\w|nombre|^nom$|^nome$|^naam$|^imie$|^имя$|^фамилия$|姓名|名前|이름|"
    r"^\(?0010[|,]|^0010[0-9a-f]{4}$|^(ssn|mrn|dob|pn|pid)$", re.IGNORECASE)
_TOP_LEVEL_NAME = "name"  # a case's own "name" is its person's; ``model.name`` and ``software.name`` are not
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_RECORD_KEYS = ("case_id", "subject", "version", "image", "label", "sidecar", "review_status", "label_scheme",
                "source", "created")

# What identifying values look like. Tuned to stay quiet on what the module and the converters write
# (model names, hashes, versions such as "2026.4.1", "3D Slicer NeonatalLungSeg export", CPU features).
_PERSON_NAME = re.compile(r"[^\W\d_]\^|\^[^\W\d_]")  # DICOM PN: Family^Given
_WORD = re.compile(r"[^\W\d_]+")
_PAIR_GAP = re.compile(r"\s+|\s*,\s*")  # "John Doe", "Doe, John"
_YEAR = r"(?:19|20)\d\d"
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?"
_DATE = re.compile(rf"(?<![\d.]){_YEAR}[-/](?:0?[1-9]|1[0-2])[-/](?:0?[1-9]|[12]\d|3[01])(?!\d)"
                   rf"|(?<![\d.])\d{{1,2}}[-/.]\d{{1,2}}[-/.]{_YEAR}(?![\d.])"
                   rf"|\b\d{{1,2}}(?:st|nd|rd|th)?\s+{_MONTH}\s+{_YEAR}\b|\b{_MONTH}\s+\d{{1,2}},?\s+{_YEAR}\b",
                   re.IGNORECASE)
_DIGIT_RUN = re.compile(r"\d{6,}")                  # MRNs, IDs, dates as YYYYMMDD
_DECIMALS = re.compile(r"\d\.$")                   # ... but not the decimals of a number ("0.1234567")
_HASH = re.compile(r"[0-9a-f]{32,}")                # ... nor part of a hash ("…a1234567b…")
_TOKEN = re.compile(r"\w+")
# ... nor a case id ("syn-neonatal-000123_v001": ``combine`` names the case it copied in ``source``), whose
# subject passed the subject check when that case was written; seeds look like IDs, names and dates do not
_CASE_ID = re.compile(r"[A-Za-z0-9_-]+_v\d{3,}(?![\w-])")
# Fields the software writes itself, where a value shape would be a false alarm: the reviewer's name is
# stored on purpose (people's names are checked everywhere else), the export time is a date.
_NAME_ALLOWED = ("reviewer",)
_DATE_ALLOWED = ("exported_utc", "created")


def identifying_value(text: str, *, names: bool = True, dates: bool = True, digits: bool = True) -> str | None:
    """What in ``text`` looks like an identifier ("a DICOM person name", "a date", ...), or None.

    Refused: a DICOM person name (``Doe^John``), always; with ``names``, two capitalised words in a row
    (``John Doe``, ``Doe, John``: how names are written; other text is written without them); with
    ``dates``, a date (ISO, day/month/year, "5 March 2024"); with ``digits``, a run of six or more digits
    (MRNs, IDs, ``20240305``) outside a hash, a case id and the decimals of a number.
    """
    if _PERSON_NAME.search(text):
        return "a DICOM person name (Family^Given)"
    if names:
        words = list(_WORD.finditer(text))
        for first, second in zip(words, words[1:]):
            if all(len(w.group()) > 1 and w.group().istitle() for w in (first, second)) \
                    and _PAIR_GAP.fullmatch(text[first.end():second.start()]):
                return "a person's name (two capitalised words in a row)"
    if dates and _DATE.search(text):
        return "a date (a date of birth or of a scan)"
    if digits:
        text = _CASE_ID.sub(" ", text)
        for token in _TOKEN.finditer(text):
            word = token.group()
            if not _DIGIT_RUN.search(word) or _HASH.fullmatch(word.lower()) \
                    or (word.isdigit() and _DECIMALS.search(text[:token.start()])):
                continue
            return "an ID number (six or more digits in a row)"
    return None


def check_identifying(text: str, where: str, **which: bool) -> None:
    """NotDeidentified naming ``where`` when :func:`identifying_value` finds something (``which``: its
    switches). The value itself is not repeated: the message may end up in a log."""
    found = identifying_value(text, **which)
    if found:
        raise NotDeidentified(f"{where}: looks like {found}; the training folder must stay de-identified, so "
                              "free text is refused rather than stored (rewrite it without names, dates or ID "
                              "numbers)")


def without_metadata(image: sitk.Image) -> sitk.Image:
    """The same voxels on the same grid with an empty metadata dictionary (only what the format defines
    is written: size, spacing, origin, direction, pixel type)."""
    clean = sitk.GetImageFromArray(sitk.GetArrayViewFromImage(image),
                                   isVector=image.GetNumberOfComponentsPerPixel() > 1)
    clean.CopyInformation(image)
    for key in clean.GetMetaDataKeys():
        clean.EraseMetaData(key)
    return clean


def check_finite(image: sitk.Image, path: Path) -> None:
    """A training image holds no NaN or infinite voxel (training would learn from them)."""
    array = sitk.GetArrayViewFromImage(image)
    if not (np.isfinite(np.min(array)) and np.isfinite(np.max(array))):  # min and max propagate NaN
        raise InputError(f"{path}: volume contains {int(np.count_nonzero(~np.isfinite(array)))} NaN or infinite "
                         "voxels")


def label_as_uint8(label: sitk.Image, path: Path) -> sitk.Image:
    """The label (read as float32) as uint8, refused where a value would change on the way: a uint16 257 must
    not become 1 (right lung), nor a 1.5 become 1."""
    values = sitk.GetArrayViewFromImage(label)
    low, high = float(np.min(values)), float(np.max(values))
    if 0 <= low and high <= 255:  # NaN fails this test too
        narrow = sitk.Cast(label, sitk.sitkUInt8)
        differs = sitk.GetArrayViewFromImage(narrow) != values
        if not differs.any():
            return narrow
        found = float(values[differs].flat[0])
    else:
        found = high if 0 <= low else low
    raise InputError(f"{path}: label values must be whole numbers from 0 to 255 (a uint8 label), found {found:g}")


def check_free_text(value: Any, where: str = "metadata", key: str = "", *, names: bool = True) -> None:
    """NotDeidentified (a ValueError) unless ``value`` is plain JSON with string keys, no identifying key, no
    identifying-looking text (:func:`identifying_value`), finite numbers and short, printable strings: the
    sidecar is free text that anyone reading the folder sees. ``key``: the field ``value`` is under;
    ``names`` False skips the capitalised-words rule (the folder's description, which names datasets)."""
    if isinstance(value, dict):
        for name, item in value.items():
            if not isinstance(name, str):
                raise NotDeidentified(f"{where}: keys must be strings, got {name!r}")
            folded = _fold(name)
            if _IDENTIFYING_KEY.search(folded) or _CONTROL.search(name) \
                    or (folded == _TOP_LEVEL_NAME and "." not in where and "[" not in where):
                raise NotDeidentified(f"{where}.{name}: looks like a patient identifier; the training folder "
                                      "must stay de-identified")
            check_identifying(name, f"{where}.{name} (the key)")
            check_free_text(item, f"{where}.{name}", name, names=names)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_free_text(item, f"{where}[{index}]", key, names=names)
    elif isinstance(value, str):
        if len(value) > MAX_TEXT_CHARS:
            raise NotDeidentified(f"{where}: text of {len(value)} characters; at most {MAX_TEXT_CHARS}")
        if _CONTROL.search(value):
            raise NotDeidentified(f"{where}: text holds control characters")
        check_identifying(value, where, names=names and key not in _NAME_ALLOWED,
                          dates=key not in _DATE_ALLOWED)
    elif isinstance(value, (float, np.floating)):
        if not math.isfinite(float(value)):
            raise NotDeidentified(f"{where}: {float(value)} is not a finite number (JSON has no NaN or "
                                  "Infinity); leave the field out or write null")
    elif value is not None and not isinstance(value, (bool, int, np.integer, np.bool_)):
        raise NotDeidentified(f"{where}: {type(value).__name__} is not plain JSON")


def _plain(value: Any) -> Any:
    """NumPy scalars as the JSON numbers they are (``json`` knows only Python's own)."""
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not plain JSON")


def strict_json(data: Any, where: str) -> str:
    """``data`` as strict JSON text (indent 2): never a bare NaN or Infinity, NumPy numbers as plain ones;
    one NotDeidentified line otherwise."""
    try:
        return json.dumps(data, indent=2, allow_nan=False, default=_plain)
    except (ValueError, TypeError) as error:
        raise NotDeidentified(f"{where}: cannot be written as strict JSON ({error})") from None


def check_sidecar_size(sidecar: dict[str, Any]) -> str:
    """The sidecar as JSON text, refused beyond MAX_SIDECAR_BYTES."""
    text = strict_json(sidecar, "sidecar") + "\n"
    if len(text.encode("utf-8")) > MAX_SIDECAR_BYTES:
        raise NotDeidentified(f"sidecar of {len(text)} bytes; at most {MAX_SIDECAR_BYTES}")
    return text


def records_from_sidecars(root: Path) -> list[dict[str, Any]]:
    """Manifest entries rebuilt from ``cases/*.json``, oldest first; InputError if any sidecar is unreadable
    or names a missing file (refusing beats rebuilding an index that silently drops a case)."""
    entries = []
    for path in sorted((Path(root) / "cases").glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as error:
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
