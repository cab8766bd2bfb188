"""The faults the review against Slicer's sources found (issue 13), one test each; every one of these failed
on the module as it was before the fix. The Widget runs with the strict stand-ins and a worker process with
a fake segmenter (fixtures from test_widget_wiring.py)."""

from __future__ import annotations

import re
import types
import unittest

import pytest

import slicer_harness
from test_widget_wiring import finish, module, widget  # noqa: F401  (fixtures)

slicer = slicer_harness.slicer


def test_self_test_skips_with_a_clear_message_where_torch_is_missing(module, monkeypatch):  # noqa: F811
    """A build machine's ctest has no torch and nobody to agree to an install: skip, saying why."""
    from NeonatalLungSegLib.models import requirements
    from NeonatalLungSegSlicerLib.environment import dependencies, selfTest

    missing = [requirements.Requirement("torch", "2.2", None)]
    monkeypatch.setattr(dependencies, "missingDependencies", lambda: (missing, []))
    monkeypatch.setattr(selfTest, "run", lambda test, logic: pytest.fail("segmented without torch"))
    with pytest.raises(unittest.SkipTest, match=r"torch>=2\.2 \(not installed\)"):
        module.NeonatalLungSegTest().test_SegmentCorrectExport()


def test_reload_and_test_without_torch_skips_without_the_failed_popup(module, monkeypatch):  # noqa: F811
    """Reload and Test runs the self-test outside a test runner: a skip must not surface as Slicer's "Reload and
    Test failed" popup (it did: SkipTest is an exception to tryWithErrorDisplay), in testing mode or not."""
    from NeonatalLungSegLib.models import requirements
    from NeonatalLungSegSlicerLib.environment import dependencies, selfTest

    missing = [requirements.Requirement("torch", "2.2", None)]
    popups, shown = [], []
    monkeypatch.setattr(dependencies, "missingDependencies", lambda: (missing, []))
    monkeypatch.setattr(selfTest, "run", lambda test, logic: pytest.fail("segmented without torch"))
    monkeypatch.setattr(slicer.util, "errorDisplay", lambda text, **kwargs: popups.append(text))
    monkeypatch.setattr(module.NeonatalLungSegTest, "delayDisplay", lambda self, text, msec=1000: shown.append(text))
    module.NeonatalLungSeg(types.SimpleNamespace())  # registers slicer.selfTests["NeonatalLungSeg"]
    w = module.NeonatalLungSegWidget(types.SimpleNamespace(isEntered=True))
    monkeypatch.setattr(w, "onReload", lambda: None)  # the reload itself is not what is tested here
    w.onReloadAndTest()  # testing mode (a build machine)
    monkeypatch.setattr(slicer.app, "testingEnabled", lambda: False)
    monkeypatch.setattr(dependencies, "ensureDependencies", lambda confirm, busy=None: False)  # user declines
    w.onReloadAndTest()
    assert popups == []
    assert len(shown) == 2 and all(text.startswith("Self-test skipped:") for text in shown)
    assert "torch>=2.2" in shown[0] and "declined" in shown[1]


def test_self_test_run_by_hand_offers_to_install_then_runs(module, monkeypatch):  # noqa: F811
    """Reload and Test (not testing mode): missing packages are installed on first use, after asking."""
    from NeonatalLungSegLib.models import requirements
    from NeonatalLungSegSlicerLib.environment import dependencies, selfTest

    missing = [requirements.Requirement("torch", "2.2", None)]
    calls = []
    monkeypatch.setattr(slicer.app, "testingEnabled", lambda: False)
    monkeypatch.setattr(dependencies, "missingDependencies", lambda: (missing, []))
    monkeypatch.setattr(dependencies, "ensureDependencies", lambda confirm, busy=None: calls.append("ensure") or True)
    monkeypatch.setattr(selfTest, "run", lambda test, logic: calls.append("run"))
    module.NeonatalLungSegTest().test_SegmentCorrectExport()
    assert calls == ["ensure", "run"]


@pytest.fixture
def slicer58(monkeypatch):
    monkeypatch.setattr(slicer.app, "minorVersion", 8)


def test_older_slicer_is_told_the_minimum_version_and_bindings_do_not_pile_up(module, slicer58):  # noqa: F811
    w = module.NeonatalLungSegWidget(types.SimpleNamespace(isEntered=True))
    w.setup()  # must not fail on Slicer 5.8
    for _ in range(3):
        w.enter()
        w.exit()
    assert "3D Slicer 5.10 or later" in w.ui.statusLabel.text
    assert not w.ui.segmentButton.enabled
    assert w.ui.fillHolesCheckBox.stateChanged.connected <= 1  # connectGui returned None: nothing may pile up
    w.cleanup()
    parent = types.SimpleNamespace()
    module.NeonatalLungSeg(parent)
    assert "Slicer 5.10" in parent.helpText


