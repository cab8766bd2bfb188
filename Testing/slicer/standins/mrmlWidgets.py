"""Stand-ins for the qMRML widgets in the module's .ui: they hold real MRML nodes and record calls."""

from __future__ import annotations

import vtk
from qt import QWidget


class qMRMLWidget(QWidget):  # noqa: N801 - Slicer's spelling
    SIGNALS = ("mrmlSceneChanged",)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.scene = None

    def setMRMLScene(self, scene) -> None:
        self.scene = scene
        self.mrmlSceneChanged.emit(scene)

    def mrmlScene(self):
        return self.scene


class qMRMLNodeComboBox(qMRMLWidget):  # noqa: N801
    SIGNALS = ("mrmlSceneChanged", "currentNodeChanged", "currentNodeIDChanged")

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.nodeTypes: list[str] = []
        self.addEnabled = self.removeEnabled = False
        self.noneEnabled = True
        self._node = None

    def currentNode(self):
        return self._node

    def currentNodeID(self) -> str:
        return self._node.GetID() if self._node is not None else ""

    def setCurrentNode(self, node) -> None:
        if node is not None and self.nodeTypes and not any(node.IsA(t) for t in self.nodeTypes):
            raise TypeError(f"{node.GetClassName()} is not one of {self.nodeTypes}")
        if node is not self._node:
            self._node = node
            self.currentNodeChanged.emit(node)
            self.currentNodeIDChanged.emit(self.currentNodeID())


class qMRMLTableView(qMRMLWidget):  # noqa: N801
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.tableNode = None

    def setMRMLTableNode(self, node) -> None:
        self.tableNode = node

    def mrmlTableNode(self):
        return self.tableNode


