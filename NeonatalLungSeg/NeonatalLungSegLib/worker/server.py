"""The inference worker process: loads a model once and segments volume after volume for its client.

Run as ``python -m NeonatalLungSegLib.worker.server EVENTS_FILE [--loader MODULE:FUNCTION]...`` (the client,
``client.py``, does this with Slicer's own PythonSlicer inside Slicer, with the current interpreter elsewhere).
Requests arrive as JSON lines on stdin; events are appended to EVENTS_FILE; anything else printed (library
warnings, tracebacks) goes to stderr, which the client sends to a log file. The message schema is in
``protocol.py`` and docs/worker-protocol.md.

What a request may name is data, never code: a request's ``loader`` must be one of the loaders fixed when the
process started (the engine's two, and those given with ``--loader`` on its command line, which only tests
use); any other is refused before anything is imported. A request line is bounded in size and nesting.

Why a long-lived process: loading the model takes seconds, so the loaded segmenters are kept per
(model folder, device) and a second Segment with the same model starts inference at once; ``load_count``
in every ``loaded``/``result`` event lets the client (and the tests) see that no reload happened.
There is no cancel message: the client cancels by killing this process (and its children), which stops
the work at once wherever it is, and starts a fresh worker for the next request.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

import numpy as np

from . import protocol as wp

DEFAULT_LOADER = "NeonatalLungSegLib.worker.server:load_segmenter"
DEFAULT_REFINE_LOADER = "NeonatalLungSegLib.worker.server:load_refiner"
MAX_REFINE_SESSIONS = 2  # prepared volumes kept (each holds the volume's network-ready slices)
PROGRESS_STEP = 0.01     # report progress when it moved this much ...
PROGRESS_SECONDS = 0.25  # ... or this long after the last report


def engine_device(choice: str) -> str:
    """The module's device choice -> the engine's name; 'gpu' is CUDA, else Apple MPS, else an error."""
    choice = (choice or "auto").strip().lower()
    if choice != "gpu":
        return choice
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    from ..errors import DeviceError

    raise DeviceError("No GPU is available on this computer: choose 'auto' or 'CPU' as the device.")


def load_segmenter(folder: str, device: str) -> Any:
    """The default loader: the engine's Segmenter (imports torch, so only ever called in the worker).

    The worker owns its process, so it sets the process-wide CPU threading as the CLI does (one thread per
    physical core unless OMP_NUM_THREADS says otherwise)."""
    from ..inference import acceleration
    from ..inference.engine import Segmenter

    segmenter = Segmenter.load(folder, device=engine_device(device))
    if segmenter.device.type == "cpu" and segmenter.backend == "torch":  # the int8 path never imports torch
        acceleration.configure_cpu_threads()
    return segmenter


def load_refiner(folder: str, device: str) -> Any:
    """The default click-refinement loader: the engine's Refiner (torch, so only ever called in the worker)."""
    from ..inference import acceleration
    from ..correction.refine import Refiner

    acceleration.configure_cpu_threads()
    return Refiner.load(folder, device=engine_device(device))


def resolve_loader(spec: str, allowed: frozenset[str]) -> Callable[[str, str], Any]:
    """'package.module:function' -> the function, only for a loader fixed at the worker's start."""
    if spec not in allowed:
        raise wp.ProtocolError(f"loader {spec!r} was not given when this worker started; a request cannot "
                               "name code to run")
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise wp.ProtocolError(f"loader must be 'module:function', got {spec!r}")
    return getattr(importlib.import_module(module_name), attribute)


def describe_error(error: BaseException) -> str:
    """One sentence for the user; out-of-memory errors (CPU or GPU) say what to try."""
    name = type(error).__name__
    text = str(error).strip().splitlines()[0] if str(error).strip() else name
    if isinstance(error, MemoryError) or "OutOfMemory" in name or "out of memory" in text.lower():
        return (f"the computer ran out of memory while segmenting ({text}); try the CPU device, close other "
                "programs, or use a smaller volume")
    return text


def bounded_lines(stream: TextIO, limit: int) -> Iterator[str]:
    """The stream's lines, none longer than ``limit`` characters kept in memory: a longer line is read on to
    its end and handed on cut to ``limit + 1`` characters, which ``decode`` refuses as too long."""
    while True:
        line = stream.readline(limit + 1)
        if not line:
            return
        if len(line) > limit and not line.endswith("\n"):
            rest = line
            while rest and not rest.endswith("\n"):
                rest = stream.readline(limit + 1)
        yield line


