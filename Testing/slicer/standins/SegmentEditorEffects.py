"""Stand-in for Slicer's ``SegmentEditorEffects`` Python package (the scripted effects' base classes), for the
AI correct effect tests only (never shipped).

Ported from Slicer's ``Modules/Loadable/Segmentations/EditorEffects/Python/SegmentEditorEffects/
AbstractScriptedSegmentEditorEffect.py`` and ``AbstractScriptedSegmentEditorLabelEffect.py``: the same
methods, bodies kept where they only call the host effect (``self.scriptedEffect``, the C++ adaptor, here
``qSlicerSegmentationsEditorEffectsPythonQt.qSlicerSegmentEditorScriptedEffect``). The coordinate helpers
that need ``qt.QPoint`` / ``qt.QVector3D`` go through the host's slice-node arithmetic instead.
"""

from __future__ import annotations

import slicer

__all__ = ["AbstractScriptedSegmentEditorEffect", "AbstractScriptedSegmentEditorLabelEffect"]


class AbstractScriptedSegmentEditorEffect:
    """Abstract scripted segment editor effects for effects implemented in python (Slicer's docstring: create a
    ``qSlicerSegmentEditorScriptedEffect``, ``setPythonSource`` this file, then ``self().register()``)."""

    def __init__(self, scriptedEffect):
        self.scriptedEffect = scriptedEffect

    def register(self):
        effectFactorySingleton = slicer.qSlicerSegmentEditorEffectFactory.instance()
        effectFactorySingleton.registerEffect(self.scriptedEffect)

    def cleanup(self):
        pass

    def rasToXy(self, ras, viewWidget):
        return self.scriptedEffect.rasToXy(ras, viewWidget)

    def xyzToRas(self, xyz, viewWidget):
        return self.scriptedEffect.xyzToRas(xyz, viewWidget)

    def xyToRas(self, xy, viewWidget):
        return self.scriptedEffect.xyToRas(xy, viewWidget)

    def xyToIjk(self, xy, viewWidget, image, parentTransformNode=None):
        return [int(v) for v in self.scriptedEffect.xyToIjk(xy, viewWidget, image, parentTransformNode)]


class AbstractScriptedSegmentEditorLabelEffect(AbstractScriptedSegmentEditorEffect):
    """Label effects edit the currently selected segment (paint, draw, ...)."""

    def __init__(self, scriptedEffect):
        AbstractScriptedSegmentEditorEffect.__init__(self, scriptedEffect)
