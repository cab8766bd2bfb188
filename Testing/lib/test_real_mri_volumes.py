"""The bundled model's lung volumes on the two real adult proton MRI volumes of ../shared/data (issue 28):
within 5 % of the expert masks per lung and for both lungs, Dice not below 0.936, and no air outside the
lungs labelled lung (trachea above the apices, gas under the diaphragm).

These volumes were the development data the boundary convention was chosen on (docs/reports/volume-bias/):
the test guards what was measured there; it is not evidence for it."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import BUNDLED_MODEL, SHARED_DATA
from NeonatalLungSegLib.geometry import image_to_array
from NeonatalLungSegLib.inference.engine import Segmenter

CASES = ("proton-0006", "proton-0012")


@pytest.fixture(scope="module")
def results() -> dict[str, tuple[np.ndarray, np.ndarray, dict, np.ndarray]]:
    """Per case: the engine's labels, the expert's, the inference record, and the labels without the air rules
    (the network runs once per case; post-processing twice)."""
    from NeonatalLungSegLib.inference.postprocess import PostprocessOptions

    folder = SHARED_DATA / "adult-proton-lung-mri"
    if not all((folder / f"{case}_lungs.nii.gz").is_file() for case in CASES):
        pytest.skip(f"{folder} with the expert masks is not here (../shared/data holds the real volumes)")
    segmenter = Segmenter.load(BUNDLED_MODEL, device="cpu", precision="fp32")
    out = {}
    for case in CASES:
        array, geometry = image_to_array(sitk.ReadImage(str(folder / f"{case}.nii.gz"), sitk.sitkFloat32))
        result = segmenter.segment_array(array, geometry)
        kept = segmenter.segment_array(array, geometry, PostprocessOptions(drop_extrapulmonary_air=False))
        reference, _ = image_to_array(sitk.ReadImage(str(folder / f"{case}_lungs.nii.gz")))
        out[case] = (result.labels, reference, result.inference, kept.labels)
    return out


@pytest.mark.parametrize("case", CASES)
def test_volume_of_each_lung_and_both_is_within_five_percent_of_the_expert(results, case) -> None:
    labels, reference, inference, _ = results[case]
    for name, predicted, truth in (("right", labels == 1, reference == 1), ("left", labels == 2, reference == 2),
                                   ("both", labels > 0, reference > 0)):
        error = predicted.sum() / truth.sum() - 1
        assert abs(error) <= 0.05, f"{case} {name} lung volume error {error:+.1%}"
    assert inference["boundary"]["rim_ml"] > 0  # the convention did the work, and says how much


def test_mean_dice_is_not_below_the_model_before_the_convention(results) -> None:
    dices = [2 * np.count_nonzero((labels > 0) & (reference > 0)) / (np.count_nonzero(labels)
             + np.count_nonzero(reference)) for labels, reference, _, _ in results.values()]
    assert np.mean(dices) >= 0.936, dices


@pytest.mark.parametrize("case", CASES)
def test_the_air_rules_remove_trachea_and_gas_and_never_expert_lung(results, case) -> None:
    """What inference/air/extrapulmonary_air.py removes on real MRI (the trachea above the carina on both volumes,
    a bowel-gas bubble on proton-0012) is never lung by the expert's mask."""
    cleaned, reference, _, kept = results[case]
    removed = (kept > 0) & (cleaned == 0)
    assert removed.sum() >= 20, f"{case}: the rules removed {int(removed.sum())} voxels"
    assert not (removed & (reference > 0)).any()
    assert not ((cleaned > 0) & (kept == 0)).any()  # they only ever remove


@pytest.mark.parametrize("case", CASES)
def test_almost_nothing_is_labelled_lung_far_from_the_experts_lungs(results, case) -> None:
    """What the committed overlays must not show: lung where the expert has none, more than three voxels
    (12 mm) from the expert's lungs (trachea, bowel gas, a strip of tissue under the base). Bundled 2.9.0 had
    155 and 71 such voxels (the tissue strip under proton-0012's left base among them); with the signal check
    of 2.10.0, 25 and 3, and 17 and 3 once the trachea tied to proton-0006's right apex went too (measured on
    AMD EPYC, fp32)."""
    from scipy import ndimage

    labels, reference, inference, _ = results[case]
    far = (labels > 0) & (ndimage.distance_transform_edt(reference == 0) > 3)
    assert far.sum() <= 40, f"{case}: {int(far.sum())} lung voxels more than 3 voxels from the expert's lungs"
    assert inference["boundary"]["tissue_ml"] > 0  # the signal check did part of it, and says how much


@pytest.mark.parametrize("case", CASES)
def test_no_lung_far_from_the_experts_in_the_upper_third_where_the_trachea_runs(results, case) -> None:
    """On proton-0006 the network labels three sections of the trachea and ties them in plane to the right
    apex, so the island rule of extrapulmonary_air.py keeps them (8 voxels more than 12 mm from the expert's
    lungs, all in the upper third); the air above them (inference/air/airway_column.py) takes them out."""
    from scipy import ndimage

    labels, reference, inference, _ = results[case]
    header = sitk.ReadImage(str(SHARED_DATA / "adult-proton-lung-mri" / f"{case}_lungs.nii.gz"))
    superior = np.asarray(header.GetDirection()).reshape(3, 3)[2]  # LPS z of each index axis (i, j, k)
    index_axis = int(np.argmax(np.abs(superior)))
    axis = 2 - index_axis  # the array is (k, j, i)
    far = (labels > 0) & (ndimage.distance_transform_edt(reference == 0) > 3)
    sections = np.flatnonzero((reference > 0).any(axis=tuple(a for a in range(3) if a != axis)))
    low, high = (sections[0], sections[-1]) if superior[index_axis] > 0 else (-sections[-1], -sections[0])
    position = np.arange(labels.shape[axis]) * (1 if superior[index_axis] > 0 else -1)  # grows superiorly
    upper = position >= low + 2 * (high - low) / 3
    count = int(np.compress(upper, far, axis=axis).sum())
    assert count == 0, f"{case}: {count} lung voxels far from the expert's in the upper third"
    assert "airway_ml" in inference["boundary"]
