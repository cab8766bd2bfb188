"""Route a scan to the fine-tuned network or to its parent, by the fine-tuned encoder's view of the scan.

Both choices below were made on development data of the ventilation experiment (docs/improve.md, *The domain
gate*: the pool slices not selected stand for the clinic's next scans, the rehearsal and anchor cases for the
parent's domain). Why the fine-tuned network's own encoder: having learned the clinic's cases beside the
rehearsed ones, it pulls the two apart, where the parent's encoder, which never saw the clinic's domain, left
them a few hundredths of cosine apart (pool slices to the fine-tuned network 99.5 % against 98.5 %; rehearsal
cases 0-4 % against 24-38 %). Why the nearer centroid: the two mistakes do not cost the same. A clinic scan
sent to the parent loses almost everything the fine-tune gained (ventilation MRI: Dice ~0.95 -> ~0.05), a
scan of the parent's domains sent to the fine-tuned network ~0.01; the nearest single reference case sent
only 77-89 % of the pool slices to the fine-tuned network.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...geometry import Geometry
from ...models.gate_files import GateReferences
from ...models.model_folder import InputConfig
from ..preprocess import network_input, prepare, slice_stack

ADAPTED, PARENT = "fine-tuned", "parent"
GATE_SLICES = 16  # evenly spaced slices of a scan; the sample's 2 s segmentation gains ~0.2 s on 2 cores


@dataclass(frozen=True)
class Route:
    """Which network a scan goes to, and the similarities that decided it (shown with every result)."""

    network: str                  # ADAPTED or PARENT
    corrected_similarity: float   # cosine similarity to the corrected cases' centroid
    rehearsal_similarity: float   # ... to the parent's rehearsal cases' centroid

    def to_dict(self) -> dict:
        return {"network": self.network, "corrected_similarity": round(self.corrected_similarity, 4),
                "rehearsal_similarity": round(self.rehearsal_similarity, 4)}


def unit_rows(features: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(features, axis=-1, keepdims=True)
    return features / np.maximum(norms, 1e-12)


def scan_features(encoder: torch.nn.Module, array: np.ndarray, geometry: Geometry, config: InputConfig,
                  slices: int = GATE_SLICES, device: torch.device | str = "cpu") -> np.ndarray:
    """One unit vector per scan: the encoder's deepest map averaged over space and over up to ``slices``
    evenly spaced slices, each prepared exactly as the engine prepares it for the network (fp32 always, so
    the route does not depend on the precision a machine segments at)."""
    prepared = prepare(array, geometry, config)
    count = len(prepared.slices)
    picked = np.unique(np.linspace(0, count - 1, min(slices, count)).round().astype(int))
    with torch.inference_mode(), torch.autocast(torch.device(device).type, enabled=False):
        batch = network_input(slice_stack(prepared.slices, picked, config.channels), prepared.scale, config,
                              torch.device(device), prepared.frame)
        deepest = encoder(batch.float())[-1]
        pooled = deepest.float().mean(dim=(2, 3)).mean(dim=0)
    return unit_rows(pooled.cpu().numpy().astype(np.float64))


def route(features: np.ndarray, references: GateReferences) -> Route:
    """The nearer centroid (cosine, of unit vectors) decides: the corrected cases' -> the fine-tuned network;
    a tie keeps the parent."""
    if features.shape != (references.dimension,):
        raise ValueError(f"gate features have {features.shape} values, the references {references.dimension}")
    corrected = float(centroid(references.adapted) @ features)
    rehearsal = float(centroid(references.fallback) @ features)
    return Route(ADAPTED if corrected > rehearsal else PARENT, corrected, rehearsal)


def centroid(rows: np.ndarray) -> np.ndarray:
    return unit_rows(unit_rows(rows.astype(np.float64)).mean(axis=0))
