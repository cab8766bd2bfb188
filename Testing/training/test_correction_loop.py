"""The correction loop at toy scale, end to end: real CT slices -> the Slicer module's export path on real
MRML -> fine-tune (train --init-model) -> a new model folder with lineage -> the registry lists it -> the
module segments with it. The same code as Training/scripts/correction_loop.py, with a tiny model."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from neonatal_lung_training.loop import correction_loop as loop
from neonatal_lung_training.datasets.prepare_ct import default_source

REPO = Path(__file__).resolve().parents[2]
CT = default_source()

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not CT.is_dir(), reason=f"{CT} is absent (real data lives beside the checkout)")]


def load_script(name: str):
    path = REPO / "Training" / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"script_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def ct_subset(tmp_path_factory) -> Path:
    """The first 7 real CT slices, in the layout prepare-ct reads."""
    source = tmp_path_factory.mktemp("ct-source")
    for name in ("x_train.npy", "y_train.npy"):
        np.save(source / name, np.load(CT / name, mmap_mode="r")[:7])
    return source


def test_export_fine_tune_new_model_segment(tiny_model_folder, ct_subset, tmp_path):
    script = load_script("correction_loop")
    work = tmp_path / "work"
    domain = loop.prepare_ct_domain(work, heldout_count=3, seed=0, source=ct_subset)
    assert len(domain.pool) == 4 and len(list((work / "heldout" / "images").iterdir())) == 3
    settings = loop.LoopSettings(sizes=(1, 2), epochs=1, steps_per_epoch=2, batch_size=4, weights_dtype="float32",
                                 flip=True)
    corrector = script.SlicerCorrector(tiny_model_folder)
    results = loop.run_domain(domain, settings, corrector, work, tiny_model_folder, echo=lambda text: None)

    rows = {(r["strategy"], r["n"]): r for r in results["rows"]}
    assert set(rows) == {("uncertainty", 1), ("uncertainty", 2), ("random", 1), ("random", 2)}
    assert all(0.0 <= r["dice_mean"] <= 1.0 for r in rows.values())
    ranking = (work / "ranking.csv").read_text(encoding="utf-8").splitlines()
    assert len(ranking) == 5 and ranking[0].startswith("rank,case,benefit")
    check = results["ranking_check"]
    assert check["cases"] == 4 and check["top"] == 2 and 0 <= check["mean_error_all"] <= 1
    assert check["spearman_benefit_vs_error"] is None or -1 <= check["spearman_benefit_vs_error"] <= 1

    # Every export went through the module: model version, review status, reviewer, confidence, reference label.
    from NeonatalLungSegLib.dataset.training_folder import read_training_folder

    exports = read_training_folder(work / "uncertainty" / "exports")
    assert len(exports.cases) == 2 and all(c.review_status == "reviewed" for c in exports.cases)
    first = ranking[1].split(",")[1]
    reference = next(c for c in domain.pool if c.name == first)
    import SimpleITK as sitk

    _, label = exports.read_case(exports.cases[0])
    expected = sitk.GetArrayFromImage(sitk.ReadImage(str(reference.label))) > 0
    assert np.array_equal(sitk.GetArrayFromImage(label) > 0, expected)
    sidecar = exports.read_sidecar(exports.cases[0])
    assert sidecar["model"]["name"] == "tiny-test-model" and sidecar["model"]["version"] == "0.0.1"
    assert sidecar["source"] == "3D Slicer NeonatalLungSeg export" and sidecar["label_scheme"] == "lung"
    assert sidecar["reviewer"] == script.REVIEWER and "confidence" in sidecar["ai_confidence"]
    assert sidecar["changes_from_ai"]["dice"]["lungs"] == json.loads(
        (work / "uncertainty" / "exported.json").read_text(encoding="utf-8"))[0]["ai_dice"]

    # The new model: lineage back to the exports it saw, held-out scores from --test-data.
    from NeonatalLungSegLib.models.model_folder import read_config

    model = work / "uncertainty" / "models" / "n002"
    config = read_config(model)
    assert config.parent_version == "0.0.1" and config.training["parent"]["name"] == "tiny-test-model"
    assert config.training["training_cases"] == 2 and config.training["reviewed_only"] is True
    assert config.training["training_folder_manifest_sha256"] == exports.manifest_sha256
    assert config.validation["cases"] == 3 and rows[("uncertainty", 2)]["model"] == str(model)

    # The registry lists it with parent, data size and validation Dice; the module segments with it.
    from NeonatalLungSegLib.models import registry

    entry = next(e for e in registry.find_models([model.parent], bundled=False, remembered=False) if e.folder == model)
    assert entry.parent == "tiny-test-model 0.0.1" and entry.training_cases == 2 and entry.validation_dice is not None
    from NeonatalLungSegSlicerLib import resources

    heldout = read_training_folder(work / "heldout")
    volume = resources.loadVolumeFile(work / "heldout" / heldout.cases[0].image, corrector.scene)
    corrector.parameterNode.modelFolder = str(model)
    corrector.parameterNode.inputVolume = volume
    outputs = corrector.logic.segment(corrector.parameterNode)
    assert outputs.model["version"] == config.version and outputs.confidence is not None
    assert outputs.segmentationNode.GetSegmentation().GetNumberOfSegments() == 1  # 'Lungs': CT has no sides

    # The report: figure and table from the results.
    report = load_script("correction_loop_report")
    results_all = {"command": "test", "machine": "test", "minutes": 0, "domains": [results],
                   "settings": {**vars(settings), "sizes": list(settings.sizes)}}
    report.write_figure(results_all, tmp_path / "curve.png")
    report.write_markdown(results_all, tmp_path / "loop.md", tmp_path / "curve.png")
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"
    text = (tmp_path / "loop.md").read_text(encoding="utf-8")
    assert "| 0 (bundled model) |" in text and "| 2 |" in text and "selection" in text

    # Rerunning reuses everything (nothing retrained, nothing exported twice).
    again = loop.run_domain(domain, settings, corrector, work, tiny_model_folder, echo=lambda text: None)
    assert again["rows"] == results["rows"] and len(read_training_folder(work / "uncertainty" / "exports").cases) == 2
