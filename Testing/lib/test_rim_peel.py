"""A negative click on the mask's rim peels that stretch of the boundary (rim_peel.py, used by refine.py)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from NeonatalLungSegLib.correction.clicks import Click
from NeonatalLungSegLib.correction.rim_peel import MAX_LAYERS, REACH, rim_region
from test_contrast_region import mask_copying_refiner
from test_refine import geometry_for

SPACING = (2.0, 1.0, 1.0)


def ball_lung(shape=(40, 80, 80), radius_mm=30.0, spacing=SPACING) -> np.ndarray:
    grid = np.indices(shape, dtype=np.float32)
    centre = [(n - 1) / 2 for n in shape]
    return sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre, spacing)) <= radius_mm ** 2


def layers_of(mask: np.ndarray) -> np.ndarray:
    return ndimage.distance_transform_cdt(np.pad(mask, 1), metric="taxicab")[1:-1, 1:-1, 1:-1]


def with_rim(lung: np.ndarray, rows: slice) -> tuple[np.ndarray, np.ndarray]:
    """``lung`` plus one voxel layer over the part of its surface in ``rows``: (mask, the false rim)."""
    shell = ndimage.binary_dilation(lung, ndimage.generate_binary_structure(3, 1)) & ~lung
    rim = np.zeros_like(lung)
    rim[:, rows] = shell[:, rows]
    return lung | rim, rim


def test_a_click_on_a_one_voxel_rim_peels_that_layer_around_it_and_nothing_deeper():
    lung = ball_lung()
    mask, rim = with_rim(lung, slice(55, 80))                       # too generous over the bottom cap
    seed = tuple(int(v) for v in np.argwhere(rim & (layers_of(mask) == 1))[len(np.argwhere(rim)) // 2])
    region = rim_region(mask, seed, SPACING)
    assert region is not None and region[seed] and not (region & ~mask).any()
    assert (layers_of(mask)[region] == 1).all()                     # the outer layer only
    radius = REACH * (mask.sum() * np.prod(SPACING)) ** (1 / 3)
    kk, jj, ii = np.indices(mask.shape)
    near = ((kk - seed[0]) * SPACING[0]) ** 2 + ((jj - seed[1]) * SPACING[1]) ** 2 \
        + ((ii - seed[2]) * SPACING[2]) ** 2 <= radius ** 2
    assert not (region & ~near).any()                               # a patch around the click, not the whole cap
    assert (region & rim).sum() >= 0.6 * (rim & near & (layers_of(mask) == 1)).sum()
    assert (region & rim).sum() >= 20                               # far more than the one-voxel fallback


def test_a_click_two_layers_deep_peels_two_layers():
    lung = ball_lung()
    mask, _ = with_rim(lung, slice(55, 80))
    mask, _ = with_rim(mask, slice(56, 80))
    layers = layers_of(mask)
    candidates = np.argwhere(layers == 2)
    seed = tuple(int(v) for v in candidates[np.argmax(candidates[:, 1])])  # at the bottom of the cap
    region = rim_region(mask, seed, SPACING)
    assert region is not None and set(np.unique(layers[region])) == {1, 2}


def test_a_deep_click_is_left_to_the_network():
    mask = ball_lung()
    layers = layers_of(mask)
    deep = tuple(int(v) for v in np.argwhere(layers == MAX_LAYERS + 1)[0])
    assert rim_region(mask, deep, SPACING) is None
    assert rim_region(mask, (0, 0, 0), SPACING) is None             # not on the lung at all


def test_the_patch_does_not_jump_to_another_stretch_of_surface():
    """A thin gap inside the ball separates two surfaces of the same lung: only the clicked one is peeled."""
    mask = np.zeros((30, 60, 60), bool)
    mask[5:25, 10:28, 5:55] = True
    mask[5:25, 30:50, 5:55] = True                                  # the same lung beyond a two-row fissure
    region = rim_region(mask, (15, 27, 30), SPACING, reach=0.4)
    assert region is not None and region[:, :28].any() and not region[:, 30:].any()


def test_the_same_anatomy_at_another_voxel_size_gives_the_same_patch():
    lung = ball_lung()
    mask, rim = with_rim(lung, slice(55, 80))
    seed = tuple(int(v) for v in np.argwhere(rim & (layers_of(mask) == 1))[0])
    first = rim_region(mask, seed, SPACING)
    second = rim_region(mask, seed, tuple(3.0 * s for s in SPACING))
    np.testing.assert_array_equal(first, second)


def rim_scene() -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int, int]]:
    """Image, true labels, a mask one voxel too generous under the right lung, and a click on that rim."""
    image = np.ones((30, 64, 64), np.float32)
    labels = np.zeros(image.shape, np.uint8)
    labels[5:25, 20:44, 8:26] = 1
    labels[5:25, 20:44, 38:56] = 2
    image[labels > 0] = 0.1
    current = labels.copy()
    current[5:25, 44, 8:26] = 1                                     # one row too far down, as dark as lung
    image[5:25, 44, 8:26] = 0.1
    return image, labels, current, (15, 44, 17)


def test_the_engine_peels_a_rim_the_network_and_the_contrast_keep():
    image, labels, current, seed = rim_scene()
    session = mask_copying_refiner().session(image, geometry_for(image.shape))
    out, outcome = session.apply(current, Click(seed, False))
    assert outcome.rim_peel and not outcome.fallback and not outcome.image_contrast
    removed = (current == 1) & (out == 0)
    assert removed[:, 44].sum() >= 40                               # the rim row around the click
    assert (layers_of(current == 1)[removed] == 1).all()            # and nothing deeper than it
    np.testing.assert_array_equal(out[labels == 2], 2)              # the other lung untouched


def test_the_peel_can_be_switched_off_for_a_session():
    image, _, current, seed = rim_scene()
    session = mask_copying_refiner().session(image, geometry_for(image.shape), rim_peel=False)
    out, outcome = session.apply(current, Click(seed, False))
    assert outcome.fallback and not outcome.rim_peel
    assert 0 < ((current == 1) & (out == 0)).sum() <= np.pi * 2.0 ** 2 + 8


def test_with_the_image_the_peel_keeps_rim_voxels_that_look_like_the_lung():
    """A false rim brighter than the lung (partial volume with the tissue beyond): where the patch reaches the
    lung's own surface, which is as dark as the lung, that surface stays."""
    lung = ball_lung()
    mask, rim = with_rim(lung, slice(55, 80))
    image = np.where(lung, 10.0, 60.0).astype(np.float32)
    image[rim] = 35.0
    seed = tuple(int(v) for v in np.argwhere(rim & (layers_of(mask) == 1))[0])   # at the cap's edge
    geometric = rim_region(mask, seed, SPACING, reach=0.4)
    guided = rim_region(mask, seed, SPACING, reach=0.4, image=image, spread=50.0)
    assert (geometric & lung).sum() > 0                                # geometry alone takes real lung there
    assert guided is not None and guided[seed] and not (guided & lung).any()
    assert (guided & rim).sum() >= 0.9 * (geometric & rim).sum()


