"""How sure the model is of a segmentation: per voxel, per axial slice and per case.

Computed from the engine's outputs only (the lung probability of ``Segmenter.segment_array(...,
with_probabilities=True)``, and optionally a second prediction of the left-right mirrored volume), so it
works for every model folder without touching the engine.

Three measures, all on 0..1:

- **Estimated Dice** (``confidence``): the Dice the thresholded mask M would reach if the model's
  probabilities were calibrated, i.e. against a reference drawn voxel by voxel from them:
  ``2 * sum(p over M) / (|M| + sum(p))``. 1 when every voxel is decided (p near 0 or 1); it falls as
  probability mass sits near the threshold, inside or outside the mask, including faint mass spread
  where the model found nothing. Size-independent, so a small lung and a large one compare fairly. A
  whole case in which the model finds no lung at all scores 0, because every chest has lungs: such a case
  is a failure to correct first, however sure the model was. ``1 - confidence`` is the expected benefit
  of correcting the case, used to rank cases. Per slice the sum of p runs over the lung-or-undecided
  voxels only (p > ``LOW``), so a slice below the lungs, with neither lung nor doubt, scores 1.
- **Mean binary entropy** (bits) over the lung-or-undecided voxels (p > ``LOW``).
- **Flip agreement** (test-time augmentation, optional): Dice between the mask of the volume and the mask
  of its left-right mirror image (mirrored back). A model that segments by anatomy, not by position,
  agrees with itself. With the flip, the estimated Dice and the entropy are computed on the mean of the
  two probabilities, so disagreement also lowers them.

Slices are the patient's axial planes (the input axis closest to superior-inferior), as in ``review.py``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

from ..geometry import Geometry, lps_to_ras, reorientation

# Probabilities inside (LOW, HIGH) count as undecided; above LOW a voxel is lung-or-undecided.
LOW, HIGH = 0.2, 0.8
# Slices holding fewer lung-or-undecided voxels than this share of the fullest slice are not listed for
# checking: a 20-voxel apex tip is "undecided" by construction and would crowd out the slices worth a look.
MIN_AREA_FRACTION = 0.05
_EPS = 1e-7


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """Entropy in bits of a Bernoulli(p), elementwise (0 at p = 0 or 1, 1 at p = 0.5); float32."""
    q = np.clip(np.asarray(p, dtype=np.float32), _EPS, 1 - _EPS)
    return -(q * np.log2(q) + (1 - q) * np.log2(1 - q))


def estimated_dice(sum_p_in_mask: float, mask_voxels: float, sum_p: float) -> float:
    """Expected Dice of a mask against a reference drawn from the probabilities; 1 when both are empty."""
    denominator = mask_voxels + sum_p
    return 1.0 if denominator <= _EPS else float(2.0 * sum_p_in_mask / denominator)


def axial_array_axis(geometry: Geometry) -> int:
    """The NumPy axis of a (k, j, i) array on ``geometry`` that runs closest to superior-inferior."""
    return 2 - reorientation(geometry, "LPS").axes[2]  # canonical axis 2 is S; ITK axis a is NumPy axis 2 - a


def left_right_array_axis(geometry: Geometry) -> int:
    """The NumPy axis of a (k, j, i) array on ``geometry`` that runs closest to the patient's left-right."""
    return 2 - reorientation(geometry, "LPS").axes[0]


@dataclass(frozen=True)
class SliceConfidence:
    """One axial slice: its index along ``CaseConfidence.array_axis`` and how sure the model is of it."""

    index: int
    confidence: float        # estimated Dice of the slice's mask
    mean_entropy: float      # bits, over the slice's lung-or-undecided voxels (0 when there are none)
    uncertain_voxels: int    # LOW < p < HIGH
    lung_voxels: int         # p >= HIGH
    flip_dice: float | None = None

    @property
    def considered_voxels(self) -> int:
        return self.uncertain_voxels + self.lung_voxels

    @property
    def uncertain_fraction(self) -> float:
        return self.uncertain_voxels / self.considered_voxels if self.considered_voxels else 0.0


