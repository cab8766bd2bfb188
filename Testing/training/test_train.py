"""The train command end to end at toy scale: real networks, real files, real processes.

Covers the issue's contract: subject-level split, resume after a kill, DDP with two gloo processes, and
fine-tuning lineage; plus config files and the refusal to mix runs.
"""

from __future__ import annotations

import json
import shutil
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from NeonatalLungSegLib.cli.main import main
from NeonatalLungSegLib.inference.engine import Segmenter
from NeonatalLungSegLib.models.model_folder import load_state_dict, read_config
from NeonatalLungSegLib.dataset.training_folder import read_training_folder
from neonatal_lung_training.training.config import TrainConfig, load_config_file
from neonatal_lung_training.training.dataset import cases_of, load_slices
from neonatal_lung_training.training.split import split_subjects
from training_fixtures import TINY_TRAIN_ARGS, toy_training_folder

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def toy_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return toy_training_folder(tmp_path_factory.mktemp("data") / "toy", subjects=10, versions=2)


def _env() -> dict[str, str]:
    paths = [str(REPO / "NeonatalLungSeg"), str(REPO / "Training"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p), "OMP_NUM_THREADS": "1"}


def _train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--data", str(data), "--output", str(out), *TINY_TRAIN_ARGS, *extra]


def test_train_writes_a_model_folder_with_split_log_card_and_test_metrics(toy_folder: Path,
                                                                         tmp_path: Path) -> None:
    out, run = tmp_path / "model", tmp_path / "run"
    assert main(["train", *_train_args(toy_folder, out, "--run-dir", str(run), "--epochs", "2",
                                       "--version", "0.0.1")]) == 0
    config = read_config(out)
    assert config.version == "0.0.1" and config.parent_version is None
    assert config.training["training_folder_manifest_sha256"] == read_training_folder(toy_folder).manifest_sha256
    assert config.training["subjects"] == {"train": 7, "val": 2, "test": 1}
    assert config.validation["cases"] == 2 and 0 <= config.validation["mean_dice_right_lung"] <= 1
    log = (run / "log.csv").read_text(encoding="utf-8").splitlines()
    assert log[0] == "epoch,train_loss,val_loss,val_dice,val_iou,lr,seconds" and len(log) == 3
    saved = json.loads((run / "run_config.json").read_text(encoding="utf-8"))
    assert saved["config"]["epochs"] == 2 and "torch" in saved["environment"]["packages"]
    assert (run / "checkpoints" / "best.pt").is_file() and (run / "checkpoints" / "last.pt").is_file()
    assert "not clinically validated" in (out / "MODEL_CARD.md").read_text(encoding="utf-8").lower()
    Segmenter.load(out, device="cpu")
    # --finish-now: the same run written again from its best checkpoint, without loading data or training
    shutil.rmtree(out)
    import neonatal_lung_training.training.train as train_module
    loads = []
    original = train_module.load_slices
    train_module.load_slices = lambda *a, **k: loads.append(a) or original(*a, **k)
    try:
        assert main(["train", *_train_args(toy_folder, out, "--run-dir", str(run), "--epochs", "2",
                                           "--version", "0.0.1"), "--finish-now"]) == 0
    finally:
        train_module.load_slices = original
    assert not loads and len((run / "log.csv").read_text(encoding="utf-8").splitlines()) == 3
    finished = read_config(out)
    assert finished.weights_sha256 == config.weights_sha256
    assert finished.training["training_slices"] == config.training["training_slices"]
    assert finished.training["epochs_run"] == config.training["epochs_run"] == 2


