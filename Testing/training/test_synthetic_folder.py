"""Synthetic training folders: per-case protocols drawn from the seed, written all or nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from NeonatalLungSegLib.dataset.training_folder import read_training_folder
from neonatal_lung_training.synthesis.neonatal.folder import SyntheticMix, case_parameters, write_synthetic_folder

SMALL = SyntheticMix(atlas_fraction=0.0, matrices=(48, 64), fov_mm=(110.0, 130.0), thickness_mm=(3.0, 4.0),
                     coverage_mm=(60.0, 70.0))


def test_parameters_come_from_the_seed_and_vary_between_cases() -> None:
    first = [case_parameters(s, SyntheticMix(), atlas_available=True) for s in range(12)]
    assert first == [case_parameters(s, SyntheticMix(), atlas_available=True) for s in range(12)]
    assert len({p["shape"] for p in first}) > 3 and {p["anatomy"] for p in first} == {"atlas", "procedural"}
    for p in first:
        assert 1.0 <= p["spacing"][0] <= 4.0 and 130 <= p["shape"][0] * p["spacing"][0] <= 171
    assert all(p["anatomy"] == "procedural" for p in
               (case_parameters(s, SyntheticMix(), atlas_available=False) for s in range(12)))


def test_folder_is_written_with_manifest_and_generator_provenance(tmp_path: Path) -> None:
    root = tmp_path / "syn"
    assert write_synthetic_folder(root, range(3, 5), SMALL, variant_family="heldout", echo=lambda *a, **k: None) == 2
    folder = read_training_folder(root)
    assert [c.subject for c in folder.cases] == ["syn-heldout-000003", "syn-heldout-000004"]
    sidecar = folder.read_sidecar(folder.cases[0])
    assert sidecar["generator"]["seed"] == 3 and sidecar["generator"]["variant_family"] == "heldout"
    image, label = folder.read_case(folder.cases[1])
    assert image.GetSize()[0] in (48, 64) and image.GetSize() == label.GetSize()
    with pytest.raises(FileExistsError):
        write_synthetic_folder(root, range(1), SMALL)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["syn"]  # no staging folder left behind


def test_bad_mix_is_refused() -> None:
    with pytest.raises(ValueError, match="atlas_fraction"):
        SyntheticMix(atlas_fraction=1.5)
    with pytest.raises(ValueError, match="thickness_mm"):
        SyntheticMix(thickness_mm=(3.0, 1.0))
