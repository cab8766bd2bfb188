"""The Widget's wiring: the real .ui and module code against stand-ins for qt / ctk / qMRML widgets, on real
MRML. Segment runs in a real worker process, with a fake segmenter loaded inside it (``worker_fakes.py``:
no torch, held at a gate file) so these tests take a second and can hold a run open to test progress and
Cancel deterministically."""

from __future__ import annotations

import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

import slicer_harness

slicer = slicer_harness.slicer
FAKES_DIR = Path(__file__).resolve().parents[1] / "lib"
if str(FAKES_DIR) not in sys.path:
    sys.path.insert(0, str(FAKES_DIR))
import worker_fakes  # noqa: E402


def fakeRunner(gated=True):
    from NeonatalLungSegSlicerLib.processRunner import ProcessRunner

    return ProcessRunner(loader="worker_fakes:load_gated" if gated else "worker_fakes:load",
                         extraPaths=[FAKES_DIR])


@pytest.fixture(scope="module")
def module():
    return slicer_harness.import_module()


@pytest.fixture
def widget(module, monkeypatch, tmp_path):
    import qt

    scene = slicer_harness.mrml_environment()["scene"]
    # A fresh module state per test: no parameter node, no settings left by an earlier test.
    old = scene.GetSingletonNode("NeonatalLungSeg", "vtkMRMLScriptedModuleNode")
    if old is not None:
        scene.RemoveNode(old)
    monkeypatch.setattr(qt.QSettings, "store", {})
    monkeypatch.setenv("NEONATAL_LUNG_SEG_REGISTRY", str(tmp_path / "registry.json"))  # the CLI's registry
    array = np.full((10, 16, 20), 20, np.int16)
    array[2:8, 4:12, 2:8] = 200
    array[2:8, 4:12, 12:18] = 200
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "wiring volume")
    slicer.util.updateVolumeFromArray(volume, array)
    overlays = []
    monkeypatch.setattr(slicer.util, "setSliceViewerLayers", lambda **kwargs: overlays.append(kwargs))
    parent = types.SimpleNamespace(isEntered=True)
    control = tmp_path / "fake-control"
    control.mkdir()
    monkeypatch.setenv("NEONATAL_LUNG_SEG_FAKE_CONTROL", str(control))
    w = module.NeonatalLungSegWidget(parent)
    w.setup()
    w.logic.runner.close()
    w.logic.runner = fakeRunner()
    w.ui.inputVolumeSelector.setCurrentNode(volume)
    yield types.SimpleNamespace(widget=w, ui=w.ui, volume=volume, control=control, scene=scene,
                                overlays=overlays, node=w._parameterNode)
    w.cleanup()


def tick(fixture, seconds=0.02):
    """One event-loop turn: time passes, then the GUI timer fires."""
    time.sleep(seconds)
    fixture.widget._timer.fire()


def waitForWorker(fixture, what, limit=60.0):
    deadline = time.monotonic() + limit
    while not what():
        assert time.monotonic() < deadline, fixture.ui.statusLabel.text
        tick(fixture)


def finish(fixture):
    """Open the gate, then fire the GUI timer as the event loop would until the run is over."""
    (fixture.control / "gate").touch()
    waitForWorker(fixture, lambda: fixture.widget._job is None)


def test_every_parameter_widget_is_bound_both_ways(widget):
    ui, node = widget.ui, widget.node
    assert node.inputVolume is widget.volume  # GUI -> node
    assert ui.trainingFolderPathLineEdit.currentPath.endswith("NeonatalLungSeg-training")  # not the cwd
    ui.fillHolesCheckBox.checked = False
    ui.reviewSliceCountSpinBox.value = 7
    ui.reviewerLineEdit.text = "Dr Wiring"
    ui.deviceComboBox.currentIndex = 2
    assert (node.fillHoles, node.reviewSliceCount, node.reviewer, node.device) == (False, 7, "Dr Wiring", "CPU")
    node.splitLeftRight = False  # node -> GUI
    node.trainingFolder = str(slicer_harness.REPO / "some-folder")
    assert ui.splitCheckBox.checked is False
    assert ui.trainingFolderPathLineEdit.currentPath == str(slicer_harness.REPO / "some-folder")
    assert [ui.deviceComboBox.itemText(i) for i in range(ui.deviceComboBox.count)] == ["auto", "GPU", "CPU"]
    assert ui.reviewSliceCountSpinBox.maximum == 50


