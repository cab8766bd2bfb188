"""Turn labelled volumes into network-ready slice tensors with the engine's own preprocessing.

Going through ``NeonatalLungSegLib.inference.preprocess`` (reorientation, slicing, intensity scaling, resize) is
what guarantees a trained model sees at inference exactly what it saw in training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
import torch

from NeonatalLungSegLib.geometry import image_to_array
from NeonatalLungSegLib.models.model_folder import InputConfig
from NeonatalLungSegLib.inference.preprocess import network_input, prepare, slice_stack


@dataclass
class SliceSet:
    """Network inputs (N, C, H, W) and soft lung targets (N, 1, H, W), with the case each came from."""

    images: torch.Tensor
    targets: torch.Tensor
    case_ids: np.ndarray

    def __len__(self) -> int:
        return len(self.images)

    @staticmethod
    def concat(parts: list[SliceSet]) -> SliceSet:
        return SliceSet(torch.cat([p.images for p in parts]), torch.cat([p.targets for p in parts]),
                        np.concatenate([p.case_ids for p in parts]))


def volume_slices(image: sitk.Image, label: sitk.Image, config: InputConfig, case_id: int,
                  keep_empty_fraction: float = 0.3, rng: np.random.Generator | None = None,
                  storage: torch.dtype = torch.float32) -> SliceSet:
    """All slices holding lung plus a fraction of lung-free ones (so the net learns to say 'no lung').

    ``storage=torch.float16`` halves the memory of a large set (a 2.5D set of 38,000 slices held 12 GB in
    float32 and was killed for memory beside a second training); its users convert batches to float32.
    """
    array, geometry = image_to_array(image)
    label_array, label_geometry = image_to_array(label)
    if label_geometry.size != geometry.size:
        raise ValueError(f"case {case_id}: label size {label_geometry.size} != image size {geometry.size}")
    prepared = prepare(array.astype(np.float32), geometry, config)
    lung_slices = prepared.slices_of((label_array > 0).astype(np.float32))
    has_lung = lung_slices.reshape(len(lung_slices), -1).any(axis=1)
    rng = rng or np.random.default_rng(case_id)
    keep = has_lung | (rng.random(len(has_lung)) < keep_empty_fraction)
    indices = np.flatnonzero(keep)
    device = torch.device("cpu")
    images = network_input(slice_stack(prepared.slices, indices, config.channels), prepared.scale, config,
                           device, prepared.frame)
    targets = torch.from_numpy(np.ascontiguousarray(lung_slices[indices][:, None]))
    targets = prepared.frame.to_network(targets, config.in_plane_size, 0.0).clamp_(0, 1)
    return SliceSet(images.to(storage).contiguous(), targets.to(storage).contiguous(),
                    np.full(len(indices), case_id))
