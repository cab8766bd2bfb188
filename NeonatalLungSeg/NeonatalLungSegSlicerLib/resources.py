"""Where the bundled sample is, in a source checkout and in an installed extension; the bundled model is
the library registry's business (``NeonatalLungSegLib.models.registry.default_model_folder``), asked here.

The model and the sample live once, at the repository's top level (the CLI and the tests use them there).
The extension build copies them next to the module's own resources (see NeonatalLungSeg/CMakeLists.txt),
so both layouts are searched: ``<module dir>/Resources`` (installed) then ``<module dir>/../Resources``
(the module folder added to Slicer's module paths straight from a checkout).
"""

import hashlib
import logging
from pathlib import Path

import slicer

MODULE_DIR = Path(__file__).resolve().parents[1]
SAMPLE_FILE = "sample-neonatal-chest.nii.gz"
SAMPLE_NAME = "NeonatalChestMRI"
SAMPLE_CATEGORY = "Neonatal lung MRI"


def dataRoots():
    return [MODULE_DIR / "Resources", MODULE_DIR.parent / "Resources"]


def defaultModelFolder():
    """The model a new parameter node starts with (the registry decides: the bundled one)."""
    from NeonatalLungSegLib.models.registry import default_model_folder

    return default_model_folder()


def defaultRefineModelFolder():
    """The click-refinement model AI correct starts with: the bundled one (it may not be installed yet)."""
    from NeonatalLungSegLib.models.registry import bundled_refine_model_folder

    return bundled_refine_model_folder()


def samplePath():
    for root in dataRoots():
        path = root / "Sample" / SAMPLE_FILE
        if path.is_file():
            return path
    raise FileNotFoundError(f"bundled sample {SAMPLE_FILE} not found under {[str(r) for r in dataRoots()]}")


def iconPath():
    return MODULE_DIR / "Resources" / "Icons" / "NeonatalLungSeg.png"


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def registerSampleData():
    """Add the bundled synthetic sample to the Sample Data module: a new user tries the module in two clicks.

    The URI is the local file (nothing is downloaded); the checksum lets SampleData reuse its cached copy.
    """
    try:
        import SampleData
    except ImportError:  # Slicer without the SampleData module (e.g. a custom application)
        return False
    try:
        path = samplePath()
    except FileNotFoundError as error:
        logging.warning(f"NeonatalLungSeg: {error}")
        return False
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category=SAMPLE_CATEGORY,
        sampleName=SAMPLE_NAME,
        thumbnailFileName=str(iconPath()),
        uris=path.as_uri(),
        fileNames=SAMPLE_FILE,
        nodeNames=SAMPLE_NAME,
        checksums=f"SHA256:{_sha256(path)}",
        loadFileType="VolumeFile",
    )
    return True


def loadVolumeFile(path, scene=None, name=None):
    """Read a volume file into a new scalar volume node through Slicer's own volume reader."""
    scene = scene or slicer.mrmlScene
    path = Path(path)
    volumeNode = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode",
                                         scene.GenerateUniqueName(name or path.name.split(".")[0]))
    storageNode = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storageNode.SetFileName(str(path))
    storageNode.SetSingleFile(True)  # never read numbered neighbours (case_001, case_002, ...) as one series
    if not storageNode.ReadData(volumeNode):
        scene.RemoveNode(volumeNode)
        scene.RemoveNode(storageNode)
        raise RuntimeError(f"could not read the volume {path}")
    volumeNode.SetAndObserveStorageNodeID(storageNode.GetID())
    volumeNode.CreateDefaultDisplayNodes()
    return volumeNode


def loadSampleVolume(scene=None, name=SAMPLE_NAME):
    """Read the bundled sample into a new scalar volume node through Slicer's own volume reader."""
    return loadVolumeFile(samplePath(), scene, name)
