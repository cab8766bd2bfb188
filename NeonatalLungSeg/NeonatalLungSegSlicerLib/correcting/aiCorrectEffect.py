"""*AI correct* as a Segment Editor effect: listed with Paint, Erase and the others, in every segment editor.

Why an effect: Slicer's segment editor makes effects exclusive (one active at a time), hands the active
effect every slice view's interaction events (views created by a later layout change included: the editor
re-observes them, ``qMRMLSegmentEditorWidget::onLayoutChanged``) and drops an event the effect says it
handled, so with Paint active a click paints and runs no AI correction, and with AI correct active a click
runs one correction and paints nothing. Each click is one undo step of the editor (``saveStateForUndo`` right
before the segment is written).

What a click does is ``aiCorrect.AICorrection`` (the worker process, the region-limited write); this file is
the front end: the options panel (add / remove, image contrast, status, Cancel), the click in a slice view,
the poll timer. The lung is the editor's selected segment ('Right lung' or 'Left lung'); no other segment is
ever written.

Registration follows Slicer's extensions (SegmentEditorExtraEffects): a ``qSlicerSegmentEditorScriptedEffect``
whose Python source is ``NeonatalLungSegEffects/NeonatalLungAICorrectEffect.py`` (a folder of its own: Slicer
loads an effect file as a module named after its folder) is registered with the effect factory once Slicer
has started. The effect needs the module's worker and settings; the module's widget provides them
(``setHost``), so the module must have been opened once.
"""

import os
import weakref
from pathlib import Path
from types import SimpleNamespace

import qt
import vtk

import slicer

from NeonatalLungSegSlicerLib import mrmlNodes
from NeonatalLungSegSlicerLib.correcting import aiCorrect, sliceClicks

EFFECT_NAME = "Neonatal lung AI correct"  # how modules find it (never translated)
EFFECT_TITLE = "AI correct"
EFFECT_SOURCE = Path(__file__).resolve().parents[2] / "NeonatalLungSegEffects" / "NeonatalLungAICorrectEffect.py"
ICON = Path(__file__).resolve().parents[2] / "Resources" / "Icons" / "AICorrect.png"
POLL_MSEC = 100
SILENCE_SECONDS = 15.0  # the worker beats every HEARTBEAT_SECONDS (2 s) while it works: 15 s of silence is a hang
MODE, IMAGE_CONTRAST = "Mode", "ImageContrast"  # effect parameters (stored in the segment editor node)
ADD, REMOVE = "add", "remove"
CONTRAST_TIP = ("A remove click also takes the voxels beside it that look like the clicked spot and unlike the rest "
                "of the lung. Turn this off for consolidated or atelectatic lung: it can look like the tissue beside "
                "it, and a remove click may then take real lung (every click is one undo step). A change applies "
                "from the next click, which prepares the volume again; earlier clicks then no longer guide the AI.")

_host = None
_effects = weakref.WeakSet()


def Host(logic, parameterNode, ensureDependencies, changed=lambda: None):
    """What the effect needs of the module: its Logic (worker, edit counter), ``parameterNode()`` (refine
    model folder, device), ``ensureDependencies()`` (True when the packages are there) and ``changed()``."""
    return SimpleNamespace(logic=logic, parameterNode=parameterNode, ensureDependencies=ensureDependencies,
                           changed=changed)


def setHost(host):
    global _host
    _host = host


def host():
    return _host


def anyBusy():
    return any(effect.busy for effect in list(_effects))


def stopAll():
    """Cancel running clicks and forget the prepared sessions (Segment replaces the segmentation)."""
    for effect in list(_effects):
        effect.stop()


def registerEffect():
    """Register the effect with Slicer's effect factory (the factory refuses a second effect of one name, so
    this is safe to call again); False where Slicer has no segment editor effects."""
    try:
        import qSlicerSegmentationsEditorEffectsPythonQt as effects
    except ImportError:
        return False
    factory = slicer.qSlicerSegmentEditorEffectFactory.instance()
    if EFFECT_NAME in [effect.name for effect in factory.registeredEffects()]:
        return True
    instance = effects.qSlicerSegmentEditorScriptedEffect(None)
    instance.setPythonSource(str(EFFECT_SOURCE).replace(os.sep, "/"))
    instance.self().register()
    return True


def attachEditor(editor):
    """Register the effect and let ``editor`` (a module's own qMRMLSegmentEditorWidget) list it, also when it
    is registered after the editor was made (as Slicer's SegmentEditor module follows ``effectRegistered``)."""
    if registerEffect():
        slicer.qSlicerSegmentEditorEffectFactory.instance().connect("effectRegistered(QString)",
                                                                    editor.updateEffectList)
        editor.updateEffectList()


