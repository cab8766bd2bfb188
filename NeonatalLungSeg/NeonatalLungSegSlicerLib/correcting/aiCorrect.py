"""AI correct: a click in a slice view -> one refine request to the worker -> one lung segment updated.

MRML only (no Qt), so the whole click path is tested on slicer-core's real MRML with a real worker process;
the front end is the Segment Editor effect (``aiCorrectEffect.py``): Slicer's effect machinery hands it the
clicks of every slice view, it calls ``AICorrection.click`` and polls from its timer.

Why each step is done this way:
- The click arrives in RAS (Slicer's world). A volume and segmentation under one parent transform get it
  through that transform's inverse (any transform, linear or not); under different transforms the click is
  refused with one message. It then goes through ``geometry.lps_to_ras`` (the project's one LPS/RAS
  conversion) and ``clicks.click_from_dict`` (the engine's one point-to-voxel rule), so a click lands on the
  same voxel as a click given to the CLI.
- The labels sent with each click are read from the segmentation *as it is now* (the reviewer may have
  painted since the last click), by segment name, on the input volume's grid, from each segment's own
  labelmap extent (``labelmaps.readLabels``: no whole-volume conversion).
- Only the clicked lung's segment is written back (the engine never changes the other lung), and only the
  click's own change (voxels added or removed against the labels sent), inside the box that changed
  (``labelmaps.modifyBox``), so a stroke painted while the worker was busy survives and no other segment is
  touched; the result stays an ordinary segmentation that the Segment Editor edits as before.
- The result is taken in over two timer ticks (the worker's answer is read in one, written into the segment
  in the next), so neither blocks Slicer's main thread long on a large volume.
- Each click that changes something is one undo step: ``saveStateForUndo`` (the Segment Editor's own, in
  Slicer ``qMRMLSegmentEditorWidget.saveStateForUndo``) is called right before the segment is written, as
  every Segment Editor effect does before it modifies a segment.
"""

import json
import time
from contextlib import contextmanager

import numpy as np
import vtk

import slicer

from NeonatalLungSegSlicerLib import labelmaps, mrmlNodes

LUNG_OF_SEGMENT = {mrmlNodes.RIGHT_LUNG: "right_lung", mrmlNodes.LEFT_LUNG: "left_lung"}
SEGMENT_OF_LUNG = {lung: name for name, lung in LUNG_OF_SEGMENT.items()}
CLICKS_ATTRIBUTE = "NeonatalLungSeg.AIClicks"        # {"add": n, "remove": m}: AI clicks answered since Segment
EDITS_ATTRIBUTE = "NeonatalLungSeg.ManualEdits"      # Segment Editor operations since Segment (EditCounter)
EDIT_MERGE_SECONDS = 0.5  # modification events closer than this belong to one editing operation
EDIT_COUNT_METHOD = ("operations that modified a segment's labelmap other than Segment and AI clicks "
                     f"(SourceRepresentationModified events, those less than {EDIT_MERGE_SECONDS} s apart "
                     "counted as one operation; undo and redo restore states and are not counted)")


def worldToLocal(volumeNode, segmentationNode, ras):
    """World RAS -> the RAS of the volume's own frame (before its parent transform). Both nodes must sit under
    the same parent transform (or none): ValueError, one line, otherwise."""
    volumeParent = volumeNode.GetParentTransformNode()
    segmentationParent = segmentationNode.GetParentTransformNode() if segmentationNode is not None else None
    if segmentationNode is not None and volumeNode.GetTransformNodeID() != segmentationNode.GetTransformNodeID():
        def where(node):
            return f"under transform '{node.GetName()}'" if node is not None else "under no transform"

        raise ValueError(f"AI correct needs the volume and the segmentation under the same transform: volume "
                         f"'{volumeNode.GetName()}' is {where(volumeParent)}, segmentation "
                         f"'{segmentationNode.GetName()}' {where(segmentationParent)}. Harden or move one of "
                         "them (Data module) and click again.")
    if volumeParent is None:
        return np.array([float(v) for v in ras])
    transform = vtk.vtkGeneralTransform()
    slicer.vtkMRMLTransformNode.GetTransformBetweenNodes(None, volumeParent, transform)
    return np.array(transform.TransformPoint([float(v) for v in ras]))


