"""Stand-in for ``slicer.ScriptedLoadableModule`` (Slicer's Python base classes are not in any wheel).

Logic behaves as Slicer's does where the tests rely on it: the parameter node is the scene's singleton
``vtkMRMLScriptedModuleNode`` tagged with the module name, a real MRML node. *Reload and Test* is Slicer's
(Base/Python/slicer/ScriptedLoadableModule.py): the module puts its ``runTest`` in ``slicer.selfTests``, which
builds ``<ModuleName>Test()`` and calls its ``runTest()``, and the widget's ``onReloadAndTest`` runs that inside
``slicer.util.tryWithErrorDisplay("Reload and Test failed.")``, so anything raised, a skip included, is a popup.
"""

from __future__ import annotations

import importlib
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
        if not hasattr(slicer, "selfTests"):
            slicer.selfTests = {}
        slicer.selfTests[self.moduleName] = self.runTest

    def runTest(self, msec=100, **kwargs):
        module = importlib.import_module(self.__module__)
        className = self.moduleName + "Test"
        try:
            TestCaseClass = getattr(module, className)
        except AttributeError:
            raise AssertionError(f"Test case class not found: {self.__module__}.{className} ")
        testCase = TestCaseClass()
        testCase.messageDelay = msec
        testCase.runTest(**kwargs)


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

    def onReloadAndTest(self, **kwargs) -> None:
        with slicer.util.tryWithErrorDisplay("Reload and Test failed."):
            self.onReload()
            test = slicer.selfTests[self.moduleName]
            test(msec=100, **kwargs)


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
