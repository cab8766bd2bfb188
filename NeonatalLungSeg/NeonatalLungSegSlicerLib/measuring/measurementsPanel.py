"""The module panel's *Measurements* section: the lung descriptors of the segmentation as it is now (table node),
the signal histogram per lung (plot chart), an optional body weight and *Save report*.

Kept out of NeonatalLungSeg.py, as the Improve panel. The section follows the parameter node's output
segmentation (``refresh``, called wherever the module refreshes its labels) and observes that segmentation's
source representation, so a Segment result, an AI correct click and any Segment Editor stroke re-measure. The
descriptors of a large volume take a second or two, so edits only (re)start a short single-shot timer and the
measurement runs once they pause (``DEBOUNCE_MSEC``).
"""

import qt

from NeonatalLungSegSlicerLib.measuring import measurements

DEBOUNCE_MSEC = 500


def _line(error):
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def parseWeight(text):
    """Body weight (kg) typed in the panel -> float, or None when empty; ValueError with one line when it is not
    a neonate's weight in kilograms."""
    from NeonatalLungSegLib.measurements.descriptors import MAX_WEIGHT_KG

    text = str(text or "").strip().replace(",", ".")
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"Body weight: '{text}' is not a number (kg).") from None
    if not (0 < value <= MAX_WEIGHT_KG):  # NaN fails too
        raise ValueError(f"Body weight must be above 0 and at most {MAX_WEIGHT_KG:g} kg (a neonate's weight in "
                         f"kilograms), got {text}; the measurements were not changed.")
    return value


class MeasurementsPanel:
    """``parameterNode()`` returns the module's parameter node (or None)."""

    def __init__(self, ui, parameterNode, scene=None):
        import slicer

        self.ui, self._parameterNode = ui, parameterNode
        self.scene = scene or slicer.mrmlScene
        self._watched = None  # (segmentation node, vtkSegmentation, observer tags)
        self._key = None
        self.descriptors = self.table = self.chart = None
        self.timer = qt.QTimer()
        self.timer.setInterval(DEBOUNCE_MSEC)
        if hasattr(self.timer, "setSingleShot"):
            self.timer.setSingleShot(True)
        self.timer.timeout.connect(self.measure)
        ui.weightLineEdit.textChanged.connect(lambda text: self.schedule())
        ui.saveReportButton.clicked.connect(self.onSaveReport)
        ui.showHistogramButton.clicked.connect(self.onShowHistogram)
        self.refresh()

    def _nodes(self):
        node = self._parameterNode()
        return (node.outputSegmentation, node.inputVolume) if node is not None else (None, None)

    def _status(self, text):
        self.ui.measurementsStatusLabel.text = text

    def refresh(self):
        """Follow the output segmentation; re-measure (debounced) when it or its content changed."""
        segmentation, volume = self._nodes()
        self._watch(segmentation)
        content = segmentation.GetSegmentation().GetMTime() if segmentation is not None else None
        key = (segmentation.GetID() if segmentation else None, volume.GetID() if volume else None, content)
        if key != self._key:
            self._key = key
            self.schedule()
        self._updateButtons()

    def _watch(self, segmentationNode):
        import slicer

        if self._watched is not None and self._watched[0] is segmentationNode \
                and (segmentationNode is None or self._watched[1] is segmentationNode.GetSegmentation()):
            return
        self.stopWatching()
        if segmentationNode is None:
            self._watched = (None, None, ())
            return
        segmentation = segmentationNode.GetSegmentation()
        events = [getattr(slicer.vtkSegmentation, "SourceRepresentationModified",
                          getattr(slicer.vtkSegmentation, "MasterRepresentationModified", None)),
                  slicer.vtkSegmentation.SegmentRemoved, slicer.vtkSegmentation.SegmentAdded]
        tags = [segmentation.AddObserver(event, lambda caller, eventId: self.schedule()) for event in events]
        self._watched = (segmentationNode, segmentation, tags)

    def stopWatching(self):
        if self._watched is not None and self._watched[1] is not None:
            for tag in self._watched[2]:
                self._watched[1].RemoveObserver(tag)
        self._watched = None

    def stop(self):
        """Module cleanup: no more timer, no observer left on the segmentation."""
        self.timer.stop()
        self.stopWatching()

    def schedule(self):
        """(Re)start the debounce timer: the measurement runs once the edits pause."""
        self.timer.stop()
        self.timer.start()

    def weight(self):
        return parseWeight(self.ui.weightLineEdit.text)

    def measure(self):
        """Timer slot: measure the segmentation now into the table and the chart; one line when it cannot."""
        self.timer.stop()
        segmentation, volume = self._nodes()
        if segmentation is None or volume is None:
            self.ui.measurementsTableView.setMRMLTableNode(None)
            self._status("Segment first: the measurements follow the segmentation and every correction.")
            return self._updateButtons()
        try:
            weight = self.weight()
            self.descriptors, self.table, self.chart = measurements.update(self.scene, segmentation, volume, weight)
        except Exception as error:  # one line; the table keeps its last values
            self._status(_line(error))
            return self._updateButtons()
        if segmentation.GetSegmentation() is not None:
            self._key = (segmentation.GetID(), volume.GetID(), segmentation.GetSegmentation().GetMTime())
        self.ui.measurementsTableView.setMRMLTableNode(self.table)
        lungs = self.descriptors["lungs"]
        self._status(f"Measured: right {lungs['right']['volume_ml']:.1f} mL, left {lungs['left']['volume_ml']:.1f} "
                     f"mL, both {lungs['both']['volume_ml']:.1f} mL. Research use, not clinically validated.")
        self._updateButtons()

    def _updateButtons(self):
        segmentation, volume = self._nodes()
        self.ui.saveReportButton.enabled = segmentation is not None and volume is not None
        self.ui.showHistogramButton.enabled = self.chart is not None and self.chart.GetScene() is not None

    def onSaveReport(self):
        segmentation, volume = self._nodes()
        try:
            weight = self.weight()
            paths = measurements.saveReport(self.ui.reportFolderPathLineEdit.currentPath, segmentation, volume, weight)
        except Exception as error:
            self._status(f"Report not saved: {_line(error)}")
            return None
        self._status(f"Report saved: {paths['report']} (with {paths['json'].name} and {paths['csv'].name}).")
        return paths

    def onShowHistogram(self):
        import slicer

        plots = getattr(getattr(slicer, "modules", None), "plots", None)
        if self.chart is None or plots is None:
            return self._status("No histogram to show yet.")
        plots.logic().ShowChartInLayout(self.chart)
