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
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.editorNode = self.segmentationNode = self.sourceVolumeNode = self.activeEffect = None
        self.segmentationNodeSelectorVisible = self.sourceVolumeNodeSelectorVisible = True
        self.switchToSegmentationsButtonVisible = True

    def setMRMLSegmentEditorNode(self, node) -> None:
        self.editorNode = node

    def mrmlSegmentEditorNode(self):
        return self.editorNode

    def setSegmentationNode(self, node) -> None:
        self.segmentationNode = node

    def setSourceVolumeNode(self, node) -> None:
        self.sourceVolumeNode = node

    def setActiveEffect(self, effect) -> None:
        self.activeEffect = effect
