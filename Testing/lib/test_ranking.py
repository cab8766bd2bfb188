"""`neonatal-lung-seg rank`: unlabelled cases ordered by the expected benefit of correcting them."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import SimpleITK as sitk

from fuzz_helpers import assert_one_error_line, hand_nifti, run, write_nifti
from NeonatalLungSegLib.cli.main import main
from NeonatalLungSegLib.dataset.ranking import read_folder_image
from NeonatalLungSegLib.dataset.training_folder import add_case
from NeonatalLungSegLib.errors import InputError


def volume(seed: int, shape=(6, 40, 40)) -> sitk.Image:
    rng = np.random.default_rng(seed)
    image = sitk.GetImageFromArray(rng.normal(100, 10 + 30 * seed, shape).astype(np.float32))
    image.SetSpacing((1.0, 1.0, 2.0))
    return image


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_rank_a_folder_of_volumes_writes_a_sorted_csv(tiny_model_folder, tmp_path, capsys):
    data = tmp_path / "volumes"
    data.mkdir()
    for seed in range(3):
        sitk.WriteImage(volume(seed), str(data / f"case{seed}.nii.gz"))
    out = tmp_path / "ranking.csv"
    argv = ["rank", "--model", str(tiny_model_folder), "--data", str(data), "--out", str(out), "--device", "cpu"]
    assert main(argv) == 0
    rows = read_csv(out)
    assert [r["rank"] for r in rows] == ["1", "2", "3"] and {r["case"] for r in rows} == {"case0", "case1", "case2"}
    benefits = [float(r["benefit"]) for r in rows]
    assert benefits == sorted(benefits, reverse=True)
    assert all(abs(float(r["benefit"]) + float(r["confidence"]) - 1) < 1e-5 for r in rows)
    assert "correct first" in capsys.readouterr().out
    assert main(argv) == 2 and "already exists" in capsys.readouterr().err
    assert main([*argv, "--overwrite", "--flip"]) == 0
    assert all(r["flip_dice"] for r in read_csv(out))


def test_rank_a_training_folder_of_single_slices_to_stdout(tiny_model_folder, tmp_path, capsys):
    folder = tmp_path / "folder"
    for seed in range(2):
        image = volume(seed, shape=(1, 64, 64))
        label = sitk.Image(image.GetSize(), sitk.sitkUInt8)
        label.CopyInformation(image)
        add_case(folder, image, label, f"slice{seed}", review_status="unreviewed", label_scheme="lung")
    assert main(["rank", "--model", str(tiny_model_folder), "--data", str(folder), "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].startswith("rank,case,benefit,confidence") and len(lines) == 3
    assert "ranking 2 case(s)" in captured.err


def test_rank_refuses_mixed_or_empty_inputs(tiny_model_folder, tmp_path, capsys):
    folder = tmp_path / "folder"
    (folder / "images").mkdir(parents=True)
    single = tmp_path / "one.nii.gz"
    sitk.WriteImage(volume(0), str(single))
    assert main(["rank", "--model", str(tiny_model_folder), "--data", str(folder), str(single)]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["rank", "--model", str(tiny_model_folder), "--data", str(folder)]) == 2
    assert "no volumes" in capsys.readouterr().err


def _bitpix_truncated(path, shape=(6, 40, 40)):
    """bitpix 8 on int16 data, cut short: ITK reads the datatype's bytes and the missing half as zeros."""
    array = np.random.default_rng(0).normal(300, 60, shape).clip(1, 4000).astype(np.int16)
    whole = hand_nifti(array, bitpix=8)
    return write_nifti(path, whole[: 352 + array.nbytes // 2 + 100])


@pytest.mark.parametrize("name", ["c1.nii", "c1.nii.gz"])
def test_training_folder_images_are_read_by_the_checked_reader(tmp_path, name):
    source = _bitpix_truncated(tmp_path / "images" / name)
    with pytest.raises(InputError, match="truncated") as caught:
        read_folder_image(source)
    assert name in str(caught.value) and "\n" not in str(caught.value)
    nospacing = tmp_path / "images" / "c2.mha"
    sitk.WriteImage(volume(0), str(nospacing))
    text = nospacing.read_bytes()
    start = text.index(b"ElementSpacing")
    nospacing.write_bytes(text[:start] + text[text.index(b"\n", start) + 1:])
    with pytest.raises(InputError, match="spacing"):
        read_folder_image(nospacing)


def test_training_folder_single_slices_and_any_values_are_still_read(tmp_path):
    """Single slices are training-folder cases; the values are the engine's to check when it segments."""
    for shape in ((1, 16, 20), (4, 16, 20)):
        path = tmp_path / f"slice{shape[0]}.nrrd"
        sitk.WriteImage(sitk.Cast(volume(0, shape) * 0, sitk.sitkInt16), str(path))
        image = read_folder_image(path)
        assert image.GetSize() == shape[::-1] and image.GetPixelID() == sitk.sitkFloat32


def test_rank_refuses_a_damaged_training_folder_image_in_one_line(tiny_model_folder, tmp_path, capsys):
    folder = tmp_path / "folder"
    (folder / "images").mkdir(parents=True)
    sitk.WriteImage(volume(0), str(folder / "images" / "good.nii.gz"))
    _bitpix_truncated(folder / "images" / "bad.nii")
    out = tmp_path / "ranking.csv"
    code, _, err = run(["rank", "--model", tiny_model_folder, "--data", folder, "--out", out, "--device", "cpu"],
                       capsys)
    assert_one_error_line(code, err, "bad.nii", "truncated")
    assert not out.exists()
