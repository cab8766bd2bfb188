"""``generate_random_case``: one domain-randomised chest MRI (newborn to adult) with its lung label.

Flow of one case (each stream its own ``numpy`` generator from one ``SeedSequence``, so a seed gives
bit-identical volumes):

```
subject stream   ─► lung volume 40 mL-6 L (sets the scale), chest shape, tilt, habitus, arms, neck, gas
grid stream      ─► orientation, voxel size, FOV (crop), oblique rotation, flips, phase-encoding axis
anatomy stream   ─► procedural chest (anatomy.py) on the canonical grid, + body.py additions,
                    lung topology and vessels (lung_topology.py), bronchi cut out  ─► LABEL
pathology stream ─► BPD-like patterns inside the label (pathology.py), sometimes
contrast stream  ─► per-class random means and spreads (synthesis/contrast.py)
scanner stream   ─► slab average (thick slices), wrap-around, then bias, coils, motion, noise, gamma
```

The canonical grid is the acquisition lattice itself with its axes along the patient's x, y, z and the
patient rotated by the grid's oblique angle, so the acquired arrays are a transpose and flips away and
the direction matrix carries the orientation: the label is voxel-exact and right/left in patient space
by construction. Thick slices are generated as thin sub-slices and averaged (a box slice profile); where
the generation would exceed ``GENERATION_VOXELS`` the in-plane grid is generated coarser and
interpolated, which bounds the cost of a case whatever its grid.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from scipy import ndimage

from NeonatalLungSegLib.geometry import Geometry, array_to_image

from ..anatomy.procedural import _TEMPLATE_LUNGS_ML, procedural_tissue
from ..anatomy.lung_topology import finalize_lungs
from ..anatomy.pathology import SEVERITY_RANGE, add_bpd_patterns
from ..neonatal.generator import SyntheticCase
from ..anatomy.variants import REFERENCE_LUNGS_ML, Pose, draw_from
from .acquisition import Grid, apply_artefacts, draw_grid, log_uniform, rotation
from .body import (BODY_HALF_DEPTH, BODY_HALF_WIDTH, LUNG_APEX, LUNG_HEIGHT, add_abdomen, add_body,
                   carve_bronchi, template_coordinates)
from .contrast import paint
from .ranges import CONTRAST_MODES, DEFAULT_RANGES, FAMILIES, ORIENTATIONS, DomainRanges

GENERATION_VOXELS = 1_100_000     # performance bound of the anatomy grid (not a randomisation axis)
MAX_SUB_SLICES = 4
ANATOMY = "domain-random"
# Labelled lung / template lung at full coverage (bronchi cut out, thin-slab partial volume, the added
# neck), measured over seeds: the scale is corrected by it so the label's volume follows the target.
LABELLED_FRACTION = 0.88
_DOMAIN_TAG = 0xD12                # keeps these seeds apart from generate_case's
_TEMPLATE_SCALE = (REFERENCE_LUNGS_ML / _TEMPLATE_LUNGS_ML) ** (1.0 / 3.0)
# Values a caller may pin instead of drawing (besides any DomainRanges field).
PINNABLE = ("orientation", "contrast_mode", "total_lung_ml", "arms", "touching_lungs", "oblique")


def _seed_streams(seed: int, family: str) -> list[np.random.Generator]:
    root = np.random.SeedSequence([int(seed), _DOMAIN_TAG], spawn_key=(FAMILIES.index(family),))
    return [np.random.default_rng(s) for s in root.spawn(6)]


def _split_overrides(overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    fields = {f.name for f in dataclasses.fields(DomainRanges)}
    unknown = sorted(set(overrides) - fields - set(PINNABLE))
    if unknown:
        raise ValueError(f"unknown override(s) {', '.join(unknown)}: use DomainRanges fields or "
                         f"{', '.join(PINNABLE)}")
    return ({k: v for k, v in overrides.items() if k in fields},
            {k: v for k, v in overrides.items() if k in PINNABLE})


def draw_subject(rng: np.random.Generator, r: DomainRanges, pins: dict[str, Any]) -> dict[str, Any]:
    """Size, chest shape, tilt, habitus, arms, neck and abdominal contents of one subject."""
    lung_ml = float(pins.get("total_lung_ml") or log_uniform(rng, r.total_lung_ml_log))
    scale = (lung_ml / (REFERENCE_LUNGS_ML * LABELLED_FRACTION)) ** (1 / 3)
    d: dict[str, Any] = {"total_lung_ml": lung_ml, "scale": scale}
    d["aspect"] = draw_from(rng, r.aspect)
    d["elongation"] = draw_from(rng, r.elongation)
    d["shear"] = [draw_from(rng, r.shear) * float(rng.choice([-1.0, 1.0])) for _ in range(3)]
    d["elastic_rel"] = draw_from(rng, r.elastic_rel)
    d["elastic_corr_rel"] = draw_from(rng, r.elastic_corr_rel)
    d["tilt_deg"] = [float(rng.uniform(-m, m)) for m in r.rotation_deg]
    touching = rng.random() < r.touching_probability
    d["touching_lungs"] = bool(pins["touching_lungs"]) if pins.get("touching_lungs") is not None else bool(touching)
    d["extra_fat_rel"] = float(rng.uniform(*r.extra_fat_rel)) if rng.random() < r.extra_fat_probability else 0.0
    arms = rng.random() < r.arms_probability
    d["arms"] = bool(pins["arms"]) if pins.get("arms") is not None else bool(arms)
    d["arm_radius_rel"] = float(rng.uniform(*r.arm_radius_rel))
    d["arm_gap_rel"] = float(rng.uniform(*r.arm_gap_rel))
    d["arm_ap_offset_rel"] = float(rng.uniform(*r.arm_ap_offset_rel))
    d["neck_radius_rel"] = float(rng.uniform(*r.neck_radius_rel))
    d["shoulder_rel"] = float(rng.uniform(*r.shoulder_rel))
    gas = rng.random(3)
    d["stomach_gas_fraction"] = float(rng.uniform(*r.stomach_gas_fraction)) \
        if gas[0] < r.stomach_gas_probability else 0.0
    d["gas_rises"] = "anterior" if gas[2] < r.gas_rises_anterior_probability else "superior"
    d["bowel_gas_fraction"] = float(rng.uniform(*r.bowel_gas_fraction)) \
        if gas[1] < r.bowel_gas_probability else 0.0
    d["bowel_fluid_fraction"] = float(rng.uniform(*r.bowel_fluid_fraction))
    d["spleen_size_rel"] = float(rng.uniform(*r.spleen_size_rel))
    d["bronchus_length_mm"] = float(rng.uniform(*r.bronchus_length_mm))
    d["bpd_severity"] = float(rng.uniform(*SEVERITY_RANGE)) if rng.random() < r.bpd_probability else 0.0
    return d


def _shape_matrix(d: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Template-to-patient linear map (tilt, shear, anisotropy, scale) and its per-axis stretch."""
    log_a, log_e = math.log(d["aspect"]), math.log(d["elongation"])
    factors = np.exp([0.5 * log_a - log_e / 3.0, -0.5 * log_a - log_e / 3.0, 2.0 * log_e / 3.0])
    s = d["shear"]
    shear = np.array([[1.0, s[0], s[1]], [0.0, 1.0, s[2]], [0.0, 0.0, 1.0]])
    forward = rotation(np.asarray(d["tilt_deg"])) @ shear @ np.diag(factors * d["scale"] * _TEMPLATE_SCALE)
    return forward, factors


