"""The module's self-test, shared by Slicer's test runner and the CI tests (which run it on slicer-core MRML).

It does what a new user does: load the bundled sample, Segment with the bundled model, look at the result,
correct it with Segment Editor strokes (erase a slab, paint a box), export for retraining twice, and checks
every step against numbers computed independently here.
"""

import json
import tempfile
from pathlib import Path

import numpy as np
import vtk

import slicer

from NeonatalLungSegSlicerLib import mrmlNodes, resources, segmentEditing

REFERENCE_FILE = "sample-neonatal-chest_reference-lungs.nii.gz"


def _referenceLabels():
    """The sample's reference labels (from the synthetic generator) as a (k, j, i) array, or None."""
    import SimpleITK as sitk

    path = resources.samplePath().with_name(REFERENCE_FILE)
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path))) if path.is_file() else None


def correctionRegions(right, left, geometry):
    """An axial slab through the middle of the right lung (to erase) and a box straddling the left lung's
    outer edge on its middle slice (to paint), as (k, j, i) index tuples; plus the masks they leave."""
    from NeonatalLungSegLib.dataset.review import axial_array_axis

    axis = axial_array_axis(geometry)
    rightSlices = np.flatnonzero(right.any(axis=tuple(a for a in range(3) if a != axis)))
    middle = int(rightSlices[len(rightSlices) // 2])
    erase = [slice(None)] * 3
    erase[axis] = slice(middle - 1, middle + 2)
    erase = tuple(erase)

    centre = np.round(np.argwhere(left).mean(axis=0)).astype(int)
    rightCentreI = np.argwhere(right).mean(axis=0)[2]
    row = left[centre[0], centre[1], :]
    hits = np.flatnonzero(row)
    # The end of the row away from the right lung is the left lung's outer edge.
    outward = 1 if abs(hits[-1] - rightCentreI) > abs(hits[0] - rightCentreI) else -1
    edge = hits[-1] if outward > 0 else hits[0]
    iRange = slice(edge - 2, edge + 5) if outward > 0 else slice(edge - 4, edge + 3)
    paint = (slice(centre[0] - 2, centre[0] + 2), slice(centre[1] - 3, centre[1] + 3), iRange)
    expectedRight = right.copy()
    expectedRight[erase] = False
    expectedLeft = left.copy()
    expectedLeft[paint] = True
    return erase, paint, expectedRight, expectedLeft


def correctSegmentation(scene, segmentationNode, volumeNode):
    """Erase + paint through vtkSlicerSegmentEditorLogic; returns (expected right, expected left, regions)."""
    masks = mrmlNodes.segmentArrays(segmentationNode, volumeNode, (mrmlNodes.RIGHT_LUNG, mrmlNodes.LEFT_LUNG))
    right, left = masks[mrmlNodes.RIGHT_LUNG], masks[mrmlNodes.LEFT_LUNG]
    erase, paint, expectedRight, expectedLeft = correctionRegions(right, left, mrmlNodes.volumeGeometry(volumeNode))
    if right[paint].any():
        raise AssertionError("the painted box would touch the right lung; the sample's anatomy changed")
    segmentEditing.eraseSlabAndPaintBox(scene, segmentationNode, volumeNode, mrmlNodes.RIGHT_LUNG, erase,
                                        mrmlNodes.LEFT_LUNG, paint)
    return expectedRight, expectedLeft, erase, paint


def checkPrerequisites(test):
    """Skip (``test.skipTest``, with the reason) where the self-test cannot run, instead of failing.

    A build machine's ctest (testing mode) has no torch and nobody to agree to a download of several GB,
    so it skips naming what is missing; run interactively (Reload and Test) the user is asked to install.
    """
    from NeonatalLungSegSlicerLib.environment import compatibility, dependencies

    unsupported = compatibility.unsupportedMessage()
    if unsupported:
        test.skipTest(unsupported)
    torchMissing, otherMissing = dependencies.missingDependencies()
    if not torchMissing and not otherMissing:
        return
    missing = ", ".join(r.describe() for r in (*torchMissing, *otherMissing))
    if slicer.app.testingEnabled():
        test.skipTest(f"NeonatalLungSeg self-test skipped: these Python packages are missing and are not "
                      f"installed in testing mode: {missing}. Click Segment once in the module to install them.")
    if not dependencies.ensureDependencies(lambda text: slicer.util.confirmOkCancelDisplay(text)):
        test.skipTest(f"NeonatalLungSeg self-test skipped: the user declined installing {missing}.")


def aiCorrectStep(test, logic, scene, segmentationNode, volumeNode, erase, aiRight, refineModelFolder):
    """One AI correct click in the erased slab of the right lung (add), then the Segment Editor's undo.

    Checks what holds for any refine model: the click edits the right lung only (the selected lung), adds
    where there was no lung, is one undo step, and the undo restores the segmentation exactly."""
    before = mrmlNodes.segmentArrays(segmentationNode, volumeNode, (mrmlNodes.RIGHT_LUNG, mrmlNodes.LEFT_LUNG))
    erased = np.zeros_like(aiRight)
    erased[erase] = True
    kji = np.argwhere(erased & aiRight)
    k, j, i = (int(v) for v in kji[len(kji) // 2])
    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(matrix)
    ras = (slicer.util.arrayFromVTKMatrix(matrix) @ np.array([i, j, k, 1.0]))[:3]
    editor = segmentEditing.SegmentEditorSession(scene, segmentationNode, volumeNode)
    try:
        correction = logic.startAICorrection(segmentationNode, volumeNode, str(refineModelFolder), "auto",
                                             saveStateForUndo=editor.logic.SaveStateForUndo)
        test.assertTrue(correction.click(ras, True, "right_lung"))
        result = correction.wait(600)
        test.assertEqual((result.lung, result.positive), ("right_lung", True))
        after = mrmlNodes.segmentArrays(segmentationNode, volumeNode, (mrmlNodes.RIGHT_LUNG, mrmlNodes.LEFT_LUNG))
        test.assertTrue(np.array_equal(after[mrmlNodes.LEFT_LUNG], before[mrmlNodes.LEFT_LUNG]))
        added = after[mrmlNodes.RIGHT_LUNG] & ~before[mrmlNodes.RIGHT_LUNG]
        test.assertEqual(int(added.sum()), result.changed_voxels)
        test.assertTrue(result.changed_voxels > 0)
        test.assertFalse((before[mrmlNodes.RIGHT_LUNG] & ~after[mrmlNodes.RIGHT_LUNG]).any())  # an add removes none
        editor.undo()
        undone = mrmlNodes.segmentArrays(segmentationNode, volumeNode, (mrmlNodes.RIGHT_LUNG, mrmlNodes.LEFT_LUNG))
        for name in undone:
            test.assertTrue(np.array_equal(undone[name], before[name]), name)
    finally:
        editor.close()
    return result


def run(test, logic, refineModelFolder=None):
    """Run the whole scenario; ``test`` is a unittest.TestCase (ScriptedLoadableModuleTest in Slicer).

    The AI correct step runs when a click-refinement model is there (``refineModelFolder``, by default the
    bundled one, which may not be installed yet)."""
    scene = slicer.mrmlScene
    test.delayDisplay("Loading the bundled sample")
    volumeNode = resources.loadSampleVolume(scene)

    test.delayDisplay("Segmenting with the bundled model")
    parameterNode = logic.getParameterNode()
    parameterNode.inputVolume = volumeNode
    parameterNode.modelFolder = str(resources.defaultModelFolder())
    parameterNode.reviewSliceCount = 5
    outputs = logic.segment(parameterNode)
    segmentationNode = outputs.segmentationNode
    names = [segmentationNode.GetSegmentation().GetNthSegment(i).GetName()
             for i in range(segmentationNode.GetSegmentation().GetNumberOfSegments())]
    test.assertEqual(names, [mrmlNodes.RIGHT_LUNG, mrmlNodes.LEFT_LUNG])
    masks = mrmlNodes.segmentArrays(segmentationNode, volumeNode, names)
    reference = _referenceLabels()
    if reference is not None:
        from NeonatalLungSegLib.inference.measure import dice

        for value, name in enumerate(names, start=1):
            test.assertGreaterEqual(dice(masks[name], reference == value), 0.95, name)
    voxelMl = float(np.prod(volumeNode.GetSpacing())) / 1000.0
    table = mrmlNodes.tableVolumes(outputs.tableNode)
    for name in names:
        test.assertEqual(table[name][1], int(np.count_nonzero(masks[name])))
        test.assertAlmostEqual(table[name][0], np.count_nonzero(masks[name]) * voxelMl, places=2)
    test.assertEqual(len(outputs.reviewSlices), 5)

    test.delayDisplay("Correcting with the Segment Editor logic: erase a slab, paint a box")
    expectedRight, expectedLeft, erase, _ = correctSegmentation(scene, segmentationNode, volumeNode)
    corrected = mrmlNodes.segmentArrays(segmentationNode, volumeNode, names)
    test.assertTrue(np.array_equal(corrected[mrmlNodes.RIGHT_LUNG], expectedRight))
    test.assertTrue(np.array_equal(corrected[mrmlNodes.LEFT_LUNG], expectedLeft))

    test.delayDisplay("Exporting for retraining, twice")
    folder = Path(tempfile.mkdtemp(prefix="NeonatalLungSegSelfTest-"))
    first = logic.exportForTraining(segmentationNode, volumeNode, folder, "Self-test")
    test.assertTrue(np.array_equal(first.label == 1, expectedRight))
    test.assertTrue(np.array_equal(first.label == 2, expectedLeft))
    changes = first.sidecar["changes_from_ai"]
    test.assertEqual(changes["voxels_removed"]["right_lung"], int(np.count_nonzero(masks[names[0]] & ~expectedRight)))
    test.assertEqual(changes["voxels_added"]["left_lung"], int(np.count_nonzero(expectedLeft & ~masks[names[1]])))
    firstBytes = first.label_path.read_bytes()
    second = logic.exportForTraining(segmentationNode, volumeNode, folder, "Self-test")
    test.assertEqual((first.record.version, second.record.version), (1, 2))
    test.assertEqual(first.label_path.read_bytes(), firstBytes)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    test.assertEqual(len(manifest["cases"]), 2)
    refineModelFolder = Path(refineModelFolder or resources.defaultRefineModelFolder())
    click = None
    if (refineModelFolder / "model.json").is_file():
        test.delayDisplay("AI correct: one click in the erased slab, then undo")
        click = aiCorrectStep(test, logic, scene, segmentationNode, volumeNode, erase, masks[names[0]],
                              refineModelFolder)
    else:
        test.delayDisplay(f"AI correct step skipped: no click-refinement model at {refineModelFolder}")
    test.delayDisplay(f"Self-test passed; exported to {folder}")
    return {"volume": volumeNode, "outputs": outputs, "folder": folder, "exports": (first, second), "click": click}
