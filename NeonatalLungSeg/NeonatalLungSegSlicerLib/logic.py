"""The module's Logic: segment, measure, export. No widgets, no dialogs: questions go through callbacks.

Segmentation runs in a separate worker process (``processRunner``), never on a thread of the Slicer
process; the Logic keeps that worker between runs (the model stays loaded) and stops it in ``close()``.
"""

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic

from NeonatalLungSegSlicerLib import aiCorrect, dependencies, pipeline
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
        self.edits = aiCorrect.EditCounter()  # the reviewer's own edits, for the export's correction record

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
        with self.edits.moduleWrite():
            outputs = pipeline.applyResult(slicer.mrmlScene, job.request, result, result.model, result.confidence)
        aiCorrect.resetCorrectionRecord(outputs.segmentationNode)
        self.edits.watch(outputs.segmentationNode)
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

    def startAICorrection(self, segmentationNode, volumeNode, modelFolder, device="auto",
                          saveStateForUndo=lambda: None, imageContrast=True):
        """The click flow of AI correct on this segmentation (``aiCorrect.AICorrection``), in the same worker
        process as Segment. ``saveStateForUndo`` is the Segment Editor's (one undo step per click);
        ``imageContrast`` False keeps remove clicks to the network alone (the engine's switch)."""
        self.edits.watch(segmentationNode)
        return aiCorrect.AICorrection(self.runner, segmentationNode, volumeNode, modelFolder,
                                      pipeline.engineDevice(device), saveStateForUndo, self.edits, imageContrast)

    def watchEdits(self, segmentationNode):
        """Count the reviewer's edits of a segmentation this module made (e.g. one from a loaded scene)."""
        if segmentationNode is not None and aiCorrect.correctionRecord(segmentationNode) is not None:
            self.edits.watch(segmentationNode)

    def close(self):
        """Stop the worker process and wait for it (module reload, application exit)."""
        self.edits.unwatchAll()
        self.runner.close()

    def updateVolumeTable(self, segmentationNode, volumeNode):
        return pipeline.updateVolumeTable(slicer.mrmlScene, segmentationNode, volumeNode)

    def exportForTraining(self, segmentationNode, volumeNode, trainingFolder, reviewer, reviewStatus="reviewed"):
        if segmentationNode is None or volumeNode is None:
            raise ValueError("Select the segmentation to export and its input volume.")
        return pipeline.exportForTraining(slicer.mrmlScene, segmentationNode, volumeNode, trainingFolder, reviewer,
                                          reviewStatus,
                                          extra={"correction": aiCorrect.correctionRecord(segmentationNode)})

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
