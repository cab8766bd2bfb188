"""`neonatal-lung-seg describe` and `segment --describe` as a user meets them: JSON, CSV row and HTML report per
case, one cohort CSV for a folder, bad input refused with one line and nothing written, the report opened in a
real (headless) browser."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import REPO
from NeonatalLungSegLib.cli.describe import COHORT_CSV as CLI_COHORT_CSV
from NeonatalLungSegLib.cli.main import main
from NeonatalLungSegLib.geometry import Geometry, array_to_image
from NeonatalLungSegLib.measurements import outputs as measurement_outputs
from NeonatalLungSegLib.measurements import surface_view
from NeonatalLungSegLib.measurements.descriptors import RESEARCH_USE, csv_columns

GEOMETRY = Geometry((64, 60, 50), (1.5, 1.4, 2.0), (-47.0, -41.0, -49.0), tuple(np.eye(3).ravel()))
CHROMIUM = Path("/usr/bin/chromium")
SAMPLE = REPO / "Resources" / "Sample" / "sample-neonatal-chest.nii.gz"
SAMPLE_LUNGS = REPO / "Resources" / "Sample" / "sample-neonatal-chest_reference-lungs.nii.gz"


def chest(right_mm: float = 16.0, left_mm: float = 14.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A body of soft tissue (100) in air with two spherical lungs of noisy low signal."""
    k, j, i = np.indices(GEOMETRY.array_shape)
    lps = GEOMETRY.index_to_lps(np.stack([i, j, k], axis=-1))
    x, y, z = lps[..., 0], lps[..., 1], lps[..., 2]
    scan = np.where((np.abs(x) <= 44) & (np.abs(y) <= 36) & (np.abs(z) <= 44), 100.0, 2.0).astype(np.float32)
    labels = np.zeros(GEOMETRY.array_shape, np.uint8)
    labels[(x + 20) ** 2 + y ** 2 + z ** 2 <= right_mm ** 2] = 1
    labels[(x - 20) ** 2 + y ** 2 + z ** 2 <= left_mm ** 2] = 2
    rng = np.random.default_rng(seed)
    scan[labels > 0] = rng.gamma(4.0, 6.0, int((labels > 0).sum())).astype(np.float32)
    return scan, labels


def write_case(folder: Path, name: str, scan: np.ndarray, labels: np.ndarray,
               labels_folder: Path | None = None) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (labels_folder or folder).mkdir(parents=True, exist_ok=True)
    scan_path, labels_path = folder / f"{name}.nii.gz", (labels_folder or folder) / f"{name}_lungs.nii.gz"
    sitk.WriteImage(array_to_image(scan, GEOMETRY), str(scan_path))
    sitk.WriteImage(array_to_image(labels, GEOMETRY), str(labels_path))
    return scan_path, labels_path