class qMRMLSegmentEditorWidget(qMRMLWidget):  # noqa: N801
    """The segment editor widget, modelled on Slicer's ``qMRMLSegmentEditorWidget.cxx``, on a REAL
    ``vtkSlicerSegmentEditorLogic`` (its undo history, 5 states by default as in Slicer, its
    ``ModifySegmentByLabelmap``):

    - effects are clones of the factory's registered effects (``updateEffectList``, again after a later
      registration when asked to);
    - ``setActiveEffect`` stores the effect's name in the editor node, and the node's modification activates it
      (the previous one is deactivated first); while an effect is active every slice view of the layout is
      observed, and a layout change re-observes the views (``onLayoutChanged``), so views made later work;
    - an observed view's events go to the ACTIVE effect only (``processEvents``); when it returns True the event
      is aborted, so no other observer of the view (the view's own interaction) sees it.

    Also strict where Slicer's SegmentEditor module is the model: the editor node must be set before the scene
    (else the selections made when the scene is set are lost), keyboard shortcuts are installed once and
    uninstalled once, and a segmentation node must belong to the editor's scene."""

    INTERACTOR_EVENTS = ("LeftButtonPressEvent", "LeftButtonReleaseEvent", "RightButtonPressEvent",
                         "RightButtonReleaseEvent", "MouseMoveEvent", "KeyPressEvent", "KeyReleaseEvent")

    def __init__(self, parent=None) -> None:
        import slicer

        super().__init__(parent)
        self.editorNode = self.segmentationNode = self.sourceVolumeNode = None
        self.segmentationNodeSelectorVisible = self.sourceVolumeNodeSelectorVisible = True
        self.switchToSegmentationsButtonVisible = True
        self.shortcutsInstalled = False
        self.calls: list[str] = []
        self.logic = slicer.vtkSlicerSegmentEditorLogic()
        self.effects: list = []
        self._activeEffect = None
        self._observations: list = []  # (interactor, tag)
        self._viewsObserved = False
        self._nodeObservations: list = []
        self.updateEffectList()

    # scene, nodes
    def setMRMLScene(self, scene) -> None:
        import slicer

        if self.editorNode is None and scene is not None:
            raise RuntimeError("qMRMLSegmentEditorWidget: set the segment editor node before the scene")
        self.calls.append("setMRMLScene")
        super().setMRMLScene(scene)
        self.logic.SetMRMLScene(scene)
        layoutManager = slicer.app.layoutManager()
        if layoutManager is not None and self.onLayoutChanged not in layoutManager.layoutChanged._slots:
            layoutManager.layoutChanged.connect(self.onLayoutChanged)

    def setMRMLSegmentEditorNode(self, node) -> None:
        import slicer

        self.calls.append("setMRMLSegmentEditorNode")
        if node is self.editorNode:
            return
        for observed, tag in self._nodeObservations:
            observed.RemoveObserver(tag)
        self._nodeObservations = []
        self.editorNode = node
        self.logic.SetSegmentEditorNode(node)
        if node is None:
            return
        tag = node.AddObserver(vtk.vtkCommand.ModifiedEvent, lambda caller, event: self.updateEffectsSectionFromMRML())
        self._nodeObservations.append((node, tag))
        for effect in self.effects:
            self._connectEffect(effect)
        self._nodeObservations.append((node, node.AddObserver(
            slicer.vtkMRMLSegmentEditorNode.EffectParameterModified,
            lambda caller, event: [effect.updateGUIFromMRML() for effect in self.effects])))

    def mrmlSegmentEditorNode(self):
        return self.editorNode

    def setSegmentationNode(self, node) -> None:
        if node is not None and (self.scene is None or node.GetScene() is not self.scene):
            raise RuntimeError("qMRMLSegmentEditorWidget: segmentation node is not in the editor's scene")
        self.segmentationNode = node
        if self.editorNode is not None:
            self.logic.SetSegmentationNode(node)

    def setSourceVolumeNode(self, node) -> None:
        self.sourceVolumeNode = node
        if self.editorNode is not None:
            self.logic.SetSourceVolumeNode(node)

    # effects
    def _connectEffect(self, effect) -> None:
        effect.setCallbackSlots(self)
        effect.setSegmentEditorLogic(self.logic)
        if self.editorNode is not None:
            effect.setParameterSetNode(self.editorNode)
            effect.setMRMLDefaults()

    def updateEffectList(self) -> None:
        from qSlicerSegmentationsEditorEffectsPythonQt import qSlicerSegmentEditorEffectFactory

        for effect in qSlicerSegmentEditorEffectFactory.instance().copyEffects(self.effects):
            self._connectEffect(effect)
            effect.setupOptionsFrame()
            effect.optionsFrame().setVisible(False)

    def availableEffectNames(self) -> list:
        return [effect.name for effect in self.effects]

    def effectByName(self, name):
        return next((effect for effect in self.effects if name and effect.name == name), None)

    def activeEffect(self):
        return self._activeEffect

    def setActiveEffect(self, effect) -> None:
        if self.editorNode is None:
            return
        self.editorNode.SetActiveEffectName(effect.name if effect is not None else "")

    def setActiveEffectByName(self, name) -> None:
        self.setActiveEffect(self.effectByName(name))

    def updateEffectsSectionFromMRML(self) -> None:
        effect = self.effectByName(self.editorNode.GetActiveEffectName() if self.editorNode else "")
        if effect is self._activeEffect:
            return
        if self._activeEffect is not None:
            self._activeEffect.deactivate()
        if effect is not None:
            self.setupViewObservations()
            effect.activate()
        else:
            self.removeViewObservations()
        self._activeEffect = effect

    # views
    def setupViewObservations(self) -> None:
        import slicer

        self.removeViewObservations()
        layoutManager = slicer.app.layoutManager()
        for name in layoutManager.sliceViewNames():
            sliceWidget = layoutManager.sliceWidget(name)
            if not self.logic.IsSegmentationDisplayableInView(sliceWidget.mrmlSliceNode()):
                continue
            interactor = sliceWidget.sliceView().interactor()
            for event in self.INTERACTOR_EVENTS:
                tag = interactor.AddObserver(
                    getattr(vtk.vtkCommand, event),
                    lambda caller, eid, view=sliceWidget: self.processEvents(caller, eid, view), 1.0)
                self._observations.append((interactor, tag))
        self._viewsObserved = True

    def removeViewObservations(self) -> None:
        self.calls.append("removeViewObservations")
        for interactor, tag in self._observations:
            interactor.RemoveObserver(tag)
        self._observations = []
        self._viewsObserved = False

    def processEvents(self, callerInteractor, eid, viewWidget) -> bool:
        """Returns the abort flag (C++ sets it on the observer's command)."""
        if self.scene is None or self.scene.IsClosing() or self.editorNode is None or self._activeEffect is None:
            return False
        return bool(self._activeEffect.processInteractionEvents(callerInteractor, eid, viewWidget))

    def onLayoutChanged(self, layoutIndex=None) -> None:
        if self._viewsObserved:
            self.setupViewObservations()
            for effect in self.effects:
                effect.layoutChanged()

    # undo
    def saveStateForUndo(self) -> None:
        self.calls.append("saveStateForUndo")
        self.logic.SaveStateForUndo()

    def undo(self) -> None:
        self.calls.append("undo")
        self.logic.Undo()

    def redo(self) -> None:
        self.logic.Redo()

    def setMaximumNumberOfUndoStates(self, count: int) -> None:
        self.logic.SetMaximumNumberOfUndoStates(int(count))

    def maximumNumberOfUndoStates(self) -> int:
        return self.logic.GetMaximumNumberOfUndoStates()

    # module life cycle
    def installKeyboardShortcuts(self) -> None:
        if self.shortcutsInstalled:
            raise RuntimeError("qMRMLSegmentEditorWidget: keyboard shortcuts installed twice")
        self.shortcutsInstalled = True

    def uninstallKeyboardShortcuts(self) -> None:
        self.shortcutsInstalled = False

    def updateWidgetFromMRML(self) -> None:
        self.calls.append("updateWidgetFromMRML")
