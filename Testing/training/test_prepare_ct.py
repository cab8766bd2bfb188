"""The CT-slices adapter: real public data into the training-folder format, all or nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from NeonatalLungSegLib.cli.main import main
from NeonatalLungSegLib.dataset.training_folder import read_training_folder
from neonatal_lung_training.datasets.prepare_ct import default_source, pseudo_subjects

CT = default_source()


def test_near_duplicate_slices_share_a_subject() -> None:
    rng = np.random.default_rng(0)
    images = rng.random((5, 16, 16)).astype(np.float32)
    images[3] = images[1] + 0.001  # a near-copy, as neighbouring slices of one scan would be
    groups = pseudo_subjects(images)
    assert groups[1] == groups[3] and len(set(groups.tolist())) == 4


@pytest.mark.skipif(not CT.is_dir(), reason=f"{CT} is absent (real data lives beside the checkout)")
def test_prepare_ct_writes_every_slice_as_a_lung_scheme_case(tmp_path: Path) -> None:
    out = tmp_path / "ct"
    assert main(["prepare-ct", "-o", str(out)]) == 0
    folder = read_training_folder(out)
    assert len(folder.cases) == 213 and len(folder.subjects()) == 213
    record = folder.cases[5]
    assert record.label_scheme == "lung" and record.review_status == "reference"
    image, label = folder.read_case(record)
    source = np.load(CT / "x_train.npy", mmap_mode="r")[5, :, :, 0]
    mask = np.load(CT / "y_train.npy", mmap_mode="r")[5, :, :, 0] >= 0.5
    assert np.array_equal(sitk.GetArrayFromImage(image)[0], source)
    assert np.array_equal(sitk.GetArrayFromImage(label)[0] > 0, mask)
    assert folder.read_sidecar(record)["source_index"] == 5


def test_prepare_ct_refuses_bad_sources_and_existing_outputs(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    assert main(["prepare-ct", "-o", str(tmp_path / "x"), "--source", str(tmp_path)]) == 2
    assert "x_train.npy" in capsys.readouterr().err and not (tmp_path / "x").exists()
    (tmp_path / "exists").mkdir()
    assert main(["prepare-ct", "-o", str(tmp_path / "exists")]) == 2
    assert "already exists" in capsys.readouterr().err


def test_default_source_and_run_records_point_beside_the_checkout() -> None:
    """Moving modules into subpackages once pointed these paths inside the repository (a silent miss)."""
    from neonatal_lung_training.datasets.prepare_ct import default_source
    from neonatal_lung_training.locations import REPOSITORY
    from neonatal_lung_training.training.config import environment

    repo = Path(__file__).resolve().parents[2]
    assert REPOSITORY == repo and (repo / "pyproject.toml").is_file()
    assert default_source() == repo.parent / "shared" / "data" / "ct-lung-slices"
    if (repo / ".git").exists():
        assert environment()["git_revision"]
