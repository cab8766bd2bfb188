"""Combining training folders: repeats stay with their subject, held-out subjects stay out, schemes survive."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from neonatal_lung_training.datasets.combine import Source, combine, main
from NeonatalLungSegLib.errors import InputError
from NeonatalLungSegLib.dataset.training_folder import add_case, read_training_folder


def _pair(seed: int) -> tuple[sitk.Image, sitk.Image]:
    image = sitk.GetImageFromArray(np.random.default_rng(seed).random((2, 8, 8)).astype(np.float32))
    label = np.zeros((2, 8, 8), np.uint8)
    label[:, 2:4, 1:3], label[:, 2:4, 5:7] = 1, 2
    return image, sitk.GetImageFromArray(label)


def _folder(root: Path, subjects: list[str], scheme: str) -> Path:
    for subject in subjects:
        image, label = _pair(1)
        if scheme == "lung":
            label = sitk.Cast(label > 0, sitk.sitkUInt8)
        add_case(root, image, label, subject, label_scheme=scheme, review_status="reference")
    return root


def test_combine_repeats_splits_and_keeps_test_subjects_out(tmp_path: Path) -> None:
    syn = _folder(tmp_path / "syn", [f"s{i}" for i in range(10)], "right_left")
    ct = _folder(tmp_path / "ct", ["a", "b", "c"], "lung")
    split = tmp_path / "ct-split.json"
    split.write_text(json.dumps({"train": ["a"], "val": ["b"], "test": ["c"]}))
    result = combine([Source(syn), Source(ct, 3, split)], tmp_path / "mix", val_fraction=0.2, echo=lambda *_: None)
    folder = read_training_folder(tmp_path / "mix")
    subjects = folder.subjects()
    assert "s1-c" not in subjects and "s1-a" in subjects and "s1-b" in subjects
    assert len([c for c in folder.cases if c.subject == "s1-a"]) == 3  # repeats are versions of one subject
    assert len([c for c in folder.cases if c.subject == "s1-b"]) == 1  # a validation subject counts once
    assert {c.label_scheme for c in folder.cases if c.subject.startswith("s1-")} == {"lung"}
    assert {c.label_scheme for c in folder.cases if c.subject.startswith("s0-")} == {"right_left"}
    assert len([s for s in result["val"] if s.startswith("s0-")]) == 2 and "s1-b" in result["val"]
    assert not set(result["train"]) & set(result["val"]) and result["test"] == []
    assert json.loads((tmp_path / "mix.split.json").read_text(encoding="utf-8")) == result


def test_combine_refuses_bad_sources_and_an_existing_output(tmp_path: Path) -> None:
    syn = _folder(tmp_path / "syn", ["x"], "right_left")
    with pytest.raises(InputError, match="REPEAT"):
        Source.parse(f"{syn}:0")
    assert main(["-o", str(tmp_path / "mix"), "--source", str(syn)]) == 0
    assert main(["-o", str(tmp_path / "mix"), "--source", str(syn)]) == 2  # never written over
    assert main(["-o", str(tmp_path / "other"), "--source", str(tmp_path / "missing")]) == 2
    assert not (tmp_path / "other").exists()


def test_cases_named_by_generator_seeds_combine(tmp_path: Path) -> None:
    """scripts/evaluate-real.sh combines two synthesize outputs whose cases are named by their seeds
    (synthetic-900000): six digits in a row, which the de-identification check refuses in free text. The
    combined case keeps its origin in its subject (where seeds are allowed), not in the free-text source."""
    syn = tmp_path / "syn-heldout-test-atlas"  # synthesize's output: images/ + labels/ pairs, no manifest
    for name in ("synthetic-900000", "synthetic-900001"):
        image, label = _pair(1)
        for sub, item in (("images", image), ("labels", label)):
            (syn / sub).mkdir(parents=True, exist_ok=True)
            sitk.WriteImage(item, str(syn / sub / f"{name}.nii.gz"))
    combine([Source(syn)], tmp_path / "mix", val_fraction=0.0, echo=lambda *_: None)
    folder = read_training_folder(tmp_path / "mix")
    assert sorted(c.subject for c in folder.cases) == ["s0-synthetic-900000", "s0-synthetic-900001"]
