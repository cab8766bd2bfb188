"""Stand-ins for Slicer's layout manager and slice views (qMRMLSliceWidget / qMRMLSliceView), for the AI
correct wiring tests only (never shipped).

The slice nodes are REAL ``vtkMRMLSliceNode``s in the test's scene (axial Red, sagittal Yellow, coronal
Green), so the view-pixel -> RAS mapping is Slicer's own. Only the interactor is a stand-in: a VTK render
window interactor needs a window; this one keeps observers (highest priority first; an observer returning
True aborts the event for the rest, as a VTK command's abort flag does), event position and modifier keys,
and ``click``/``drag`` fire press and release as a mouse would. ``addSliceView`` is a layout change that adds
a view (``layoutChanged`` is emitted, as ``qSlicerLayoutManager`` does). Each interactor counts the left
presses that reached the view's own interaction (``viewPresses``): what an effect did not consume.
"""

from __future__ import annotations

import vtk

import slicer

VIEWS = (("Red", "Axial"), ("Yellow", "Sagittal"), ("Green", "Coronal"))
VIEW_PIXELS = (400, 300)


class InteractorStandIn:
    def __init__(self) -> None:
        self._observers: dict[int, tuple[int, object, float]] = {}
        self._next = 1
        self.position = (0, 0)
        self.shift = self.control = self.alt = False
        self.viewPresses = 0

    def AddObserver(self, event, callback, priority=0.0) -> int:  # noqa: N802 - VTK's spelling
        tag, self._next = self._next, self._next + 1
        self._observers[tag] = (event, callback, priority)
        return tag

    def RemoveObserver(self, tag) -> None:  # noqa: N802
        self._observers.pop(tag, None)

    def GetEventPosition(self):  # noqa: N802
        return self.position

    def GetShiftKey(self) -> int:  # noqa: N802
        return int(self.shift)

    def GetControlKey(self) -> int:  # noqa: N802
        return int(self.control)

    def GetAltKey(self) -> int:  # noqa: N802
        return int(self.alt)

    @property
    def observerCount(self) -> int:
        return len(self._observers)

    def _invoke(self, event) -> None:
        for tag, (kind, callback, _) in sorted(self._observers.items(), key=lambda item: -item[1][2]):
            if kind == event and callback(self, event) is True:
                return  # aborted: lower-priority observers and the view's own interaction never see it
        if event == vtk.vtkCommand.LeftButtonPressEvent:
            self.viewPresses += 1

    def click(self, x: int, y: int, shift: bool = False) -> None:
        self.drag((x, y), (x, y), shift)

    def drag(self, start, end, shift: bool = False) -> None:
        self.shift = shift
        self.position = tuple(start)
        self._invoke(vtk.vtkCommand.LeftButtonPressEvent)
        self.position = tuple(end)
        self._invoke(vtk.vtkCommand.LeftButtonReleaseEvent)
        self.shift = False


class SliceViewStandIn:
    def __init__(self) -> None:
        self._interactor = InteractorStandIn()

    def interactor(self) -> InteractorStandIn:
        return self._interactor


class SliceWidgetStandIn:
    def __init__(self, sliceNode) -> None:
        self._sliceNode = sliceNode
        self._view = SliceViewStandIn()

    def className(self) -> str:
        return "qMRMLSliceWidget"

    def mrmlSliceNode(self):
        return self._sliceNode

    def sliceView(self) -> SliceViewStandIn:
        return self._view


class LayoutManagerStandIn:
    def __init__(self, scene) -> None:
        import qt

        self._scene = scene
        self._widgets = {}
        self.layoutChanged = qt.Signal()
        self.layout = 0
        for name, orientation in VIEWS:
            self._addView(name, orientation)

    def _addView(self, name, orientation):
        node = self._scene.AddNewNodeByClass("vtkMRMLSliceNode", name)
        node.SetLayoutName(name)
        node.SetOrientation(orientation)
        node.SetDimensions(*VIEW_PIXELS, 1)
        node.SetFieldOfView(VIEW_PIXELS[0] * 0.25, VIEW_PIXELS[1] * 0.25, 1.0)  # 0.25 mm per pixel
        node.UpdateMatrices()
        self._widgets[name] = SliceWidgetStandIn(node)
        return self._widgets[name]

    def addSliceView(self, name, orientation="Axial"):
        """A layout change that brings a new slice view (e.g. a 'Red+' view of a compare layout)."""
        widget = self._addView(name, orientation)
        self.layout += 1
        self.layoutChanged.emit(self.layout)
        return widget

    def removeSliceView(self, name):
        self._widgets.pop(name, None)
        self.layout += 1
        self.layoutChanged.emit(self.layout)

    def sliceViewNames(self):
        return list(self._widgets)

    def sliceWidget(self, name):
        return self._widgets.get(name)
