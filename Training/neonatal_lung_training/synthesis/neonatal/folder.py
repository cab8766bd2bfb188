"""Synthetic training folders: many generated cases with varied grids, anatomy and contrast, in one format.

Training reads only training folders, so synthetic data goes through the same door as clinicians'
exports. Each case draws its own matrix, field of view and slice thickness, because a real scanner
protocol can be anything from 1 mm to 4 mm slices. A model trained on one grid fails on the others: the
first bundled model did, scoring below 0.8 Dice on 3 mm volumes. Each case also draws its anatomy source
and its contrast. The folder is written next to its final place and renamed into place only when it is
complete.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from NeonatalLungSegLib.dataset.training_folder import add_case, new_training_folder

from .generator import default_atlas_dir, generate_case


@dataclass(frozen=True)
class SyntheticMix:
    """The distribution every case's protocol and anatomy is drawn from."""

    atlas_fraction: float = 0.5                  # share of cases built on the fetal atlas's shapes
    randomized_contrast_fraction: float = 0.3    # SynthSeg-style random tissue contrast; the rest UTE
    matrices: tuple[int, ...] = (96, 112, 128, 144, 160, 192, 224, 256)
    fov_mm: tuple[float, float] = (110.0, 170.0)  # square in-plane field of view
    thickness_mm: tuple[float, float] = (1.0, 4.0)
    coverage_mm: tuple[float, float] = (130.0, 170.0)  # superior-inferior extent (large babies need 150)

    def __post_init__(self) -> None:
        for name in ("atlas_fraction", "randomized_contrast_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be within [0, 1]")
        for name in ("fov_mm", "thickness_mm", "coverage_mm"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"{name} must be (low, high) with 0 < low <= high")


def case_parameters(seed: int, mix: SyntheticMix, atlas_available: bool) -> dict:
    """Protocol and anatomy choices of one case, from its seed alone (so any case can be regenerated)."""
    rng = np.random.default_rng([seed, 0x5EED])
    matrix = int(rng.choice(mix.matrices))
    fov = float(rng.uniform(*mix.fov_mm))
    thickness = float(rng.uniform(*mix.thickness_mm))
    slices = max(8, int(round(rng.uniform(*mix.coverage_mm) / thickness)))
    atlas = bool(atlas_available and rng.random() < mix.atlas_fraction)
    contrast = "randomized" if rng.random() < mix.randomized_contrast_fraction else "ute"
    return {"anatomy": "atlas" if atlas else "procedural", "contrast": contrast,
            "shape": (slices, matrix, matrix), "spacing": (round(thickness, 3), fov / matrix, fov / matrix)}


def write_synthetic_folder(root: Path, seeds: range | list[int], mix: SyntheticMix = SyntheticMix(),
                           variant_family: str = "train", description: str = "",
                           echo=print) -> int:
    """Generate ``seeds`` into a NEW training folder ``root``; returns the number of cases."""
    root = Path(root)
    if root.exists():
        raise FileExistsError(f"{root}: already exists; choose a new folder")
    atlas_dir = default_atlas_dir()
    atlas_available = atlas_dir.is_dir()
    if mix.atlas_fraction > 0 and not atlas_available:
        echo(f"note: {atlas_dir} not found; every case uses procedural anatomy")
    text = description or (f"synthetic neonatal chest MRI ({variant_family} anatomy family; "
                           f"{mix.atlas_fraction:.0%} atlas anatomy if available; "
                           f"{mix.randomized_contrast_fraction:.0%} randomized contrast, rest UTE); "
                           "no real neonatal MRI")
    with new_training_folder(root) as staging:
        for number, seed in enumerate(seeds, 1):
            params = case_parameters(seed, mix, atlas_available)
            case = generate_case(seed, variant_family=variant_family,
                                 atlas_dir=atlas_dir if params["anatomy"] == "atlas" else None, **params)
            metadata = {"generator": {"seed": int(seed), **params, "variant_family": variant_family,
                                      "mix": asdict(mix), **_plain(case.parameters)}}
            add_case(staging, case.image, case.label, f"syn-{variant_family}-{seed:06d}",
                     review_status="reference", source="synthetic", metadata=metadata, description=text)
            if number % 10 == 0:
                echo(f"  {number} cases", flush=True)
    return len(seeds)


def _plain(values: dict) -> dict:
    """JSON-safe copy of the generator's summary (NumPy scalars and tuples become plain values)."""
    out = {}
    for key, value in values.items():
        if isinstance(value, np.generic):
            value = value.item()
        elif isinstance(value, (tuple, np.ndarray)):
            value = np.asarray(value).tolist()
        out[key] = value
    return out
