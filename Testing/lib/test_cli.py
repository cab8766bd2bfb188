"""The `segment` command as a user meets it: outputs, batches, refusals, no partial or overwritten files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from NeonatalLungSegLib.cli.main import main
from NeonatalLungSegLib.geometry import Geometry, array_to_image, image_to_array

DIRECTION = tuple(np.diag([-1.0, 1.0, 1.0]).ravel())


def write_volume(path: Path, seed: int = 0, shape=(8, 48, 40)) -> Path:
    geometry = Geometry((shape[2], shape[1], shape[0]), (0.9, 0.8, 2.0), (1.0, 2.0, 3.0), DIRECTION)
    array = np.random.default_rng(seed).normal(200, 50, shape).astype(np.float32)
    sitk.WriteImage(array_to_image(array, geometry), str(path))
    return path


def run(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_segment_writes_labels_volumes_and_probabilities(tmp_path: Path, tiny_model_folder: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    source = write_volume(tmp_path / "baby 01.nrrd")
    out = tmp_path / "out"
    code, stdout, _ = run(["segment", str(source), "-o", str(out), "--model", str(tiny_model_folder),
                           "--device", "cpu", "--probabilities", "--format", "nrrd"], capsys)
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "baby_01_lung_probability.nrrd", "baby_01_lungs.nrrd", "baby_01_volumes.json"]
    labels, geometry = image_to_array(sitk.ReadImage(str(out / "baby_01_lungs.nrrd")))
    _, source_geometry = image_to_array(sitk.ReadImage(str(source)))
    assert geometry == source_geometry  # NRRD keeps the geometry exactly
    report = json.loads((out / "baby_01_volumes.json").read_text(encoding="utf-8"))
    assert report["model"]["name"] == "tiny-test-model"
    assert report["right_lung"]["voxels"] == int((labels == 1).sum())
    assert report["total"]["volume_ml"] == pytest.approx(int((labels > 0).sum()) * 0.9 * 0.8 * 2.0 / 1000,
                                                         rel=1e-6)
    assert "baby_01" in stdout and "mL" in stdout


def test_folder_of_volumes_in_one_run(tmp_path: Path, tiny_model_folder: Path,
                                      capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        write_volume(folder / f"case{i}.nii.gz", seed=i)
    code, stdout, _ = run(["segment", str(folder), "-o", str(tmp_path / "out"), "--model",
                           str(tiny_model_folder), "--device", "cpu"], capsys)
    assert code == 0 and "3 case(s)" in stdout
    assert len(list((tmp_path / "out").glob("*_lungs.nii.gz"))) == 3


def test_existing_outputs_are_never_overwritten_unless_asked(tmp_path: Path, tiny_model_folder: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    source = write_volume(tmp_path / "c.nii.gz")
    out = tmp_path / "out"
    out.mkdir()
    (out / "c_lungs.nii.gz").write_bytes(b"clinician's corrected mask")
    args = ["segment", str(source), "-o", str(out), "--model", str(tiny_model_folder), "--device", "cpu"]
    code, _, err = run(args, capsys)
    assert code == 2 and "already exists" in err and err.count("\n") == 1
    assert (out / "c_lungs.nii.gz").read_bytes() == b"clinician's corrected mask"
    assert sorted(p.name for p in out.iterdir()) == ["c_lungs.nii.gz"]
    code, _, _ = run(args + ["--overwrite"], capsys)
    assert code == 0 and (out / "c_lungs.nii.gz").read_bytes() != b"clinician's corrected mask"


def _bad_inputs(tmp_path: Path) -> dict[str, list[str]]:
    good = write_volume(tmp_path / "good.nii.gz")
    flat = tmp_path / "flat.nrrd"
    sitk.WriteImage(sitk.Image(16, 16, sitk.sitkFloat32), str(flat))
    four = tmp_path / "four.nrrd"
    sitk.WriteImage(sitk.Image([6, 6, 6, 2], sitk.sitkFloat32), str(four))
    nan = tmp_path / "nan.nrrd"
    array, geometry = image_to_array(sitk.ReadImage(str(good)))
    array[1, 1, 1] = np.nan
    sitk.WriteImage(array_to_image(array, geometry), str(nan))
    constant = tmp_path / "constant.nrrd"
    sitk.WriteImage(sitk.Image([8, 8, 8], sitk.sitkInt16), str(constant))
    broken_model = tmp_path / "broken_model"
    broken_model.mkdir()
    (broken_model / "model.json").write_text("{}")
    return {
        "no such file": [str(tmp_path / "missing.nii.gz")],
        "2D": [str(flat)],
        "4D": [str(four)],
        "NaN": [str(nan)],
        "constant": [str(constant)],
        "unknown device": [str(good), "--device", "quantum"],
        "not a neonatal-lung-seg-model config": [str(good), "--model", str(broken_model)],
        "model folder does not exist": [str(good), "--model", str(tmp_path / "nomodel")],
        "same case name": [str(good), str(good)],
    }


def test_bad_input_exits_non_zero_with_one_line_and_writes_nothing(tmp_path: Path, tiny_model_folder: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    for message, args in _bad_inputs(tmp_path).items():
        out = tmp_path / f"out-{abs(hash(message))}"
        argv = ["segment", *args, "-o", str(out)]
        argv += [] if "--device" in args else ["--device", "cpu"]
        argv += [] if "--model" in args else ["--model", str(tiny_model_folder)]
        code, stdout, err = run(argv, capsys)
        assert code == 2, message
        assert message in err and err.startswith("error: ") and err.count("\n") == 1, (message, err)
        assert not out.exists() or not any(out.iterdir()), message


def test_bad_values_are_named_by_file_with_confidence_too(tmp_path: Path, tiny_model_folder: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    nan = _bad_inputs(tmp_path)["NaN"][0]
    code, _, err = run(["segment", nan, "-o", str(tmp_path / "out"), "--model", str(tiny_model_folder),
                        "--device", "cpu", "--confidence"], capsys)
    assert code == 2 and "NaN" in err and nan in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    code, _, err = run(["rank", "--data", nan, "--model", str(tiny_model_folder), "--device", "cpu"], capsys)
    last = err.strip().splitlines()[-1]  # rank reports progress on stderr before the error
    assert code == 2 and last.startswith("error: ") and "NaN" in last and nan in last, err


def test_batch_size_must_be_positive(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, _, err = run(["segment", "x.nii.gz", "-o", str(tmp_path), "--batch-size", "0"], capsys)
    assert code == 2 and "--batch-size" in err


def test_console_script_entry_point_runs(tmp_path: Path, tiny_model_folder: Path) -> None:
    """Through a real subprocess, as a terminal user runs it."""
    source = write_volume(tmp_path / "s.mha")
    completed = subprocess.run([sys.executable, "-m", "NeonatalLungSegLib.cli.main", "segment", str(source), "-o",
                                str(tmp_path / "o"), "--model", str(tiny_model_folder), "--device", "cpu"],
                               capture_output=True, text=True, timeout=300,
                               env={"PYTHONPATH": str(Path(__file__).resolve().parents[2] / "NeonatalLungSeg"),
                                    "PATH": "/usr/bin:/bin"})
    assert completed.returncode == 0, completed.stderr
    assert (tmp_path / "o" / "s_lungs.nii.gz").is_file()


def test_a_single_compressed_input_is_decompressed_once(tmp_path: Path, tiny_model_folder: Path,
                                                        capsys, monkeypatch) -> None:
    """One pass over a .nii.gz checks and decodes it (the probe reads its header only) and ITK never reads it
    again; the first runs read it five times, then twice (a check and ITK's read, which could disagree)."""
    from NeonatalLungSegLib.volumes import nifti_reader

    source = write_volume(tmp_path / "one.nii.gz")
    passes = []
    real_scan = nifti_reader.scan
    monkeypatch.setattr(nifti_reader, "scan", lambda path, sink=None, header_only=False:
                        passes.append((str(path), header_only)) or real_scan(path, sink, header_only))
    reads = []
    real_read = sitk.ReadImage
    monkeypatch.setattr(sitk, "ReadImage", lambda *a, **k: reads.append(a[0]) or real_read(*a, **k))
    code, _, _ = run(["segment", str(source), "-o", str(tmp_path / "out"), "--model", str(tiny_model_folder),
                      "--device", "cpu"], capsys)
    assert code == 0
    assert passes == [(str(source), False)]
    assert not [p for p in reads if str(p) == str(source)]
