"""One case's descriptor outputs (NAME_descriptors.json, NAME_descriptors.csv, NAME_report.html) and the cohort
CSV, computed in full before anything is written and then written through ``AtomicOutputs`` (all or none).

``describe`` and ``segment --describe`` both come here: ``prepare_case`` takes arrays already in memory (the
scan and its labels on one grid), so ``segment`` describes the labels it has just made without reading them
back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..geometry import Geometry
from ..json_input import read_json_file
from ..volumes.volume_io import AtomicOutputs, volume_suffix
from .descriptors import csv_row, csv_text, describe_arrays
from .report import build_report

COHORT_CSV = "cohort_descriptors.csv"
MAX_SIDECAR_BYTES = 1 << 20


def output_paths(out_dir: Path, name: str) -> dict[str, Path]:
    out_dir = Path(out_dir)
    return {"json": out_dir / f"{name}_descriptors.json", "csv": out_dir / f"{name}_descriptors.csv",
            "report": out_dir / f"{name}_report.html"}


@dataclass(frozen=True)
class CaseDescription:
    name: str
    descriptors: dict
    report: str

    @property
    def row(self) -> dict:
        return csv_row(self.name, self.descriptors)


def model_from_sidecar(labels_path: Path) -> dict | None:
    """Model name and version from the volumes JSON that ``segment`` writes beside NAME_lungs.EXT, if there is
    one and it says; None otherwise (a hand-drawn mask has no model)."""
    labels_path = Path(labels_path)
    suffix = volume_suffix(labels_path)
    stem = labels_path.name[: -len(suffix)] if suffix else labels_path.name
    if not stem.endswith("_lungs"):
        return None
    sidecar = labels_path.with_name(stem[: -len("_lungs")] + "_volumes.json")
    if not sidecar.is_file():
        return None
    data = read_json_file(sidecar, MAX_SIDECAR_BYTES, "volumes JSON beside the labels")
    model = data.get("model") if isinstance(data, dict) else None
    if not isinstance(model, dict):
        return None
    found = {k: model[k] for k in ("name", "version") if isinstance(model.get(k), str)}
    return found or None


def prepare_case(name: str, scan: np.ndarray, labels: np.ndarray, geometry: Geometry, *,
                 weight_kg: float | None = None, model: dict | None = None, scan_source: str = "scan",
                 labels_source: str = "labels") -> CaseDescription:
    """Descriptors and report of one case, nothing written; InputError for input that cannot be described."""
    descriptors = describe_arrays(scan, labels, geometry, weight_kg=weight_kg, source=scan_source,
                                  labels_source=labels_source)
    descriptors = {"case": name, "scan": scan_source, "labels": labels_source, "model": model, **descriptors}
    report = build_report(name, descriptors, scan, labels, geometry, model=model,
                          sources={"scan": scan_source, "labels": labels_source})
    return CaseDescription(name, descriptors, report)


def write_case(outputs: AtomicOutputs, out_dir: Path, case: CaseDescription) -> dict[str, Path]:
    paths = output_paths(out_dir, case.name)
    outputs.write_json(case.descriptors, paths["json"])
    outputs.write_text(csv_text([case.row]), paths["csv"])
    outputs.write_text(case.report, paths["report"])
    return paths


def write_cohort(outputs: AtomicOutputs, out_dir: Path, rows: list[dict]) -> Path:
    path = Path(out_dir) / COHORT_CSV
    outputs.write_text(csv_text(rows), path)
    return path
