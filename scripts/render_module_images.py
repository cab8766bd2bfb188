"""Render the Slicer module's icon and the extension's sample figure from the bundled synthetic sample.

    .venv/bin/python scripts/render_module_images.py

Writes NeonatalLungSeg/Resources/Icons/NeonatalLungSeg.png (128 x 128: a coronal slice with the reference
right/left lung overlay, the module's colours) and docs/images/neonatal-lung-seg-sample.png (axial and coronal
slices with the overlay). Uses the sample's reference labels, so it needs no model run.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "Resources" / "Sample"
RIGHT, LEFT = (197 / 255, 165 / 255, 145 / 255), (145 / 255, 170 / 255, 197 / 255)  # as mrmlNodes.SEGMENTS


def load() -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    image = sitk.DICOMOrient(sitk.ReadImage(str(SAMPLE / "sample-neonatal-chest.nii.gz")), "RAS")
    label = sitk.DICOMOrient(sitk.ReadImage(str(SAMPLE / "sample-neonatal-chest_reference-lungs.nii.gz")), "RAS")
    return sitk.GetArrayFromImage(image).astype(float), sitk.GetArrayFromImage(label), image.GetSpacing()


def overlay(ax, image2d, label2d, aspect, alpha=0.55) -> None:
    low, high = np.percentile(image2d, (1, 99.5))
    ax.imshow(image2d, cmap="gray", vmin=low, vmax=high, aspect=aspect, origin="lower", interpolation="bilinear")
    rgba = np.zeros((*label2d.shape, 4))
    rgba[label2d == 1] = (*RIGHT, alpha)
    rgba[label2d == 2] = (*LEFT, alpha)
    ax.imshow(rgba, aspect=aspect, origin="lower", interpolation="nearest")
    ax.contour(label2d == 1, levels=[0.5], colors=[RIGHT], linewidths=0.8, origin="lower")
    ax.contour(label2d == 2, levels=[0.5], colors=[LEFT], linewidths=0.8, origin="lower")
    ax.set_axis_off()


def main() -> None:
    image, label, spacing = load()  # arrays (S, A, R) after RAS orientation: k = S, j = A, i = R
    lungs = np.argwhere(label > 0)
    centre = lungs.mean(axis=0).round().astype(int)
    (s0, _, r0), (s1, _, r1) = lungs.min(axis=0), lungs.max(axis=0)
    coronal = image[:, centre[1], :]        # (S, R): radiological display flips R to the viewer's left
    coronal_label = label[:, centre[1], :]
    pad = 12
    box = (slice(max(s0 - pad, 0), s1 + pad), slice(max(r0 - pad, 0), r1 + pad))
    aspect = spacing[2] / spacing[0]

    fig = plt.figure(figsize=(1.28, 1.28), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    crop_image, crop_label = coronal[box][:, ::-1], coronal_label[box][:, ::-1]
    height, width = crop_image.shape[0] * aspect, crop_image.shape[1]
    overlay(ax, crop_image, crop_label, aspect=aspect)
    side = max(height, width)
    ax.set_xlim((width - side) / 2, (width + side) / 2)
    ax.set_ylim((crop_image.shape[0] - side / aspect) / 2, (crop_image.shape[0] + side / aspect) / 2)
    ax.set_facecolor("black")
    fig.patch.set_facecolor("black")
    icon = REPO / "NeonatalLungSeg" / "Resources" / "Icons" / "NeonatalLungSeg.png"
    fig.savefig(icon, dpi=100, facecolor="black")
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(8, 4.2), dpi=100, facecolor="black")
    overlay(axes[0], image[centre[0]][:, ::-1], label[centre[0]][:, ::-1], aspect=spacing[1] / spacing[0])
    axes[0].set_title("axial", color="white")
    overlay(axes[1], coronal[:, ::-1], coronal_label[:, ::-1], aspect=aspect)
    axes[1].set_title("coronal", color="white")
    fig.suptitle("Bundled synthetic sample: right lung (beige) and left lung (blue-grey)", color="white")
    fig.savefig(REPO / "docs" / "images" / "neonatal-lung-seg-sample.png", facecolor="black", bbox_inches="tight")
    plt.close(fig)
    print("wrote", icon)


if __name__ == "__main__":
    main()
