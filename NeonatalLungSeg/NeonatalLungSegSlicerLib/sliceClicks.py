"""Clicks in Slicer's slice views (axial, coronal, sagittal) for AI correct: a click -> (RAS point, add/remove).

A click is a left button press and release at (nearly) the same place: Slicer uses a left-button drag for
window/level, which must keep working, so a drag is not a click. Shift held at the press makes it a
"remove" click. The right button is left alone (Slicer zooms with a right drag and opens the view's context
menu on a right click). The view pixel goes to RAS through the slice node's own XY-to-RAS matrix, the one
Slicer's cursor position readout uses.

Only Qt/VTK plumbing is here (tested through the stand-ins under Testing/slicer); what a click does is
``aiCorrect.AICorrection``.
"""

import numpy as np
import vtk

import slicer

CLICK_TOLERANCE_PIXELS = 3  # press and release this close together: a click, not a drag
OBSERVER_PRIORITY = 1.0     # before the view's own interaction (as Segment Editor effects observe)


def xyToRas(sliceNode, x, y):
    """RAS (mm) of view pixel (x, y) on the slice that ``sliceNode`` shows."""
    matrix = slicer.util.arrayFromVTKMatrix(sliceNode.GetXYToRAS())
    return (matrix @ np.array([float(x), float(y), 0.0, 1.0]))[:3]


class SliceClickObserver:
    """Calls ``callback(ras, positive)`` for every click in a slice view while started."""

    def __init__(self, callback):
        self.callback = callback
        self._observations = []  # (interactor, tag)
        self._pressed = {}       # interactor -> (x, y, positive)

    @property
    def active(self):
        return bool(self._observations)

    def start(self, layoutManager):
        """Observe every slice view of the layout (the views that exist now)."""
        self.stop()
        for name in layoutManager.sliceViewNames():
            sliceWidget = layoutManager.sliceWidget(name)
            if sliceWidget is None:
                continue
            interactor = sliceWidget.sliceView().interactor()
            sliceNode = sliceWidget.mrmlSliceNode()
            press = interactor.AddObserver(vtk.vtkCommand.LeftButtonPressEvent,
                                           lambda caller, event: self._onPress(caller), OBSERVER_PRIORITY)
            release = interactor.AddObserver(
                vtk.vtkCommand.LeftButtonReleaseEvent,
                lambda caller, event, node=sliceNode: self._onRelease(caller, node), OBSERVER_PRIORITY)
            self._observations += [(interactor, press), (interactor, release)]

    def stop(self):
        for interactor, tag in self._observations:
            interactor.RemoveObserver(tag)
        self._observations = []
        self._pressed = {}

    def _onPress(self, interactor):
        x, y = interactor.GetEventPosition()
        self._pressed[interactor] = (x, y, not interactor.GetShiftKey())

    def _onRelease(self, interactor, sliceNode):
        pressed = self._pressed.pop(interactor, None)
        if pressed is None:
            return
        x, y = interactor.GetEventPosition()
        if max(abs(x - pressed[0]), abs(y - pressed[1])) > CLICK_TOLERANCE_PIXELS:
            return  # a drag (window/level), not a click
        self.callback(xyToRas(sliceNode, pressed[0], pressed[1]), pressed[2])
