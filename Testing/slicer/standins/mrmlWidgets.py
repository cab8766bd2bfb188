"""Stand-ins for the qMRML widgets in the module's .ui: they hold real MRML nodes and record calls."""

from __future__ import annotations

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
    """Fails on calls in an order the real widget mishandles (Slicer's SegmentEditor module is the model):
    the editor node must be set before the scene (else the selections made when the scene is set are
    lost), keyboard shortcuts are installed once and uninstalled once, and a segmentation node must belong
    to the editor's scene."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.editorNode = self.segmentationNode = self.sourceVolumeNode = self.activeEffect = None
        self.segmentationNodeSelectorVisible = self.sourceVolumeNodeSelectorVisible = True
        self.switchToSegmentationsButtonVisible = True
        self.shortcutsInstalled = False
        self.calls: list[str] = []

    def setMRMLScene(self, scene) -> None:
        if self.editorNode is None and scene is not None:
            raise RuntimeError("qMRMLSegmentEditorWidget: set the segment editor node before the scene")
        self.calls.append("setMRMLScene")
        super().setMRMLScene(scene)

    def setMRMLSegmentEditorNode(self, node) -> None:
        self.calls.append("setMRMLSegmentEditorNode")
        self.editorNode = node

    def mrmlSegmentEditorNode(self):
        return self.editorNode

    def setSegmentationNode(self, node) -> None:
        if node is not None and (self.scene is None or node.GetScene() is not self.scene):
            raise RuntimeError("qMRMLSegmentEditorWidget: segmentation node is not in the editor's scene")
        self.segmentationNode = node

    def setSourceVolumeNode(self, node) -> None:
        self.sourceVolumeNode = node

    def setActiveEffect(self, effect) -> None:
        self.activeEffect = effect

    def installKeyboardShortcuts(self) -> None:
        if self.shortcutsInstalled:
            raise RuntimeError("qMRMLSegmentEditorWidget: keyboard shortcuts installed twice")
        self.shortcutsInstalled = True

    def uninstallKeyboardShortcuts(self) -> None:
        self.shortcutsInstalled = False

    def removeViewObservations(self) -> None:
        self.calls.append("removeViewObservations")

    def saveStateForUndo(self) -> None:
        """As the real widget: one state of the edited segmentation in its history (a REAL
        ``vtkSegmentationHistory`` here, so ``undo()`` really restores the segments)."""
        import slicer

        self.calls.append("saveStateForUndo")
        if self.segmentationNode is None:
            return
        segmentation = self.segmentationNode.GetSegmentation()
        if getattr(self, "_history", None) is None or self._historySegmentation is not segmentation:
            self._history = slicer.vtkSegmentationHistory()
            self._history.SetSegmentation(segmentation)
            self._historySegmentation = segmentation
        self._history.SaveState()

    def undo(self) -> None:
        self.calls.append("undo")
        if getattr(self, "_history", None) is not None:
            self._history.RestorePreviousState()

    def updateWidgetFromMRML(self) -> None:
        self.calls.append("updateWidgetFromMRML")
