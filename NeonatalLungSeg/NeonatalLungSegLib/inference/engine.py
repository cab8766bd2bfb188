"""The segmentation engine: one loaded model, many volumes.

This is the public API the CLI, the Slicer module and Training call:

    segmenter = Segmenter.load(model_folder, device="auto")
    result = segmenter.segment_image(sitk_image)                  # or segment_array(array_kji, geometry)
    result.labels_image()  # uint8, 1 = right lung, 2 = left lung, on exactly the input's grid
    result.volumes         # {"right_lung": {"volume_ml": ...}, ...}

Inference runs slice batch by slice batch (3D models: window batch by window batch, see
``volume_inference.py``), so memory on the device is bounded by the batch, not the volume; progress is
reported and a cancel request is honoured between batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Union

import numpy as np
import SimpleITK as sitk

from . import acceleration
from .acceleration import describe_inference  # noqa: F401  (imported from here by the CLI)
from ..errors import DeviceError, ModelFolderError
from ..geometry import Geometry, Reorientation, array_to_image, image_to_array
from ..models.int8_network import INT8_NAME, Int8Network, unavailable_reason
from .measure import measure_volumes
from ..models.model_folder import ModelConfig, read_config
from .air.airway_column import drop_airway_column
from .boundary import drop_tissue_signal, keep_expert_share
from .postprocess import PostprocessOptions, postprocess
from .preprocess import prepare
from ..volumes.volume_io import check_values

if TYPE_CHECKING:
    import torch

    from .gate.gated import DomainGate

ProgressCallback = Callable[[float], None]
CancelCheck = Callable[[], bool]


class HostCpu(str):
    """The CPU, named without importing torch: the device of a Segmenter on the int8 path, which never loads
    torch (about 2 s of a command's start-up). It is the string ``"cpu"``, which torch accepts wherever a
    device goes, and has what callers read of a ``torch.device``: ``.type`` and ``.index``."""

    __slots__ = ()

    def __new__(cls) -> HostCpu:
        return super().__new__(cls, "cpu")

    @property
    def type(self) -> str:
        return "cpu"

    @property
    def index(self) -> None:
        return None


HOST_CPU = HostCpu()
Device = Union["torch.device", HostCpu]


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' prefers CUDA, then Apple MPS, then CPU; a named device must really be usable here."""
    import torch

    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise DeviceError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError("device 'cuda' requested but no CUDA GPU is available; use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"device {name!r} requested but only {torch.cuda.device_count()} GPU(s) exist")
    elif device.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise DeviceError("device 'mps' requested but Apple MPS is not available here")
    elif device.type != "cpu":
        raise DeviceError(f"unsupported device {name!r}: use auto, cpu, cuda, cuda:N or mps")
    return device


@dataclass
class SegmentationResult:
    """Labels and probabilities on the input's own grid, plus the measured volumes."""

    labels: np.ndarray                 # uint8 (k, j, i) on ``geometry``
    probabilities: np.ndarray | None   # float32 (k, j, i) lung probability, when asked for
    geometry: Geometry
    volumes: dict
    label_names: dict[str, int]
    # How it was computed: device, precision (and why: the CPU feature it was chosen for), backend.
    inference: dict = field(default_factory=dict)

    def summary(self) -> str:
        """One line for a status bar or log: volumes, then device and precision, e.g. ``"right 91.2 mL, left
        60.3 mL, total 151.5 mL (cpu, fp32: no AVX512-BF16 or AMX)"``."""
        from .measure import format_volumes

        text = format_volumes(self.volumes)
        return f"{text} ({describe_inference(self.inference)})" if self.inference else text

    def labels_image(self) -> sitk.Image:
        return array_to_image(self.labels, self.geometry)

    def probabilities_image(self) -> sitk.Image | None:
        return None if self.probabilities is None else array_to_image(self.probabilities, self.geometry)


class Segmenter:
    """A model folder loaded once onto one device."""

    def __init__(self, config: ModelConfig, network: torch.nn.Module | Int8Network, device: Device,
                 batch_size: int | None = None, folder: Path | None = None, precision: str = "auto",
                 channels_last: bool | None = None) -> None:
        """``precision`` auto|fp32|fp16|bf16 and ``channels_last`` (None = auto) apply to 2D models; see
        ``acceleration.py`` for what auto picks and why."""
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.config = config
        self.device = device
        self.folder = folder
        self.gate: DomainGate | None = None  # a gated folder's (Segmenter.load): routes each scan
        inp = config.input
        self.backend = "torch"
        if isinstance(network, Int8Network):  # Segmenter.load's int8 path: OpenVINO, float batches, CPU only
            if device.type != "cpu":
                raise ValueError("the int8 network runs on the CPU only")
            self.network, self.backend = network, f"openvino {network.version}"
            self.precision, self.precision_reason, self.channels_last = "int8", "requested", False
            self.batch_size = batch_size or acceleration.CPU_BATCH_SIZE
            self.network_origin = "given"
            return
        import torch

        if isinstance(device, HostCpu):
            device = self.device = torch.device("cpu")
        self.network = network.to(device).eval()
        self.precision, self.precision_reason = acceleration.describe_precision(precision, device)
        if inp.spatial_dims == 3:  # 3D models run their own mixed precision (``_autocast``), not ``precision``
            self.precision = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else \
                ("fp16" if device.type == "cuda" else "fp32")
            self.precision_reason = "3D model: mixed precision on GPUs, fp32 on the CPU"
        self.channels_last = (acceleration.uses_channels_last(device, inp.spatial_dims)
                              if channels_last is None else bool(channels_last and inp.spatial_dims == 2))
        if self.channels_last:
            self.network = self.network.to(memory_format=torch.channels_last)
        if batch_size is None and inp.spatial_dims == 2:
            batch_size = acceleration.default_batch_size(self.network, inp.in_plane_size, inp.channels, device,
                                                         self.precision, self.channels_last)
        self.batch_size = batch_size or (32 if device.type == "cuda" else 8)
        self.network_origin = "given"  # load(): "built" (torch) or "int8 file"

    @property
    def inference(self) -> dict:
        """Device, precision (and why), backend: stored with every result and printed by the CLI."""
        return {"device": str(self.device), "precision": self.precision,
                "precision_reason": self.precision_reason, "backend": self.backend}

    @classmethod
    def load(cls, folder: Path | str, device: str = "auto", batch_size: int | None = None,
             precision: str = "auto", channels_last: bool | None = None, gate: bool = True) -> Segmenter:
        """Build the network from the model folder's verified files, every time.

        No compiled or traced copy of a network is kept anywhere (a TorchScript file or an OpenVINO blob in the
        user's cache folder is code that any program of the user could replace, and nothing could verify it
        as strictly as the model folder): the int8 network is compiled from its checked ONNX file (about 0.4 s)
        and the torch network built from its checked weights. Where the folder's int8 network runs
        (``int8_choice``), torch is never imported: the CPU is recognised as the device without it
        (``acceleration.cpu_is_the_device``). ``gate=False`` loads a gated folder's fine-tuned network alone
        (quantize checks that network, not whichever one a gate would pick)."""
        folder = Path(folder)
        config = read_config(folder)
        if config.input.guidance:
            raise ModelFolderError(f"{folder}: a click-refinement model (input.guidance), not a segmentation "
                                   "model; use it with 'refine'")
        resolved = HOST_CPU if acceleration.cpu_is_the_device(device) else resolve_device(device)
        int8_reason = int8_choice(folder, config, resolved, precision)
        if int8_reason is not None:
            network = Int8Network(folder / INT8_NAME, acceleration.cpu_threads())
            segmenter = cls(config, network, resolved, batch_size, folder)
            segmenter.precision_reason, segmenter.network_origin = int8_reason, "int8 file"
        else:
            from ..models.network import build_checked

            if isinstance(resolved, HostCpu):
                resolved = resolve_device("cpu")
            segmenter = cls(config, build_checked(folder, config), resolved, batch_size, folder, precision,
                            channels_last)
            segmenter.network_origin = "built"
        if config.gate and gate:
            from .gate.gated import attach_gate

            attach_gate(segmenter, cls.load, device, batch_size, precision, channels_last)
        return segmenter

    def routed(self, array: np.ndarray, geometry: Geometry) -> tuple[Segmenter, dict | None]:
        """The segmenter that segments this scan, and why (None for an ungated folder: itself)."""
        if self.gate is None:
            return self, None
        return self.gate.choose(self, array, geometry)

    def predict(self, array: np.ndarray, geometry: Geometry, progress: ProgressCallback | None = None,
                cancel: CancelCheck | None = None) -> tuple[np.ndarray, Reorientation]:
        """Lung probability (float16) on the canonical grid, and the map between the two grids (a gated
        folder's: of the network the gate chose)."""
        return self.routed(array, geometry)[0].predict_unrouted(array, geometry, progress, cancel)

    def predict_unrouted(self, array: np.ndarray, geometry: Geometry, progress: ProgressCallback | None = None,
                         cancel: CancelCheck | None = None) -> tuple[np.ndarray, Reorientation]:
        """This segmenter's own network, whatever a gate would choose: the network step of ``segment_array``."""
        inp = self.config.input
        if inp.spatial_dims == 3:  # volumetric model: sliding windows (volume_inference.py)
            from .volume_inference import predict_volume

            return predict_volume(self.network, array, geometry, inp, self.device, self.batch_size,
                                  _autocast(self.device), progress, cancel)
        prepared = prepare(array, geometry, inp)
        if isinstance(self.network, Int8Network):  # arrays in and out: no torch on this path
            from .array_inference import predict_slices_array

            out_slices = predict_slices_array(self.network, prepared, inp, self.batch_size, progress, cancel)
        else:
            from .slice_inference import predict_slices

            out_slices = predict_slices(self.network, prepared, inp, self.device, self.batch_size,
                                        self.precision, self.channels_last, progress, cancel)
        canonical = np.moveaxis(out_slices, 0, 2 - inp.slice_axis)
        return canonical, prepared.reorientation

    def segment_array(self, array: np.ndarray, geometry: Geometry,
                      options: PostprocessOptions | None = PostprocessOptions(),
                      with_probabilities: bool = False, progress: ProgressCallback | None = None,
                      cancel: CancelCheck | None = None, source: str = "input volume") -> SegmentationResult:
        """Segment a (k, j, i) array on ``geometry``; ``options=None`` returns the raw thresholded mask.

        The values are checked here, once (``source`` names the volume in the error message).
        """
        if tuple(array.shape) != geometry.array_shape:
            raise ValueError(f"array shape {array.shape} does not match geometry {geometry.array_shape}")
        check_values(array, source)
        chosen, route = self.routed(array, geometry)
        result = chosen._segment_checked(array, geometry, options, with_probabilities, progress, cancel)
        if route is not None:
            result.inference["gate"] = route
        return result

    def _segment_checked(self, array: np.ndarray, geometry: Geometry, options: PostprocessOptions | None,
                         with_probabilities: bool, progress: ProgressCallback | None,
                         cancel: CancelCheck | None) -> SegmentationResult:
        probability, plan = self.predict_unrouted(array, geometry, progress, cancel)
        canonical_geometry = plan.target
        mask = probability >= self.config.output.threshold
        raw = PostprocessOptions(keep_largest_components=False, fill_holes=False, split_left_right=False)
        canonical_labels = postprocess(mask, canonical_geometry, options or raw)
        inference = dict(self.inference)
        if options is not None:
            canonical_labels = self._boundary(canonical_labels, plan, array, inference,
                                              airway=options.drop_extrapulmonary_air)
        split = (options or raw).split_left_right
        labels = np.ascontiguousarray(plan.from_canonical(canonical_labels))
        probabilities = None
        if with_probabilities:
            probabilities = np.ascontiguousarray(plan.from_canonical(probability), dtype=np.float32)
        names = dict(self.config.output.labels) if split else {self.config.output.network_label: 1}
        return SegmentationResult(labels=labels, probabilities=probabilities, geometry=geometry,
                                  volumes=measure_volumes(canonical_labels, canonical_geometry, split=split),
                                  label_names=names, inference=inference)

    def _boundary(self, labels: np.ndarray, plan: Reorientation, array: np.ndarray,
                  inference: dict, airway: bool = True) -> np.ndarray:
        """The model's boundary conventions (inference/boundary.py) on the canonical labels, the signal check
        last (it judges the surface the convention left); what each left out is recorded in
        ``inference["boundary"]``, so the physical-convention volume can be told too. ``airway``: with the
        signal check, the trachea tied to an apex goes too (airway_column.py; PostprocessOptions'
        drop_extrapulmonary_air switches both air rules)."""
        out = self.config.output
        voxel_ml = plan.target.voxel_volume_ml
        record: dict[str, float] = {}
        if out.boundary_min_share > 0.5 and out.boundary_psf_sigma > 0:
            kept = keep_expert_share(labels, out.boundary_min_share, out.boundary_psf_sigma)
            record.update(min_lung_share=out.boundary_min_share, psf_sigma_voxels=out.boundary_psf_sigma,
                          rim_ml=round((np.count_nonzero(labels) - np.count_nonzero(kept)) * voxel_ml, 3))
            labels = kept
        if out.boundary_signal_min_share > 0:
            image = plan.to_canonical(array)
            checked = drop_tissue_signal(labels, image, out.boundary_signal_min_share)
            record.update(signal_min_lung_share=out.boundary_signal_min_share,
                          tissue_ml=round((np.count_nonzero(labels) - np.count_nonzero(checked)) * voxel_ml, 3))
            if airway:  # the trachea the network tied to an apex: the air above it says what it is
                cleared = drop_airway_column(checked, image, out.boundary_signal_min_share,
                                             plan.target.direction_matrix, plan.target.spacing)
                record["airway_ml"] = round((np.count_nonzero(checked) - np.count_nonzero(cleared)) * voxel_ml, 3)
                checked = cleared
            labels = checked
        if record:
            inference["boundary"] = record
        return labels

    def segment_image(self, image: sitk.Image, **kwargs) -> SegmentationResult:
        array, geometry = image_to_array(image)
        return self.segment_array(array.astype(np.float32, copy=False), geometry, **kwargs)


def int8_choice(folder: Path, config: ModelConfig, device: Device, precision: str) -> str | None:
    """Why this load runs the folder's int8 network (None: it runs torch), its files verified once here.
    ``int8`` requested: it runs or one line says why not; ``auto``: on a CPU that prefers int8 when the folder's
    int8 network verifies and openvino is installed, else silently the torch precision ``auto`` picks."""
    if precision.lower() == "int8":
        if device.type != "cpu":
            raise ValueError(f"precision int8 runs on the CPU only, not on {device.type}")
        reason = unavailable_reason(folder, config)
        if reason is not None:
            raise ModelFolderError(f"{folder}: precision int8 unavailable: {reason}")
        return "requested"
    if precision.lower() != "auto" or device.type != "cpu":
        return None
    prefers, why = acceleration.cpu_prefers_int8()
    if not prefers or unavailable_reason(folder, config) is not None:
        return None
    return f"chosen for {why} (the folder's int8 network)"


def _autocast(device: torch.device):
    """Mixed precision on GPUs (bf16 where supported); plain fp32 elsewhere."""
    import torch

    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast("cpu", enabled=False)
