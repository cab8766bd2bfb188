"""Stand-in for ``slicer.ScriptedLoadableModule`` (Slicer's Python base classes are not in any wheel).

Logic behaves as Slicer's does where the tests rely on it: the parameter node is the scene's singleton
``vtkMRMLScriptedModuleNode`` tagged with the module name, a real MRML node.
"""

from __future__ import annotations

import os
import sys
import unittest

import qt

import slicer


class ScriptedLoadableModule:
    def __init__(self, parent) -> None:
        self.parent = parent
        self.moduleName = self.__class__.__name__
        parent.title = ""
        parent.categories = []
        parent.dependencies = []
        parent.contributors = []
        parent.helpText = ""
        parent.acknowledgementText = ""


class ScriptedLoadableModuleWidget:
    def __init__(self, parent=None) -> None:
        self.parent = parent
        self.moduleName = self.__class__.__name__[: -len("Widget")]
        self.developerMode = False

    def resourcePath(self, filename: str) -> str:
        moduleDir = os.path.dirname(sys.modules[self.__class__.__module__].__file__)
        return os.path.join(moduleDir, "Resources", filename)

    def setup(self) -> None:
        self.layout = qt.QVBoxLayout()

    def onReload(self) -> None:
        self.reloaded = True


class ScriptedLoadableModuleLogic:
    def __init__(self, parent=None) -> None:
        self.moduleName = self.__class__.__name__[: -len("Logic")]

    def getParameterNode(self):
        node = slicer.mrmlScene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
        if node is None:
            node = slicer.mrmlScene.CreateNodeByClass("vtkMRMLScriptedModuleNode")
            node.UnRegister(None)
            node.SetSingletonTag(self.moduleName)
            node.SetName(slicer.mrmlScene.GenerateUniqueName(self.moduleName))
            node = slicer.mrmlScene.AddNode(node)
        return node


class ScriptedLoadableModuleTest(unittest.TestCase):
    def delayDisplay(self, message: str, msec: int = 1000) -> None:
        print(message)
