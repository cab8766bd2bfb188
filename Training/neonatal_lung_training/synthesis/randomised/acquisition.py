"""The scanner side of a domain-randomised case: the acquisition grid and the artefacts on it.

The grid (``draw_grid``) decides orientation (axial, coronal or sagittal stack), voxel size (in-plane
0.5-4 mm, possibly non-square; slices 0.5-6 mm), field of view (cropping body, arms, neck, abdomen or
even the lungs), an oblique rotation and axis flips. The chest is generated on an axis-aligned
*canonical* grid that is the same lattice as the acquisition grid (same spacings, permuted), rotated by
the oblique angle: the arrays only need a transpose and flips to become the acquired volume, so image and
label stay voxel-exact and right/left in patient space holds by construction (the direction matrix says
where each axis points).

Artefacts (``apply_artefacts``) work on the acquired array, index axis 0 being the slice axis: extra
through-plane blur, in-plane partial volume, smooth bias, receive-coil fall-off, breathing blur,
phase-encoding ghosts, radial undersampling streaks (UTE), Rician or Gaussian noise, gamma and a global
scale. Wrap-around (fold-over along
the phase-encoding axis) and thick slices (averaging of thin sub-slices) happen in ``generator.py``,
where the anatomy beyond the field of view and inside the slab is still at hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..anatomy.procedural import smooth_field
from ..neonatal.mr_artefacts import _shifted_sum, radial_streaks
from .ranges import ORIENTATIONS, DomainRanges

# Output axis (i, j, k) -> patient axis (0 x, 1 y, 2 z) and the conventional sign, per orientation.
_AXES = {"axial": ((0, 1.0), (1, 1.0), (2, 1.0)),
         "coronal": ((0, 1.0), (2, -1.0), (1, 1.0)),
         "sagittal": ((1, 1.0), (2, -1.0), (0, 1.0))}


def log_uniform(rng: np.random.Generator, interval: tuple[float, float]) -> float:
    """Uniform in log space: sizes spanning orders of magnitude get every octave equally often."""
    lo, hi = interval
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def rotation(angles_deg: np.ndarray) -> np.ndarray:
    """Rotation about x, then y, then z by the given angles (degrees)."""
    ax, ay, az = np.radians(angles_deg)
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass(frozen=True)
class Grid:
    """The acquisition grid and how it relates to the canonical (patient-axis-aligned) grid."""

    orientation: str
    axes: tuple[int, int, int]        # patient/canonical axis of output index axes i, j, k
    signs: tuple[float, float, float]  # +1 or -1: whether the output axis runs along or against it
    size: tuple[int, int, int]        # output (i, j, k) voxels
    spacing: tuple[float, float, float]  # output (i, j, k) mm
    oblique: np.ndarray               # (3, 3) rotation of the grid in the patient
    centre: np.ndarray                # FOV centre, canonical mm
    phase_axis: int                   # output index axis (0 i or 1 j) of phase encoding
    wrap_rel: float = 0.0             # folded-in share of the phase-encoding FOV on each side (0: none)

    @property
    def permutation(self) -> np.ndarray:
        """Signed permutation: column a is the canonical direction of output axis a."""
        p = np.zeros((3, 3))
        for a, (c, s) in enumerate(zip(self.axes, self.signs)):
            p[c, a] = s
        return p

    @property
    def direction(self) -> np.ndarray:
        return self.oblique @ self.permutation


def draw_grid(rng: np.random.Generator, ranges: DomainRanges, body_half: np.ndarray, lung_height: float,
              lung_mid_z: float, orientation: str | None = None) -> tuple[Grid, dict]:
    """Draw orientation, voxel size, FOV and obliqueness for a body of the given size (patient mm).

    ``body_half`` is the half-extent of the body (arms included) along x and y and of the lungs along z.
    Voxel sizes are clipped so the larger in-plane matrix stays within ``in_plane_matrix`` and the volume
    within ``max_slices`` and ``max_voxels``: the voxel size follows the subject's size (about 1 mm for a
    newborn, 2-4 mm for an adult), which keeps every case cheap.
    """
    weights = np.asarray(ranges.orientation_weights, float)
    if orientation is None:
        orientation = ORIENTATIONS[int(rng.choice(3, p=weights / weights.sum()))]
    elif orientation not in ORIENTATIONS:
        raise ValueError(f"unknown orientation {orientation!r}: use one of {', '.join(ORIENTATIONS)}")
    ext = np.array([2.0 * body_half[0] * rng.uniform(*ranges.fov_lr_rel),
                    2.0 * body_half[1] * rng.uniform(*ranges.fov_ap_rel),
                    lung_height * rng.uniform(*ranges.fov_si_rel)])
    slack = ext[2] - lung_height
    centre_rel = float(rng.uniform(*ranges.fov_si_centre_rel))
    shift = rng.uniform(*ranges.fov_shift_rel, 2)
    centre = np.array([shift[0] * ext[0], shift[1] * ext[1], lung_mid_z + centre_rel * max(slack, 0.0) / 2.0])
    axes = list(_AXES[orientation])
    swap = bool(rng.random() < ranges.swap_in_plane_probability)
    if swap:
        axes[0], axes[1] = axes[1], axes[0]
    flips = rng.random(3) < ranges.axis_flip_probability
    signs = tuple(float(-s if f else s) for (_, s), f in zip(axes, flips))
    axis_ids = tuple(int(c) for c, _ in axes)
    # Phase encoding along one in-plane axis; with wrap-around the FOV along it is narrower than the
    # body, so the parts outside fold in from the other side (as when a technologist shrinks it).
    phase_axis = int(rng.integers(0, 2))
    wrap = bool(rng.random() < ranges.wrap_probability)
    wrap_rel = float(rng.uniform(*ranges.wrap_rel)) if wrap else 0.0
    shrink = float(rng.uniform(*ranges.wrap_fov_rel)) if wrap else 1.0
    if wrap and axis_ids[phase_axis] < 2:
        # Cranio-caudally the body always runs on beyond the FOV (neck, abdomen), so phase encoding
        # along z folds anatomy in without narrowing it; in-plane the FOV must be narrower than the body.
        c = axis_ids[phase_axis]
        ext[c] = min(ext[c], 2.0 * body_half[c] * shrink)
    # Voxel sizes.
    base = log_uniform(rng, ranges.in_plane_mm_log)
    ratio = float(rng.uniform(*ranges.in_plane_anisotropy))
    in_plane = [base, base * ratio] if rng.random() < 0.5 else [base * ratio, base]
    largest = max(ext[axis_ids[0]], ext[axis_ids[1]])
    lo_mm, hi_mm = ranges.in_plane_mm_log
    m_lo, m_hi = ranges.in_plane_matrix
    floor = min(max(lo_mm, largest / m_hi), hi_mm)      # the documented range wins over the matrix cap
    in_plane = [float(np.clip(s, floor, max(floor, min(hi_mm, largest / m_lo)))) for s in in_plane]
    sizes_ij = [max(8, int(round(ext[axis_ids[a]] / in_plane[a]))) for a in range(2)]
    thickness = log_uniform(rng, ranges.slice_thickness_mm_log)
    ext_k = ext[axis_ids[2]]
    t_lo, t_hi = ranges.slice_thickness_mm_log
    need = max(ext_k / ranges.max_slices, ext_k * sizes_ij[0] * sizes_ij[1] / ranges.max_voxels)
    if need > t_hi:           # too many in-plane voxels even at the thickest slices: coarsen in-plane
        factor = math.sqrt(need / t_hi)
        in_plane = [min(hi_mm, s * factor) for s in in_plane]
        sizes_ij = [max(8, int(round(ext[axis_ids[a]] / in_plane[a]))) for a in range(2)]
        need = max(ext_k / ranges.max_slices, ext_k * sizes_ij[0] * sizes_ij[1] / ranges.max_voxels)
    thickness = float(np.clip(thickness, max(t_lo, need), t_hi))
    size_k = max(4, int(round(ext_k / thickness)))
    oblique_angles = np.zeros(3)
    if rng.random() < ranges.oblique_probability:
        oblique_angles = rng.uniform(-ranges.oblique_deg, ranges.oblique_deg, 3)
    grid = Grid(orientation=orientation, axes=axis_ids, signs=signs,
                size=(sizes_ij[0], sizes_ij[1], size_k), spacing=(in_plane[0], in_plane[1], thickness),
                oblique=rotation(oblique_angles), centre=centre, phase_axis=phase_axis, wrap_rel=wrap_rel)
    record = {"orientation": orientation, "in_plane_mm": [round(s, 4) for s in in_plane],
              "slice_thickness_mm": thickness, "size": list(grid.size),
              "fov_mm": [round(float(e), 2) for e in ext], "fov_si_centre_rel": centre_rel,
              "oblique_deg": [float(a) for a in oblique_angles], "axis_flips": [bool(f) for f in flips],
              "swap_in_plane": swap, "phase_axis": grid.phase_axis,
              "wrap": wrap, "wrap_rel": wrap_rel,
              "wrap_fov_rel": shrink if wrap and axis_ids[phase_axis] < 2 else None}
    return grid, record


def apply_artefacts(image: np.ndarray, spacing_kji: np.ndarray, rng: np.random.Generator,
                    ranges: DomainRanges, radial: bool = False) -> tuple[np.ndarray, dict]:
    """The acquisition chain on the acquired (k, j, i) array (axis 0 = slices); returns image, record.

    ``radial``: the contrast is UTE, read out on radial spokes, so undersampling streaks may appear
    (``mr_artefacts.radial_streaks``, per slice: a stack of stars along the slice axis).
    """
    r = ranges
    record: dict = {}
    draws = rng.random(6)
    # Partial volume in-plane, and sometimes a wider slice profile than the slab average gave.
    psf = float(rng.uniform(*r.psf_sigma_vox))
    through = float(rng.uniform(*r.extra_slice_blur_vox)) if draws[0] < r.extra_slice_blur_probability else 0.0
    image = ndimage.gaussian_filter(image, (through, psf, psf), mode="nearest", truncate=3.0)
    record.update({"psf_sigma_vox": psf, "extra_slice_blur_vox": through})
    shape = image.shape
    extent = float(np.max(np.asarray(shape) * spacing_kji))
    # Smooth multiplicative bias (log-normal).
    strength = float(rng.uniform(*r.bias_strength))
    corr = float(rng.uniform(*r.bias_corr_rel)) * extent
    bias = smooth_field(rng, shape, tuple(spacing_kji), corr)
    image *= np.exp(np.float32(strength) * bias)
    record.update({"bias_strength": strength, "bias_corr_mm": corr})
    # Receive-coil elements around the body: sensitivity falls with distance (sum of squares).
    if draws[1] < r.coil_probability:
        n = int(rng.integers(r.coil_elements[0], r.coil_elements[1] + 1))
        depth = float(rng.uniform(*r.coil_depth_rel)) * extent
        floor = float(rng.uniform(*r.coil_floor))
        jj = (np.arange(shape[1]) - (shape[1] - 1) / 2.0)[:, None] * spacing_kji[1]
        ii = (np.arange(shape[2]) - (shape[2] - 1) / 2.0)[None, :] * spacing_kji[2]
        half_j, half_i = shape[1] * spacing_kji[1] / 2.0, shape[2] * spacing_kji[2] / 2.0
        total = np.zeros((shape[1], shape[2]))
        for angle in rng.uniform(0, 2 * math.pi) + np.arange(n) * 2 * math.pi / n:
            cj, ci = 1.1 * half_j * math.sin(angle), 1.1 * half_i * math.cos(angle)
            total += 1.0 / (1.0 + ((jj - cj) ** 2 + (ii - ci) ** 2) / depth ** 2) ** 2
        sens = np.sqrt(total)
        sens = floor + (1.0 - floor) * sens / sens.max()
        image *= sens.astype(np.float32)[None]
        record.update({"coil_elements": n, "coil_depth_mm": depth, "coil_floor": floor})
    # Breathing: the chest moves along a random line in the (slice, row) plane during the acquisition.
    if draws[2] < r.breathing_probability:
        amplitude = float(rng.uniform(*r.breathing_mm))
        angle = rng.uniform(0, math.pi)
        taps: dict[tuple[int, int], float] = {}
        samples = 8
        for d in amplitude * np.sin(2 * math.pi * (np.arange(samples) + rng.random()) / samples):
            dk, dj = d * math.cos(angle) / spacing_kji[0], d * math.sin(angle) / spacing_kji[1]
            key = (int(round(dk)), int(round(dj)))
            taps[key] = taps.get(key, 0.0) + 1.0 / samples
        image = _shifted_sum(image, taps)
        record["breathing_mm"] = amplitude
    # Motion ghosts: attenuated copies shifted along the phase-encoding axis.
    if draws[3] < r.ghost_probability:
        g = float(rng.uniform(*r.ghost_strength))
        axis = int(rng.integers(1, 3))
        step = shape[axis] // int(rng.integers(2, 5))
        image = image + np.float32(g / 2) * (np.roll(image, step, axis) + np.roll(image, -step, axis))
        record.update({"ghost_strength": g, "ghost_axis": axis})
    if radial and draws[5] < r.ute_radial_probability:
        image, drawn = radial_streaks(image, spacing_kji, np.random.default_rng(rng.integers(2**63)))
        record.update(drawn)
    # Noise: Rician (magnitude of complex Gaussian) or Gaussian.
    bright = max(float(np.percentile(image[::2, ::3, ::3], 99.5)), 1.0)
    sigma = np.float32(float(rng.uniform(*r.noise_rel)) * bright)
    rician = bool(draws[4] < r.rician_probability)
    real = image + sigma * rng.standard_normal(shape, dtype=np.float32)
    if rician:
        imaginary = sigma * rng.standard_normal(shape, dtype=np.float32)
        image = np.sqrt(real * real + imaginary * imaginary)
    else:
        image = np.maximum(real, 0.0)
    record.update({"noise_rel": float(sigma) / bright, "rician": rician})
    gamma = float(math.exp(rng.uniform(*r.log_gamma)))
    top = max(float(np.percentile(image[::2, ::3, ::3], 99.9)), 1.0)
    image = np.float32(top) * (np.maximum(image, 0.0) / np.float32(top)) ** np.float32(gamma)
    scale = float(rng.uniform(*r.intensity_scale))
    image *= np.float32(scale)
    record.update({"gamma": gamma, "intensity_scale": scale})
    return image.astype(np.float32, copy=False), record
