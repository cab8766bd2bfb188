"""The module panel around AI correct: its shortcut, the effect's options reaching the worker, and the export's
record of the correction effort. The real .ui and module code, the stand-ins for Qt, the slice views (REAL
slice nodes) and the segment editor effects, real MRML, and a REAL worker process running fakes (a threshold
segmenter, a cube-adding refiner: ``worker_fakes.py``); the effect's own behaviour is test_ai_correct_effect.py."""

from __future__ import annotations

import numpy as np

import slicer_harness
from test_ai_correct_effect import (clickAt, effectOf, labels, module, panel, rasOf, selectLung, view,  # noqa: F401
                                    waitForClick)

slicer = slicer_harness.slicer


def test_shortcut_needs_a_result_and_panel_buttons_follow_the_effect(module, monkeypatch, tmp_path):  # noqa: F811
    import types

    import qt

    scene = slicer_harness.mrml_environment()["scene"]
    old = scene.GetSingletonNode("NeonatalLungSeg", "vtkMRMLScriptedModuleNode")
    if old is not None:
        scene.RemoveNode(old)
    monkeypatch.setattr(qt.QSettings, "store", {})
    w = module.NeonatalLungSegWidget(types.SimpleNamespace(isEntered=True))
    w.setup()
    try:
        assert not w.ui.aiCorrectButton.enabled  # nothing to correct before Segment
        assert not w.ui.aiCorrectButton.checkable  # a shortcut now, not a mode of the panel
        assert "Segment Editor" in w.ui.aiCorrectButton.toolTip
    finally:
        w.cleanup()


def test_image_contrast_checkbox_of_the_effect_reaches_each_refine_session_start(panel, monkeypatch):  # noqa: F811
    """The effect's checkbox is an effect parameter (saved in the segment editor node, checked by default); it is
    what the worker's refine_start gets, and a change makes the next click prepare a new session."""
    from NeonatalLungSegLib.worker.client import WorkerClient

    starts = []
    original = WorkerClient.start_refine

    def spy(self, *args, **kwargs):
        starts.append(kwargs.get("image_contrast"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(WorkerClient, "start_refine", spy)
    panel.ui.aiCorrectButton.click()
    effect = effectOf(panel).self()
    box = effect.imageContrastCheckBox
    assert box.checked and "consolidated" in box.toolTip and "undo" in box.toolTip
    box.checked = False  # stored as the effect's parameter
    assert effectOf(panel).integerParameter("ImageContrast") == 0
    empty = [tuple(int(v) for v in p) for p in np.argwhere(labels(panel) == 0) if p[0] == 5 and p[2] < 3]

    def click(kji):
        clickAt(view(), rasOf(panel.volume, kji))
        waitForClick(panel)
        assert not effect.statusLabel.text.startswith(("AI correct failed", "Click not")), effect.statusLabel.text

    click(empty[0])
    first = effect.correction.session
    assert starts == [False] and first
    click(empty[-1])
    assert starts == [False] and effect.correction.session == first  # same switch: same session
    box.checked = True  # while AI correct is on: the next click prepares a new session with the rule on
    click(empty[len(empty) // 2])
    assert starts == [False, True] and effect.correction.session not in (None, first)


def test_ai_clicks_and_paint_strokes_are_recorded_in_the_export(panel, tmp_path):  # noqa: F811
    import itertools

    ui, w = panel.ui, panel.widget
    ticks = itertools.count(0, 10)  # every Segment Editor operation is a new one
    w.logic.edits.clock = lambda: next(ticks)
    ui.aiCorrectButton.click()
    clickAt(view(), rasOf(panel.volume, (5, 10, 14)))
    waitForClick(panel)
    clickAt(view("Green"), rasOf(panel.volume, (5, 10, 14)), shift=True)  # remove
    waitForClick(panel)
    selectLung(panel, "Left lung")
    panel.editor.setActiveEffectByName("Paint")
    clickAt(view(), rasOf(panel.volume, (5, 20, 16)))  # one manual stroke
    ui.reviewerLineEdit.text = "Dr Effect"
    ui.trainingFolderPathLineEdit.currentPath = str(tmp_path / "training")
    ui.exportButton.click()
    assert "2 AI clicks, 1 manual edits" in ui.exportStatusLabel.text, ui.exportStatusLabel.text
