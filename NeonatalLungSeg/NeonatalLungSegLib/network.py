"""Build the segmentation network by name from a model config.

Building by name keeps the architecture a config change (another encoder, a 2.5D input, a MONAI 3D network)
rather than a code change, and ``encoder_weights=None`` guarantees nothing is ever downloaded: weights
come only from the model folder.
"""

from __future__ import annotations

import inspect

import torch

from .errors import ModelFolderError
from .model_folder import ModelConfig


def build_network(config: ModelConfig) -> torch.nn.Module:
    """An untrained network with one logit channel per output ("lung"); the caller applies the sigmoid."""
    net = config.network
    args = dict(net.args)
    for reserved in ("in_channels", "classes", "encoder_weights", "activation", "out_channels"):
        if reserved in args:
            raise ModelFolderError(f"network.args must not set {reserved!r}: it is derived from the config")
    if net.library == "smp":
        import segmentation_models_pytorch as smp

        try:
            return smp.create_model(net.architecture, encoder_weights=None, in_channels=config.input.channels,
                                    classes=1, activation=None, **args)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFolderError(f"cannot build smp {net.architecture!r} with {args}: {exc}") from None
    if net.library == "monai":
        from monai.networks import nets

        factory = getattr(nets, net.architecture, None)
        if factory is None:
            raise ModelFolderError(f"MONAI has no network named {net.architecture!r}")
        if "spatial_dims" in inspect.signature(factory).parameters:
            # 2D or 3D comes from input.spatial_dims (model_folder checks a stated value agrees with it).
            args.setdefault("spatial_dims", config.input.spatial_dims)
        try:
            return factory(in_channels=config.input.channels, out_channels=1, **args)
        except (TypeError, ValueError) as exc:
            raise ModelFolderError(f"cannot build MONAI {net.architecture!r} with {args}: {exc}") from None
    raise ModelFolderError(f"unknown network library {net.library!r}: use 'smp' or 'monai'")
