"""Write domain-randomised cases as a normal training folder (``train --data DIR`` reads it directly).

Images are stored as int16 (disk: thousands of cases of up to 3 M voxels). Cases go through
``NeonatalLungSegLib.dataset.training_folder`` (the same writer as clinicians' exports and
``synthetic_folder.py``), built in a staging folder renamed into place only when complete. Generation
can run in worker processes (``workers``); the parent writes the cases in seed order, so the folder's
manifest is the same whatever the number of workers.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import SimpleITK as sitk

from NeonatalLungSegLib.dataset.training_folder import add_case, new_training_folder

from .generator import generate_random_case


def _plain(value: Any) -> Any:
    """JSON-safe copy (NumPy scalars and arrays, tuples become plain values)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in np.asarray(value, dtype=object).ravel().tolist()] \
            if isinstance(value, np.ndarray) else [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _make(job: tuple[int, str, dict]) -> tuple[int, np.ndarray, np.ndarray, tuple, dict]:
    """Worker: one case as arrays and geometry (SimpleITK images are rebuilt in the parent)."""
    seed, family, overrides = job
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    case = generate_random_case(seed, family, **overrides)
    geometry = (case.image.GetSpacing(), case.image.GetOrigin(), case.image.GetDirection())
    return (seed, sitk.GetArrayFromImage(case.image), sitk.GetArrayFromImage(case.label), geometry,
            _plain(case.parameters))


def _cases(seeds: list[int], family: str, workers: int, overrides: dict | None = None) -> Iterator[tuple]:
    jobs = [(int(s), family, dict(overrides or {})) for s in seeds]
    if workers <= 1:
        for job in jobs:
            yield _make(job)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(_make, jobs, chunksize=1)


def write_domain_random_folder(root: Path, seeds: Iterable[int], family: str = "train", workers: int = 1,
                               echo: Callable[..., None] = print, overrides: dict | None = None) -> int:
    """Generate ``seeds`` into a NEW training folder ``root``; returns the number of cases written.
    ``overrides``: ``generate_random_case`` overrides for every case (e.g. smaller grids for quick checks)."""
    root = Path(root)
    seeds = [int(s) for s in seeds]
    if root.exists():
        raise FileExistsError(f"{root}: already exists; choose a new folder")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    text = (f"domain-randomised synthetic chest MRI, newborn to adult ({family} family; random contrast, "
            "grid, orientation, artefacts); no real MRI")
    with new_training_folder(root) as staging:
        for number, (seed, image, label, (spacing, origin, direction), parameters) in enumerate(
                _cases(seeds, family, workers, overrides), 1):
            images = []
            # int16, like `synthesize`'s other writers: images span about 0..10 000 with noise of at least
            # a few units, so rounding loses nothing and the files are about half the size of float32.
            image = np.clip(np.rint(image), 0, np.iinfo(np.int16).max).astype(np.int16)
            for array in (image, label):
                item = sitk.GetImageFromArray(array)
                item.SetSpacing(spacing)
                item.SetOrigin(origin)
                item.SetDirection(direction)
                images.append(item)
            add_case(staging, images[0], images[1], f"dr-{family}-{seed:07d}", review_status="reference",
                     source="synthetic", metadata={"generator": {"seed": seed, **parameters}},
                     description=text)
            if number % 10 == 0:
                echo(f"  {number} cases", flush=True)
    return len(seeds)