def test_finish_now_without_checkpoints_says_so(toy_folder: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    assert main(["train", *_train_args(toy_folder, tmp_path / "m", "--run-dir", str(tmp_path / "run")),
                 "--finish-now"]) != 0
    assert "no checkpoints to finish from" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_split_is_by_subject_and_seeded() -> None:
    subjects = [f"s{i:03d}" for i in range(100)]
    split = split_subjects(subjects, (0.7, 0.2, 0.1), seed=3)
    assert [len(split[k]) for k in ("train", "val", "test")] == [70, 20, 10]
    assert set().union(*split.values()) == set(subjects)
    assert not set(split["train"]) & set(split["val"]) and not set(split["val"]) & set(split["test"])
    assert split == split_subjects(list(reversed(subjects)), (0.7, 0.2, 0.1), seed=3)
    assert split != split_subjects(subjects, (0.7, 0.2, 0.1), seed=4)
    small = split_subjects(["a", "b", "c"], (0.7, 0.2, 0.1), seed=0)
    assert len(small["val"]) == 1 and len(small["train"]) >= 1


def test_slices_of_one_subject_never_span_sets(toy_folder: Path) -> None:
    folder = read_training_folder(toy_folder)
    split = split_subjects(folder.subjects(), (0.7, 0.2, 0.1), seed=0)
    config = TrainConfig(data=str(toy_folder), output="x", in_plane_size=32)
    from neonatal_lung_training.training.lineage import model_config_for

    input_config = model_config_for(config)[0].input
    parts = {name: cases_of(folder.cases, split[name]) for name in ("train", "val", "test")}
    for name, cases in parts.items():
        assert {c.subject for c in cases} == set(split[name])
        assert len(cases) == 2 * len(split[name])  # both versions of a subject go to the same set
        slices = load_slices(folder, cases, input_config, 0.3, 0)
        owners = {cases[i].subject for i in set(slices.case_ids.tolist())}
        assert owners <= set(split[name])


def test_resume_after_kill_continues_from_the_last_checkpoint(toy_folder: Path, tmp_path: Path) -> None:
    out, run = tmp_path / "model", tmp_path / "run"
    command = [sys.executable, "-m", "neonatal_lung_training.training.train",
               *_train_args(toy_folder, out, "--run-dir", str(run), "--epochs", "4", "--patience", "10",
                            "--steps-per-epoch", "25")]
    process = subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    last = run / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 300
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)  # mid-epoch 2: epoch 1's checkpoint is on disk
    process.wait(30)
    assert process.returncode == -signal.SIGKILL, process.stdout.read().decode()[-2000:]
    assert not out.exists()
    first_epoch = torch.load(last, weights_only=True)["epoch"]
    assert first_epoch < 4
    again = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert f"after epoch {first_epoch}" in again.stdout
    epochs = [int(line.split(",")[0]) for line in (run / "log.csv").read_text(encoding="utf-8").splitlines()[1:]]
    assert epochs == [1, 2, 3, 4]  # no epoch lost, none logged twice
    assert read_config(out).training["epochs_run"] == 4


def test_two_gloo_processes_train_through_torchrun(toy_folder: Path, tmp_path: Path) -> None:
    out, run = tmp_path / "model", tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "neonatal_lung_training.training.train",
               *_train_args(toy_folder, out, "--run-dir", str(run), "--epochs", "2", "--device", "cpu")]
    result = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("epoch   1") == 1  # one process logs
    assert len((run / "log.csv").read_text(encoding="utf-8").splitlines()) == 3
    Segmenter.load(out, device="cpu")


def test_fine_tuning_records_lineage_and_keeps_a_frozen_encoder(toy_folder: Path, tmp_path: Path) -> None:
    parent = tmp_path / "parent"
    assert main(["train", *_train_args(toy_folder, parent, "--epochs", "1", "--version", "1.0.0")]) == 0
    child = tmp_path / "child"
    assert main(["train", "--data", str(toy_folder), "--output", str(child), "--init-model", str(parent),
                 "--freeze-encoder", "--epochs", "1", "--batch-size", "4", "--reviewed-only",
                 "--latest-only", "--weights-dtype", "float32"]) == 0
    parent_config, child_config = read_config(parent), read_config(child)
    assert child_config.version == "1.1.0" and child_config.parent_version == "1.0.0"
    assert child_config.training["parent"] == {"name": parent_config.name, "version": "1.0.0",
                                               "weights_sha256": parent_config.weights_sha256}
    assert child_config.training["training_folder_manifest_sha256"] == \
        read_training_folder(toy_folder).manifest_sha256
    assert child_config.input == parent_config.input and child_config.network == parent_config.network
    subjects = child_config.training["subjects"]
    assert sum(subjects.values()) == 5  # reviewed subjects only, newest version of each
    named = child_config.training["split_subjects"]
    assert {k: len(v) for k, v in named.items()} == subjects
    reviewed = {c.subject for c in read_training_folder(toy_folder).cases
                if c.review_status in ("reviewed", "reference")}
    assert set().union(*named.values()) <= reviewed
    assert "training.split_subjects" in (child / "MODEL_CARD.md").read_text(encoding="utf-8")
    before, after = load_state_dict(parent, parent_config), load_state_dict(child, child_config)
    encoder = [k for k in before if k.startswith("encoder.")]
    assert encoder and all(torch.equal(before[k], after[k]) for k in encoder)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))


