"""The dense-lung anchor of `improve`: slabs through BPD-like lung, where a fine-tune's forgetting shows first.

Phantoms: dark lungs (signal 10) in a bright body (100); one of them has a dense patch (signal 60, over half
the way to tissue) in a few sections. The patch's share and section are known by construction.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from NeonatalLungSegLib.dataset.training_folder import add_case, read_training_folder
from neonatal_lung_training.improve.anchors import SLAB_SECTIONS, dense_fraction, dense_slabs


def phantom(dense_sections: range | None, depth: int = 30) -> tuple[sitk.Image, sitk.Image]:
    signal = np.full((depth, 40, 40), 100.0, np.float32)
    label = np.zeros(signal.shape, np.uint8)
    label[3:depth - 1, 8:32, 6:18], label[3:depth - 1, 8:32, 22:34] = 1, 2
    signal[label > 0] = 10.0
    if dense_sections is not None:
        signal[dense_sections, 12:28, 8:16] = 60.0  # inside the right lung's core
    image = sitk.GetImageFromArray(signal)
    image.SetSpacing((1.0, 1.0, 2.0))
    labels = sitk.GetImageFromArray(label)
    labels.CopyInformation(image)
    return image, labels


def test_dense_fraction_finds_the_dense_patch_and_its_section() -> None:
    fraction, section = dense_fraction(*phantom(range(18, 23)))
    assert 0.05 < fraction < 0.2 and 18 <= section <= 22, (fraction, section)
    assert dense_fraction(*phantom(None))[0] == 0.0


def test_dense_slabs_cut_round_the_densest_section_of_cases_that_have_dense_lung(tmp_path: Path) -> None:
    source = tmp_path / "source"
    for name, sections in (("bpd", range(18, 23)), ("clear", None), ("top", range(24, 27))):
        add_case(source, *phantom(sections), name, review_status="reference", source="test",
                 description="dense-lung phantoms")
    out = dense_slabs(source, tmp_path / "slabs")
    folder = read_training_folder(out)
    assert sorted(c.subject for c in folder.cases) == ["bpd-dense", "top-dense"]  # the clear case gives none
    for record in folder.cases:
        image, label = folder.read_case(record)
        assert image.GetSize()[2] == SLAB_SECTIONS and label.GetSize() == image.GetSize()
        array = sitk.GetArrayViewFromImage(image)
        assert (array == 60.0).any()  # the dense patch is inside the slab
        low = round(image.GetOrigin()[2] / 2.0)
        assert low + SLAB_SECTIONS <= 30 and (low <= 18 < low + SLAB_SECTIONS if record.subject == "bpd-dense"
                                             else low <= 24 < low + SLAB_SECTIONS)  # round the densest section
    clear = tmp_path / "clear"
    add_case(clear, *phantom(None), "clear", review_status="reference", source="test", description="no dense lung")
    assert dense_slabs(clear, tmp_path / "none") is None and not (tmp_path / "none").exists()


def test_dense_rehearsal_adds_slabs_of_training_family_cases_only_when_asked(tmp_path: Path) -> None:
    """ImproveSettings.rehearsal_dense: slabs of the generator's training family (never the anchors' held-out
    family or seeds), as a fourth rehearsal folder; without it the rehearsal is the three folders of before."""
    from neonatal_lung_training.improve.anchors import ANCHOR_SEED, REHEARSAL_SEED, rehearsal_folders

    plain = rehearsal_folders(tmp_path / "plain", cases=1)
    assert [p.name for p in plain] == ["rehearsal-neonatal", "rehearsal-randomised", "rehearsal-slices"]
    folders = rehearsal_folders(tmp_path / "dense", cases=1, dense_cases=3)
    assert [p.name for p in folders][:3] == [p.name for p in plain] and folders[3].name == "rehearsal-dense"
    slabs = read_training_folder(folders[3])
    seeds = [int(c.subject.split("-")[2]) for c in slabs.cases]  # syn-train-SEED-dense
    assert slabs.cases and all(c.subject.startswith("syn-train-") for c in slabs.cases), slabs.cases
    assert all(REHEARSAL_SEED + 100 <= s < REHEARSAL_SEED + 103 and s < ANCHOR_SEED for s in seeds), seeds
    for record in slabs.cases:
        image, label = slabs.read_case(record)
        fraction, _ = dense_fraction(image, label)
        assert image.GetSize()[2] == SLAB_SECTIONS and fraction > 0.0
