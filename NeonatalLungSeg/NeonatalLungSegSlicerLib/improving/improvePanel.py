"""The module panel's *Improve model* section: the training folder's cases, Start / Cancel, progress, and at the
end the before/after table, the decision and one click to switch to the new model or back to its parent.

Kept out of NeonatalLungSeg.py so the module file stays a thin shell. The run belongs to the Logic
(``logic.improver``; ``improvement.py``) and runs in its own process; this panel only polls it from its own
100 ms timer and shows what it printed, so the GUI thread never waits on it, and collapsing the section or
leaving the module does not stop it (``refresh`` restarts the timer for a run still going).
"""

from pathlib import Path

import qt

POLL_MSEC = 100


def _errorLine(error):
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text if text.startswith("error:") else f"error: {text}"


class ImprovePanel:
    """``parameterNode()`` returns the module's parameter node; ``models`` is the module's ModelSelector;
    ``ensureDependencies()`` returns True when the engine's packages are there (asking to install them)."""

    def __init__(self, ui, logic, parameterNode, models, ensureDependencies):
        self.ui, self.logic, self.models = ui, logic, models
        self._parameterNode, self._ensureDependencies = parameterNode, ensureDependencies
        self._summaryKey = None
        self.timer = qt.QTimer()
        self.timer.setInterval(POLL_MSEC)
        self.timer.timeout.connect(self.poll)
        ui.improveStartButton.clicked.connect(self.onStart)
        ui.improveCancelButton.clicked.connect(self.onCancel)
        ui.improveUseNewButton.clicked.connect(self.onUseNew)
        ui.improveUseParentButton.clicked.connect(self.onUseParent)
        ui.improveProgressBar.setVisible(False)
        self.refresh()

    @property
    def running(self):
        return self.logic.improver.running

    def _status(self, text):
        self.ui.improveStatusLabel.text = text

    def refresh(self):
        """Follow the parameter node (training folder, model) and the run; cheap when nothing changed."""
        node = self._parameterNode()
        if node is not None:
            key = (str(node.trainingFolder), str(node.modelFolder), _stamp(node.trainingFolder, "manifest.json"),
                   _stamp(node.modelFolder, "model.json"))
            if key != self._summaryKey:
                from NeonatalLungSegSlicerLib.improving import improvement

                self._summaryKey = key
                self.ui.improveFolderLabel.text = improvement.summarize(node.trainingFolder, node.modelFolder).text()
        table = self.ui.improveTableView.mrmlTableNode()
        if table is not None and table.GetScene() is None:  # the scene was closed
            self.ui.improveTableView.setMRMLTableNode(None)
        if self.running and not self.timer.isActive():  # e.g. a new panel on a run the Logic still holds
            self.ui.improveProgressBar.setVisible(True)
            self.timer.start()
        self._updateButtons()

    def _updateButtons(self):
        running, outcome = self.running, self.logic.improveOutcome
        self.ui.improveStartButton.enabled = not running and self._parameterNode() is not None
        self.ui.improveCancelButton.enabled = running
        self.ui.improveUseNewButton.enabled = outcome is not None and not running
        self.ui.improveUseParentButton.enabled = outcome is not None and not running

    def onStart(self):
        node = self._parameterNode()
        if node is None or self.running:
            return
        try:
            if not self._ensureDependencies():
                raise ValueError("the required Python packages are not installed.")
            job = self.logic.startImprove(node)
        except Exception as error:  # bad input: one line, nothing started or written
            self._status(_errorLine(error))
            self._updateButtons()
            return
        self.ui.improveTableView.setMRMLTableNode(None)
        self.ui.improveDecisionLabel.text = ""
        self.ui.improveProgressBar.value = 0
        self.ui.improveProgressBar.setVisible(True)
        self._status(f"Improving into {job.output} ...")
        self.timer.start()
        self._updateButtons()

    def onCancel(self):
        """Kills the run's process tree at once; the next poll reports it (nothing is left behind)."""
        if self.running:
            self.logic.cancelImprove()
            self._status("Cancelling...")
            self.ui.improveCancelButton.enabled = False

    def poll(self):
        """Timer slot: what the improve process printed since the last tick (never waits for it)."""
        job = self.logic.improveJob
        if job is None:
            self.timer.stop()
            return
        job.poll()
        self.ui.improveProgressBar.value = int(round(100 * job.progress.fraction))
        if not job.done:
            self._status(job.progress.describe())
            return
        self.timer.stop()
        self.ui.improveProgressBar.setVisible(False)
        try:
            outcome = self.logic.finishImprove(job, self._parameterNode())
        except Exception as error:
            from NeonatalLungSegLib.errors import Cancelled

            self._status("Cancelled: nothing was changed (the registry and the folders are as they were)."
                         if isinstance(error, Cancelled) else _errorLine(error))
        else:
            self._show(outcome)
            self._status(f"Done: {outcome.folder.name} ({'the new default' if outcome.promoted else 'a candidate'}).")
        self._summaryKey = None  # the registry and the selected model may have changed
        self.refresh()

    def _show(self, outcome):
        self.ui.improveTableView.setMRMLTableNode(outcome.table)
        self.ui.improveDecisionLabel.text = outcome.text
        node = self._parameterNode()
        self.models.populate(node.modelFolder if node is not None else None)

    def onUseNew(self):
        outcome = self.logic.improveOutcome
        if outcome is not None:
            self._use(outcome.folder, "the new model")

    def onUseParent(self):
        outcome = self.logic.improveOutcome
        if outcome is not None:
            self._use(outcome.parent, "the parent model")

    def _use(self, folder, what):
        node = self._parameterNode()
        try:
            self.logic.useModel(node, folder)
        except Exception as error:
            self._status(_errorLine(error))
            return
        self.models.populate(folder)  # list it (it is remembered now) and select it
        self._status(f"Now using {what} ({folder.name}); it is the default model from now on.")
        self._summaryKey = None
        self.refresh()

    def stop(self):
        """Module reload or application exit: stop polling (the Logic's close() ends the run)."""
        self.timer.stop()


def _stamp(folder, name):
    """A file's modification time (changes when an export replaces the manifest), or None."""
    try:
        return (Path(str(folder)).expanduser() / name).stat().st_mtime_ns
    except (OSError, ValueError):
        return None
