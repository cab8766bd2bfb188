"""AI correct as a Segment Editor effect, on REAL MRML and the REAL segment editor logic (undo history,
``vtkSlicerSegmentationsModuleLogic``), with the module's own Widget and embedded editor (stand-ins modelled on
Slicer's sources: the effect factory, the scripted effect adaptor, the editor's event routing, Paint and Erase),
and a REAL worker process running fakes (``worker_fakes.py``: a threshold segmenter, a refiner that adds or
removes a 3 x 3 x 3 cube around the click), so no test here needs torch."""

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

SHAPE = (10, 24, 32)


@pytest.fixture(scope="module")
def module():
    return slicer_harness.import_module()


def runner(refineLoader="worker_fakes:load_refiner"):
    from NeonatalLungSegSlicerLib.processRunner import ProcessRunner

    return ProcessRunner(loader="worker_fakes:load", refineLoader=refineLoader, extraPaths=[FAKES_DIR])


@pytest.fixture
def panel(module, monkeypatch, tmp_path):
    """The module's Widget after Segment (fake segmenter): two lungs, the right one at low i (RAS = IJK)."""
    import qt

    scene = slicer_harness.mrml_environment()["scene"]
    old = scene.GetSingletonNode("NeonatalLungSeg", "vtkMRMLScriptedModuleNode")
    if old is not None:
        scene.RemoveNode(old)
    monkeypatch.setattr(qt.QSettings, "store", {})
    monkeypatch.setenv("NEONATAL_LUNG_SEG_REGISTRY", str(tmp_path / "registry.json"))
    control = tmp_path / "fake-control"
    control.mkdir()
    monkeypatch.setenv("NEONATAL_LUNG_SEG_FAKE_CONTROL", str(control))
    monkeypatch.setattr(slicer.util, "setSliceViewerLayers", lambda **kwargs: None)
    array = np.full(SHAPE, 20, np.int16)
    array[2:8, 6:18, 3:13] = 200
    array[2:8, 6:18, 19:29] = 200
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "effect volume")
    slicer.util.updateVolumeFromArray(volume, array)
    w = module.NeonatalLungSegWidget(types.SimpleNamespace(isEntered=True))
    w.setup()
    w.logic.runner.close()
    w.logic.runner = runner()
    w.ui.inputVolumeSelector.setCurrentNode(volume)
    w.ui.segmentButton.click()
    until(lambda: w._job is None, w._timer.fire)
    segmentation = w._parameterNode.outputSegmentation
    assert segmentation is not None, w.ui.statusLabel.text
    effect = w.ui.segmentEditorWidget.effectByName("Neonatal lung AI correct")
    effect.setParameter("Mode", "add")  # the scene's segment editor node outlives each test's widget
    effect.setParameter("ImageContrast", 1)
    yield types.SimpleNamespace(widget=w, ui=w.ui, editor=w.ui.segmentEditorWidget, volume=volume,
                                segmentation=segmentation, scene=scene, control=control)
    w.cleanup()


def until(what, fire, limit=60.0):
    deadline = time.monotonic() + limit
    while not what():
        assert time.monotonic() < deadline
        time.sleep(0.02)
        fire()


def effectOf(fixture):
    from NeonatalLungSegSlicerLib.correcting import aiCorrectEffect

    return fixture.editor.effectByName(aiCorrectEffect.EFFECT_NAME)


def labels(fixture):
    from NeonatalLungSegSlicerLib.correcting import aiCorrect

    return aiCorrect.currentLabels(fixture.segmentation, fixture.volume)


def selectLung(fixture, name):
    segmentId = fixture.segmentation.GetSegmentation().GetSegmentIdBySegmentName(name)
    fixture.editor.mrmlSegmentEditorNode().SetSelectedSegmentID(segmentId)


def rasOf(volume, kji):
    import vtk

    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    return (slicer.util.arrayFromVTKMatrix(matrix) @ np.array([kji[2], kji[1], kji[0], 1.0]))[:3]