def detachEditor(editor):
    """Module cleanup (reload, exit): no effect left active, so no view stays observed, and the editor lets go
    of the scene's segment editor node (a reloaded module's new editor takes it over)."""
    editor.setActiveEffect(None)
    editor.setMRMLSegmentEditorNode(None)


def activateIn(editor, segmentationNode):
    """The module panel's shortcut: AI correct active in ``editor``, on 'Right lung' unless a lung is selected
    already. Returns '' or why it could not."""
    editorNode = editor.mrmlSegmentEditorNode()
    if segmentationNode is not None and aiCorrect.activeLung(editorNode, segmentationNode) is None:
        rightLung = segmentationNode.GetSegmentation().GetSegmentIdBySegmentName(mrmlNodes.RIGHT_LUNG)
        if rightLung:
            editorNode.SetSelectedSegmentID(rightLung)
    editor.setActiveEffectByName(EFFECT_NAME)
    if editor.activeEffect() is None:
        return "AI correct is not available: this Slicer's Segment Editor has no such effect."
    return ""


def liveness(runner, status, what):
    """``status``, or "No response from <what> for N s — Cancel?" once the worker has been silent (no event, no
    heartbeat) for more than SILENCE_SECONDS while it has a request."""
    silentFor = getattr(runner, "silentFor", None)
    silence = silentFor() if silentFor is not None else 0.0
    return f"No response from {what} for {int(silence)} s \N{EM DASH} Cancel?" if silence > SILENCE_SECONDS else status


