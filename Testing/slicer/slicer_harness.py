"""Real Slicer MRML without the Slicer application, for the module's CI tests.

The slicer-core wheel gives the scene and the C++ logics; what only the application provides (``slicer.app``,
``slicer.modules``, ``qt``, ``ctk``, ScriptedLoadableModule, parameterNodeWrapper) is supplied here: the
logics are real, the Qt layer is the stand-ins in ``standins/``. Import this module before ``slicer``.

Two traps are handled here:
- The wheel's ``slicer`` package extends its ``__path__`` with every ``slicer/`` folder on ``sys.path`` and
  imports each module found there. pytest puts ``Testing/`` on ``sys.path``, so this very folder
  (``Testing/slicer``) would be swallowed into the package; it is kept off ``sys.path`` while ``slicer`` is
  first imported.
- MRML logics keep non-owning pointers to each other and to the scene: every object is held in
  ``ENVIRONMENT`` for the whole session (letting one go crashed pytest with a segmentation fault).
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
MODULE_DIR = REPO / "NeonatalLungSeg"
STANDINS = HERE / "standins"

ENVIRONMENT: dict = {}


def _import_slicer():
    if "slicer" in sys.modules:
        return sys.modules["slicer"]
    saved = list(sys.path)
    sys.path[:] = [p for p in sys.path if not (Path(p or ".").resolve() / "slicer").resolve() == HERE]
    try:
        return importlib.import_module("slicer")
    except ImportError as error:
        import pytest

        pytest.skip(f"slicer-core is not installed ({error}); run `bash scripts/setup-venv.sh` "
                    "(it installs the [test] extra)", allow_module_level=True)
    finally:
        sys.path[:] = saved


slicer = _import_slicer()


class _CommandOptions:
    testingEnabled = True
    noMainWindow = True


class SlicerAppStandIn:
    """What the module and slicer.util ask of ``slicer.app`` in these tests (records connections)."""

    applicationName = "Slicer (stand-in)"
    majorVersion, minorVersion = 5, 10  # tests set 8 to check what Slicer 5.8 would do

    def __init__(self) -> None:
        self.connections: list[tuple[str, object]] = []
        self.overrideCursors = 0

    def connect(self, signal: str, slot) -> None:
        self.connections.append((signal, slot))

    def testingEnabled(self) -> bool:
        return True

    def commandOptions(self) -> _CommandOptions:
        return _CommandOptions()

    def setOverrideCursor(self, cursor) -> None:
        self.overrideCursors += 1

    def restoreOverrideCursor(self) -> None:
        self.overrideCursors -= 1

    def processEvents(self, *args) -> None:
        pass

    def layoutManager(self):
        """The slice views (``standins/sliceViews.py``), made on first use with real slice nodes."""
        if getattr(self, "_layoutManager", None) is None:
            import sliceViews

            self._layoutManager = sliceViews.LayoutManagerStandIn(ENVIRONMENT["scene"])
        return self._layoutManager


def install_standins() -> None:
    """Make ``qt``, ``ctk``, ``slicer.ScriptedLoadableModule``, ``slicer.parameterNodeWrapper`` and the segment
    editor effect classes (``SegmentEditorEffects``, ``qSlicerSegmentationsEditorEffectsPythonQt``,
    ``slicer.qSlicerSegmentEditor*``, with Paint and Erase registered as Slicer's Segmentations module does)
    importable."""
    if str(STANDINS) not in sys.path:
        sys.path.insert(0, str(STANDINS))
    for name in ("qt", "ctk", "mrmlWidgets", "uiLoader", "sliceViews", "SegmentEditorEffects"):
        importlib.import_module(name)
    effects = importlib.import_module("qSlicerSegmentationsEditorEffectsPythonQt")
    for name in ("qSlicerSegmentEditorScriptedEffect", "qSlicerSegmentEditorEffectFactory",
                 "qSlicerSegmentEditorAbstractEffect"):
        setattr(slicer, name, getattr(effects, name))
    effects.registerCoreEffects()
    for name in ("ScriptedLoadableModule", "parameterNodeWrapper"):
        module = importlib.import_module(name)
        sys.modules[f"slicer.{name}"] = module
        setattr(slicer, name, module)
    loader = sys.modules["uiLoader"]
    slicer.util.loadUI = loader.loadUI
    slicer.util.childWidgetVariables = loader.childWidgetVariables
    if not isinstance(getattr(slicer, "app", None), SlicerAppStandIn):
        slicer.app = SlicerAppStandIn()
    for path in (MODULE_DIR, REPO / "Training"):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))


def mrml_environment() -> dict:
    """One real scene with application, Segmentations, Volumes and Tables logics for the whole session."""
    if ENVIRONMENT:
        return ENVIRONMENT
    install_standins()
    scene = slicer.vtkMRMLScene()
    appLogic = slicer.vtkSlicerApplicationLogic()
    appLogic.SetMRMLScene(scene)
    segLogic = slicer.vtkSlicerSegmentationsModuleLogic()
    segLogic.SetMRMLScene(scene)
    volLogic = slicer.vtkSlicerVolumesLogic()
    volLogic.SetMRMLApplicationLogic(appLogic)
    volLogic.SetMRMLScene(scene)
    tablesLogic = slicer.vtkSlicerTablesLogic()
    tablesLogic.SetMRMLScene(scene)
    slicer.mrmlScene = scene
    slicer.modules = types.SimpleNamespace(
        segmentations=types.SimpleNamespace(logic=lambda: segLogic),
        volumes=types.SimpleNamespace(logic=lambda: volLogic),
        tables=types.SimpleNamespace(logic=lambda: tablesLogic))
    ENVIRONMENT.update(scene=scene, appLogic=appLogic, segmentationsLogic=segLogic, volumesLogic=volLogic,
                       tablesLogic=tablesLogic)
    return ENVIRONMENT


def import_module():
    """The module file NeonatalLungSeg.py, imported against the real MRML and the stand-ins."""
    mrml_environment()
    return importlib.import_module("NeonatalLungSeg")
