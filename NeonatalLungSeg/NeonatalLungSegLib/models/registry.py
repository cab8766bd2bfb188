"""Which model folders are available: the bundled ones, folders given now, and folders remembered earlier.

The CLI's ``neonatal-lung-seg models`` and the Slicer module's model selector both list models through
:func:`find_models`, so they always agree. An entry says what a user needs to choose between models: name,
version, the parent it was fine-tuned from, how much data trained it and its validation Dice (all read from
``model.json``; the weights are not loaded, so listing is instant). A folder that is not a usable model is
listed with the reason instead of being silently dropped.

Remembered folders live in a small JSON file (``$NEONATAL_LUNG_SEG_REGISTRY``, default
``~/.config/neonatal-lung-seg/models.json``); ``$NEONATAL_LUNG_SEG_MODEL_PATH`` adds folders to search
(separated like PATH). A search folder is either a model folder or a folder whose sub-folders are.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from .. import json_input
from ..errors import InputError, ModelFolderError
from .gate_files import FALLBACK_FOLDER
from .model_folder import CONFIG_NAME, ModelConfig, read_config

MODEL_ENV = "NEONATAL_LUNG_SEG_MODEL"  # a folder to use instead of the bundled model as the default
REGISTRY_ENV = "NEONATAL_LUNG_SEG_REGISTRY"
SEARCH_ENV = "NEONATAL_LUNG_SEG_MODEL_PATH"
REGISTRY_FORMAT = "neonatal-lung-seg-model-registry"
BUNDLED_MODEL_NAME = "neonatal-lung-unet-r50"
BUNDLED_REFINE_MODEL_NAME = "neonatal-lung-refine-r50"  # the click-refinement model (refine.py)
KINDS = ("segmentation", "refine")
_LIB = Path(__file__).resolve().parents[1]  # NeonatalLungSegLib/
ORIGINS = ("bundled", "given", "remembered", "environment")
MAX_REGISTRY_BYTES = 1 << 20  # a list of folders; a larger file is not one this code wrote


def bundled_roots() -> list[Path]:
    """Where bundled models are: beside the module in an installed extension, or at the checkout's top."""
    return [_LIB.parent / "Resources" / "Models", _LIB.parents[1] / "Resources" / "Models"]


def bundled_model_folder() -> Path:
    """The bundled model's folder (the first root holding it; the installed layout when none does)."""
    for root in bundled_roots():
        if (root / BUNDLED_MODEL_NAME / CONFIG_NAME).is_file():
            return root / BUNDLED_MODEL_NAME
    return bundled_roots()[0] / BUNDLED_MODEL_NAME


def bundled_refine_model_folder() -> Path:
    """The bundled click-refinement model's folder (the installed layout when no root holds it)."""
    for root in bundled_roots():
        if (root / BUNDLED_REFINE_MODEL_NAME / CONFIG_NAME).is_file():
            return root / BUNDLED_REFINE_MODEL_NAME
    return bundled_roots()[0] / BUNDLED_REFINE_MODEL_NAME


def default_model_folder() -> Path:
    """The model used when none is chosen: $NEONATAL_LUNG_SEG_MODEL, else the default chosen in the registry
    (a promoted improvement) while its folder still holds a model, else the bundled model.

    The only place that knows the bundled model's name and location: the CLI and the Slicer module ask here.
    """
    override = os.environ.get(MODEL_ENV)
    if override:
        return Path(override)
    chosen = chosen_default()
    if chosen is not None and (chosen / CONFIG_NAME).is_file():
        return chosen
    return bundled_model_folder()


def registry_file() -> Path:
    override = os.environ.get(REGISTRY_ENV)
    if override:
        return Path(override)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "neonatal-lung-seg" / "models.json"


def _read_registry() -> dict[str, Any]:
    """The registry file's content; an unreadable, oversized or foreign file counts as empty (never fatal)."""
    try:
        data = json_input.read_json_file(registry_file(), MAX_REGISTRY_BYTES, "model registry")
    except InputError:
        return {}
    return data if isinstance(data, dict) else {}


def remembered_paths() -> list[Path]:
    """Folders remembered with :func:`remember` (an unreadable registry file counts as empty)."""
    folders = _read_registry().get("folders", [])
    return [Path(f) for f in folders if isinstance(f, str)] if isinstance(folders, list) else []


def chosen_default() -> Path | None:
    """The segmentation model the user made the default (``improve`` promoting a model, or ``models
    --default``), or None: the bundled model is the default then."""
    value = _read_registry().get("default")
    return Path(value) if isinstance(value, str) and value else None