def test_anchor_decay_holds_the_weights_at_the_parent_and_is_recorded(toy_folder: Path, tmp_path: Path) -> None:
    """anchor_decay pulls every trained weight back towards the parent's after each step: at one learning rate
    of pull per unit (decay x learning rate = 1) nothing trained can move at all, while without it the same
    fine-tune moves them; the lineage records the setting."""
    parent = tmp_path / "parent"
    assert main(["train", *_train_args(toy_folder, parent, "--epochs", "1", "--version", "1.0.0")]) == 0
    moved = {}
    for name, decay in (("free", "0"), ("held", "1000")):  # learning rate 1e-3: 1000 x 1e-3 = all the way back
        child = tmp_path / name
        assert main(["train", "--data", str(toy_folder), "--output", str(child), "--init-model", str(parent),
                     "--anchor-decay", decay, "--learning-rate", "0.001", "--epochs", "1", "--batch-size", "4",
                     "--weights-dtype", "float32"]) == 0
        before, after = load_state_dict(parent, read_config(parent)), load_state_dict(child, read_config(child))
        weights = [k for k in before if k.endswith(".weight")]
        moved[name] = max(float((after[k] - before[k]).abs().max()) for k in weights)
        assert read_config(child).training["anchor_decay"] == float(decay)
    assert moved["free"] > 1e-4 and moved["held"] < 1e-6, moved
    assert "anchor_decay needs init_model (parent weights to stay near)" in \
        TrainConfig(data=str(toy_folder), output=str(tmp_path / "x"), anchor_decay=1.0).problems()
    assert any("anchor_decay must be 0 or more" in p for p in
               TrainConfig(data=str(toy_folder), output=str(tmp_path / "x"), anchor_decay=-1.0).problems())


def test_weight_average_writes_the_average_of_the_trained_weights(toy_folder: Path, tmp_path: Path) -> None:
    """weight_average keeps an exponential moving average of the weights, started at the parent's: what is
    written is that average (the last checkpoint holds it beside the trained weights, to resume both), and with
    a decay near 1 it stays at the parent while the trained weights move; the lineage records the setting."""
    import torch

    from neonatal_lung_training.training import checkpoint

    parent = tmp_path / "parent"
    assert main(["train", *_train_args(toy_folder, parent, "--epochs", "1", "--version", "1.0.0")]) == 0
    before = load_state_dict(parent, read_config(parent))
    weights = [k for k in before if k.endswith(".weight")]
    for name, decay in (("held", "0.999999"), ("mid", "0.5")):
        child, run = tmp_path / name, tmp_path / f"{name}.run"
        assert main(["train", "--data", str(toy_folder), "--output", str(child), "--init-model", str(parent),
                     "--weight-average", decay, "--learning-rate", "0.001", "--epochs", "1", "--batch-size", "4",
                     "--weights-dtype", "float32", "--run-dir", str(run)]) == 0
        written = load_state_dict(child, read_config(child))
        last = checkpoint.load(run / "checkpoints" / checkpoint.LAST)
        trained_moved = max(float((last["model"][k].float() - before[k]).abs().max()) for k in weights)
        written_moved = max(float((written[k] - before[k]).abs().max()) for k in weights)
        assert all(torch.equal(written[k], last["average"][k].float()) for k in weights)
        assert read_config(child).training["weight_average"] == float(decay)
        if name == "held":
            assert trained_moved > 1e-4 and written_moved < 1e-6, (trained_moved, written_moved)
        else:  # between the parent and the trained weights
            assert 0 < written_moved < trained_moved, (trained_moved, written_moved)
    assert any("weight_average must lie in [0, 1)" in p for p in
               TrainConfig(data=str(toy_folder), output=str(tmp_path / "x"), weight_average=1.0).problems())