def clickAt(view, ras, shift=False):
    """Centre the view's REAL slice node on world point ``ras`` and click the view's centre pixel."""
    sliceNode = view.mrmlSliceNode()
    sliceNode.JumpSliceByCentering(*ras)
    x, y = (d // 2 for d in sliceNode.GetDimensions()[:2])
    view.sliceView().interactor().click(x, y, shift=shift)


def waitForClick(fixture):
    effect = effectOf(fixture).self()
    until(lambda: not effect.busy, lambda: effect.timer.fire())
    return effect


def view(name="Red"):
    return slicer.app.layoutManager().sliceWidget(name)


def test_effect_is_registered_listed_beside_paint_and_the_editor_keeps_ten_undo_states(panel, module):
    from NeonatalLungSegSlicerLib.correcting import aiCorrectEffect

    factory = slicer.qSlicerSegmentEditorEffectFactory.instance()
    assert aiCorrectEffect.EFFECT_NAME in [effect.name for effect in factory.registeredEffects()]
    assert aiCorrectEffect.registerEffect() is True  # again: still one (the factory refuses a second)
    assert [effect.name for effect in factory.registeredEffects()].count(aiCorrectEffect.EFFECT_NAME) == 1
    names = panel.editor.availableEffectNames()
    assert {"Paint", "Erase", aiCorrectEffect.EFFECT_NAME} <= set(names)
    assert effectOf(panel).title == "AI correct" and effectOf(panel).self().helpText()
    assert panel.editor.maximumNumberOfUndoStates() >= 10  # Slicer's SegmentEditor module sets 10
    parent = types.SimpleNamespace()
    module.NeonatalLungSeg(parent)  # registered once Slicer has started, as extensions do
    assert ("startupCompleted()", aiCorrectEffect.registerEffect) in slicer.app.connections
    frame = effectOf(panel).optionsFrame()
    kinds = [type(child).__name__ for child in frame.findChildren()]
    assert kinds.count("QRadioButton") == 2 and "QCheckBox" in kinds and "QLabel" in kinds


def test_with_paint_active_a_click_paints_and_runs_no_ai_correction(panel, monkeypatch):
    from NeonatalLungSegSlicerLib.processRunner import ProcessRunner

    refines = []
    monkeypatch.setattr(ProcessRunner, "startRefine", lambda self, *a, **k: refines.append(a) or pytest.fail("AI"))
    selectLung(panel, "Right lung")
    panel.editor.setActiveEffectByName("Paint")
    assert panel.editor.activeEffect().name == "Paint"
    before = labels(panel)
    target = (5, 20, 15)  # background, between the lungs
    assert before[target] == 0
    interactor = view().sliceView().interactor()
    presses = interactor.viewPresses
    clickAt(view(), rasOf(panel.volume, target))
    after = labels(panel)
    assert after[target] == 1 and np.count_nonzero(after != before) == 1  # Paint painted that voxel
    assert refines == [] and not effectOf(panel).self().busy
    assert interactor.viewPresses == presses  # consumed by Paint, not passed on to the view


def test_with_ai_correct_active_a_click_corrects_once_paints_nothing_and_is_one_undo_step(panel, monkeypatch):
    from NeonatalLungSegSlicerLib.processRunner import ProcessRunner

    sent = []
    original = ProcessRunner.startRefine

    def spy(self, array, *args, **kwargs):
        sent.append((array.dtype, np.shares_memory(array, slicer.util.arrayFromVolume(panel.volume))))
        return original(self, array, *args, **kwargs)

    monkeypatch.setattr(ProcessRunner, "startRefine", spy)
    ui, editor = panel.ui, panel.editor
    assert ui.aiCorrectButton.enabled
    editor.mrmlSegmentEditorNode().SetSelectedSegmentID("")  # the shortcut selects the right lung
    ui.aiCorrectButton.click()
    assert editor.activeEffect() is effectOf(panel)
    assert editor.mrmlSegmentEditorNode().GetSelectedSegmentID() == \
        panel.segmentation.GetSegmentation().GetSegmentIdBySegmentName("Right lung")
    paint = editor.effectByName("Paint")
    before = labels(panel)
    target = (5, 10, 14)  # just outside the right lung (i 3..12)
    interactor = view().sliceView().interactor()
    presses = interactor.viewPresses
    saves = editor.calls.count("saveStateForUndo")
    clickAt(view(), rasOf(panel.volume, target))
    effect = effectOf(panel).self()
    assert effect.busy, effect.statusLabel.text
    assert not ui.segmentButton.enabled and not ui.exportButton.enabled
    assert interactor.viewPresses == presses and paint.strokes == 0  # consumed; nothing painted
    effect = waitForClick(panel)
    after = labels(panel)
    cube = np.zeros(SHAPE, bool)
    cube[4:7, 9:12, 13:16] = True
    assert np.array_equal(after == 1, (before == 1) | (cube & (before == 0)))  # the fake's cube, right lung
    assert np.array_equal(after == 2, before == 2)  # the other lung untouched
    assert sent == [(np.int16, True)]  # MRML's own voxels, in their own type: no copy, no float cast here
    assert effect.statusLabel.text == "Added 27 voxels (right lung)"
    assert editor.calls.count("saveStateForUndo") == saves + 1  # exactly one undo step
    editor.undo()
    assert np.array_equal(labels(panel), before)
    assert not effect.cancelButton.enabled and ui.segmentButton.enabled


def test_remove_mode_shift_click_and_the_selected_lung_decide_what_a_click_does(panel):
    selectLung(panel, "Left lung")
    panel.editor.setActiveEffectByName(effectOf(panel).name)
    effect = effectOf(panel).self()
    effect.removeRadioButton.click()
    assert effectOf(panel).parameter("Mode") == "remove" and not effect.addRadioButton.checked
    before = labels(panel)
    inside = (5, 10, 20)  # a left-lung voxel near its edge
    clickAt(view("Green"), rasOf(panel.volume, inside))
    waitForClick(panel)
    after = labels(panel)
    assert after[inside] == 0 and np.array_equal(after == 1, before == 1)
    assert np.count_nonzero((before == 2) & (after == 0)) == 27
    clickAt(view("Green"), rasOf(panel.volume, inside), shift=True)  # Shift: the opposite (add)
    waitForClick(panel)
    assert labels(panel)[inside] == 2


def test_a_slice_view_created_after_activation_routes_its_clicks(panel):
    selectLung(panel, "Right lung")
    panel.editor.setActiveEffectByName(effectOf(panel).name)
    layout = slicer.app.layoutManager()
    name = f"Red+{time.monotonic_ns()}"
    newView = layout.addSliceView(name, "Axial")  # a layout change after AI correct was switched on
    try:
        assert newView.sliceView().interactor().observerCount > 0  # the editor observes the new view
        before = labels(panel)
        clickAt(newView, rasOf(panel.volume, (5, 10, 14)))
        effect = waitForClick(panel)
        assert np.count_nonzero(labels(panel) != before) == 27, effect.statusLabel.text
    finally:
        layout.removeSliceView(name)


def test_other_segments_are_never_touched(panel):
    from NeonatalLungSegSlicerLib import mrmlNodes, segmentEditing

    segmentation = panel.segmentation.GetSegmentation()
    otherId = segmentation.AddEmptySegment("", "Heart")
    editor = segmentEditing.SegmentEditorSession(panel.scene, panel.segmentation, panel.volume)
    try:  # painted with Slicer's editor logic, beside the right lung where the click will add
        editor.paint("Heart", (slice(4, 7), slice(9, 12), slice(13, 16)))
    finally:
        editor.close()
    heart = mrmlNodes.segmentArrays(panel.segmentation, panel.volume, ["Heart"])["Heart"].copy()
    assert heart.sum() > 0
    selectLung(panel, "Right lung")
    panel.editor.setActiveEffectByName(effectOf(panel).name)
    before = mrmlNodes.segmentArrays(panel.segmentation, panel.volume, ["Right lung", "Left lung"])
    clickAt(view(), rasOf(panel.volume, (5, 10, 14)))
    waitForClick(panel)
    after = mrmlNodes.segmentArrays(panel.segmentation, panel.volume, ["Right lung", "Left lung", "Heart"])
    assert np.array_equal(after["Heart"], heart)
    assert np.array_equal(after["Left lung"], before["Left lung"])
    assert (after["Right lung"] & ~before["Right lung"]).sum() > 0
    segmentation.RemoveSegment(otherId)


def test_a_volume_and_segmentation_under_one_transform_are_handled_other_transforms_refused(panel):
    transform = panel.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    matrix = np.eye(4)
    matrix[:3, 3] = (40.0, -25.0, 7.5)
    transform.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(matrix))
    selectLung(panel, "Right lung")
    panel.editor.setActiveEffectByName(effectOf(panel).name)
    effect = effectOf(panel).self()
    target = (5, 10, 14)
    world = (matrix @ np.array([*rasOf(panel.volume, target), 1.0]))[:3]
    before = labels(panel)
    try:
        panel.volume.SetAndObserveTransformNodeID(transform.GetID())  # only the volume: refused, one line
        clickAt(view(), world)
        assert effect.statusLabel.text.startswith("Click not applied: AI correct needs the volume and the "
                                                  "segmentation under the same transform")
        assert "\n" not in effect.statusLabel.text and not effect.busy
        assert np.array_equal(labels(panel), before)
        panel.segmentation.SetAndObserveTransformNodeID(transform.GetID())  # both: the click lands on its voxel
        clickAt(view(), world)
        waitForClick(panel)
        after = labels(panel)
        assert after[target] == 1 and np.count_nonzero(after != before) == 27 - np.count_nonzero(
            before[4:7, 9:12, 13:16])
    finally:
        panel.volume.SetAndObserveTransformNodeID(None)
        panel.segmentation.SetAndObserveTransformNodeID(None)
        panel.scene.RemoveNode(transform)