@dataclass(frozen=True)
class CaseConfidence:
    """The whole case, and every slice (index order); see the module docstring for the measures."""

    confidence: float
    mean_entropy: float
    uncertain_fraction: float
    mask_voxels: int
    flip_dice: float | None
    array_axis: int
    slices: tuple[SliceConfidence, ...] = field(default_factory=tuple)

    @property
    def method(self) -> str:
        return "estimated Dice + entropy" + (" + left-right flip" if self.flip_dice is not None else "")

    @property
    def benefit(self) -> float:
        """Expected share of the mask a correction would change (1 - estimated Dice): the ranking key."""
        return 1.0 - self.confidence

    def slices_to_check(self, count: int = 5,
                        min_area_fraction: float = MIN_AREA_FRACTION) -> list[SliceConfidence]:
        """Up to ``count`` slices, least confident first (ties: more undecided voxels, then lower index).

        Slices with no lung-or-undecided voxel, or fewer than ``min_area_fraction`` of the fullest slice's,
        are skipped, as are slices the model is completely sure of.
        """
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        fullest = max((s.considered_voxels for s in self.slices), default=0)
        floor = max(1, int(np.ceil(min_area_fraction * fullest)))
        candidates = [s for s in self.slices if s.considered_voxels >= floor and s.confidence < 1.0]
        candidates.sort(key=lambda s: (s.confidence, -s.uncertain_voxels, s.index))
        return candidates[:count]

    def to_dict(self, check_count: int = 5, geometry: Geometry | None = None) -> dict[str, Any]:
        """JSON-ready: the case figures, the slices most worth checking (with their centres in LPS and RAS
        when ``geometry`` is given) and every slice's figures."""
        check = [_slice_dict(s) for s in self.slices_to_check(check_count)]
        if geometry is not None:
            for entry in check:
                for key, centre in (("center_lps", slice_center_lps), ("center_ras", slice_center_ras)):
                    entry[key] = [round(v, 4) + 0.0 for v in centre(geometry, self.array_axis, entry["index"])]
        return {"confidence": round(self.confidence, 6), "benefit_of_correction": round(self.benefit, 6),
                "mean_entropy_bits": round(self.mean_entropy, 6),
                "uncertain_fraction": round(self.uncertain_fraction, 6), "mask_voxels": self.mask_voxels,
                "flip_dice": None if self.flip_dice is None else round(self.flip_dice, 6),
                "method": self.method, "slice_array_axis": self.array_axis,
                "slices_to_check": check,
                "slices": [_slice_dict(s) for s in self.slices]}


def _slice_dict(s: SliceConfidence) -> dict[str, Any]:
    data = asdict(s)
    data["confidence"] = round(s.confidence, 6)
    data["mean_entropy"] = round(s.mean_entropy, 6)
    if s.flip_dice is not None:
        data["flip_dice"] = round(s.flip_dice, 6)
    return data


def measure_confidence(probabilities: np.ndarray, geometry: Geometry, flipped: np.ndarray | None = None,
                       threshold: float = 0.5, low: float = LOW, high: float = HIGH) -> CaseConfidence:
    """Confidence of a (k, j, i) lung probability on ``geometry``; ``flipped`` is the mirrored prediction.

    Works slice by slice along the axial axis, so memory stays at a few slices whatever the volume size.
    """
    if tuple(probabilities.shape) != geometry.array_shape:
        raise ValueError(f"probabilities shape {probabilities.shape} does not match geometry {geometry.array_shape}")
    if flipped is not None and flipped.shape != probabilities.shape:
        raise ValueError(f"flipped probabilities shape {flipped.shape} differs from {probabilities.shape}")
    if not 0.0 <= low < threshold < high <= 1.0:
        raise ValueError(f"need 0 <= low < threshold < high <= 1, got {low}, {threshold}, {high}")
    axis = axial_array_axis(geometry)
    slices = []
    totals = np.zeros(8)  # sum p in mask, mask voxels, sum p considered, entropy sum, considered, uncertain,
    #                       flip overlap, sum p everywhere
    flip_sizes = 0.0
    for index in range(probabilities.shape[axis]):
        p = np.take(probabilities, index, axis=axis).astype(np.float32)
        flip = None
        if flipped is not None:
            other = np.take(flipped, index, axis=axis).astype(np.float32)
            a, b = p >= threshold, other >= threshold
            both, sizes = float(np.count_nonzero(a & b)), float(np.count_nonzero(a) + np.count_nonzero(b))
            flip = 1.0 if sizes == 0 else 2 * both / sizes
            totals[6] += both
            flip_sizes += sizes
            p = (p + other) / 2
        mask = p >= threshold
        considered = p > low
        uncertain = considered & (p < high)
        sums = (float(p[mask].sum(dtype=np.float64)), float(np.count_nonzero(mask)),
                float(p[considered].sum(dtype=np.float64)),
                float(binary_entropy(p[considered]).sum(dtype=np.float64)), float(np.count_nonzero(considered)),
                float(np.count_nonzero(uncertain)))
        totals[:6] += sums
        totals[7] += float(p.sum(dtype=np.float64))
        slices.append(SliceConfidence(
            index=index, confidence=estimated_dice(*sums[:3]),
            mean_entropy=sums[3] / sums[4] if sums[4] else 0.0, uncertain_voxels=int(sums[5]),
            lung_voxels=int(sums[4] - sums[5]), flip_dice=flip))
    flip_dice = None if flipped is None else (1.0 if flip_sizes == 0 else float(2 * totals[6] / flip_sizes))
    found_lung = totals[1] > 0
    return CaseConfidence(confidence=estimated_dice(totals[0], totals[1], totals[7]) if found_lung else 0.0,
                          mean_entropy=float(totals[3] / totals[4]) if totals[4] else 0.0,
                          uncertain_fraction=float(totals[5] / totals[4]) if totals[4] else 0.0,
                          mask_voxels=int(totals[1]), flip_dice=flip_dice, array_axis=axis, slices=tuple(slices))