def _moved_by_a_fine_tune(toy_folder: Path, tmp_path: Path, flag: str, values: tuple[str, ...],
                          suffix: str = ".weight") -> dict[str, float]:
    """How far one epoch from a toy parent moves the tensors named ``*suffix``, for each value of ``flag``;
    checks that each run records its value."""
    parent = tmp_path / "parent"
    assert main(["train", *_train_args(toy_folder, parent, "--epochs", "1", "--version", "1.0.0")]) == 0
    before = load_state_dict(parent, read_config(parent))
    names = [k for k in before if k.endswith(suffix)]
    assert names
    moved = {}
    for value in values:
        child = tmp_path / f"child-{value}"
        assert main(["train", "--data", str(toy_folder), "--output", str(child), "--init-model", str(parent),
                     flag, value, "--learning-rate", "0.001", "--epochs", "1", "--batch-size", "4",
                     "--weights-dtype", "float32"]) == 0
        after = load_state_dict(child, read_config(child))
        moved[value] = max(float((after[k] - before[k]).abs().max()) for k in names)
        assert float(read_config(child).training[flag.removeprefix("--").replace("-", "_")]) == float(value)
    return moved


def test_adam_eps_reaches_the_optimiser_and_is_recorded(toy_folder: Path, tmp_path: Path) -> None:
    """An epsilon far above every gradient turns Adam's normalised steps into steps proportional to the
    gradients (here vanishingly small), where the default moves the weights by about the learning rate."""
    moved = _moved_by_a_fine_tune(toy_folder, tmp_path, "--adam-eps", ("1e-8", "1e3"))
    assert moved["1e-8"] > 1e-4 and moved["1e3"] < 1e-3 * moved["1e-8"], moved
    assert any("adam_eps must be > 0" in p for p in
               TrainConfig(data=str(toy_folder), output=str(tmp_path / "x"), adam_eps=0.0).problems())


def test_config_file_flags_override_and_unknown_keys_fail(tmp_path: Path, toy_folder: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(f"data: {toy_folder}\noutput: {tmp_path / 'm'}\nepochs: 7\naugment:\n  gamma_range: [0.8, 1.2]\n")
    from neonatal_lung_training.training.train_cli import parse_config

    config = parse_config(["--config", str(path), "--epochs", "3"])
    assert config.epochs == 3 and config.augment.gamma_range == (0.8, 1.2)
    path.write_text("epoch: 3\n")
    with pytest.raises(ValueError, match="unknown config field"):
        load_config_file(path)


def test_a_run_folder_refuses_different_settings(toy_folder: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    assert main(["train", *_train_args(toy_folder, tmp_path / "a", "--run-dir", str(run), "--epochs", "1")]) == 0
    code = main(["train", *_train_args(toy_folder, tmp_path / "b", "--run-dir", str(run), "--epochs", "2")])
    assert code == 2 and "different settings" in capsys.readouterr().err


def test_train_refuses_an_existing_output_and_bad_data(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "model").mkdir()
    assert main(["train", "--data", str(tmp_path), "--output", str(tmp_path / "model")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path / "nothing"), "--output", str(tmp_path / "m2")]) == 2
    assert "not a training folder" in capsys.readouterr().err


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_training_precision_is_recorded_and_checkpoints_are_plain_fp32(toy_folder: Path, tmp_path: Path,
                                                                      precision: str,
                                                                      capsys: pytest.CaptureFixture) -> None:
    out, run = tmp_path / "model", tmp_path / "run"
    assert main(["train", *_train_args(toy_folder, out, "--run-dir", str(run), "--epochs", "1",
                                       "--precision", precision)]) == 0
    assert f"{precision} autocast" in capsys.readouterr().out
    saved = json.loads((run / "run_config.json").read_text(encoding="utf-8"))
    assert saved["config"]["precision"] == precision
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]
    floats = [t for t in state.values() if t.is_floating_point()]
    assert floats and all(t.dtype == torch.float32 and t.is_contiguous() for t in floats)
    Segmenter.load(out, device="cpu")


