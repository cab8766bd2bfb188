"""The standard click simulation (interactive/simulate.py) and NoC arithmetic (interactive/noc.py)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from neonatal_lung_training.interactive.noc import noc
from neonatal_lung_training.interactive.simulate import next_click, perturbed_mask, training_clicks


def test_click_goes_to_the_centre_of_the_largest_error_with_the_right_sign():
    target = np.zeros((40, 40), np.uint8)
    target[5:35, 5:35] = 1
    current = target.copy()
    current[10:20, 10:20] = 0          # missed: 100 pixels
    current[36:39, 0:5] = 1            # false: 15 pixels
    click = next_click(target, current)
    assert click.positive and click.size == 100
    assert 13 <= click.position[0] <= 16 and 13 <= click.position[1] <= 16
    current[10:20, 10:20] = 1
    click = next_click(target, current)
    assert not click.positive and click.position[0] == 37
    current[36:39, 0:5] = 0
    assert next_click(target, current) is None


def test_3d_click_names_the_lung_and_a_swapped_lung_is_removed_first():
    reference = np.zeros((10, 20, 20), np.uint8)
    reference[2:8, 2:18, 2:9] = 1
    reference[2:8, 2:18, 11:18] = 2
    current = reference.copy()
    current[reference == 2] = 1                      # the left lung labelled right
    click = next_click(reference, current, labels=(1, 2), sampling=(2.0, 1.0, 1.0))
    assert not click.positive and click.label == 1 and reference[click.position] == 2


def test_training_clicks_fix_earlier_errors_and_keep_the_last_one():
    rng = np.random.default_rng(3)
    target = np.zeros((64, 64), bool)
    target[10:50, 10:30] = True
    for _ in range(20):
        start = perturbed_mask(target, rng)
        mask, plan = training_clicks(target, start, rng, max_clicks=4)
        assert len(plan.points) == len(plan.positive) == len(plan.amplitudes) <= 4
        assert all(0 < a <= 1 for a in plan.amplitudes)
        assert (mask != target).sum() <= (start != target).sum()   # earlier clicks only ever fix errors
        if plan.points and plan.amplitudes[-1] == 1.0:            # the last click sits on a remaining error
            row, col = (int(round(v)) for v in plan.points[-1])
            assert mask[row, col] != target[row, col]
        if plan.points:                      # the focus: one connected error of the last click's sign
            errors = (target & ~mask) if plan.positive[-1] else (mask & ~target)
            assert plan.focus.any() and (plan.focus <= errors).all()
            assert ndimage.label(plan.focus)[1] == 1
        else:
            assert plan.focus is None


def test_noc_counts_clicks_to_reach_the_target_and_caps_at_the_limit():
    assert noc([0.5, 0.85, 0.91, 0.96], 0.90, 20) == 2
    assert noc([0.5, 0.85, 0.91, 0.96], 0.95, 20) == 3
    assert noc([0.96], 0.95, 20) == 0
    assert noc([0.5, 0.6], 0.95, 20) == 20