def _write_registry(folders: Sequence[Path], default: Path | None | str = "unchanged") -> None:
    path = registry_file()
    chosen = chosen_default() if default == "unchanged" else default
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{path.name}")
    body: dict[str, Any] = {"format": REGISTRY_FORMAT, "folders": [str(f) for f in folders]}
    if chosen is not None:
        body["default"] = str(chosen)
    temporary.write_text(json_input.dump_json(body, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)  # concurrent readers see the old list or the new one


def set_default(folder: Path | str | None) -> None:
    """Make ``folder`` (a segmentation model folder, remembered too) the default model; None: the bundled
    one again. The folder is read and checked first: a default that cannot load is never written."""
    if folder is None:
        _write_registry(remembered_paths(), None)
        return
    folder = Path(folder).expanduser().resolve()
    config = read_config(folder)
    if config.input.guidance:
        raise ModelFolderError(f"{folder}: a click-refinement model cannot be the segmentation default")
    known = remembered_paths()
    _write_registry(known if folder in known else [*known, folder], folder)


def remember(folder: Path | str) -> bool:
    """Add a folder (a model folder or a folder of them) to the remembered list; False if already there."""
    folder = Path(folder).expanduser().resolve()
    known = remembered_paths()
    if folder in known:
        return False
    _write_registry([*known, folder])
    return True


def forget(folder: Path | str) -> bool:
    folder = Path(folder).expanduser().resolve()
    known = remembered_paths()
    if folder not in known:
        return False
    _write_registry([f for f in known if f != folder])
    return True


@dataclass(frozen=True)
class ModelEntry:
    """One model folder as a user chooses it; ``problem`` is set (and the rest empty) when it is unusable."""

    folder: Path
    origin: str
    name: str = ""
    version: str = ""
    parent: str | None = None            # "name version" of the model it was fine-tuned from
    training_cases: int | None = None
    training_slices: int | None = None
    validation_dice: float | None = None  # whole lung; see validation_data for what it was measured on
    validation_dice_right: float | None = None
    validation_dice_left: float | None = None
    validation_data: str = ""
    problem: str | None = None
    kind: str = "segmentation"           # or "refine": a click-refinement model (input.guidance)
    fallback: str | None = None          # a gated folder's parent ("name version"), which gets unlike scans

    @property
    def usable(self) -> bool:
        return self.problem is None

    @property
    def label(self) -> str:
        """Short text for a menu: 'name version', plus '(bundled)' for bundled models."""
        if not self.usable:
            return f"{self.folder.name} (unusable)"
        return f"{self.name} {self.version}" + (" (bundled)" if self.origin == "bundled" else "")

    def describe(self) -> str:
        """One line: identity, lineage, data and validation Dice."""
        if not self.usable:
            return f"{self.folder}: not a usable model folder ({self.problem})"
        parts = [f"{self.name} {self.version}", f"parent {self.parent}" if self.parent else "no parent"]
        if self.training_cases is not None:
            parts.append(f"{self.training_cases} training cases"
                         + (f" ({self.training_slices} slices)" if self.training_slices is not None else ""))
        if self.validation_dice is not None:
            parts.append(f"validation Dice {self.validation_dice:.3f}")
        if self.fallback:
            parts.append(f"gated: scans unlike its corrected cases get {self.fallback}")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "origin": self.origin, "name": self.name, "version": self.version,
                "parent": self.parent, "training_cases": self.training_cases,
                "training_slices": self.training_slices, "validation_dice": self.validation_dice,
                "validation_dice_right": self.validation_dice_right,
                "validation_dice_left": self.validation_dice_left, "validation_data": self.validation_data,
                "problem": self.problem, "kind": self.kind, "fallback": self.fallback}


def _number(value: Any, kind: type) -> Any:
    try:
        return None if value is None else kind(value)
    except (TypeError, ValueError):
        return None


