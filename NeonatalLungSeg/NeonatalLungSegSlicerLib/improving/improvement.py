"""The *Improve model* section's Logic side: what the training folder holds against the selected model, the
``improve`` run, its before/after table and the one-click switch between the new model and its parent.

The run is ``neonatal-lung-seg improve`` (``neonatal_lung_training.improve.command``, the command line's own
code path) in its own process, started with PythonSlicer in its own process group
(``NeonatalLungSegLib.worker.improve_process``): never a thread of Slicer, never the segmentation worker, so
Segment and AI correct go on while it trains. The Logic owns the ``Improver``, so a run keeps going while
the panel is collapsed or another module is shown. No widgets; nothing here imports torch.
"""

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import vtk

from NeonatalLungSegLib.worker import improve_process
from NeonatalLungSegLib.worker.improve_process import IMPROVE_MODULE, ImproveRun
from NeonatalLungSegSlicerLib import mrmlNodes

TRAINING_REQUIREMENTS = {"monai": "1.4"}  # pyproject.toml [train]; the rest of improve's needs are the engine's
IMPROVE_DEVICES = {"auto": "auto", "GPU": "cuda", "CPU": "cpu"}  # the improve command's device names
REVIEWED = ("reviewed", "reference")  # what improve trains on (training.dataset.select_cases, reviewed_only)
TABLE_NAME = "Improve model: before / after"
MAX_LINEAGE = 32  # model -> parent steps followed through improvement.json
CHECKOUT_TRAINING = Path(__file__).resolve().parents[3] / "Training"  # the module run from a source checkout


@dataclass
class FolderSummary:
    """A training folder against a model: reviewed cases, and how many are of subjects the model's lineage
    never saw (neither trained, validated nor held out on)."""

    folder: str
    reviewed: int = 0
    new: int = 0
    modelLabel: str = "the selected model"
    problem: str = ""

    def text(self):
        if self.problem:
            return self.problem
        return (f"{self.reviewed} reviewed case(s) in {self.folder}; {self.new} new since {self.modelLabel}.")


def lineageSubjects(modelFolder):
    """Subjects in ``training.split_subjects`` of the model and of every parent reached through
    ``improvement.json`` (an improved model's parent folder)."""
    from NeonatalLungSegLib.errors import NeonatalLungSegError
    from NeonatalLungSegLib.models.model_folder import read_config

    subjects, seen, folder = set(), set(), Path(str(modelFolder))
    for _ in range(MAX_LINEAGE):
        key = folder.expanduser().resolve()
        if key in seen:
            break
        seen.add(key)
        try:
            config = read_config(folder)
        except (NeonatalLungSegError, OSError, ValueError, TypeError):
            break
        split = (config.training or {}).get("split_subjects")
        for names in (split.values() if isinstance(split, dict) else []):
            subjects.update(str(n) for n in (names if isinstance(names, list) else []) if isinstance(n, str))
        if not (folder / improve_process.RECORD_NAME).is_file():
            break
        try:
            folder = Path(improve_process.read_record(folder)["parent"]["folder"])
        except (NeonatalLungSegError, OSError):
            break
    return subjects


def summarize(trainingFolder, modelFolder):
    """The panel's line about the training folder (never raises: a problem is part of the summary)."""
    from NeonatalLungSegLib.dataset.training_folder import read_training_folder
    from NeonatalLungSegLib.errors import NeonatalLungSegError
    from NeonatalLungSegLib.models.registry import entry_for

    text = str(trainingFolder or "").strip()
    summary = FolderSummary(text)
    entry = entry_for(Path(str(modelFolder))) if str(modelFolder or "").strip() else None
    if entry is not None and entry.usable:
        summary.modelLabel = entry.label
    folder = Path(text).expanduser()
    if not text or not folder.is_absolute():
        summary.problem = "Choose the training folder (a full path) in Export for retraining."
    elif not folder.is_dir():
        summary.problem = f"{folder}: no such folder yet (Export corrected cases into it first)."
    else:
        try:
            cases = read_training_folder(folder).cases
        except (NeonatalLungSegError, OSError, ValueError) as error:
            summary.problem = str(error).splitlines()[0]
        else:
            reviewed = [c for c in cases if c.review_status in REVIEWED]
            known = lineageSubjects(modelFolder) if entry is not None and entry.usable else set()
            summary.reviewed, summary.new = len(reviewed), sum(c.subject not in known for c in reviewed)
    return summary


