"""Lung volumes: exact counts on an anisotropic grid, the unsplit variant, JSON output and the text line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from NeonatalLungSegLib.geometry import Geometry
from NeonatalLungSegLib.inference.measure import format_volumes, measure_volumes

SPACING = (0.5, 0.7, 2.0)  # i, j, k mm: 0.7 mm^3 = 0.0007 mL per voxel


def make_labels() -> tuple[np.ndarray, Geometry]:
    geometry = Geometry(size=(30, 20, 10), spacing=SPACING, origin=(-7.0, 3.0, 12.0),
                        direction=(0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, -1.0))
    labels = np.zeros(geometry.array_shape, dtype=np.uint8)
    labels[1:5, 2:12, 3:13] = 1  # 4 * 10 * 10 = 400 voxels
    labels[5:8, 4:9, 15:27] = 2  # 3 * 5 * 12 = 180 voxels
    return labels, geometry


def test_split_volumes_exact() -> None:
    labels, geometry = make_labels()
    volumes = measure_volumes(labels, geometry)
    assert volumes["right_lung"] == {"label": 1, "voxels": 400, "volume_ml": pytest.approx(400 * 0.0007)}
    assert volumes["left_lung"] == {"label": 2, "voxels": 180, "volume_ml": pytest.approx(180 * 0.0007)}
    assert volumes["total"] == {"voxels": 580, "volume_ml": pytest.approx(0.406)}
    assert volumes["voxel_volume_ml"] == pytest.approx(0.0007)
    assert volumes["spacing_mm"] == [0.5, 0.7, 2.0]
    assert "lung" not in volumes


def test_unsplit_counts_every_lung_voxel() -> None:
    labels, geometry = make_labels()
    volumes = measure_volumes(labels, geometry, split=False)
    assert set(volumes) == {"lung", "total", "voxel_volume_ml", "spacing_mm"}
    assert volumes["lung"] == {"label": 1, "voxels": 580, "volume_ml": pytest.approx(0.406)}
    assert volumes["total"]["voxels"] == 580
    merged = measure_volumes((labels > 0).astype(np.uint8), geometry, split=False)
    assert merged["lung"] == volumes["lung"]


def test_result_is_plain_json() -> None:
    labels, geometry = make_labels()
    for split in (True, False):
        volumes = measure_volumes(labels, geometry, split=split)
        assert json.loads(json.dumps(volumes)) == volumes
        assert all(type(entry["voxels"]) is int for entry in volumes.values() if isinstance(entry, dict))


def test_empty_labels_give_zero() -> None:
    _, geometry = make_labels()
    volumes = measure_volumes(np.zeros(geometry.array_shape, dtype=np.uint8), geometry)
    assert volumes["total"] == {"voxels": 0, "volume_ml": 0.0}
    assert format_volumes(volumes) == "right 0.0 mL, left 0.0 mL, total 0.0 mL"


def test_format_volumes() -> None:
    volumes = {"right_lung": {"label": 1, "voxels": 1, "volume_ml": 32.14},
               "left_lung": {"label": 2, "voxels": 1, "volume_ml": 27.36},
               "total": {"voxels": 2, "volume_ml": 59.5}}
    assert format_volumes(volumes) == "right 32.1 mL, left 27.4 mL, total 59.5 mL"
    labels, geometry = make_labels()
    line = format_volumes(measure_volumes(labels, geometry, split=False))
    assert line.startswith("total 0.4 mL") and "right" not in line


def test_shape_mismatch_rejected() -> None:
    _, geometry = make_labels()
    with pytest.raises(ValueError):
        measure_volumes(np.zeros((2, 2, 2), dtype=np.uint8), geometry)
