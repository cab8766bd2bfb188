"""The image's own evidence for a negative click (contrast_region.py, used by refine.py): the part of the
clicked lung that looks like the clicked spot, not like the rest of the lung, connected to the click."""

from __future__ import annotations

import numpy as np
import torch

from NeonatalLungSegLib.correction.clicks import Click
from NeonatalLungSegLib.correction.contrast_region import negative_region, robust_range
from test_refine import geometry_for, oracle_refiner

SPACING = (2.0, 1.0, 1.0)


def lung_with_false_tissue(shape=(30, 48, 48)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A dark lung in bright tissue, and a mask that also covers a slab of that tissue under the lung (the
    liver dome a model calls lung). Returns image, mask (bool) and the false part (bool)."""
    rng = np.random.default_rng(0)
    image = rng.normal(60.0, 4.0, shape).astype(np.float32)          # tissue
    lung = np.zeros(shape, bool)
    lung[4:26, 8:34, 8:40] = True
    image[lung] = rng.normal(10.0, 3.0, int(lung.sum()))             # aerated lung: dark
    false = np.zeros(shape, bool)
    false[4:26, 34:40, 8:40] = True                                   # six rows of tissue under it
    return image, lung | false, false


def test_a_click_on_false_tissue_removes_that_tissue_and_keeps_the_lung():
    image, mask, false = lung_with_false_tissue()
    region = negative_region(image, mask, (15, 37, 24), SPACING, robust_range(image))
    assert region is not None and not (region & ~mask).any()          # only voxels of the clicked lung
    kk, jj, ii = np.indices(mask.shape)
    near = ((kk - 15) * SPACING[0]) ** 2 + ((jj - 37) * SPACING[1]) ** 2 + ((ii - 24) * SPACING[2]) ** 2 <= 15 ** 2
    assert (region & false & near).sum() == (false & near).sum()      # all of the false slab near the click
    assert (region & false).sum() >= 0.6 * false.sum()                # and most of it
    assert (region & ~false).sum() <= 0.01 * (mask & ~false).sum()    # and next to nothing of the lung


def test_the_rule_does_not_depend_on_the_intensity_scale():
    image, mask, _ = lung_with_false_tissue()
    first = negative_region(image, mask, (15, 37, 24), SPACING, robust_range(image))
    scaled = image * 37.5 - 900.0
    second = negative_region(scaled, mask, (15, 37, 24), SPACING, robust_range(scaled))
    np.testing.assert_array_equal(first, second)


def test_no_proposal_where_the_click_looks_like_the_lung_or_is_not_on_it():
    image, mask, _ = lung_with_false_tissue()
    spread = robust_range(image)
    assert negative_region(image, mask, (15, 20, 24), SPACING, spread) is None   # on aerated lung
    assert negative_region(image, mask, (15, 44, 24), SPACING, spread) is None   # outside the mask


def test_false_tissue_is_not_followed_beyond_the_search_box():
    image, mask, false = lung_with_false_tissue(shape=(30, 48, 160))
    mask[:] = False
    mask[4:26, 8:34, 8:150] = True
    image[mask] = 10.0
    false[:] = False
    false[4:26, 34:40, 8:150] = True                                  # a slab 142 voxels long
    mask |= false
    region = negative_region(image, mask, (15, 37, 20), SPACING, robust_range(image))
    assert region is not None and region[:, :, :8].sum() == 0
    assert 0 < region.sum() < false.sum()                             # local: not the whole slab


def mask_copying_refiner():
    """A network that only copies the mask, as a refinement network does where it trusts the model."""
    refiner = oracle_refiner(threshold_weight=0.0, click_weight=0.0)
    with torch.no_grad():
        refiner.network.weight[0, 1, 0, 0] = 40.0                      # lung = the current mask
        refiner.network.bias.fill_(-20.0)
    return refiner


def carried_into_tissue() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dark lungs in bright tissue (image, true labels) and a mask whose right lung runs into the tissue."""
    image = np.zeros((30, 64, 64), np.float32)
    image[:, 8:60, 4:60] = 1.0                                        # bright body tissue
    labels = np.zeros(image.shape, np.uint8)
    labels[5:25, 20:44, 8:26] = 1
    labels[5:25, 20:44, 38:56] = 2
    image[labels > 0] = 0.1                                           # dark aerated lungs
    current = labels.copy()
    current[8:22, 44:50, 8:26] = 1                                    # right lung carried into the tissue
    return image, labels, current


def test_the_engine_removes_false_tissue_the_network_keeps():
    """A network that keeps the mask still lets a negative click on bright false tissue remove it, and the
    other lung is untouched."""
    image, labels, current = carried_into_tissue()
    session = mask_copying_refiner().session(image, geometry_for(image.shape))
    out, outcome = session.apply(current, Click((15, 47, 17), False))
    assert outcome.lung == "right_lung" and outcome.image_contrast and not outcome.fallback
    np.testing.assert_array_equal(out[8:22, 44:50, 8:26], 0)
    assert (out[labels == 1] == 1).mean() >= 0.99
    np.testing.assert_array_equal(out[labels == 2], 2)


def test_bright_vessels_inside_the_lung_are_not_followed():
    """Vessels in real lung are as bright as the tissue around it; a false slab under the lung that touches
    a vessel must not take the vessel tree with it."""
    image, mask, false = lung_with_false_tissue()
    vessel = np.zeros_like(mask)
    vessel[14:17, 14:34, 22:25] = True                                # a bright vessel from the slab up into the lung
    image[vessel] = 60.0
    region = negative_region(image, mask, (15, 37, 24), SPACING, robust_range(image))
    assert region is not None and (region & false).sum() >= 0.6 * false.sum()
    depth_from_slab = 34 - np.argwhere(region & vessel)[:, 1] if (region & vessel).any() else np.array([0])
    assert depth_from_slab.max() <= 4                                 # a few voxels of it at most, not the tree
    assert (region & vessel).sum() <= 0.2 * vessel.sum()


def test_the_rule_can_be_switched_off_for_a_session():
    """With image_contrast=False a negative click is the network's alone (here a mask-copying network, so
    only the small fallback disk goes): for scans where lung may look like tissue (consolidation, BPD)."""
    image, _, current = carried_into_tissue()
    session = mask_copying_refiner().session(image, geometry_for(image.shape), image_contrast=False)
    out, outcome = session.apply(current, Click((15, 47, 17), False))
    assert outcome.fallback and not outcome.image_contrast
    assert 0 < ((current == 1) & (out == 0)).sum() <= np.pi * 2.0 ** 2 + 8


def test_a_click_on_a_thin_rim_is_not_judged_by_its_intensity():
    """In a one- or two-voxel rim every voxel is partial volume: the contrast would follow the lung's own
    blurred edge (on held-out synthetic volumes it took 15,000 voxels of real lung); rim_peel.py judges it."""
    image, mask, false = lung_with_false_tissue()
    mask[false] = False
    mask[4:26, 34:36, 8:40] = True                                    # two rows of tissue under the lung
    spread = robust_range(image)
    assert negative_region(image, mask, (15, 35, 24), SPACING, spread) is None   # layer 1
    assert negative_region(image, mask, (15, 34, 24), SPACING, spread) is None   # layer 2
    rim = negative_region(image, mask, (15, 35, 24), SPACING, spread, on_rim=True)  # where the peel declines
    assert rim is not None and rim[4:26, 34:36, 8:40].mean() > 0.5 and not rim[:, :34].any()


def erasing_network_and_a_false_rim():
    """A network that calls nothing lung (its proposal: erase the whole lung), and the carried-into-tissue
    scene with the right lung's mask two rows too far instead, those rows as dark as lung."""
    refiner = oracle_refiner(threshold_weight=0.0, click_weight=0.0)
    with torch.no_grad():
        refiner.network.bias.fill_(-20.0)                              # lung nowhere
    image, labels, current = carried_into_tissue()
    current[5:25, 44:46, 8:26] = 1                                     # two rows too far, dark as lung
    image[5:25, 44:46, 8:26] = 0.1
    current[8:22, 46:50] = 0
    return refiner, image, labels, current


def test_a_negative_click_takes_nothing_far_deeper_than_itself_even_when_the_network_says_so():
    """A network that calls nothing lung (its proposal: erase the whole lung) and a click on a two-voxel
    false rim: the edit stays in the mask's outer layers, the lung's core is kept."""
    refiner, image, labels, current = erasing_network_and_a_false_rim()
    session = refiner.session(image, geometry_for(image.shape), image_contrast=False, rim_peel=False)
    out, outcome = session.apply(current, Click((15, 45, 17), False))
    removed = (current == 1) & (out == 0)
    assert outcome.changed_voxels > 0 and removed[:, 44:46].sum() > 0
    assert (out[8:22, 24:40, 12:22] == 1).all()                        # the core of the lung is kept
    np.testing.assert_array_equal(out[labels == 2], 2)
    session.depth_limit = session.rim_reach = False                    # without the limits the core goes too
    unlimited, _ = session.apply(current, Click((15, 45, 17), False))
    assert (unlimited[8:22, 24:40, 12:22] == 0).all()


def test_the_depth_limit_on_crops_equals_the_whole_window():
    """within_click_depth takes depths on crops for speed; it must keep exactly what the whole window's
    distance map would."""
    from scipy import ndimage

    from NeonatalLungSegLib.correction.contrast_region import DEPTH_FACTOR, within_click_depth

    rng = np.random.default_rng(4)
    spacing = (2.5, 0.8, 1.1)
    for _ in range(5):
        mask = ndimage.gaussian_filter(rng.random((17, 70, 60)), 3) > 0.5
        region = mask & (ndimage.gaussian_filter(rng.random(mask.shape), 2) > 0.5)
        seed = tuple(int(v) for v in np.argwhere(region)[len(np.argwhere(region)) // 3])
        depth = ndimage.distance_transform_edt(mask, sampling=spacing)
        expected = region & (depth <= DEPTH_FACTOR * depth[seed] + max(spacing))
        np.testing.assert_array_equal(within_click_depth(region, mask, seed, spacing), expected)


def test_a_rim_click_takes_only_the_rim_near_it_when_the_network_pulls_in_the_whole_surface():
    """A network that calls nothing lung proposes, within the depth limit, a shell over the whole lung, all
    connected to a click on a two-voxel false rim: the edit keeps to a ball of the rim peel's reach."""
    from NeonatalLungSegLib.correction.rim_peel import REACH

    refiner, image, labels, current = erasing_network_and_a_false_rim()
    click, spacing = (15, 45, 17), np.array([2.0, 1.0, 1.0])          # k, j, i in mm (geometry_for)
    radius = REACH * ((current == 1).sum() * 2.0) ** (1 / 3)
    session = refiner.session(image, geometry_for(image.shape), image_contrast=False, rim_peel=False)
    distances = {}
    for rim_reach in (True, False):
        session.rim_reach = rim_reach
        out, outcome = session.apply(current, Click(click, False))
        removed = np.argwhere((current == 1) & (out == 0))
        assert outcome.changed_voxels == len(removed) > 0
        distances[rim_reach] = np.sqrt((((removed - click) * spacing) ** 2).sum(axis=1))
        np.testing.assert_array_equal(out[labels == 2], 2)
    assert distances[True].max() <= radius
    assert distances[False].max() > 1.5 * radius                       # without it: the shell's far side too


def test_the_rim_reach_leaves_a_deep_clicks_region_alone():
    from NeonatalLungSegLib.correction.contrast_region import within_rim_reach

    mask = np.zeros((20, 40, 40), bool)
    mask[2:18, 5:35, 5:35] = True
    region = mask.copy()
    np.testing.assert_array_equal(within_rim_reach(region, mask, (10, 20, 20), SPACING, 1e6), region)  # deep
    rim = within_rim_reach(region, mask, (10, 5, 20), SPACING, 1e3, reach=0.5)                        # layer 1
    assert rim[10, 5, 20] and 0 < rim.sum() < region.sum() and not rim[2].any()