def clickFromRas(volumeNode, ras, positive, lung=None, segmentationNode=None):
    """The engine's Click at the voxel of ``volumeNode`` containing world RAS point ``ras`` (through the
    nodes' shared parent transform, see ``worldToLocal``); InputError (one line) when the point lies outside
    the volume."""
    from NeonatalLungSegLib.correction.clicks import click_from_dict
    from NeonatalLungSegLib.geometry import lps_to_ras

    ras = worldToLocal(volumeNode, segmentationNode, ras)
    lps = (lps_to_ras() @ np.array([*map(float, ras), 1.0]))[:3]
    data = {"point": [float(v) for v in lps], "sign": "+" if positive else "-"}
    if lung:
        data["lung"] = lung.replace("_lung", "")
    return click_from_dict(data, mrmlNodes.volumeGeometry(volumeNode), where="click")


def activeLung(segmentEditorNode, segmentationNode):
    """'right_lung' / 'left_lung' when the Segment Editor's selected segment is one of the lungs, else None
    (the engine then picks the lung from the click's side of the midline)."""
    if segmentEditorNode is None or segmentationNode is None:
        return None
    segmentId = segmentEditorNode.GetSelectedSegmentID()
    segment = segmentationNode.GetSegmentation().GetSegment(segmentId) if segmentId else None
    return LUNG_OF_SEGMENT.get(segment.GetName()) if segment is not None else None


def currentLabels(segmentationNode, volumeNode):
    """uint8 labels (1 right, 2 left lung) of the segmentation now, on the volume's grid (ValueError when the
    segmentation is not split into the two lungs, or the lungs overlap)."""
    if mrmlNodes.labelScheme(segmentationNode) != "right_left":
        raise ValueError("AI correct needs the segments 'Right lung' and 'Left lung' (Segment with "
                         "'Split right and left lung' on).")
    return labelmaps.readLabels(segmentationNode, volumeNode, (mrmlNodes.RIGHT_LUNG, mrmlNodes.LEFT_LUNG))


def correctionRecord(segmentationNode):
    """What the export records about the correction effort (see docs/training-folder.md); None for a
    segmentation this module version did not make (nothing was counted)."""
    if segmentationNode.GetAttribute(CLICKS_ATTRIBUTE) is None:
        return None
    clicks = json.loads(segmentationNode.GetAttribute(CLICKS_ATTRIBUTE) or "{}")
    add, remove = int(clicks.get("add", 0)), int(clicks.get("remove", 0))
    return {"ai_clicks": add + remove, "ai_clicks_add": add, "ai_clicks_remove": remove,
            "manual_edits": int(segmentationNode.GetAttribute(EDITS_ATTRIBUTE) or 0),
            "manual_edits_counted": EDIT_COUNT_METHOD}


def resetCorrectionRecord(segmentationNode):
    """A new AI result: nothing corrected yet."""
    segmentationNode.SetAttribute(CLICKS_ATTRIBUTE, json.dumps({"add": 0, "remove": 0}))
    segmentationNode.SetAttribute(EDITS_ATTRIBUTE, "0")


def countClick(segmentationNode, positive):
    clicks = json.loads(segmentationNode.GetAttribute(CLICKS_ATTRIBUTE) or "{}")
    key = "add" if positive else "remove"
    clicks[key] = int(clicks.get(key, 0)) + 1
    segmentationNode.SetAttribute(CLICKS_ATTRIBUTE, json.dumps({"add": clicks.get("add", 0),
                                                                "remove": clicks.get("remove", 0)}))


