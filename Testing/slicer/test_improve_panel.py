"""The *Improve model* section: the real .ui and module code on real MRML, stand-ins only for Qt.

``improve`` runs in a process of its own. Most tests start a fake command (``improve_fake.py``: the same
arguments, printed lines and files as ``neonatal-lung-seg improve``, no torch, held at a gate file when asked),
injected as ProcessRunner's fake loaders are; one slow test runs the real ``neonatal_lung_training.improve``
command on a tiny model through the whole Slicer path (export, improve, switch, segment) in a host that holds
the GIL between timer ticks, as Slicer does.
"""

from __future__ import annotations

import json
import os
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

import slicer_harness

slicer = slicer_harness.slicer
HERE = Path(__file__).resolve().parent
FAKES_DIR = HERE.parents[0] / "lib"
if str(FAKES_DIR) not in sys.path:
    sys.path.insert(0, str(FAKES_DIR))
import worker_fakes  # noqa: E402

TRAINING_TESTS = HERE.parents[0] / "training"
if str(TRAINING_TESTS) not in sys.path:
    sys.path.insert(0, str(TRAINING_TESTS))
from training_fixtures import chest_arrays  # noqa: E402


def chest(seed, shape=(6, 24, 24)):
    """A toy chest (training_fixtures.chest_arrays): two lungs varying with the seed; labels 1 right, 2 left."""
    return chest_arrays(seed, shape)


def training_folder(root, seeds, status="reviewed"):
    import SimpleITK as sitk

    from NeonatalLungSegLib.dataset.training_folder import add_case

    for seed in seeds:
        image, label = chest(seed)
        image, label = sitk.GetImageFromArray(image), sitk.GetImageFromArray(label)
        image.SetSpacing((1.0, 1.0, 2.0))
        label.CopyInformation(image)
        add_case(root, image, label, f"chest{seed:03d}", review_status=status, source="test",
                 description="toy chests for the Improve panel tests")
    return root


def files_under(root, skip=()):
    return sorted(str(p.relative_to(root)) for p in Path(root).rglob("*") if not any(s in p.parts for s in skip))


@pytest.fixture(scope="module")
def module():
    return slicer_harness.import_module()


@pytest.fixture
def panel(module, monkeypatch, tmp_path, tiny_model_folder):
    import qt

    from NeonatalLungSegSlicerLib.improving.improvement import Improver
    from NeonatalLungSegSlicerLib.processRunner import ProcessRunner

    scene = slicer_harness.mrml_environment()["scene"]
    old = scene.GetSingletonNode("NeonatalLungSeg", "vtkMRMLScriptedModuleNode")
    if old is not None:
        scene.RemoveNode(old)
    monkeypatch.setattr(qt.QSettings, "store", {})
    registry_file = tmp_path / "registry.json"
    monkeypatch.setenv("NEONATAL_LUNG_SEG_REGISTRY", str(registry_file))
    control = tmp_path / "fake-control"
    control.mkdir()
    monkeypatch.setenv("NEONATAL_LUNG_SEG_FAKE_IMPROVE", str(control))
    monkeypatch.setenv("NEONATAL_LUNG_SEG_FAKE_CONTROL", str(control))  # the fake segmenter's folder
    data = training_folder(tmp_path / "clinic" / "training", range(3))
    training_folder(data, [9], status="unreviewed")
    array = np.full((10, 16, 20), 20, np.int16)
    array[2:8, 4:12, 2:8] = 200
    array[2:8, 4:12, 12:18] = 200
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "improve panel volume")
    slicer.util.updateVolumeFromArray(volume, array)
    monkeypatch.setattr(slicer.util, "setSliceViewerLayers", lambda **kwargs: None)
    w = module.NeonatalLungSegWidget(types.SimpleNamespace(isEntered=True))
    w.setup()
    w.logic.runner.close()
    w.logic.runner = ProcessRunner(loader="worker_fakes:load", extraPaths=[FAKES_DIR])
    w.logic.improver = Improver(module="improve_fake", extraPaths=[HERE])
    w.ui.inputVolumeSelector.setCurrentNode(volume)
    node = w._parameterNode
    node.trainingFolder = str(data)
    node.modelFolder = str(tiny_model_folder)
    node.device = "CPU"
    node.improveMinutes = 4.0
    yield types.SimpleNamespace(widget=w, ui=w.ui, node=node, scene=scene, control=control, data=data,
                                root=tmp_path / "clinic", parent=tiny_model_folder, registry=registry_file)
    w.cleanup()