def test_replace_previous_refreshes_confidence_and_review_list(widget):  # noqa: F811
    ui, node = widget.ui, widget.node
    node.reviewSliceCount = 2
    ui.segmentButton.click()
    finish(widget)
    first = ui.outputSegmentationSelector.currentNode()
    assert ui.reviewSlicesListWidget.count == 2
    ui.confidenceLabel.text = "stale"
    node.reviewSliceCount = 4
    ui.segmentButton.click()
    finish(widget)
    assert ui.outputSegmentationSelector.currentNode() is first  # replaced in place: no currentNodeChanged
    assert ui.reviewSlicesListWidget.count == 4
    assert ui.confidenceLabel.text.startswith("Model confidence ")


def test_probability_volume_has_a_display_node_and_colour_map(widget):  # noqa: F811
    widget.node.showProbabilities = True
    widget.ui.segmentButton.click()
    finish(widget)
    display = widget.node.probabilityVolume.GetDisplayNode()
    assert display is not None, "probability volume without display node shows grey"
    assert display.GetColorNodeID() == "vtkMRMLColorTableNodeRainbow"
    assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == (0.0, 1.0)


def test_empty_path_fields_stay_empty_and_a_field_being_typed_in_is_not_rewritten(widget):  # noqa: F811
    ui, node = widget.ui, widget.node
    field = ui.trainingFolderPathLineEdit
    field.type("")
    assert str(node.trainingFolder) == "" and field.currentPath == ""  # not "."
    field.type("/tmp/new-folder/")
    ui.fillHolesCheckBox.checked = not ui.fillHolesCheckBox.checked  # any other parameter change
    assert field.programmaticWrites == 0 and field.currentPath == "/tmp/new-folder/"
    assert str(node.trainingFolder) == "/tmp/new-folder/"
    field.clearFocus()
    node.trainingFolder = "/elsewhere"  # a script or a loaded scene: the field follows
    assert field.currentPath == "/elsewhere"
    model = ui.modelFolderPathLineEdit
    model.type("")
    assert str(node.modelFolder) == "" and "Select a model folder" in ui.modelInfoLabel.text


def test_segment_is_disabled_while_dependencies_install(widget, monkeypatch):  # noqa: F811
    from NeonatalLungSegLib.models import requirements
    from NeonatalLungSegSlicerLib.environment import dependencies

    ui = widget.ui
    state = {"installed": False, "seen": []}
    smp = requirements.Requirement("segmentation-models-pytorch", "0.5", None)
    monkeypatch.setattr(dependencies, "missingDependencies", lambda: ([], [] if state["installed"] else [smp]))
    monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay", lambda text, *a, **k: True)

    def install(missing):
        state["seen"].append((ui.segmentButton.enabled, ui.cancelButton.enabled))
        ui.segmentButton.click()  # pip output pumps the event loop: a click may arrive now
        state["installed"] = True
        return "test installer"

    monkeypatch.setattr(dependencies, "_installOthers", install)
    ui.segmentButton.click()
    assert state["seen"] == [(False, False)]
    assert widget.widget._job is not None
    finish(widget)
    assert ui.segmentButton.enabled


def test_segment_editor_is_embedded_as_slicer_s_segment_editor_module_does(widget):  # noqa: F811
    ui, w, scene = widget.ui, widget.widget, widget.scene
    editor = ui.segmentEditorWidget
    assert editor.calls[:2] == ["setMRMLSegmentEditorNode", "setMRMLScene"]  # editor node first
    w.enter()
    assert editor.shortcutsInstalled
    w.exit()
    assert not editor.shortcutsInstalled
    w.enter()  # again: installed once more, not twice
    ui.segmentButton.click()
    finish(widget)
    segmentation = widget.node.outputSegmentation
    assert editor.segmentationNode is segmentation
    # No closed surfaces forced on every result (they regenerate on every paint stroke): 3D on request.
    assert not segmentation.GetSegmentation().ContainsRepresentation("Closed surface")
    assert ui.show3DButton.enabled
    ui.show3DButton.click()
    assert segmentation.GetSegmentation().ContainsRepresentation("Closed surface")
    scene.InvokeEvent(scene.StartCloseEvent)
    assert editor.segmentationNode is None and "removeViewObservations" in editor.calls
    scene.InvokeEvent(scene.EndCloseEvent)
    assert editor.editorNode is not None and editor.editorNode.GetScene() is scene
    w.exit()


def test_cmake_minimum_required_is_a_range_as_in_the_extension_template():
    text = (slicer_harness.REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    found = re.search(r"cmake_minimum_required\(VERSION ([^)]*)\)", text).group(1)
    assert found == "3.20.6...3.22.6 FATAL_ERROR"