def test_training_precision_choices(capsys: pytest.CaptureFixture) -> None:
    from NeonatalLungSegLib.inference.acceleration import cpu_has_fast_bf16, resolve_training_precision

    cpu = torch.device("cpu")
    assert resolve_training_precision("auto", cpu) == ("bf16" if cpu_has_fast_bf16() else "fp32")
    assert resolve_training_precision("FP32", cpu) == "fp32"
    with pytest.raises(ValueError, match="precision"):
        resolve_training_precision("fp16", cpu)  # fp16 training would need loss scaling
    assert "precision must be" in "; ".join(TrainConfig(data="d", output="o", precision="int8").problems())


def test_a_2d_parent_widened_to_25d_starts_out_computing_the_same(tiny_model_folder) -> None:
    """channels 3 from a 1-channel parent: the centre slice carries the parent's weights, the neighbours
    start at zero, so on any input the child's output equals the parent's on the centre slice."""
    import torch

    from NeonatalLungSegLib.models.model_folder import load_state_dict
    from NeonatalLungSegLib.models.network import build_network
    from neonatal_lung_training.training.config import TrainConfig
    from neonatal_lung_training.training.lineage import model_config_for

    config = TrainConfig(data="unused", output="unused", init_model=str(tiny_model_folder), channels=3,
                         in_plane_policy="keep_aspect")
    child, state, parent = model_config_for(config)
    assert child.input.channels == 3 and child.input.in_plane_policy == "keep_aspect"
    assert parent.input.channels == 1
    widened = build_network(child).eval()
    widened.load_state_dict(state, strict=True)
    original = build_network(parent).eval()
    original.load_state_dict(load_state_dict(tiny_model_folder, parent), strict=True)
    batch = torch.rand(2, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(widened(batch), original(batch[:, 1:2]), rtol=1e-4, atol=1e-5)


def test_model_card_shows_external_real_data_figures_apart(tiny_model_folder, tmp_path: Path) -> None:
    """Figures on cases the model never trained on (validation.external) get their own table, not mixed in
    with the held-out metrics."""
    import dataclasses
    import shutil

    from NeonatalLungSegLib.models.model_folder import CONFIG_NAME, read_config
    from neonatal_lung_training.training.model_card import write_model_card

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_folder, folder)
    config = read_config(folder)
    config = dataclasses.replace(config, validation={"data": "synthetic", "dice_lungs": 0.9,
                                                     "external": {"real adult proton MRI": "Dice 0.91"}})
    (folder / CONFIG_NAME).write_text(json.dumps(config.to_dict(), indent=2), encoding="utf-8")
    card = write_model_card(folder).read_text(encoding="utf-8")
    external = card.split("## External evaluation")[1]
    assert "| real adult proton MRI | Dice 0.91 |" in external
    assert "external" not in card.split("## External evaluation")[0].split("## Evaluation")[1]


def test_half_precision_slice_storage_keeps_the_slices_and_halves_the_memory(toy_folder: Path) -> None:
    # a 2.5D training set of 38,000 slices held 12 GB in float32 and was killed for memory beside a second
    # training; the segmentation trainer now stores slices in float16 and widens each batch back to float32
    folder = read_training_folder(toy_folder)
    config = TrainConfig(data=str(toy_folder), output="x", in_plane_size=32, channels=3)
    from neonatal_lung_training.training.lineage import model_config_for

    input_config = model_config_for(config)[0].input
    full = load_slices(folder, folder.cases[:2], input_config, 0.3, 0)
    half = load_slices(folder, folder.cases[:2], input_config, 0.3, 0, storage=torch.float16)
    assert full.images.dtype == torch.float32 and half.images.dtype == half.targets.dtype == torch.float16
    assert half.images.shape == full.images.shape and half.images.shape[1] == 3
    assert half.images.element_size() * 2 == full.images.element_size()
    scale = float(full.images.abs().max())
    assert scale > 0
    assert float((half.images.float() - full.images).abs().max()) <= 1e-3 * scale
    assert float((half.targets.float() - full.targets).abs().max()) <= 1e-3
    assert np.array_equal(half.case_ids, full.case_ids)