def mode(p, *words):
    (p.control / "mode").write_text(" ".join(words))


def tick(p, seconds=0.02):
    time.sleep(seconds)
    p.widget._improve.timer.fire()


def wait_for(p, what, limit=60.0):
    deadline = time.monotonic() + limit
    while not what():
        assert time.monotonic() < deadline, p.ui.improveStatusLabel.text
        tick(p)


def start(p):
    p.ui.improveStartButton.click()
    job = p.widget.logic.improveJob
    assert job is not None and job.running, p.ui.improveStatusLabel.text
    return job


def finish(p):
    (p.control / "gate").touch()
    wait_for(p, lambda: not p.widget.logic.improver.running)
    tick(p)


def registry_state():
    from NeonatalLungSegLib.models import registry

    return registry.remembered_paths(), registry.chosen_default()


def table_rows(table):
    return [[table.GetCellText(r, c) for c in range(table.GetNumberOfColumns())] for r in range(table.GetNumberOfRows())]


# --- the section ---------------------------------------------------------------------------------------------

def test_the_section_shows_the_folder_its_reviewed_cases_and_how_many_are_new(panel, tmp_path):
    ui, node = panel.ui, panel.node
    assert ui.improveCollapsibleButton.text == "Improve model" and ui.improveCollapsibleButton.collapsed
    # three reviewed subjects and one unreviewed case; the tiny model's lineage saw none of them
    assert ui.improveFolderLabel.text == f"3 reviewed case(s) in {panel.data}; 3 new since tiny-test-model 0.0.1."
    assert ui.improveStartButton.enabled and not ui.improveCancelButton.enabled
    assert not ui.improveUseNewButton.enabled and not ui.improveProgressBar.visible
    # a model whose lineage (itself, then its parent through improvement.json) saw chest000 and chest001
    import shutil

    grand, child = tmp_path / "grand", tmp_path / "child"
    for folder, version, split in ((grand, "0.1.0", {"train": ["chest000"]}), (child, "0.2.0", {"test": ["chest001"]})):
        shutil.copytree(panel.parent, folder)
        config = json.loads((folder / "model.json").read_text(encoding="utf-8"))
        config.update(version=version, training={"split_subjects": split})
        (folder / "model.json").write_text(json.dumps(config))
    (child / "improvement.json").write_text(json.dumps({"parent": {"folder": str(grand)}, "decision": {}}))
    node.modelFolder = str(child)
    assert ui.improveFolderLabel.text == f"3 reviewed case(s) in {panel.data}; 1 new since tiny-test-model 0.2.0."
    node.trainingFolder = ""
    assert ui.improveFolderLabel.text == "Choose the training folder (a full path) in Export for retraining."


def test_the_time_budget_is_bound_and_defaults_to_improves_own(panel):
    from neonatal_lung_training.improve.run import ImproveSettings

    from NeonatalLungSegSlicerLib.parameters import NeonatalLungSegParameterNode

    fresh = NeonatalLungSegParameterNode(slicer.vtkMRMLScriptedModuleNode())
    assert fresh.improveMinutes == ImproveSettings().minutes  # the module passes improve's measured default
    panel.ui.improveMinutesSpinBox.value = 7.5
    assert panel.node.improveMinutes == 7.5
    panel.node.improveMinutes = 3.0
    assert panel.ui.improveMinutesSpinBox.value == 3.0 and panel.ui.improveMinutesSpinBox.minimum == 0.1


