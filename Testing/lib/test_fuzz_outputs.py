"""Fuzz suite, outputs: a short write, a full disk, an unwritable folder or an input named as an output must
end in one line and status 2, with no partial file and no input damaged."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from fuzz_helpers import assert_one_error_line, run, write_volume
from NeonatalLungSegLib.volumes import volume_io
from NeonatalLungSegLib.errors import NeonatalLungSegError
from NeonatalLungSegLib.volumes.volume_io import AtomicOutputs


def seg_args(inputs: list[Path], out: Path, model: Path, *extra: str) -> list:
    return ["segment", *inputs, "-o", out, "--model", model, "--device", "cpu", *extra]


def test_short_write_is_detected_before_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = sitk.WriteImage

    def short_write(image: sitk.Image, path: str, *args: object, **kwargs: object) -> None:
        real(image, path, *args, **kwargs)
        data = Path(path).read_bytes()
        Path(path).write_bytes(data[: len(data) // 2])  # what a full disk does to ITK's NIfTI writer

    monkeypatch.setattr(volume_io.sitk, "WriteImage", short_write)
    image = sitk.GetImageFromArray(np.arange(8 * 40 * 32, dtype=np.uint8).reshape(8, 40, 32))
    with pytest.raises(NeonatalLungSegError, match="verif"):
        with AtomicOutputs() as outputs:
            outputs.write_image(image, tmp_path / "x_lungs.nii.gz")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("code_, text", [(errno.ENOSPC, "No space left on device"),
                                         (errno.EACCES, "Permission denied"),
                                         (errno.EROFS, "Read-only file system")])
def test_full_disk_is_one_line_and_leaves_nothing(tmp_path: Path, tiny_model_folder: Path, code_: int, text: str,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture) -> None:
    source = write_volume(tmp_path / "in" / "a.nii.gz")

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(code_, text)

    monkeypatch.setattr(volume_io.sitk, "WriteImage", full)
    out = tmp_path / "out"
    code, _, err = run(seg_args([source], out, tiny_model_folder), capsys)
    assert_one_error_line(code, err, text)
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.skipif(os.name == "nt" or os.geteuid() == 0, reason="root ignores permissions")
def test_read_only_output_folder_is_one_line(tmp_path: Path, tiny_model_folder: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    source = write_volume(tmp_path / "a.nii.gz")
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        code, _, err = run(seg_args([source], out, tiny_model_folder), capsys)
    finally:
        out.chmod(0o700)
    assert_one_error_line(code, err, "ro", "cannot write")


def test_output_under_a_file_is_one_line(tmp_path: Path, tiny_model_folder: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    source = write_volume(tmp_path / "a.nii.gz")
    (tmp_path / "plain").write_text("a file")
    code, _, err = run(seg_args([source], tmp_path / "plain" / "out", tiny_model_folder), capsys)
    assert_one_error_line(code, err, "plain")


def test_rank_out_unwritable_is_one_line(tmp_path: Path, tiny_model_folder: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    source = write_volume(tmp_path / "a.nii.gz")
    (tmp_path / "plain").write_text("a file")
    code, _, err = run(["rank", "--data", source, "--model", tiny_model_folder, "--device", "cpu",
                        "--out", tmp_path / "plain" / "ranking.csv"], capsys)
    lines = [ln for ln in err.splitlines() if ln.startswith(("error", "Traceback"))]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:") and "plain" in lines[0], err


def test_overwrite_never_writes_over_an_input_of_the_same_run(tmp_path: Path, tiny_model_folder: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "D"
    a = write_volume(folder / "a.nii.gz")
    victim = write_volume(folder / "a_lungs.nii.gz", seed=3)  # a user's file that happens to look like output
    before = victim.read_bytes()
    code, _, err = run(seg_args([a, victim], folder, tiny_model_folder, "--overwrite"), capsys)
    assert_one_error_line(code, err, "a_lungs.nii.gz", "input")
    assert victim.read_bytes() == before


def test_folder_input_skips_own_outputs_and_temp_leftovers(tmp_path: Path, tiny_model_folder: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "D"
    write_volume(folder / "a.nii.gz")
    write_volume(folder / "a_lungs.nii.gz", seed=1)
    write_volume(folder / "a_lung_probability.nii.gz", seed=2)
    stale = write_volume(folder / ".tmp-0badc0de-b_lungs.nii.gz", seed=4)
    old = time.time() - 2 * 86400
    os.utime(stale, (old, old))
    code, out, err = run(seg_args([folder], folder, tiny_model_folder, "--overwrite"), capsys)
    assert code == 0, err
    assert "1 case(s)" in out
    assert not stale.exists()  # a stale temp file of a crashed run is cleaned up
    assert sorted(p.name for p in folder.iterdir()) == [
        "a.nii.gz", "a_lung_probability.nii.gz", "a_lungs.nii.gz", "a_volumes.json"]


def test_batch_with_a_later_bad_nrrd_writes_nothing(tmp_path: Path, tiny_model_folder: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    good = write_volume(tmp_path / "in" / "a.nii.gz")
    array = np.random.default_rng(1).normal(200, 50, (8, 40, 32)).astype(np.float32)
    array[1, 2, 3] = np.inf
    bad = write_volume(tmp_path / "in" / "z.nrrd", array)
    out = tmp_path / "out"
    code, _, err = run(seg_args([good, bad], out, tiny_model_folder), capsys)
    assert_one_error_line(code, err, "z.nrrd")
    assert not out.exists() or not any(out.iterdir())