def test_a_click_without_a_lung_selected_or_outside_the_volume_says_why_and_changes_nothing(panel):
    panel.editor.mrmlSegmentEditorNode().SetSelectedSegmentID("")
    panel.editor.setActiveEffectByName(effectOf(panel).name)
    effect = effectOf(panel).self()
    before = labels(panel)
    clickAt(view(), rasOf(panel.volume, (5, 10, 14)))
    assert "Select the segment 'Right lung' or 'Left lung'" in effect.statusLabel.text and not effect.busy
    selectLung(panel, "Left lung")
    clickAt(view(), (500.0, 0.0, 0.0))
    assert effect.statusLabel.text.startswith("Click not applied:") and "outside the volume" in \
        effect.statusLabel.text
    assert np.array_equal(labels(panel), before)


def test_a_silent_ai_worker_is_reported_and_cancel_stops_it(panel):
    from NeonatalLungSegSlicerLib.correcting import aiCorrectEffect

    w = panel.widget
    w.logic.runner.close()
    w.logic.runner = runner("worker_fakes:load_refiner_gated")
    selectLung(panel, "Right lung")
    panel.editor.setActiveEffectByName(effectOf(panel).name)
    effect = effectOf(panel).self()
    before = labels(panel)
    clickAt(view(), rasOf(panel.volume, (5, 10, 14)))
    client = w.logic.runner.client
    until(lambda: effect.correction.session is not None, effect.timer.fire)  # prepared; the click is held
    effect.timer.fire()
    assert effect.busy and "No response" not in effect.statusLabel.text
    client.last_heard -= aiCorrectEffect.SILENCE_SECONDS + 5  # a hung worker: no event, no heartbeat since
    effect.timer.fire()
    assert effect.statusLabel.text.startswith("No response from the AI process for 2") and \
        effect.statusLabel.text.endswith("Cancel?")
    assert effect.cancelButton.enabled
    pid = client.worker_pid
    effect.cancelButton.clicked.emit()
    assert not effect.busy and effect.statusLabel.text.startswith("Cancelled: nothing was changed")
    assert not worker_fakes.pid_alive(pid)
    assert np.array_equal(labels(panel), before)