def test_improve_runs_in_its_own_process_with_progress_then_the_table_and_one_click_switches(panel):
    from NeonatalLungSegLib.models import registry

    ui, node, w = panel.ui, panel.node, panel.widget
    mode(panel, "gate")
    job = start(panel)
    assert job.pid != os.getpid() and os.getpgid(job.pid) == job.pid  # its own process group (Cancel kills it)
    assert ui.improveCancelButton.enabled and not ui.improveStartButton.enabled and ui.improveProgressBar.visible
    wait_for(panel, lambda: (panel.control / "waiting").exists())
    tick(panel)
    assert ui.improveStatusLabel.text == "Epoch 3, validation Dice 0.850, about 1.0 min left"
    assert 60 <= ui.improveProgressBar.value <= 70  # 3 of 4 budget minutes, on the 90 % the budget fills
    args = json.loads((panel.control / "args.json").read_text(encoding="utf-8"))
    output = Path(args[args.index("-o") + 1])
    assert args[0] == str(panel.data) and args[args.index("--model") + 1] == str(panel.parent)
    assert args[args.index("--minutes") + 1] == "4" and args[args.index("--device") + 1] == "cpu"
    assert output.parent == panel.root / "training-models" and output.name.startswith("tiny-test-model-improved-")
    finish(panel)
    assert ui.improveStatusLabel.text == f"Done: {output.name} (a candidate)."
    assert not ui.improveProgressBar.visible and not w._improve.timer.isActive()
    rows = table_rows(ui.improveTableView.tableNode)
    assert [r[0] for r in rows] == ["the held-out corrected cases", "synthetic neonatal MRI, held-out anatomy family",
                                    "domain-randomised chest MRI, held-out shape family"]
    assert rows[0][1:] == ["1", "0.05", "0.93", "0.88"] and rows[2][4] == "-0.2"
    assert ui.improveTableView.tableNode.GetScene() is panel.scene
    assert ui.improveDecisionLabel.text.startswith("Kept as a candidate: the parent stays the default. ")
    assert "Forgot part of domain-randomised" in ui.improveDecisionLabel.text
    labels = [ui.modelComboBox.itemText(i) for i in range(ui.modelComboBox.count)]
    assert "tiny-test-model 0.1.0" in labels  # improve registered it; the selector lists it
    assert node.modelFolder == str(panel.parent) and registry.chosen_default() is None  # a candidate
    assert ui.improveUseNewButton.enabled and ui.improveUseParentButton.enabled
    ui.improveUseNewButton.click()  # one click to the new model: the default here and for the command line
    assert registry.chosen_default() == output.resolve() and Path(node.modelFolder) == output
    assert ui.modelComboBox.itemText(ui.modelComboBox.currentIndex) == "tiny-test-model 0.1.0"
    assert "tiny-test-model 0.1.0" in ui.modelInfoLabel.text
    assert ui.improveFolderLabel.text.endswith("0 new since tiny-test-model 0.1.0.")  # it has seen them all
    ui.improveUseParentButton.click()  # and one click back
    assert registry.chosen_default() == panel.parent.resolve() and node.modelFolder == str(panel.parent)
    assert ui.modelComboBox.itemText(ui.modelComboBox.currentIndex) == "tiny-test-model 0.0.1"
    assert ui.improveStatusLabel.text.startswith("Now using the parent model")


def test_a_promoted_model_is_selected_and_back_to_a_bundled_parent_clears_the_choice(panel, monkeypatch):
    from NeonatalLungSegLib.models import registry

    ui, node = panel.ui, panel.node
    mode(panel, "promote")
    start(panel)
    wait_for(panel, lambda: not panel.widget.logic.improver.running)
    tick(panel)
    outcome = panel.widget.logic.improveOutcome
    assert outcome.promoted and ui.improveDecisionLabel.text.startswith("Promoted: the new model is now the default.")
    assert registry.chosen_default() == outcome.folder.resolve() and Path(node.modelFolder) == outcome.folder
    assert ui.modelComboBox.itemData(ui.modelComboBox.currentIndex) == str(outcome.folder)
    assert ui.improveStatusLabel.text == f"Done: {outcome.folder.name} (the new default)."
    # the parent here plays the bundled model: going back to it removes the choice (the bundled one is the default)
    monkeypatch.setattr(registry, "bundled_model_folder", lambda: panel.parent)
    ui.improveUseParentButton.click()
    assert registry.chosen_default() is None and node.modelFolder == str(panel.parent)


