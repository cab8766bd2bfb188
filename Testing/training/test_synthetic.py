"""Synthetic neonatal chest MRI generator: determinism, anatomy, sides, contrast, topology, geometry, I/O.

The generator is the only source of training data, so what it promises (label 1 is the patient's right
lung, lungs dark but above air, touching/separated lungs on demand) is checked on real generated volumes.
Atlas tests read the GPL-3.0 fetal thorax atlas from ../shared/data and skip where it is absent.
"""

from __future__ import annotations

import math
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from NeonatalLungSegLib.geometry import Geometry, image_to_array
from neonatal_lung_training.synthesis.anatomy.procedural import Tissue, procedural_tissue
from neonatal_lung_training.synthesis.anatomy.atlas import _right_lung_label
from neonatal_lung_training.synthesis.anatomy.lung_topology import finalize_lungs
from neonatal_lung_training.synthesis.neonatal.generator import (SyntheticCase, _centred_geometry, default_atlas_dir,
                                              generate_case, write_case)

ATLAS = default_atlas_dir()
needs_atlas = pytest.mark.skipif(
    not ATLAS.is_dir(),
    reason=f"fetal thorax atlas not found at {ATLAS} (GPL-3.0 data, kept outside the repository)")
ANATOMIES = ["procedural", pytest.param("atlas", marks=needs_atlas)]
SIX = ndimage.generate_binary_structure(3, 1)
MONTAGE = Path(tempfile.gettempdir()) / "neonatal_synthetic_montage.png"


@lru_cache(maxsize=None)
def case(seed: int, anatomy: str = "procedural", touching: bool | None = None, clean: bool = False
         ) -> SyntheticCase:
    """Generated once per session: the same arguments always give the same volume anyway.

    ``clean``: no BPD-like patterns and no optional artefacts, for tests of the contrast itself.
    """
    extra = {"bpd_severity": 0.0, "artefacts": False} if clean else {}
    return generate_case(seed, anatomy=anatomy, touching_lungs=touching,
                         atlas_dir=ATLAS if anatomy == "atlas" else None, **extra)


def arrays(c: SyntheticCase) -> tuple[np.ndarray, np.ndarray, Geometry]:
    image, geometry = image_to_array(c.image)
    label, _ = image_to_array(c.label)
    return image, label, geometry


def centroid_x(label: np.ndarray, value: int, geometry: Geometry) -> float:
    """Physical LPS x (mm) of a label's centroid; +x is the patient's left."""
    return float(geometry.array_index_to_lps(np.argwhere(label == value).mean(axis=0))[0])


def components(mask: np.ndarray) -> int:
    return int(ndimage.label(mask, structure=SIX)[1])


@pytest.mark.parametrize("anatomy", ANATOMIES)
def test_same_seed_gives_bit_identical_volumes(anatomy: str) -> None:
    first = case(3, anatomy)
    again = generate_case(3, anatomy=anatomy, atlas_dir=ATLAS if anatomy == "atlas" else None)
    for a, b in ((first.image, again.image), (first.label, again.label)):
        assert np.array_equal(image_to_array(a)[0], image_to_array(b)[0])
    assert not np.array_equal(image_to_array(first.image)[0], image_to_array(case(4, anatomy).image)[0])
    assert (first.seed, first.anatomy) == (3, anatomy)


@pytest.mark.parametrize("anatomy", ANATOMIES)
def test_types_and_label_values(anatomy: str) -> None:
    c = case(0, anatomy)
    assert c.image.GetPixelID() == sitk.sitkFloat32
    assert c.label.GetPixelID() == sitk.sitkUInt8
    image, label, _ = arrays(c)
    assert set(np.unique(label).tolist()) == {0, 1, 2}
    assert image.min() >= 0.0 and 300.0 < np.percentile(image, 99.5) < 2000.0


@pytest.mark.parametrize("anatomy", ANATOMIES)
def test_lung_volumes_are_neonatal_and_right_is_larger(anatomy: str) -> None:
    volumes = []
    for seed in range(4):
        _, label, geometry = arrays(case(seed, anatomy))
        volumes.append([(label == v).sum() * geometry.voxel_volume_ml for v in (1, 2)])
    volumes = np.asarray(volumes)
    assert np.all((volumes > 10.0) & (volumes < 120.0)), volumes
    assert volumes[:, 0].mean() > volumes[:, 1].mean(), volumes


