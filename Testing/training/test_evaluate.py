"""The evaluate command: metrics against hand-computed values, then the command end to end on real files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from NeonatalLungSegLib.cli.main import main
from NeonatalLungSegLib.geometry import Geometry
from NeonatalLungSegLib.dataset.training_folder import add_case
from neonatal_lung_training.evaluation.evaluate import score_case
from neonatal_lung_training.evaluation.metrics import (RocCounts, dice, hausdorff95, iou, mean_surface_distance,
                                                       roc_auc, slice_dice_by_position, surface_distances,
                                                       volume_errors)

# ---------------------------------------------------------------- overlap and surface distance, by hand


def test_line_masks_give_hand_computed_overlap_and_distances() -> None:
    """Two voxel rows along k on a (10, 1, 1) grid, 2 mm slices: every voxel is a surface voxel.

    A = k 0..3, B = k 2..7. A->B distances 4, 2, 0, 0 mm; B->A 0, 0, 2, 4, 6, 8 mm.
    HD95 = max(P95[0,0,2,4] = 3.7, P95[0,0,2,4,6,8] = 7.5) = 7.5; MSD = (6/4 + 20/6) / 2.
    """
    a, b = np.zeros((10, 1, 1), bool), np.zeros((10, 1, 1), bool)
    a[0:4], b[2:8] = True, True
    spacing = (2.0, 0.7, 0.3)
    assert dice(a, b) == pytest.approx(0.4) and iou(a, b) == pytest.approx(0.25)
    assert hausdorff95(a, b, spacing) == pytest.approx(7.5)
    assert mean_surface_distance(a, b, spacing) == pytest.approx((6 / 4 + 20 / 6) / 2)
    assert hausdorff95(b, a, spacing) == pytest.approx(7.5)  # symmetric


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_separated_cubes_on_anisotropic_grid_use_the_spacing_of_the_shift_axis(axis: int) -> None:
    """2-voxel cubes 8 voxels apart along one axis: half the directed distances are 8 steps, half 9."""
    spacing = (2.5, 1.0, 0.7)  # k, j, i
    a = np.zeros((14, 14, 14), bool)
    a[1:3, 1:3, 1:3] = True
    b = np.roll(a, 9, axis=axis)  # occupies 10..11 on that axis: gaps of 8 and 9 (and 10 for the far pair)
    step = spacing[axis]
    # Nearest B voxel of A's row at 1 is at 10 (9 steps), of A's row at 2 is at 10 (8 steps).
    assert mean_surface_distance(a, b, spacing) == pytest.approx(8.5 * step)
    assert hausdorff95(a, b, spacing) == pytest.approx(9 * step)  # P95 of equal halves of 8 and 9 steps
    assert dice(a, b) == 0.0 and iou(a, b) == 0.0


def test_identical_masks_have_zero_distance_and_empty_masks_are_nan_or_inf() -> None:
    a = np.zeros((6, 6, 6), bool)
    a[1:5, 1:5, 1:5] = True
    empty = np.zeros_like(a)
    assert surface_distances(a, a, (1, 2, 3)) == {"hd95_mm": 0.0, "msd_mm": 0.0}
    assert all(np.isinf(v) for v in surface_distances(a, empty, (1, 1, 1)).values())
    assert all(np.isinf(v) for v in surface_distances(empty, a, (1, 1, 1)).values())
    assert all(np.isnan(v) for v in surface_distances(empty, empty, (1, 1, 1)).values())
    assert dice(empty, empty) == iou(empty, empty) == 1.0 and dice(a, empty) == 0.0
    with pytest.raises(ValueError, match="spacing"):
        hausdorff95(a, a, (1.0, 0.0, 1.0))


def test_iou_and_dice_relation_on_random_masks() -> None:
    rng = np.random.default_rng(4)
    for _ in range(5):
        a, b = rng.random((8, 9, 10)) > 0.6, rng.random((8, 9, 10)) > 0.4
        d = dice(a, b)
        assert iou(a, b) == pytest.approx(d / (2 - d))


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_surface_distances_agree_with_monai_on_blobs_with_anisotropic_spacing() -> None:
    """Same definitions as MONAI's HausdorffDistanceMetric(percentile=95) and SurfaceDistanceMetric."""
    torch = pytest.importorskip("torch")
    monai_metrics = pytest.importorskip("monai.metrics")
    from scipy import ndimage

    rng = np.random.default_rng(7)
    spacing = (2.0, 0.8, 0.55)
    a = ndimage.gaussian_filter(rng.random((20, 30, 26)), 2.5) > 0.5
    b = ndimage.gaussian_filter(rng.random((20, 30, 26)), 2.5) > 0.49
    ta, tb = (torch.from_numpy(m[None, None].astype(np.float32)) for m in (a, b))
    hd = monai_metrics.compute_hausdorff_distance(ta, tb, include_background=True, percentile=95,
                                                  spacing=spacing)
    msd = monai_metrics.compute_average_surface_distance(ta, tb, include_background=True, symmetric=True,
                                                          spacing=spacing)
    ours = surface_distances(a, b, spacing)
    assert ours["hd95_mm"] == pytest.approx(float(hd), rel=1e-4)  # MONAI sums in float32
    assert ours["msd_mm"] == pytest.approx(float(msd), rel=1e-4)


