"""Label provenance under concurrency: exports from another process while training reads the folder.

The exporter process (``EXPORTER`` below) appends cases through the module's export path
(``NeonatalLungSegLib.dataset.export.export_case``) in a loop and keeps a copy of every manifest version it produced,
keyed by its SHA-256. A reader must always get a hash and a case list from the SAME manifest version, and a
training run's recorded hash must name exactly the snapshot whose cases it trained on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from NeonatalLungSegLib.cli.main import main
from NeonatalLungSegLib.models.model_folder import read_config
from NeonatalLungSegLib.dataset.training_folder import read_training_folder
from training_fixtures import TINY_TRAIN_ARGS, toy_training_folder

REPO = Path(__file__).resolve().parents[2]

EXPORTER = r"""
import hashlib, sys, time
from pathlib import Path
import numpy as np
from NeonatalLungSegLib.dataset.export import export_case
from NeonatalLungSegLib.geometry import image_to_array
from training_fixtures import toy_case

root, snapshots, stop = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
snapshots.mkdir(parents=True, exist_ok=True)
def snapshot():
    raw = (root / "manifest.json").read_bytes()
    (snapshots / (hashlib.sha256(raw).hexdigest() + ".json")).write_bytes(raw)
snapshot()
seed = 100
while not stop.exists() and seed < 400:
    image, label = toy_case(seed)
    array, geometry = image_to_array(image)
    labels, _ = image_to_array(label)
    export_case(root, array, labels, geometry, reviewer="Dr Concurrent", model={"name": "m", "version": "1.2.3"})
    snapshot()
    seed += 1
"""


def _env() -> dict[str, str]:
    paths = [str(REPO / "NeonatalLungSeg"), str(REPO / "Training"), str(REPO / "Testing" / "training"),
             os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p), "OMP_NUM_THREADS": "1"}


def _start_exporter(root: Path, tmp_path: Path) -> tuple[subprocess.Popen, Path, Path]:
    snapshots, stop = tmp_path / "snapshots", tmp_path / "stop"
    process = subprocess.Popen([sys.executable, "-c", EXPORTER, str(root), str(snapshots), str(stop)], env=_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while len(list(snapshots.glob("*.json"))) < 2 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)  # wait until exports are really under way
    assert process.poll() is None, process.stdout.read().decode()[-2000:]
    return process, snapshots, stop


def _stop(process: subprocess.Popen, stop: Path) -> None:
    stop.touch()
    process.wait(120)
    assert process.returncode == 0, process.stdout.read().decode()[-2000:]


def _snapshot_cases(snapshots: Path) -> dict[str, list[str]]:
    return {p.stem: [c["case_id"] for c in json.loads(p.read_text(encoding="utf-8"))["cases"]]
            for p in snapshots.glob("*.json")}


def test_every_read_gets_hash_and_cases_of_one_manifest_version(tmp_path: Path) -> None:
    root = toy_training_folder(tmp_path / "data", subjects=2)
    process, snapshots, stop = _start_exporter(root, tmp_path)
    reads = []
    try:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            folder = read_training_folder(root)
            reads.append((folder.manifest_sha256, [c.case_id for c in folder.cases]))
    finally:
        _stop(process, stop)
    versions = _snapshot_cases(snapshots)
    assert len(versions) >= 4 and len({h for h, _ in reads}) >= 2  # the reads really overlapped exports
    for digest, cases in reads:
        assert versions.get(digest) == cases


def test_a_manifest_replaced_right_after_it_was_read_does_not_mix_versions(tmp_path: Path, monkeypatch) -> None:
    """The race made certain: an export replaces the manifest the moment a reader has read it."""
    import hashlib

    from NeonatalLungSegLib.dataset.training_folder import add_case
    from training_fixtures import toy_case

    root = toy_training_folder(tmp_path / "data", subjects=2)
    before = (root / "manifest.json").read_bytes()
    original, fired = Path.read_bytes, []

    def read_then_export(self: Path) -> bytes:
        data = original(self)
        if self.name == "manifest.json" and not fired:
            fired.append(True)
            add_case(root, *toy_case(50), "late-export", source="test")
        return data

    monkeypatch.setattr(Path, "read_bytes", read_then_export)
    folder = read_training_folder(root)
    assert fired and len(json.loads(original(root / "manifest.json"))["cases"]) == 3
    assert folder.manifest_sha256 == hashlib.sha256(before).hexdigest()
    assert [c.subject for c in folder.cases] == ["toy00", "toy01"]  # the cases of the version it hashed


@pytest.mark.slow
def test_training_records_the_manifest_snapshot_it_trained_on_while_exports_run(tmp_path: Path) -> None:
    root = toy_training_folder(tmp_path / "data", subjects=4)
    process, snapshots, stop = _start_exporter(root, tmp_path)
    model, run = tmp_path / "model", tmp_path / "run"
    try:
        assert main(["train", "--data", str(root), "--output", str(model), "--run-dir", str(run),
                     *TINY_TRAIN_ARGS, "--epochs", "1", "--steps-per-epoch", "2", "--split-fractions",
                     "0.6", "0.4", "0"]) == 0
        during = len(list(snapshots.glob("*.json")))
    finally:
        _stop(process, stop)
    recorded = read_config(model).training
    versions = _snapshot_cases(snapshots)
    assert recorded["training_folder_manifest_sha256"] in versions, "the hash names no manifest that existed"
    trained_on = json.loads((snapshots / f"{recorded['training_folder_manifest_sha256']}.json")
                            .read_text(encoding="utf-8"))
    split = json.loads((run / "split.json").read_text(encoding="utf-8"))
    assert {c["subject"] for c in trained_on["cases"]} == set(split["train"]) | set(split["val"]) | \
        set(split.get("test", []))
    train_cases = [c for c in trained_on["cases"] if c["subject"] in set(split["train"])]
    assert recorded["training_cases"] == len(train_cases)
    final = read_training_folder(root)
    assert len(final.cases) > len(trained_on["cases"]) and during >= 2  # exports went on around the run
    assert final.manifest_sha256 != recorded["training_folder_manifest_sha256"]
    sidecar = final.read_sidecar(final.cases[-1])
    assert sidecar["model"]["version"] == "1.2.3" and sidecar["review_status"] == "reviewed"
