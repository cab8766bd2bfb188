"""The int8 path's torch-free start (issue 16): its slice loop equals the torch loop given the same network, the
CPU is recognised without torch, and a whole `segment` on that path never imports torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from conftest import BUNDLED_MODEL, BUNDLED_SAMPLE, REPO
from NeonatalLungSegLib.inference import acceleration
from threadpoolctl import threadpool_info

from NeonatalLungSegLib.inference.array_inference import HALF_TINY, predict_slices_array, sigmoid
from NeonatalLungSegLib.geometry import image_to_array
from NeonatalLungSegLib.models.model_folder import read_config
from NeonatalLungSegLib.models.network import build_checked
from NeonatalLungSegLib.inference.preprocess import prepare
from NeonatalLungSegLib.inference.slice_inference import predict_slices


def test_the_array_loop_equals_the_torch_loop_for_the_same_network(tiny_model_folder: Path) -> None:
    """The tiny model is a real smp network; fed through both loops it must give the same probabilities."""
    config = read_config(tiny_model_folder)
    network = build_checked(tiny_model_folder, config).eval()
    array, geometry = image_to_array(sitk.ReadImage(str(BUNDLED_SAMPLE)))
    prepared = prepare(array.astype(np.float32), geometry, config.input)

    def as_array_network(batch: np.ndarray) -> np.ndarray:
        assert isinstance(batch, np.ndarray) and batch.dtype == np.float32
        # NumPy's BLAS holds to one thread while the network runs (its idle threads would spin on OpenVINO's cores)
        assert all(pool["num_threads"] == 1 for pool in threadpool_info() if pool["user_api"] == "blas")
        with torch.inference_mode():
            return network(torch.from_numpy(batch)).numpy()

    progress: list[float] = []
    got = predict_slices_array(as_array_network, prepared, config.input, 8, progress.append)
    want = predict_slices(network, prepared, config.input, torch.device("cpu"), 8, "fp32", False)
    assert got.dtype == np.float16 and got.shape == prepared.slices.shape
    np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), atol=1e-3)
    assert not np.any((got > 0) & (got < HALF_TINY))  # no float16 subnormals (slow to make, meaningless)
    assert progress[-1] == 1.0 and progress == sorted(progress)


def test_sigmoid_is_stable_and_equals_torch() -> None:
    logits = np.array([-1e4, -50.0, -1.5, 0.0, 2.0, 80.0, 1e4], dtype=np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is the right answer
        got = sigmoid(logits)
    np.testing.assert_allclose(got, torch.sigmoid(torch.from_numpy(logits)).numpy(), atol=1e-7)


@pytest.mark.parametrize("platform, nodes, expected", [
    ("linux", set(), False), ("linux", {"/dev/nvidiactl"}, True), ("linux", {"/dev/kfd"}, True),
    ("darwin", set(), True),
])
def test_the_cpu_is_recognised_without_torch_only_where_no_gpu_can_be(monkeypatch: pytest.MonkeyPatch,
                                                                       platform: str, nodes: set[str],
                                                                       expected: bool) -> None:
    monkeypatch.setattr(acceleration.sys, "platform", platform)
    monkeypatch.setattr(acceleration.os.path, "exists", lambda path: path in nodes)
    assert acceleration.gpu_may_be_present() is expected
    assert acceleration.cpu_is_the_device("auto") is not expected
    assert acceleration.cpu_is_the_device("cpu") and not acceleration.cpu_is_the_device("cuda")


def test_physical_cores_count_hyperthread_siblings_once() -> None:
    text = "".join(f"processor\t: {p}\nphysical id\t: {p // 4}\ncore id\t\t: {p % 2}\n\n" for p in range(8))
    assert acceleration.cores_in_cpuinfo(text) == 4          # 2 sockets x 2 cores, each with 2 threads
    assert acceleration.cores_in_cpuinfo(text, {0, 1, 2}) == 2  # an affinity mask of 3 threads on 2 cores
    assert acceleration.cores_in_cpuinfo("model name : x\n") == 0


def test_cpu_threads_follow_omp_num_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert acceleration.cpu_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "junk")
    assert acceleration.cpu_threads() == acceleration.physical_cores() >= 1


@pytest.mark.slow
def test_segment_on_the_int8_path_never_imports_torch(tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    code = (
        "import sys\n"
        "from NeonatalLungSegLib.cli.main import main\n"
        f"status = main(['segment', {str(BUNDLED_SAMPLE)!r}, '-o', {str(tmp_path / 'out')!r}, '--device', 'cpu',"
        " '--precision', 'int8'])\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'timm',"
        " 'segmentation_models_pytorch', 'monai'))\n"
        "print('LOADED', loaded)\n"
        "sys.exit(status)\n")
    env = {"PYTHONPATH": str(REPO / "NeonatalLungSeg"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "LOADED []" in done.stdout, done.stdout
    assert "int8" in done.stdout and (tmp_path / "out" / "sample-neonatal-chest_lungs.nii.gz").is_file()
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out" / "sample-neonatal-chest_lungs.nii.gz")))
    assert set(np.unique(labels)) == {0, 1, 2}


def test_the_int8_segmenter_device_still_works_where_a_torch_device_goes(mock_cpu) -> None:
    """Callers of the Segmenter API (benchmarks, evaluation) hand ``segmenter.device`` to torch."""
    pytest.importorskip("openvino")
    from NeonatalLungSegLib.inference.engine import Segmenter

    segmenter = Segmenter.load(BUNDLED_MODEL, device="cpu", precision="int8")
    assert segmenter.device.type == "cpu" and segmenter.device.index is None and str(segmenter.device) == "cpu"
    assert torch.zeros(2, device=segmenter.device).device == torch.device("cpu")
    assert torch.device(segmenter.device) == torch.device("cpu")
