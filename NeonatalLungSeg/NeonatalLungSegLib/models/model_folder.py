"""The model folder: one JSON config beside safetensors weights, shared by the engine and Training.

A model folder must carry everything needed to reproduce its preprocessing (orientation, slicing,
resizing, intensity normalisation) so that a model trained anywhere segments identically everywhere. The
weights are safetensors, never pickle, and their SHA-256 is recorded in the config and checked on load, so
a truncated copy or a silently swapped file is refused instead of producing plausible-looking wrong masks.
The format is documented in docs/model-folder.md.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from .. import json_input
from ..errors import InputError, ModelFolderError
from ..geometry import check_orientation_code
from .checksums import sha256_of  # noqa: F401  (imported from here by Training and the tests)
from .gate_files import gate_problems
from .model_schema import schema_problems

CONFIG_NAME = "model.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_NAME = "neonatal-lung-seg-model"
FORMAT_VERSION = 1
IN_PLANE_POLICIES = ("fixed_size", "keep_aspect", "body_crop")  # see preprocess.py
GUIDANCE_CHANNELS = ("mask", "positive_clicks", "negative_clicks")  # click-refinement models (refine.py)
INTENSITY_METHODS = ("percentile_minmax", "zscore")
SPATIAL_DIMS = (2, 3)
PATCH_SLICES_MULTIPLE = 16  # four 2x downsamplings along the slice axis, as in_plane_size allows five
MAX_CONFIG_BYTES = 1 << 20  # model.json is read whole; the bundled one is 22 kB
# The label values the engine writes (postprocess.RIGHT_LUNG, LEFT_LUNG) under the names every reader uses
# (volumes.json, DICOM SEG's SNOMED codes, the refinement model, the Slicer segments), and the name of the
# unsplit label. Not a choice of the model folder: a folder saying otherwise would make its volumes.json
# contradict its own voxels.
ENGINE_LABELS = {"right_lung": 1, "left_lung": 2}
ENGINE_NETWORK_LABEL = "lung"


@dataclass(frozen=True)
class NetworkConfig:
    """Which network to build; ``library`` + ``architecture`` + ``args`` go to the builder by name."""

    library: str = "smp"
    architecture: str = "Unet"
    args: dict[str, Any] = field(default_factory=lambda: {
        "encoder_name": "resnet50",
        "encoder_depth": 5,
        "decoder_channels": [256, 128, 64, 32, 16],
        "decoder_use_norm": "batchnorm",
    })


@dataclass(frozen=True)
class InputConfig:
    """How a volume becomes network input.

    ``channels`` > 1 means 2.5D: the slice and its neighbours (clamped at the ends) are stacked.
    ``slice_axis`` is the canonical ITK index axis (0 = i, 1 = j, 2 = k) the slices are taken across;
    with orientation "LPS" and slice_axis 2 the slices are axial.
    ``spatial_dims`` 3 makes the model volumetric: every slice is prepared exactly as for 2D, the slices
    are stacked into one volume and a 3D network runs over it in sliding windows of ``patch_slices``
    slices by ``in_plane_size``, overlapping by ``window_overlap`` and blended with Gaussian weights.
    ``patch_slices`` and ``window_overlap`` are ignored by 2D models.
    """

    channels: int = 1
    canonical_orientation: str = "LPS"
    slice_axis: int = 2
    in_plane_policy: str = "fixed_size"
    in_plane_size: tuple[int, int] = (128, 128)  # (rows, columns) of the network input
    intensity_method: str = "percentile_minmax"
    lower_percentile: float = 0.5
    upper_percentile: float = 99.5
    spatial_dims: int = 2             # 2 = slice-wise (2D / 2.5D), 3 = volumetric (sliding windows)
    patch_slices: int = 32            # 3D only: window depth along slice_axis
    window_overlap: float = 0.5       # 3D only: fraction of a window shared with the next one
    # Click-refinement models only (``refine.py``): extra input channels after the image slices, in this
    # order, e.g. ("mask", "positive_clicks", "negative_clicks"); empty for a segmentation model.
    guidance: tuple[str, ...] = ()
    click_sigma: float = 2.5          # Gaussian width of a click, in network pixels
    click_depth_mm: float = 6.0       # a click's height falls as a Gaussian of this width (mm) across slices

    @property
    def network_channels(self) -> int:
        """Input channels of the network itself: the image slices, then the guidance maps."""
        return self.channels + len(self.guidance)


@dataclass(frozen=True)
class OutputConfig:
    """What the network predicts and how it becomes labels."""

    activation: str = "sigmoid"
    threshold: float = 0.5
    network_label: str = "lung"
    labels: dict[str, int] = field(default_factory=lambda: {"right_lung": 1, "left_lung": 2})
    # The expert convention for partial-volume boundary voxels (inference/boundary.py): a voxel stays lung
    # when its lung share through a Gaussian PSF of boundary_psf_sigma voxels is >= boundary_min_share.
    # 0.5 keeps every voxel the network calls lung (the physical convention the training labels follow).
    boundary_min_share: float = 0.5
    boundary_psf_sigma: float = 0.0
    # The signal check (inference/boundary.py): a surface voxel whose intensity says less than this share of
    # lung is peeled (two voxels deep at most). 0 = off.
    boundary_signal_min_share: float = 0.0


@dataclass(frozen=True)
class ModelConfig:
    """The whole model.json. ``training`` and ``validation`` are free-form summaries for the model card."""

    name: str = "neonatal-lung-unet-resnet50"
    version: str = "0.0.0"
    parent_version: str | None = None
    description: str = ""
    network: NetworkConfig = field(default_factory=NetworkConfig)
    input: InputConfig = field(default_factory=InputConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    training: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)
    weights_sha256: str = ""
    weights_dtype: str = "float32"
    clinical_use: str = "Research use only. Not clinically validated."
    # The domain gate of an improved model (gate_files.py): empty = one network, as every folder before it.
    gate: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input"]["in_plane_size"] = list(self.input.in_plane_size)
        data["input"]["guidance"] = list(self.input.guidance)
        if not data["gate"]:  # an ungated folder's model.json reads as before the gate existed
            del data["gate"]
        return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **data}

    @staticmethod
    def from_dict(data: dict[str, Any], source: str = CONFIG_NAME) -> ModelConfig:
        """Validate and build; every problem becomes a ModelFolderError naming ``source``."""
        def fail(problem: str) -> ModelFolderError:
            return ModelFolderError(f"{source}: {problem}")

        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise fail(f"not a {FORMAT_NAME} config (missing or wrong 'format')")
        if data.get("format_version") != FORMAT_VERSION:
            raise fail(f"unsupported format_version {data.get('format_version')!r}, expected {FORMAT_VERSION}")
        body = {k: v for k, v in data.items() if k not in ("format", "format_version")}
        problems = schema_problems(body)  # types and ranges first: nothing below may raise on odd JSON
        if problems:
            raise fail(problems[0])
        try:
            net = NetworkConfig(**body.pop("network"))
            inp = dict(body.pop("input"))
            inp["in_plane_size"] = tuple(int(v) for v in inp.get("in_plane_size", (128, 128)))
            inp["guidance"] = tuple(inp.get("guidance", ()))
            inp = InputConfig(**inp)
            out = OutputConfig(**body.pop("output"))
            config = ModelConfig(network=net, input=inp, output=out, **body)
        except (KeyError, TypeError, ValueError) as exc:
            raise fail(f"invalid or missing field ({exc})") from None
        problems = config.problems()
        if problems:
            raise fail(problems[0])
        return config

    def problems(self) -> list[str]:
        """Semantic checks the dataclass types cannot express."""
        found = []
        inp = self.input
        try:
            check_orientation_code(inp.canonical_orientation)
        except ValueError as exc:
            found.append(f"input.canonical_orientation: {exc}")
        if inp.channels < 1 or inp.channels % 2 == 0:
            found.append(f"input.channels must be an odd number >= 1, got {inp.channels}")
        if inp.slice_axis not in (0, 1, 2):
            found.append(f"input.slice_axis must be 0, 1 or 2, got {inp.slice_axis}")
        if inp.in_plane_policy not in IN_PLANE_POLICIES:
            found.append(f"input.in_plane_policy must be one of {IN_PLANE_POLICIES}, got {inp.in_plane_policy!r}")
        if len(inp.in_plane_size) != 2 or min(inp.in_plane_size) < 32 or any(s % 32 for s in inp.in_plane_size):
            found.append(f"input.in_plane_size must be two multiples of 32, got {list(inp.in_plane_size)}")
        if inp.intensity_method not in INTENSITY_METHODS:
            found.append(f"input.intensity_method must be one of {INTENSITY_METHODS}, got {inp.intensity_method!r}")
        if not 0 <= inp.lower_percentile < inp.upper_percentile <= 100:
            found.append("input percentiles must satisfy 0 <= lower < upper <= 100")
        found += self._spatial_problems()
        if any(g not in GUIDANCE_CHANNELS for g in inp.guidance) or len(set(inp.guidance)) != len(inp.guidance):
            found.append(f"input.guidance must list distinct channels of {GUIDANCE_CHANNELS}, "
                         f"got {list(inp.guidance)}")
        if inp.guidance and inp.spatial_dims != 2:
            found.append("input.guidance (a click-refinement model) needs input.spatial_dims 2")
        if not 0.5 <= inp.click_sigma <= 32:
            found.append(f"input.click_sigma must lie in 0.5..32 network pixels, got {inp.click_sigma}")
        if not 0.5 <= inp.click_depth_mm <= 100:
            found.append(f"input.click_depth_mm must lie in 0.5..100 mm, got {inp.click_depth_mm}")
        if self.output.activation != "sigmoid":
            found.append(f"output.activation must be 'sigmoid', got {self.output.activation!r}")
        if not 0 < self.output.threshold < 1:
            found.append(f"output.threshold must lie in (0, 1), got {self.output.threshold}")
        if not 0.5 <= self.output.boundary_min_share < 1:
            found.append(f"output.boundary_min_share must lie in [0.5, 1), got {self.output.boundary_min_share}")
        if not 0 <= self.output.boundary_psf_sigma <= 3:
            found.append(f"output.boundary_psf_sigma must lie in [0, 3] voxels, got {self.output.boundary_psf_sigma}")
        if not 0 <= self.output.boundary_signal_min_share < 1:
            found.append("output.boundary_signal_min_share must lie in [0, 1), got "
                         f"{self.output.boundary_signal_min_share}")
        if dict(self.output.labels) != ENGINE_LABELS:
            found.append(f"output.labels must map the right and left lung to the values the engine writes, "
                         f"{ENGINE_LABELS}; got {dict(self.output.labels)}")
        found += gate_problems(self.gate)
        if self.gate and (self.input.guidance or self.input.spatial_dims != 2):
            found.append("gate: only slice-wise segmentation models can be gated")
        if self.output.network_label != ENGINE_NETWORK_LABEL:
            found.append(f"output.network_label must be {ENGINE_NETWORK_LABEL!r} (the unsplit label's name), got "
                         f"{self.output.network_label!r}")
        return found

    def _spatial_problems(self) -> list[str]:
        """2D versus 3D: a volumetric model needs a MONAI network, one channel and a valid window."""
        inp, found = self.input, []
        if isinstance(inp.spatial_dims, bool) or inp.spatial_dims not in SPATIAL_DIMS:
            return [f"input.spatial_dims must be 2 (slice-wise) or 3 (volumetric), got {inp.spatial_dims!r}"]
        declared = self.network.args.get("spatial_dims") if isinstance(self.network.args, dict) else None
        if declared is not None and declared != inp.spatial_dims:
            found.append(f"network.args.spatial_dims {declared!r} contradicts input.spatial_dims "
                         f"{inp.spatial_dims}")
        if inp.spatial_dims == 2:
            return found
        if self.network.library != "monai":
            found.append(f"input.spatial_dims 3 needs network.library 'monai' (a 3D network), "
                         f"got {self.network.library!r}")
        if inp.channels != 1:
            found.append(f"input.spatial_dims 3 needs input.channels 1 (the neighbours are already in the "
                         f"window), got {inp.channels}")
        if isinstance(inp.patch_slices, bool) or not isinstance(inp.patch_slices, int) \
                or inp.patch_slices < PATCH_SLICES_MULTIPLE or inp.patch_slices % PATCH_SLICES_MULTIPLE:
            found.append(f"input.patch_slices must be a multiple of {PATCH_SLICES_MULTIPLE} (>= "
                         f"{PATCH_SLICES_MULTIPLE}) for a 3D model, got {inp.patch_slices!r}")
        if isinstance(inp.window_overlap, bool) or not isinstance(inp.window_overlap, (int, float)) \
                or not 0 <= inp.window_overlap < 1:
            found.append(f"input.window_overlap must lie in [0, 1), got {inp.window_overlap!r}")
        return found


def read_config(folder: Path) -> ModelConfig:
    """Read and validate model.json without touching the weights (cheap: used to list models)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelFolderError(f"{folder}: model folder does not exist")
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise ModelFolderError(f"{path}: missing model config")
    return ModelConfig.from_dict(read_json_file(path, MAX_CONFIG_BYTES), source=str(path))