class AICorrectEffectBehaviour:
    """The effect's methods; ``NeonatalLungAICorrectEffect`` adds Slicer's ``AbstractScriptedSegmentEditorEffect``."""

    def __init__(self, scriptedEffect):
        scriptedEffect.name = EFFECT_NAME
        scriptedEffect.title = EFFECT_TITLE
        scriptedEffect.perSegment = True  # edits the selected segment
        scriptedEffect.requireSegments = True
        super().__init__(scriptedEffect)
        self.correction = None
        self.timer = None
        _effects.add(self)

    # Slicer's effect interface
    def clone(self):
        import qSlicerSegmentationsEditorEffectsPythonQt as effects

        clonedEffect = effects.qSlicerSegmentEditorScriptedEffect(None)
        clonedEffect.setPythonSource(str(EFFECT_SOURCE).replace(os.sep, "/"))
        return clonedEffect

    def icon(self):
        return qt.QIcon(str(ICON)) if ICON.is_file() else qt.QIcon()

    def helpText(self):
        return ("<html>Correct the selected lung ('Right lung' or 'Left lung') with AI: click in a slice view where "
                "the lung is missing (Add) or where the segment went too far (Remove); Shift+click does the other. "
                "The AI follows the error through the neighbouring slices. Each click is one undo step, and only "
                "the selected lung changes.</html>")

    def setupOptionsFrame(self):
        self.addRadioButton = qt.QRadioButton("Add to the lung")
        self.addRadioButton.toolTip = "A click adds the missed lung around it (Shift+click removes)."
        self.removeRadioButton = qt.QRadioButton("Remove from the lung")
        self.removeRadioButton.toolTip = "A click removes what is not lung around it (Shift+click adds)."
        self.imageContrastCheckBox = qt.QCheckBox("Use image contrast for remove clicks")
        self.imageContrastCheckBox.toolTip = CONTRAST_TIP
        self.statusLabel = qt.QLabel()
        self.statusLabel.wordWrap = True
        self.cancelButton = qt.QPushButton("Cancel")
        self.cancelButton.toolTip = "Stop the running click (stops the AI process; the next click starts it again)."
        self.cancelButton.enabled = False
        for widget in (self.addRadioButton, self.removeRadioButton, self.imageContrastCheckBox, self.statusLabel,
                       self.cancelButton):
            self.scriptedEffect.addOptionsWidget(widget)
        self.addRadioButton.connect("toggled(bool)", self.updateMRMLFromGUI)
        self.removeRadioButton.connect("toggled(bool)", self.updateMRMLFromGUI)
        self.imageContrastCheckBox.connect("toggled(bool)", self.updateMRMLFromGUI)
        self.cancelButton.connect("clicked()", self.onCancel)

    def setMRMLDefaults(self):
        self.scriptedEffect.setParameterDefault(MODE, ADD)
        self.scriptedEffect.setParameterDefault(IMAGE_CONTRAST, 1)

    def updateGUIFromMRML(self):
        if not hasattr(self, "statusLabel"):
            return
        remove = self.scriptedEffect.parameter(MODE) == REMOVE
        for widget, value in ((self.addRadioButton, not remove), (self.removeRadioButton, remove),
                              (self.imageContrastCheckBox, bool(self.scriptedEffect.integerParameter(IMAGE_CONTRAST)))):
            wasBlocked = widget.blockSignals(True)
            widget.checked = value
            widget.blockSignals(wasBlocked)

    def updateMRMLFromGUI(self, *args):
        self.scriptedEffect.setParameter(MODE, REMOVE if self.removeRadioButton.checked else ADD)
        self.scriptedEffect.setParameter(IMAGE_CONTRAST, 1 if self.imageContrastCheckBox.checked else 0)

    def activate(self):
        if not self.busy:
            self._status(self._readyText())

    def deactivate(self):
        pass  # a click already sent finishes (and stays one undo step); the worker keeps its model loaded

    def cleanup(self):
        if self.timer is not None:
            self.timer.stop()
        _effects.discard(self)

    def processInteractionEvents(self, callerInteractor, eventId, viewWidget):
        """A left click in a slice view is one AI click (True: handled, no other observer sees it). Other
        events, other views and Ctrl/Alt clicks go on to Slicer (False)."""
        if viewWidget.className() != "qMRMLSliceWidget" or eventId != vtk.vtkCommand.LeftButtonPressEvent:
            return False
        if callerInteractor.GetControlKey() or callerInteractor.GetAltKey():
            return False
        x, y = callerInteractor.GetEventPosition()
        positive = (self.scriptedEffect.parameter(MODE) != REMOVE) != bool(callerInteractor.GetShiftKey())
        self.click(sliceClicks.xyToRas(viewWidget.mrmlSliceNode(), x, y), positive)
        return True

    # the click
    @property
    def busy(self):
        return self.correction is not None and self.correction.busy

    def _status(self, text):
        if hasattr(self, "statusLabel"):
            self.statusLabel.text = text
            self.cancelButton.enabled = self.busy

    def _readyText(self):
        mode = "remove from" if self.scriptedEffect.parameter(MODE) == REMOVE else "add to"
        return f"Click in a slice view to {mode} the selected lung (Shift+click: the opposite)."

    def _correctionFor(self, segmentationNode, volumeNode):
        """The click flow for this segmentation, volume and the module's refine model and device (kept between
        clicks: the worker keeps the prepared volume)."""
        module = host()
        if module is None:
            raise ValueError("open the Neonatal Lung Segmentation module once: AI correct runs in its worker.")
        node = module.parameterNode()
        key = (segmentationNode.GetID(), volumeNode.GetID(), str(node.refineModelFolder), node.device)
        if self.correction is None or self.correction.key != key:
            if not module.ensureDependencies():
                raise ValueError("the required Python packages are not installed.")
            self.correction = module.logic.startAICorrection(
                segmentationNode, volumeNode, str(node.refineModelFolder), node.device,
                saveStateForUndo=self.scriptedEffect.saveStateForUndo,
                imageContrast=bool(self.scriptedEffect.integerParameter(IMAGE_CONTRAST)))
            self.correction.key = key
        return self.correction

    def click(self, ras, positive):
        editorNode = self.scriptedEffect.parameterSetNode()
        segmentationNode = editorNode.GetSegmentationNode() if editorNode else None
        volumeNode = editorNode.GetSourceVolumeNode() if editorNode else None
        if self.busy:
            self._status("Still applying the previous click...")
            return
        lung = aiCorrect.activeLung(editorNode, segmentationNode)
        if lung is None:
            self._status("Select the segment 'Right lung' or 'Left lung' first: AI correct edits the selected lung.")
            return
        try:
            if volumeNode is None:
                raise ValueError("select the source volume the lungs were segmented on.")
            correction = self._correctionFor(segmentationNode, volumeNode)
            correction.imageContrast = bool(self.scriptedEffect.integerParameter(IMAGE_CONTRAST))
            correction.click(ras, positive, lung)
        except Exception as error:  # outside the volume, another transform, bad model: one line, nothing changed
            self._status(f"Click not applied: {error}")
            return
        if self.timer is None:
            self.timer = qt.QTimer()
            self.timer.setInterval(POLL_MSEC)
            self.timer.timeout.connect(self.poll)
        self.timer.start()
        self._status(correction.status)
        self._changed()

    def poll(self):
        """Timer slot: take in what the worker reported for the running click (never waits); says so when the
        worker has been silent for SILENCE_SECONDS."""
        correction = self.correction
        if correction is None or not correction.busy:
            self.timer.stop()
            return
        try:
            correction.poll()
        except Exception as error:
            self.timer.stop()
            self._status(f"AI correct failed: {error}")
            self._changed()
            return
        if correction.busy:
            self._status(liveness(correction.runner, correction.status, "the AI process"))
            return
        self.timer.stop()
        self._status(correction.status)
        self._changed()

    def onCancel(self):
        if self.busy:
            self.correction.cancel()
            self._status("Cancelled: nothing was changed. The next click starts the AI process again.")
            self._changed()

    def stop(self):
        if self.busy:
            self.correction.cancel()
        self.correction = None
        if self.timer is not None:
            self.timer.stop()
        self._status("")

    def _changed(self):
        module = host()
        if module is not None:
            module.changed()
