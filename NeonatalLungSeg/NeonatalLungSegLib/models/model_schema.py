"""Type and range checks for every model.json field, made on the raw JSON before anything is built.

A model folder comes from anywhere (a colleague, a download, an edited copy). Without these checks a string
where a number belongs ended in a traceback (and one remembered bad folder broke `models` for good), and
huge sizes allocated gigabytes before the weights were even looked at, and JSON nested thousands of levels
deep ended in a RecursionError.
"""

from __future__ import annotations

from typing import Any

# Network input rows/columns. The engine runs every slice at this size: 512 (the finest neonatal MRI matrices)
# is already 16x the work of the bundled 128, and 1024 took minutes per volume on a CPU for no gain.
MAX_IN_PLANE = 512
MAX_CHANNELS = 15        # 2.5D slices stacked as input channels
MAX_ARG_INT = 4096       # any whole number in network.args (channels, features, depths)
MAX_ARG_LIST = 16
MAX_PATCH_SLICES = 256   # 3D window depth (slices); the window is patch_slices x in_plane_size
MAX_DEPTH = 32           # JSON nesting (the bundled model.json nests 4 deep)
DTYPES = ("float16", "float32")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_TOP = {"name": str, "version": str, "parent_version": (str, type(None)), "description": str,
        "network": dict, "input": dict, "output": dict, "training": dict, "validation": dict,
        "weights_sha256": str, "weights_dtype": str, "clinical_use": str, "gate": dict}
_NETWORK = {"library": str, "architecture": str, "args": dict}
_INPUT = {"channels": int, "canonical_orientation": str, "slice_axis": int, "in_plane_policy": str,
          "in_plane_size": list, "intensity_method": str, "lower_percentile": float, "upper_percentile": float,
          "spatial_dims": int, "patch_slices": int, "window_overlap": float, "guidance": list,
          "click_sigma": float, "click_depth_mm": float}
_OUTPUT = {"activation": str, "threshold": float, "network_label": str, "labels": dict,
           "boundary_min_share": float, "boundary_psf_sigma": float, "boundary_signal_min_share": float}
_WORDS = {str: "text", dict: "an object", list: "a list", int: "a whole number", float: "a number",
          (str, type(None)): "text or null"}


def _type_ok(value: Any, wanted: Any) -> bool:
    if wanted is int:
        return _is_int(value)
    if wanted is float:
        return _is_number(value)
    return isinstance(value, wanted)


def _section(data: dict[str, Any], schema: dict[str, Any], prefix: str) -> list[str]:
    return [f"{prefix}{key} must be {_WORDS[wanted]}, got {_short(data[key])}"
            for key, wanted in schema.items() if key in data and not _type_ok(data[key], wanted)]


def _args_problems(value: Any, where: str) -> list[str]:
    """network.args: whole numbers within 0..MAX_ARG_INT, short lists (the sizes that allocate memory)."""
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in _args_problems(item, f"{where}.{key}")]
    if isinstance(value, list):
        if len(value) > MAX_ARG_LIST:
            return [f"{where} has {len(value)} entries; at most {MAX_ARG_LIST}"]
        return [p for index, item in enumerate(value) for p in _args_problems(item, where)][:1]
    if _is_int(value) and not 0 <= value <= MAX_ARG_INT:
        return [f"{where} must lie in 0..{MAX_ARG_INT}, got {value}"]
    if value is not None and not isinstance(value, (str, bool, int, float)):
        return [f"{where} must be text, a number or a list, got {_short(value)}"]
    return []


def nesting_problem(value: Any, where: str = "", limit: int = MAX_DEPTH) -> str | None:
    """Where ``value`` nests objects and lists more than ``limit`` levels deep (None: it does not).

    Iterative, so any depth the JSON parser accepted is measured without recursion (every later step, from
    the checks below to ``dataclasses.asdict``, recurses once per level)."""
    stack = [(value, where, 0)]
    while stack:
        item, path, depth = stack.pop()
        if depth > limit:
            path = path or "the document"
            return f"{path if len(path) <= 60 else path[:57] + '...'} is nested more than {limit} levels deep"
        if isinstance(item, dict):
            stack.extend((v, f"{path}.{k}" if path else str(k), depth + 1) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((v, f"{path}[{i}]", depth + 1) for i, v in enumerate(item))
    return None


def schema_problems(body: dict[str, Any]) -> list[str]:
    """Every type or range problem of a model.json body (without format/format_version), first one first."""
    deep = nesting_problem(body)
    if deep:
        return [deep]
    found = _section(body, _TOP, "")
    if found:
        return found
    network, inp, out = body.get("network", {}), body.get("input", {}), body.get("output", {})
    found += _section(network, _NETWORK, "network.")
    found += _section(inp, _INPUT, "input.")
    found += _section(out, _OUTPUT, "output.")
    if found:
        return found
    args = network.get("args", {})
    if "decoder_channels" in args and (not isinstance(args["decoder_channels"], list)
                                       or not all(_is_int(c) and c >= 1 for c in args["decoder_channels"])):
        found.append(f"network.args.decoder_channels must be a list of whole numbers >= 1, "
                     f"got {_short(args['decoder_channels'])}")
    if "encoder_depth" in args and not (_is_int(args["encoder_depth"]) and 1 <= args["encoder_depth"] <= 5):
        found.append(f"network.args.encoder_depth must be a whole number 1..5, got {_short(args['encoder_depth'])}")
    found += _args_problems(args, "network.args")
    if "channels" in inp and not 1 <= inp["channels"] <= MAX_CHANNELS:
        found.append(f"input.channels must lie in 1..{MAX_CHANNELS}, got {inp['channels']}")
    size = inp.get("in_plane_size", [128, 128])
    if len(size) != 2 or not all(_is_int(s) and 1 <= s <= MAX_IN_PLANE for s in size):
        found.append(f"input.in_plane_size must be two whole numbers up to {MAX_IN_PLANE} (what the engine "
                     f"supports), got {_short(size)}")
    if "patch_slices" in inp and not 1 <= inp["patch_slices"] <= MAX_PATCH_SLICES:  # 3D windows
        found.append(f"input.patch_slices must lie in 1..{MAX_PATCH_SLICES}, got {inp['patch_slices']}")
    if not all(isinstance(g, str) for g in inp.get("guidance", [])) or len(inp.get("guidance", [])) > 3:
        found.append(f"input.guidance must be a list of at most 3 channel names, got {_short(inp['guidance'])}")
    labels = out.get("labels", {})
    if not all(isinstance(k, str) and _is_int(v) for k, v in labels.items()):
        found.append(f"output.labels must map names to whole numbers, got {_short(labels)}")
    if body.get("weights_dtype", "float32") not in DTYPES:
        found.append(f"weights_dtype must be one of {', '.join(DTYPES)}, got {_short(body['weights_dtype'])}")
    return found
