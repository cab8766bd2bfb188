"""The AI correct toggle of the module panel: the real .ui and module code, the stand-ins for Qt and the slice
views (with REAL slice nodes), real MRML, and a REAL worker process running tiny real models (Segment, then
clicks in the same worker)."""

from __future__ import annotations

import time
import types

import numpy as np
import pytest

import slicer_harness

slicer = slicer_harness.slicer


@pytest.fixture(scope="module")
def module():
    return slicer_harness.import_module()


@pytest.fixture
def panel(module, monkeypatch, tmp_path, tiny_model_folder, tiny_refine_folder):
    import qt

    scene = slicer_harness.mrml_environment()["scene"]
    old = scene.GetSingletonNode("NeonatalLungSeg", "vtkMRMLScriptedModuleNode")
    if old is not None:
        scene.RemoveNode(old)
    monkeypatch.setattr(qt.QSettings, "store", {})
    monkeypatch.setenv("NEONATAL_LUNG_SEG_REGISTRY", str(tmp_path / "registry.json"))
    array = np.full((10, 24, 32), 20, np.int16)
    array[2:8, 6:18, 3:13] = 200
    array[2:8, 6:18, 19:29] = 200
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "ai correct wiring")
    slicer.util.updateVolumeFromArray(volume, array)
    w = module.NeonatalLungSegWidget(types.SimpleNamespace(isEntered=True))
    w.setup()
    w.ui.inputVolumeSelector.setCurrentNode(volume)
    node = w._parameterNode
    node.modelFolder, node.device, node.refineModelFolder = str(tiny_model_folder), "CPU", str(tiny_refine_folder)
    yield types.SimpleNamespace(widget=w, ui=w.ui, node=node, volume=volume, scene=scene)
    w.cleanup()


def until(what, fire, limit=180.0):
    deadline = time.monotonic() + limit
    while not what():
        assert time.monotonic() < deadline
        time.sleep(0.02)
        fire()


def rasOf(volume, kji):
    import vtk

    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    return (slicer.util.arrayFromVTKMatrix(matrix) @ np.array([kji[2], kji[1], kji[0], 1.0]))[:3]