def run(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_describe_writes_json_csv_and_a_self_contained_report(tmp_path: Path, capsys) -> None:
    scan, labels = write_case(tmp_path / "in", "baby-01", *chest())
    out = tmp_path / "out"
    code, stdout, _ = run(["describe", scan, "--labels", labels, "-o", out, "--weight-kg", "1.4"], capsys)
    assert code == 0, stdout
    assert sorted(p.name for p in out.iterdir()) == ["baby-01_descriptors.csv", "baby-01_descriptors.json",
                                                      "baby-01_report.html"]
    result = json.loads((out / "baby-01_descriptors.json").read_text(encoding="utf-8"))
    voxel_ml = float(np.prod(GEOMETRY.spacing)) / 1000
    right_voxels = int((chest()[1] == 1).sum())
    assert result["lungs"]["right"]["volume_ml"] == pytest.approx(right_voxels * voxel_ml)
    assert result["lungs"]["right"]["volume_ml_per_kg"] == pytest.approx(right_voxels * voxel_ml / 1.4)
    assert result["lungs"]["right"]["volume_ml"] == pytest.approx(4 / 3 * math.pi * 16 ** 3 / 1000, rel=0.03)
    assert result["case"] == "baby-01" and result["weight_kg"] == 1.4 and result["model"] is None
    assert result["research_use"] == RESEARCH_USE
    rows = list(csv.DictReader(io.StringIO((out / "baby-01_descriptors.csv").read_text(encoding="utf-8"))))
    assert len(rows) == 1 and list(rows[0]) == csv_columns()
    assert float(rows[0]["left_volume_ml"]) == pytest.approx(result["lungs"]["left"]["volume_ml"])
    page = (out / "baby-01_report.html").read_text(encoding="utf-8")
    assert RESEARCH_USE in page and 'id="descriptors"' in page and "mL/kg" in page
    images = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(images) >= 5 and all(src.startswith("data:image/png;base64,") for src in images)
    assert not re.search(r"""(src|href)=["']?(https?:|//|file:)""", page)  # nothing fetched from elsewhere
    assert "@media print" in page and "baby-01" in stdout


def test_model_name_and_version_come_from_the_volumes_json_beside_the_labels(tmp_path: Path, capsys) -> None:
    scan, labels = write_case(tmp_path, "case", *chest())
    (tmp_path / "case_volumes.json").write_text(json.dumps({"model": {"name": "neonatal-lung-unet-r50",
                                                                      "version": "9.9.9"}}))
    code, _, _ = run(["describe", scan, "--labels", labels, "-o", tmp_path / "out"], capsys)
    assert code == 0
    result = json.loads((tmp_path / "out" / "case_descriptors.json").read_text(encoding="utf-8"))
    assert result["model"] == {"name": "neonatal-lung-unet-r50", "version": "9.9.9"}
    assert "neonatal-lung-unet-r50 9.9.9" in (tmp_path / "out" / "case_report.html").read_text(encoding="utf-8")


def test_cohort_csv_on_a_folder_of_five_cases(tmp_path: Path, capsys) -> None:
    sizes = [(16.0, 14.0), (15.0, 15.0), (17.0, 12.0), (13.0, 13.5), (16.5, 15.5)]
    for number, (right, left) in enumerate(sizes):
        write_case(tmp_path / "scans", f"case{number}", *chest(right, left, seed=number),
                   labels_folder=tmp_path / "labels")
    out = tmp_path / "out"
    code, stdout, _ = run(["describe", tmp_path / "scans", "--labels", tmp_path / "labels", "-o", out], capsys)
    assert code == 0
    assert CLI_COHORT_CSV == measurement_outputs.COHORT_CSV
    rows = list(csv.DictReader(io.StringIO((out / CLI_COHORT_CSV).read_text(encoding="utf-8"))))
    assert [row["case"] for row in rows] == [f"case{n}" for n in range(5)]
    for number, row in enumerate(rows):
        single = list(csv.DictReader(io.StringIO((out / f"case{number}_descriptors.csv").read_text(encoding="utf-8"))))[0]
        assert row == single
        right, left = sizes[number]
        assert float(row["right_left_volume_ratio"]) == pytest.approx((right / left) ** 3, rel=0.06)
    assert len(list(out.glob("*_report.html"))) == 5 and "cohort" in stdout


def other_grid(d: Path, scan: Path, labels: Path) -> None:
    shifted = Geometry(GEOMETRY.size, GEOMETRY.spacing, (0.0, 0.0, 0.0), GEOMETRY.direction)
    sitk.WriteImage(array_to_image(chest()[1], shifted), str(labels))


@pytest.mark.parametrize("edit, extra, message", [
    (other_grid, [], "labels are not on the scan's grid"),
    (lambda d, s, l: sitk.WriteImage(array_to_image(np.zeros(GEOMETRY.array_shape, np.uint8), GEOMETRY), str(l)),
     [], "no right lung (label 1) and no left lung (label 2)"),
    (lambda d, s, l: sitk.WriteImage(array_to_image(np.full(GEOMETRY.array_shape, 50.0, np.float32), GEOMETRY),
                                     str(s)), [], "no intensity range"),
    (lambda d, s, l: None, ["--weight-kg", "0"], "--weight-kg must be above 0 and at most 10 kg"),
    (lambda d, s, l: None, ["--weight-kg", "900"], "--weight-kg must be above 0 and at most 10 kg"),
    (lambda d, s, l: None, ["--labels", "FOLDER"], "must be a label file, not a folder"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path: Path, capsys, edit, extra, message) -> None:
    scan, labels = write_case(tmp_path / "in", "case", *chest())
    edit(tmp_path, scan, labels)
    extra = [str(tmp_path) if a == "FOLDER" else a for a in extra]
    args = ["describe", scan, "--labels", labels, "-o", tmp_path / "out", *extra]
    code, _, stderr = run(args, capsys)
    assert code == 2
    assert stderr.count("\n") == 1 and stderr.startswith("error: ") and message in stderr, stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_cohort_with_one_bad_case_writes_nothing(tmp_path: Path, capsys) -> None:
    for number in range(3):
        scan, labels = chest(seed=number)
        if number == 2:
            labels[labels == 2] = 0  # a mask without the left lung
        write_case(tmp_path / "scans", f"case{number}", scan, labels, labels_folder=tmp_path / "labels")
    out = tmp_path / "out"
    code, _, stderr = run(["describe", tmp_path / "scans", "--labels", tmp_path / "labels", "-o", out], capsys)
    assert code == 2 and "case2_lungs.nii.gz: no left lung (label 2)" in stderr
    assert not out.exists() or list(out.iterdir()) == []  # not even the two good cases, nor temporary files


def test_existing_outputs_need_overwrite_and_the_inputs_folder_can_take_them(tmp_path: Path, capsys) -> None:
    scan, labels = write_case(tmp_path, "case", *chest())
    inputs = {p: p.read_bytes() for p in (scan, labels)}
    assert run(["describe", scan, "--labels", labels, "-o", tmp_path], capsys)[0] == 0
    before = (tmp_path / "case_descriptors.json").read_text(encoding="utf-8")
    code, _, stderr = run(["describe", scan, "--labels", labels, "-o", tmp_path, "--weight-kg", "2"], capsys)
    assert code == 2 and "already exists; pass --overwrite" in stderr
    assert (tmp_path / "case_descriptors.json").read_text(encoding="utf-8") == before
    assert run(["describe", scan, "--labels", labels, "-o", tmp_path, "--weight-kg", "2", "--overwrite"],
               capsys)[0] == 0
    assert json.loads((tmp_path / "case_descriptors.json").read_text(encoding="utf-8"))["weight_kg"] == 2.0
    assert all(path.read_bytes() == data for path, data in inputs.items())
    assert not list(tmp_path.glob(".tmp-*"))


def test_without_offscreen_rendering_the_report_says_so(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(surface_view.sys, "executable", str(tmp_path / "no-such-python"))
    scan, labels = write_case(tmp_path, "case", *chest())
    code, _, _ = run(["describe", scan, "--labels", labels, "-o", tmp_path / "out"], capsys)
    assert code == 0
    page = (tmp_path / "out" / "case_report.html").read_text(encoding="utf-8")
    assert 'id="no-surface"' in page and "No 3D surface view: no offscreen OpenGL rendering here" in page
    assert len(re.findall(r"<img ", page)) == 5  # the four slices and the histogram


def test_segment_describe_refuses_what_it_cannot_describe(tmp_path: Path, tiny_model_folder: Path, capsys) -> None:
    scan, _ = write_case(tmp_path, "case", *chest())
    common = ["segment", scan, "-o", tmp_path / "out", "--model", tiny_model_folder, "--device", "cpu"]
    for extra, message in ((["--describe", "--no-postprocess"], "leave out --no-postprocess"),
                           (["--weight-kg", "1.2"], "--weight-kg is used only with --describe"),
                           (["--describe", "--weight-kg", "900"], "at most 10 kg")):
        code, _, stderr = run([*common, *extra], capsys)
        assert code == 2 and message in stderr and stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_segment_describe_on_the_bundled_sample(tmp_path: Path, capsys) -> None:
    """The bundled model on the bundled sample, described from memory: the same numbers as the labels it wrote."""
    out = tmp_path / "out"
    code, stdout, _ = run(["segment", SAMPLE, "-o", out, "--device", "cpu", "--describe", "--weight-kg", "1.1"],
                          capsys)
    assert code == 0, stdout
    name = "sample-neonatal-chest"
    volumes = json.loads((out / f"{name}_volumes.json").read_text(encoding="utf-8"))
    result = json.loads((out / f"{name}_descriptors.json").read_text(encoding="utf-8"))
    assert result["model"] == volumes["model"]
    assert result["lungs"]["right"]["volume_ml"] == pytest.approx(volumes["right_lung"]["volume_ml"])
    assert result["lungs"]["left"]["volume_ml_per_kg"] == pytest.approx(volumes["left_lung"]["volume_ml"] / 1.1)
    # and `describe` on the written labels gives the same descriptors
    code, _, _ = run(["describe", SAMPLE, "--labels", out / f"{name}_lungs.nii.gz", "-o", tmp_path / "again",
                      "--weight-kg", "1.1"], capsys)
    again = json.loads((tmp_path / "again" / f"{name}_descriptors.json").read_text(encoding="utf-8"))
    assert code == 0 and again["model"] == volumes["model"]
    assert again["lungs"] == result["lungs"]


def chromium_dom(page: Path, tmp_path: Path) -> str:
    """The DOM after load of a copy of ``page`` with a probe that records what the browser decoded and laid out."""
    probe = ('<script>window.addEventListener("load", function () {'
             'var images = Array.from(document.images), table = document.getElementById("descriptors");'
             'document.body.setAttribute("data-images", images.length);'
             'document.body.setAttribute("data-decoded", images.filter(function (i) {'
             ' return i.complete && i.naturalWidth > 0; }).length);'
             'document.body.setAttribute("data-table-rows", table ? table.rows.length : 0);'
             'document.body.setAttribute("data-table-height", table ? Math.round(table.getBoundingClientRect().height)'
             ' : 0);});</script>')
    copy = tmp_path / "probe.html"
    copy.write_text(page.read_text(encoding="utf-8").replace("</body>", probe + "</body>"), encoding="utf-8")
    done = subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
                           "--disable-background-networking", "--virtual-time-budget=10000", "--dump-dom",
                           copy.as_uri()], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_the_report_opens_in_headless_chromium_with_every_image_and_the_table(tmp_path: Path, capsys) -> None:
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is not installed (Debian package chromium); the report was not opened in a browser")
    scan, labels = write_case(tmp_path, "case", *chest())
    assert run(["describe", scan, "--labels", labels, "-o", tmp_path / "out"], capsys)[0] == 0
    dom = chromium_dom(tmp_path / "out" / "case_report.html", tmp_path)
    body = re.search(r"<body([^>]*)>", dom).group(1)
    values = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body))
    assert int(values["images"]) >= 5 and values["decoded"] == values["images"], values
    assert int(values["table-rows"]) > 30 and int(values["table-height"]) > 300, values
    assert "Sphericity" in dom and RESEARCH_USE in dom


def test_the_surface_view_renders_both_lungs_offscreen() -> None:
    png, why_not = surface_view.render_surface_png(chest()[1], GEOMETRY.spacing, size=(240, 200))
    if png is None:
        pytest.skip(f"no 3D view on this machine (the report says so instead): {why_not}")
    from PIL import Image  # matplotlib's dependency

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    blue = rgb[..., 2] > rgb[..., 0] + 60    # the right lung
    orange = rgb[..., 0] > rgb[..., 2] + 60  # the left lung
    assert blue.sum() > 500 and orange.sum() > 500
    # anterior view: the patient's right lung on the viewer's left
    assert np.nonzero(blue)[1].mean() < np.nonzero(orange)[1].mean()
