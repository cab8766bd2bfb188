"""The *AI correct* Segment Editor effect as Slicer loads it: ``qSlicerSegmentEditorScriptedEffect.setPythonSource``
loads this file as a module named after its folder and instantiates the class named after the file, so this
folder holds nothing else and is not a package. The effect itself is ``NeonatalLungSegSlicerLib.correcting.aiCorrectEffect``."""

from SegmentEditorEffects import AbstractScriptedSegmentEditorEffect

from NeonatalLungSegSlicerLib.correcting.aiCorrectEffect import AICorrectEffectBehaviour


class NeonatalLungAICorrectEffect(AICorrectEffectBehaviour, AbstractScriptedSegmentEditorEffect):
    """AI correct: one click in a slice view corrects the selected lung (see aiCorrectEffect.py)."""