def test_with_the_image_a_rim_that_looks_like_the_lung_is_peeled_by_geometry():
    lung = ball_lung()
    mask, rim = with_rim(lung, slice(55, 80))
    image = np.where(mask, 10.0, 60.0).astype(np.float32)             # the false rim as dark as the lung
    seed = tuple(int(v) for v in np.argwhere(rim & (layers_of(mask) == 1))[0])
    np.testing.assert_array_equal(rim_region(mask, seed, SPACING, image=image, spread=50.0),
                                  rim_region(mask, seed, SPACING))


def test_a_part_no_thicker_than_the_rim_is_not_peeled():
    """A thin sheet of lung (two voxels, nothing deeper behind it) is not a rim: nothing is proposed (an
    early version then returned everything around the click that was not rim, background included)."""
    mask = np.zeros((30, 60, 60), bool)
    mask[5:25, 10:50, 20:22] = True
    assert rim_region(mask, (15, 30, 20), SPACING) is None
    lung = ball_lung()
    mask, rim = with_rim(lung, slice(55, 80))
    image = np.where(mask, 10.0, 60.0).astype(np.float32)
    seed = tuple(int(v) for v in np.argwhere(rim & (layers_of(mask) == 1))[0])
    image[seed] = 10.0
    image[tuple(slice(c - 1, c + 2) for c in seed)][mask[tuple(slice(c - 1, c + 2) for c in seed)]] = 40.0
    image[seed] = 10.0                                               # the clicked voxel unlike its rim
    region = rim_region(mask, seed, SPACING, image=image, spread=50.0)
    assert region is None or (region[seed] and not (region & ~mask).any())