def flipped_probabilities(segmenter: Any, array: np.ndarray, geometry: Geometry,
                          progress: Callable[[float], None] | None = None,
                          cancel: Callable[[], bool] | None = None) -> np.ndarray:
    """The lung probability of the left-right mirrored volume, mirrored back onto ``array``'s grid.

    The voxels are mirrored and the geometry kept, so the network sees a patient whose right is where the
    left was; a model that segments by anatomy gives the mirror of its first answer.
    """
    axis = left_right_array_axis(geometry)
    mirrored = np.ascontiguousarray(np.flip(array, axis=axis))
    canonical, plan = segmenter.predict(mirrored, geometry, progress, cancel)
    return np.ascontiguousarray(np.flip(plan.from_canonical(canonical), axis=axis), dtype=np.float32)


def segment_with_confidence(segmenter: Any, array: np.ndarray, geometry: Geometry, *, options: Any = "default",
                            flip: bool = False, progress: Callable[[float], None] | None = None,
                            cancel: Callable[[], bool] | None = None,
                            source: str = "input volume") -> tuple[Any, CaseConfidence]:
    """Segment (with probabilities) and measure confidence; with ``flip`` a second, mirrored pass runs.

    ``options`` goes to ``segment_array`` (the string "default" keeps the engine's default post-processing),
    and so does ``source``, the name a bad-value error gives the volume. Progress runs 0..1 over both passes.
    """
    share = 0.5 if flip else 1.0
    first = None if progress is None else (lambda f: progress(share * f))
    kwargs = {} if isinstance(options, str) and options == "default" else {"options": options}
    result = segmenter.segment_array(array, geometry, with_probabilities=True, progress=first, cancel=cancel,
                                     source=source, **kwargs)
    mirrored = None
    if flip:
        second = None if progress is None else (lambda f: progress(0.5 + 0.5 * f))
        mirrored = flipped_probabilities(segmenter, array, geometry, second, cancel)
    threshold = float(getattr(getattr(segmenter.config, "output", None), "threshold", 0.5))
    return result, measure_confidence(result.probabilities, geometry, mirrored, threshold=threshold)


def slice_center_lps(geometry: Geometry, array_axis: int, index: int) -> tuple[float, float, float]:
    """The physical centre (LPS, mm) of slice ``index`` along NumPy axis ``array_axis``."""
    ijk = (np.asarray(geometry.size, dtype=float) - 1) / 2  # ITK (i, j, k)
    ijk[2 - array_axis] = index
    return tuple(float(v) for v in geometry.index_to_lps(ijk))


def slice_center_ras(geometry: Geometry, array_axis: int, index: int) -> tuple[float, float, float]:
    point = lps_to_ras() @ np.array([*slice_center_lps(geometry, array_axis, index), 1.0])
    return tuple(float(v) for v in point[:3])