def test_volume_errors_in_ml_and_percent() -> None:
    ref, pred = np.zeros((4, 4, 4), bool), np.zeros((4, 4, 4), bool)
    ref[:2], pred[:3] = True, True  # 32 and 48 voxels of 0.5 mL
    out = volume_errors(pred, ref, 0.5)
    assert out == pytest.approx({"volume_ref_ml": 16.0, "volume_pred_ml": 24.0, "volume_error_ml": 8.0,
                                 "volume_error_pct": 50.0, "volume_abs_error_pct": 50.0})
    assert np.isnan(volume_errors(pred, np.zeros_like(ref), 0.5)["volume_error_pct"])

# ---------------------------------------------------------------- ROC


def test_auc_of_separating_reversed_tied_and_hand_computed_scores() -> None:
    truth = np.array([0, 0, 0, 1, 1], bool)
    assert roc_auc(np.array([0.1, 0.2, 0.3, 0.8, 0.9]), truth) == 1.0
    assert roc_auc(np.array([0.9, 0.8, 0.7, 0.2, 0.1]), truth) == 0.0
    assert roc_auc(np.full(5, 0.5), truth) == 0.5
    assert roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1], bool)) == pytest.approx(0.75)
    # Ties count one half: pairs (0.5|0.5)=.5, (0.5|0.2)=1, (0.9|0.5)=1, (0.9|0.2)=1 -> 3.5 / 4.
    assert roc_auc(np.array([0.5, 0.5, 0.2, 0.9]), np.array([1, 0, 0, 1], bool)) == pytest.approx(0.875)
    assert np.isnan(roc_auc(np.array([0.1, 0.2]), np.array([1, 1], bool)))


def test_auc_matches_mann_whitney_and_random_scores_give_one_half() -> None:
    from scipy.stats import rankdata

    rng = np.random.default_rng(3)
    scores = np.round(rng.random(5000), 2)  # many ties
    truth = rng.random(5000) < 0.3 + 0.3 * scores
    ranks = rankdata(scores)
    n_pos, n_neg = truth.sum(), (~truth).sum()
    expected = (ranks[truth].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    assert roc_auc(scores, truth) == pytest.approx(expected, abs=1e-12)
    random_truth = rng.random(200_000) < 0.2
    assert roc_auc(rng.random(200_000), random_truth) == pytest.approx(0.5, abs=0.01)
    # Pooling counts of two halves equals the ROC of the whole.
    half = len(scores) // 2
    pooled = RocCounts.from_scores(scores[:half], truth[:half]) + RocCounts.from_scores(scores[half:], truth[half:])
    assert pooled.auc() == pytest.approx(expected, abs=1e-12)
    fpr, tpr, _ = pooled.curve()
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1) and np.all(np.diff(fpr) >= 0)

