"""MR acquisition effects on a painted synthetic image: what the scanner does to a newborn's chest.

Applied in the order a real acquisition would produce them, each with its own random strength:

1. receive-coil bias: smooth multiplicative field;
2. breathing blur: the chest moves along a line between cranio-caudal (S-I) and antero-posterior (A-P)
   during a free-breathing acquisition; averaging over a sinusoidal breathing cycle blurs along that
   line, most near the diaphragm;
3. radial streaks: UTE is read out on radial spokes; with fewer spokes than Nyquist asks, the outer
   k-space is sampled only near the spokes and streaks fan out from bright structures. Simulated slice by
   slice (a stack-of-stars approximation): outside the fully sampled radius only k-space points within
   half a sample of a spoke are kept, with density compensation;
4. lower acquired resolution: the image is acquired on a coarser grid (random in-plane factor and slice
   thickness), then interpolated back to the output grid, as scanners and resampling do;
5. partial volume: a small Gaussian point-spread function (always);
6. Rician noise: magnitude of complex Gaussian noise (always), then a global intensity scale.

With ``artefacts=False`` only steps 5 and 6 run, giving a clean reference image of the same anatomy.
Radial streaks only occur with the radial contrasts (``"ute"``, ``"randomized"``), not with the
Cartesian ``"t2_haste"``.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft
from scipy import ndimage

from NeonatalLungSegLib.geometry import Geometry

from ..anatomy.procedural import smooth_field

BIAS_STRENGTH = (0.1, 0.3)           # bias within 1 +- strength
BIAS_CORR_MM = (50.0, 90.0)
MOTION_PROBABILITY = 0.5
MOTION_AMPLITUDE_MM = (0.5, 3.0)     # peak displacement of the breathing cycle
MOTION_ANGLE_DEGREES = (0.0, 40.0)   # tilt of the motion line from S-I towards A-P
RADIAL_PROBABILITY = 0.5
RADIAL_UNDERSAMPLING = (1.3, 3.0)    # Nyquist spoke count divided by the acquired spoke count
LOW_RES_PROBABILITY = 0.5
LOW_RES_SLICE_FACTOR = (1.0, 2.5)    # acquired slice thickness / output slice spacing
LOW_RES_IN_PLANE_FACTOR = (1.0, 1.6)
PSF_SIGMA_VOXELS = (0.5, 0.8)
NOISE_FRACTION = (0.01, 0.04)        # noise sigma relative to the bright end of the image
GLOBAL_SCALE = (0.85, 1.15)
RADIAL_CONTRASTS = ("ute", "randomized")
_MOTION_SAMPLES = 8


def _shifted_sum(image: np.ndarray, taps: dict[tuple[int, int], float]) -> np.ndarray:
    """Sum of ``weight * image`` shifted by integer (k, j) offsets, edges repeated."""
    reach_k = max(abs(k) for k, _ in taps)
    reach_j = max(abs(j) for _, j in taps)
    padded = np.pad(image, ((reach_k, reach_k), (reach_j, reach_j), (0, 0)), mode="edge")
    n_k, n_j = image.shape[:2]
    out = np.zeros_like(image)
    for (dk, dj), weight in taps.items():
        out += np.float32(weight) * padded[reach_k + dk:reach_k + dk + n_k, reach_j + dj:reach_j + dj + n_j]
    return out


def breathing_blur(image: np.ndarray, spacing: np.ndarray, rng: np.random.Generator) -> dict[str, float]:
    """Blur along a random S-I/A-P line by a sinusoidal breathing cycle, in place; returns its record."""
    amplitude = rng.uniform(*MOTION_AMPLITUDE_MM)
    angle = math.radians(rng.uniform(*MOTION_ANGLE_DEGREES)) * float(rng.choice([-1.0, 1.0]))
    phases = (np.arange(_MOTION_SAMPLES) + rng.random()) / _MOTION_SAMPLES
    taps: dict[tuple[int, int], float] = {}
    for displacement in amplitude * np.sin(2.0 * np.pi * phases):
        dk = displacement * math.cos(angle) / spacing[0]
        dj = displacement * math.sin(angle) / spacing[1]
        k0, j0 = math.floor(dk), math.floor(dj)
        fk, fj = dk - k0, dj - j0
        for ok, wk in ((0, 1.0 - fk), (1, fk)):         # bilinear splat of the fractional shift
            for oj, wj in ((0, 1.0 - fj), (1, fj)):
                key = (k0 + ok, j0 + oj)
                taps[key] = taps.get(key, 0.0) + wk * wj / _MOTION_SAMPLES
    blurred = _shifted_sum(image, taps)
    # The diaphragm moves most: full blur at the bottom of the volume, 40 % at the top.
    n_k = image.shape[0]
    mix = np.linspace(1.0, 0.4, n_k, dtype=np.float32)[:, None, None]
    image += mix * (blurred - image)
    return {"motion_mm": float(amplitude), "motion_angle_degrees": math.degrees(angle)}


def radial_streaks(image: np.ndarray, spacing: np.ndarray,
                   rng: np.random.Generator) -> tuple[np.ndarray, dict[str, float]]:
    """Undersampled radial readout of each axial slice (see the module docstring)."""
    undersampling = rng.uniform(*RADIAL_UNDERSAMPLING)
    _, n_j, n_i = image.shape
    fov = max(n_j * spacing[1], n_i * spacing[2])
    ky = (scipy.fft.fftfreq(n_j, d=spacing[1]) * fov).astype(np.float32)[:, None]   # cycles per FOV
    kx = (scipy.fft.fftfreq(n_i, d=spacing[2]) * fov).astype(np.float32)[None, :]
    radius = np.hypot(ky, kx)
    spokes = max(8, int(round(math.pi * max(n_j, n_i) / 2.0 / undersampling)))
    step = math.pi / spokes                      # angle between neighbouring spokes (each spans 180 deg)
    phase = np.mod(np.arctan2(ky, kx) - np.float32(rng.uniform(0.0, step)), np.float32(step))
    distance = radius * np.minimum(phase, np.float32(step) - phase)     # to the nearest spoke, samples
    nyquist = spokes / math.pi
    weight = np.where(radius <= nyquist, np.float32(1.0),
                      np.where(distance < 0.5, radius * np.float32(step), np.float32(0.0)))
    spectrum = scipy.fft.fft2(image, axes=(1, 2), workers=2)
    spectrum *= weight.astype(np.complex64)
    out = np.abs(scipy.fft.ifft2(spectrum, axes=(1, 2), workers=2)).astype(np.float32)
    return out, {"radial_undersampling": float(undersampling), "radial_spokes": float(spokes)}


def low_resolution(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, float]]:
    """Acquire on a coarser grid (thicker slices, larger in-plane voxels), then interpolate back."""
    slice_factor = rng.uniform(*LOW_RES_SLICE_FACTOR)
    plane_factor = rng.uniform(*LOW_RES_IN_PLANE_FACTOR)
    factors = np.array([slice_factor, plane_factor, plane_factor])
    # Slice profile / coarser point-spread function: FWHM of about one acquired voxel.
    sigma = 0.42 * np.sqrt(np.maximum(factors ** 2 - 1.0, 0.0))
    blurred = ndimage.gaussian_filter(image, sigma, mode="nearest")
    shape = np.array(image.shape)
    low_shape = np.maximum(np.round(shape / factors), 4).astype(int)
    low = ndimage.zoom(blurred, low_shape / shape, order=1, mode="nearest", grid_mode=True)
    back = ndimage.zoom(low, shape / np.array(low.shape), order=1, mode="nearest", grid_mode=True)
    if back.shape != image.shape:            # zoom rounds the output shape; pad or crop a voxel
        back = np.pad(back, [(0, max(n - b, 0)) for n, b in zip(image.shape, back.shape)], mode="edge")
        back = back[:image.shape[0], :image.shape[1], :image.shape[2]]
    return back.astype(np.float32, copy=False), {"slice_factor": float(slice_factor),
                                                  "in_plane_factor": float(plane_factor)}


def acquire(image: np.ndarray, geometry: Geometry, rng: np.random.Generator, contrast: str,
            artefacts: bool) -> tuple[np.ndarray, dict[str, float]]:
    """Apply the acquisition chain to a painted image; returns float32 magnitude and what was drawn.

    Each optional effect draws from its own generator, seeded from ``rng`` whether or not the effect
    runs, so switching ``artefacts`` off leaves the partial-volume blur and the noise of the same seed
    unchanged (only the artefacts differ).
    """
    shape = image.shape
    spacing = np.asarray(geometry.spacing[::-1], float)
    image = image.astype(np.float32, copy=True)
    record: dict[str, float] = {}
    effects = rng.random(3)
    bias_rng, motion_rng, radial_rng, resolution_rng = (np.random.default_rng(int(s))
                                                        for s in rng.integers(0, 2**63, size=4))
    if artefacts:
        strength = bias_rng.uniform(*BIAS_STRENGTH)
        bias = smooth_field(bias_rng, shape, tuple(spacing), bias_rng.uniform(*BIAS_CORR_MM))
        image *= 1.0 + np.float32(strength) * np.tanh(bias)
        record["bias_strength"] = float(strength)
        if effects[0] < MOTION_PROBABILITY:
            record.update(breathing_blur(image, spacing, motion_rng))
        if contrast in RADIAL_CONTRASTS and effects[1] < RADIAL_PROBABILITY:
            image, drawn = radial_streaks(image, spacing, radial_rng)
            record.update(drawn)
        if effects[2] < LOW_RES_PROBABILITY:
            image, drawn = low_resolution(image, resolution_rng)
            record.update(drawn)
    image = ndimage.gaussian_filter(image, sigma=rng.uniform(*PSF_SIGMA_VOXELS), mode="nearest")

    # Rician noise: magnitude of a complex signal with Gaussian noise in both channels.
    bright = float(np.percentile(image[::3, ::3, ::3], 99.5)) if image.size else 1.0
    sigma = np.float32(rng.uniform(*NOISE_FRACTION) * max(bright, 1.0))
    real = image + sigma * rng.standard_normal(shape, dtype=np.float32)
    imaginary = sigma * rng.standard_normal(shape, dtype=np.float32)
    image = np.sqrt(real * real + imaginary * imaginary)
    image *= np.float32(rng.uniform(*GLOBAL_SCALE))
    record["noise_sigma"] = float(sigma)
    return image.astype(np.float32, copy=False), record
