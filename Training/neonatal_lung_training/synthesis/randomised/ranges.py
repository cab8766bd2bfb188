"""Every randomisation axis of the domain-randomised generator, with its range, in one place.

The generator (``generator.py``) draws each case from these ranges and nothing else, so the ranges are
the whole specification of the synthetic world: ``docs/synthetic-data.md`` lists them and
``Testing/training/test_domain_random.py`` checks that every draw stays inside them.

Why so wide: a model trained on one narrow synthetic world learns that world (the bundled 1.2.0 model
scored Dice 0.956 on its own data and ~0.70 on real adult MRI). Following SynthSeg (Billot et al. 2023),
the ranges here go deliberately beyond what real scanners produce (any tissue contrast, any voxel size
from 0.5 to 6 mm, any orientation, strong artefacts), so that a real scan is just one more variation.

Two families, as in ``variants.py``: ``"train"`` and ``"heldout"``. They share acquisition and contrast
ranges but draw the *shape* of the chest (aspect, elongation, shear, elastic warp) from disjoint intervals
and use disjoint seed spaces, so a held-out case is anatomy the model has never seen.

An interval is ``(low, high)``; a tuple of intervals is a union, drawn with probability proportional to
length. ``log`` in a name means the draw is uniform in log space (sizes that span orders of magnitude).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

Interval = tuple[float, float]


@dataclass(frozen=True)
class DomainRanges:
    """Ranges of every randomisation axis (see the module docstring and docs/synthetic-data.md)."""

    # --- subject: size, shape, habitus ------------------------------------------------------------
    total_lung_ml_log: Interval = (40.0, 6000.0)       # both lungs: preterm newborn (~20 mL each) to adult
    aspect: tuple[Interval, ...] = ((0.85, 1.20),)     # extra left-right / antero-posterior stretch
    elongation: tuple[Interval, ...] = ((0.85, 1.20),)  # extra cranio-caudal / width stretch
    shear: tuple[Interval, ...] = ((0.0, 0.06),)       # magnitude of each of 3 shear terms (random sign)
    elastic_rel: tuple[Interval, ...] = ((1.0, 3.0),)  # elastic displacement s.d., mm per unit of scale
    elastic_corr_rel: tuple[Interval, ...] = ((25.0, 45.0),)  # its correlation length, mm per unit scale
    rotation_deg: tuple[float, float, float] = (10.0, 10.0, 15.0)  # patient tilt about x, y, z (+-)
    touching_probability: float = 0.3                  # lungs meeting at the anterior junction line
    extra_fat_probability: float = 0.6                 # otherwise the thin built-in fat layer only
    extra_fat_rel: Interval = (0.02, 0.30)             # extra subcutaneous fat / chest half-width
    arms_probability: float = 0.55                     # arms beside the chest (else raised / absent)
    arm_radius_rel: Interval = (0.22, 0.36)            # arm radius / chest half-width
    arm_gap_rel: Interval = (-0.10, 0.04)              # gap arm-chest / chest half-width (<= 0: touching)
    arm_ap_offset_rel: Interval = (-0.2, 0.2)          # arm centre front/back of the chest centre
    neck_radius_rel: Interval = (0.38, 0.60)           # neck half-width / chest half-width
    shoulder_rel: Interval = (0.0, 0.25)               # shoulder height above the lung apex / lung height
    gas_rises_anterior_probability: float = 0.7  # supine (anterior gas); else upright (fundus gas)
    stomach_gas_probability: float = 0.8
    stomach_gas_fraction: Interval = (0.1, 0.9)        # share of the stomach filled with gas
    bowel_gas_probability: float = 0.8
    bowel_gas_fraction: Interval = (0.02, 0.25)        # share of the free abdomen that is gas-filled bowel
    bowel_fluid_fraction: Interval = (0.0, 0.3)        # share of the free abdomen that is fluid bowel
    bowel_loop_corr_mm: Interval = (5.0, 9.0)          # size of the bowel-loop pattern (template mm)
    spleen_size_rel: Interval = (0.7, 1.3)             # spleen size factor
    bronchus_length_mm: Interval = (14.0, 22.0)        # main bronchus length (template mm, x scale)
    bpd_probability: float = 0.2                       # BPD-like patterns inside the lungs (pathology.py)

    # --- field of view -------------------------------------------------------------------------------
    fov_lr_rel: Interval = (0.75, 1.25)     # left-right FOV / body width (arms included): <1 crops
    fov_ap_rel: Interval = (0.85, 1.50)     # antero-posterior FOV / body depth
    fov_si_rel: Interval = (1.05, 2.60)     # cranio-caudal FOV / lung height: neck, abdomen in or out
    fov_si_centre_rel: Interval = (-1.3, 1.15)  # FOV centre shift / half the cranio-caudal slack (FOV
    #                                             minus lung height): |x| > 1 crops an apex or a base
    fov_shift_rel: Interval = (-0.08, 0.08)  # in-plane FOV centre shift / FOV
    origin_translation_mm: float = 100.0     # +- shift of the scanner origin (patient position is arbitrary)

    # --- acquisition grid ------------------------------------------------------------------------------
    orientation_weights: tuple[float, float, float] = (0.45, 0.40, 0.15)  # axial, coronal, sagittal stacks
    slice_thickness_mm_log: Interval = (0.5, 6.0)
    in_plane_mm_log: Interval = (0.5, 4.0)
    in_plane_anisotropy: Interval = (1.0, 1.5)  # row / column spacing ratio (either way round)
    in_plane_matrix: tuple[int, int] = (48, 192)  # voxels along the larger in-plane axis (clips spacing)
    max_slices: int = 160
    max_voxels: int = 3_000_000
    oblique_probability: float = 0.5
    oblique_deg: float = 25.0               # grid rotation about each axis (+-), on top of the patient's tilt
    axis_flip_probability: float = 0.5      # each index axis reversed (non-LPS storage, det -1 allowed)
    swap_in_plane_probability: float = 0.25  # rows and columns exchanged

    # --- acquisition artefacts -------------------------------------------------------------------------
    bias_strength: Interval = (0.0, 0.6)    # log-amplitude of the smooth multiplicative bias
    bias_corr_rel: Interval = (0.3, 0.8)    # its correlation length / FOV
    coil_probability: float = 0.5
    coil_elements: tuple[int, int] = (2, 8)
    coil_depth_rel: Interval = (0.15, 0.5)  # sensitivity fall-off length / FOV
    coil_floor: Interval = (0.1, 0.6)       # remaining sensitivity far from every element
    breathing_probability: float = 0.35
    breathing_mm: Interval = (1.0, 10.0)    # peak displacement of the breathing cycle
    ghost_probability: float = 0.25
    ghost_strength: Interval = (0.02, 0.15)  # amplitude of phase-encoding ghosts (motion)
    wrap_probability: float = 0.25
    wrap_rel: Interval = (0.05, 0.25)       # folded-in share of the phase-encoding FOV on each side
    wrap_fov_rel: Interval = (0.65, 0.95)   # with in-plane wrap: phase-encoding FOV / body extent
    ute_radial_probability: float = 0.5     # UTE cases with radial undersampling streaks (1.3-3x below
    #                                         Nyquist: mr_artefacts.RADIAL_UNDERSAMPLING)
    psf_sigma_vox: Interval = (0.3, 0.8)    # in-plane partial volume, voxels
    extra_slice_blur_probability: float = 0.3
    extra_slice_blur_vox: Interval = (0.3, 1.0)  # additional through-plane blur, slices
    rician_probability: float = 0.6          # else Gaussian (real-valued) noise
    noise_rel: Interval = (0.003, 0.08)      # noise s.d. / bright end of the image
    log_gamma: Interval = (-0.4, 0.4)
    intensity_scale: Interval = (0.5, 2.0)   # global scale; images stay roughly 0..1000 x this

    # --- contrast ----------------------------------------------------------------------------------------
    contrast_weights: dict[str, float] = field(default_factory=lambda: {
        "random": 0.55, "gradient_echo": 0.2, "ute": 0.15, "t2_haste": 0.1})
    lung_darkest_probability: float = 0.8    # in "random": lung darker than all non-gas body tissue
    random_mean: Interval = (0.0, 1000.0)    # mean of each tissue class
    lung_dark_mean: Interval = (5.0, 250.0)  # lung mean when it is the darkest body tissue
    dark_margin: Interval = (40.0, 300.0)    # minimum gap from the lung to every other body tissue
    gas_mean: Interval = (0.0, 60.0)         # air, airway, bowel and stomach gas, cysts: no protons
    tissue_spread_rel: Interval = (0.0, 0.25)  # s.d. of each class / its mean (texture)
    texture_corr_mm: Interval = (1.0, 6.0)
    texture_smooth_share: Interval = (0.3, 0.9)  # smooth part of the texture (rest white noise)
    lung_heterogeneity: Interval = (0.0, 0.35)  # coarse parenchymal variation / lung mean
    lung_dependent_gradient: Interval = (-0.1, 0.3)  # lung signal change front to back (supine: denser back)
    fixed_contrast_jitter: float = 0.15      # +- relative jitter of each class in the named modes

    def with_family(self, family: str) -> "DomainRanges":
        """These ranges with the anatomy-shape axes of ``family`` (``FAMILY_SHAPES``)."""
        if family not in FAMILY_SHAPES:
            raise ValueError(f"unknown family {family!r}: use one of {', '.join(FAMILY_SHAPES)}")
        return replace(self, **FAMILY_SHAPES[family])


# Shape axes that differ between the families: each held-out interval lies outside every training one.
FAMILY_SHAPES: dict[str, dict[str, tuple[Interval, ...]]] = {
    "train": {"aspect": ((0.85, 1.20),), "elongation": ((0.85, 1.20),), "shear": ((0.0, 0.06),),
              "elastic_rel": ((1.0, 3.0),), "elastic_corr_rel": ((25.0, 45.0),)},
    "heldout": {"aspect": ((0.76, 0.83), (1.22, 1.30)), "elongation": ((0.76, 0.83), (1.22, 1.30)),
                "shear": ((0.07, 0.12),), "elastic_rel": ((3.2, 4.5),), "elastic_corr_rel": ((18.0, 23.0),)},
}
FAMILIES = tuple(FAMILY_SHAPES)
CONTRAST_MODES = ("random", "gradient_echo", "ute", "t2_haste")
ORIENTATIONS = ("axial", "coronal", "sagittal")
DEFAULT_RANGES = DomainRanges()