class Worker:
    """The request loop, separate from process start-up so tests can drive it in-process."""

    def __init__(self, events: TextIO, loaders: tuple[str, ...] = (), heartbeat_seconds: float | None = None) -> None:
        """``heartbeat_seconds``: beat while busy (the process passes HEARTBEAT_SECONDS; in-process tests none)."""
        self.events = events
        self.loaders = frozenset((DEFAULT_LOADER, DEFAULT_REFINE_LOADER, *loaders))
        self._lock = threading.Lock()
        self._busy, self._stop = threading.Event(), threading.Event()
        self.heartbeat_seconds = heartbeat_seconds
        self.segmenters: dict[tuple[str, str, str], Any] = {}  # segmenters and refiners, by loader
        self.sessions: dict[str, Any] = {}  # refine session id -> refine.RefineSession, oldest first
        self.load_count = 0

    def emit(self, kind: str, **fields: Any) -> None:
        line = wp.encode(wp.make_message(kind, **fields))
        with self._lock:  # the heartbeat thread writes too: whole lines only
            self.events.write(line)
            self.events.flush()

    def _beat(self) -> None:
        """While a request runs: a heartbeat every HEARTBEAT_SECONDS, so the client can tell a worker that is
        busy from one that hangs or died (a thread is fine here: this is the worker, not Slicer)."""
        while not self._stop.wait(self.heartbeat_seconds):
            if self._busy.is_set():
                self.emit("heartbeat", pid=os.getpid())

    def serve(self, requests: TextIO) -> None:
        self.emit("hello", pid=os.getpid(), python=sys.executable,
                  python_version=".".join(map(str, sys.version_info[:3])))
        beater = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        if self.heartbeat_seconds:
            beater.start()
        try:
            self._serve_lines(requests)
        finally:
            self._stop.set()
            if beater.is_alive():
                beater.join(timeout=1)
        self.emit("bye")

    def _serve_lines(self, requests: TextIO) -> None:
        for line in bounded_lines(requests, wp.MAX_LINE_CHARS):
            if not line.strip():
                continue
            try:
                request = wp.decode(line)
            except wp.ProtocolError as error:
                self.emit("error", id=None, error_type="ProtocolError", message=str(error))
                continue
            if request["type"] == "shutdown":
                break
            handler = {"segment": self.handle, "refine_start": self.handle_refine_start,
                       "refine": self.handle_refine}.get(request["type"])
            if handler is None:
                self.emit("error", id=request.get("id"), error_type="ProtocolError",
                          message=f"a worker does not accept '{request['type']}' messages")
                continue
            self._busy.set()
            try:
                handler(request)
            finally:
                self._busy.clear()

    def segmenter(self, request: dict[str, Any], default_loader: str = DEFAULT_LOADER) -> Any:
        """The loaded model for (loader, folder, device), loaded on first use; refiners are cached here too."""
        loader = request.get("loader") or default_loader
        key = (loader, str(Path(request["model"]).resolve()), request["device"])
        if key not in self.segmenters:
            load = resolve_loader(loader, self.loaders)  # refused before anything is imported or announced
            self.emit("loading", id=request["id"], model=request["model"])
            start = time.perf_counter()
            self.segmenters[key] = load(request["model"], request["device"])
            self.load_count += 1
            self.emit("loaded", id=request["id"], model=request["model"],
                      device=str(getattr(self.segmenters[key], "device", request["device"])),
                      load_count=self.load_count, seconds=round(time.perf_counter() - start, 3))
        return self.segmenters[key]

    def handle(self, request: dict[str, Any]) -> None:
        from ..inference.confidence import segment_with_confidence

        request_id = request["id"]
        try:
            start = time.perf_counter()
            segmenter = self.segmenter(request)
            geometry = wp.geometry_from_json(request["geometry"])
            # The client sends the voxels in their own type (no copy on Slicer's main thread): cast here.
            array = np.load(request["input"], allow_pickle=False).astype(np.float32, copy=False)
            options = wp.options_from_json(request.get("options"))
            last = [0.0, 0.0]

            def progress(fraction: float) -> None:
                now = time.perf_counter()
                if fraction >= 1.0 or fraction - last[0] >= PROGRESS_STEP or now - last[1] >= PROGRESS_SECONDS:
                    last[:] = [fraction, now]
                    self.emit("progress", id=request_id, fraction=round(float(fraction), 4))

            result, confidence = segment_with_confidence(
                segmenter, array, geometry, options=options if options is not None else "default",
                flip=bool(request.get("flip", False)), progress=progress, source=request.get("source", "input volume"))
            output = Path(request["output"])
            output.mkdir(parents=True, exist_ok=True)
            labels_path = output / "labels.npy"
            np.save(labels_path, np.ascontiguousarray(result.labels, dtype=np.uint8))
            probabilities_path = None
            if result.probabilities is not None:
                probabilities_path = output / "probabilities.npy"
                np.save(probabilities_path, np.ascontiguousarray(result.probabilities, dtype=np.float32))
            model_info = self.model_info(segmenter)
            boundary = (getattr(result, "inference", None) or {}).get("boundary")  # (a loader's result may
            if boundary:  # carry no inference record) what the boundary conventions left out: rim_ml, tissue_ml
                model_info["boundary"] = dict(boundary)
            gate = (getattr(result, "inference", None) or {}).get("gate")
            if gate:  # a gated model: which of its networks segmented this volume (describe_inference says it)
                model_info["gate"] = dict(gate)
            if options is not None:
                model_info["postprocess"] = {"keep_largest_components": options.keep_largest_components,
                                             "fill_holes": options.fill_holes,
                                             "split_left_right": options.split_left_right}
            self.emit("result", id=request_id, labels=str(labels_path),
                      probabilities=None if probabilities_path is None else str(probabilities_path),
                      volumes=result.volumes, label_names=dict(result.label_names), model_info=model_info,
                      confidence=wp.confidence_to_json(confidence), load_count=self.load_count, pid=os.getpid(),
                      seconds=round(time.perf_counter() - start, 3))
        except Exception as error:  # reported to the client; the worker stays up for the next request
            traceback.print_exc(file=sys.stderr)
            self.emit("error", id=request_id, error_type=type(error).__name__, message=describe_error(error))


    def model_info(self, model: Any) -> dict[str, Any]:
        config = model.config
        info = {"name": config.name, "version": config.version, "weights_sha256": config.weights_sha256,
                "device": str(getattr(model, "device", ""))}
        inference = getattr(model, "inference", None)  # a Segmenter: precision (and why) and backend, e.g. int8
        if isinstance(inference, dict):
            info.update({key: inference[key] for key in ("precision", "precision_reason", "backend")
                         if key in inference})
        return info

    def handle_refine_start(self, request: dict[str, Any]) -> None:
        """Load the refine model (once per folder and device) and prepare the volume once for its clicks; the
        request's ``image_contrast`` (a bool, default true, checked by the protocol) is the session's switch."""
        try:
            start = time.perf_counter()
            refiner = self.segmenter(request, DEFAULT_REFINE_LOADER)
            geometry = wp.geometry_from_json(request["geometry"])
            array = np.load(request["input"], allow_pickle=False).astype(np.float32, copy=False)
            session = refiner.session(array, geometry, source=request.get("source", "input volume"),
                                      image_contrast=request.get("image_contrast", True))
            self.sessions.pop(request["session"], None)
            self.sessions[request["session"]] = session
            while len(self.sessions) > MAX_REFINE_SESSIONS:
                self.sessions.pop(next(iter(self.sessions)))
            self.emit("ready", id=request["id"], session=request["session"], model_info=self.model_info(refiner),
                      label_names=dict(refiner.labels), load_count=self.load_count, pid=os.getpid(),
                      seconds=round(time.perf_counter() - start, 3))
        except Exception as error:
            traceback.print_exc(file=sys.stderr)
            self.emit("error", id=request["id"], error_type=type(error).__name__, message=describe_error(error))

    def handle_refine(self, request: dict[str, Any]) -> None:
        """One click on a prepared session: the current labels in, the new labels out (``labels.npy``)."""
        from dataclasses import asdict

        from ..correction.clicks import click_from_dict
        from ..inference.measure import measure_volumes

        try:
            start = time.perf_counter()
            session = self.sessions.get(request["session"])
            if session is None:
                raise wp.ProtocolError(f"no refine session '{request['session']}' in this worker (it was never "
                                       "started, or was dropped for a newer one): send refine_start first")
            click = click_from_dict(request["click"], session.geometry)
            labels = np.load(request["labels"], allow_pickle=False)
            new_labels, outcome = session.apply(labels, click)
            output = Path(request["output"])
            output.mkdir(parents=True, exist_ok=True)
            labels_path = output / "labels.npy"
            np.save(labels_path, np.ascontiguousarray(new_labels, dtype=np.uint8))
            refiner = session.refiner
            self.emit("result", id=request["id"], session=request["session"], labels=str(labels_path),
                      volumes=measure_volumes(new_labels, session.geometry, split=True),
                      label_names=dict(refiner.labels), model_info=self.model_info(refiner),
                      outcome=asdict(outcome), load_count=self.load_count, pid=os.getpid(),
                      seconds=round(time.perf_counter() - start, 3))
        except Exception as error:
            traceback.print_exc(file=sys.stderr)
            self.emit("error", id=request["id"], error_type=type(error).__name__, message=describe_error(error))


