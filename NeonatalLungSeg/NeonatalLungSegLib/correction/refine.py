"""Click refinement: repair a lung mask with positive ("this is lung") and negative ("not lung") clicks.

    refiner = Refiner.load(model_folder)                      # a click-refinement model folder
    session = refiner.session(array_kji, geometry)             # one volume, prepared once
    labels, outcome = session.apply(labels, Click((k, j, i), positive=True))   # one call per click

The network is the engine's U-Net with guidance channels after the image (the current lung mask, then
positive and negative click maps, ``clicks.py``). It predicts the whole lung mask as it should be given the
clicks; only the part of that prediction which a click concerns is used: the 3D region of change (missed
lung to add for a positive click, false lung to remove for a negative one) that is connected to the click.
So a click corrects its own error in its own slice and follows that error through the neighbouring slices
exactly as far as it continues, and nothing else in the mask moves. Whatever the network says:

- only the click's lung changes; voxels of the other lung are never touched, and a positive click adds
  on its lung's side of the midline between the lungs (or up to 10 mm past the click, when the click itself
  is across it and no closer to the other lung than to its own);
- a click always does something where it can: when the network's prediction does not change the clicked
  voxel, a small disk (``FALLBACK_RADIUS_MM``) around it is added or removed in the click's slice.

Speed: the network first runs on ``WINDOW_SLICES`` slices around the click; only when the change reaches
the window's end does it run on further slices in that direction, so a local correction costs ~17 slices.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from ..inference import acceleration
from .contrast_region import negative_region, robust_range, within_click_depth, within_rim_reach
from .rim_peel import rim_region
from .clicks import Click, ClickOutcome, click_amplitude, render_clicks, to_network_pixel
from ..inference.engine import resolve_device
from ..errors import ModelFolderError
from ..geometry import Geometry
from ..models.model_folder import ModelConfig, read_config
from ..inference.preprocess import network_input, prepare, slice_stack
from ..volumes.volume_io import check_values

WINDOW_SLICES = 17      # slices run around a click first
GROW_SLICES = 16        # slices added on a side the change reaches
SNAP_RADIUS_MM = 4.0    # a click just beside the network's change still selects it
FALLBACK_RADIUS_MM = 2.0
ACROSS_REACH = 0.25      # a positive click may lie this share of the lungs' centre distance across the midline
ACROSS_MARGIN_MM = 10.0  # ... and then add up to this far past the click


@dataclass
class _Placed:
    """A click on the canonical grid: slice, in-plane pixel, and the same pixel in network pixels."""

    slice: int
    row: int
    col: int
    net_row: float
    net_col: float
    positive: bool


class Refiner:
    """A click-refinement model folder loaded once onto one device."""

    def __init__(self, config: ModelConfig, network: torch.nn.Module, device: torch.device,
                 folder: Path | None = None, precision: str = "auto") -> None:
        if tuple(config.input.guidance) != ("mask", "positive_clicks", "negative_clicks"):
            raise ModelFolderError(f"{folder or config.name}: not a click-refinement model (input.guidance must "
                                   "be mask, positive_clicks, negative_clicks)")
        self.config = config
        self.folder = folder
        self.device = device
        self.network = network.to(device).eval()
        self.precision, self.precision_reason = acceleration.describe_precision(precision, device)
        self.channels_last = acceleration.uses_channels_last(device, config.input.spatial_dims)
        if self.channels_last:  # oneDNN's and cuDNN's fast convolutions want NHWC, as in Segmenter
            self.network = self.network.to(memory_format=torch.channels_last)
        self.labels = dict(config.output.labels)

    @classmethod
    def load(cls, folder: Path | str, device: str = "auto", precision: str = "auto") -> Refiner:
        from ..models.network import build_checked

        folder = Path(folder)
        config = read_config(folder)
        if not config.input.guidance:
            raise ModelFolderError(f"{folder}: a segmentation model, not a click-refinement model "
                                   "(its input.guidance is empty)")
        return cls(config, build_checked(folder, config), resolve_device(device), folder, precision)

    def session(self, array: np.ndarray, geometry: Geometry, source: str = "input volume",
                image_contrast: bool = True, rim_peel: bool = True) -> RefineSession:
        """``image_contrast=False`` leaves negative clicks to the network alone (see contrast_region.py: the
        rule can take consolidated lung that looks like the false tissue beside it); ``rim_peel=False`` stops
        negative clicks on the rim from peeling it (rim_peel.py)."""
        return RefineSession(self, array, geometry, source, image_contrast=image_contrast, rim_peel=rim_peel)

    def refine(self, array: np.ndarray, geometry: Geometry, labels: np.ndarray,
               clicks: list[Click]) -> tuple[np.ndarray, list[ClickOutcome]]:
        """Apply ``clicks`` in order, each to the result of the ones before (one call per click)."""
        session = self.session(array, geometry)
        outcomes = []
        for click in clicks:
            labels, outcome = session.apply(labels, click)
            outcomes.append(outcome)
        return labels, outcomes

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), acceleration.autocast(self.device, self.precision):
            logits = acceleration.checked_forward(self.network, batch, self.device, self.precision)
        return logits.float()


@dataclass
class RefineSession:
    """One volume and its clicks so far; every click is guidance for the ones after it."""

    refiner: Refiner
    array: np.ndarray
    geometry: Geometry
    source: str = "input volume"
    clicks: list[_Placed] = field(default_factory=list)
    image_contrast: bool = True   # negative clicks also use the image's contrast (contrast_region.py)
    rim_peel: bool = True         # negative clicks on the rim peel it locally (rim_peel.py)
    depth_limit: bool = True      # a negative click takes nothing deeper than about twice its own depth
    rim_reach: bool = True        # ... and from the rim, nothing farther than the rim peel's reach

    def __post_init__(self) -> None:
        if tuple(self.array.shape) != self.geometry.array_shape:
            raise ValueError(f"array shape {self.array.shape} does not match geometry {self.geometry.array_shape}")
        check_values(self.array, self.source)
        inp = self.refiner.config.input
        self.prepared = prepare(self.array, self.geometry, inp)
        self.plan = self.prepared.reorientation
        spacing_kji = tuple(reversed(self.plan.target.spacing))
        self.slice_mm = float(spacing_kji[2 - inp.slice_axis])
        in_plane = [s for axis, s in enumerate(spacing_kji) if axis != 2 - inp.slice_axis]
        self.pixel_mm = float(min(in_plane))
        self.spacing = (self.slice_mm, float(in_plane[0]), float(in_plane[1]))  # mm per axis of the slices
        self.spread = robust_range(self.prepared.slices)
        self.x_mm = self._in_plane_x()
        self.body_midline = self._body_midline()

    def _slices(self, volume: np.ndarray) -> np.ndarray:
        """A source (k, j, i) array as canonical slices (a view: writing into it writes the source)."""
        return np.moveaxis(self.plan.to_canonical(volume), 2 - self.refiner.config.input.slice_axis, 0)

    def _in_plane_x(self) -> np.ndarray:
        """LPS x (mm, + towards the patient's left) of every in-plane pixel of a canonical slice."""
        axis = self.refiner.config.input.slice_axis
        rows, cols = self.prepared.slices.shape[1:]
        grid = np.zeros((rows, cols, 3))
        in_plane = [a for a in (2, 1, 0) if a != axis]  # ITK axes of (row, column)
        grid[..., in_plane[0]] = np.arange(rows)[:, None]
        grid[..., in_plane[1]] = np.arange(cols)[None, :]
        grid[..., axis] = self.prepared.slices.shape[0] // 2
        return self.plan.target.index_to_lps(grid)[..., 0].astype(np.float32)

    def _body_midline(self) -> float:
        """x (mm) of the body's centre: the midline used when both lungs are not yet there."""
        slices = self.prepared.slices
        step = max(1, len(slices) // 16)
        sample = np.asarray(slices[::step], dtype=np.float32)
        low, high = np.percentile(sample, [2, 98])
        body = sample > low + 0.1 * (high - low)  # not air outside the patient (lungs may be dark or bright)
        weights = body.sum(axis=0)
        return float((weights * self.x_mm).sum() / weights.sum()) if weights.sum() else float(self.x_mm.mean())

    def midline(self, canonical: np.ndarray) -> float:
        """Between the two lungs' centres when both exist, else the body's centre."""
        return self._midline_of(self.lung_centres(canonical))

    def _midline_of(self, centres: tuple[float, float] | None) -> float:
        return self.body_midline if centres is None else 0.5 * (centres[0] + centres[1])

    def lung_centres(self, canonical: np.ndarray) -> tuple[float, float] | None:
        """x (mm) of the right and the left lung's centres, or None unless both have some volume."""
        centres = []
        for name in ("right_lung", "left_lung"):
            counts = (canonical == self.refiner.labels[name]).sum(axis=0)
            if counts.sum() < 50:
                return None
            centres.append(float((counts * self.x_mm).sum() / counts.sum()))
        return centres[0], centres[1]

    def _lung_for(self, click: Click, canonical: np.ndarray, placed: _Placed,
                  centres: tuple[float, float] | None) -> str | None:
        if click.lung:
            return click.lung
        names = {v: k for k, v in self.refiner.labels.items()}
        if click.positive:
            return "right_lung" if self.x_mm[placed.row, placed.col] < self._midline_of(centres) else "left_lung"
        return names.get(self._nearest_label(canonical[placed.slice], placed, SNAP_RADIUS_MM))

    def _nearest_label(self, plane: np.ndarray, placed: _Placed, radius_mm: float) -> int:
        """The label of the labelled pixel nearest to the click in its slice, within ``radius_mm`` (0: none)."""
        radius = max(1, int(round(radius_mm / self.pixel_mm)))
        r0, c0 = max(0, placed.row - radius), max(0, placed.col - radius)
        patch = plane[r0:placed.row + radius + 1, c0:placed.col + radius + 1]
        found = np.argwhere(patch > 0)
        if not len(found):
            return 0
        nearest = found[np.argmin(((found - [placed.row - r0, placed.col - c0]) ** 2).sum(axis=1))]
        return int(patch[tuple(nearest)])

    def _positive_allowed(self, placed: _Placed, lung: str,
                          centres: tuple[float, float] | None) -> tuple[np.ndarray, bool] | None:
        """(where a positive click for ``lung`` may add, in-plane; whether the click is across the midline),
        or None when it must be refused.

        Normally the lung's side of the midline. A click a little across the midline between the lungs (a
        right lung reaching past it, as real right lungs do in front of the heart: up to ``ACROSS_REACH`` of
        the lungs' centre distance) may add up to ``ACROSS_MARGIN_MM`` beyond the click; ``apply`` then keeps
        the addition only if it borders this lung more than the other one. Farther across, the click is in
        the other lung's territory and is refused rather than relabelling that lung's missed part.
        """
        right = lung == "right_lung"
        midline = self._midline_of(centres)
        side = (self.x_mm < midline) if right else (self.x_mm >= midline)
        if side[placed.row, placed.col]:
            return side, False
        x_click = float(self.x_mm[placed.row, placed.col])
        reach = 0.0 if centres is None else ACROSS_REACH * abs(centres[1] - centres[0])
        if abs(x_click - midline) > reach:
            return None
        bound = x_click + (ACROSS_MARGIN_MM if right else -ACROSS_MARGIN_MM)
        return ((self.x_mm < bound) if right else (self.x_mm > bound)), True

    @staticmethod
    def _borders_other_lung_more(region: np.ndarray, view: np.ndarray, value: int, other: int) -> bool:
        """Whether the voxels just around ``region`` are more the other lung's than ``value``'s."""
        border = ndimage.binary_dilation(region) & ~region
        return int((view[border] == other).sum()) > int((view[border] == value).sum())

    def _place(self, click: Click) -> _Placed:
        inp = self.refiner.config.input
        canonical = self.plan.index_to_canonical(click.index)
        axis_np = 2 - inp.slice_axis
        slice_index = canonical[axis_np]
        row, col = [canonical[a] for a in range(3) if a != axis_np]
        shape = self.prepared.slices.shape[1:]
        net_row, net_col = to_network_pixel(row, col, shape, self.prepared.frame.pad, inp.in_plane_size)
        return _Placed(slice_index, row, col, net_row, net_col, click.positive)

    def _predict(self, indices: np.ndarray, lungs: np.ndarray) -> np.ndarray:
        """Boolean lung prediction (len(indices), rows, cols) given the current mask and all clicks."""
        inp = self.refiner.config.input
        prepared, device = self.prepared, self.refiner.device
        image = network_input(slice_stack(prepared.slices, indices, inp.channels), prepared.scale, inp, device,
                              prepared.frame)
        mask = torch.from_numpy(np.ascontiguousarray(lungs[indices][:, None], dtype=np.float32)).to(device)
        mask = prepared.frame.to_network(mask, inp.in_plane_size, 0.0)
        maps = np.zeros((len(indices), 2, *inp.in_plane_size), dtype=np.float32)
        for n, z in enumerate(indices):
            for channel, positive in ((0, True), (1, False)):
                chosen = [c for c in self.clicks if c.positive == positive]
                amplitudes = click_amplitude([(z - c.slice) * self.slice_mm for c in chosen], inp.click_depth_mm)
                maps[n, channel] = render_clicks(inp.in_plane_size, [(c.net_row, c.net_col) for c in chosen],
                                                 amplitudes, inp.click_sigma)
        batch = torch.cat([image, mask, torch.from_numpy(maps).to(device)], dim=1)
        logits = self.refiner.forward(batch)
        logits = prepared.frame.from_network(logits, prepared.slices.shape[1:])
        return (torch.sigmoid(logits[:, 0]) >= self.refiner.config.output.threshold).cpu().numpy()

    def apply(self, labels: np.ndarray, click: Click) -> tuple[np.ndarray, ClickOutcome]:
        """A new label array with one click applied; ``labels`` itself is never modified."""
        started = time.perf_counter()
        if tuple(labels.shape) != self.geometry.array_shape:
            raise ValueError(f"labels shape {labels.shape} does not match the volume {self.geometry.array_shape}")
        out = np.array(labels, dtype=np.uint8, copy=True)
        canonical = self._slices(out)
        placed = self._place(click)
        centres = self.lung_centres(canonical) if click.positive else None  # one pass over the volume
        lung = self._lung_for(click, canonical, placed, centres)
        if lung is None:
            return out, ClickOutcome(None, click.positive, 0, 0, time.perf_counter() - started,
                                     message="no lung at this point to remove")
        self.clicks.append(placed)
        value = self.refiner.labels[lung]
        lungs = canonical > 0
        allowed, across = None, False
        other_name = "left_lung" if lung == "right_lung" else "right_lung"
        refused = (f"the click is in the {other_name.split('_')[0]} lung (across the midline); nothing was added "
                   f"to the {lung.replace('_', ' ')}")
        if click.positive:
            decided = self._positive_allowed(placed, lung, centres)
            if decided is None:  # e.g. the right lung chosen, the click inside the left lung
                self.clicks.pop()
                return out, ClickOutcome(lung, True, 0, 0, time.perf_counter() - started, message=refused)
            allowed, across = decided
        count = len(canonical)
        half = WINDOW_SLICES // 2
        low, high = max(0, placed.slice - half), min(count - 1, placed.slice + half)
        predicted: dict[int, np.ndarray] = {}
        while True:
            todo = np.array([z for z in range(low, high + 1) if z not in predicted], dtype=np.int64)
            if len(todo):
                for z, plane in zip(todo, self._predict(todo, lungs)):
                    predicted[int(z)] = plane
            window = np.stack([predicted[z] for z in range(low, high + 1)])
            current = canonical[low:high + 1]
            change = (window & (current == 0) & allowed) if click.positive else (~window & (current == value))
            region = self._region(change, placed, placed.slice - low)
            grow_low = region is not None and low > 0 and region[0].any()
            grow_high = region is not None and high < count - 1 and region[-1].any()
            if not (grow_low or grow_high):
                break
            low = max(0, low - GROW_SLICES) if grow_low else low
            high = min(count - 1, high + GROW_SLICES) if grow_high else high
        clicked_lung = None if click.positive else canonical == value  # one pass, for every negative rule
        if region is not None and clicked_lung is not None:
            region = self._limit_negative(region, clicked_lung, placed, low, high)
        contrast = peel = None
        if clicked_lung is not None and (self.image_contrast or self.rim_peel):
            seed = (placed.slice, placed.row, placed.col)
            if self.rim_peel:
                peel = rim_region(clicked_lung, seed, self.spacing, image=self.prepared.slices, spread=self.spread)
            if self.image_contrast:  # on the rim only where the peel declines (contrast_region.py)
                contrast = negative_region(self.prepared.slices, clicked_lung, seed, self.spacing, self.spread,
                                           on_rim=peel is None)
        fallback = region is None and contrast is None and peel is None
        view = canonical[low:high + 1]
        if across and (region is None or self._borders_other_lung_more(region, view, value,
                                                                 self.refiner.labels[other_name])):
            self.clicks.pop()
            return out, ClickOutcome(lung, True, 0, len(predicted), time.perf_counter() - started,
                                     message=refused)
        if fallback:
            region = np.zeros_like(change)
            disk = self._disk(placed, FALLBACK_RADIUS_MM)
            plane = canonical[placed.slice]
            region[placed.slice - low] = disk & ((plane == 0) & allowed if click.positive else plane == value)
        changed = 0
        if region is not None:
            view[region] = value if click.positive else 0
            changed = int(region.sum())
        for extra in (contrast, peel):
            if extra is not None:
                extra &= canonical == value  # what the network's region (or the contrast) has not removed already
                canonical[extra] = 0
                changed += int(extra.sum())
        seconds = time.perf_counter() - started
        verb = "added to" if click.positive else "removed from"
        message = (f"{changed * self.geometry.voxel_volume_ml:.2f} mL {verb} the {lung.replace('_', ' ')} "
                   f"({len(predicted)} slices, {seconds:.2f} s{', local edit' if fallback else ''}"
                   f"{', widened by the image contrast' if contrast is not None else ''}"
                   f"{', rim peeled' if peel is not None else ''})")
        return out, ClickOutcome(lung, click.positive, changed, len(predicted), seconds, fallback, message,
                                 contrast is not None, peel is not None)

    def _limit_negative(self, region: np.ndarray, clicked_lung: np.ndarray, placed: _Placed, low: int,
                        high: int) -> np.ndarray | None:
        """The network's region of a negative click (window ``low``..``high``) cut to about the click's depth
        and, from the rim, to the rim peel's reach (contrast_region.py), or None when nothing is left."""
        window, seed = clicked_lung[low:high + 1], (placed.slice - low, placed.row, placed.col)
        if self.depth_limit:
            region = self._region(within_click_depth(region, window, seed, self.spacing), placed, placed.slice - low)
        if region is not None and self.rim_reach:
            lung_mm3 = float(clicked_lung.sum()) * float(np.prod(self.spacing))
            region = self._region(within_rim_reach(region, window, seed, self.spacing, lung_mm3), placed,
                                  placed.slice - low)
        return region

    def _disk(self, placed: _Placed, radius_mm: float) -> np.ndarray:
        rows, cols = self.prepared.slices.shape[1:]
        rr, cc = np.ogrid[:rows, :cols]
        return ((rr - placed.row) ** 2 + (cc - placed.col) ** 2) * self.pixel_mm ** 2 <= radius_mm ** 2

    def _region(self, change: np.ndarray, placed: _Placed, local_slice: int) -> np.ndarray | None:
        """The 3D component of ``change`` at the click (or nearest to it within SNAP_RADIUS_MM), or None."""
        plane = change[local_slice]
        if not plane.any():
            return None
        if plane[placed.row, placed.col]:
            seed = (placed.row, placed.col)
        else:
            near = self._disk(placed, SNAP_RADIUS_MM) & plane
            if not near.any():
                return None
            found = np.argwhere(near)
            seed = tuple(found[np.argmin(((found - [placed.row, placed.col]) ** 2).sum(axis=1))])
        components, _ = ndimage.label(change)
        return components == components[(local_slice, *seed)]
