"""Image geometry: the one place that converts between array orders and between LPS and RAS.

Flipped or transposed masks are the most reported bug class in medical segmentation tools, so every
conversion between NumPy (z, y, x) arrays and ITK (x, y, z) images, between patient coordinate
conventions, and between acquisition and canonical voxel orders goes through this module and its tests.

Conventions used throughout the library:
- NumPy arrays are indexed ``[k, j, i]`` (slice, row, column); ITK indices are ``(i, j, k)``.
- ITK and all files on disk use LPS patient coordinates; Slicer uses RAS. ``ijk_to_ras_matrix`` is what
  the Slicer module passes to ``vtkMRMLVolumeNode.SetIJKToRASMatrix``.
- An orientation code such as ``"LPS"`` names, for index axes i, j, k in turn, the patient direction that
  axis increases towards (SimpleITK's ``DICOMOrient`` convention).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

# Unit vector, in LPS coordinates, of the direction each orientation letter points towards.
_LETTER_TO_LPS = {
    "L": (0, +1), "R": (0, -1),
    "P": (1, +1), "A": (1, -1),
    "S": (2, +1), "I": (2, -1),
}


@dataclass(frozen=True)
class Geometry:
    """Where a voxel grid sits in the patient, in ITK terms (index order i, j, k; LPS mm)."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]  # 9 values, row-major; column c is the LPS direction of index axis c

    @property
    def direction_matrix(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=float).reshape(3, 3)

    @property
    def array_shape(self) -> tuple[int, int, int]:
        """Shape of the matching NumPy array, (k, j, i)."""
        return (self.size[2], self.size[1], self.size[0])

    @property
    def voxel_volume_ml(self) -> float:
        return float(np.prod(self.spacing)) / 1000.0

    def index_to_lps(self, ijk: np.ndarray) -> np.ndarray:
        """Physical LPS position (mm) of continuous ITK indices, shape (..., 3) in (i, j, k) order."""
        ijk = np.asarray(ijk, dtype=float)
        return np.asarray(self.origin) + (ijk * np.asarray(self.spacing)) @ self.direction_matrix.T

    def array_index_to_lps(self, kji: np.ndarray) -> np.ndarray:
        """Physical LPS position (mm) of NumPy indices given in (k, j, i) order."""
        return self.index_to_lps(np.asarray(kji, dtype=float)[..., ::-1])

    def ijk_to_ras_matrix(self) -> np.ndarray:
        """4x4 homogeneous matrix from ITK index (i, j, k) to Slicer RAS (mm)."""
        m = np.eye(4)
        m[:3, :3] = self.direction_matrix * np.asarray(self.spacing)[None, :]
        m[:3, 3] = self.origin
        return lps_to_ras() @ m

    @staticmethod
    def from_ijk_to_ras_matrix(matrix: np.ndarray, size: tuple[int, int, int]) -> Geometry:
        """Inverse of :meth:`ijk_to_ras_matrix`: what a Slicer volume node's matrix means in ITK terms."""
        m = lps_to_ras() @ np.asarray(matrix, dtype=float)  # the flip is its own inverse
        columns = m[:3, :3]
        spacing = np.linalg.norm(columns, axis=0)
        direction = columns / spacing[None, :]
        return Geometry(tuple(int(s) for s in size), tuple(float(s) for s in spacing),
                        tuple(float(o) for o in m[:3, 3]), tuple(float(d) for d in direction.ravel()))


def lps_to_ras() -> np.ndarray:
    """Homogeneous 4x4 that maps LPS to RAS (and back: it is its own inverse)."""
    return np.diag([-1.0, -1.0, 1.0, 1.0])


def image_to_array(image: sitk.Image) -> tuple[np.ndarray, Geometry]:
    """Split a SimpleITK image into a (k, j, i) NumPy array (a copy) and its geometry."""
    if image.GetDimension() != 3:
        raise ValueError(f"expected a 3D image, got {image.GetDimension()}D")
    geometry = Geometry(
        size=tuple(int(s) for s in image.GetSize()),
        spacing=tuple(float(s) for s in image.GetSpacing()),
        origin=tuple(float(o) for o in image.GetOrigin()),
        direction=tuple(float(d) for d in image.GetDirection()),
    )
    return sitk.GetArrayFromImage(image), geometry


