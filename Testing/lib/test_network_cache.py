"""The traced-network cache (issue 16, start-up): same outputs as the network built from config, keyed by
the weights' SHA-256, rebuilt when damaged, switched off by the environment, and a `segment` that loads
from it imports neither smp nor torchvision nor timm."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO
from NeonatalLungSegLib.models import network_cache
from NeonatalLungSegLib.inference.engine import Segmenter
from NeonatalLungSegLib.errors import ModelFolderError
from NeonatalLungSegLib.models.model_folder import read_config


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv(network_cache.CACHE_ENV, str(folder))
    return folder


def test_first_load_builds_and_caches_then_the_cache_gives_the_same_logits(cache: Path,
                                                                           tiny_model_folder: Path) -> None:
    config = read_config(tiny_model_folder)
    built, origin = network_cache.load_network(tiny_model_folder, config)
    assert origin == "built, cached"
    [stored] = list(cache.iterdir())
    assert config.weights_sha256 in stored.name
    cached, origin = network_cache.load_network(tiny_model_folder, config)
    assert origin == "cache" and isinstance(cached, torch.jit.ScriptModule)
    x = torch.randn(5, config.input.channels, *config.input.in_plane_size)
    with torch.inference_mode():
        assert torch.allclose(cached(x), built(x), atol=1e-5)
        channels_last = x.contiguous(memory_format=torch.channels_last)
        assert torch.allclose(cached.to(memory_format=torch.channels_last)(channels_last), built(x), atol=1e-4)


def test_segmenter_from_the_cache_gives_the_same_labels(cache: Path, tiny_model_folder: Path) -> None:
    from NeonatalLungSegLib.geometry import Geometry

    array = np.random.default_rng(3).normal(200, 50, (6, 40, 48)).astype(np.float32)
    geometry = Geometry((48, 40, 6), (0.8, 0.8, 2.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()))
    plain = Segmenter.load(tiny_model_folder, device="cpu")
    first = Segmenter.load(tiny_model_folder, device="cpu", cache=True)
    second = Segmenter.load(tiny_model_folder, device="cpu", cache=True)
    assert (plain.network_origin, first.network_origin, second.network_origin) == \
        ("built", "built, cached", "cache")
    reference = plain.segment_array(array, geometry, options=None, with_probabilities=True)
    for segmenter in (first, second):
        result = segmenter.segment_array(array, geometry, options=None, with_probabilities=True)
        assert np.abs(result.probabilities - reference.probabilities).max() < 2e-3
        assert np.array_equal(result.labels, reference.labels)


def test_altered_weights_are_refused_even_with_a_cached_trace(cache: Path, tiny_model_folder: Path,
                                                              tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_folder, folder)
    network_cache.load_network(folder, read_config(folder))
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelFolderError, match="checksum"):
        network_cache.load_network(folder, read_config(folder))


def test_a_damaged_cache_file_is_rebuilt(cache: Path, tiny_model_folder: Path) -> None:
    config = read_config(tiny_model_folder)
    network_cache.load_network(tiny_model_folder, config)
    [stored] = list(cache.iterdir())
    stored.write_bytes(b"not a network")
    with pytest.warns(RuntimeWarning, match="unreadable cached network"):
        _, origin = network_cache.load_network(tiny_model_folder, config)
    assert origin == "built, cached"
    assert network_cache.load_network(tiny_model_folder, config)[1] == "cache"


def test_the_cache_can_be_switched_off(monkeypatch: pytest.MonkeyPatch, tiny_model_folder: Path) -> None:
    monkeypatch.setenv(network_cache.CACHE_ENV, "off")
    assert network_cache.cache_dir() is None
    assert network_cache.load_network(tiny_model_folder, read_config(tiny_model_folder))[1] == "built"
    monkeypatch.delenv(network_cache.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", "/somewhere")
    if sys.platform.startswith("linux"):
        assert network_cache.cache_dir() == Path("/somewhere/neonatal-lung-seg/networks")


def test_a_different_config_or_weights_gives_a_different_key(tiny_model_folder: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    config = read_config(tiny_model_folder)
    key = network_cache.cache_path(tmp_path, config)
    assert network_cache.cache_path(tmp_path, replace(config, weights_sha256="0" * 64)) != key
    other_input = replace(config, input=replace(config.input, in_plane_size=(96, 96)))
    assert network_cache.cache_path(tmp_path, other_input) != key


def test_segment_from_the_cache_imports_neither_smp_nor_torchvision_nor_timm(cache: Path, tmp_path: Path,
                                                                            tiny_model_folder: Path) -> None:
    """Start-up: the second `segment` of a model imports only what it needs."""
    from test_cli import write_volume

    source = write_volume(tmp_path / "case.nii.gz")
    script = ("import sys, json\nfrom NeonatalLungSegLib.cli.main import main\n"
              f"code = main(['segment', {str(source)!r}, '-o', sys.argv[1], '--model', {str(tiny_model_folder)!r},"
              " '--device', 'cpu'])\n"
              "print(json.dumps({'code': code, 'heavy': sorted(m for m in ('segmentation_models_pytorch',"
              " 'torchvision', 'timm', 'huggingface_hub', 'monai') if m in sys.modules)}))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "NeonatalLungSeg"), str(REPO / "Training")]),
           network_cache.CACHE_ENV: str(cache), "OMP_NUM_THREADS": "1"}
    answers = []
    for run in ("first", "second"):
        done = subprocess.run([sys.executable, "-c", script, str(tmp_path / run)], capture_output=True, text=True,
                              env=env, check=True)
        answers.append({**json.loads(done.stdout.strip().splitlines()[-1]), "stdout": done.stdout})
    assert answers[0]["code"] == answers[1]["code"] == 0
    assert "traced into the cache" in answers[0]["stdout"] and "traced" not in answers[1]["stdout"]
    assert "segmentation_models_pytorch" in answers[0]["heavy"]  # the first run builds the network
    assert answers[1]["heavy"] == []