def test_cancel_mid_training_kills_the_tree_within_one_poll_and_leaves_everything_as_it_was(panel):
    ui, w = panel.ui, panel.widget
    mode(panel, "gate", "register-early")
    before_files = files_under(panel.root)
    before_registry = registry_state()
    job = start(panel)
    wait_for(panel, lambda: (panel.control / "waiting").exists())
    tick(panel)
    assert job.output.is_dir() and (job.output.parent / f"{job.output.name}.run").is_dir()  # half-written
    assert job.output.resolve() in registry_state()[0]
    grandchild = int((panel.control / "grandchild.pid").read_text(encoding="utf-8"))
    ui.improveCancelButton.click()
    assert ui.improveStatusLabel.text == "Cancelling..." and not ui.improveCancelButton.enabled
    assert not worker_fakes.pid_alive(job.pid)  # killed by the click
    w._improve.timer.fire()  # one poll
    assert ui.improveStatusLabel.text == ("Cancelled: nothing was changed (the registry and the folders are as "
                                          "they were).")
    assert not w._improve.timer.isActive() and not ui.improveProgressBar.visible
    deadline = time.monotonic() + 2
    while worker_fakes.pid_alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not worker_fakes.pid_alive(grandchild)
    assert files_under(panel.root) == before_files  # no model folder, no staging, no models folder
    assert registry_state() == before_registry
    assert ui.improveStartButton.enabled and not ui.improveUseNewButton.enabled
    assert ui.improveTableView.tableNode is None


@pytest.mark.parametrize("problem", ["missing-folder", "not-a-training-folder", "no-reviewed-cases", "exit-2",
                                     "no-python"])
def test_bad_input_is_one_error_line_and_nothing_changes(panel, tmp_path, problem):
    ui, node = panel.ui, panel.node
    if problem == "missing-folder":
        node.trainingFolder = str(tmp_path / "nothing")
    elif problem == "not-a-training-folder":
        (tmp_path / "empty").mkdir()
        node.trainingFolder = str(tmp_path / "empty")
    elif problem == "no-reviewed-cases":
        node.trainingFolder = str(training_folder(tmp_path / "unreviewed", [5, 6], status="unreviewed"))
    elif problem == "no-python":
        panel.widget.logic.improver.python = str(tmp_path / "no-such-python")
    else:
        mode(panel, "fail")  # the process exits with status 2 after its staging folder exists
    before_files, before_registry = files_under(tmp_path, skip=("fake-control",)), registry_state()
    ui.improveStartButton.click()
    if problem == "exit-2":
        wait_for(panel, lambda: not panel.widget.logic.improver.running)
        tick(panel)
    expected = {"missing-folder": f"error: {tmp_path / 'nothing'}: no such folder yet (Export corrected cases "
                                  "into it first).",
                "not-a-training-folder": f"error: {tmp_path / 'empty'}: not a training folder",
                "no-reviewed-cases": f"error: {tmp_path / 'unreviewed'}: no reviewed cases",
                "exit-2": "error: ",
                "no-python": f"error: could not start {tmp_path / 'no-such-python'}: No such file"}[problem]
    assert ui.improveStatusLabel.text.startswith(expected), ui.improveStatusLabel.text
    if problem == "exit-2":
        assert ui.improveStatusLabel.text.endswith(".run: No space left on device")
    assert len(ui.improveStatusLabel.text.splitlines()) == 1
    assert files_under(tmp_path, skip=("fake-control",)) == before_files and registry_state() == before_registry
    assert ui.improveStartButton.enabled and not ui.improveCancelButton.enabled and not ui.improveProgressBar.visible
    assert ui.improveTableView.tableNode is None and ui.improveDecisionLabel.text == ""