def parse_arguments(argv: list[str]) -> tuple[str, tuple[str, ...]] | None:
    """(events file, loaders) from ``EVENTS_FILE [--loader MODULE:FUNCTION]...``, or None when malformed."""
    if not argv or argv[0].startswith("-"):
        return None
    events, rest, loaders = argv[0], argv[1:], []
    while rest:
        if len(rest) < 2 or rest[0] != "--loader" or ":" not in rest[1]:
            return None
        loaders.append(rest[1])
        rest = rest[2:]
    return events, tuple(loaders)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parsed = parse_arguments(argv)
    if parsed is None:
        print("usage: python -m NeonatalLungSegLib.worker.server EVENTS_FILE [--loader MODULE:FUNCTION]...",
              file=sys.stderr)
        return 2
    events_file, loaders = parsed
    from ..inference.acceleration import configure_process

    configure_process()  # before torch is imported: OpenMP threads wait passively, as in the CLI
    with open(events_file, "a", encoding="utf-8") as events:
        # Anything a library prints must not reach the client as a message: stdout goes to stderr (the log).
        sys.stdout = sys.stderr
        Worker(events, loaders, heartbeat_seconds=wp.HEARTBEAT_SECONDS).serve(sys.stdin)
    return 0


if __name__ == "__main__":
    sys.exit(main())