@pytest.mark.parametrize("anatomy", ANATOMIES)
@pytest.mark.parametrize("seed", [0, 1])
def test_label_1_lies_on_the_patients_right(anatomy: str, seed: int) -> None:
    _, label, geometry = arrays(case(seed, anatomy))
    assert centroid_x(label, 1, geometry) < -5.0 < 5.0 < centroid_x(label, 2, geometry)


def test_lungs_span_most_slices_with_neck_and_abdomen_margins() -> None:
    for seed in range(4):
        _, label, _ = arrays(case(seed))
        both = (label == 1).any(axis=(1, 2)) & (label == 2).any(axis=(1, 2))
        assert both.mean() > 0.5
        assert not label[:2].any() and not label[-2:].any()   # no lung in the lowest / highest slices


@pytest.mark.parametrize("anatomy", ANATOMIES)
def test_lungs_are_dark_but_above_air(anatomy: str) -> None:
    image, label, _ = arrays(case(1, anatomy, clean=True))
    lungs = label > 0
    in_plane = np.zeros((1, 3, 3), bool)
    in_plane[0] = True
    # Shell 3-8 voxels around the lungs: chest wall, mediastinum, heart, liver.
    shell = ndimage.binary_dilation(lungs, in_plane, iterations=8) & \
        ~ndimage.binary_dilation(lungs, in_plane, iterations=3)
    air = np.concatenate([image[:, :6, :6].ravel(), image[:, :6, -6:].ravel(),
                          image[:, -6:, :6].ravel(), image[:, -6:, -6:].ravel()])
    lung_mean, shell_mean, air_mean = image[lungs].mean(), image[shell].mean(), air.mean()
    assert 60.0 < lung_mean < 260.0
    assert lung_mean < 0.45 * shell_mean
    assert lung_mean > 1.5 * air_mean and air_mean < 80.0


def test_procedural_anatomy_places_organs_where_a_newborn_has_them() -> None:
    geometry = _centred_geometry((64, 128, 128), (1.5, 1.0, 1.0))
    rng = np.random.default_rng(7)
    tissue = procedural_tissue(rng, geometry, touching=False)
    label = finalize_lungs(tissue, geometry, rng, touching=False)

    def centre(mask: np.ndarray) -> np.ndarray:
        return geometry.array_index_to_lps(np.argwhere(mask).mean(axis=0))

    heart, spine = centre(tissue == Tissue.MYOCARDIUM), centre(tissue == Tissue.VERTEBRA)
    assert abs(spine[0]) < 10.0 and spine[1] > 10.0               # midline (up to the pose), posterior
    assert heart[0] > spine[0] + 3.0 and heart[1] < spine[1] - 20.0   # left of the spine, well anterior
    liver, lungs = centre(tissue == Tissue.LIVER), centre(label > 0)
    assert liver[2] < lungs[2] and liver[0] < 0.0                 # below the lungs, on the right
    assert np.any(tissue == Tissue.VESSEL) and np.all(label[tissue == Tissue.VESSEL] > 0)
    assert np.any(tissue == Tissue.AIRWAY) and not np.any(label[tissue == Tissue.AIRWAY])


@pytest.mark.parametrize("anatomy", ANATOMIES)
@pytest.mark.parametrize("seed", [0, 5])
def test_touching_lungs_form_one_component(anatomy: str, seed: int) -> None:
    _, label, _ = arrays(case(seed, anatomy, True))
    assert components(label == 1) == 1 and components(label == 2) == 1
    assert components(label > 0) == 1
    # The shared face is anterior: contact voxels lie in front of the lungs' mean antero-posterior row.
    contact = (label[:, :, :-1] == 1) & (label[:, :, 1:] == 2)
    rows = np.argwhere(contact)
    assert len(np.unique(rows[:, 0])) >= 3
    assert rows[:, 1].mean() < np.argwhere(label > 0)[:, 1].mean()


@pytest.mark.parametrize("anatomy", ANATOMIES)
@pytest.mark.parametrize("seed", [0, 5])
def test_separate_lungs_are_two_voxels_apart(anatomy: str, seed: int) -> None:
    _, label, _ = arrays(case(seed, anatomy, False))
    assert components(label > 0) == 2
    near_right = ndimage.maximum_filter(label == 1, size=5)   # within Chebyshev distance 2
    assert not np.any(near_right & (label == 2))


