"""The module's Logic: segment, measure, export. No widgets, no dialogs: questions go through callbacks.

Segmentation runs in a separate worker process (``processRunner``), never on a thread of the Slicer
process; the Logic keeps that worker between runs (the model stays loaded) and stops it in ``close()``.
"""

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic

from NeonatalLungSegSlicerLib import dependencies, pipeline
from NeonatalLungSegSlicerLib.parameters import NeonatalLungSegParameterNode

EDITOR_NODE_TAG = "NeonatalLungSeg"


class NeonatalLungSegLogic(ScriptedLoadableModuleLogic):
    """``runner`` is anything with ``start(request) -> job`` and ``close()`` (default: the worker process)."""

    def __init__(self, runner=None):
        ScriptedLoadableModuleLogic.__init__(self)
        if runner is None:
            from NeonatalLungSegSlicerLib.processRunner import ProcessRunner

            runner = ProcessRunner()
        self.runner = runner

    def getParameterNode(self):
        return NeonatalLungSegParameterNode(super().getParameterNode())

    def getSegmentEditorNode(self, scene=None):
        """The module's own segment editor node (a scene singleton, so a scene close/load keeps one)."""
        scene = scene or slicer.mrmlScene
        node = scene.GetSingletonNode(EDITOR_NODE_TAG, "vtkMRMLSegmentEditorNode")
        if node is None:
            node = scene.CreateNodeByClass("vtkMRMLSegmentEditorNode")
            node.UnRegister(None)
            node.SetSingletonTag(EDITOR_NODE_TAG)
            node = scene.AddNode(node)
        return node

    def ensureDependencies(self, confirm, busy=None):
        """See ``dependencies.ensureDependencies``; ``busy(True/False)`` brackets any installation."""
        return dependencies.ensureDependencies(confirm, busy=busy)

    def startSegmentation(self, parameterNode):
        """Send the input to the worker process; returns the job (``poll()``, ``progress``, ``done``,
        ``cancel()``, ``result()``), to be polled from the GUI timer."""
        return self.runner.start(pipeline.makeRequest(parameterNode))

    def finishSegmentation(self, job, parameterNode=None):
        """On the GUI thread once ``job.done``: build the nodes (re-raises the job's error or Cancelled)."""
        result = job.result()
        outputs = pipeline.applyResult(slicer.mrmlScene, job.request, result, result.model, result.confidence)
        if parameterNode is not None:
            parameterNode.outputSegmentation = outputs.segmentationNode
            parameterNode.volumeTable = outputs.tableNode
            parameterNode.probabilityVolume = outputs.probabilityNode
        return outputs

    def segment(self, parameterNode, timeout=None):
        """Blocking Segment for scripts and tests: start, wait, finish."""
        job = self.startSegmentation(parameterNode)
        if not job.wait(timeout):
            job.cancel()
        return self.finishSegmentation(job, parameterNode)

    def close(self):
        """Stop the worker process and wait for it (module reload, application exit)."""
        self.runner.close()

    def updateVolumeTable(self, segmentationNode, volumeNode):
        return pipeline.updateVolumeTable(slicer.mrmlScene, segmentationNode, volumeNode)

    def exportForTraining(self, segmentationNode, volumeNode, trainingFolder, reviewer, reviewStatus="reviewed"):
        if segmentationNode is None or volumeNode is None:
            raise ValueError("Select the segmentation to export and its input volume.")
        return pipeline.exportForTraining(slicer.mrmlScene, segmentationNode, volumeNode, trainingFolder, reviewer,
                                          reviewStatus)

    def showIn3D(self, segmentationNode):
        """Build the closed surfaces once, on request (not on every result: they regenerate on every stroke)."""
        if segmentationNode is None:
            return False
        segmentationNode.CreateClosedSurfaceRepresentation()
        displayNode = segmentationNode.GetDisplayNode()
        if displayNode is not None:
            displayNode.SetVisibility3D(True)
        return True

    def jumpToSlice(self, ras):
        slicer.vtkMRMLSliceNode.JumpAllSlices(slicer.mrmlScene, *ras, slicer.vtkMRMLSliceNode.CenteredJumpSlice)
