"""The lumen trace of Training/scripts/trachea_lumen_trace.py on a phantom: two lungs under soft tissue and a
tube of air rising between them, its edge labelled lung beside the right apex (what the network does on
proton-0006). The trace must take the labelled lumen and nothing of the lungs."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import numpy as np
import SimpleITK as sitk

SCRIPT = Path(__file__).resolve().parents[2] / "Training" / "scripts" / "trachea_lumen_trace.py"
trace = runpy.run_path(str(SCRIPT), run_name="trachea_lumen_trace")["trace"]

SHAPE = (40, 40, 60)  # k (superior), j (posterior), i (left)


def _phantom() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, image, the tube's voxels labelled lung)."""
    k, j, i = np.indices(SHAPE, dtype=float)
    labels = np.zeros(SHAPE, np.uint8)
    for value, centre in ((1, 21.0), (2, 39.0)):
        labels[((k - 15) / 12) ** 2 + ((j - 20) / 10) ** 2 + ((i - centre) / 9) ** 2 <= 1] = value
    image = np.zeros(SHAPE)
    image[:, 3:37, 3:57] = 100.0  # soft tissue; air outside the body
    image[labels > 0] = 10.0
    tube = ((j - 20) ** 2 + (i - 28.5) ** 2 <= 1.6 ** 2) & (k >= 16)  # touches the right lung's medial apex
    image[tube] = 2.0
    labels[tube] = 0
    wrong = tube & (i <= 28) & (k >= 21) & (k <= 25)
    labels[wrong] = 1
    return labels, image, wrong


def test_the_trace_takes_the_labelled_lumen_and_no_lung():
    labels, image, wrong = _phantom()
    taken = trace(labels, image, 0.25, 0.5, 75.0)
    assert taken.any()
    assert not (taken & ~wrong).any()  # nothing of either lung
    assert taken.sum() >= wrong.sum() // 2


def test_no_tube_above_the_apices_takes_nothing():
    labels, image, wrong = _phantom()
    image[30:] = np.where(image[30:] == 2.0, 100.0, image[30:])  # the tube ends under tissue: not an airway
    assert not trace(labels, image, 0.25, 0.5, 75.0).any()


def test_the_script_counts_what_the_experts_drew(tmp_path, capsys):
    labels, image, wrong = _phantom()
    taken = trace(labels, image, 0.25, 0.5, 75.0)
    first = tuple(int(v) for v in np.argwhere(taken)[0])
    expert = labels.copy()
    expert[wrong] = 0
    expert[first] = 1  # the experts drew one of the taken voxels as lung
    paths = {}
    for name, array in (("scan", image.astype(np.float32)), ("scan_lungs", expert), ("predicted", labels)):
        volume = sitk.GetImageFromArray(array)  # index axes (i, j, k) = L, P, S: LPS already
        paths[name] = tmp_path / f"{name}.nii.gz"
        sitk.WriteImage(volume, str(paths[name]))
    main = runpy.run_path(str(SCRIPT), run_name="trachea_lumen_trace")["main"]
    assert main(["--case", f"{paths['predicted']}:{tmp_path / 'scan'}"]) == 0
    case = json.loads(capsys.readouterr().out)["cases"]["scan"]
    assert case["taken"] == int(taken.sum())
    assert case["experts_lung"] == 1
    assert list(first) in case["voxels_k_j_i"]