def test_segment_runs_while_improve_trains_and_the_run_outlives_the_panel(panel):
    ui, w = panel.ui, panel.widget
    mode(panel, "gate")
    w.enter()
    job = start(panel)
    wait_for(panel, lambda: (panel.control / "waiting").exists())
    assert ui.segmentButton.enabled  # a different process: Segment is not blocked
    ui.segmentButton.click()
    deadline = time.monotonic() + 60
    while w._job is not None:
        assert time.monotonic() < deadline, ui.statusLabel.text
        time.sleep(0.02)
        w._timer.fire()
    assert ui.statusLabel.text.startswith("Done: right") and job.running and worker_fakes.pid_alive(job.pid)
    assert w.logic.runner.workerPid != job.pid
    ui.improveCollapsibleButton.collapsed = True  # the section closed, then another module shown
    w.exit()
    finish(panel)  # the panel's timer keeps polling the Logic's run
    assert w.logic.improveOutcome is not None and ui.improveStatusLabel.text.startswith("Done: ")
    w.enter()
    assert ui.improveUseNewButton.enabled and ui.improveTableView.tableNode is w.logic.improveOutcome.table
    w.exit()


def test_cleanup_cancels_a_running_improvement_and_removes_what_it_wrote(panel):
    mode(panel, "gate")
    before = files_under(panel.root)
    job = start(panel)
    wait_for(panel, lambda: (panel.control / "waiting").exists())
    panel.widget.cleanup()  # module reload or application exit
    assert not worker_fakes.pid_alive(job.pid) and job.cancelled
    assert files_under(panel.root) == before and not panel.widget._improve.timer.isActive()


def test_progress_and_folder_names_from_the_library():
    from NeonatalLungSegLib.worker.improve_process import ImproveProgress, new_model_folder, safe_name

    progress = ImproveProgress(5.0)
    progress.take("making the rehearsal and anchor cases (synthetic, from fixed seeds)...")
    assert progress.describe().startswith("Preparing: making the rehearsal") and progress.fraction == 0
    progress.take("epoch  12  loss 0.3000  val loss 0.3100  val Dice 0.9123  IoU 0.8400  lr 3.0e-04  2.5 min  *")
    assert (progress.epoch, progress.val_dice, progress.minutes_left) == (12, 0.9123, 2.5)
    assert progress.describe() == "Epoch 12, validation Dice 0.912, about 2.5 min left" and progress.fraction == 0.45
    progress.take("epoch  13  loss 0.3000  val loss nan  val Dice nan  IoU nan  lr 3.0e-04  6.0 min")
    assert progress.val_dice is None and progress.minutes_left == 0 and progress.fraction == 0.9
    progress.take("early stop: time limit of 5.0 min")
    assert progress.stage == "scoring" and progress.fraction == 0.95
    assert safe_name("../a b/..c") == "a-b-..c" and safe_name("///") == "model"
    root = Path("/nonexistent/clinic/training")
    folder = new_model_folder(root, "neonatal lung/unet", now=0)
    assert folder.parent == Path("/nonexistent/clinic/training-models")
    assert folder.name.startswith("neonatal-lung-unet-improved-19") or folder.name.startswith("neonatal-lung-unet-")


# --- the real command, end to end ------------------------------------------------------------------------------