def test_geometry_is_as_requested_and_centred() -> None:
    c = generate_case(2, shape=(20, 48, 40), spacing=(3.0, 2.5, 2.0))
    for image in (c.image, c.label):
        assert image.GetSize() == (40, 48, 20)
        assert image.GetSpacing() == pytest.approx((2.0, 2.5, 3.0))
        assert image.GetDirection() == pytest.approx(np.eye(3).ravel())
        _, geometry = image_to_array(image)
        centre = geometry.index_to_lps((np.asarray(geometry.size) - 1) / 2.0)
        assert centre == pytest.approx(np.zeros(3), abs=1e-6)
    assert set(np.unique(image_to_array(c.label)[0]).tolist()) <= {0, 1, 2}


@pytest.mark.parametrize("kwargs, message", [
    ({"anatomy": "ct"}, "unknown anatomy"),
    ({"shape": (0, 128, 128)}, "shape"),
    ({"shape": (64, 128)}, "shape"),
    ({"shape": (64, 128, 12.5)}, "shape"),
    ({"spacing": (1.5, -1.0, 1.0)}, "spacing"),
    ({"spacing": (1.5, math.nan, 1.0)}, "spacing"),
    ({"touching_lungs": "yes"}, "touching_lungs"),
    ({"anatomy": "atlas", "atlas_dir": None}, "atlas_dir"),
])
def test_bad_arguments_raise_value_error(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_case(0, **kwargs)


def test_missing_atlas_directory_raises_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="lacks"):
        generate_case(0, anatomy="atlas", atlas_dir=tmp_path / "nowhere")


def test_default_atlas_dir_is_beside_the_repository() -> None:
    repo = Path(__file__).resolve().parents[2]
    assert default_atlas_dir() == repo.parent / "shared" / "data" / "fetal-thorax-atlas"


@pytest.mark.parametrize("flip, expected_right", [(1.0, 2), (-1.0, 3)])
def test_atlas_right_lung_is_read_from_the_geometry(flip: float, expected_right: int) -> None:
    labels = np.zeros((4, 6, 10), np.uint8)
    labels[:, :, 1:3] = 2      # low i
    labels[:, :, 7:9] = 3      # high i
    geometry = Geometry((10, 6, 4), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0),
                        (flip, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    assert _right_lung_label(labels, geometry) == expected_right


def test_write_case_round_trips(tmp_path: Path) -> None:
    c = generate_case(1, shape=(16, 40, 40), spacing=(3.0, 2.5, 2.5))
    image_path, label_path = tmp_path / "out" / "image.nii.gz", tmp_path / "out" / "label.nii.gz"
    write_case(c, image_path, label_path)
    for original, path in ((c.image, image_path), (c.label, label_path)):
        loaded = sitk.ReadImage(str(path))
        assert loaded.GetPixelID() == original.GetPixelID()
        a, ga = image_to_array(original)
        b, gb = image_to_array(loaded)
        assert np.array_equal(a, b)
        assert gb.spacing == pytest.approx(ga.spacing) and gb.origin == pytest.approx(ga.origin, abs=1e-4)


@needs_atlas
def test_montage_of_both_anatomies_is_written() -> None:
    """Visual check for humans: mid-axial and coronal slices with the label outline, under /tmp."""
    plt = pytest.importorskip("matplotlib.pyplot")
    figure, axes = plt.subplots(2, 4, figsize=(16, 8))
    for row, c in enumerate((case(0), case(0, "atlas"))):
        image, label, geometry = arrays(c)
        k_lungs = np.flatnonzero(label.any(axis=(1, 2)))
        views = [(image[k], label[k], f"axial k={k}") for k in k_lungs[[len(k_lungs) // 3, len(k_lungs) // 2,
                                                                         2 * len(k_lungs) // 3]]]
        j = image.shape[1] // 2
        views.append((image[::-1, j], label[::-1, j], f"coronal j={j}"))
        for axis, (picture, outline, title) in zip(axes[row], views):
            aspect = geometry.spacing[2] / geometry.spacing[0] if "coronal" in title else 1.0
            axis.imshow(picture, cmap="gray", vmin=0, vmax=1000, aspect=aspect)
            axis.contour(outline == 1, levels=[0.5], colors="red", linewidths=0.8)
            axis.contour(outline == 2, levels=[0.5], colors="cyan", linewidths=0.8)
            axis.set_title(f"{c.anatomy} seed {c.seed}: {title}")
            axis.axis("off")
    figure.suptitle("red: label 1 (patient right, image left); cyan: label 2; "
                    "anterior at the top of axial views")
    figure.tight_layout()
    figure.savefig(MONTAGE, dpi=70)
    plt.close(figure)
    assert MONTAGE.stat().st_size > 10_000
