"""Client side of click refinement in the worker process: the requests and the jobs that read their answers.

Click refinement runs in the same persistent worker as Segment (``worker.py``), for the same reason: inside
Slicer no Python compute thread may run in the GUI process. A refine session is prepared once per volume
(``refine_start``: the model is loaded once and cached like a segmenter, the volume is preprocessed once);
each click is then one ``refine`` request carrying the labels as they are now (the reviewer may have painted
since the last click) and the click, and its answer is the new labels plus what the click did. The jobs are
polled exactly like a segmentation job (``WorkerJob.poll()`` from the GUI timer, never blocking).

Plain NumPy: the Slicer process imports this before torch exists.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import protocol as wp
from ..correction.clicks import Click, ClickOutcome, outcome_fields
from ..geometry import Geometry
from .jobs import JobHost, WorkerJob


@dataclass(frozen=True)
class RefineReady:
    """A prepared refine session in the worker: refer to ``session`` in every click."""

    session: str
    model: dict
    label_names: dict
    load_count: int
    pid: int
    seconds: float


@dataclass(frozen=True, kw_only=True)
class ClickResult(ClickOutcome):
    """The labels after one click, what the click did (the engine's ``ClickOutcome``, inherited so the two
    never drift apart) and the worker's bookkeeping."""

    labels: np.ndarray
    geometry: Geometry
    session: str
    volumes: dict
    label_names: dict
    model: dict
    load_count: int
    pid: int
    events: list = field(default_factory=list)


class RefineStartJob(WorkerJob):
    """``refine_start``: answered by a ``ready`` event."""

    def _take(self, event: dict[str, Any]) -> None:
        if event["type"] == "ready":
            self.events.append(event)
            self._result = RefineReady(session=event["session"], model=event["model_info"],
                                       label_names=dict(event.get("label_names") or {}),
                                       load_count=event["load_count"], pid=event["pid"],
                                       seconds=float(event["seconds"]))
            self.progress = 1.0
            shutil.rmtree(self.client.session / self.id, ignore_errors=True)
            return
        super()._take(event)
        if event["type"] == "loaded":
            self.status = f"Refine model loaded on {event['device']}; preparing the volume..."


class ClickJob(WorkerJob):
    """``refine``: answered by a ``result`` event with the new labels and an ``outcome``."""

    def _load_result(self, event: dict[str, Any], probabilities: str | None) -> ClickResult:
        outcome = event.get("outcome")
        if not isinstance(outcome, dict):
            raise wp.ProtocolError(f"a refine result needs an 'outcome' object, got {outcome!r:.80}")
        labels = np.load(event["labels"], allow_pickle=False)
        if labels.shape != self.geometry.array_shape:
            raise wp.ProtocolError(f"refined labels have shape {labels.shape}, the volume {self.geometry.array_shape}")
        return ClickResult(**outcome_fields(outcome), labels=labels, geometry=self.geometry,
                           session=str(event.get("session", "")), volumes=event["volumes"],
                           label_names=event["label_names"], model=event["model_info"],
                           load_count=event["load_count"], pid=event["pid"], events=list(self.events))

    def _read_result(self, event: dict[str, Any]) -> Any:
        try:
            return super()._read_result(event)
        except wp.ProtocolError as error:
            self._error = wp.WorkerError(f"the refinement process sent a bad result: {error}")
            return None


def place_array(array: np.ndarray | Path, target: Path) -> None:
    """``array`` saved as ``target`` (.npy); a path is an .npy written beforehand, moved there (same folder
    tree, so an atomic rename, whatever its size)."""
    if isinstance(array, (str, Path)):
        os.replace(array, target)
    else:
        np.save(target, np.ascontiguousarray(array))


def array_shape(array: np.ndarray | Path) -> tuple[int, ...]:
    """The shape of an array or of an .npy file (its header only)."""
    if isinstance(array, (str, Path)):
        return tuple(np.load(array, mmap_mode="r", allow_pickle=False).shape)
    return tuple(array.shape)


def new_session_id() -> str:
    return f"s{uuid.uuid4().hex[:12]}"


def start_message(client: JobHost, request_id: str, folder: Path, array: np.ndarray | Path, geometry: Geometry,
                  model_folder: Path | str, device: str, loader: str | None, source: str,
                  image_contrast: bool = True) -> tuple[WorkerJob, dict[str, Any]]:
    """The ``refine_start`` request (the volume written to ``folder/input.npy``, or moved there from an .npy
    written beforehand) and its job.

    ``image_contrast`` is sent as given, not coerced, so a non-bool fails here (ProtocolError) instead of
    turning into a silent True."""
    if array_shape(array) != geometry.array_shape:
        raise ValueError(f"array shape {array_shape(array)} does not match geometry {geometry.array_shape}")
    message = wp.make_message("refine_start", id=request_id, session=new_session_id(),
                              input=str(folder / "input.npy"), geometry=wp.geometry_to_json(geometry),
                              model=str(model_folder), device=device, source=source, image_contrast=image_contrast,
                              **({"loader": loader} if loader else {}))
    place_array(array, folder / "input.npy")
    job = RefineStartJob(client, request_id, geometry)
    job.status = "Starting AI correction..."
    return job, message


def click_message(client: JobHost, request_id: str, folder: Path, session: str, labels: np.ndarray | Path,
                  geometry: Geometry, click: Click) -> tuple[WorkerJob, dict[str, Any]]:
    """The ``refine`` request for one click (the current labels written to ``folder/current.npy``, or moved
    there from a uint8 .npy written beforehand) and its job."""
    if array_shape(labels) != geometry.array_shape:
        raise ValueError(f"labels shape {array_shape(labels)} does not match the volume {geometry.array_shape}")
    place_array(labels if isinstance(labels, (str, Path)) else np.asarray(labels, dtype=np.uint8),
                folder / "current.npy")
    message = wp.make_message("refine", id=request_id, session=session, labels=str(folder / "current.npy"),
                              click=click.to_dict(), output=str(folder))
    job = ClickJob(client, request_id, geometry)
    job.status = "Correcting..."
    return job, message
