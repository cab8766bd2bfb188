"""Stand-in for Slicer's segment editor effect classes (C++, wrapped by PythonQt; no wheel has them), for the AI
correct effect tests only (never shipped).

Modelled on Slicer's sources (Modules/Loadable/Segmentations/EditorEffects):
- ``qSlicerSegmentEditorEffectFactory``: a singleton; ``registerEffect`` refuses an empty name and a name already
  registered, emits ``effectRegistered``; ``copyEffects`` clones each registered effect an editor lacks.
- ``qSlicerSegmentEditorAbstractEffect``: parameters stored as attributes ``<effect name>.<parameter>`` of the
  segment editor node (common ones without the prefix), ``EffectParameterModified`` on a change; an options
  frame; ``saveStateForUndo`` / ``modifySegmentByLabelmap`` through the editor's REAL
  ``vtkSlicerSegmentEditorLogic`` (set by the editor widget, as ``setSegmentEditorLogic`` does).
- ``qSlicerSegmentEditorScriptedEffect``: ``setPythonSource`` takes the module name from the file's folder and the
  class name from the file name (+ "Effect"), reuses that class when the module has it, else loads the file as
  that module, and publishes the instance as ``slicer.<module name>``; every virtual method calls the Python
  class's method of the same name when it has one, the base behaviour otherwise (activate/deactivate and
  setupOptionsFrame run the base first); ``processInteractionEvents`` must return a bool.
- Paint and Erase, standing in for Slicer's C++ effects: a left click in a slice view adds (removes) the
  clicked voxel to (from) the selected segment through the editor logic, with an undo state first, and is
  consumed (True), as the real effects consume their strokes.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import qt
import vtk

import slicer


class qSlicerSegmentEditorAbstractEffect(qt.QObject):  # noqa: N801 - Slicer's spelling
    ModificationModeSet, ModificationModeAdd, ModificationModeRemove, ModificationModeRemoveAll = 0, 1, 2, 3
    NotConfirmed, ConfirmedWithoutDialog, ConfirmedWithDialog = 0, 1, 2

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.name = ""
        self.title = ""
        self.perSegment = True
        self.requireSegments = True
        self.showEffectCursorInSliceView = True
        self._active = False
        self._editorNode = None
        self._logic = None
        self._editor = None
        self._optionsFrame = qt.QFrame()
        self._optionsFrame.setVisible(False)

    # called by the editor widget
    def setCallbackSlots(self, editor) -> None:
        self._editor = editor

    def setSegmentEditorLogic(self, logic) -> None:
        self._logic = logic

    def setParameterSetNode(self, node) -> None:
        self._editorNode = node

    def parameterSetNode(self):
        return self._editorNode

    def scene(self):
        return self._editorNode.GetScene() if self._editorNode is not None else None

    # life cycle
    def activate(self) -> None:
        self._optionsFrame.setVisible(True)
        self._active = True
        self.updateGUIFromMRML()

    def deactivate(self) -> None:
        self._optionsFrame.setVisible(False)
        self._active = False

    def active(self) -> bool:
        return self._active

    def setupOptionsFrame(self) -> None:
        pass

    def processInteractionEvents(self, callerInteractor, eid, viewWidget) -> bool:
        return False

    def processViewNodeEvents(self, callerViewNode, eid, viewWidget) -> None:
        pass

    def layoutChanged(self) -> None:
        pass

    def updateGUIFromMRML(self) -> None:
        pass

    def updateMRMLFromGUI(self) -> None:
        pass

    def cleanup(self) -> None:
        pass

    # options frame
    def optionsFrame(self):
        return self._optionsFrame

    def addOptionsWidget(self, widget) -> None:
        widget.setParent(self._optionsFrame)

    def addLabeledOptionsWidget(self, label, widget):
        labelWidget = qt.QLabel(label)
        labelWidget.setParent(self._optionsFrame)
        widget.setParent(self._optionsFrame)
        return labelWidget

    # parameters (attributes of the segment editor node)
    def _key(self, name: str) -> str:
        return f"{self.name}.{name}"

    def parameterDefined(self, name: str) -> bool:
        return self._editorNode is not None and self._editorNode.GetAttribute(self._key(name)) is not None

    def commonParameterDefined(self, name: str) -> bool:
        return self._editorNode is not None and self._editorNode.GetAttribute(name) is not None

    def parameter(self, name: str) -> str:
        if self._editorNode is None:
            return ""
        value = self._editorNode.GetAttribute(self._key(name))
        if value is None:
            value = self._editorNode.GetAttribute(name)
        return value or ""

    def integerParameter(self, name: str) -> int:
        try:
            return int(self.parameter(name))
        except ValueError:
            return 0

    def doubleParameter(self, name: str) -> float:
        try:
            return float(self.parameter(name))
        except ValueError:
            return 0.0

    def _set(self, key: str, value) -> None:
        if self._editorNode is None:
            return
        value = str(value)
        if self._editorNode.GetAttribute(key) == value:
            return
        self._editorNode.SetAttribute(key, value)
        self._editorNode.InvokeCustomModifiedEvent(slicer.vtkMRMLSegmentEditorNode.EffectParameterModified)

    def setParameter(self, name: str, value) -> None:
        self._set(self._key(name), value)

    def setParameterDefault(self, name: str, value) -> None:
        if not self.parameterDefined(name):
            self.setParameter(name, value)

    def setCommonParameter(self, name: str, value) -> None:
        self._set(name, value)

    def setCommonParameterDefault(self, name: str, value) -> None:
        if not self.commonParameterDefined(name):
            self.setCommonParameter(name, value)

    # editing
    def saveStateForUndo(self) -> None:
        if self._editor is not None:
            self._editor.saveStateForUndo()

    def selectEffect(self, effectName: str) -> None:
        if self._editor is not None:
            self._editor.setActiveEffectByName(effectName)

    def confirmCurrentSegmentVisible(self) -> int:
        return self.ConfirmedWithoutDialog

    def modifySegmentByLabelmap(self, segmentationNode, segmentId, modifierLabelmap, modificationMode,
                                bypassMasking=False) -> None:
        logic = self._logic
        mode = (logic.ModificationModeSet, logic.ModificationModeAdd, logic.ModificationModeRemove,
                logic.ModificationModeRemoveAll)[int(modificationMode)]
        logic.ModifySegmentByLabelmap(segmentationNode, segmentId, modifierLabelmap, mode, self.perSegment,
                                      bypassMasking)

    def modifySelectedSegmentByLabelmap(self, modifierLabelmap, modificationMode, bypassMasking=False) -> None:
        self.modifySegmentByLabelmap(self._editorNode.GetSegmentationNode(), self._editorNode.GetSelectedSegmentID(),
                                     modifierLabelmap, modificationMode, bypassMasking)

    def defaultModifierLabelmap(self):
        self._logic.ResetModifierLabelmapToDefault()
        return self._logic.GetModifierLabelmap()

    def sourceVolumeImageData(self):
        return self._logic.GetAlignedSourceVolume()

    def selectedSegmentLabelmap(self):
        return self._logic.GetSelectedSegmentLabelmap()

    # coordinates, through the view's REAL slice node
    @staticmethod
    def xyToRas(xy, viewWidget):
        matrix = slicer.util.arrayFromVTKMatrix(viewWidget.mrmlSliceNode().GetXYToRAS())
        return (matrix @ np.array([float(xy[0]), float(xy[1]), 0.0, 1.0]))[:3]

    @staticmethod
    def xyToIjk(xy, viewWidget, image, parentTransformNode=None):
        ras = qSlicerSegmentEditorAbstractEffect.xyToRas(xy, viewWidget)
        matrix = vtk.vtkMatrix4x4()
        image.GetWorldToImageMatrix(matrix)
        return np.round(slicer.util.arrayFromVTKMatrix(matrix) @ np.array([*ras, 1.0]))[:3].astype(int)


class qSlicerSegmentEditorScriptedEffect(qSlicerSegmentEditorAbstractEffect):  # noqa: N801
    PYTHON_METHODS = ("activate", "deactivate", "setupOptionsFrame", "processInteractionEvents",
                      "processViewNodeEvents", "setMRMLDefaults", "layoutChanged", "updateGUIFromMRML",
                      "updateMRMLFromGUI", "cleanup", "helpText", "icon", "clone")

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.name = "UnnamedScriptedEffect"
        self._self = None
        self._source = ""

    def setPythonSource(self, path: str) -> bool:
        if not (path.endswith(".py") or path.endswith(".pyc")):
            return False
        source = Path(path)
        moduleName = source.parent.name
        className = source.stem if source.stem.endswith("Effect") else source.stem + "Effect"
        module = sys.modules.get(moduleName)
        cls = getattr(module, className, None) if module is not None else None
        if cls is None:  # qSlicerScriptedUtils::loadSourceAsModule: the file becomes module `moduleName`
            spec = importlib.util.spec_from_file_location(moduleName, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[moduleName] = module
            spec.loader.exec_module(module)
            cls = getattr(module, className, None)
        if cls is None:
            raise RuntimeError(f"Failed to load segment editor scripted effect: class {className} was not found "
                               f"in {path}")
        self._self = cls(self)
        self._source = path
        setattr(slicer, moduleName, self._self)
        return True

    def pythonSource(self) -> str:
        return self._source

    def self(self):
        return self._self

    def _python(self, method):
        return getattr(self._self, method, None) if self._self is not None else None

    def activate(self) -> None:
        super().activate()
        if self._python("activate"):
            self._self.activate()

    def deactivate(self) -> None:
        super().deactivate()
        if self._python("deactivate"):
            self._self.deactivate()

    def setupOptionsFrame(self) -> None:
        super().setupOptionsFrame()
        if self._python("setupOptionsFrame"):
            self._self.setupOptionsFrame()

    def processInteractionEvents(self, callerInteractor, eid, viewWidget) -> bool:
        method = self._python("processInteractionEvents")
        if method is None:
            return super().processInteractionEvents(callerInteractor, eid, viewWidget)
        result = method(callerInteractor, eid, viewWidget)
        if not isinstance(result, bool):
            print(f"{self._source} - function 'processInteractionEvents' is expected to return a boolean")
            return False
        return result

    def processViewNodeEvents(self, callerViewNode, eid, viewWidget) -> None:
        if self._python("processViewNodeEvents"):
            self._self.processViewNodeEvents(callerViewNode, eid, viewWidget)

    def setMRMLDefaults(self) -> None:
        if self._python("setMRMLDefaults"):
            self._self.setMRMLDefaults()

    def layoutChanged(self) -> None:
        if self._python("layoutChanged"):
            self._self.layoutChanged()

    def updateGUIFromMRML(self) -> None:
        if self._python("updateGUIFromMRML"):
            self._self.updateGUIFromMRML()

    def updateMRMLFromGUI(self) -> None:
        if self._python("updateMRMLFromGUI"):
            self._self.updateMRMLFromGUI()

    def cleanup(self) -> None:
        if self._python("cleanup"):
            self._self.cleanup()

    def helpText(self) -> str:
        return self._self.helpText() if self._python("helpText") else ""

    def icon(self):
        return self._self.icon() if self._python("icon") else qt.QIcon()

    def clone(self):
        method = self._python("clone")
        clone = method() if method is not None else None
        if not isinstance(clone, qSlicerSegmentEditorAbstractEffect):
            raise RuntimeError(f"{self._source}: clone: Invalid cloned effect object returned from python!")
        return clone


class _VoxelEffect(qSlicerSegmentEditorAbstractEffect):
    """Paint / Erase stand-ins (C++ effects in Slicer): a left click in a slice view edits the clicked voxel of
    the selected segment through the editor logic, after an undo state, and is consumed."""

    MODE = qSlicerSegmentEditorAbstractEffect.ModificationModeAdd

    def __init__(self, name: str, parent=None) -> None:
        super().__init__(parent)
        self.name = self.title = name
        self.strokes = 0

    def clone(self):
        return type(self)(self.name)

    def setMRMLDefaults(self) -> None:
        pass

    def processInteractionEvents(self, callerInteractor, eid, viewWidget) -> bool:
        if viewWidget.className() != "qMRMLSliceWidget" or eid != vtk.vtkCommand.LeftButtonPressEvent:
            return False
        modifier = self.defaultModifierLabelmap()
        i, j, k = self.xyToIjk(callerInteractor.GetEventPosition(), viewWidget, modifier)
        dims = modifier.GetDimensions()
        extent = modifier.GetExtent()
        ii, jj, kk = i - extent[0], j - extent[2], k - extent[4]
        if 0 <= ii < dims[0] and 0 <= jj < dims[1] and 0 <= kk < dims[2]:
            from vtk.util.numpy_support import vtk_to_numpy

            view = vtk_to_numpy(modifier.GetPointData().GetScalars()).reshape(dims[2], dims[1], dims[0])
            view[...] = 0
            view[kk, jj, ii] = 1
            modifier.Modified()
            self.saveStateForUndo()
            self.modifySelectedSegmentByLabelmap(modifier, self.MODE)
            self.strokes += 1
        return True


class PaintEffectStandIn(_VoxelEffect):
    MODE = qSlicerSegmentEditorAbstractEffect.ModificationModeAdd


class EraseEffectStandIn(_VoxelEffect):
    MODE = qSlicerSegmentEditorAbstractEffect.ModificationModeRemove


class qSlicerSegmentEditorEffectFactory(qt.QObject):  # noqa: N801
    SIGNALS = ("effectRegistered",)
    _instance = None

    def __init__(self) -> None:
        super().__init__()
        self._registered: list = []

    @classmethod
    def instance(cls):
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def registeredEffects(self) -> list:
        return list(self._registered)

    def registerEffect(self, effect) -> bool:
        if effect is None or not effect.name:
            return False
        if any(existing.name == effect.name for existing in self._registered):
            return False
        self._registered.append(effect)
        self.effectRegistered.emit(effect.name)
        return True

    def copyEffects(self, effects: list) -> list:
        copied = []
        for effect in self._registered:
            if any(existing.name == effect.name for existing in effects):
                continue
            clone = effect.clone()
            if clone is None:
                continue
            effects.append(clone)
            copied.append(clone)
        return copied


def registerCoreEffects() -> None:
    """What Slicer's Segmentations module does at startup for its C++ effects (Paint and Erase here)."""
    factory = qSlicerSegmentEditorEffectFactory.instance()
    factory.registerEffect(PaintEffectStandIn("Paint"))
    factory.registerEffect(EraseEffectStandIn("Erase"))