def _bundled_model_json() -> dict:
    import json

    folder = slicer_harness.REPO / "Resources" / "Models" / "neonatal-lung-unet-r50"
    return json.loads((folder / "model.json").read_text(encoding="utf-8"))


def test_model_choice_shows_version_and_validation_dice(widget):
    ui = widget.ui
    stored = _bundled_model_json()
    bundled = f"neonatal-lung-unet-r50 {stored['version']}"
    assert ui.modelComboBox.itemText(0) == f"{bundled} (bundled)"
    assert ui.modelComboBox.itemText(ui.modelComboBox.count - 1) == "Other model folder..."
    right = f"Dice right {stored['validation']['mean_dice_right_lung']:.3f}"
    assert bundled in ui.modelInfoLabel.text and right in ui.modelInfoLabel.text
    ui.modelComboBox.currentIndex = ui.modelComboBox.count - 1
    assert ui.modelFolderPathLineEdit.enabled
    ui.modelFolderPathLineEdit.currentPath = str(slicer_harness.REPO / "docs")
    assert "Not a usable model folder" in ui.modelInfoLabel.text
    ui.modelComboBox.currentIndex = 0
    assert not ui.modelFolderPathLineEdit.enabled and bundled in ui.modelInfoLabel.text
    assert ui.deviceInfoLabel.text  # where it runs, or why no GPU


def test_segment_runs_off_the_gui_thread_with_progress_then_shows_results(widget):
    ui, w = widget.ui, widget.widget
    widget.node.showProbabilities = True
    assert ui.segmentButton.enabled and not ui.cancelButton.enabled
    ui.segmentButton.click()
    assert w._job is not None and w._timer.isActive()
    assert not ui.segmentButton.enabled and ui.cancelButton.enabled and ui.progressBar.visible
    waitForWorker(widget, lambda: (widget.control / "grandchild.pid").exists())
    tick(widget)
    assert ui.progressBar.value == 0  # still gated: the GUI thread is free while the worker waits
    finish(widget)
    assert not w._timer.isActive() and w._job is None and not ui.progressBar.visible
    segmentation = ui.outputSegmentationSelector.currentNode()
    assert segmentation is widget.node.outputSegmentation and segmentation is not None
    assert ui.segmentEditorWidget.segmentationNode is segmentation
    assert ui.segmentEditorWidget.sourceVolumeNode is widget.volume
    assert ui.segmentEditorWidget.editorNode is not None
    assert ui.volumeTableView.tableNode is widget.node.volumeTable
    assert ui.statusLabel.text.startswith("Done: right")
    assert ui.reviewSlicesListWidget.count > 0 and ui.segmentButton.enabled
    assert ui.confidenceLabel.text.startswith("Model confidence ") and "estimated Dice" in ui.confidenceLabel.text
    ui.outputSegmentationSelector.setCurrentNode(None)
    assert ui.confidenceLabel.text == "" and ui.reviewSlicesListWidget.count == 0
    assert widget.overlays and widget.overlays[-1]["foreground"] is widget.node.probabilityVolume


def test_cancel_kills_the_worker_within_one_poll_and_changes_nothing(widget):
    ui, scene, w = widget.ui, widget.scene, widget.widget
    before = scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")
    ui.segmentButton.click()
    waitForWorker(widget, lambda: (widget.control / "grandchild.pid").exists())  # mid-run, in the worker
    worker = w.logic.runner.workerPid
    grandchild = int((widget.control / "grandchild.pid").read_text(encoding="utf-8"))
    ui.cancelButton.click()
    assert ui.statusLabel.text == "Cancelling..." and not ui.cancelButton.enabled
    assert not worker_fakes.pid_alive(worker)  # killed by the click, not at the next checkpoint
    w._timer.fire()  # one poll
    assert ui.statusLabel.text == "Cancelled: nothing was changed." and w._job is None
    assert not w._timer.isActive()
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == before
    deadline = time.monotonic() + 2
    while worker_fakes.pid_alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not worker_fakes.pid_alive(grandchild)
    assert ui.segmentButton.enabled
    ui.segmentButton.click()  # the next Segment starts a fresh worker
    finish(widget)
    assert w.logic.runner.workerPid not in (None, worker) and w.logic.runner.startedWorkers == 2
    assert ui.statusLabel.text.startswith("Done: right")


