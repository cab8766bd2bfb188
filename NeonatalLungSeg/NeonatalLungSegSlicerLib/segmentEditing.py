"""Edits through Slicer's own segment editor logic, as a reviewer's erase and paint strokes would make them.

The self-test and the CI tests correct the AI result this way rather than by writing arrays into segments,
so what they export is what the real Segment Editor path produces (modifier labelmaps, masking, undo
history). ``vtkSlicerSegmentEditorLogic`` is the C++ core behind the Segment Editor (Slicer >= 5.10, the
module's minimum: compatibility.py).
"""

from vtk.util.numpy_support import vtk_to_numpy

import slicer


def segmentEditorLogicAvailable():
    return hasattr(slicer, "vtkSlicerSegmentEditorLogic")


class SegmentEditorSession:
    """Edit one segmentation on one source volume, with undo through ``vtkSegmentationHistory``."""

    def __init__(self, scene, segmentationNode, sourceVolumeNode):
        if not segmentEditorLogicAvailable():
            raise RuntimeError("this Slicer has no vtkSlicerSegmentEditorLogic (needs Slicer 5.10 or later)")
        self.segmentationNode = segmentationNode
        self.editorNode = scene.AddNewNodeByClass("vtkMRMLSegmentEditorNode")
        self.logic = slicer.vtkSlicerSegmentEditorLogic()
        self.logic.SetMRMLScene(scene)
        self.logic.SetSegmentEditorNode(self.editorNode)
        self.logic.SetSegmentationNode(segmentationNode)
        self.logic.SetSourceVolumeNode(sourceVolumeNode)
        self.history = slicer.vtkSegmentationHistory()
        self.history.SetSegmentation(segmentationNode.GetSegmentation())
        self.logic.SetSegmentationHistory(self.history)
        self._scene = scene

    def _segmentId(self, segmentName):
        segmentId = self.segmentationNode.GetSegmentation().GetSegmentIdBySegmentName(segmentName)
        if not segmentId:
            raise ValueError(f"no segment named '{segmentName}'")
        return segmentId

    def _modifier(self, region):
        """A blank modifier labelmap on the source grid with ``region`` (a (k, j, i) index tuple) set to 1."""
        self.logic.ResetModifierLabelmapToDefault()
        modifier = self.logic.GetModifierLabelmap()
        dims = modifier.GetDimensions()
        view = vtk_to_numpy(modifier.GetPointData().GetScalars()).reshape(dims[2], dims[1], dims[0])
        view[...] = 0
        view[region] = 1
        modifier.Modified()
        return modifier

    def _apply(self, segmentName, region, mode):
        segmentId = self._segmentId(segmentName)
        self.logic.SetCurrentSegmentID(segmentId)
        self.logic.SaveStateForUndo()
        self.logic.ModifySegmentByLabelmap(self.segmentationNode, segmentId, self._modifier(region), mode, True,
                                           False)

    def erase(self, segmentName, region):
        """Remove ``region`` from the segment (the Erase effect)."""
        self._apply(segmentName, region, self.logic.ModificationModeRemove)

    def paint(self, segmentName, region):
        """Add ``region`` to the segment (the Paint effect); other segments give way as the editor node's
        overwrite mode says (Slicer's default: painted voxels leave every other segment)."""
        self._apply(segmentName, region, self.logic.ModificationModeAdd)

    def replace(self, segmentName, region):
        """Make the segment exactly ``region`` (a (k, j, i) index tuple or boolean mask on the source grid),
        as a reviewer redrawing it would; other segments give way where it is set."""
        self._apply(segmentName, region, self.logic.ModificationModeSet)

    def undo(self):
        self.logic.Undo()

    def close(self):
        self._scene.RemoveNode(self.editorNode)


def eraseSlabAndPaintBox(scene, segmentationNode, sourceVolumeNode, eraseSegment, eraseRegion, paintSegment,
                         paintRegion):
    """The standard correction of the self-test and CI: erase a slab from one lung, paint a box into another."""
    session = SegmentEditorSession(scene, segmentationNode, sourceVolumeNode)
    try:
        session.erase(eraseSegment, eraseRegion)
        session.paint(paintSegment, paintRegion)
    finally:
        session.close()



def replaceSegmentsWithLabels(scene, segmentationNode, sourceVolumeNode, labels, segmentValues):
    """Redraw every segment from a label array on the source grid: ``segmentValues`` maps segment name to
    label value. What a reviewer does who corrects the AI result into a reference (e.g. to replay reference
    labels through the module's export), through the same editor logic as paint and erase strokes."""
    session = SegmentEditorSession(scene, segmentationNode, sourceVolumeNode)
    try:
        for name, value in segmentValues.items():
            session.replace(name, labels == value)
    finally:
        session.close()
