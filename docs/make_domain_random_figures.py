"""Draw docs/images/domain-random-<axis>.png: one small figure per randomisation axis of the
domain-randomised generator (Training/neonatal_lung_training/synthesis), for docs/synthetic-data.md.

Each figure varies one axis over a few cases and keeps the others calm (no artefacts, gradient-echo
contrast, straight axial grid), so what changes is the axis itself. Every case is shown in patient
orientation (radiological view: patient right on the image left; superior up), reoriented from its own
grid; red outlines label 1 (right lung), cyan label 2 (left lung).

    .venv/bin/python docs/make_domain_random_figures.py [AXIS ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "NeonatalLungSeg"), str(ROOT / "Training")]

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402

from neonatal_lung_training.synthesis.randomised import generate_random_case  # noqa: E402

OUT = ROOT / "docs" / "images"
CALM = dict(bias_strength=(0.0, 0.0), coil_probability=0.0, breathing_probability=0.0, ghost_probability=0.0,
            wrap_probability=0.0, noise_rel=(0.01, 0.01), log_gamma=(0.0, 0.0), oblique=False,
            extra_slice_blur_probability=0.0, in_plane_anisotropy=(1.0, 1.0), contrast_mode="gradient_echo",
            orientation="axial", intensity_scale=(1.0, 1.0), bpd_probability=0.0, fov_lr_rel=(1.1, 1.1),
            fov_ap_rel=(1.2, 1.2), fov_shift_rel=(0.0, 0.0), fov_si_rel=(1.3, 1.3), fov_si_centre_rel=(0.0, 0.0))


def calm(**changes):
    return {**CALM, **changes}


# axis name -> (caption, [(panel title, seed, overrides), ...], views)
AXES: dict[str, tuple[str, list, tuple[str, ...]]] = {
    "contrast": ("per-class random contrast; the named modes as special cases", [
        ("random", 1, calm(contrast_mode="random")), ("random", 2, calm(contrast_mode="random")),
        ("random, lung not darkest", 5, calm(contrast_mode="random", lung_darkest_probability=0.0)),
        ("gradient echo", 1, calm()), ("UTE", 1, calm(contrast_mode="ute")),
        ("T2 HASTE-like", 1, calm(contrast_mode="t2_haste"))], ("axial",)),
    "size": ("total lung volume 40 mL to 6 L (voxel size follows the subject)", [
        (f"{ml} mL", 3, calm(total_lung_ml=ml, in_plane_matrix=(128, 128), slice_thickness_mm_log=(2.0, 2.0)))
        for ml in (50, 200, 800, 2500, 6000)],
        ("axial", "coronal")),
    "shape": ("chest shape: aspect, elongation, shear, elastic warp (train vs held-out family), patient tilt", [
        ("aspect 0.85", 20, calm(aspect=((0.85, 0.85),))), ("aspect 1.2", 20, calm(aspect=((1.2, 1.2),))),
        ("elongation 0.85", 20, calm(elongation=((0.85, 0.85),))),
        ("elongation 1.2", 20, calm(elongation=((1.2, 1.2),))),
        ("held-out family", 20, {**calm(), "family": "heldout"}),
        ("held-out family", 21, {**calm(), "family": "heldout"})], ("axial", "coronal")),
    "lungs": ("label: lungs touching at the anterior junction or apart (slice of closest approach), "
              "BPD-like patterns (UTE)", [
        ("apart", 22, calm(contrast_mode="ute", touching_lungs=False)),
        ("touching", 22, calm(contrast_mode="ute", touching_lungs=True)),
        ("BPD-like", 23, calm(contrast_mode="ute", bpd_probability=1.0)),
        ("BPD-like", 24, calm(contrast_mode="ute", bpd_probability=1.0))], ("junction", "coronal")),
    "habitus": ("extra subcutaneous fat, 0 to 0.3 of the chest half-width", [
        (f"fat {f:.2f}", 4, calm(extra_fat_probability=1.0 if f else 0.0, extra_fat_rel=(f, f) if f else (0.02, 0.3),
                                  total_lung_ml=3000)) for f in (0.0, 0.1, 0.2, 0.3)], ("axial",)),
    "arms": ("arms beside the chest (touching or not) or out of the field of view", [
        ("no arms", 6, calm(arms=False, total_lung_ml=3000)),
        ("arms, touching", 6, calm(arms=True, arm_gap_rel=(-0.1, -0.1), total_lung_ml=3000)),
        ("arms, gap", 6, calm(arms=True, arm_gap_rel=(0.04, 0.04), total_lung_ml=3000)),
        ("arms, cropped FOV", 6, calm(arms=True, fov_lr_rel=(0.8, 0.8), total_lung_ml=3000))], ("axial", "coronal")),
    "coverage": ("cranio-caudal field of view: neck and abdomen in or out, lungs cut", [
        ("tight", 7, calm(fov_si_rel=(1.05, 1.05), fov_si_centre_rel=(0.0, 0.0))),
        ("neck in", 7, calm(fov_si_rel=(2.0, 2.0), fov_si_centre_rel=(1.0, 1.0))),
        ("abdomen in", 7, calm(fov_si_rel=(2.0, 2.0), fov_si_centre_rel=(-1.0, -1.0))),
        ("both", 7, calm(fov_si_rel=(2.6, 2.6), fov_si_centre_rel=(0.0, 0.0))),
        ("base cut", 7, calm(fov_si_rel=(1.3, 1.3), fov_si_centre_rel=(1.3, 1.3)))], ("coronal",)),
    "gas": ("stomach and bowel gas (dark like lung, never labelled)", [
        ("no gas", 8, calm(stomach_gas_probability=0.0, bowel_gas_probability=0.0)),
        ("stomach gas", 8, calm(stomach_gas_probability=1.0, stomach_gas_fraction=(0.8, 0.8),
                                bowel_gas_probability=0.0)),
        ("bowel gas", 8, calm(stomach_gas_probability=0.0, bowel_gas_probability=1.0, bowel_gas_fraction=(0.25, 0.25))),
        ("both, UTE", 8, calm(stomach_gas_probability=1.0, bowel_gas_probability=1.0, contrast_mode="ute"))],
        ("coronal", "base")),
    "orientation": ("axial, coronal and sagittal stacks, flipped axes (shown reoriented)", [
        ("axial", 9, calm(orientation="axial", slice_thickness_mm_log=(4.0, 4.0))),
        ("coronal", 9, calm(orientation="coronal", slice_thickness_mm_log=(4.0, 4.0))),
        ("sagittal", 9, calm(orientation="sagittal", slice_thickness_mm_log=(4.0, 4.0)))], ("axial", "coronal")),
    "resolution": ("slice thickness 0.5-6 mm, in-plane 0.5-4 mm, non-square pixels", [
        ("1 mm iso", 10, calm(total_lung_ml=300, slice_thickness_mm_log=(1.0, 1.0), in_plane_mm_log=(1.0, 1.0))),
        ("6 mm slices", 10, calm(total_lung_ml=300, slice_thickness_mm_log=(6.0, 6.0), in_plane_mm_log=(1.0, 1.0))),
        ("4 mm in-plane", 10, calm(total_lung_ml=300, slice_thickness_mm_log=(1.0, 1.0), in_plane_mm_log=(4.0, 4.0))),
        ("2 x 3 mm pixels", 10, calm(total_lung_ml=300, in_plane_mm_log=(2.0, 2.0), in_plane_anisotropy=(1.5, 1.5)))],
        ("axial", "coronal")),
    "oblique": ("oblique grids (up to 25 degrees about each axis), patient tilt", [
        ("straight", 11, calm()), ("oblique", 11, {**calm(), "oblique": True, "oblique_probability": 1.0}),
        ("oblique", 12, {**calm(), "oblique": True, "oblique_probability": 1.0}),
        ("oblique, coronal", 13, {**calm(orientation="coronal"), "oblique": True, "oblique_probability": 1.0})],
        ("axial", "coronal")),
    "bias": ("smooth bias field and receive-coil fall-off", [
        ("none", 14, calm()), ("bias 0.6", 14, calm(bias_strength=(0.6, 0.6))),
        ("coils", 14, calm(coil_probability=1.0, coil_floor=(0.1, 0.1))),
        ("both", 15, calm(bias_strength=(0.5, 0.5), coil_probability=1.0))], ("axial",)),
    "noise": ("Rician or Gaussian noise, 0.3-8 % of the bright end", [
        (f"{n:.1%}", 16, calm(noise_rel=(n, n))) for n in (0.003, 0.02, 0.05, 0.08)], ("axial",)),
    "motion": ("breathing blur, phase-encoding ghosts, radial undersampling streaks (UTE)", [
        ("none", 17, calm()), ("breathing 10 mm", 17, calm(breathing_probability=1.0, breathing_mm=(10.0, 10.0))),
        ("ghosts", 17, calm(ghost_probability=1.0, ghost_strength=(0.15, 0.15))),
        ("UTE radial streaks", 17, calm(contrast_mode="ute", ute_radial_probability=1.0))], ("axial", "coronal")),
    "wrap": ("wrap-around (fold-over) along the phase-encoding axis; cropped field of view", [
        ("none", 18, calm(total_lung_ml=2500, arms=True)),
        ("wrap, 20 %", 18, calm(total_lung_ml=2500, arms=True, wrap_probability=1.0, wrap_rel=(0.2, 0.2))),
        ("wrap, 20 %", 19, calm(total_lung_ml=2500, arms=True, wrap_probability=1.0, wrap_rel=(0.2, 0.2))),
        ("cropped", 18, calm(total_lung_ml=2500, arms=True, fov_lr_rel=(0.75, 0.75), fov_ap_rel=(0.85, 0.85)))],
        ("axial",)),
}


def _views(case, views):
    image = sitk.DICOMOrient(case.image, "LPS")
    label = sitk.DICOMOrient(case.label, "LPS")
    a, l = sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(label)
    sx, sy, sz = image.GetSpacing()
    lung = np.argwhere(l > 0)
    centre = lung.mean(axis=0).astype(int) if len(lung) else np.array(a.shape) // 2
    out = []
    for view in views:
        if view == "junction":          # the slice where the lungs come closest (anterior junction)
            gaps = []
            for k in range(l.shape[0]):
                rows = (l[k] == 1).any(1) & (l[k] == 2).any(1)
                right_edge = l.shape[2] - 1 - np.argmax((l[k] == 1)[:, ::-1], axis=1)
                gap = (np.argmax(l[k] == 2, axis=1) - right_edge)[rows]
                gaps.append(gap.min() if len(gap) else 10**6)
            k = int(np.argmin(gaps))
            out.append((a[k], l[k], sy / sx))
        elif view in ("axial", "base", "upper"):
            k = centre[0] if view == "axial" or not len(lung) else \
                int(np.percentile(lung[:, 0], 6 if view == "base" else 72))
            out.append((a[k], l[k], sy / sx))
        else:                                            # coronal, superior up
            j = centre[1]
            out.append((a[::-1, j], l[::-1, j], sz / sx))
    return out, float(np.percentile(a, 99.5))


def draw(axis: str) -> Path:
    caption, panels, views = AXES[axis]
    fig, axes = plt.subplots(len(views), len(panels), figsize=(1.9 * len(panels), 1.9 * len(views) + 0.3),
                             squeeze=False)
    for col, (title, seed, overrides) in enumerate(panels):
        overrides = dict(overrides)
        family = overrides.pop("family", "train")
        case = generate_random_case(seed, family, **overrides)
        shown, top = _views(case, views)
        for row, (img, lab, aspect) in enumerate(shown):
            ax = axes[row, col]
            ax.imshow(img, cmap="gray", vmin=0, vmax=top, aspect=aspect, interpolation="nearest")
            for value, colour in ((1, "red"), (2, "cyan")):
                if (lab == value).any():
                    ax.contour(lab == value, [0.5], colors=colour, linewidths=0.6)
            ax.set_xticks([])
            ax.set_yticks([])
        p = case.parameters
        fov = max(p["fov_mm"][:2])
        axes[0, col].set_title(f"{title}\nFOV {fov:.0f} mm, {min(p['in_plane_mm']):.1f}x"
                               f"{p['slice_thickness_mm']:.1f} mm", fontsize=6)
    fig.suptitle(f"{axis}: {caption}", fontsize=8)
    fig.tight_layout()
    path = OUT / f"domain-random-{axis}.png"
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return path


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for name in sys.argv[1:] or AXES:
        print(draw(name))