def test_a_silent_segmentation_worker_is_reported_within_thirty_seconds(module, monkeypatch, tmp_path):
    """The panel says "No response from the segmentation process for N s — Cancel?" once the worker has been
    silent for more than SILENCE_SECONDS (15 s: well inside 30 s, and 7 heartbeats)."""
    import qt

    from NeonatalLungSegSlicerLib.correcting import aiCorrectEffect
    from NeonatalLungSegSlicerLib.processRunner import ProcessRunner

    assert aiCorrectEffect.SILENCE_SECONDS < 30
    scene = slicer_harness.mrml_environment()["scene"]
    monkeypatch.setattr(qt.QSettings, "store", {})
    control = tmp_path / "control"
    control.mkdir()
    monkeypatch.setenv("NEONATAL_LUNG_SEG_FAKE_CONTROL", str(control))
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "silent")
    slicer.util.updateVolumeFromArray(volume, np.full(SHAPE, 200, np.int16))
    w = module.NeonatalLungSegWidget(types.SimpleNamespace(isEntered=True))
    w.setup()
    try:
        w.logic.runner.close()
        w.logic.runner = ProcessRunner(loader="worker_fakes:load_gated", extraPaths=[FAKES_DIR])
        w.ui.inputVolumeSelector.setCurrentNode(volume)
        w.ui.segmentButton.click()
        until(lambda: (control / "grandchild.pid").exists(), w._timer.fire)
        w._timer.fire()
        assert "No response" not in w.ui.statusLabel.text
        w.logic.runner.client.last_heard -= 16.0
        w._timer.fire()
        assert w.ui.statusLabel.text == "No response from the segmentation process for 16 s \N{EM DASH} Cancel?"
        assert w.ui.cancelButton.enabled
        w.ui.cancelButton.click()
        w._timer.fire()
        assert w._job is None and w.ui.statusLabel.text == "Cancelled: nothing was changed."
    finally:
        w.cleanup()
        scene.RemoveNode(volume)


