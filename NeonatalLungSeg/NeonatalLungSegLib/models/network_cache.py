"""A traced copy of the network in the user's cache, so that `segment` need not import the network library.

Building the smp U-Net imports segmentation-models-pytorch, and with it timm, torchvision and
huggingface_hub: on the 2-core AMD EPYC (AVX2) machine that is 1.5-2 s of an idle start-up and 8 s when the
machine is busy, more than importing torch itself; smp offers no way to build a ResNet encoder without them
(its ResNet encoder subclasses torchvision's ResNet, and ``smp.encoders`` imports timm). So the first run
builds the network from the model folder's config and weights as always, traces it (``torch.jit.trace``, the
same network: no second copy of its code) and stores the trace; later runs load the trace with torch alone.

- Keyed by the weights' SHA-256 (checked against the model folder's weights file on every load), the
  network and input config and the torch version; nothing is ever downloaded.
- Written atomically, and only after the trace's output was compared with the network's on a probe batch;
  an unreadable cache file is rebuilt. Any failure falls back to building the network (a warning, no error).
- Folder: ``$NEONATAL_LUNG_SEG_CACHE`` (``off`` disables it), else the platform's user cache folder
  (``$XDG_CACHE_HOME`` or ``~/.cache`` on Linux, ``~/Library/Caches`` on macOS, ``%LOCALAPPDATA%`` on
  Windows) + ``neonatal-lung-seg/networks``.
- One file per model version, about the size of its weights (130 MB for the bundled model); deleting the
  folder is always safe.
- Only smp networks on the CPU use it (the CLI asks for it); the Slicer module and Training build the network.
- ``torch.jit`` is deprecated in favour of ``torch.export``, but ``torch.export.load`` took 10 s against
  ``torch.jit.load``'s 0.9 s for this network on the loaded 2-core machine, which defeats the purpose; when a
  torch release drops ``torch.jit``, loading or storing fails and the network is built as before.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from .model_folder import ModelConfig, verify_weights

if TYPE_CHECKING:  # torch is imported where a network is handled: cache_dir serves the int8 path without it
    import torch

CACHE_ENV = "NEONATAL_LUNG_SEG_CACHE"
_OFF = ("", "0", "off", "no", "false", "none")
_TOLERANCE = 1e-3  # largest |logit difference| accepted between the trace and the network (fp32 rounding)


def cache_dir() -> Path | None:
    """Where traced networks are kept, or None when caching is switched off."""
    value = os.environ.get(CACHE_ENV)
    if value is not None:
        return None if value.strip().lower() in _OFF else Path(value).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "neonatal-lung-seg" / "networks"


def cache_path(directory: Path, config: ModelConfig) -> Path:
    """``<name>-<weights SHA-256>-<hash of network/input config and torch version>.pt``."""
    import torch

    described = json.dumps({"network": config.to_dict()["network"], "channels": config.input.channels,
                            "size": list(config.input.in_plane_size), "torch": torch.__version__}, sort_keys=True)
    extra = hashlib.sha256(described.encode()).hexdigest()[:12]
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in config.name)
    return directory / f"{name}-{config.weights_sha256}-{extra}.pt"


def load_network(folder: Path, config: ModelConfig, use_cache: bool = True) -> tuple[torch.nn.Module, str]:
    """(network in eval mode on the CPU, where it came from: ``"cache"``, ``"built, cached"`` or ``"built"``)."""
    import torch

    from .network import build_checked

    directory = cache_dir() if use_cache and config.network.library == "smp" else None
    if directory is None:
        return build_checked(folder, config), "built"
    weights = verify_weights(folder, config)  # the folder's weights are the ones the cached trace was made from
    path = cache_path(directory, config)
    if path.is_file():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in favour of export
                return torch.jit.load(str(path), map_location="cpu").eval(), "cache"
        except Exception as exc:  # noqa: BLE001 - a damaged or foreign cache file is rebuilt, never fatal
            warnings.warn(f"{path}: unreadable cached network ({exc}); rebuilding it", RuntimeWarning)
            path.unlink(missing_ok=True)
    network = build_checked(folder, config, weights)
    try:
        store(network, config, path)
    except Exception as exc:  # noqa: BLE001 - caching is an optimisation; the built network is used
        warnings.warn(f"could not cache the traced network in {directory} ({exc})", RuntimeWarning)
        return network, "built"
    return network, "built, cached"


def store(network: torch.nn.Module, config: ModelConfig, path: Path) -> None:
    """Trace ``network`` (eval, CPU), check the trace against it on a probe batch, write it atomically."""
    import torch

    inp = config.input
    generator = torch.Generator().manual_seed(0)
    probe = torch.randn((2, inp.channels, *inp.in_plane_size), generator=generator)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation warnings: the check below is what counts
        traced = torch.jit.trace(network, probe[:1], check_trace=False)
        difference = float((traced(probe) - network(probe)).abs().max())
    if not difference <= _TOLERANCE:
        raise RuntimeError(f"the trace differs from the network by {difference:.2g} on a probe batch")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=path.parent)
    os.close(handle)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            torch.jit.save(traced, temporary)
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)
