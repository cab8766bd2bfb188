"""Route a scan to the fine-tuned network or to its parent, by the parent encoder's view of the scan.

Why features of the parent's encoder: they are fixed across a lineage of improvements (every gated folder's
fallback is the same ungated model), so references computed once stay comparable. Why the nearer centroid:
the two mistakes do not cost the same. A clinic scan sent to the parent loses almost everything the fine-tune
gained (ventilation MRI: Dice ~0.95 -> ~0.05), a scan of the parent's domains sent to the fine-tuned network
loses ~0.01. Chosen on development data of the ventilation experiment (docs/improve.md, *The domain gate*):
the nearer centroid sent 98-100 % of the unselected pool slices to the fine-tuned network with 1 to 16
corrected cases, against 23-89 % for the nearest case (centred or not) and 38-97 % for a shrinkage linear
discriminant, at the price of about a third of the parent's own rehearsal cases going to the fine-tuned one.
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