def entry_for(folder: Path | str, origin: str = "given") -> ModelEntry:
    """Read one model folder's config (not its weights) into an entry."""
    folder = Path(folder)
    try:
        config = read_config(folder)
    except (ModelFolderError, OSError, ValueError, TypeError, AttributeError) as error:
        # one bad folder (edited, half-copied, foreign) must never stop the others from being listed
        return ModelEntry(folder=folder, origin=origin, problem=str(error).splitlines()[0] if str(error) else
                          type(error).__name__)
    training, validation = config.training or {}, config.validation or {}
    parent = training.get("parent") if isinstance(training.get("parent"), dict) else None
    parent_text = (f"{parent.get('name', config.name)} {parent.get('version', '')}".strip() if parent
                   else (f"{config.name} {config.parent_version}" if config.parent_version else None))
    right, left = (_number(validation.get(k), float) for k in ("mean_dice_right_lung", "mean_dice_left_lung"))
    whole = _number(validation.get("mean_dice_lungs"), float)
    if whole is None and right is not None and left is not None:
        whole = round((right + left) / 2, 4)
    return ModelEntry(folder=folder, origin=origin, name=config.name, version=config.version, parent=parent_text,
                      training_cases=_number(training.get("training_cases"), int),
                      training_slices=_number(training.get("training_slices"), int),
                      validation_dice=whole, validation_dice_right=right, validation_dice_left=left,
                      validation_data=str(validation.get("data", "")),
                      kind="refine" if config.input.guidance else "segmentation", fallback=_fallback(folder, config))


def _fallback(folder: Path, config: ModelConfig) -> str | None:
    """A gated folder's parent as "name version" (its config only; loading checks everything)."""
    if not config.gate:
        return None
    try:
        parent = read_config(folder / FALLBACK_FOLDER)
    except (ModelFolderError, OSError, ValueError, TypeError, AttributeError):
        return "an unreadable fallback model"
    return f"{parent.name} {parent.version}"


def model_folders_under(path: Path) -> list[Path]:
    """``path`` itself when it is a model folder, else its sub-folders that are (one level, sorted)."""
    path = Path(path)
    if (path / CONFIG_NAME).is_file():
        return [path]
    if not path.is_dir():
        return []
    return sorted(p for p in path.iterdir() if p.is_dir() and (p / CONFIG_NAME).is_file())


def _environment_paths() -> list[Path]:
    return [Path(p) for p in os.environ.get(SEARCH_ENV, "").split(os.pathsep) if p.strip()]


def find_models(paths: Iterable[Path | str] = (), *, bundled: bool = True, remembered: bool = True,
                environment: bool = True, kind: str | None = "segmentation") -> list[ModelEntry]:
    """Every model folder found, each once: bundled (the default model first), given, remembered, environment.

    ``kind`` keeps segmentation models (the default: what Segment and `models` choose from) or click-refinement
    models ("refine"); None keeps both. Unusable folders are always listed.

    A given path that is neither a model folder nor holds any is listed as an unusable entry, so a typo is
    reported rather than ignored.
    """
    sources: list[tuple[str, Path]] = []
    if bundled:
        sources += [("bundled", p) for p in bundled_roots()]
    sources += [("given", Path(p).expanduser()) for p in paths]
    if remembered:
        sources += [("remembered", p) for p in remembered_paths()]
    if environment:
        sources += [("environment", p) for p in _environment_paths()]
    entries: list[ModelEntry] = []
    seen: set[Path] = set()
    for origin, root in sources:
        folders = model_folders_under(root)
        if not folders and origin == "given":
            folders = [root]  # reported as unusable below
        for folder in folders:
            key = folder.resolve()
            if key in seen:
                continue
            seen.add(key)
            entries.append(entry_for(folder, origin))
    entries = [e for e in entries if kind is None or not e.usable or e.kind == kind]
    bundled_entries = sorted((e for e in entries if e.origin == "bundled"),
                             key=lambda e: (e.name != BUNDLED_MODEL_NAME, e.name, e.version))
    return bundled_entries + [e for e in entries if e.origin != "bundled"]


def format_table(entries: Sequence[ModelEntry]) -> str:
    """A plain-text table for the terminal."""
    header = ("name", "version", "parent", "train cases", "train slices", "val Dice", "origin", "folder")
    rows = []
    for e in entries:
        if not e.usable:
            rows.append(("(unusable)", "", "", "", "", "", e.origin, f"{e.folder}: {e.problem}"))
            continue
        rows.append((e.name, e.version, e.parent or "-", "-" if e.training_cases is None else str(e.training_cases),
                     "-" if e.training_slices is None else str(e.training_slices),
                     "-" if e.validation_dice is None else f"{e.validation_dice:.4f}", e.origin, str(e.folder)))
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header) - 1)]
    lines = []
    for row in (header, *rows):
        lines.append("  ".join(v.ljust(w) for v, w in zip(row[:-1], widths)) + "  " + row[-1])
    return "\n".join(lines)