def _block_mean(array: np.ndarray, axis: int, n: int) -> np.ndarray:
    """Average consecutive groups of ``n`` samples along ``axis`` (a box slice profile)."""
    if n == 1:
        return array
    moved = np.moveaxis(array, axis, 0)
    out = moved.reshape(moved.shape[0] // n, n, *moved.shape[1:]).mean(axis=1, dtype=np.float32)
    return np.moveaxis(out, 0, axis)


def _fold(array: np.ndarray, axis: int, margin: int) -> np.ndarray:
    """Wrap-around: signal beyond the phase-encoding FOV folds in from the opposite side."""
    if margin == 0:
        return array
    moved = np.moveaxis(array, axis, 0)
    core = moved[margin:-margin].copy()
    core[-margin:] += moved[:margin]
    core[:margin] += moved[-margin:]
    return np.moveaxis(core, 0, axis)


def _crop(array: np.ndarray, axis: int, margin: int) -> np.ndarray:
    if margin == 0:
        return array
    index = [slice(None)] * array.ndim
    index[axis] = slice(margin, array.shape[axis] - margin)
    return array[tuple(index)]


def _fit(array: np.ndarray, shape: list[int]) -> np.ndarray:
    """Pad (edge) or crop to ``shape``: zoom rounds output sizes and may miss by a voxel."""
    if list(array.shape) == list(shape):
        return array
    array = np.pad(array, [(0, max(n - a, 0)) for n, a in zip(shape, array.shape)], mode="edge")
    return array[:shape[0], :shape[1], :shape[2]]


def to_acquired(canonical: np.ndarray, grid: Grid) -> np.ndarray:
    """Canonical (z, y, x) array -> acquired (k, j, i) array: flips and a transpose, nothing else."""
    out = canonical
    for a in range(3):
        if grid.signs[a] < 0:
            out = np.flip(out, axis=2 - grid.axes[a])
    return np.ascontiguousarray(np.transpose(out, (2 - grid.axes[2], 2 - grid.axes[1], 2 - grid.axes[0])))


def acquired_geometry(grid: Grid, centre_canonical: np.ndarray, translation: np.ndarray) -> Geometry:
    """Geometry of the acquired volume: voxel 0 sits at the -sign end of every canonical axis."""
    q0 = centre_canonical.astype(float).copy()
    for a in range(3):
        q0[grid.axes[a]] -= grid.signs[a] * (grid.size[a] - 1) / 2.0 * grid.spacing[a]
    origin = grid.oblique @ q0 + translation
    return Geometry(tuple(int(n) for n in grid.size), tuple(float(s) for s in grid.spacing),
                    tuple(float(o) for o in origin), tuple(float(v) for v in grid.direction.ravel()))


def generate_random_case(seed: int, family: str = "train", **overrides: Any) -> SyntheticCase:
    """One domain-randomised chest MRI and its lung label (1 right, 2 left), deterministic per seed.

    Args:
        seed: non-negative integer; with ``family`` and ``overrides`` it fixes the case bit for bit.
        family: "train", or "heldout" for chest shapes (aspect, elongation, shear, elastic warp) drawn
            from intervals disjoint from training and from another seed space.
        overrides: any ``DomainRanges`` field (a range or probability, e.g. ``arms_probability=1.0``),
            or a pinned value: ``orientation`` ("axial" | "coronal" | "sagittal"), ``contrast_mode``
            (``ranges.CONTRAST_MODES``), ``total_lung_ml``, ``arms``, ``touching_lungs``, ``oblique``
            (False: no oblique rotation, no flips, no in-plane swap).

    Returns:
        ``SyntheticCase`` with a float32 image and a uint8 label on the same (possibly oblique,
        anisotropic, reoriented) geometry; ``parameters`` records everything drawn.
    """
    return _generate(seed, family, overrides)


def _generate(seed: int, family: str, overrides: dict[str, Any],
              debug: dict[str, Any] | None = None) -> SyntheticCase:
    """The body of ``generate_random_case``; ``debug`` (tests) receives the canonical arrays."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}: use one of {', '.join(FAMILIES)}")
    range_overrides, pins = _split_overrides(dict(overrides))
    ranges = dataclasses.replace(DEFAULT_RANGES.with_family(family), **range_overrides)
    if pins.get("orientation") is not None and pins["orientation"] not in ORIENTATIONS:
        raise ValueError(f"orientation must be one of {', '.join(ORIENTATIONS)}")
    if pins.get("contrast_mode") is not None and pins["contrast_mode"] not in CONTRAST_MODES:
        raise ValueError(f"contrast_mode must be one of {', '.join(CONTRAST_MODES)}")
    if pins.get("oblique") is False:
        ranges = dataclasses.replace(ranges, oblique_probability=0.0, axis_flip_probability=0.0,
                                     swap_in_plane_probability=0.0)
    subject_rng, grid_rng, anatomy_rng, pathology_rng, contrast_rng, scanner_rng = _seed_streams(seed, family)

    subject = draw_subject(subject_rng, ranges, pins)
    forward, factors = _shape_matrix(subject)
    k = subject["scale"] * _TEMPLATE_SCALE
    fat = subject["extra_fat_rel"] * BODY_HALF_WIDTH
    arms = (subject["arm_gap_rel"] + 2.0 * subject["arm_radius_rel"]) * BODY_HALF_WIDTH if subject["arms"] else 0.0
    body_half = np.array([(BODY_HALF_WIDTH + 4.0 + fat + arms) * k * factors[0],
                          (BODY_HALF_DEPTH + 4.0 + fat) * k * factors[1]])
    lung_height = LUNG_HEIGHT * k * factors[2]
    lung_mid = (LUNG_APEX - LUNG_HEIGHT / 2.0) * k * factors[2]
    grid, grid_record = draw_grid(grid_rng, ranges, body_half, lung_height, lung_mid, pins.get("orientation"))
    translation = grid_rng.uniform(-ranges.origin_translation_mm, ranges.origin_translation_mm, 3)
    centre_canonical = grid.oblique.T @ grid.centre

    # Canonical generation grid: canonical axis c carries output axis a = where(axes == c).
    out_of = {c: a for a, c in enumerate(grid.axes)}
    slice_c, phase_c = grid.axes[2], grid.axes[grid.phase_axis]
    n_out = int(np.prod(grid.size))
    in_plane_min = min(grid.spacing[0], grid.spacing[1])
    wanted_sub = int(np.clip(round(grid.spacing[2] / in_plane_min), 1, MAX_SUB_SLICES))
    n_wrap = n_out * (1.0 + 2.0 * grid.wrap_rel)          # wrap-around margins are generated too
    n_sub = max(1, min(wanted_sub, int(GENERATION_VOXELS // max(n_wrap, 1))))
    coarsen = max(1.0, math.sqrt(n_wrap * n_sub / GENERATION_VOXELS))
    wrap = grid.wrap_rel > 0
    gen_size, gen_spacing = [0, 0, 0], [0.0, 0.0, 0.0]
    for c in range(3):
        a = out_of[c]
        n, s = grid.size[a], grid.spacing[a]
        if c == slice_c:
            gen_size[c], gen_spacing[c] = n * n_sub, s / n_sub
        else:
            m = max(4, int(math.ceil(n / coarsen)))
            gen_size[c], gen_spacing[c] = m, n * s / m
    margin = int(round(grid.wrap_rel * gen_size[phase_c])) if wrap else 0
    gen_size[phase_c] += 2 * margin
    origin = tuple(float(centre_canonical[c] - (gen_size[c] - 1) / 2.0 * gen_spacing[c]) for c in range(3))
    gen = Geometry(tuple(gen_size), tuple(gen_spacing), origin, (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))

    # Anatomy: template = inverse(forward) @ oblique @ canonical position.
    matrix = np.linalg.inv(forward) @ grid.oblique
    pose = Pose(matrix=matrix, offset=np.zeros(3), elastic_mm=subject["elastic_rel"] * subject["scale"],
                elastic_corr_mm=subject["elastic_corr_rel"] * subject["scale"], age_weeks=float("nan"),
                lung_ml=subject["total_lung_ml"], scale=subject["scale"], aspect=subject["aspect"],
                elongation=subject["elongation"], shear=tuple(subject["shear"]))
    tissue = procedural_tissue(anatomy_rng, gen, subject["touching_lungs"], pose)
    u, v, w = template_coordinates(gen, matrix / _TEMPLATE_SCALE, np.zeros(3))
    add_body(tissue, u, v, w, subject)
    add_abdomen(tissue, u, v, w, gen, anatomy_rng, subject, subject["scale"] * _TEMPLATE_SCALE,
                ranges.bowel_loop_corr_mm)
    # Vessel trees and BPD patterns are sized in mm for a newborn: hand them the grid in template mm
    # (spacing / scale) so an adult gets hilar vessels and patterns of adult size.
    template_grid = Geometry(gen.size, tuple(s / k for s in gen.spacing), tuple(o / k for o in gen.origin),
                             gen.direction)
    label = finalize_lungs(tissue, template_grid, anatomy_rng, subject["touching_lungs"])
    bronchi = carve_bronchi(tissue, label, u, v, w, subject["bronchus_length_mm"])
    del u, v, w
    if debug is not None:
        debug["canonical_label"] = label.copy()
    bpd = {}
    if subject["bpd_severity"] > 0:
        bpd = add_bpd_patterns(tissue, label, template_grid, pathology_rng, subject["bpd_severity"])
    mode = pins.get("contrast_mode") or CONTRAST_MODES[int(contrast_rng.choice(
        len(CONTRAST_MODES), p=np.array([ranges.contrast_weights[m] for m in CONTRAST_MODES])
        / sum(ranges.contrast_weights[m] for m in CONTRAST_MODES)))]
    image, contrast_record = paint(tissue, gen, contrast_rng, mode, ranges)
    if debug is not None:
        debug.update(canonical_tissue=tissue, canonical_geometry=gen, grid=grid)
    del tissue

    # Slab average, wrap-around, back to the output lattice.
    slice_axis, phase_axis = 2 - slice_c, 2 - phase_c
    exact = n_sub == 1 and coarsen == 1.0
    if wanted_sub > n_sub:
        # Fewer sub-slices than the slab needs (voxel budget): widen the slice profile with a Gaussian
        # of the missing width (FWHM ~ one slice), so thick slices still show through-plane blur.
        sigma = 0.42 * math.sqrt(wanted_sub ** 2 - n_sub ** 2) / wanted_sub * n_sub
        image = ndimage.gaussian_filter1d(image, sigma, axis=slice_axis, mode="nearest", truncate=2.5)
    image = _fold(_block_mean(image, slice_axis, n_sub), phase_axis, margin)
    if exact:
        label = _crop(label, phase_axis, margin)
    else:
        fractions = [_crop(_block_mean((label == side).astype(np.float32), slice_axis, n_sub), phase_axis, margin)
                     for side in (1, 2)]
    if coarsen > 1.0:
        target = [0, 0, 0]
        for c in range(3):
            target[2 - c] = grid.size[out_of[c]]
        zoom = [t / n for t, n in zip(target, image.shape)]
        image = _fit(ndimage.zoom(image, zoom, order=1, mode="nearest", grid_mode=True), target)
        fractions = [_fit(ndimage.zoom(f, zoom, order=1, mode="nearest", grid_mode=True), target)
                     for f in fractions]
    if not exact:
        right, left = fractions
        label = np.where((right >= 0.5) & (right >= left), np.uint8(1),
                         np.where((left >= 0.5) & (left > right), np.uint8(2), np.uint8(0))).astype(np.uint8)
    image = to_acquired(image, grid)
    label = to_acquired(label, grid)
    spacing_kji = np.array(grid.spacing[::-1])
    image, scanner_record = apply_artefacts(image, spacing_kji, scanner_rng, ranges, radial=mode == "ute")
    geometry = acquired_geometry(grid, centre_canonical, translation)

    parameters: dict[str, Any] = {
        "generator": "domain-random", "family": family, **subject, **grid_record,
        "translation_mm": [float(t) for t in translation], "sub_slices": n_sub,
        "sub_slices_wanted": wanted_sub, "in_plane_coarsening": coarsen,
        "direction": [float(x) for x in grid.direction.ravel()], **bronchi, **bpd, **contrast_record,
        **scanner_record, "lung_ml_right": float((label == 1).sum() * np.prod(grid.spacing) / 1000.0),
        "lung_ml_left": float((label == 2).sum() * np.prod(grid.spacing) / 1000.0)}
    return SyntheticCase(array_to_image(image, geometry), array_to_image(label, geometry), int(seed), ANATOMY,
                         mode, family, parameters)

