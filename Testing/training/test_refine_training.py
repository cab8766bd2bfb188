"""Training the click-refinement network (interactive/train.py) on toy volumes, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_config
from NeonatalLungSegLib.models.model_folder import read_config, write_model_folder
from NeonatalLungSegLib.models.network import build_network
from NeonatalLungSegLib.correction.refine import Refiner
from neonatal_lung_training.interactive.train import (GUIDANCE, RefineTrainConfig, guidance_batch, main,
                                                      refine_config_for, widen_for_guidance)
from training_fixtures import toy_training_folder


@pytest.fixture(scope="module")
def parent(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    config = tiny_config(in_plane_policy="keep_aspect")
    folder = tmp_path_factory.mktemp("parent") / "seg"
    write_model_folder(folder, config, build_network(config).state_dict(), "float32")
    return folder


def test_widened_network_starts_as_its_parent_whatever_the_guidance(parent):
    from NeonatalLungSegLib.models.model_folder import load_state_dict

    parent_config = read_config(parent)
    child = refine_config_for(parent_config, RefineTrainConfig())
    assert child.input.guidance == GUIDANCE and child.training["parent"]["version"] == parent_config.version
    state = load_state_dict(parent, parent_config)
    parent_net, child_net = build_network(parent_config).eval(), build_network(child).eval()
    parent_net.load_state_dict(state)
    child_net.load_state_dict(widen_for_guidance(state, child))
    image = torch.rand(2, 1, 64, 64)
    guidance = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(child_net(torch.cat([image, guidance], 1)), parent_net(image))


def test_guidance_batch_has_a_mask_and_click_maps_in_range():
    target = np.zeros((6, 64, 64), np.float32)
    target[:, 10:50, 10:30] = 1
    config = RefineTrainConfig(empty_fraction=0.5, parent_fraction=0.0, max_clicks=3)
    maps, focus = guidance_batch(target, np.zeros_like(target), config, np.random.default_rng(0))
    assert maps.shape == (6, 3, 64, 64) and maps.min() >= 0 and maps.max() <= 1
    assert maps[:, 1:].max() > 0.5          # some clicks were drawn
    assert focus.shape == (6, 64, 64) and focus.any()
    # the focus is an error of the mask the network sees (missed or false lung), never a right pixel
    assert (focus <= ((maps[:, 0] > 0.5) != (target > 0.5))).all()


def test_rim_starts_in_training_are_the_target_plus_partial_volume_on_a_stretch_of_border():
    from neonatal_lung_training.interactive.simulate import rim_mask

    target = np.zeros((64, 64), bool)
    target[16:48, 12:32] = True
    image = np.full(target.shape, 100.0, np.float32)                 # tissue
    image[target] = 10.0                                              # lung
    image[14:50, 10:34][~target[14:50, 10:34]] = 30.0                 # two pixels of partial volume around it
    image[:, 32:34] = 95.0                                            # but tissue-bright on the right side
    rng = np.random.default_rng(1)
    for _ in range(10):
        mask = rim_mask(target, image, rng)
        added = mask & ~target
        assert (mask >= target).all() and added.any()
        assert (image[added] == 30.0).all()                           # only partial volume, never tissue
    config = RefineTrainConfig(empty_fraction=0.0, parent_fraction=0.0, rim_fraction=1.0, max_clicks=1)
    targets = np.repeat(target[None].astype(np.float32), 4, axis=0)
    with pytest.raises(ValueError, match="images"):
        guidance_batch(targets, np.zeros_like(targets), config, rng)
    maps, focus = guidance_batch(targets, np.zeros_like(targets), config, rng, np.repeat(image[None], 4, axis=0))
    assert ((maps[:, 0] > 0.5) >= target).all() and ((maps[:, 0] > 0.5) & ~target).any()
    assert maps[:, 2].max() > 0.5 and maps[:, 1].max() == 0           # the errors are false lung: negative clicks


def test_click_focus_loss_grades_only_the_clicked_error():
    from neonatal_lung_training.interactive.train import click_focus_loss

    targets = torch.zeros(1, 1, 8, 8)
    focus = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    focus[..., :2, :2] = True
    right_there = torch.full((1, 1, 8, 8), 10.0)   # wrong everywhere...
    right_there[..., :2, :2] = -10.0                 # ...except on the clicked error
    wrong_there = -right_there
    assert click_focus_loss(right_there, targets, focus) < 1e-4 < 0.5 < click_focus_loss(wrong_there, targets, focus)
    assert click_focus_loss(right_there, targets, torch.zeros_like(focus)) == 0
    # averaged over all pixels: the 4 clicked pixels count 4/64 of a fully wrong slice, not a whole slice
    assert click_focus_loss(wrong_there, targets, focus) == pytest.approx(10.0 * 4 / 64, rel=1e-3)


def test_refine_training_writes_a_loadable_model_and_resumes(tmp_path, parent):
    data = toy_training_folder(tmp_path / "toy", subjects=6)
    subjects = sorted({p.name.split("_v")[0] for p in (data / "images").iterdir()})
    (tmp_path / "split.json").write_text(json.dumps({"train": subjects[:4], "val": subjects[4:], "test": []}))
    config = {"data": str(data), "split_file": str(tmp_path / "split.json"), "parent_model": str(parent),
              "output": str(tmp_path / "refine"), "run_dir": str(tmp_path / "run"), "batch_size": 4,
              "steps_per_epoch": 2, "epochs": 2, "data_description": "toy ellipsoids; no real MRI",
              "rim_fraction": 0.3, "lr_patience": 5, "augment": {"enabled": False}}
    (tmp_path / "c.yaml").write_text(json.dumps(config))
    assert main(["--config", str(tmp_path / "c.yaml")]) == 0
    refiner = Refiner.load(tmp_path / "refine", device="cpu")
    assert refiner.config.training["best_epoch"] in (1, 2)
    assert (tmp_path / "refine" / "MODEL_CARD.md").read_text(encoding="utf-8").count("positive_clicks") == 1
    assert "into partial volume (30%)" in refiner.config.training["recipe"]
    from neonatal_lung_training.training import checkpoint
    assert checkpoint.load(tmp_path / "run" / "checkpoints" / checkpoint.LAST)["scheduler"]["patience"] == 5
    assert len((tmp_path / "run" / "log.csv").read_text(encoding="utf-8").splitlines()) == 2
    # a run stopped for time: the folder is written from the best checkpoint without training further
    config["output"] = str(tmp_path / "refine-again")
    (tmp_path / "c.yaml").write_text(json.dumps(config))
    assert main(["--config", str(tmp_path / "c.yaml"), "--finish-now"]) == 0
    assert len((tmp_path / "run" / "log.csv").read_text(encoding="utf-8").splitlines()) == 2
    assert read_config(tmp_path / "refine-again").weights_sha256 == read_config(tmp_path / "refine").weights_sha256
    # ... or from the end of training, with that epoch's validation Dice from the log
    config["output"] = str(tmp_path / "refine-last")
    (tmp_path / "c.yaml").write_text(json.dumps(config))
    assert main(["--config", str(tmp_path / "c.yaml"), "--finish-now", "--checkpoint", "last"]) == 0
    last = read_config(tmp_path / "refine-last")
    assert last.training["checkpoint"] == "end of training" and last.training["best_epoch"] == 2
    logged = float((tmp_path / "run" / "log.csv").read_text(encoding="utf-8").splitlines()[1].split(",")[2])
    assert last.validation["slice_dice_with_clicks"] == round(logged, 4)
    assert main(["--config", str(tmp_path / "c.yaml"), "--checkpoint", "last"]) != 0   # only with --finish-now


def test_training_continues_from_a_refine_model_and_refuses_a_segmentation_one(tmp_path, parent):
    from NeonatalLungSegLib.models.model_folder import load_state_dict
    from neonatal_lung_training.interactive.train import initial_state

    parent_config = read_config(parent)
    child = refine_config_for(parent_config, RefineTrainConfig())
    state = {k: torch.randn_like(v) if v.is_floating_point() else v
             for k, v in widen_for_guidance(load_state_dict(parent, parent_config), child).items()}
    write_model_folder(tmp_path / "refine", child, state, "float32")
    started = initial_state(RefineTrainConfig(init_model=str(tmp_path / "refine")), child, {})
    assert all(torch.equal(started[k], state[k]) for k in state)
    with pytest.raises(ValueError, match="not a click-refinement model"):
        initial_state(RefineTrainConfig(init_model=str(parent)), child, {})


def test_start_shares_over_one_are_refused(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("data: x\nempty_fraction: 0.5\nparent_fraction: 0.4\nrim_fraction: 0.2\n")
    assert main(["--config", str(tmp_path / "c.yaml")]) != 0
    assert "sum to at most 1" in capsys.readouterr().err


def test_unknown_config_field_is_refused(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("data: x\nlearning_rat: 0.1\n")
    assert main(["--config", str(tmp_path / "c.yaml")]) != 0
    assert "learning_rat" in capsys.readouterr().err