# ---------------------------------------------------------------- position along the lung


def test_slice_dice_by_position_thirds() -> None:
    reference = np.zeros((15, 4, 4), bool)
    reference[3:12] = True  # 9 slices: 3..5 low third, 6..8 middle, 9..11 high third
    predicted = reference.copy()
    predicted[3:6] = False     # low third missed
    predicted[6:9, :2] = False  # middle third half found: Dice 2*8/(8+16)
    out = slice_dice_by_position(predicted, reference, axis=0, apex_at_high_index=True)
    assert out == pytest.approx({"apex": 1.0, "middle": 2 / 3, "base": 0.0})
    flipped = slice_dice_by_position(predicted, reference, axis=0, apex_at_high_index=False)
    assert flipped == pytest.approx({"apex": 0.0, "middle": 2 / 3, "base": 1.0})
    assert all(np.isnan(v) for v in slice_dice_by_position(predicted, np.zeros_like(reference)).values())


@pytest.mark.parametrize("k_direction", [1.0, -1.0])
def test_score_case_finds_the_apex_from_physical_direction_not_array_order(k_direction: float) -> None:
    """Array index k grows towards superior (+1) or inferior (-1): the apex is always the superior third."""
    geometry = Geometry(size=(6, 5, 15), spacing=(0.8, 0.9, 2.0), origin=(0, 0, 0),
                        direction=(1, 0, 0, 0, 1, 0, 0, 0, k_direction))
    reference = np.zeros(geometry.array_shape, np.uint8)
    reference[3:12, :, :3], reference[3:12, :, 3:] = 1, 2
    predicted = reference.copy()
    predicted[9:12] = 0  # the third at high k: superior if k_direction > 0
    result = score_case(predicted, None, reference, geometry, "right_left")
    apex, base = result.row["slice_dice_apex"], result.row["slice_dice_base"]
    assert (apex, base) == ((0.0, 1.0) if k_direction > 0 else (1.0, 0.0))
    assert result.row["volume_ref_ml_lungs"] == pytest.approx(9 * 30 * 0.8 * 0.9 * 2.0 / 1000)
    assert result.row["dice_right"] == pytest.approx(2 * 6 * 15 / (9 * 15 + 6 * 15))
    assert np.isnan(result.row["auc_lungs"])
    lung_only = score_case(predicted > 0, None, reference > 0, geometry, "lung")
    assert np.isnan(lung_only.row["dice_right"]) and lung_only.row["dice_lungs"] == result.row["dice_lungs"]

# ---------------------------------------------------------------- the command end to end


