"""The jobs a ``WorkerClient`` hands back: one request each, polled from a GUI timer, never blocking.

A job reads its answer from the events the client collects; it knows its client only to ask it to poll or
to kill the worker, so this module does not import the client (``refine_jobs`` extends these jobs and the
client builds both)."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from . import protocol as wp
from ..errors import Cancelled
from ..geometry import Geometry



class JobHost(Protocol):
    """What a job needs of its client (``client.WorkerClient``): typed here so jobs never import the client."""

    session: Path

    def poll(self) -> None: ...

    def terminate(self) -> None: ...


@dataclass
class WorkerResult:
    """What a ``result`` event delivers, with the arrays read back (duck-types the engine's result)."""

    labels: np.ndarray
    probabilities: np.ndarray | None
    geometry: Geometry
    volumes: dict
    label_names: dict
    model: dict
    confidence: Any  # confidence.CaseConfidence or None
    load_count: int
    pid: int
    seconds: float
    events: list = field(default_factory=list)


class WorkerJob:
    """One request: ``poll()`` from a timer, read ``progress``/``status``/``done``, then ``result()``."""

    def __init__(self, client: JobHost, request_id: str, geometry: Geometry) -> None:
        self.client = client
        self.id = request_id
        self.geometry = geometry
        self.progress = 0.0
        self.status = "Starting the segmentation process..."
        self.events: list[dict[str, Any]] = []
        self._result: WorkerResult | None = None
        self._error: BaseException | None = None
        self.request: Any = None  # the caller's own request object, if it wants one kept here

    @property
    def done(self) -> bool:
        return self._result is not None or self._error is not None

    @property
    def cancelled(self) -> bool:
        return isinstance(self._error, Cancelled)

    def poll(self) -> bool:
        """Take in what the worker reported; True when the job is finished (result, error or cancel)."""
        if not self.done:
            self.client.poll()
        return self.done

    def wait(self, timeout: float | None = None, interval: float = 0.05) -> bool:
        """Poll until done or ``timeout`` seconds; for scripts and tests, never the GUI."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.poll():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(interval)
        return True

    def cancel(self) -> None:
        """Kill the worker now; ``result()`` raises Cancelled. The client cannot be used again."""
        if not self.done:
            self.client.terminate()
            self._error = Cancelled("cancelled; nothing was changed")
            self._discard_files()

    def result(self) -> WorkerResult:
        if not self.done:
            raise RuntimeError("the job is still running")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    # called by the client
    def _take(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        kind = event["type"]
        if kind == "loading":
            self.status = "Loading the model..."
        elif kind == "loaded":
            self.status = f"Model loaded on {event['device']}; segmenting..."
        elif kind == "progress":
            self.progress = min(max(float(event["fraction"]), 0.0), 1.0)
            self.status = "Segmenting..."
        elif kind == "error":
            self._error = wp.WorkerError(event["message"])
            self._discard_files()
        elif kind == "result":
            self._result = self._read_result(event)
            self.progress = 1.0

    def _read_result(self, event: dict[str, Any]) -> WorkerResult:
        probabilities = event.get("probabilities")
        try:
            return self._load_result(event, probabilities)
        finally:  # the arrays are in memory now: the request's files (input and outputs) can go
            shutil.rmtree(Path(event["labels"]).parent, ignore_errors=True)

    def _load_result(self, event: dict[str, Any], probabilities: str | None) -> WorkerResult:
        # The probability map (float32, 4 bytes a voxel) is memory-mapped, not read: a caller that does not show
        # it never reads it, one that does copies it in pieces. On POSIX the file is removed at once all the
        # same (the mapping keeps its pages); Windows cannot remove a mapped file, so there it is read.
        return WorkerResult(labels=np.load(event["labels"], allow_pickle=False),
                            probabilities=None if not probabilities else np.load(
                                probabilities, allow_pickle=False, mmap_mode=None if os.name == "nt" else "r"),
                            geometry=self.geometry, volumes=event["volumes"], label_names=event["label_names"],
                            model=event["model_info"], confidence=wp.confidence_from_json(event.get("confidence")),
                            load_count=event["load_count"], pid=event["pid"], seconds=float(event["seconds"]),
                            events=list(self.events))

    def _fail(self, error: BaseException) -> None:
        if not self.done:
            self._error = error
            self._discard_files()

    def _discard_files(self) -> None:
        """A failed or cancelled request's files (its input, anything written) go at once, not at close()."""
        shutil.rmtree(Path(self.client.session) / self.id, ignore_errors=True)
