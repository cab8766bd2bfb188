"""Shape descriptors of one lung mask in physical units on the scan's own grid (docs/descriptors.md).

Volume is the voxel count times the voxel volume (no resampling, as ``inference.measure``). Surface area is a
Crofton estimate with direction weights fitted to the grid (``surface``). Principal axes come from ITK's
``LabelShapeStatisticsImageFilter`` principal moments (second central moments in mm², physical space): a solid
ellipsoid with semi-axis ``a`` has moment ``a² / 5`` along it, so the axis length is ``2 sqrt(5 λ)``.
Cranio-caudal and antero-posterior positions are the voxel centres' patient coordinates through the direction
matrix, never an array axis (a coronal acquisition stores S-I along j).
"""

from __future__ import annotations

import math

import numpy as np
import SimpleITK as sitk

from ..geometry import Geometry, array_to_image
from .surface import surface_area

SUPERIOR_AXIS = 2   # LPS: z grows towards S(uperior)
POSTERIOR_AXIS = 1  # LPS: y grows towards P(osterior); A(nterior) = ventral


def voxel_patient_coordinates(mask: np.ndarray, geometry: Geometry, axis: int) -> np.ndarray:
    """The LPS coordinate ``axis`` (mm) of every voxel centre in ``mask``."""
    kji = np.nonzero(mask)
    row = geometry.direction_matrix[axis] * np.asarray(geometry.spacing)  # d(coordinate)/d(i, j, k)
    return geometry.origin[axis] + row[0] * kji[2] + row[1] * kji[1] + row[2] * kji[0]


def voxel_half_extent(geometry: Geometry, axis: int) -> float:
    """Half the extent of one voxel projected on patient axis ``axis`` (mm): a mask's extent runs from the
    outer face of its first voxel to that of its last, not centre to centre."""
    return 0.5 * float(np.sum(np.abs(geometry.direction_matrix[axis]) * np.asarray(geometry.spacing)))


def extent_and_fractions(mask: np.ndarray, geometry: Geometry, axis: int, parts: int) -> tuple[float, list[float]]:
    """Extent of ``mask`` along patient axis ``axis`` (mm) and the fraction of its volume in each of ``parts``
    equal slabs of that extent, lowest coordinate first. A voxel cut by a slab boundary is shared in proportion
    to its extent on either side (taken as uniform over its projected extent), so the fractions do not jump by
    a whole slice of voxels as the boundary passes a slice."""
    coordinates = voxel_patient_coordinates(mask, geometry, axis)
    half = voxel_half_extent(geometry, axis)
    low, high = float(coordinates.min()) - half, float(coordinates.max()) + half
    extent = high - low
    bounds = low + extent * np.arange(1, parts) / parts
    below = np.clip((bounds[None, :] - (coordinates[:, None] - half)) / (2 * half), 0.0, 1.0).mean(axis=0)
    return extent, [float(f) for f in np.diff(np.concatenate([[0.0], below, [1.0]]))]


def principal_moments(stats: sitk.LabelShapeStatisticsImageFilter, geometry: Geometry) -> list[float]:
    """Principal second moments (mm², largest first) of the solid the voxels make: ITK's moments of the voxel
    centres plus each voxel's own spread (a uniform box: spacing² / 12 along each of its axes), which ITK leaves
    out and which is 0.33 mm² along a 2 mm slice axis, 4 % of the moment of a 20 mm wide lobe."""
    axes = np.asarray(stats.GetPrincipalAxes(1), dtype=float).reshape(3, 3)  # rows: axes, in LPS
    central = axes.T @ np.diag(stats.GetPrincipalMoments(1)) @ axes
    box = geometry.direction_matrix * np.asarray(geometry.spacing)[None, :]
    solid = central + box @ box.T / 12.0
    return sorted((max(float(m), 0.0) for m in np.linalg.eigvalsh(solid)), reverse=True)


def shape_descriptors(mask: np.ndarray, geometry: Geometry) -> dict:
    """Every shape descriptor of a non-empty boolean mask (k, j, i) on ``geometry``: plain JSON types."""
    voxels = int(np.count_nonzero(mask))
    if voxels == 0:
        raise ValueError("shape descriptors need a non-empty mask")
    volume_mm3 = voxels * float(np.prod(geometry.spacing))
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(array_to_image(mask.astype(np.uint8), geometry))
    surface = surface_area(mask, geometry)
    moments = principal_moments(stats, geometry)
    axes = [2.0 * math.sqrt(5.0 * m) for m in moments]
    # S-I: thirds from the most cranial third down; A-P: LPS y grows posteriorly, so the first half is ventral.
    cc_extent, (lower, middle, upper) = extent_and_fractions(mask, geometry, SUPERIOR_AXIS, 3)
    ap_extent, (ventral, dorsal) = extent_and_fractions(mask, geometry, POSTERIOR_AXIS, 2)
    return {
        "voxels": voxels,
        "volume_ml": volume_mm3 / 1000.0,
        "surface_mm2": surface,
        "sphericity": (math.pi ** (1 / 3) * (6 * volume_mm3) ** (2 / 3) / surface) if surface > 0 else None,
        "surface_to_volume_per_mm": surface / volume_mm3,
        "major_axis_mm": axes[0], "intermediate_axis_mm": axes[1], "minor_axis_mm": axes[2],
        "elongation": math.sqrt(moments[1] / moments[0]) if moments[0] > 0 else None,
        "flatness": math.sqrt(moments[2] / moments[0]) if moments[0] > 0 else None,
        "craniocaudal_extent_mm": cc_extent,
        "anteroposterior_extent_mm": ap_extent,
        "upper_fraction": upper, "middle_fraction": middle, "lower_fraction": lower,
        "ventral_fraction": ventral, "dorsal_fraction": dorsal,
    }