@pytest.mark.slow
def test_export_improve_switch_and_segment_through_the_real_command_in_a_gil_holding_host(panel, tmp_path,
                                                                                           monkeypatch):
    """Segment three toy chests with the tiny model (real worker), correct them (the reference painted into the
    segments), export, improve with the real ``neonatal_lung_training.improve.command`` (0.2 min, generated
    rehearsal and anchors), switch to the new model and segment with it; the timer slots never block."""
    import gil_host

    from NeonatalLungSegLib.models import registry
    from NeonatalLungSegSlicerLib import mrmlNodes
    from NeonatalLungSegSlicerLib.improving.improvement import Improver
    from NeonatalLungSegSlicerLib.processRunner import ProcessRunner

    ui, node, w, scene = panel.ui, panel.node, panel.widget, panel.scene
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the 2-core test machine: leave a core to the GIL host
    w.logic.runner.close()
    w.logic.runner = ProcessRunner()  # the real worker and engine
    w.logic.improver = Improver(int8=False)  # the real improve command (the tiny parent has no int8 network)
    exported = tmp_path / "exported" / "training"
    node.trainingFolder, node.reviewer = str(exported), "Dr Improve"
    slots = []

    statuses = []

    def fire(timer):
        began = time.perf_counter()
        timer.fire()
        slots.append(time.perf_counter() - began)
        statuses.append(ui.improveStatusLabel.text)

    def segment(volume, ticks=900):
        ui.inputVolumeSelector.setCurrentNode(volume)
        ui.segmentButton.click()
        return gil_host.run_ticks(lambda: fire(w._timer), lambda: w._job is None, ticks,
                                  state=lambda: ui.statusLabel.text)

    volumes = []
    for seed in range(3):
        image, label = chest(100 + seed)
        volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", f"toy chest {seed}")
        slicer.util.updateVolumeFromArray(volume, image)
        volume.SetSpacing(1.0, 1.0, 2.0)
        volumes.append(volume)
        segment(volume)
        assert ui.statusLabel.text.startswith("Done:"), ui.statusLabel.text
        segmentation = node.outputSegmentation
        for value, name in ((1, mrmlNodes.RIGHT_LUNG), (2, mrmlNodes.LEFT_LUNG)):  # the reviewer's correction
            segmentId = segmentation.GetSegmentation().GetSegmentIdBySegmentName(name)
            slicer.util.updateSegmentBinaryLabelmapFromArray((label == value).astype(np.uint8), segmentation,
                                                             segmentId, volume)
        ui.exportButton.click()
        assert ui.exportStatusLabel.text.startswith("Exported vol-"), ui.exportStatusLabel.text
    assert ui.improveFolderLabel.text == f"3 reviewed case(s) in {exported}; 3 new since tiny-test-model 0.0.1."

    node.improveMinutes = 0.2
    job = start(panel)
    segment(volumes[0])  # Segment while improve trains: a different process
    assert ui.statusLabel.text.startswith("Done:") and job.running
    ticks = gil_host.run_ticks(lambda: fire(w._improve.timer), lambda: not w.logic.improver.running, 3000,
                               state=lambda: ui.improveStatusLabel.text)
    fire(w._improve.timer)
    print(f"\nGIL-holding host: the real improve took {ticks} ticks; longest timer slot {max(slots) * 1000:.0f} ms")
    assert ui.improveStatusLabel.text.startswith("Done: "), (ui.improveStatusLabel.text, list(job.lines)[-5:])
    assert max(slots) < 1.0  # polling the run never blocks the main thread
    assert job.progress.epoch >= 1 and any(t.startswith("Epoch ") and t.endswith(" min left") for t in statuses)
    assert any(t.startswith("Preparing: making the rehearsal") for t in statuses)
    outcome = w.logic.improveOutcome
    rows = table_rows(ui.improveTableView.tableNode)
    decided = json.loads((outcome.folder / "improvement.json").read_text(encoding="utf-8"))["decision"]
    anchors, gated = decided["anchors"], decided["gated_anchors"]
    assert rows[0][0] == "the held-out corrected cases" and rows[0][1] == "1"
    assert len(rows) == 1 + len(anchors) + len(gated) and len(gated) == len(anchors)  # gated by default
    assert rows[-1][0].endswith("(with the domain gate)") and rows[1][0].endswith("(fine-tuned network alone)")
    assert {a["key"] for a in anchors} == {"synthetic-neonatal", "synthetic-randomised", "synthetic-slices",
                                           "synthetic-dense"}  # the fixed seeds give dense lung slabs
    assert ui.improveDecisionLabel.text.startswith(("Promoted", "Kept as a candidate"))
    assert outcome.parent.resolve() == panel.parent.resolve() and outcome.folder.parent == exported.with_name(
        "training-models")
    ui.improveUseNewButton.click()
    assert registry.chosen_default() == outcome.folder.resolve() and Path(node.modelFolder) == outcome.folder
    segment(volumes[1])  # with the new model, through the worker
    assert ui.statusLabel.text.startswith("Done:"), ui.statusLabel.text
    info = mrmlNodes.modelInfo(node.outputSegmentation)
    assert info["version"] == "0.1.0"
    # the improved folder is gated (the default): the status and the node say which of its networks segmented
    assert info["gate"]["network"] in ("fine-tuned", "parent") and " network" in ui.statusLabel.text, info
    ui.improveUseParentButton.click()
    assert registry.chosen_default() == panel.parent.resolve() and node.modelFolder == str(panel.parent)
