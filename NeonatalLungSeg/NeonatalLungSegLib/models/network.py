"""Build the segmentation network by name from a model config.

Building by name keeps the architecture a config change (another encoder, a 2.5D input, a MONAI 3D network)
rather than a code change, and ``encoder_weights=None`` guarantees nothing is ever downloaded: weights
come only from the model folder.
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import torch

from ..errors import ModelFolderError
from .model_folder import ModelConfig


# Argument names that would fetch weights from elsewhere (MONAI's ``pretrained``, ``pretrained_path``, ...):
# weights come only from the model folder's checked file.
_DOWNLOAD_WORDS = ("pretrain", "url", "download", "weights")


def build_network(config: ModelConfig) -> torch.nn.Module:
    """An untrained network with one logit channel per output ("lung"); the caller applies the sigmoid."""
    net = config.network
    args = dict(net.args)
    for reserved in ("in_channels", "classes", "encoder_weights", "activation", "out_channels"):
        if reserved in args:
            raise ModelFolderError(f"network.args must not set {reserved!r}: it is derived from the config")
    for key in args:
        if any(word in key.lower() for word in _DOWNLOAD_WORDS):
            raise ModelFolderError(f"network.args must not set {key!r}: weights come only from the model folder")
    if net.library == "smp":
        import segmentation_models_pytorch as smp

        try:
            return smp.create_model(net.architecture, encoder_weights=None,
                                    in_channels=config.input.network_channels, classes=1, activation=None, **args)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFolderError(f"cannot build smp {net.architecture!r} with {args}: {exc}") from None
    if net.library == "monai":
        factory = monai_network_class(net.architecture)
        if "spatial_dims" in inspect.signature(factory).parameters:
            # 2D or 3D comes from input.spatial_dims (model_folder checks a stated value agrees with it).
            args.setdefault("spatial_dims", config.input.spatial_dims)
        try:
            return factory(in_channels=config.input.network_channels, out_channels=1, **args)
        except (TypeError, ValueError) as exc:
            raise ModelFolderError(f"cannot build MONAI {net.architecture!r} with {args}: {exc}") from None
    raise ModelFolderError(f"unknown network library {net.library!r}: use 'smp' or 'monai'")


def monai_network_class(name: str) -> type[torch.nn.Module]:
    """The class ``monai.networks.nets.<name>``, only when it is a public network class (a ``torch.nn.Module``
    subclass): the name comes from a file, and that namespace also holds modules, functions (some download
    weights), typing helpers and registries, none of which may be called with the config's arguments."""
    from monai.networks import nets

    factory = getattr(nets, name, None) if name.isidentifier() and not name.startswith("_") else None
    if not (inspect.isclass(factory) and issubclass(factory, torch.nn.Module)):
        raise ModelFolderError(f"MONAI has no network class named {name!r} (network.architecture names a class of "
                               "monai.networks.nets, e.g. 'UNet' or 'BasicUNet')")
    return factory


def check_against_weights(config: ModelConfig, weights: Path) -> None:
    """Compare the configured network with the weights' header before allocating either.

    The network is built on PyTorch's "meta" device (shapes only, no memory), so a config describing a
    gigabyte network, or one that does not match its weights, is refused in milliseconds with the detail
    that says what differs: parameter counts, the first shape mismatch, missing and unexpected keys.
    """
    from safetensors import SafetensorError, safe_open

    with torch.device("meta"):
        wanted = {k: tuple(v.shape) for k, v in build_network(config).state_dict().items()}
    try:
        with safe_open(str(weights), framework="pt") as handle:
            have = {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFolderError(f"{weights}: not a valid safetensors file ({exc})") from None
    missing = sorted(set(wanted) - set(have))
    unexpected = sorted(set(have) - set(wanted))
    shapes = [k for k in wanted if k in have and wanted[k] != have[k]]
    if not (missing or unexpected or shapes):
        return
    count = lambda shapes_of: sum(math.prod(s) for s in shapes_of.values())  # noqa: E731
    parts = [f"the config describes {count(wanted):,} parameters, the weights hold {count(have):,}"]
    if shapes:
        parts.append(f"{len(shapes)} shape mismatch(es), first {shapes[0]}: weights {list(have[shapes[0]])}, "
                     f"network {list(wanted[shapes[0]])}")
    if missing:
        parts.append(f"{len(missing)} key(s) missing from the weights, e.g. {', '.join(missing[:2])}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s), e.g. {', '.join(unexpected[:2])}")
    raise ModelFolderError(f"weights do not fit the configured network ({'; '.join(parts)})")


def build_checked(folder: Path, config: ModelConfig, weights: Path | None = None) -> torch.nn.Module:
    """The network built from config with the folder's checked weights, in eval mode on the CPU.

    The weights' SHA-256 is checked once (``weights``: a path ``verify_weights`` already checked) and the
    configured shapes are compared with the file's header before anything is allocated.
    """
    from .model_folder import read_verified_weights, verify_weights

    try:
        weights = weights or verify_weights(folder, config)
        check_against_weights(config, weights)
        network = build_network(config)
    except ModelFolderError as exc:
        raise ModelFolderError(f"{Path(folder) / 'model.json'}: {exc}") from None
    try:
        network.load_state_dict(read_verified_weights(weights), strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise ModelFolderError(f"{folder}: weights do not fit the configured network ({first})") from None
    return network.eval()