def read_json_file(path: Path, max_bytes: int) -> Any:
    """A small JSON file of a model folder, parsed (``json_input``: bounded, regular file, strict, nesting
    bounded); any damage is one ModelFolderError line."""
    try:
        return json_input.read_json_file(path, max_bytes, "model folder file")
    except InputError as exc:
        raise ModelFolderError(str(exc)) from None


def verify_weights(folder: Path, config: ModelConfig) -> Path:
    """Return the weights path after checking it exists and matches the recorded SHA-256."""
    path = Path(folder) / WEIGHTS_NAME
    if not path.is_file():
        raise ModelFolderError(f"{path}: missing weights file")
    if not config.weights_sha256:
        raise ModelFolderError(f"{Path(folder) / CONFIG_NAME}: no weights_sha256 recorded")
    actual = sha256_of(path)
    if actual != config.weights_sha256:
        raise ModelFolderError(f"{path}: checksum mismatch (file truncated or altered): "
                               f"expected {config.weights_sha256[:12]}..., got {actual[:12]}...")
    return path


def load_state_dict(folder: Path, config: ModelConfig) -> dict[str, Any]:
    """Checked weights as float32 CPU tensors (safetensors only: nothing is unpickled)."""
    return read_verified_weights(verify_weights(folder, config))


