"""AI correct on REAL Slicer MRML (slicer-core) through the REAL worker process: Segment with a tiny model,
one add click and one remove click with a tiny refine model (same worker), undo through Slicer's own
segment editor logic, and an export whose sidecar records the clicks and the manual edits."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import slicer_harness

slicer = slicer_harness.slicer
SEGMENT_NAMES = {"right_lung": "Right lung", "left_lung": "Left lung"}


@pytest.fixture(scope="module")
def module():
    return slicer_harness.import_module()


def makeVolume(scene, name="ai correct volume"):
    """Two bright blocks on a dark body; RAS = IJK (Slicer's default), so high i is the patient's right."""
    array = np.full((10, 24, 32), 20, np.int16)
    array[2:8, 6:18, 3:13] = 200
    array[2:8, 6:18, 19:29] = 200
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    slicer.util.updateVolumeFromArray(volume, array)
    volume.SetSpacing(1.0, 1.0, 2.0)
    return volume


def rasOf(volume, kji):
    import vtk

    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    return (slicer.util.arrayFromVTKMatrix(matrix) @ np.array([kji[2], kji[1], kji[0], 1.0]))[:3]


def masks(segmentation, volume):
    from NeonatalLungSegSlicerLib import mrmlNodes

    found = mrmlNodes.segmentArrays(segmentation, volume, (mrmlNodes.RIGHT_LUNG, mrmlNodes.LEFT_LUNG))
    return found[mrmlNodes.RIGHT_LUNG], found[mrmlNodes.LEFT_LUNG]


def test_click_ras_lands_on_its_voxel_and_outside_is_one_clear_error(module):
    from NeonatalLungSegLib.errors import InputError
    from NeonatalLungSegSlicerLib.correcting import aiCorrect

    scene = slicer_harness.mrml_environment()["scene"]
    volume = makeVolume(scene, "click mapping")
    volume.SetIJKToRASDirections(-1, 0, 0, 0, -1, 0, 0, 0, 1)  # as many DICOM axial series: LPS-stored
    volume.SetOrigin(30.0, 20.0, -5.0)
    click = aiCorrect.clickFromRas(volume, rasOf(volume, (4, 7, 21)), True, "left_lung")
    assert click.index == (4, 7, 21) and click.positive and click.lung == "left_lung"
    with pytest.raises(InputError, match="outside the volume") as caught:
        aiCorrect.clickFromRas(volume, (500.0, 0.0, 0.0), False)
    assert "\n" not in str(caught.value)
    scene.RemoveNode(volume)


def test_segment_two_clicks_undo_and_export(module, tiny_model_folder, tiny_refine_folder, tmp_path):
    from NeonatalLungSegLib.dataset.training_folder import read_training_folder
    from NeonatalLungSegSlicerLib import mrmlNodes, segmentEditing
    from NeonatalLungSegSlicerLib.correcting import aiCorrect

    scene = slicer_harness.mrml_environment()["scene"]
    old = scene.GetSingletonNode("NeonatalLungSeg", "vtkMRMLScriptedModuleNode")
    if old is not None:  # a parameter node an earlier test's widget was bound to
        scene.RemoveNode(old)
    volume = makeVolume(scene)
    logic = module.NeonatalLungSegLogic()
    ticks = itertools.count(0, 10)  # every modification event is a new operation unless the module made it
    logic.edits.clock = lambda: next(ticks)
    editor = None
    try:
        parameterNode = logic.getParameterNode()
        parameterNode.inputVolume = volume
        parameterNode.modelFolder = str(tiny_model_folder)
        parameterNode.device = "CPU"
        outputs = logic.segment(parameterNode, timeout=300)
        segmentation = outputs.segmentationNode
        segmentPid = logic.runner.workerPid
        assert aiCorrect.correctionRecord(segmentation)["ai_clicks"] == 0
        editor = segmentEditing.SegmentEditorSession(scene, segmentation, volume)  # Slicer's editor logic + history
        undoSaves = []

        def saveStateForUndo():
            undoSaves.append(True)
            editor.logic.SaveStateForUndo()

        correction = logic.startAICorrection(segmentation, volume, str(tiny_refine_folder), "CPU", saveStateForUndo)
        right0, left0 = masks(segmentation, volume)
        labels0 = aiCorrect.currentLabels(segmentation, volume)
        # Add: a voxel no lung holds yet, beside the block on the patient's right (high i).
        k, j, i = next(tuple(int(v) for v in p) for p in np.argwhere(labels0 == 0) if p[0] == 5 and p[2] > 16)
        assert correction.click(rasOf(volume, (k, j, i)), True, None)
        assert not correction.click(rasOf(volume, (k, j, i)), True)  # one click at a time
        first = correction.wait(300)
        assert first is not None and first.positive and first.changed_voxels > 0 and first.lung
        assert logic.runner.workerPid == segmentPid and logic.runner.startedWorkers == 1  # the Segment worker
        right1, left1 = masks(segmentation, volume)
        value = first.label_names[first.lung]
        edited, other = (right1, left1) if first.lung == "right_lung" else (left1, right1)
        assert np.array_equal(edited, first.labels == value)
        assert np.array_equal(other, (left0 if first.lung == "right_lung" else right0))  # other lung untouched
        assert int(edited.sum()) - int((right0 if first.lung == "right_lung" else left0).sum()) == first.changed_voxels
        assert len(undoSaves) == 1

        # Remove: a voxel of the lung just edited, with that lung active.
        target = tuple(int(v) for v in np.argwhere(edited)[len(np.argwhere(edited)) // 2])
        assert correction.click(rasOf(volume, target), False, first.lung)
        # While the worker is busy the reviewer paints one voxel of that lung far from the click: kept.
        stroke = (0, 0, 0) if labels0[0, 0, 0] == 0 else (9, 23, 31)
        editor.paint(SEGMENT_NAMES[first.lung], tuple(slice(v, v + 1) for v in stroke))
        undoSaves.clear()
        second = correction.wait(300)
        assert not second.positive and second.lung == first.lung and second.changed_voxels > 0
        assert second.session == first.session and second.load_count == 2  # prepared once, each model loaded once
        right2, left2 = masks(segmentation, volume)
        expected = second.labels == value
        expected[stroke] = True
        assert np.array_equal(right2 if first.lung == "right_lung" else left2, expected)
        assert len(undoSaves) == 1
        assert aiCorrect.correctionRecord(segmentation)["manual_edits"] == 1  # the stroke; module writes are none

        editor.undo()  # one undo step: back to the state before the last click (the stroke kept)
        rightU, leftU = masks(segmentation, volume)
        edited1 = (right1 if first.lung == "right_lung" else left1).copy()
        edited1[stroke] = True
        assert np.array_equal(rightU if first.lung == "right_lung" else leftU, edited1)
        assert np.array_equal(leftU if first.lung == "right_lung" else rightU, other)
        # A manual stroke after the undo: one Segment Editor operation (the undo itself is not an edit).
        empty = tuple(int(v) for v in np.argwhere(aiCorrect.currentLabels(segmentation, volume) == 0)[0])
        editor.paint(mrmlNodes.LEFT_LUNG, tuple(slice(v, v + 1) for v in empty))

        result = logic.exportForTraining(segmentation, volume, tmp_path / "training", "Dr Click")
        record = result.sidecar["correction"]
        assert (record["ai_clicks"], record["ai_clicks_add"], record["ai_clicks_remove"]) == (2, 1, 1)
        assert record["manual_edits"] == 2 and "SourceRepresentationModified" in record["manual_edits_counted"]
        assert 0.0 <= result.sidecar["changes_from_ai"]["dice"]["lungs"] <= 1.0
        rightE, leftE = masks(segmentation, volume)
        assert np.array_equal(result.label == 1, rightE) and np.array_equal(result.label == 2, leftE)
        folder = read_training_folder(tmp_path / "training")
        assert folder.read_sidecar(folder.cases[0])["correction"] == record
    finally:
        if editor is not None:
            editor.close()
        logic.close()


def test_export_of_a_segmentation_from_elsewhere_records_no_correction(module, tmp_path):
    """A segmentation this module did not make (e.g. an older scene) has nothing counted: `correction` null."""
    scene = slicer_harness.mrml_environment()["scene"]
    volume = makeVolume(scene, "elsewhere")
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "made elsewhere")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    for name, block in (("Right lung", slice(3, 13)), ("Left lung", slice(19, 29))):
        segmentId = segmentation.GetSegmentation().AddEmptySegment("", name)
        mask = np.zeros((10, 24, 32), np.uint8)
        mask[2:8, 6:18, block] = 1
        slicer.util.updateSegmentBinaryLabelmapFromArray(mask, segmentation, segmentId, volume)
    logic = module.NeonatalLungSegLogic()
    try:
        result = logic.exportForTraining(segmentation, volume, tmp_path / "t", "Dr Old")
    finally:
        logic.close()
    assert result.sidecar["correction"] is None and result.sidecar["changes_from_ai"] is None


def test_edit_counter_merges_the_events_of_one_operation_and_skips_module_writes(module):
    """A paint over the other lung fires two SourceRepresentationModified events: one edit. Strokes further
    apart than EDIT_MERGE_SECONDS are separate edits; writes inside moduleWrite() are none."""
    from NeonatalLungSegSlicerLib import segmentEditing
    from NeonatalLungSegSlicerLib.correcting import aiCorrect

    scene = slicer_harness.mrml_environment()["scene"]
    volume = makeVolume(scene, "edit counting")
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "counted")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    right = segmentation.GetSegmentation().AddEmptySegment("", "Right lung")
    segmentation.GetSegmentation().AddEmptySegment("", "Left lung")
    aiCorrect.resetCorrectionRecord(segmentation)
    now = [0.0]
    counter = aiCorrect.EditCounter(clock=lambda: now[0])
    counter.watch(segmentation)
    counter.watch(segmentation)  # watching twice observes once
    editor = segmentEditing.SegmentEditorSession(scene, segmentation, volume)
    try:
        editor.paint("Left lung", (slice(3, 5), slice(6, 12), slice(20, 26)))
        editor.paint("Right lung", (slice(3, 5), slice(6, 12), slice(22, 28)))  # over the left lung: 2 events
        assert aiCorrect.correctionRecord(segmentation)["manual_edits"] == 1  # all within one instant
        now[0] += 2 * aiCorrect.EDIT_MERGE_SECONDS
        editor.erase("Right lung", (slice(3, 4), slice(6, 8), slice(22, 24)))
        assert aiCorrect.correctionRecord(segmentation)["manual_edits"] == 2
        now[0] += 2 * aiCorrect.EDIT_MERGE_SECONDS
        with counter.moduleWrite():
            slicer.util.updateSegmentBinaryLabelmapFromArray(np.zeros((10, 24, 32), np.uint8), segmentation, right,
                                                             volume)
        assert aiCorrect.correctionRecord(segmentation)["manual_edits"] == 2
        counter.unwatchAll()
        now[0] += 2 * aiCorrect.EDIT_MERGE_SECONDS
        editor.erase("Left lung", (slice(3, 4), slice(6, 8), slice(20, 22)))
        assert aiCorrect.correctionRecord(segmentation)["manual_edits"] == 2  # no longer watched
    finally:
        editor.close()
        scene.RemoveNode(segmentation)
        scene.RemoveNode(volume)


def test_image_contrast_switch_of_the_logic_decides_what_a_remove_click_may_use(module, tiny_refine_folder):
    """Dark lungs in bright tissue, the right lung's segment carried into the tissue below it: a remove click
    there is widened by the image contrast when AI correct starts with the switch on, never when off."""
    scene = slicer_harness.mrml_environment()["scene"]
    array = np.zeros((12, 40, 40), np.int16)
    array[:, 4:38, 2:38] = 200                                       # body tissue
    lungs = np.zeros(array.shape, np.uint8)
    lungs[2:10, 12:28, 5:17] = 1
    lungs[2:10, 12:28, 23:35] = 2
    array[lungs > 0] = 20                                            # aerated lungs
    lungs[3:9, 28:33, 5:17] = 1                                      # carried into the tissue
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "carried into tissue")
    slicer.util.updateVolumeFromArray(volume, array)
    volume.SetSpacing(1.0, 1.0, 2.0)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "carried")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    ids = {value: segmentation.GetSegmentation().AddEmptySegment("", name)
           for value, name in ((1, "Right lung"), (2, "Left lung"))}
    logic = module.NeonatalLungSegLogic()
    try:
        for switch in (True, False):
            for value, segmentId in ids.items():  # the same starting segmentation each time
                slicer.util.updateSegmentBinaryLabelmapFromArray((lungs == value).astype(np.uint8), segmentation,
                                                                 segmentId, volume)
            correction = logic.startAICorrection(segmentation, volume, str(tiny_refine_folder), "CPU",
                                                 imageContrast=switch)
            assert correction.click(rasOf(volume, (6, 30, 10)), False, "right_lung")
            result = correction.wait(300)
            assert result.lung == "right_lung" and not result.positive and result.changed_voxels > 0
            assert result.image_contrast is switch
    finally:
        logic.close()
        scene.RemoveNode(segmentation)
        scene.RemoveNode(volume)
