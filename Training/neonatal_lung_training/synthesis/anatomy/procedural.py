"""Procedural anatomy of a newborn chest, as a map of tissue classes on the output voxel grid.

Shapes are written as implicit functions of *template* coordinates (mm, LPS, origin at the centre of the
chest). Every output voxel is pulled back into the template through one random smooth warp (scale,
rotation, elastic displacement), so the whole chest deforms coherently and only cheap element-wise NumPy
runs on the full grid. Contrast is painted later from the tissue classes (``synthetic.py``), which keeps
anatomy and MR physics independent and lets the atlas anatomy share the same painter.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from NeonatalLungSegLib.geometry import Geometry

from .variants import REFERENCE_LUNGS_ML, Pose, draw_pose


class Tissue(IntEnum):
    """Tissue classes; the values index the contrast look-up tables."""

    AIR = 0
    FAT = 1
    MUSCLE = 2
    RIB = 3
    LUNG_RIGHT = 4
    LUNG_LEFT = 5
    VESSEL = 6          # pulmonary vessels: inside the lung label
    MYOCARDIUM = 7
    BLOOD = 8           # cardiac chambers and great vessels
    MEDIASTINUM = 9
    THYMUS = 10
    VERTEBRA = 11
    SPINAL_CANAL = 12
    LIVER = 13
    ABDOMEN = 14
    STOMACH = 15
    AIRWAY = 16         # trachea and main bronchi: air, never lung
    ATELECTASIS = 17    # BPD-like dense (consolidated / atelectatic) lung: inside the lung label
    CYST = 18           # BPD-like cystic lucency (air-like): inside the lung label
    INTERSTITIAL = 19   # BPD-like interstitial streaks (fibrosis, septal thickening): inside the label


N_TISSUES = len(Tissue)
_TEMPLATE_LUNGS_ML = 116.5        # mean total lung volume of the procedural template at scale 1 (measured)


# ----------------------------------------------------------------------------------------------------
# Random smooth fields and warps shared by both anatomies and the contrast painter
# ----------------------------------------------------------------------------------------------------

def axis_coordinates(geometry: Geometry) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LPS x, y, z (mm) of the voxel centres along i, j, k, broadcastable to the (k, j, i) array.

    Only valid for axis-aligned grids, which is what the generator builds; going through the geometry
    keeps the origin and spacing conventions in one place.
    """
    k_n, j_n, i_n = geometry.array_shape
    x = geometry.array_index_to_lps(np.stack([np.zeros(i_n), np.zeros(i_n), np.arange(i_n)], 1))[:, 0]
    y = geometry.array_index_to_lps(np.stack([np.zeros(j_n), np.arange(j_n), np.zeros(j_n)], 1))[:, 1]
    z = geometry.array_index_to_lps(np.stack([np.arange(k_n), np.zeros(k_n), np.zeros(k_n)], 1))[:, 2]
    return (x.astype(np.float32)[None, None, :], y.astype(np.float32)[None, :, None],
            z.astype(np.float32)[:, None, None])


def _basis(n: int, extent_mm: float, corr_mm: float) -> np.ndarray:
    """(n, c) Gaussian bumps with unit-norm rows, so a field of N(0, 1) weights has unit variance."""
    count = max(2, int(np.ceil(extent_mm / corr_mm)) + 2)
    centres = np.linspace(-corr_mm, extent_mm + corr_mm, count)
    positions = np.linspace(0.0, extent_mm, n)
    weights = np.exp(-0.5 * ((positions[:, None] - centres[None, :]) / (0.8 * corr_mm)) ** 2)
    return (weights / np.linalg.norm(weights, axis=1, keepdims=True)).astype(np.float32)


