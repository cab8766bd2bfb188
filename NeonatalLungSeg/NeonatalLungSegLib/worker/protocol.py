"""The messages between the inference worker process and its client (see docs/worker-protocol.md).

Why a protocol at all: inside 3D Slicer the main thread holds Python's GIL while Qt idles, so inference on a
Python thread of the Slicer process crawls (every torch call waits for the next timer tick). The engine
therefore runs in a separate process (``worker.py``) that the GUI polls from its timer. The two sides talk
in JSON lines, one object per line, every object carrying ``protocol`` (the version) and ``type``:

- requests, client -> worker, on the worker's stdin: ``segment``, ``refine_start``, ``refine``, ``shutdown``;
- events, worker -> client, appended to an events file (a file, not a pipe, so the GUI reads what is new
  without ever blocking, on every platform): ``hello``, ``loading``, ``loaded``, ``progress``, ``ready``,
  ``result``, ``error``, ``bye``.

Click refinement (the module's "AI correct") uses the same worker as Segment: ``refine_start`` loads the
click-refinement model (kept like a segmenter) and prepares one volume once under a session id (answered by
``ready``); each click is then one ``refine`` request carrying the current labels (a ``.npy`` path) and the
click, answered by a ``result`` whose ``outcome`` holds what the click did. The types were added within
version 1: an older worker answers them with an ``error`` event ("does not accept"), never silently.

Voxels never go through JSON: the client writes the input to a ``.npy`` file, the worker writes labels and
probabilities as ``.npy`` files next to it and names them in the ``result`` event.

This module is plain Python + NumPy (no torch), so the Slicer process can import it before torch exists.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from typing import Any, Mapping

from ..inference.confidence import CaseConfidence, SliceConfidence
from ..geometry import Geometry
from ..json_input import parse_json
from ..inference.postprocess import PostprocessOptions

PROTOCOL_VERSION = 1
MAX_LINE_CHARS = 1_000_000  # messages carry paths and small dicts; voxels travel in .npy files
REQUEST_TYPES = ("segment", "refine_start", "refine", "shutdown")
EVENT_TYPES = ("hello", "loading", "loaded", "progress", "ready", "result", "error", "bye", "heartbeat")
HEARTBEAT_SECONDS = 2.0  # a busy worker says it is alive this often, whatever its work is doing

# Fields every message of a type must carry (besides "protocol" and "type"), with their JSON types.
_NUMBER = (int, float)
REQUIRED_FIELDS: dict[str, dict[str, Any]] = {
    "segment": {"id": str, "input": str, "geometry": dict, "model": str, "device": str, "output": str},
    "refine_start": {"id": str, "session": str, "input": str, "geometry": dict, "model": str, "device": str},
    "refine": {"id": str, "session": str, "labels": str, "click": dict, "output": str},
    "shutdown": {},
    "hello": {"pid": int, "python": str},
    "loading": {"id": str, "model": str},
    "loaded": {"id": str, "model": str, "device": str, "load_count": int, "seconds": _NUMBER},
    "progress": {"id": str, "fraction": _NUMBER},
    "ready": {"id": str, "session": str, "model_info": dict, "load_count": int, "pid": int, "seconds": _NUMBER},
    "result": {"id": str, "labels": str, "volumes": dict, "label_names": dict, "model_info": dict,
               "load_count": int, "pid": int, "seconds": _NUMBER},
    "error": {"error_type": str, "message": str},
    "bye": {},
    "heartbeat": {"pid": int},
}
# Fields a message may leave out, checked when present: a wrong type here would otherwise be read as a
# default (a string "false" is truthy) and silently change what the worker does.
OPTIONAL_FIELDS: dict[str, dict[str, Any]] = {
    "segment": {"loader": str, "source": str, "flip": bool, "options": (dict, type(None))},
    "refine_start": {"image_contrast": bool, "loader": str, "source": str},
}


class ProtocolError(ValueError):
    """A line that is not a valid message of this protocol version."""


class WorkerError(RuntimeError):
    """The worker reported an error, or died; ``str()`` is the one message shown to the user."""


def make_message(kind: str, **fields: Any) -> dict[str, Any]:
    """A message of ``kind`` with the version and a timestamp; checked against the schema."""
    message = {"protocol": PROTOCOL_VERSION, "type": kind, "time": round(time.time(), 3), **fields}
    validate(message)
    return message


def encode(message: Mapping[str, Any]) -> str:
    """One line of JSON (no newline inside, one at the end)."""
    return json.dumps(message, separators=(",", ":")) + "\n"


def validate(message: Any) -> dict[str, Any]:
    """Raise ProtocolError unless ``message`` is a known message of this version with its required fields
    (and its optional fields, where present, of their types)."""
    if not isinstance(message, dict):
        raise ProtocolError(f"a message must be a JSON object, got {type(message).__name__}")
    version = message.get("protocol")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(f"protocol version {version!r} is not supported (this side speaks "
                            f"{PROTOCOL_VERSION}); the worker and the module come from different versions")
    kind = message.get("type")
    if kind not in REQUIRED_FIELDS:
        raise ProtocolError(f"unknown message type {kind!r}")
    optional = {name: OPTIONAL_FIELDS[kind][name] for name in OPTIONAL_FIELDS.get(kind, {}) if name in message}
    for name, expected in {**REQUIRED_FIELDS[kind], **optional}.items():
        value = message.get(name)
        if not isinstance(value, expected) or isinstance(value, bool) and expected is not bool:
            raise ProtocolError(f"'{kind}' message needs field '{name}' of type "
                                f"{getattr(expected, '__name__', 'number')}, got {value!r}")
    return message


def decode(line: str) -> dict[str, Any]:
    """Parse and validate one line: at most ``MAX_LINE_CHARS`` characters, strict JSON, bounded nesting."""
    if len(line) > MAX_LINE_CHARS:
        raise ProtocolError(f"a message of {len(line)} characters is longer than the {MAX_LINE_CHARS} allowed")
    try:
        message = parse_json(line, "message")
    except ValueError as error:
        raise ProtocolError(f"not JSON: {line[:200]!r} ({error})") from None
    return validate(message)


def geometry_to_json(geometry: Geometry) -> dict[str, Any]:
    return {"size": list(geometry.size), "spacing": list(geometry.spacing), "origin": list(geometry.origin),
            "direction": list(geometry.direction)}


def geometry_from_json(data: Mapping[str, Any]) -> Geometry:
    try:
        return Geometry(size=tuple(int(v) for v in data["size"]), spacing=tuple(float(v) for v in data["spacing"]),
                        origin=tuple(float(v) for v in data["origin"]),
                        direction=tuple(float(v) for v in data["direction"]))
    except (KeyError, TypeError, ValueError) as error:
        raise ProtocolError(f"bad geometry {dict(data)!r}: {error}") from None


def options_to_json(options: PostprocessOptions | None) -> dict[str, Any] | None:
    return None if options is None else asdict(options)


def options_from_json(data: Mapping[str, Any] | None) -> PostprocessOptions | None:
    return None if data is None else PostprocessOptions(**data)


def confidence_to_json(confidence: CaseConfidence | None) -> dict[str, Any] | None:
    """Every field, every slice: the client rebuilds the same CaseConfidence (to_dict rounds and drops)."""
    return None if confidence is None else asdict(confidence)


def confidence_from_json(data: Mapping[str, Any] | None) -> CaseConfidence | None:
    if data is None:
        return None
    fields = dict(data)
    fields["slices"] = tuple(SliceConfidence(**s) for s in fields.get("slices", ()))
    return CaseConfidence(**fields)