def test_second_segment_reuses_the_worker_and_its_loaded_model(widget):
    ui, w = widget.ui, widget.widget
    ui.segmentButton.click()
    finish(widget)
    first = w.logic.runner.workerPid
    ui.segmentButton.click()
    finish(widget)
    assert w.logic.runner.workerPid == first and w.logic.runner.startedWorkers == 1
    assert (widget.control / "loads").read_text(encoding="utf-8").split() == [str(first)]  # loaded once


def test_a_dying_worker_gives_one_clear_message(widget, monkeypatch):
    ui, w = widget.ui, widget.widget
    w.logic.runner.loader = "worker_fakes:load_dying"
    shown = []
    monkeypatch.setattr(slicer.util, "errorDisplay", lambda text, **kwargs: shown.append(text))
    ui.segmentButton.click()
    waitForWorker(widget, lambda: w._job is None)
    assert len(shown) == 1 and "SIGKILL" in shown[0] and "nothing was changed" in shown[0]
    assert ui.statusLabel.text.startswith("Failed: The segmentation process") and ui.segmentButton.enabled


def test_a_run_finishing_after_the_module_was_left_still_records_its_result(widget):
    ui, w = widget.ui, widget.widget
    w.enter()
    ui.segmentButton.click()
    w.exit()  # the user switched to another module while it runs
    finish(widget)
    assert widget.node.outputSegmentation is not None and widget.node.volumeTable is not None
    w.enter()
    assert ui.outputSegmentationSelector.currentNode() is widget.node.outputSegmentation
    w.exit()


def test_cleanup_stops_the_timer_and_the_worker(widget):
    ui, w = widget.ui, widget.widget
    ui.segmentButton.click()
    waitForWorker(widget, lambda: (widget.control / "grandchild.pid").exists())
    worker = w.logic.runner.workerPid
    w.cleanup()
    assert not w._timer.isActive() and w._job is None
    assert not worker_fakes.pid_alive(worker) and w.logic.runner.workerPid is None


def test_review_list_jumps_and_export_remembers_reviewer(widget, tmp_path, monkeypatch, module):
    ui, w = widget.ui, widget.widget
    ui.segmentButton.click()
    finish(widget)
    jumps = []
    monkeypatch.setattr(w.logic, "jumpToSlice", lambda ras: jumps.append(ras))
    ui.reviewSlicesListWidget.currentRow = 0
    assert len(jumps) == 1 and len(jumps[0]) == 3
    assert not ui.exportButton.enabled  # no reviewer yet
    ui.reviewerLineEdit.text = "Dr Wiring"
    ui.trainingFolderPathLineEdit.currentPath = str(tmp_path / "folder")
    assert ui.exportButton.enabled
    ui.exportButton.click()
    assert ui.exportStatusLabel.text.startswith("Exported vol-") \
        and "verified voxel for voxel" in ui.exportStatusLabel.text
    import qt

    assert qt.QSettings().value("NeonatalLungSeg/Reviewer") == "Dr Wiring"
    assert (tmp_path / "folder" / "manifest.json").is_file()
    ui.updateVolumesButton.click()
    assert ui.volumeTableView.tableNode is widget.node.volumeTable
    # A new session (new parameter node) starts with the remembered reviewer and folder.
    widget.scene.RemoveNode(widget.node.parameterNode)
    again = module.NeonatalLungSegWidget(types.SimpleNamespace(isEntered=True))
    again.setup()
    assert again.ui.reviewerLineEdit.text == "Dr Wiring"
    assert again.ui.trainingFolderPathLineEdit.currentPath == str(tmp_path / "folder")
    again.cleanup()