def trainingPackagePaths():
    """What must go on the improve process's PYTHONPATH to import ``neonatal_lung_training``."""
    if (CHECKOUT_TRAINING / "neonatal_lung_training" / "__init__.py").is_file():
        return [CHECKOUT_TRAINING]
    if importlib.util.find_spec("neonatal_lung_training") is not None:  # installed with pip
        return []
    raise ValueError("Improve needs the training package (neonatal_lung_training): add the module from a source "
                     "checkout, or pip install the project with its [train] extra into Slicer's Python.")


def missingTrainingPackages():
    from NeonatalLungSegLib.models import requirements

    return [r for r in requirements.check(TRAINING_REQUIREMENTS) if not r.satisfied]


class Improver:
    """At most one ``improve`` run at a time (``job``: the running or the last one). ``module`` and
    ``extraPaths`` exist for tests (a fake command printing epoch lines), as ProcessRunner's fake loaders."""

    def __init__(self, python=None, module=IMPROVE_MODULE, extraPaths=(), int8=True):
        self.python, self.module, self.extraPaths, self.int8 = python, module, list(extraPaths), int8
        self.job = None

    @property
    def running(self):
        return self.job is not None and self.job.running

    def start(self, trainingFolder, modelFolder, minutes, device="auto"):
        """Check the input (one line each, nothing written), then start the run; returns it at once."""
        from NeonatalLungSegLib.errors import InputError, ModelFolderError
        from NeonatalLungSegLib.models.registry import entry_for
        from NeonatalLungSegSlicerLib.processRunner import slicerPython

        if self.running:
            raise ValueError("An improvement is already running; cancel it or wait for it.")
        summary = summarize(trainingFolder, modelFolder)
        if summary.problem:
            raise InputError(summary.problem)
        if summary.reviewed == 0:
            raise InputError(f"{summary.folder}: no reviewed cases (export corrected cases first)")
        entry = entry_for(Path(str(modelFolder)))
        if not entry.usable or entry.kind != "segmentation":
            raise ModelFolderError(f"{modelFolder}: not a segmentation model folder to improve "
                                   f"({entry.problem or entry.kind})")
        paths = list(self.extraPaths)
        if self.module == IMPROVE_MODULE:
            paths += trainingPackagePaths()
            missing = missingTrainingPackages()
            if missing:
                raise InputError("Improve needs " + ", ".join(r.describe() for r in missing)
                                 + " in Slicer's Python (pip install monai).")
        output = improve_process.new_model_folder(Path(summary.folder), entry.name)
        job = ImproveRun(Path(summary.folder).expanduser(), output, Path(str(modelFolder)), minutes,
                         IMPROVE_DEVICES.get(device, device), self.int8, python=self.python or slicerPython(),
                         module=self.module, extra_paths=paths)
        job.start()
        if self.job is not None:
            self.job.close()  # the last run's log
        self.job = job
        return job

    def cancel(self):
        if self.job is not None:
            self.job.cancel()

    def close(self):
        """Module reload or application exit: a run still going is cancelled and undone."""
        if self.job is not None:
            self.job.close()


@dataclass
class Outcome:
    """A finished run: the new folder, its parent, the record, the table node and the decision in words."""

    folder: Path
    parent: Path
    record: dict
    table: object
    text: str

    @property
    def promoted(self):
        return bool(self.record["decision"].get("promoted"))


def outcomeOf(scene, job, table=None):
    """On the GUI thread once the run is done: its record into a table node (re-raises the run's error)."""
    record = job.result()
    return Outcome(job.output, Path(record["parent"]["folder"]), record, resultTable(scene, record, table),
                   improve_process.decision_text(record))


def resultTable(scene, record, table=None):
    """Held-out corrected cases and each anchor set: parent against new model (mean Dice)."""
    if table is None or table.GetScene() is not scene:
        table = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(TABLE_NAME))
    rows = improve_process.score_rows(record)
    classes = (vtk.vtkStringArray, vtk.vtkIntArray, vtk.vtkDoubleArray, vtk.vtkDoubleArray, vtk.vtkDoubleArray)
    titles = ("Cases", "Count", "Parent Dice", "New model Dice", "Change")
    return mrmlNodes.fillTable(table, [(title, arrayClass, [row[index] for row in rows])
                                       for index, (title, arrayClass) in enumerate(zip(titles, classes))])


def makeDefault(folder):
    """Make ``folder`` the default model of the registry (the CLI's too); the bundled model means no choice."""
    from NeonatalLungSegLib.models import registry

    folder = Path(str(folder))
    if folder.expanduser().resolve() == registry.bundled_model_folder().resolve():
        registry.set_default(None)
    else:
        registry.set_default(folder)