def smooth_field(rng: np.random.Generator, shape: tuple[int, int, int],
                 spacing: tuple[float, float, float], corr_mm: float) -> np.ndarray:
    """Unit-variance random field with correlation length ``corr_mm`` on a (k, j, i) grid.

    Built as a separable sum of Gaussian bumps (three small matrix products), which is an order of
    magnitude faster than filtering or spline-upsampling a noise volume and is smooth by construction.
    """
    bases = [_basis(n, max((n - 1) * s, 1e-3), corr_mm) for n, s in zip(shape, spacing)]
    coeffs = rng.standard_normal(tuple(b.shape[1] for b in bases)).astype(np.float32)
    field = coeffs @ bases[2].T                                   # (ck, cj, I)
    field = np.matmul(bases[1][None], field)                      # (ck, J, I)
    field = bases[0] @ field.reshape(field.shape[0], -1)          # (K, J*I)
    return field.reshape(shape)


def pull_back(rng: np.random.Generator, geometry: Geometry, matrix: np.ndarray, offset: np.ndarray,
              elastic: np.ndarray, corr_mm: float) -> list[np.ndarray]:
    """Coordinates ``matrix @ p + offset + elastic * field`` for every output voxel position ``p``.

    Row r of ``matrix`` gives target coordinate r from the LPS position (x, y, z); ``elastic[r]`` is
    the standard deviation of the smooth displacement added to it. Returns three float32 volumes.
    """
    x, y, z = axis_coordinates(geometry)
    shape = geometry.array_shape
    spacing = geometry.spacing[::-1]
    out = []
    for r in range(3):
        m = matrix[r].astype(np.float32)
        coordinate = (m[0] * x + m[1] * y) + (m[2] * z + np.float32(offset[r]))
        coordinate = coordinate + np.float32(elastic[r]) * smooth_field(rng, shape, spacing, corr_mm)
        out.append(coordinate.astype(np.float32, copy=False))
    return out


# ----------------------------------------------------------------------------------------------------
# Procedural chest
# ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Chest:
    """Random proportions of one chest (template mm)."""

    bx: float                      # body half-width (left-right) and half-depth (antero-posterior)
    by: float
    taper: float                   # relative narrowing of the body per 50 mm upwards
    fat: float                     # subcutaneous fat and chest-wall muscle thickness
    muscle: float
    apex_r: float                  # heights of the lung apices and diaphragm domes
    apex_l: float
    dome_r: float
    dome_l: float
    dome_depth: float              # how far the diaphragm falls from dome to periphery
    midline: float                 # x of the mediastinal midline (slightly left)
    band_anterior: float           # half-widths of the mediastinal band between the lungs
    band_middle: float
    heart: tuple[float, ...]       # centre x, y, z, semi-axes long, short, vertical, angle (deg)
    thymus: tuple[float, ...]      # centre x, y, z, semi-axes x, y, z
    carina: float
    trachea_r: float
    rib_period: float
    rib_phase: float
    width_r: float                 # per-side lung width factors (random lung volume per side)
    width_l: float
    touch: tuple[float, float]     # heights between which the lungs meet anteriorly


def _draw_chest(rng: np.random.Generator, touching: bool) -> _Chest:
    """Proportions of a preterm-to-term newborn; lung volumes vary per side through apex, dome, width."""
    u = rng.uniform
    dome_r = u(-11.0, -6.0)
    dome_l = dome_r - u(2.0, 6.0)
    bx, by = u(50.0, 54.0), u(37.0, 41.0)
    cyi = by - 9.0
    # Heart: centre (x, y, z), semi-axes (long, short, vertical), rotation of its long axis (deg).
    a, b, c = u(21.0, 26.0), u(14.0, 17.0), u(15.0, 19.0)
    hy = -cyi + b + (u(8.0, 11.0) if touching else u(0.5, 3.0))
    heart = (u(7.0, 12.0), hy, dome_l + 0.55 * c + u(0.0, 4.0), a, b, c, u(20.0, 40.0))
    # Thymus: large in neonates; pushed back and shrunk when the lungs must meet in front of it.
    grow = u(0.5, 0.7) if touching else u(0.8, 1.2)
    t_b = 7.0 * grow
    thymus = (u(-1.0, 3.0), -cyi + t_b + (9.0 if touching else 2.0), heart[2] + c + u(3.0, 7.0),
              13.0 * grow, t_b, 11.0 * grow)
    touch_low = heart[2] + 0.2 * c
    return _Chest(
        bx=bx, by=by, taper=u(0.05, 0.15), fat=u(2.5, 4.5), muscle=u(4.0, 6.0),
        apex_r=u(33.0, 37.0), apex_l=u(33.0, 37.0), dome_r=dome_r, dome_l=dome_l,
        dome_depth=u(9.0, 13.0), midline=u(0.0, 3.0),
        band_anterior=u(2.5, 5.0), band_middle=u(6.5, 9.0), heart=heart, thymus=thymus,
        carina=u(10.0, 16.0), trachea_r=u(2.2, 3.0), rib_period=u(7.5, 10.0), rib_phase=u(0.0, 10.0),
        width_r=u(0.9, 1.1), width_l=u(0.9, 1.1),
        touch=(touch_low, touch_low + u(12.0, 20.0)) if touching else (1e9, -1e9))


