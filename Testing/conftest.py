"""Shared pytest setup: make the library and the training package importable from a plain checkout."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
for _path in (REPO / "NeonatalLungSeg", REPO / "Training"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes more than a few seconds (large volumes, training)")
    config.addinivalue_line("markers", "gpu: needs a CUDA device; skipped where there is none")


TINY_NETWORK_ARGS = {"encoder_name": "resnet18", "encoder_depth": 3, "decoder_channels": [32, 16, 8],
                     "decoder_use_norm": "batchnorm"}


def tiny_config(**overrides):
    """A real but small smp U-Net config so engine tests run in milliseconds per slice."""
    from NeonatalLungSegLib.models.model_folder import InputConfig, ModelConfig, NetworkConfig

    return ModelConfig(name="tiny-test-model", version="0.0.1",
                       network=NetworkConfig(args=dict(TINY_NETWORK_ARGS)),
                       input=InputConfig(in_plane_size=(64, 64), **overrides))


@pytest.fixture
def mock_cpu(monkeypatch: pytest.MonkeyPatch):
    """Replace this CPU's features with a /proc/cpuinfo flag set for the rest of the test."""
    from NeonatalLungSegLib.inference import acceleration

    def use(flags: str):
        features = acceleration.CpuFeatures.from_flags(flags.split())
        monkeypatch.setattr(acceleration, "cpu_features", lambda: features)
        return features
    return use


@pytest.fixture(scope="session")
def tiny_model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder with random weights, written through the real writer."""
    import torch

    from NeonatalLungSegLib.models.model_folder import write_model_folder
    from NeonatalLungSegLib.models.network import build_network

    torch.manual_seed(0)
    config = tiny_config()
    folder = tmp_path_factory.mktemp("models") / "tiny"
    write_model_folder(folder, config, build_network(config).state_dict(), dtype="float32")
    return folder


@pytest.fixture(scope="session")
def tiny_refine_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A click-refinement model folder (input.guidance: mask and click maps) with random weights."""
    import torch

    from NeonatalLungSegLib.models.model_folder import write_model_folder
    from NeonatalLungSegLib.models.network import build_network

    torch.manual_seed(1)
    config = tiny_config(guidance=("mask", "positive_clicks", "negative_clicks"), in_plane_policy="keep_aspect")
    folder = tmp_path_factory.mktemp("refine-models") / "tiny-refine"
    write_model_folder(folder, config, build_network(config).state_dict(), dtype="float32")
    return folder


BUNDLED_MODEL = REPO / "Resources" / "Models" / "neonatal-lung-unet-r50"
BUNDLED_SAMPLE = REPO / "Resources" / "Sample" / "sample-neonatal-chest.nii.gz"
BUNDLED_SAMPLE_LABELS = REPO / "Resources" / "Sample" / "sample-neonatal-chest_reference-lungs.nii.gz"