class EditCounter:
    """Counts the reviewer's own edits of segmentations (paint, erase, scissors, islands, ...).

    Why events and a time window: a Segment Editor operation fires one to four SourceRepresentationModified
    events (measured on slicer-core: paint over another segment 2, erase 1, a labelmap import 4), so events
    are merged into one operation while they follow each other within ``EDIT_MERGE_SECONDS``; two strokes of
    a hand are further apart. The module's own writes (Segment's result, AI clicks) run inside
    ``moduleWrite()`` and are not counted. Undo and redo are not counted: Slicer's segmentation history
    restores a state with SegmentModified events only (measured), and they make no new correction. The count
    is kept in a node attribute, so it is saved with the scene; edits made while the module was not loaded
    (another Slicer session) are not seen.
    """

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self._observed = {}  # node ID -> (vtkSegmentation, observer tag)
        self._last = {}
        self._suppressed = 0

    def watch(self, segmentationNode):
        if segmentationNode is None:
            return
        nodeId = segmentationNode.GetID()
        segmentation = segmentationNode.GetSegmentation()
        if nodeId in self._observed and self._observed[nodeId][0] is segmentation:
            return
        self.unwatch(nodeId)
        event = getattr(slicer.vtkSegmentation, "SourceRepresentationModified",
                        getattr(slicer.vtkSegmentation, "MasterRepresentationModified", None))
        tag = segmentation.AddObserver(event, lambda caller, eventId, node=segmentationNode: self._modified(node))
        self._observed[nodeId] = (segmentation, tag)

    def unwatch(self, nodeId):
        segmentation, tag = self._observed.pop(nodeId, (None, None))
        if segmentation is not None:
            segmentation.RemoveObserver(tag)

    def unwatchAll(self):
        for nodeId in list(self._observed):
            self.unwatch(nodeId)

    @contextmanager
    def moduleWrite(self):
        self._suppressed += 1
        try:
            yield
        finally:
            self._suppressed -= 1

    def _modified(self, segmentationNode):
        if self._suppressed:
            return
        now, nodeId = self.clock(), segmentationNode.GetID()
        last = self._last.get(nodeId)
        self._last[nodeId] = now
        if last is not None and now - last < EDIT_MERGE_SECONDS:
            return
        count = int(segmentationNode.GetAttribute(EDITS_ATTRIBUTE) or 0)
        segmentationNode.SetAttribute(EDITS_ATTRIBUTE, str(count + 1))


def applyClickResult(segmentationNode, volumeNode, result, saveStateForUndo, edits=None, sent=None):
    """Write the click's change into the clicked lung's segment as one undo step; False when the click changed
    nothing (no undo step then). Nothing but the clicked lung's segment is touched.

    Only the click's own change (against ``sent``, the labels the click was computed on) is applied, to the
    segment as it is now and inside the box it changed, so a stroke painted while the worker was busy is
    kept. Without ``sent`` the segment is made equal to the result's lung in the box where it differs."""
    if result.lung is None or result.changed_voxels == 0:
        return False
    name = SEGMENT_OF_LUNG[result.lung]
    segmentId = segmentationNode.GetSegmentation().GetSegmentIdBySegmentName(name)
    if not segmentId:
        raise ValueError(f"segmentation '{segmentationNode.GetName()}' has no segment named '{name}'")
    value = result.label_names[result.lung]
    if sent is None:
        sent = np.zeros(result.labels.shape, np.uint8)
        labelmaps.segmentMaskInto(segmentationNode, segmentId, volumeNode, sent, value)
    box = labelmaps.changedBox(sent, result.labels)
    if box is None:
        return False
    region = labelmaps.boxSlices(box)
    before, after = sent[region] == value, result.labels[region] == value
    saveStateForUndo()
    with edits.moduleWrite() if edits is not None else _nothing():
        labelmaps.modifyBox(segmentationNode, segmentId, volumeNode, box, after & ~before, before & ~after)
    return True


@contextmanager
def _nothing():
    yield


