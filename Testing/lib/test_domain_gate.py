"""The domain gate of an improved model folder: each scan to the network its nearest reference case names, the
parent's output unchanged for scans unlike the corrected cases, and every gate file checked like the weights.

Real tiny smp U-Nets (random weights) and real folder files; the references are the fine-tuned network's own
encoder features of two kinds of toy scan, so the routing is the engine's, not a stand-in's."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_config
from NeonatalLungSegLib.errors import ModelFolderError
from NeonatalLungSegLib.geometry import Geometry
from NeonatalLungSegLib.inference.acceleration import describe_inference
from NeonatalLungSegLib.inference.engine import Segmenter
from NeonatalLungSegLib.inference.gate.routing import route, scan_features
from NeonatalLungSegLib.models.gate_files import (FALLBACK_FOLDER, GATE_FILE, GateReferences, gate_record,
                                                  write_references)
from NeonatalLungSegLib.models.model_folder import CONFIG_NAME, read_config, sha256_of, write_model_folder
from NeonatalLungSegLib.models.network import build_checked, build_network

GEOMETRY = Geometry((48, 40, 6), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()))


def scan(kind: str, seed: int) -> np.ndarray:
    """'clinic': bright lungs in a dark body (as ventilation MRI); 'known': dark lungs in a bright body."""
    rng = np.random.default_rng(seed)
    k, j, i = np.mgrid[0:6, 0:40, 0:48]
    lungs = ((i - 14) ** 2 / 64 + (j - 20) ** 2 / 144 < 1) | ((i - 34) ** 2 / 64 + (j - 20) ** 2 / 144 < 1)
    body = (i - 24) ** 2 / 500 + (j - 20) ** 2 / 300 < 1
    image = np.where(body, 300.0, 10.0) if kind == "known" else np.where(body, 40.0, 5.0)
    image = np.where(lungs, 40.0 if kind == "known" else 600.0, image)
    return (image + rng.normal(0, 8, image.shape)).astype(np.float32)


def features(folder: Path, kind: str, seeds) -> np.ndarray:
    """The gate's features of toy scans, by ``folder``'s own encoder (a gated folder's fine-tuned network)."""
    config = read_config(folder)
    encoder = build_checked(folder, config).eval().encoder
    return np.array([scan_features(encoder, scan(kind, s), GEOMETRY, config.input) for s in seeds], np.float32)


def gated_folder(root: Path, parent: Path, seed: int = 3) -> tuple[Path, Path]:
    """(gated folder, the same fine-tuned network alone) over ``parent``, references of both kinds of scan."""
    torch.manual_seed(seed)
    config = tiny_config()
    state = build_network(config).state_dict()
    alone = root / "alone"
    write_model_folder(alone, config, state, dtype="float32")
    references = GateReferences(features(alone, "clinic", range(3)), features(alone, "known", range(3)))
    staging = root / "refs.safetensors"
    write_references(staging, references)
    record = gate_record(sha256_of(staging), read_config(parent).weights_sha256, 16, references)
    gated = root / "gated"
    write_model_folder(gated, replace(config, gate=record), state, dtype="float32")
    shutil.move(staging, gated / GATE_FILE)
    shutil.copytree(parent, gated / FALLBACK_FOLDER)
    return gated, alone


@pytest.fixture(scope="module")
def folders(tiny_model_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return gated_folder(tmp_path_factory.mktemp("gate"), tiny_model_folder)


def test_each_scan_goes_to_the_network_its_nearest_reference_names(folders, tiny_model_folder) -> None:
    gated_path, alone_path = folders
    gated = Segmenter.load(gated_path, device="cpu", precision="fp32")
    alone = Segmenter.load(alone_path, device="cpu", precision="fp32")
    parent = Segmenter.load(tiny_model_folder, device="cpu", precision="fp32")
    for kind, expected, twin in (("clinic", "fine-tuned", alone), ("known", "parent", parent)):
        array = scan(kind, 10)  # not one of the reference scans
        result = gated.segment_array(array, GEOMETRY, with_probabilities=True)
        gate = result.inference["gate"]
        assert gate["network"] == expected, gate
        assert (gate["corrected_similarity"] > gate["rehearsal_similarity"]) is (expected == "fine-tuned")
        same = twin.segment_array(array, GEOMETRY, with_probabilities=True)
        np.testing.assert_array_equal(result.labels, same.labels)  # exactly what that network gives alone
        np.testing.assert_array_equal(result.probabilities, same.probabilities)
        np.testing.assert_array_equal(gated.predict(array, GEOMETRY)[0], twin.predict(array, GEOMETRY)[0])
    text = describe_inference(result.inference)
    assert "parent network (tiny-test-model 0.0.1): scan unlike the corrected cases" in text
    assert "gate" not in alone.segment_array(scan("clinic", 10), GEOMETRY).inference  # an ungated folder


def test_the_rule_is_the_nearer_centroid_and_a_tie_keeps_the_parent() -> None:
    references = GateReferences(np.array([[1.0, 0.0], [0.8, 0.6]], np.float32), np.array([[0.0, 1.0]], np.float32))
    # nearest to a corrected case (0.8, 0.6), but nearer to the rehearsal centroid than to the corrected one
    between = np.array([0.5, 0.866]) / np.linalg.norm([0.5, 0.866])
    decision = route(between, references)
    assert decision.network == "parent" and decision.rehearsal_similarity > decision.corrected_similarity
    assert route(np.array([0.8, 0.6]), references).network == "fine-tuned"
    tie = GateReferences(np.array([[1.0, 0.0]], np.float32), np.array([[0.0, 1.0]], np.float32))
    assert route(np.array([0.5, 0.5]) / np.linalg.norm([0.5, 0.5]), tie).network == "parent"
    with pytest.raises(ValueError):
        route(np.ones(3), references)


def _rewrite_gate(folder: Path, **changes) -> None:
    path = folder / CONFIG_NAME
    data = json.loads(path.read_text(encoding="utf-8"))
    data["gate"].update(changes)
    path.write_text(json.dumps(data), encoding="utf-8")


def _damage(problem: str, folder: Path, other: Path) -> str:
    """Damage ``folder``'s gate one way; returns what the error line must say."""
    if problem == "references altered":
        with open(folder / GATE_FILE, "r+b") as handle:
            handle.seek(-4, 2)
            handle.write(b"\x00\x00\x80\x7f")
        return "gate.safetensors: checksum mismatch"
    if problem == "references missing":
        (folder / GATE_FILE).unlink()
        return "missing domain-gate references"
    if problem == "fallback swapped":  # another model put where the parent belongs
        shutil.rmtree(folder / FALLBACK_FOLDER)
        shutil.copytree(other, folder / FALLBACK_FOLDER)
        return "not the parent model.json's gate names"
    if problem == "fallback gated":
        shutil.rmtree(folder / FALLBACK_FOLDER)
        shutil.copytree(folder, folder.parent / "copy")
        shutil.move(folder.parent / "copy", folder / FALLBACK_FOLDER)
        return "must not be gated itself"
    if problem == "path in the record":
        _rewrite_gate(folder, fallback="../elsewhere")
        return "gate.file and gate.fallback must be"
    if problem == "unknown rule":
        _rewrite_gate(folder, rule="always_fine_tuned")
        return "gate.rule and gate.features must be"
    if problem == "counts disagree":
        _rewrite_gate(folder, adapted_cases=2)
        return "the references do not match model.json's gate record"
    assert problem == "features of another encoder"
    references = GateReferences(np.ones((3, 7), np.float32), np.ones((3, 7), np.float32))
    write_references(folder / GATE_FILE, references)
    _rewrite_gate(folder, sha256=sha256_of(folder / GATE_FILE))
    return "do not fit the network's encoder"


@pytest.mark.parametrize("problem", ["references altered", "references missing", "fallback swapped",
                                     "fallback gated", "path in the record", "unknown rule", "counts disagree",
                                     "features of another encoder"])
def test_a_damaged_gate_is_refused_in_one_line(problem, folders, tmp_path, capsys) -> None:
    from NeonatalLungSegLib.cli.main import main
    from NeonatalLungSegLib.geometry import array_to_image
    import SimpleITK as sitk

    folder = tmp_path / "gated"
    shutil.copytree(folders[0], folder)
    expected = _damage(problem, folder, folders[1])
    with pytest.raises(ModelFolderError, match=expected.replace("(", r"\(").replace(".", r"\.")):
        Segmenter.load(folder, device="cpu")
    source = tmp_path / "scan.nii.gz"
    sitk.WriteImage(array_to_image(scan("clinic", 10), GEOMETRY), str(source))
    code = main(["segment", str(source), "-o", str(tmp_path / "out"), "--model", str(folder), "--device", "cpu"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and expected in err[0], err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_segment_says_which_network_ran(folders, tmp_path, capsys) -> None:
    from NeonatalLungSegLib.cli.main import main
    from NeonatalLungSegLib.geometry import array_to_image
    import SimpleITK as sitk

    source = tmp_path / "known.nii.gz"
    sitk.WriteImage(array_to_image(scan("known", 11), GEOMETRY), str(source))
    assert main(["segment", str(source), "-o", str(tmp_path / "out"), "--model", str(folders[0]),
                 "--device", "cpu"]) == 0
    record = json.loads((tmp_path / "out" / "known_volumes.json").read_text(encoding="utf-8"))
    assert record["inference"]["gate"]["network"] == "parent"
    assert "parent network" in capsys.readouterr().out


def test_the_worker_says_which_network_ran(folders, tmp_path) -> None:
    """Through the real worker process (the Slicer module's path): the result's model_info carries the route,
    and the status line the module shows names the network."""
    from NeonatalLungSegLib.worker.client import WorkerClient

    client = WorkerClient(session_dir=tmp_path / "session")
    try:
        job = client.submit(scan("clinic", 12), GEOMETRY, folders[0], device="cpu")
        assert job.wait(120), job.status
        result = job.result()
    finally:
        client.close(timeout=5)
    assert result.model["gate"]["network"] == "fine-tuned", result.model
    assert "fine-tuned network: scan like the corrected cases" in describe_inference(result.model)


def test_the_model_list_says_a_folder_is_gated_and_what_it_falls_back_to(folders) -> None:
    from NeonatalLungSegLib.models.registry import entry_for

    gated, alone = entry_for(folders[0]), entry_for(folders[1])
    assert gated.fallback == "tiny-test-model 0.0.1" and gated.to_dict()["fallback"] == gated.fallback
    assert "gated: scans unlike its corrected cases get tiny-test-model 0.0.1" in gated.describe()
    assert alone.fallback is None and "gated" not in alone.describe()
