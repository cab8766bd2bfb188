"""The bundled click-refinement model on the bundled sample: clicks do what the user asked."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import BUNDLED_SAMPLE, BUNDLED_SAMPLE_LABELS, REPO
from NeonatalLungSegLib.correction.clicks import Click
from NeonatalLungSegLib.geometry import image_to_array
from NeonatalLungSegLib.inference.measure import dice
from NeonatalLungSegLib.models.model_folder import read_config
from NeonatalLungSegLib.correction.refine import Refiner
from NeonatalLungSegLib.models.registry import bundled_refine_model_folder, find_models
from neonatal_lung_training.interactive.simulate import next_click

BUNDLED_REFINE = REPO / "Resources" / "Models" / "neonatal-lung-refine-r50"


@pytest.fixture(scope="module")
def sample():
    image, geometry = image_to_array(sitk.ReadImage(str(BUNDLED_SAMPLE)))
    reference, _ = image_to_array(sitk.ReadImage(str(BUNDLED_SAMPLE_LABELS)))
    return image.astype(np.float32), reference.astype(np.uint8), geometry


@pytest.fixture(scope="module")
def refiner():
    return Refiner.load(BUNDLED_REFINE, device="cpu")


def test_registry_finds_it_as_a_refinement_model_only():
    assert bundled_refine_model_folder() == BUNDLED_REFINE
    assert [e.kind for e in find_models(remembered=False, environment=False, kind="refine")] == ["refine"]
    assert all(e.kind == "segmentation" for e in find_models(remembered=False, environment=False))


def test_card_says_what_it_was_trained_on_and_that_it_is_not_validated():
    config = read_config(BUNDLED_REFINE)
    card = (BUNDLED_REFINE / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "Not clinically validated" in card and "no real MRI" in config.training["data"]
    assert "mask, positive_clicks, negative_clicks" in card


def test_one_positive_click_per_lung_on_an_empty_mask_finds_both_lungs(refiner, sample):
    image, reference, geometry = sample
    session = refiner.session(image, geometry)
    labels = np.zeros_like(reference)
    for value, lung in ((1, "right_lung"), (2, "left_lung")):
        click = next_click(reference, labels, labels=(value,), sampling=tuple(geometry.spacing[::-1]))
        labels, outcome = session.apply(labels, Click(click.position, True))
        assert outcome.lung == lung and not outcome.fallback
    assert dice(labels == 1, reference == 1) >= 0.85
    assert dice(labels == 2, reference == 2) >= 0.85


def test_a_negative_click_removes_a_false_blob_and_leaves_the_rest(refiner, sample):
    image, reference, geometry = sample
    labels = reference.copy()
    k, j, i = (np.array(np.nonzero(reference == 1)).mean(axis=1)).astype(int)
    blob = np.zeros_like(reference, bool)
    blob[k - 3:k + 4, j - 40:j - 30, i - 5:i + 5] = True   # false "right lung" in front of the right lung
    blob &= reference == 0
    labels[blob] = 1
    out, outcome = refiner.session(image, geometry).apply(
        labels, Click(tuple(np.argwhere(blob)[len(np.argwhere(blob)) // 2]), False))
    assert outcome.lung == "right_lung"
    assert (out[blob] == 0).mean() >= 0.8                      # most of the false blob is gone
    assert (out[reference == 2] == 2).all()                    # the left lung untouched
    assert (out[reference == 1] == 1).mean() >= 0.97           # the true right lung kept
