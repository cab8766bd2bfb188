"""What the neonatal procedural chest lacks for real scanners: habitus, arms, neck, gas, spleen, bronchi.

The chest itself comes from ``anatomy.procedural_tissue`` (heart, great vessels, thymus, trachea, spine,
ribs, liver under a right diaphragm dome, stomach) and ``lung_topology.finalize_lungs`` (right/left label,
intrapulmonary vessels). The real-data failures of model 1.2.0 were all *outside* the lungs: leaks into
arms, mediastinum and liver dome, stomach gas called lung. So this module adds, in the same template
frame (mm at scale 1, origin mid-chest, u = patient left, v = posterior, w = superior):

- extra subcutaneous fat (thin to heavy habitus);
- arms beside the chest (skin fat, muscle, humerus), or none (raised, as in most adult scans);
- a neck narrower than the chest above the shoulders;
- a spleen under the left dome, gas in the stomach and gas- or fluid-filled bowel loops (``GAS`` is
  proton-free and dark like lung, and never labelled);
- main bronchi cut out of the lung label (the expert masks exclude trachea and main bronchi).

Template coordinates here are the generator's affine map *without* the small elastic displacement that
the chest received; the additions sit outside the lungs or are mm-scale, so that does not matter.
"""

from __future__ import annotations

import numpy as np

from NeonatalLungSegLib.geometry import Geometry

from ..anatomy.procedural import Tissue, _capsule, axis_coordinates, smooth_field

# Classes beyond ``anatomy.Tissue`` (painted by ``synthesis.contrast``).
GAS = 20        # gas in stomach and bowel: dark like lung, never lung
SPLEEN = 21
BOWEL = 22      # fluid-filled bowel loops
N_CLASSES = 23

# Procedural chest proportions at scale 1 (``anatomy._draw_chest``): body half-width 50-54 mm,
# half-depth 37-41 mm, lung apex ~35 mm, diaphragm ~-10 to -25 mm. The smallest values are used so
# that additions start at or outside the drawn body (they only ever replace air or abdomen).
BODY_HALF_WIDTH = 50.0
BODY_HALF_DEPTH = 37.0
LUNG_APEX = 35.0
LUNG_HEIGHT = 62.0      # apex to the deepest costophrenic recess (measured over seeds, about 1.2 x dome-to-apex)
_TAPER = 0.1


