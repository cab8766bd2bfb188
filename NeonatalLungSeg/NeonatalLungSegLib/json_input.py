"""JSON from outside the process (clicks files, model.json, sidecars, worker requests), read with bounds.

Why one place: every JSON input is a way in for a careless or hostile file. ``/dev/zero`` named as a clicks
file grew a process to 22 GB, a FIFO hung it forever, ten thousand nested brackets raised RecursionError
(a traceback, and on the worker's stdin a dead worker), and Python's ``json`` accepts ``NaN`` and
``Infinity``, which no other JSON reader does. Here a file must be a regular file, is read with a byte
bound, must nest at most ``MAX_DEPTH`` levels and may hold only finite numbers; anything else is one
``InputError`` line naming the file.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from .errors import InputError

MAX_DEPTH = 64  # deeper than any file of ours by far; Python's parser recurses once per level


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def nesting_depth(text: str) -> int:
    """Deepest bracket nesting outside strings, found without recursion (so it cannot overflow)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def parse_json(text: str, what: str) -> Any:
    """Strict JSON (finite numbers, bounded nesting); ``ValueError`` with ``what`` in the message."""
    if nesting_depth(text) > MAX_DEPTH:
        raise ValueError(f"{what}: JSON nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:  # a parser that recursed despite the depth check: still one line
        raise ValueError(f"{what}: JSON nested too deeply") from None
    except ValueError as error:
        raise ValueError(f"{what}: not valid JSON ({error})") from None


def read_json_file(path: Path | str, max_bytes: int, what: str = "") -> Any:
    """The parsed content of a regular file of at most ``max_bytes`` bytes, or one ``InputError``."""
    path = Path(path)
    label = f"{path}" + (f" ({what})" if what else "")
    try:
        info = os.stat(path)
    except OSError as error:
        raise InputError(f"{label}: cannot read it ({error.strerror or error})") from None
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{label}: not a regular file (a folder, device or pipe cannot be read as JSON)")
    if info.st_size > max_bytes:
        raise InputError(f"{label}: {info.st_size} bytes, more than the {max_bytes} a JSON file of this kind "
                         "may have")
    try:
        with open(path, "rb") as handle:  # the size may change after stat: read at most one byte too many
            data = handle.read(max_bytes + 1)
    except OSError as error:
        raise InputError(f"{label}: cannot read it ({error.strerror or error})") from None
    if len(data) > max_bytes:
        raise InputError(f"{label}: more than the {max_bytes} bytes a JSON file of this kind may have")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputError(f"{label}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    try:
        return parse_json(text, str(label))
    except ValueError as error:
        raise InputError(str(error)) from None


def dump_json(value: Any, **options: Any) -> str:
    """JSON text for files we write: strict (``NaN`` or infinity is an error, not a bare ``NaN``)."""
    return json.dumps(value, allow_nan=False, **options)