def test_module_metadata_and_sample_data_registration(module, monkeypatch):
    parent = types.SimpleNamespace()
    instance = module.NeonatalLungSeg(parent)
    assert parent.title == "Neonatal Lung Segmentation" and parent.categories == ["Segmentation"]
    assert "Not clinically validated" in parent.helpText and "authors" in parent.acknowledgementText
    signal, slot = slicer.app.connections[-1]
    assert signal == "startupCompleted()"
    registered = []
    sampleData = types.ModuleType("SampleData")
    sampleData.SampleDataLogic = types.SimpleNamespace(
        registerCustomSampleDataSource=lambda **kwargs: registered.append(kwargs))
    monkeypatch.setitem(__import__("sys").modules, "SampleData", sampleData)
    assert slot() is True
    source = registered[0]
    assert source["uris"].startswith("file://") and source["uris"].endswith("sample-neonatal-chest.nii.gz")
    assert source["checksums"].startswith("SHA256:") and len(source["checksums"]) == 7 + 64
    assert source["loadFileType"] == "VolumeFile" and source["thumbnailFileName"].endswith("NeonatalLungSeg.png")
    assert instance.moduleName == "NeonatalLungSeg"


def test_model_selector_switches_in_one_click_and_follows_the_parameter_node(widget, tiny_model_folder):
    """Registry entries in the combo box; picking one sets the node; a node change selects the entry; a folder
    used through 'Other model folder...' is listed from then on (remembered in the library's registry)."""
    ui, node, w = widget.ui, widget.node, widget.widget
    bundled = node.modelFolder
    other = ui.modelComboBox.count - 1
    node.modelFolder = str(tiny_model_folder)  # e.g. typed into the path field: not listed yet
    assert ui.modelComboBox.currentIndex == other and ui.modelFolderPathLineEdit.enabled
    assert "tiny-test-model 0.0.1" in ui.modelInfoLabel.text
    ui.segmentButton.click()
    finish(widget)
    labels = [ui.modelComboBox.itemText(i) for i in range(ui.modelComboBox.count)]
    assert "tiny-test-model 0.0.1" in labels and labels[-1] == "Other model folder..."
    assert ui.modelComboBox.itemText(ui.modelComboBox.currentIndex) == "tiny-test-model 0.0.1"
    ui.modelComboBox.currentIndex = 0  # one click back to the bundled model
    assert node.modelFolder == bundled
    assert f"neonatal-lung-unet-r50 {_bundled_model_json()['version']}" in ui.modelInfoLabel.text
    node.modelFolder = str(tiny_model_folder)  # a script or a loaded scene changes the node: the combo follows
    assert ui.modelComboBox.itemText(ui.modelComboBox.currentIndex) == "tiny-test-model 0.0.1"
    assert not ui.modelFolderPathLineEdit.enabled
    import qt

    from NeonatalLungSegLib.models import registry

    # Remembered in the library's registry (what `neonatal-lung-seg models` lists), not in QSettings.
    assert registry.remembered_paths() == [tiny_model_folder.resolve()]
    assert any(e.folder.resolve() == tiny_model_folder.resolve() for e in registry.find_models())
    assert qt.QSettings().value("NeonatalLungSeg/ModelFolders") is None
    again = type(w)(types.SimpleNamespace(isEntered=True))
    again.setup()
    combo = again.ui.modelComboBox
    assert "tiny-test-model 0.0.1" in [combo.itemText(i) for i in range(combo.count)]
    again.cleanup()
    node.modelFolder = bundled


def test_flip_check_is_bound_and_reaches_the_request(widget):
    ui, node = widget.ui, widget.node
    ui.flipCheckBox.checked = True
    assert node.flipCheck is True
    from NeonatalLungSegSlicerLib import pipeline

    assert pipeline.makeRequest(node).flipCheck is True
    node.flipCheck = False
    assert ui.flipCheckBox.checked is False


def test_segment_completes_in_a_gil_holding_host(widget):
    """The fast cousin of test_gil_host.py (slow, bundled model): with the main thread holding the GIL between
    100 ms ticks, as Slicer's event loop does, the worker process still finishes within a few dozen ticks."""
    import gil_host

    ui, w = widget.ui, widget.widget
    w.logic.runner.loader = "worker_fakes:load"  # not gated
    ui.segmentButton.click()
    ticks = gil_host.run_ticks(w._timer.fire, lambda: w._job is None, 100)
    assert ui.statusLabel.text.startswith("Done: right") and ticks <= 100
