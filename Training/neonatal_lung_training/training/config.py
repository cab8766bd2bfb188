"""One config per run: a dataclass read from YAML or JSON, overridable from the command line, saved whole.

A run folder must say exactly how its model was made, so the config is saved beside the log with the git
revision and the package versions. Resuming compares the saved config with the new one: continuing a run
under different settings would produce a model that no config describes.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import math
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from NeonatalLungSegLib.inference.acceleration import TRAINING_PRECISIONS
from NeonatalLungSegLib.models.model_folder import IN_PLANE_POLICIES, PATCH_SLICES_MULTIPLE

from .augment import AugmentConfig
from ..locations import REPOSITORY

SPLIT_FRACTIONS = (0.7, 0.2, 0.1)


@dataclass
class TrainConfig:
    """Every choice of a run. Paths are strings so the config serialises as it was given."""

    data: str = ""                    # training folder (see docs/training-folder.md)
    output: str = ""                  # the NEW model folder to write
    run_dir: str = ""                 # log, split, checkpoints (default: <output>.run)
    split_file: str = ""              # explicit {"train": [...], "val": [...], "test": [...]} subjects
    test_data: str = ""               # a separate labelled folder the final model is scored on (model card)
    test_description: str = ""        # what test_data is, for the model card
    split_fractions: tuple[float, float, float] = SPLIT_FRACTIONS
    reviewed_only: bool = False       # train on reviewed / reference cases only
    latest_only: bool = False         # one case per subject: its newest export
    name: str = ""                    # "" = the parent's name, or neonatal-lung-unet-r50
    version: str = ""                 # "" = 0.1.0, or the parent's version with the minor number bumped
    description: str = ""
    data_description: str = ""        # what the data is, for the model card ("" = the folder's description)
    init_model: str = ""              # fine-tune from this model folder (its network and preprocessing)
    freeze_encoder: bool = False
    # keep the parent's batch-norm running statistics (BN layers in eval mode while training): a fine-tune's
    # small, mixed batches would otherwise overwrite what every other domain is normalised with
    freeze_batchnorm: bool = False
    # L2-SP, decoupled: after every step each trained weight moves this many learning rates of its distance back
    # towards the parent's (0 = off). Weights the new cases push consistently still move; what only drifts
    # (the rest of the parent's knowledge, which a small rehearsal set does not pin) is held near the parent.
    anchor_decay: float = 0.0
    # the weights scored, kept and written are an exponential moving average of the trained ones, with this
    # decay per step (0 = off), started at the initial weights: Adam's step-to-step noise, which a fine-tune of
    # a trained model otherwise ends on wherever the budget stops it, is averaged out
    weight_average: float = 0.0
    # Adam's epsilon. Fine-tuning a trained model, most weights' gradients are noise of ~1e-6 that Adam's
    # normalisation turns into steps of a fixed share of the learning rate, a random walk away from the parent;
    # an epsilon above that noise makes their steps proportional to their gradients (Adam's default: 1e-8)
    adam_eps: float = 1e-8
    # the learning rate rises linearly over this many first steps (0 = off). Adam's first steps move every
    # weight by about the learning rate whatever its gradient (bias-corrected moments of one noisy batch): on a
    # trained parent that is a shock to what it knew (measured in docs/improve-experiment.md)
    warmup_steps: int = 0
    # batch norm's running-statistics update per step (PyTorch's default 0.1). A fine-tune's mixed batches pull
    # a trained parent's statistics towards their own within a few dozen steps, before the weights can follow
    batchnorm_momentum: float = 0.1
    seed: int = 0
    epochs: int = 40
    steps_per_epoch: int = 0          # 0 = one pass over the training slices
    batch_size: int = 12
    learning_rate: float = 1e-3
    lr_patience: int = 2              # ReduceLROnPlateau, epochs
    patience: int = 6                 # early stopping, epochs without validation improvement
    max_minutes: float = 0.0          # stop after this wall time (0 = none); the best model is kept
    keep_empty_fraction: float = 0.3  # share of lung-free slices kept (teaches "no lung here")
    # Rehearsal (fine-tuning without forgetting): a training folder of what the parent knew, a share of every
    # batch drawn from it; its cases never enter the split, validation or the test figures.
    rehearsal_data: tuple[str, ...] = ()
    rehearsal_fraction: float = 0.0
    # what the rehearsal slices are trained towards: their labels, or the parent's own probabilities on them
    # (distillation: keeps what the parent does, including how it treats ambiguous tissue, not just the labels)
    rehearsal_targets: str = "labels"
    # Which boundary convention the training labels are learned in. "as_drawn": as stored. "network": where the
    # parent's model folder sets an expert boundary convention (output.boundary_min_share / _psf_sigma), the
    # labels are grown to the network's own (physical) convention first (inference/boundary.py
    # physical_from_expert), so the engine's convention on the output gives back what was drawn instead of
    # taking the drawn rim off a second time. Rehearsal slices are never converted (they are the parent's).
    label_boundary: str = "as_drawn"
    in_plane_size: int = 128
    # fixed_size (stretch every slice) | keep_aspect (pad to the network's aspect in mm first) | body_crop
    # (crop to the body, then as keep_aspect); "" = the
    # parent's policy when fine-tuning, keep_aspect for a new model. See NeonatalLungSegLib/inference/preprocess.py.
    in_plane_policy: str = ""
    channels: int = 1                 # > 1: 2.5D, neighbouring slices as channels
    encoder: str = "resnet50"
    encoder_depth: int = 5
    decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16)
    weights_dtype: str = "float16"
    device: str = "auto"
    precision: str = "auto"           # auto | fp32 | bf16 autocast (auto: bf16 on AMX-BF16 / AVX512-BF16 CPUs, bf16 GPUs)
    # Volumetric models (spatial_dims 3): a MONAI 3D network on windows of patch_slices slices by
    # in_plane_size, one window centred on each training slice; batch_size then counts windows (2 fits a
    # CPU), and encoder, encoder_depth, decoder_channels and channels do not apply.
    spatial_dims: int = 2             # 2 = slice-wise (2D, or 2.5D with channels > 1), 3 = volumetric
    patch_slices: int = 32            # 3D: window depth in slices (a multiple of 16)
    window_overlap: float = 0.5       # 3D: sliding-window overlap at validation and inference
    monai_network: str = "UNet"       # 3D: UNet or BasicUNet from monai.networks.nets
    monai_channels: tuple[int, ...] = (16, 32, 64, 128, 256)  # 3D: features per level
    monai_strides: tuple[int, ...] = (2, 2, 2, 2)             # 3D UNet: downsampling between levels
    monai_res_units: int = 2          # 3D UNet: residual units per block
    monai_norm: str = "batch"         # 3D: batch, instance, ...
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        if isinstance(self.augment, dict):
            self.augment = AugmentConfig(**{k: tuple(v) if isinstance(v, list) else v
                                            for k, v in self.augment.items()})
        self.split_fractions = tuple(float(f) for f in self.split_fractions)
        self.decoder_channels = tuple(int(c) for c in self.decoder_channels)
        self.monai_channels = tuple(int(c) for c in self.monai_channels)
        self.monai_strides = tuple(int(c) for c in self.monai_strides)
        self.rehearsal_data = (self.rehearsal_data,) if isinstance(self.rehearsal_data, str) and self.rehearsal_data \
            else tuple(str(d) for d in self.rehearsal_data or ())

    def problems(self) -> list[str]:
        found = []
        if not self.data:
            found.append("data (a training folder) is required")
        if not self.output:
            found.append("output (the new model folder) is required")
        if len(self.split_fractions) != 3 or any(f < 0 for f in self.split_fractions) \
                or abs(sum(self.split_fractions) - 1) > 1e-6 or self.split_fractions[0] == 0:
            found.append(f"split_fractions must be three non-negative numbers summing to 1, "
                         f"got {self.split_fractions}")
        for name in ("epochs", "batch_size", "in_plane_size", "channels"):
            if getattr(self, name) < 1:
                found.append(f"{name} must be >= 1")
        if self.in_plane_policy not in ("",) + IN_PLANE_POLICIES:
            found.append(f"in_plane_policy must be one of {', '.join(IN_PLANE_POLICIES)}, got "
                         f"{self.in_plane_policy!r}")
        if not 0 <= self.rehearsal_fraction < 1:
            found.append(f"rehearsal_fraction must lie in [0, 1), got {self.rehearsal_fraction}")
        elif self.rehearsal_fraction > 0 and not self.rehearsal_data:
            found.append("rehearsal_fraction > 0 needs rehearsal_data (a training folder to rehearse)")
        elif self.rehearsal_targets not in ("labels", "parent"):
            found.append(f"rehearsal_targets must be labels or parent, got {self.rehearsal_targets!r}")
        elif self.rehearsal_targets == "parent" and self.rehearsal_fraction > 0 and not self.init_model:
            found.append("rehearsal_targets parent needs init_model (a parent to learn from)")
        elif self.rehearsal_fraction > 0 and self.spatial_dims == 3:
            found.append("rehearsal is implemented for slice-wise (2D / 2.5D) models only")
        if self.learning_rate <= 0:
            found.append("learning_rate must be > 0")
        if self.weights_dtype not in ("float16", "float32"):
            found.append("weights_dtype must be float16 or float32")
        if self.precision not in TRAINING_PRECISIONS:
            found.append(f"precision must be {', '.join(TRAINING_PRECISIONS)}, got {self.precision!r}")
        if self.label_boundary not in ("as_drawn", "network"):
            found.append(f"label_boundary must be as_drawn or network, got {self.label_boundary!r}")
        elif self.label_boundary == "network" and self.spatial_dims == 3:
            found.append("label_boundary network is implemented for slice-wise (2D / 2.5D) models only")
        if self.freeze_encoder and not self.init_model:
            found.append("freeze_encoder needs init_model (a trained encoder to keep)")
        if self.anchor_decay < 0:
            found.append(f"anchor_decay must be 0 or more, got {self.anchor_decay}")
        elif self.anchor_decay > 0 and not self.init_model:
            found.append("anchor_decay needs init_model (parent weights to stay near)")
        if not self.adam_eps > 0:
            found.append(f"adam_eps must be > 0, got {self.adam_eps}")
        if not (isinstance(self.warmup_steps, int) and self.warmup_steps >= 0):
            found.append(f"warmup_steps must be a whole number >= 0, got {self.warmup_steps!r}")
        if not 0 < self.batchnorm_momentum <= 1:
            found.append(f"batchnorm_momentum must lie in (0, 1], got {self.batchnorm_momentum}")
        if not 0 <= self.weight_average < 1:
            found.append(f"weight_average must lie in [0, 1), got {self.weight_average}")
        if self.freeze_batchnorm and not self.init_model:
            found.append("freeze_batchnorm needs init_model (batch-norm statistics to keep)")
        if self.spatial_dims not in (2, 3):
            found.append(f"spatial_dims must be 2 (slice-wise) or 3 (volumetric), got {self.spatial_dims}")
        elif self.spatial_dims == 3 and not self.init_model:
            found += volumetric_problems(self)
        return found

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))  # tuples become lists, as in the saved file


def config_field_names() -> set[str]:
    return {f.name for f in dataclasses.fields(TrainConfig)}


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a YAML or JSON config; unknown keys are an error (a typo must not silently use a default)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        if Path(path).suffix.lower() in (".yaml", ".yml"):
            import yaml
            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
    except OSError as error:
        raise ValueError(f"{path}: cannot read the config ({error.strerror or error})") from None
    except (UnicodeDecodeError, ValueError) as error:  # JSONDecodeError is a ValueError
        raise ValueError(f"{path}: not a valid config file ({str(error).splitlines()[0]})") from None
    except Exception as error:  # yaml.YAMLError, without importing yaml for JSON configs
        raise ValueError(f"{path}: not a valid config file ({str(error).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config must be a mapping of field names to values")
    unknown = set(data) - config_field_names()
    if unknown:
        raise ValueError(f"{path}: unknown config field(s) {', '.join(sorted(unknown))}")
    defaults = TrainConfig()
    for key, value in data.items():  # a string where a number belongs must not end in a traceback
        default = getattr(defaults, key)
        if not _same_kind(value, default):
            raise ValueError(f"{path}: config field {key} must be like {default!r}, got {value!r}")
    return data


def _same_kind(value: Any, default: Any) -> bool:
    """Whether a config value has the type its default has (None defaults accept anything)."""
    if default is None or value is None and default is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    if dataclasses.is_dataclass(default):
        return isinstance(value, dict)
    return True


def environment() -> dict[str, Any]:
    """Git revision and versions of what shapes the result, recorded with every run."""
    repo = REPOSITORY
    try:
        revision = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                                  text=True, timeout=10).stdout.strip()
        dirty = bool(subprocess.run(["git", "-C", str(repo), "status", "--porcelain"], capture_output=True,
                                    text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        revision, dirty = "", False
    versions = {}
    for package in ("torch", "segmentation-models-pytorch", "monai", "numpy", "SimpleITK"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    from NeonatalLungSegLib.inference.acceleration import cpu_model

    return {"git_revision": revision or None, "git_dirty": dirty, "cpu": cpu_model(),
            "python": platform.python_version(),
            "platform": platform.platform(), "packages": versions}


MONAI_NETWORKS = ("UNet", "BasicUNet")
BASIC_UNET_POOLINGS = 4


def downsampling(config: TrainConfig) -> int:
    """How many times the 3D network halves its input: sizes must be multiples of this."""
    if config.monai_network == "BasicUNet":
        return 2 ** BASIC_UNET_POOLINGS
    return math.prod(config.monai_strides)


def volumetric_problems(config: TrainConfig) -> list[str]:
    """TrainConfig checks that only apply to a new volumetric model."""
    found = []
    if config.channels != 1:
        found.append(f"channels must be 1 for spatial_dims 3 (the window holds the neighbours), got "
                     f"{config.channels}")
    if config.monai_network not in MONAI_NETWORKS:
        found.append(f"monai_network must be one of {', '.join(MONAI_NETWORKS)}, got {config.monai_network!r}")
        return found
    if config.monai_network == "UNet":
        if len(config.monai_channels) < 2 or len(config.monai_strides) != len(config.monai_channels) - 1:
            found.append(f"monai_strides needs one value fewer than monai_channels, got "
                         f"{list(config.monai_strides)} for {list(config.monai_channels)}")
        if any(s < 1 for s in config.monai_strides) or config.monai_res_units < 0:
            found.append("monai_strides must be >= 1 and monai_res_units >= 0")
    elif len(config.monai_channels) not in (5, 6):
        found.append(f"BasicUNet needs 5 or 6 monai_channels, got {list(config.monai_channels)}")
    if any(c < 1 for c in config.monai_channels):
        found.append("monai_channels must be >= 1")
    multiple = math.lcm(PATCH_SLICES_MULTIPLE, max(1, downsampling(config)))
    if config.patch_slices < multiple or config.patch_slices % multiple:
        found.append(f"patch_slices must be a multiple of {multiple} for this network, got {config.patch_slices}")
    if config.in_plane_size % max(1, downsampling(config)):
        found.append(f"in_plane_size must be a multiple of {downsampling(config)} for this network")
    if not 0 <= config.window_overlap < 1:
        found.append(f"window_overlap must lie in [0, 1), got {config.window_overlap}")
    return found