@pytest.fixture(scope="module")
def labelled_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two synthetic right/left cases and one 'lung'-scheme case, through the real training-folder writer.

    Small grids (16 slices) keep the engine's share of the test short; the anatomy is in mm, so the
    lungs are the usual size on a coarse grid.
    """
    from neonatal_lung_training.synthesis.neonatal.generator import generate_case

    root = tmp_path_factory.mktemp("evaluate") / "data"
    for seed in range(2):
        case = generate_case(seed, shape=(16, 40, 40), spacing=(4.0, 3.0, 3.0))
        add_case(root, case.image, case.label, f"synth{seed}", source="synthetic", description="synthetic test")
    case = generate_case(7, shape=(16, 40, 40), spacing=(4.0, 3.0, 3.0))
    lung = sitk.Cast(case.label > 0, sitk.sitkUInt8)
    add_case(root, case.image, lung, "ctlike", label_scheme="lung", source="synthetic")
    return root


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("run")
    (run / "log.csv").write_text("epoch,train_loss,val_loss,val_dice,lr,seconds\n"
                                 "1,0.9,0.95,0.5,0.001,3\n2,0.6,0.7,0.7,0.001,3\n3,0.4,0.5,0.8,0.0005,3\n")
    return run


def _rows(report: Path) -> list[dict[str, str]]:
    with (report / "per_case.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_evaluate_writes_every_output_and_refuses_to_overwrite(tiny_model_folder: Path, labelled_folder: Path,
                                                               run_dir: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "report"
    args = ["evaluate", "--model", str(tiny_model_folder), "--data", str(labelled_folder), "--out", str(out),
            "--run-dir", str(run_dir), "--device", "cpu", "--worst", "2"]
    assert main(args) == 0
    stdout = capsys.readouterr().out
    assert "dice_lungs" in stdout and "tiny-test-model 0.0.1" in stdout
    for name in ("per_case.csv", "summary.json", "report.md", "dice_boxplot.png", "roc.png",
                 "position_dice.png", "training_curves.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    overlays = sorted((out / "overlays").glob("*.png"))
    assert len(overlays) == 2
    rows = _rows(out)
    assert len(rows) == 3 and {r["case_id"] for r in rows} == {"synth0_v001", "synth1_v001", "ctlike_v001"}
    lung_row = next(r for r in rows if r["label_scheme"] == "lung")
    assert lung_row["dice_right"] == "nan" and lung_row["dice_lungs"] != "nan"
    for row in rows:
        assert 0.0 <= float(row["dice_lungs"]) <= 1.0 and 0.0 <= float(row["auc_lungs"]) <= 1.0
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["data"]["cases"] == 3 and summary["models"][0]["version"] == "0.0.1"
    assert summary["metrics"]["tiny-test-model 0.0.1"]["dice_lungs"]["n"] == 3
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "tiny-test-model 0.0.1" in report and "not clinically validated" in report
    for name in ("dice_boxplot.png", "roc.png", "position_dice.png", "training_curves.png", overlays[0].name):
        assert name in report
    before = (out / "summary.json").read_bytes()
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "summary.json").read_bytes() == before
    assert main(args + ["--overwrite", "--worst", "0", "--precision", "fp32"]) == 0
    assert not (out / "overlays").exists() and (out / "report.md").is_file()
    # the precision each model ran in is recorded: models compared side by side must share one
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["models"][0]["precision"] == "fp32" and summary["models"][0]["backend"] == "torch"
    assert "cpu, fp32" in (out / "report.md").read_text(encoding="utf-8")


def test_two_models_side_by_side(tiny_model_folder: Path, labelled_folder: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture) -> None:
    import dataclasses

    import torch

    from NeonatalLungSegLib.models.model_folder import write_model_folder
    from NeonatalLungSegLib.models.network import build_network
    from conftest import tiny_config

    torch.manual_seed(1)
    config = dataclasses.replace(tiny_config(), version="0.0.2")
    second = tmp_path / "second"
    write_model_folder(second, config, build_network(config).state_dict(), dtype="float32")
    out = tmp_path / "report"
    assert main(["evaluate", "--model", str(tiny_model_folder), "--model", str(second), "--model",
                 str(tiny_model_folder), "--data", str(labelled_folder), "--out", str(out), "--device", "cpu",
                 "--worst", "1"]) == 0
    labels = ["tiny-test-model 0.0.1", "tiny-test-model 0.0.2", f"tiny-test-model 0.0.1 ({tiny_model_folder.name})"]
    stdout = capsys.readouterr().out
    header = next(line for line in stdout.splitlines() if line.startswith("metric"))
    assert all(label in header for label in labels)
    rows = _rows(out)
    assert len(rows) == 9 and [sum(r["model"] == m for r in rows) for m in labels] == [3, 3, 3]
    report = (out / "report.md").read_text(encoding="utf-8")
    table_header = next(line for line in report.splitlines() if line.startswith("| metric |"))
    assert all(label in table_header for label in labels)
    # The same weights under two labels give the same figures.
    first = [r["dice_lungs"] for r in rows if r["model"] == labels[0]]
    assert first == [r["dice_lungs"] for r in rows if r["model"] == labels[2]]
    assert len(list((out / "overlays").glob("*.png"))) == 3


@pytest.mark.parametrize("problem", ["missing_data", "not_a_model", "not_a_report", "missing_log"])
def test_bad_input_is_one_line_and_exit_status_2(problem: str, tiny_model_folder: Path, labelled_folder: Path,
                                                 tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out, model, data = tmp_path / "report", tiny_model_folder, labelled_folder
    extra: list[str] = []
    if problem == "missing_data":
        data = tmp_path / "nowhere"
    elif problem == "not_a_model":
        model = labelled_folder
    elif problem == "not_a_report":
        out.mkdir()
        (out / "precious.txt").write_text("keep me")
        extra = ["--overwrite"]
    else:
        extra = ["--run-dir", str(tmp_path)]
    code = main(["evaluate", "--model", str(model), "--data", str(data), "--out", str(out), "--device", "cpu",
                 *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and len(err.splitlines()) == 1
    if problem == "not_a_report":
        assert (out / "precious.txt").read_text(encoding="utf-8") == "keep me" and "not an evaluation report" in err
    else:
        assert not out.exists()


def test_pooled_overlap_equals_overlap_of_the_stacked_masks_for_arrays_and_tensors() -> None:
    import torch

    from neonatal_lung_training.evaluation.metrics import PooledOverlap, dice, iou

    rng = np.random.default_rng(1)
    pred, ref = rng.random((5, 8, 8)) > 0.5, rng.random((5, 8, 8)) > 0.6
    ref[2] = False  # a lung-free slice: counted, never scored on its own
    for convert in (np.asarray, torch.from_numpy):
        pooled = PooledOverlap()
        for p, r in zip(pred, ref):
            pooled.add(convert(p), convert(r))
        assert pooled.dice == pytest.approx(dice(pred, ref)) and pooled.iou == pytest.approx(iou(pred, ref))
    assert PooledOverlap().dice == 1.0 and PooledOverlap().iou == 1.0


def test_physical_references_are_converted_with_each_models_boundary_convention(tmp_path: Path) -> None:
    """A reference that is exactly the network's own physical-convention mask scores Dice 1 for a model with the
    expert convention once converted (--references physical), and less when taken as stored."""
    from dataclasses import replace

    import torch

    from conftest import tiny_config
    from NeonatalLungSegLib.geometry import array_to_image
    from NeonatalLungSegLib.inference.engine import Segmenter
    from NeonatalLungSegLib.models.model_folder import write_model_folder
    from NeonatalLungSegLib.models.network import build_network
    from neonatal_lung_training.evaluation.evaluate import evaluate_case

    torch.manual_seed(0)
    config = tiny_config()
    state = build_network(config).state_dict()
    expert = replace(config, output=replace(config.output, boundary_min_share=0.75, boundary_psf_sigma=0.7))
    write_model_folder(tmp_path / "plain", config, state, dtype="float32")
    write_model_folder(tmp_path / "expert", expert, state, dtype="float32")
    geometry = Geometry((40, 36, 8), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()))
    from scipy import ndimage

    array = ndimage.gaussian_filter(np.random.default_rng(3).normal(0, 1, geometry.array_shape), 2)
    image = array_to_image(array.astype(np.float32), geometry)
    physical = Segmenter.load(tmp_path / "plain", device="cpu").segment_image(image).labels
    assert physical.any()
    label = array_to_image(physical, geometry)
    model = Segmenter.load(tmp_path / "expert", device="cpu")
    assert evaluate_case(model, image, label, references="physical")["dice_lungs"] == pytest.approx(1.0)
    assert evaluate_case(model, image, label)["dice_lungs"] < 0.999