class AICorrection:
    """The click flow for one segmentation of one volume, driven by a GUI timer (``poll``) or ``wait``.

    ``click`` sends at once when a refine session is ready, else first prepares one (the refine model is
    loaded once per worker, the volume once per session); one click is handled at a time.

    ``imageContrast`` is the engine's per-session switch for remove clicks (off: the network alone, for
    consolidated lung that looks like the tissue beside it). It is fixed when a session is prepared, so the
    first click after a change prepares a new session; the labels carry every earlier correction, but the
    earlier clicks no longer guide the network.
    """

    def __init__(self, runner, segmentationNode, volumeNode, modelFolder, device="auto",
                 saveStateForUndo=lambda: None, edits=None, imageContrast=True):
        from NeonatalLungSegLib.models.model_folder import read_config

        if segmentationNode is None or volumeNode is None:
            raise ValueError("AI correct needs a segmentation made by Segment and its input volume.")
        config = read_config(modelFolder)  # one clear error for a missing or broken refine model folder
        if not config.input.guidance:
            raise ValueError(f"'{modelFolder}' is a segmentation model, not a click-refinement model.")
        self.runner, self.segmentationNode, self.volumeNode = runner, segmentationNode, volumeNode
        self.modelFolder, self.device = modelFolder, device
        self.saveStateForUndo, self.edits = saveStateForUndo, edits
        self.imageContrast = imageContrast
        self.geometry = mrmlNodes.volumeGeometry(volumeNode)
        self.session = self._sessionWorker = self._sessionImageContrast = None
        self._job = self._pending = self._sent = self._arrived = None
        self.status = ""

    @property
    def busy(self):
        return self._job is not None or self._arrived is not None


    def click(self, ras, positive, lung=None):
        """Start one click at RAS ``ras`` (add lung when ``positive``, remove otherwise); False while the
        previous click is still running. Raises InputError for a point outside the volume."""
        if self.busy:
            return False
        click = clickFromRas(self.volumeNode, ras, positive, lung, self.segmentationNode)
        if (self.session is None or not self.runner.sessionValid(self._sessionWorker)
                or self._sessionImageContrast != self.imageContrast):
            self._pending = click
            # MRML's own voxels, in their own type: written to the worker's input file at once, never copied
            # or cast here (the worker casts).
            self._job = self.runner.startRefine(mrmlNodes.volumeArray(self.volumeNode, copy=False),
                                                self.geometry, self.modelFolder, self.device,
                                                source=f"volume '{self.volumeNode.GetName()}'",
                                                imageContrast=self.imageContrast)
            self._sessionWorker, self._sessionImageContrast = self._job.worker, self.imageContrast
            self.status = "Loading the AI correction model..."
        else:
            self._send(click)
        return True

    def _send(self, click):
        self._sent = currentLabels(self.segmentationNode, self.volumeNode)
        self._job = self.runner.submitClick(self.session, self._sent, self.geometry, click)
        self.status = "Correcting..."

    def poll(self):
        """Take in what the worker reported; returns the click's ClickResult once it has been applied, else
        None. A failed click raises its error (one message) and leaves the segmentation unchanged. The answer
        is read in one call and written into the segment in the next (two short main-thread blocks)."""
        if self._arrived is not None:
            result, self._arrived = self._arrived, None
            sent, self._sent = self._sent, None
            countClick(self.segmentationNode, result.positive)
            applyClickResult(self.segmentationNode, self.volumeNode, result, self.saveStateForUndo, self.edits,
                             sent=sent)
            self.status = result.message
            return result
        job = self._job
        if job is None or not job.poll():
            return None
        self._job = None
        try:
            result = job.result()  # re-raises the worker's error
        except Exception:
            self._pending = self._sent = None
            raise
        if self._pending is not None:  # the session is ready: now the click itself
            self.session, click, self._pending = result.session, self._pending, None
            self._send(click)
            return None
        self._arrived = result
        self.status = "Applying the correction..."
        return None

    def wait(self, timeout=None, interval=0.05):
        """Poll until the click is applied (scripts and tests, never the GUI); the ClickResult."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.busy:
            result = self.poll()
            if result is not None:
                return result
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"AI correct click not finished after {timeout} s")
            time.sleep(interval)
        return None

    def cancel(self):
        """Stop a running click (kills the worker, as Segment's cancel does; the next click starts a new one)."""
        if self._job is not None:
            self._job.cancel()
            self.session = None
        self._job = self._pending = self._sent = self._arrived = None