def array_to_image(array: np.ndarray, geometry: Geometry) -> sitk.Image:
    """Build a SimpleITK image from a (k, j, i) array placed on ``geometry``."""
    if tuple(array.shape) != geometry.array_shape:
        raise ValueError(f"array shape {tuple(array.shape)} does not match geometry {geometry.array_shape}")
    image = sitk.GetImageFromArray(np.ascontiguousarray(array), isVector=False)
    image.SetSpacing(geometry.spacing)
    image.SetOrigin(geometry.origin)
    image.SetDirection(geometry.direction)
    return image


@dataclass(frozen=True)
class Reorientation:
    """An exact, interpolation-free map from an acquired voxel grid to a canonical one.

    ``axes[c]`` is the source index axis (ITK order) that becomes canonical axis ``c``; ``flips[c]`` says
    whether it is reversed. Oblique acquisitions map to the nearest canonical grid; the residual rotation
    stays in the canonical geometry, so physical positions are preserved exactly.
    """

    axes: tuple[int, int, int]
    flips: tuple[bool, bool, bool]
    source: Geometry
    target: Geometry

    def to_canonical(self, array: np.ndarray) -> np.ndarray:
        """Source (k, j, i) array -> canonical (k, j, i) array (a view where possible)."""
        # NumPy axis of ITK axis a is 2 - a.
        out = np.transpose(array, [2 - self.axes[c] for c in (2, 1, 0)])
        flip_axes = [2 - c for c in range(3) if self.flips[c]]
        return np.flip(out, axis=flip_axes) if flip_axes else out

    def index_to_canonical(self, kji: tuple[int, int, int]) -> tuple[int, int, int]:
        """The canonical (k, j, i) voxel of a source (k, j, i) voxel: the map :meth:`to_canonical` applies
        to whole arrays, for one point (a click)."""
        ijk = tuple(reversed(kji))
        out = []
        for c in range(3):
            value = ijk[self.axes[c]]
            out.append(self.source.size[self.axes[c]] - 1 - value if self.flips[c] else value)
        return (out[2], out[1], out[0])

    def from_canonical(self, array: np.ndarray) -> np.ndarray:
        """Canonical (k, j, i) array -> source (k, j, i) array; exact inverse of :meth:`to_canonical`."""
        flip_axes = [2 - c for c in range(3) if self.flips[c]]
        out = np.flip(array, axis=flip_axes) if flip_axes else array
        forward = [2 - self.axes[c] for c in (2, 1, 0)]
        return np.transpose(out, np.argsort(forward))


def check_orientation_code(code: str) -> str:
    """Upper-cased ``code`` if it names one direction per patient axis, else ValueError."""
    code = str(code).upper()
    if len(code) != 3 or any(c not in _LETTER_TO_LPS for c in code) \
            or {_LETTER_TO_LPS[c][0] for c in code} != {0, 1, 2}:
        raise ValueError(f"invalid orientation code {code!r}: use three letters such as 'LPS' or 'RAS'")
    return code


def reorientation(geometry: Geometry, code: str = "LPS") -> Reorientation:
    """Plan the permutation and flips that bring ``geometry`` closest to orientation ``code``."""
    code = check_orientation_code(code)
    direction = geometry.direction_matrix
    wanted = np.zeros((3, 3))  # column c: LPS unit vector canonical axis c should point towards
    for c, letter in enumerate(code):
        physical_axis, sign = _LETTER_TO_LPS[letter]
        wanted[physical_axis, c] = sign
    # Pick the source axis for each canonical axis maximising alignment; 6 candidates, brute force.
    best = max(itertools.permutations(range(3)),
               key=lambda p: sum(abs(float(direction[:, p[c]] @ wanted[:, c])) for c in range(3)))
    flips = tuple(bool(direction[:, best[c]] @ wanted[:, c] < 0) for c in range(3))

    size = np.asarray(geometry.size)
    spacing = np.asarray(geometry.spacing)
    new_direction = np.stack([direction[:, best[c]] * (-1 if flips[c] else 1) for c in range(3)], axis=1)
    # The canonical origin is the source voxel that becomes canonical index (0, 0, 0).
    corner = np.zeros(3)
    for c in range(3):
        if flips[c]:
            corner[best[c]] = size[best[c]] - 1
    target = Geometry(
        size=tuple(int(size[best[c]]) for c in range(3)),
        spacing=tuple(float(spacing[best[c]]) for c in range(3)),
        origin=tuple(float(v) for v in geometry.index_to_lps(corner)),
        direction=tuple(float(v) for v in new_direction.ravel()),
    )
    return Reorientation(axes=tuple(int(a) for a in best), flips=flips, source=geometry, target=target)