def template_coordinates(geometry: Geometry, matrix: np.ndarray, offset: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Template (u, v, w) of every voxel of an identity-direction grid: ``matrix @ p + offset``."""
    x, y, z = axis_coordinates(geometry)
    m = matrix.astype(np.float32)
    out = []
    for r in range(3):
        out.append(np.broadcast_to(m[r, 0] * x + m[r, 1] * y + m[r, 2] * z + np.float32(offset[r]),
                                   geometry.array_shape).astype(np.float32))
    return out[0], out[1], out[2]


def _body_r2(u: np.ndarray, v: np.ndarray, w: np.ndarray, grow_x: float, grow_front: float,
             grow_back: float) -> np.ndarray:
    """Normalised radius of the body outline grown by some mm (flatter back, as anatomy.py draws it)."""
    width = np.float32(1.0) - np.float32(_TAPER / 50.0) * np.clip(w, np.float32(-30.0), np.float32(60.0))
    bx = np.float32(BODY_HALF_WIDTH) * width + np.float32(grow_x)
    by_core = np.float32(BODY_HALF_DEPTH) * (np.float32(0.5) + np.float32(0.5) * width)
    posterior = v > 0
    ry = np.abs(v) / (by_core + np.where(posterior, np.float32(grow_back), np.float32(grow_front)))
    ry = np.where(posterior, ry * ry * ry, ry * ry)
    return (u / bx) ** 2 + ry


def add_body(tissue: np.ndarray, u: np.ndarray, v: np.ndarray, w: np.ndarray, drawn: dict) -> None:
    """Habitus fat, arms and neck, in place; ``drawn`` holds the values (see ``generator``)."""
    fat = float(drawn["extra_fat_rel"]) * BODY_HALF_WIDTH
    air = tissue == Tissue.AIR
    if fat > 0:
        shell = air & (_body_r2(u, v, w, fat, fat, 0.4 * fat) < 1.0)
        tissue[shell] = Tissue.FAT
    # Shoulders start above the highest apex the chest can draw (37 mm), so the neck never cuts a lung.
    shoulder = LUNG_APEX + 4.0 + float(drawn["shoulder_rel"]) * LUNG_HEIGHT
    arms_mask = np.zeros(tissue.shape, bool)
    if drawn["arms"]:
        radius = float(drawn["arm_radius_rel"]) * BODY_HALF_WIDTH
        gap = float(drawn["arm_gap_rel"]) * BODY_HALF_WIDTH
        centre_v = float(drawn["arm_ap_offset_rel"]) * BODY_HALF_DEPTH
        # Above the shoulder line the arm ends in a rounded cap (the shoulder joint), not a flat cut.
        cap = np.maximum(w - np.float32(shoulder), np.float32(0.0)) / np.float32(radius)
        for sign in (-1.0, 1.0):
            centre_u = sign * (BODY_HALF_WIDTH + fat + gap + radius)
            r2 = ((u - np.float32(centre_u)) / np.float32(radius)) ** 2 \
                + ((v - np.float32(centre_v)) / np.float32(1.15 * radius)) ** 2 + cap * cap
            arm = (r2 < 1.0) & (tissue == Tissue.AIR)
            arms_mask |= arm
            tissue[arm] = Tissue.FAT
            tissue[arm & (r2 < 0.78)] = Tissue.MUSCLE
            bone = (u - np.float32(centre_u)) ** 2 + (v - np.float32(centre_v)) ** 2
            bone = bone + (cap * np.float32(radius)) ** 2
            tissue[arm & (bone < np.float32((0.22 * radius) ** 2))] = Tissue.RIB
            tissue[arm & (bone < np.float32((0.13 * radius) ** 2))] = Tissue.FAT     # marrow
    # Neck: above the shoulders the body narrows (over 10 mm) to an ellipse around trachea and spine.
    neck = float(drawn["neck_radius_rel"])
    ramp = np.clip((w - np.float32(shoulder)) / np.float32(10.0), 0.0, 1.0)
    factor = np.float32(1.0) - (np.float32(1.0 - neck)) * ramp
    lung = (tissue == Tissue.LUNG_RIGHT) | (tissue == Tissue.LUNG_LEFT)
    outside = (w > np.float32(shoulder)) & ~arms_mask & ~lung & (
        (u / (np.float32(BODY_HALF_WIDTH + fat) * factor)) ** 2
        + ((v - np.float32(6.0)) / (np.float32(0.8 * BODY_HALF_DEPTH + 0.5 * fat)
                                    * (np.float32(0.5) + np.float32(0.5) * factor))) ** 2 > 1.0)
    tissue[outside] = Tissue.AIR


def add_abdomen(tissue: np.ndarray, u: np.ndarray, v: np.ndarray, w: np.ndarray, geometry: Geometry,
                rng: np.random.Generator, drawn: dict, scale_mm: float,
                loop_corr_mm: tuple[float, float] = (5.0, 9.0)) -> None:
    """Spleen, stomach gas and bowel loops (gas or fluid) inside the abdomen class, in place.

    ``scale_mm`` is the template-to-patient scale, so bowel loops have an anatomical size at any age.
    """
    abdomen = tissue == Tissue.ABDOMEN
    size = float(drawn["spleen_size_rel"])
    spleen = abdomen & (((u - np.float32(26.0)) / np.float32(11.0 * size)) ** 2
                        + ((v - np.float32(12.0)) / np.float32(9.0 * size)) ** 2
                        + ((w + np.float32(24.0)) / np.float32(13.0 * size)) ** 2 < 1.0)
    tissue[spleen] = SPLEEN

    stomach = np.flatnonzero(tissue.ravel() == Tissue.STOMACH)
    if len(stomach) and drawn["stomach_gas_fraction"] > 0:
        # Gas rises: anteriorly in a supine subject, superiorly (fundus) in an upright one.
        along = (-v if drawn["gas_rises"] == "anterior" else w).ravel()[stomach]
        level = np.quantile(along, 1.0 - float(drawn["stomach_gas_fraction"]))
        flat = tissue.reshape(-1)
        flat[stomach[along >= level]] = GAS

    free = np.flatnonzero((tissue == Tissue.ABDOMEN).ravel())
    gas_f, fluid_f = float(drawn["bowel_gas_fraction"]), float(drawn["bowel_fluid_fraction"])
    if len(free) < 20 or gas_f + fluid_f <= 0:
        return
    spacing = tuple(geometry.spacing[::-1])
    corr = float(rng.uniform(*loop_corr_mm)) * scale_mm
    drawn["bowel_loop_corr_mm"] = corr / scale_mm
    loops_field = smooth_field(rng, tissue.shape, spacing, corr).ravel()[free]
    content = smooth_field(rng, tissue.shape, spacing, 1.5 * corr).ravel()[free]
    # Loops: a band around the zero level of a smooth field (worm-like tubes and sheets).
    band = np.abs(loops_field)
    loops = band <= np.quantile(band, min(gas_f + fluid_f, 0.95))
    flat = tissue.reshape(-1)
    if loops.any():
        gas_share = gas_f / (gas_f + fluid_f)
        threshold = np.quantile(content[loops], 1.0 - gas_share) if gas_share < 1 else -np.inf
        flat[free[loops & (content >= threshold)]] = GAS
        flat[free[loops & (content < threshold)]] = BOWEL


def carve_bronchi(tissue: np.ndarray, label: np.ndarray, u: np.ndarray, v: np.ndarray, w: np.ndarray,
                  length: float) -> dict[str, float]:
    """Cut the two main bronchi (and a thin wall) out of the lungs, in place; label 0 there.

    The procedural chest lets lung overwrite its bronchus stubs, so without this the main bronchi would
    be labelled lung, unlike the expert masks. The carina is found from the airway voxels themselves.
    """
    airway = tissue == Tissue.AIRWAY
    if airway.sum() < 5:
        return {"bronchi": 0.0}
    au, av, aw = u[airway], v[airway], w[airway]
    upper = aw > np.quantile(aw, 0.5)
    u0, v0 = float(np.median(au[upper])), float(np.median(av[upper]))
    central = np.abs(au - u0) < 3.0
    carina = float(aw[central].min()) if central.any() else float(aw.min())
    radius = 1.9
    hit_air = np.zeros(tissue.shape, bool)
    hit_wall = np.zeros(tissue.shape, bool)
    near = (np.abs(w - np.float32(carina - 0.4 * length)) < np.float32(0.7 * length + 4.0)) \
        & (np.abs(u - np.float32(u0)) < np.float32(length + 4.0))
    idx = np.flatnonzero(near.ravel())
    cu, cv, cw = u.ravel()[idx], v.ravel()[idx], w.ravel()[idx]
    for sign, drop in ((-1.0, 0.45), (1.0, 0.6)):    # right main bronchus steeper and shorter
        end = (u0 + sign * length * 0.85, v0 + 2.0, carina - length * drop)
        start = (u0, v0, carina + 1.0)
        hit_air.ravel()[idx[_capsule(cu, cv, cw, start, end, radius)]] = True
        hit_wall.ravel()[idx[_capsule(cu, cv, cw, start, end, radius + 0.9)]] = True
    lung = label > 0
    tissue[hit_wall & lung & ~hit_air] = Tissue.MEDIASTINUM
    tissue[hit_air & (lung | (tissue == Tissue.MEDIASTINUM))] = Tissue.AIRWAY
    removed = int(np.count_nonzero(hit_wall & lung))
    label[hit_wall] = 0
    return {"bronchi": 1.0, "bronchus_voxels_removed": float(removed)}
