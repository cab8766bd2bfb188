"""New model versions made without training (issue 12): a weight average of fine-tunings of one parent is the
weighted mean of their tensors, naming its ingredients; a reframed folder keeps its weights and drops figures
measured under the old framing; folders that are not one network, unknown policies and reused versions are
refused with one line and nothing written."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_config
from NeonatalLungSegLib.inference.engine import Segmenter
from NeonatalLungSegLib.models.model_folder import load_state_dict, read_config, write_model_folder
from NeonatalLungSegLib.models.network import build_network
from neonatal_lung_training.release.model_versions import average_models, main
from training_fixtures import toy_case


def random_folder(root: Path, name: str, seed: int, **overrides) -> Path:
    torch.manual_seed(seed)
    config = tiny_config()
    config = dataclasses.replace(config, input=dataclasses.replace(config.input, **overrides))
    network = build_network(config)
    with torch.no_grad():  # batch-norm statistics differ too, as after real fine-tuning
        for module in network.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    write_model_folder(root / name, config, network.state_dict(), dtype="float32")
    return root / name


def test_the_average_is_the_weighted_mean_of_every_tensor_and_names_its_ingredients(tmp_path: Path) -> None:
    a, b = random_folder(tmp_path, "a", 1), random_folder(tmp_path, "b", 2)
    out = tmp_path / "soup"
    final = average_models([a, b], out, "0.0.2", weights=[3, 1])
    assert final.version == "0.0.2" and read_config(out) == final  # written, checksum verified on load
    sa, sb = load_state_dict(a, read_config(a)), load_state_dict(b, read_config(b))
    soup = load_state_dict(out, final)
    floats = [k for k, v in sa.items() if v.is_floating_point()]
    assert floats and any("running_var" in k for k in floats)
    for key in floats:
        torch.testing.assert_close(soup[key], 0.75 * sa[key] + 0.25 * sb[key], rtol=1e-5, atol=1e-6)
    assert sum(not torch.equal(sa[k], sb[k]) for k in floats) > 0.5 * len(floats)  # a mean, not a copy
    ingredients = final.training["averaged_from"]
    assert [i["share"] for i in ingredients] == [0.75, 0.25]
    assert [i["weights_sha256"] for i in ingredients] == [read_config(a).weights_sha256,
                                                          read_config(b).weights_sha256]
    assert "weight average" in final.training["recipe"] and (out / "MODEL_CARD.md").is_file()


def test_a_model_averaged_with_itself_segments_exactly_as_before(tmp_path: Path) -> None:
    a = random_folder(tmp_path, "a", 3)
    average_models([a, a], tmp_path / "same", "0.0.3")
    image, _ = toy_case(0)
    before = Segmenter.load(a, device="cpu", precision="fp32").segment_image(image).labels
    after = Segmenter.load(tmp_path / "same", device="cpu", precision="fp32").segment_image(image).labels
    np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize("change", [{"in_plane_size": (32, 32)}, {"intensity_method": "zscore"}])
def test_folders_of_another_network_or_framing_are_refused_with_one_line(tmp_path: Path, capsys, change) -> None:
    a, b = random_folder(tmp_path, "a", 1), random_folder(tmp_path, "b", 2, **change)
    out = tmp_path / "soup"
    assert main(["average", "-o", str(out), "--version", "1.0.0", "--model", str(a), "--model", str(b)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "'input' differs" in err and "\n" not in err
    assert not out.exists() and not list(tmp_path.glob(".soup.*"))


def test_bad_weights_and_an_existing_output_are_refused_and_nothing_is_overwritten(tmp_path: Path, capsys) -> None:
    a, b = random_folder(tmp_path, "a", 1), random_folder(tmp_path, "b", 2)
    base = ["--version", "1.0.0", "--model", str(a), "--model", str(b)]
    assert main(["average", "-o", str(tmp_path / "x")] + base + ["--weight", "1"]) == 2
    assert "1 weights for 2 models" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert main(["average", "-o", str(tmp_path / "x")] + base + ["--weight", "-1", "--weight", "2"]) == 2
    assert "non-negative" in capsys.readouterr().err
    before = (b / "model.safetensors").read_bytes()
    assert main(["average", "-o", str(b)] + base) == 2  # the output is an ingredient: never replaced
    assert "already exists" in capsys.readouterr().err and (b / "model.safetensors").read_bytes() == before


def test_reframing_makes_a_new_version_with_the_same_weights_and_no_stale_figures(tmp_path: Path, capsys) -> None:
    parent = random_folder(tmp_path, "parent", 4, in_plane_policy="keep_aspect")
    before = {p.name: p.read_bytes() for p in parent.iterdir()}
    out = tmp_path / "framed"
    assert main(["reframe", "--model", str(parent), "--policy", "body_crop", "--version", "0.0.2", "-o", str(out)]) == 0
    config, old = read_config(out), read_config(parent)
    assert config.input.in_plane_policy == "body_crop" and config.version == "0.0.2" \
        and config.parent_version == "0.0.1"
    assert config.weights_sha256 == old.weights_sha256 and config.validation == {}
    assert config.training["reframed_from"]["in_plane_policy"] == "keep_aspect"
    assert {p.name: p.read_bytes() for p in parent.iterdir()} == before  # the parent is never edited
    for bad, message in ((["--policy", "stretch", "--version", "0.0.3"], "unknown in-plane policy"),
                         (["--policy", "keep_aspect", "--version", "0.0.3"], "already frames"),
                         (["--policy", "body_crop", "--version", "0.0.1"], "new version")):
        assert main(["reframe", "--model", str(parent), "-o", str(tmp_path / "x")] + bad) == 2
        assert message in capsys.readouterr().err and not (tmp_path / "x").exists()
