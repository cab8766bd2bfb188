"""Every user choice of the module, in a typed parameter node; the .ui binds widgets to these names
(``SlicerParameterName``), so the scene saves the choices. The three folders are strings bound by
``pathFields`` (an empty field must stay empty, not become "."); "" means "not chosen"."""

import pathlib
from typing import Annotated

from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode, vtkMRMLTableNode
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper

from NeonatalLungSegSlicerLib import resources

DEFAULT_TRAINING_FOLDER = pathlib.Path.home() / "NeonatalLungSeg-training"


@parameterNodeWrapper
class NeonatalLungSegParameterNode:
    inputVolume: vtkMRMLScalarVolumeNode
    modelFolder: str = str(resources.defaultModelFolder())
    device: Annotated[str, Choice(["auto", "GPU", "CPU"])] = "auto"
    keepLargestComponents: bool = True
    fillHoles: bool = True
    splitLeftRight: bool = True
    showProbabilities: bool = False
    reviewSliceCount: Annotated[int, WithinRange(0, 50)] = 5
    flipCheck: bool = False
    replacePrevious: bool = True
    outputSegmentation: vtkMRMLSegmentationNode
    volumeTable: vtkMRMLTableNode
    probabilityVolume: vtkMRMLScalarVolumeNode
    trainingFolder: str = str(DEFAULT_TRAINING_FOLDER)
    reviewer: str = ""
    refineModelFolder: str = str(resources.defaultRefineModelFolder())
    improveMinutes: Annotated[float, WithinRange(0.1, 240.0)] = 5.0  # improve's --minutes (its own default)
