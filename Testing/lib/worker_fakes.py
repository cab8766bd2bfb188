"""Fake segmenters for the worker process tests, loaded *inside* the worker through the request's ``loader``.

They have the engine's interface (``config``, ``device``, ``predict``-free ``segment_array``) but no torch, so
a worker started for them comes up in about a second. The "model folder" a test passes is any folder it owns;
the fakes use it (or $NEONATAL_LUNG_SEG_FAKE_CONTROL) to talk to the test: a ``gate`` file releases a waiting
run, ``grandchild.pid`` names a child process the fake started (cancel must kill it too), ``loads`` counts how
often a loader ran.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class FakeResult:
    labels: np.ndarray
    probabilities: np.ndarray | None
    volumes: dict
    label_names: dict


class ThresholdSegmenter:
    """Voxels > 150 are lung; right half label 1, left half label 2. ``gate``: wait for that file first."""

    def __init__(self, folder: str, device: str, gated: bool = False, die: bool = False) -> None:
        from NeonatalLungSegLib.models.model_folder import ModelConfig

        # The Slicer widget tests point the fakes at their own folder (the model folder is a real model there).
        self.folder = Path(os.environ.get("NEONATAL_LUNG_SEG_FAKE_CONTROL") or folder)
        self.gated, self.die = gated, die
        self.config = ModelConfig(name="fake-threshold-model", version="9.9.9", weights_sha256="0" * 64)
        self.device = device
        with open(self.folder / "loads", "a", encoding="utf-8") as handle:
            handle.write(f"{os.getpid()}\n")

    def segment_array(self, array, geometry, options=None, with_probabilities=False, progress=None, cancel=None,
                      source="input volume"):
        from NeonatalLungSegLib.inference.measure import measure_volumes

        if self.gated:
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
            temporary = self.folder / "grandchild.pid.tmp"
            temporary.write_text(str(child.pid), encoding="utf-8")
            os.replace(temporary, self.folder / "grandchild.pid")  # the test never reads a half-written file
        for step in range(4):
            if self.die and step == 2:
                os.kill(os.getpid(), signal.SIGKILL)  # as the out-of-memory killer would
            while self.gated and not (self.folder / "gate").exists():
                time.sleep(0.01)
            if progress is not None:
                progress((step + 1) / 4)
        labels = np.zeros(array.shape, np.uint8)
        half = array.shape[2] // 2
        labels[:, :, :half][array[:, :, :half] > 150] = 1
        labels[:, :, half:][array[:, :, half:] > 150] = 2
        probabilities = np.where(labels > 0, 0.9, 0.05).astype(np.float32)
        probabilities[:, :, min(3, array.shape[2] - 1)] = 0.5
        return FakeResult(labels, probabilities if with_probabilities else None, measure_volumes(labels, geometry),
                          {"right_lung": 1, "left_lung": 2})


class FakeRefiner:
    """A click-refinement model without torch (the Slicer AI correct tests): a click adds a cube of side
    ``2 * RADIUS + 1`` around it to the clicked lung where no lung is, or removes the clicked lung's voxels in
    that cube; the other lung is never changed. ``gated``: each click waits for the ``gate`` file first."""

    RADIUS = 1
    labels = {"right_lung": 1, "left_lung": 2}

    def __init__(self, folder: str, device: str, gated: bool = False) -> None:
        from NeonatalLungSegLib.models.model_folder import ModelConfig

        self.folder = Path(os.environ.get("NEONATAL_LUNG_SEG_FAKE_CONTROL") or folder)
        self.gated = gated
        self.config = ModelConfig(name="fake-refine-model", version="9.9.9", weights_sha256="0" * 64)
        self.device = device

    def session(self, array, geometry, source="input volume", image_contrast=True):
        return FakeRefineSession(self, geometry, image_contrast)


class FakeRefineSession:
    def __init__(self, refiner: FakeRefiner, geometry, image_contrast: bool) -> None:
        self.refiner, self.geometry, self.image_contrast = refiner, geometry, image_contrast

    def apply(self, labels, click):
        from NeonatalLungSegLib.correction.clicks import ClickOutcome

        while self.refiner.gated and not (self.refiner.folder / "gate").exists():
            time.sleep(0.01)
        lung = click.lung or ("right_lung" if click.index[2] < labels.shape[2] // 2 else "left_lung")
        value = self.refiner.labels[lung]
        new = np.array(labels, dtype=np.uint8, copy=True)
        box = tuple(slice(max(c - FakeRefiner.RADIUS, 0), c + FakeRefiner.RADIUS + 1) for c in click.index)
        region = new[box]
        if click.positive:
            region[region == 0] = value
        else:
            region[region == value] = 0
        changed = int(np.count_nonzero(new != labels))
        verb = "Added" if click.positive else "Removed"
        return new, ClickOutcome(lung=lung, positive=click.positive, changed_voxels=changed,
                                 slices_run=box[0].stop - box[0].start, seconds=0.0,
                                 message=f"{verb} {changed} voxels ({lung.replace('_', ' ')})",
                                 image_contrast=bool(self.image_contrast and not click.positive))


def load_refiner(folder: str, device: str) -> FakeRefiner:
    return FakeRefiner(folder, device)


def load_refiner_gated(folder: str, device: str) -> FakeRefiner:
    return FakeRefiner(folder, device, gated=True)


# The loaders a test's worker is started with (a worker refuses any loader it was not started with).
LOADERS = ("worker_fakes:load", "worker_fakes:load_gated", "worker_fakes:load_dying", "worker_fakes:load_failing",
           "worker_fakes:load_exiting", "worker_fakes:load_refiner", "worker_fakes:load_refiner_gated")


def load(folder: str, device: str) -> ThresholdSegmenter:
    return ThresholdSegmenter(folder, device)


def load_gated(folder: str, device: str) -> ThresholdSegmenter:
    return ThresholdSegmenter(folder, device, gated=True)


def load_dying(folder: str, device: str) -> ThresholdSegmenter:
    return ThresholdSegmenter(folder, device, die=True)


def load_exiting(folder: str, device: str) -> ThresholdSegmenter:
    os._exit(1)  # as a launcher reports a killed child: a plain status, no error event, no bye


def load_failing(folder: str, device: str) -> ThresholdSegmenter:
    raise MemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