def clickAt(view, volume, kji, shift=False):
    """Centre the REAL slice node on voxel ``kji`` and click the view's centre pixel."""
    from NeonatalLungSegSlicerLib import aiCorrect, sliceClicks

    sliceNode = view.mrmlSliceNode()
    sliceNode.JumpSliceByCentering(*rasOf(volume, kji))
    x, y = (d // 2 for d in sliceNode.GetDimensions()[:2])
    assert aiCorrect.clickFromRas(volume, sliceClicks.xyToRas(sliceNode, x, y), True).index == tuple(kji)
    view.sliceView().interactor().click(x, y, shift=shift)


def test_ai_correct_toggle_clicks_in_slice_views_undo_and_export(panel, tmp_path):
    from NeonatalLungSegSlicerLib import aiCorrect, mrmlNodes

    ui, w, volume = panel.ui, panel.widget, panel.volume
    assert not ui.aiCorrectButton.enabled  # nothing to correct before Segment
    assert ui.refineModelFolderPathLineEdit.currentPath == panel.node.refineModelFolder  # bound to the node
    ui.segmentButton.click()
    until(lambda: w._job is None, w._timer.fire)
    segmentation = panel.node.outputSegmentation
    assert segmentation is not None and ui.aiCorrectButton.enabled
    segmentPid = w.logic.runner.workerPid

    editor = ui.segmentEditorWidget
    editor.setActiveEffect("Paint")
    ui.aiCorrectButton.click()
    assert ui.aiCorrectButton.checked and w._aiCorrect.correction is not None
    assert editor.activeEffect is None  # a click must not also paint
    layout = slicer.app.layoutManager()
    views = [layout.sliceWidget(name) for name in ("Red", "Yellow", "Green")]
    assert all(v.sliceView().interactor().observerCount == 2 for v in views)
    assert "Shift+click to remove" in ui.aiCorrectStatusLabel.text
    rightId = segmentation.GetSegmentation().GetSegmentIdBySegmentName(mrmlNodes.RIGHT_LUNG)
    editor.mrmlSegmentEditorNode().SetSelectedSegmentID(rightId)
    assert aiCorrect.activeLung(editor.mrmlSegmentEditorNode(), segmentation) == "right_lung"

    # Add, in the axial view: a voxel no lung holds, on the patient's right (high i: RAS = IJK here).
    labels0 = aiCorrect.currentLabels(segmentation, volume)
    target = next(tuple(int(v) for v in p) for p in np.argwhere(labels0 == 0) if p[0] == 5 and p[2] >= 26)
    clickAt(views[0], volume, target)
    assert w._aiCorrect.busy and not ui.segmentButton.enabled and not ui.exportButton.enabled
    until(lambda: not w._aiCorrect.busy, w._aiCorrect.timer.fire)
    assert not w._aiCorrect.timer.isActive() and "right lung" in ui.aiCorrectStatusLabel.text
    assert w.logic.runner.workerPid == segmentPid  # the Segment worker, not a second process
    right1 = aiCorrect.currentLabels(segmentation, volume) == 1
    assert right1.sum() > (labels0 == 1).sum()
    assert np.array_equal(aiCorrect.currentLabels(segmentation, volume) == 2, labels0 == 2)
    assert editor.calls.count("saveStateForUndo") == 1

    # Remove, with Shift, in the coronal view: a voxel of the right lung.
    inside = tuple(int(v) for v in np.argwhere(right1)[len(np.argwhere(right1)) // 2])
    clickAt(views[2], volume, inside, shift=True)
    until(lambda: not w._aiCorrect.busy, w._aiCorrect.timer.fire)
    right2 = aiCorrect.currentLabels(segmentation, volume) == 1
    assert right2.sum() < right1.sum() and not right2[inside]
    assert editor.calls.count("saveStateForUndo") == 2

    views[1].sliceView().interactor().drag((10, 10), (60, 40))  # window/level drag: not a click
    assert not w._aiCorrect.busy
    views[0].mrmlSliceNode().JumpSliceByCentering(500.0, 0.0, 0.0)
    views[0].sliceView().interactor().click(200, 150)
    assert ui.aiCorrectStatusLabel.text.startswith("Click not applied:") and "outside the volume" in \
        ui.aiCorrectStatusLabel.text

    editor.undo()  # the Segment Editor's undo: back to the state after the first click
    assert np.array_equal(aiCorrect.currentLabels(segmentation, volume) == 1, right1)

    ui.aiCorrectButton.click()  # off
    assert w._aiCorrect.correction is None
    assert all(v.sliceView().interactor().observerCount == 0 for v in views)
    ui.reviewerLineEdit.text = "Dr Toggle"
    ui.trainingFolderPathLineEdit.currentPath = str(tmp_path / "training")
    ui.exportButton.click()
    assert "2 AI clicks, 0 manual edits" in ui.exportStatusLabel.text, ui.exportStatusLabel.text


def test_ai_correct_without_a_segmentation_or_with_a_bad_model_says_why(panel, tmp_path):
    ui, w = panel.ui, panel.widget
    ui.aiCorrectButton.enabled = True  # as if enabled: the toggle itself refuses
    ui.aiCorrectButton.click()
    assert not ui.aiCorrectButton.checked and "Segment first" in ui.aiCorrectStatusLabel.text
    ui.segmentButton.click()
    until(lambda: w._job is None, w._timer.fire)
    panel.node.refineModelFolder = str(tmp_path)  # not a model folder
    ui.aiCorrectButton.click()
    assert not ui.aiCorrectButton.checked and w._aiCorrect.correction is None
    assert ui.aiCorrectStatusLabel.text.startswith("AI correct is off:") \
        and str(tmp_path) in ui.aiCorrectStatusLabel.text
    panel.node.refineModelFolder = panel.node.modelFolder  # a segmentation model
    ui.aiCorrectButton.click()
    assert "not a click-refinement model" in ui.aiCorrectStatusLabel.text


def test_image_contrast_checkbox_reaches_each_refine_session_start(panel, monkeypatch):
    """The checkbox is bound to the parameter node (checked by default); its state is what the worker's
    refine_start gets, and a change while AI correct is on makes the next click start a new session."""
    from NeonatalLungSegLib.worker.client import WorkerClient
    from NeonatalLungSegSlicerLib import aiCorrect

    ui, w, volume, node = panel.ui, panel.widget, panel.volume, panel.node
    box = ui.aiCorrectImageContrastCheckBox
    assert node.aiCorrectImageContrast is True and box.checked
    assert "consolidated" in box.toolTip and "undo" in box.toolTip
    starts = []
    original = WorkerClient.start_refine

    def spy(self, *args, **kwargs):
        starts.append(kwargs.get("image_contrast"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(WorkerClient, "start_refine", spy)
    ui.segmentButton.click()
    until(lambda: w._job is None, w._timer.fire)
    box.checked = False  # the reviewer unticks it: stored in the parameter node
    assert node.aiCorrectImageContrast is False
    ui.aiCorrectButton.click()
    view = slicer.app.layoutManager().sliceWidget("Red")
    labels = aiCorrect.currentLabels(node.outputSegmentation, volume)
    empty = [tuple(int(v) for v in p) for p in np.argwhere(labels == 0) if p[0] == 5]

    def click(kji):
        clickAt(view, volume, kji)
        until(lambda: not w._aiCorrect.busy, w._aiCorrect.timer.fire)
        assert not ui.aiCorrectStatusLabel.text.startswith("AI correct failed"), ui.aiCorrectStatusLabel.text

    click(empty[0])
    first = w._aiCorrect.correction.session
    assert starts == [False] and first
    click(empty[-1])
    assert starts == [False] and w._aiCorrect.correction.session == first  # same switch: same session
    box.checked = True  # while AI correct is on: the next click prepares a new session with the rule on
    click(empty[len(empty) // 2])
    assert starts == [False, True] and w._aiCorrect.correction.session not in (None, first)