def read_verified_weights(path: Path) -> dict[str, Any]:
    """Weights of a file ``verify_weights`` already checked, as float32 CPU tensors (hashing 65 MB once
    per load is enough)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFolderError(f"{path}: not a valid safetensors file ({exc})") from None
    return {k: (v.float() if v.is_floating_point() else v) for k, v in tensors.items()}


def write_model_folder(folder: Path, config: ModelConfig, state_dict: dict[str, Any],
                       dtype: str = "float16") -> ModelConfig:
    """Write weights + config into a NEW folder, atomically; returns the config with its checksum.

    Written into a sibling temporary folder and renamed, so a crash never leaves a half-written model that
    a later run could pick up. Refuses to replace an existing folder: models are versioned, not edited.
    """
    from safetensors.torch import save_file
    import torch

    folder = Path(folder)
    if folder.exists():
        raise ModelFolderError(f"{folder}: already exists; choose a new folder for a new model version")
    if dtype not in ("float16", "float32"):
        raise ValueError(f"dtype must be float16 or float32, got {dtype!r}")
    target = getattr(torch, dtype)
    tensors = {k: (v.detach().to("cpu", target) if v.is_floating_point() else v.detach().cpu()).contiguous()
               for k, v in state_dict.items()}
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        save_file(tensors, str(staging / WEIGHTS_NAME), metadata={"format": FORMAT_NAME})
        final = replace(config, weights_sha256=sha256_of(staging / WEIGHTS_NAME), weights_dtype=dtype)
        (staging / CONFIG_NAME).write_text(json_input.dump_json(final.to_dict(), indent=2) + "\n", encoding="utf-8")
        staging.chmod(0o755)  # mkdtemp makes it private; a model folder is meant to be shared
        for child in staging.iterdir():
            child.chmod(0o644)
        os.replace(staging, folder)
    except BaseException:
        for child in staging.glob("*"):
            child.unlink()
        staging.rmdir()
        raise
    return final
