"""Small labelled volumes and training folders for training tests, independent of the generator.

Two dark ellipsoid "lungs" in a bright ellipsoid "body" with noise: easy enough that a tiny network learns
it in a few steps, real enough to go through the whole pipeline (files, manifest, split, engine).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from NeonatalLungSegLib.dataset.training_folder import add_case

TINY_TRAIN_ARGS = ["--encoder", "resnet18", "--encoder-depth", "3", "--decoder-channels", "32", "16", "8",
                   "--in-plane-size", "32", "--batch-size", "4", "--weights-dtype", "float32"]


def toy_case(seed: int, shape: tuple[int, int, int] = (8, 32, 32)) -> tuple[sitk.Image, sitk.Image]:
    rng = np.random.default_rng(seed)
    k, j, i = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    body = (i / 0.9) ** 2 + (j / 0.7) ** 2 < 1
    label = np.zeros(shape, np.uint8)
    radius = rng.uniform(0.25, 0.35)
    for side, centre in ((1, -0.4), (2, 0.4)):  # i grows towards patient left (LPS): right lung at -i
        label[((i - centre) / radius) ** 2 + (j / 0.45) ** 2 + (k / 1.2) ** 2 < 1] = side
    image = np.where(body, 800.0, 0.0) - 650.0 * (label > 0) + rng.normal(0, 40, shape)
    out = sitk.GetImageFromArray(image.astype(np.float32))
    out.SetSpacing((1.0, 1.0, 2.0))
    lab = sitk.GetImageFromArray(label)
    lab.CopyInformation(out)
    return out, lab


def toy_training_folder(root: Path, subjects: int = 10, versions: int = 1) -> Path:
    for s in range(subjects):
        for _ in range(versions):
            image, label = toy_case(s)
            add_case(root, image, label, f"toy{s:02d}", review_status="reviewed" if s % 2 else "unreviewed",
                     source="test", description="toy ellipsoid volumes for tests")
    return root


def chest_arrays(seed: int, shape: tuple[int, int, int] = (8, 32, 32), inverted: bool = False
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(image, labels) of a toy chest whose two lungs vary in size and position with the seed (so labels of two
    cases differ); ``inverted``: bright lungs in a dark body, the contrast of ventilation MRI."""
    rng = np.random.default_rng(seed)
    k, j, i = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    body = (i / 0.9) ** 2 + (j / 0.8) ** 2 < 1
    label = np.zeros(shape, np.uint8)
    radius, shift = rng.uniform(0.18, 0.3), rng.uniform(-0.3, 0.3)
    for side, centre in ((1, -0.42), (2, 0.42)):  # i grows towards patient left (LPS): right lung at -i
        label[((i - centre) / radius) ** 2 + ((j - shift) / (radius * 1.3)) ** 2 + (k / 1.2) ** 2 < 1] = side
    lung = label > 0
    image = (np.where(lung, 900.0, np.where(body, 100.0, 0.0)) if inverted
             else np.where(body, 800.0, 0.0) - 650.0 * lung) + rng.normal(0, 30, shape)
    return image.astype(np.float32), label