def _ellipse(u: np.ndarray, v: np.ndarray, cx: float, cy: float, ax: float | np.ndarray,
             ay: float | np.ndarray) -> np.ndarray:
    """Normalised squared radius of an axis-aligned ellipse (< 1 inside)."""
    return ((u - np.float32(cx)) / ax) ** 2 + ((v - np.float32(cy)) / ay) ** 2


def _capsule(u: np.ndarray, v: np.ndarray, w: np.ndarray, a: tuple[float, float, float],
             b: tuple[float, float, float], radius: float) -> np.ndarray:
    """Points within ``radius`` of segment a-b (a tube with round ends)."""
    a_ = np.asarray(a, np.float32)
    d = np.asarray(b, np.float32) - a_
    t = ((u - a_[0]) * d[0] + (v - a_[1]) * d[1] + (w - a_[2]) * d[2]) / np.float32(d @ d)
    t = np.clip(t, 0.0, 1.0)
    return (u - a_[0] - t * d[0]) ** 2 + (v - a_[1] - t * d[1]) ** 2 + (w - a_[2] - t * d[2]) ** 2 \
        < np.float32(radius * radius)


def procedural_tissue(rng: np.random.Generator, geometry: Geometry, touching: bool,
                      pose: Pose | None = None) -> np.ndarray:
    """Tissue classes (uint8, (k, j, i)) of one random newborn chest on ``geometry``.

    ``pose`` (size, affine, elastic warp; see ``variants.draw_pose``) is drawn from the training family
    when not given.

    The lungs are each a rounded cone (apex cap that widens downwards) inside the rib cage, cut from
    below by a dome-shaped diaphragm and medially by the mediastinal structures; the heart sits left and
    anterior so it dents the left lung. With ``touching`` the anterior mediastinal band vanishes over a
    range of heights so the two lungs meet at the anterior junction line.
    """
    p = _draw_chest(rng, touching)
    pose = draw_pose(rng) if pose is None else pose
    # The template's own size at scale 1 is calibrated to REFERENCE_LUNGS_ML of lung on average.
    template_scale = np.float64((REFERENCE_LUNGS_ML / _TEMPLATE_LUNGS_ML) ** (1.0 / 3.0))
    u, v, w = pull_back(rng, geometry, pose.matrix / template_scale, pose.offset / template_scale,
                        np.full(3, pose.elastic_mm / (pose.scale * template_scale)), pose.elastic_corr_mm)
    f32 = np.float32
    tissue = np.zeros(geometry.array_shape, np.uint8)

    # Body wall: fat, then muscle with ribs, around the thoracic/abdominal cavity. Narrower superiorly,
    # flatter posteriorly (the baby lies supine).
    width = f32(1.0) - f32(p.taper / 50.0) * np.clip(w, f32(-30.0), f32(60.0))
    bx = p.bx * width
    by = p.by * (f32(0.5) + f32(0.5) * width)
    posterior = v > 0

    def inside(shrink: float) -> np.ndarray:
        ry = np.abs(v) / (by - f32(shrink))
        ry = np.where(posterior, ry * ry * ry, ry * ry)       # cubic: flatter back
        return (u / (bx - f32(shrink))) ** 2 + ry < 1.0

    tissue[inside(0.0)] = Tissue.FAT
    wall = inside(p.fat)
    tissue[wall] = Tissue.MUSCLE
    ribs = np.sin(f32(2 * np.pi / p.rib_period) * (w - f32(0.35) * v + f32(p.rib_phase))) > 0.55
    tissue[wall & ribs] = Tissue.RIB
    cavity = inside(p.fat + p.muscle)
    tissue[cavity] = Tissue.MEDIASTINUM
    tissue[cavity & (w > f32(max(p.apex_r, p.apex_l) + 3.0))] = Tissue.MUSCLE  # neck and shoulders
    cxi, cyi = p.bx - p.fat - p.muscle, p.by - p.fat - p.muscle

    # Diaphragm: two domes (right higher), lowest laterally and posteriorly (costophrenic recesses).
    right_side = u < f32(p.midline)
    dome = np.where(right_side, f32(p.dome_r), f32(p.dome_l))
    rho2 = ((np.abs(u - f32(p.midline)) - f32(0.4 * cxi)) / f32(0.6 * cxi)) ** 2 \
        + ((v + f32(3.0)) / f32(0.9 * cyi)) ** 2
    rho2 = np.minimum(rho2, f32(1.3))
    diaphragm = dome - f32(p.dome_depth) * rho2 - f32(4.0) * np.clip(v / f32(cyi), 0.0, 1.0)
    below = cavity & (w < diaphragm)
    tissue[below] = Tissue.ABDOMEN
    liver_edge = f32(p.midline + 10.0) + f32(0.3) * (w - diaphragm)
    tissue[below & (u < liver_edge) & (w > diaphragm - f32(45.0))] = Tissue.LIVER
    stomach = _ellipse(u, v, 0.5 * cxi, -0.25 * cyi, 13.0, 10.0) \
        + ((w - f32(p.dome_l - 14.0)) / f32(10.0)) ** 2 < 1
    tissue[below & stomach] = Tissue.STOMACH

    # Spine and paraspinal muscles against the back.
    canal_y = p.by - p.fat - 7.0
    body_y = canal_y - 8.5
    tissue[_ellipse(u, v, 0.0, p.by - p.fat - 5.0, 17.0, 8.0) < 1] = Tissue.MUSCLE
    tissue[_ellipse(u, v, 0.0, body_y, 6.5, 5.5) < 1] = Tissue.VERTEBRA
    tissue[_ellipse(u, v, 0.0, canal_y, 3.2, 3.0) < 1] = Tissue.SPINAL_CANAL
    spine_zone = _ellipse(u, v, 0.0, body_y + 3.0, 11.0, 13.0) < 1

    # Heart: a rotated ellipsoid resting on the left dome, blood pool inside a myocardial wall.
    hx, hy, hz, ha, hb, hc, angle = p.heart
    cos_a, sin_a = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    du, dv, dw = u - f32(hx), v - f32(hy), w - f32(hz)
    s1 = du * f32(cos_a) - dv * f32(sin_a)
    s2 = du * f32(sin_a) + dv * f32(cos_a)
    heart_r2 = (s1 / f32(ha)) ** 2 + (s2 / f32(hb)) ** 2 + (dw / f32(hc)) ** 2
    above = ~below
    tissue[(heart_r2 < 1) & above] = Tissue.MYOCARDIUM
    tissue[(heart_r2 < 0.55) & above] = Tissue.BLOOD
    pericardium = (heart_r2 < 1.25) & above

    # Thymus, great vessels and airways in the superior mediastinum.
    tx, ty, tz, ta, tb, tc = p.thymus
    thymus = _ellipse(u, v, tx, ty, ta, tb) + ((w - f32(tz)) / f32(tc)) ** 2 < 1
    tissue[thymus] = Tissue.THYMUS
    top = hz + hc
    aorta_x, desc_x, desc_y = hx - 9.0, 5.0, body_y - 9.0
    trachea_y = body_y - 12.0
    carina = (p.midline * 0.5, trachea_y, p.carina)
    trachea_top = (carina[0], trachea_y, 300.0)
    # Tubes are only evaluated on the central column of the cavity, where they all lie, for speed.
    central = np.flatnonzero(cavity & (np.abs(u - f32(p.midline)) < f32(30.0)))
    cu, cv, cw = (a.ravel()[central] for a in (u, v, w))

    def tubes(*segments: tuple) -> np.ndarray:
        hit = np.zeros(len(central), bool)
        for start, end, radius in segments:
            hit |= _capsule(cu, cv, cw, start, end, radius)
        full = np.zeros(tissue.size, bool)
        full[central] = hit
        return full.reshape(tissue.shape)

    vessels = tubes(((aorta_x, hy + 5, hz), (aorta_x, hy + 5, top + 6), 4.5),          # ascending aorta
                    ((aorta_x, hy + 5, top + 6), (desc_x, desc_y, top + 8), 4.0),      # arch
                    ((desc_x, desc_y, top + 8), (desc_x, desc_y, -200.0), 3.5),        # descending
                    ((aorta_x - 9, hy + 8, hz), (aorta_x - 9, hy + 8, 200.0), 3.3),    # superior vena cava
                    ((hx + 3, hy - 2, hz + 0.4 * hc), (hx + 5, hy + 9, top + 3), 4.0))  # pulmonary trunk
    tissue[vessels] = Tissue.BLOOD
    airway = tubes((carina, trachea_top, p.trachea_r),
                   (carina, (p.midline - 13.0, trachea_y + 2.0, p.carina - 8.0), 2.0),
                   (carina, (p.midline + 13.0, trachea_y + 2.0, p.carina - 10.0), 1.8))
    tissue[airway] = Tissue.AIRWAY     # main bronchi inside the lung are overwritten by lung below
    trachea_wall = tubes((carina, trachea_top, p.trachea_r + 2.0))

    # Lungs: what remains of the cavity above the diaphragm, left or right of a mediastinal band that
    # is thin anteriorly (anterior junction), absent where the lungs touch, wide around the oesophagus.
    anterior = np.clip((v + f32(0.35 * cyi)) / f32(6.0), 0.0, 1.0)
    band_front = np.where((w > p.touch[0]) & (w < p.touch[1]), f32(0.0), f32(p.band_anterior))
    band = band_front + (f32(p.band_middle) - band_front) * anterior
    side = u - f32(p.midline)
    lung = cavity & above & ~(pericardium | thymus | spine_zone | vessels | trachea_wall)
    for label, sign, apex, widen in ((Tissue.LUNG_RIGHT, -1.0, p.apex_r, p.width_r),
                                     (Tissue.LUNG_LEFT, 1.0, p.apex_l, p.width_l)):
        # Rounded cone: narrow at the apex, no longer limiting 28 mm below it.
        taper = (np.maximum(f32(apex) - w, f32(0.01)) / f32(28.0)) ** f32(0.75)
        cap = _ellipse(u, v, sign * 0.4 * cxi, -0.1 * cyi, f32(0.9 * cxi * widen) * taper,
                       f32(1.2 * cyi) * taper) < 1
        this_side = (side * f32(sign) > band) if sign > 0 else (side * f32(sign) >= band)
        tissue[lung & cap & this_side & (w < f32(apex))] = label
    _keep_lungs_lateral(tissue)
    return tissue


def _keep_lungs_lateral(tissue: np.ndarray) -> None:
    """Remove lung medial to any solid mediastinal structure on the same image row, in place.

    Without this the lungs wrap right round the superior vena cava or the aorta where the mediastinal
    band is thin, leaving a vessel as a hole inside the lung label, which never happens in a newborn.
    Rows run along i, which points to the patient's left on the generator's identity grid.
    """
    solid = np.isin(tissue, (Tissue.BLOOD, Tissue.MYOCARDIUM, Tissue.THYMUS, Tissue.VERTEBRA))
    has = solid.any(axis=2, keepdims=True)
    first = np.argmax(solid, axis=2)[..., None]
    last = tissue.shape[2] - 1 - np.argmax(solid[..., ::-1], axis=2)[..., None]
    i = np.arange(tissue.shape[2])[None, None, :]
    medial = has & (((tissue == Tissue.LUNG_RIGHT) & (i > first))
                    | ((tissue == Tissue.LUNG_LEFT) & (i < last)))
    tissue[medial] = Tissue.MEDIASTINUM
