"""The module panel's "AI correct" toggle: slice-view clicks -> ``aiCorrect.AICorrection``, polled by a timer.

Kept out of NeonatalLungSeg.py so the module file stays a thin shell. While the toggle is on, no Segment
Editor effect is active (a click must not also paint), every slice view reports clicks
(``sliceClicks.SliceClickObserver``), and each click runs in the worker process while this timer polls it;
the GUI thread never waits.
"""

import qt

import slicer

from NeonatalLungSegSlicerLib import aiCorrect, mrmlNodes, sliceClicks

POLL_MSEC = 100


class AICorrectPanel:
    """``parameterNode()`` returns the module's parameter node; ``ensureDependencies()`` returns True when
    the packages are there (asking to install them otherwise); ``changed()`` refreshes the module's buttons."""

    def __init__(self, ui, logic, parameterNode, ensureDependencies, changed):
        self.ui, self.logic = ui, logic
        self._parameterNode, self._ensureDependencies, self._changed = parameterNode, ensureDependencies, changed
        self.correction = None
        self.clicks = sliceClicks.SliceClickObserver(self.onSliceClick)
        self.timer = qt.QTimer()
        self.timer.setInterval(POLL_MSEC)
        self.timer.timeout.connect(self.poll)
        ui.aiCorrectButton.toggled.connect(self.onToggled)

    @property
    def busy(self):
        return self.correction is not None and self.correction.busy

    def _status(self, text):
        self.ui.aiCorrectStatusLabel.text = text

    def onToggled(self, on):
        if not on:
            self.stop()
            return
        if self.correction is not None:
            return
        node = self._parameterNode()
        try:
            segmentation = node.outputSegmentation if node else None
            volume = segmentation.GetNodeReference(mrmlNodes.SOURCE_ROLE) if segmentation else None
            volume = volume or (node.inputVolume if node else None)
            if segmentation is None or volume is None:
                raise ValueError("Segment first: AI correct edits the segmentation that Segment made.")
            if not self._ensureDependencies():
                raise ValueError("the required Python packages are not installed.")
            self.correction = self.logic.startAICorrection(
                segmentation, volume, node.refineModelFolder, node.device,
                saveStateForUndo=self.ui.segmentEditorWidget.saveStateForUndo,
                imageContrast=node.aiCorrectImageContrast)
        except Exception as error:  # one line in the panel; the toggle goes back off
            self.stop()
            self._status(f"AI correct is off: {error}")
            return
        self.ui.segmentEditorWidget.setActiveEffect(None)
        self.clicks.start(slicer.app.layoutManager())
        self._status("AI correct: click in a slice view to add to the selected lung, Shift+click to remove.")
        self._changed()

    def stop(self):
        """Toggle off: stop listening to the views; a click still running is cancelled (nothing applied)."""
        self.clicks.stop()
        self.timer.stop()
        if self.correction is not None and self.correction.busy:
            self.correction.cancel()
        self.correction = None
        if self.ui.aiCorrectButton.checked:
            self.ui.aiCorrectButton.checked = False  # emits toggled(False): back here with nothing left to do
        self._changed()

    def onSliceClick(self, ras, positive):
        correction = self.correction
        if correction is None:
            return
        lung = aiCorrect.activeLung(self.ui.segmentEditorWidget.mrmlSegmentEditorNode(),
                                    correction.segmentationNode)
        node = self._parameterNode()
        if node is not None:  # the checkbox as it is now: a change starts a new session (AICorrection.click)
            correction.imageContrast = node.aiCorrectImageContrast
        try:
            started = correction.click(ras, positive, lung)
        except Exception as error:  # outside the volume, overlapping lungs, ...: one line, nothing changed
            self._status(f"Click not applied: {error}")
            return
        if not started:
            self._status("Still applying the previous click...")
            return
        self._status(correction.status)
        self.timer.start()
        self._changed()

    def poll(self):
        """Timer slot: take in what the worker reported for the running click (never waits)."""
        correction = self.correction
        if correction is None:
            self.timer.stop()
            return
        try:
            correction.poll()
        except Exception as error:
            self.timer.stop()
            self._status(f"AI correct failed: {error}")
            self._changed()
            return
        self._status(correction.status)
        if not correction.busy:
            self.timer.stop()
            self._changed()