def test_the_card_states_the_boundary_conventions_the_folder_sets(tiny_model_folder: Path, tmp_path: Path) -> None:
    import dataclasses
    import shutil

    from NeonatalLungSegLib.models.model_folder import CONFIG_NAME, read_config
    from neonatal_lung_training.training.model_card import write_model_card

    lines = {}
    for name, output in (("physical", {}), ("expert", {"boundary_min_share": 0.75, "boundary_psf_sigma": 0.7}),
                         ("checked", {"boundary_min_share": 0.75, "boundary_psf_sigma": 0.7,
                                      "boundary_signal_min_share": 0.5})):
        folder = tmp_path / name
        shutil.copytree(tiny_model_folder, folder)
        config = read_config(folder)
        config = dataclasses.replace(config, output=dataclasses.replace(config.output, **output))
        (folder / CONFIG_NAME).write_text(json.dumps(config.to_dict(), indent=2), encoding="utf-8")
        card = write_model_card(folder).read_text(encoding="utf-8")
        lines[name] = [line for line in card.splitlines() if line.startswith(("- Boundary voxels", "- Signal check"))]
    assert len(lines["physical"]) == 1 and "physical convention" in lines["physical"][0]
    assert len(lines["expert"]) == 1 and "at least 0.75" in lines["expert"][0]
    assert len(lines["checked"]) == 2 and "lung share of 0.5" in lines["checked"][1]
    assert "airway_ml" in lines["checked"][1]


def test_warmup_steps_scale_the_first_steps_and_are_recorded(toy_folder: Path, tmp_path: Path) -> None:
    """Over a warm-up far longer than the run, every step's learning rate is a small share of the planned
    one, so the weights move far less than without; the run records it and a negative one is refused."""
    moved = _moved_by_a_fine_tune(toy_folder, tmp_path, "--warmup-steps", ("0", "2000"))
    assert moved["0"] > 1e-4 and moved["2000"] < 0.05 * moved["0"], moved
    assert any("warmup_steps must be" in p for p in
               TrainConfig(data=str(toy_folder), output=str(tmp_path / "x"), warmup_steps=-1).problems())


def test_warm_up_scales_then_restores_the_planned_rates() -> None:
    from neonatal_lung_training.training.train import _warm_up

    optimiser = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    rates = []
    for step in range(6):
        _warm_up(optimiser, [0.5], step, 4)
        rates.append(optimiser.param_groups[0]["lr"])
    assert rates == [0.125, 0.25, 0.375, 0.5, 0.5, 0.5]
    _warm_up(optimiser, [0.5], 0, 0)  # off: the planned rate untouched
    assert optimiser.param_groups[0]["lr"] == 0.5


def test_batchnorm_momentum_reaches_every_batch_norm_and_is_recorded(toy_folder: Path, tmp_path: Path) -> None:
    """A tiny momentum keeps the parent's running statistics nearly where they were after a run on other data;
    PyTorch's default moves them; the run records it and a momentum outside (0, 1] is refused."""
    moved = _moved_by_a_fine_tune(toy_folder, tmp_path, "--batchnorm-momentum", ("0.1", "0.0001"), "running_mean")
    assert moved["0.1"] > 1e-3 and moved["0.0001"] < 0.05 * moved["0.1"], moved
    for bad in (0.0, 1.5):
        assert any("batchnorm_momentum must lie in (0, 1]" in p for p in
                   TrainConfig(data=str(toy_folder), output=str(tmp_path / "x"), batchnorm_momentum=bad).problems())