def test_a_large_input_is_written_in_pieces_and_sent_once_written(module, tmp_path):
    """``staging.StagedJob``: a time budget per poll, the .npy identical to np.save's, then the request sent
    with it; a cancel before that removes the file and leaves the worker alone; a failure is the job's error."""
    from NeonatalLungSegLib.errors import Cancelled
    from NeonatalLungSegSlicerLib import staging

    client = types.SimpleNamespace(staging_path=lambda: tmp_path / f"staged-{time.monotonic_ns()}.npy")
    array = np.arange(64 * 300 * 200, dtype=np.int16).reshape(64, 300, 200)
    sent = []
    job = staging.StagedJob(client, array, lambda path: sent.append(np.load(path)) or types.SimpleNamespace(
        done=True, poll=lambda: True, progress=1.0, status="sent", request=None))
    job._writer.stepSeconds, job._writer.slicesPerWrite = 0.0, 16  # one write of 16 slices per poll
    polls = 0
    while not job.poll():
        polls += 1
        assert job.status.startswith("Sending") and job.progress == 0.0 and not sent
    assert polls == 3 and len(sent) == 1 and np.array_equal(sent[0], array) and sent[0].dtype == np.int16
    cancelled = staging.StagedJob(client, array, lambda path: pytest.fail("sent after cancel"))
    path = cancelled._writer.path
    cancelled.cancel()
    assert cancelled.done and cancelled.cancelled and not path.exists()
    with pytest.raises(Cancelled):
        cancelled.result()
    failing = staging.StagedJob(client, array, lambda path: (_ for _ in ()).throw(OSError("No space left")))
    assert failing.wait(10) and not failing.cancelled
    with pytest.raises(OSError, match="No space left"):
        failing.result()
