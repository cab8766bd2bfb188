"""The module's Logic: segment, measure, export, improve the model. No widgets, no dialogs: questions go
through callbacks.

Segmentation runs in a separate worker process (``processRunner``), never on a thread of the Slicer
process; the Logic keeps that worker between runs (the model stays loaded) and stops it in ``close()``.
*Improve model* runs ``improve`` in a process of its own (``improvement.Improver``), so Segment goes on
beside it; the Logic holds the run, so it outlives a collapsed panel or another module being shown.
"""

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic

from NeonatalLungSegSlicerLib import mrmlNodes, pipeline
from NeonatalLungSegSlicerLib.correcting import aiCorrect
from NeonatalLungSegSlicerLib.environment import dependencies
from NeonatalLungSegSlicerLib.improving import improvement
from NeonatalLungSegSlicerLib.parameters import NeonatalLungSegParameterNode

EDITOR_NODE_TAG = "NeonatalLungSeg"


class NeonatalLungSegLogic(ScriptedLoadableModuleLogic):
    """``runner`` is anything with ``start(request) -> job`` and ``close()`` (default: the worker process);
    ``improver`` runs ``improve`` (default: ``improvement.Improver()``; tests pass one with a fake command)."""

    def __init__(self, runner=None, improver=None):
        ScriptedLoadableModuleLogic.__init__(self)
        if runner is None:
            from NeonatalLungSegSlicerLib.processRunner import ProcessRunner

            runner = ProcessRunner()
        self.runner = runner
        self.edits = aiCorrect.EditCounter()  # the reviewer's own edits, for the export's correction record
        self.improver = improver if improver is not None else improvement.Improver()
        self.improveOutcome = None  # the last finished improvement (improvement.Outcome)
        self._improveTable = None  # reused by the next improvement's table

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
        return mrmlNodes.runSteps(self.finishSegmentationSteps(job, parameterNode))

    def finishSegmentationSteps(self, job, parameterNode=None):
        """``finishSegmentation`` as a generator, one short step per ``next()`` (the GUI timer runs one per tick,
        so a large result never blocks Slicer long); its return value is the outputs. The job's arrays are
        released once they are in the scene."""
        result = job.result()
        steps = pipeline.applyResultSteps(slicer.mrmlScene, job.request, result, result.model, result.confidence)
        while True:
            try:
                with self.edits.moduleWrite():
                    next(steps)
            except StopIteration as done:
                outputs = done.value
                break
            yield
        result.labels = result.probabilities = None  # in the scene now: the Slicer process holds no job array
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
        """Stop the worker process and wait for it, and cancel a running improvement, removing what it wrote
        (module reload, application exit)."""
        self.edits.unwatchAll()
        self.runner.close()
        self.improver.close()

    @property
    def improveJob(self):
        """The running or last ``improve`` run (``improve_process.ImproveRun``), or None."""
        return self.improver.job

    def startImprove(self, parameterNode):
        """Fine-tune the selected model on the training folder's reviewed cases, in its own process; returns
        the run at once, to be polled from the GUI timer. Bad input raises one line and starts nothing."""
        job = self.improver.start(parameterNode.trainingFolder, parameterNode.modelFolder,
                                  parameterNode.improveMinutes, parameterNode.device)
        self.improveOutcome = None
        return job

    def cancelImprove(self):
        """Kill the run's process tree now; its folders and registry entries are removed (as before Start)."""
        self.improver.cancel()

    def finishImprove(self, job, parameterNode=None):
        """Once ``job.done``: the before/after table and decision (re-raises the run's error or Cancelled). A
        promoted model is the registry's default now, so the panel selects it too."""
        self.improveOutcome = improvement.outcomeOf(slicer.mrmlScene, job, self._improveTable)
        self._improveTable = self.improveOutcome.table
        if self.improveOutcome.promoted and parameterNode is not None:
            parameterNode.modelFolder = str(self.improveOutcome.folder)
        return self.improveOutcome

    def useModel(self, parameterNode, folder):
        """One click: ``folder`` becomes the default model (registry, so the CLI's too) and the selected one."""
        improvement.makeDefault(folder)
        if parameterNode is not None:
            parameterNode.modelFolder = str(folder)

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
