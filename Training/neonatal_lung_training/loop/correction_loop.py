"""The correction loop, measured: does correcting N cases make the bundled model better, and which N cases?

One experiment per domain the bundled model was not trained on (the real CT slices; a synthetic MRI
contrast left out of its training):

1. Fix a held-out evaluation set and a pool of "unlabelled" cases (their reference labels are used only
   to simulate the reviewer).
2. Rank the pool with the bundled model (``NeonatalLungSegLib.dataset.ranking``: expected benefit of correction).
3. For each selection strategy (``uncertainty``: the top of the ranking; ``random``: a seeded shuffle) and
   each N: a ``corrector`` turns the first N selected cases into exports in a training folder (the script
   does this through the Slicer module's Logic on real MRML: Segment, redraw the segments from the
   reference, Export), then ``neonatal-lung-seg train --init-model BUNDLED`` fine-tunes on that folder as
   it stands (the selections are nested, so the folder grows as a real one would).
4. Score every model on the held-out set through the engine (the train command's ``--test-data``), and
   the bundled model the same way (``evaluate``'s API).

Everything is cached under the work folder, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from NeonatalLungSegLib.cli.main import main as cli
from NeonatalLungSegLib.geometry import image_to_array
from NeonatalLungSegLib.models.model_folder import read_config
from NeonatalLungSegLib.dataset.training_folder import add_case, read_training_folder

STRATEGIES = ("uncertainty", "random")


@dataclass(frozen=True)
class PoolCase:
    name: str
    image: Path
    label: Path
    label_scheme: str


@dataclass
class Domain:
    key: str                     # "ct", "t2_haste"
    title: str
    pool: list[PoolCase]
    heldout: Path                # labelled folder the models are scored on
    heldout_description: str


@dataclass
class LoopSettings:
    sizes: tuple[int, ...] = (1, 2, 5, 10, 20)
    strategies: tuple[str, ...] = STRATEGIES
    epochs: int = 4
    steps_per_epoch: int = 10
    batch_size: int = 8
    learning_rate: float = 1e-3
    keep_empty_fraction: float = 0.3
    freeze_encoder: bool = False
    flip: bool = True             # rank with left-right flip agreement
    seed: int = 0
    device: str = "cpu"
    weights_dtype: str = "float16"

    @property
    def models_folder(self) -> str:
        """Per-recipe model folders, so both recipes share one work folder's ranking and exports."""
        return "models-frozen-encoder" if self.freeze_encoder else "models"

    def train_flags(self) -> list[str]:
        flags = ["--epochs", str(self.epochs), "--steps-per-epoch", str(self.steps_per_epoch),
                 "--batch-size", str(self.batch_size), "--learning-rate", str(self.learning_rate),
                 "--keep-empty-fraction", str(self.keep_empty_fraction), "--seed", str(self.seed),
                 "--device", self.device, "--patience", "1000", "--weights-dtype", self.weights_dtype,
                 "--reviewed-only", "--latest-only"]
        return flags + (["--freeze-encoder"] if self.freeze_encoder else [])


class Corrector(Protocol):
    """Turns one pool case into a reviewed export in ``folder``; returns facts about the export."""

    def export(self, case: PoolCase, folder: Path) -> dict[str, Any]: ...


# --- data -------------------------------------------------------------------------------------------------

def prepare_ct_domain(work: Path, heldout_count: int, seed: int, source: Path | None = None) -> Domain:
    """The CT slices through ``prepare-ct``; ``heldout_count`` seeded subjects held out, the rest the pool."""
    data = work / "data"
    if not (data / "manifest.json").is_file():
        argv = ["prepare-ct", "-o", str(data)] + (["--source", str(source)] if source else [])
        if cli(argv) != 0:
            raise RuntimeError(f"prepare-ct failed for {data}")
    folder = read_training_folder(data)
    subjects = folder.subjects()
    if heldout_count >= len(subjects):
        raise ValueError(f"{heldout_count} held-out subjects leave no pool out of {len(subjects)}")
    held = set(np.random.default_rng(seed).permutation(subjects)[:heldout_count].tolist())
    heldout = work / "heldout"
    if not (heldout / "manifest.json").is_file():
        staging = work / ".heldout-staging"
        shutil.rmtree(staging, ignore_errors=True)
        for record in folder.latest_versions():
            if record.subject in held:
                image, label = folder.read_case(record)
                add_case(staging, image, label, record.subject, review_status="reference",
                         label_scheme=record.label_scheme, source=f"held out of {data.name}",
                         description=f"{heldout_count} held-out CT slices (seed {seed})")
        staging.rename(heldout)
    pool = [PoolCase(r.case_id, data / r.image, data / r.label, r.label_scheme)
            for r in folder.latest_versions() if r.subject not in held]
    return Domain("ct", "Real CT lung slices (64x64, not neonatal MRI)", pool, heldout,
                  f"{heldout_count} held-out real CT slices")


def prepare_synthetic_domain(work: Path, contrast: str, pool_cases: int, heldout_cases: int, seed: int,
                             shape: Sequence[int], spacing: Sequence[float]) -> Domain:
    """Synthetic MRI of one contrast through ``synthesize``: a pool and a held-out set with other seeds."""
    geometry = ["--shape", *map(str, shape), "--spacing", *map(str, spacing), "--contrast", contrast]
    for name, count, first in (("pool", pool_cases, seed), ("heldout", heldout_cases, seed + 100_000)):
        folder = work / name
        if not (folder / "labels").is_dir():
            if cli(["synthesize", "-o", str(folder), "--cases", str(count), "--seed", str(first),
                    *geometry]) != 0:
                raise RuntimeError(f"synthesize failed for {folder}")
    pool_folder = read_training_folder(work / "pool")
    pool = [PoolCase(r.case_id, work / "pool" / r.image, work / "pool" / r.label, r.label_scheme)
            for r in pool_folder.latest_versions()]
    return Domain(contrast, f"Synthetic neonatal MRI, {contrast} contrast (left out of the bundled model's "
                  "training)", pool, work / "heldout", f"{heldout_cases} held-out synthetic {contrast} volumes")


# --- ranking, selection, evaluation -------------------------------------------------------------------------

def rank_pool(model: Path, pool: Sequence[PoolCase], out: Path, flip: bool, device: str) -> list[str]:
    """Pool case names, most worth correcting first (cached in ``out``)."""
    from NeonatalLungSegLib.inference.engine import Segmenter
    from NeonatalLungSegLib.dataset.ranking import rank_cases, ranking_csv, read_folder_image, read_ranking_csv

    if not out.is_file():
        segmenter = Segmenter.load(model, device=device)
        ranked = rank_cases(segmenter, [(c.name, c.image) for c in pool], flip=flip, echo=None,
                            read=read_folder_image)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(ranking_csv(ranked), encoding="utf-8")
    return [row["case"] for row in read_ranking_csv(out)]


def selection_order(strategy: str, ranking: Sequence[str], seed: int) -> list[str]:
    if strategy == "uncertainty":
        return list(ranking)
    if strategy == "random":
        return [ranking[i] for i in np.random.default_rng(seed).permutation(len(ranking))]
    raise ValueError(f"unknown strategy {strategy!r}: use {', '.join(STRATEGIES)}")


def evaluate_model(model: Path, heldout: Path, device: str) -> dict[str, Any]:
    """Whole-lung Dice of a model on every held-out case, through the engine with post-processing."""
    from ..evaluation.evaluate import evaluate_folder, load_models

    folder = read_training_folder(heldout)
    cases = folder.latest_versions()
    results = evaluate_folder(load_models([model], device), cases, folder.read_case, echo=lambda *a, **k: None)
    per_case = [{"case_id": e.row["case_id"], "dice_lungs": e.row["dice_lungs"]} for e in next(iter(results.values()))]
    return _dice_summary(per_case)


def ranking_check(model: Path, pool: Sequence[PoolCase], ranking_csv: Path, device: str,
                  top: int = 20) -> dict[str, Any]:
    """How well the ranking predicted the model's real errors on the pool (the labels are known here):
    Spearman correlation of the predicted benefit with 1 - Dice, and the real error at the top."""
    import SimpleITK as sitk
    from scipy.stats import spearmanr

    from NeonatalLungSegLib.inference.engine import Segmenter
    from NeonatalLungSegLib.dataset.ranking import read_folder_image, read_ranking_csv

    from ..evaluation.metrics import dice

    segmenter = Segmenter.load(model, device=device)
    by_name = {c.name: c for c in pool}
    rows = read_ranking_csv(ranking_csv)
    predicted, real = [], []
    for row in rows:
        case = by_name[row["case"]]
        array, geometry = image_to_array(read_folder_image(case.image))
        reference = sitk.GetArrayFromImage(sitk.ReadImage(str(case.label)))  # (k, j, i), as image_to_array
        labels = segmenter.segment_array(array, geometry).labels
        predicted.append(float(row["benefit"]))
        real.append(1.0 - dice(labels > 0, reference > 0))
    real_array = np.array(real)
    constant = len(set(predicted)) < 2 or len(set(real)) < 2
    rho = float("nan") if constant else float(spearmanr(predicted, real).statistic)
    return {"cases": len(rows), "spearman_benefit_vs_error": None if np.isnan(rho) else rho,
            "top": top, "mean_error_top": float(real_array[:top].mean()), "mean_error_all": float(real_array.mean()),
            "share_failed_top": float((real_array[:top] > 0.5).mean()),
            "share_failed_all": float((real_array > 0.5).mean())}


def _dice_summary(per_case: Sequence[dict[str, Any]]) -> dict[str, Any]:
    values = np.array([row["dice_lungs"] for row in per_case], dtype=float)
    return {"cases": len(values), "dice_mean": float(values.mean()), "dice_median": float(np.median(values)),
            "dice_min": float(values.min()), "share_at_least_0.95": float((values >= 0.95).mean()),
            "per_case": list(per_case)}


# --- the loop ------------------------------------------------------------------------------------------------

@dataclass
class LoopRow:
    domain: str
    strategy: str
    n: int
    dice_mean: float
    dice_median: float
    dice_min: float
    share_at_least_95: float
    model: str
    version: str
    manifest_sha256: str
    train_minutes: float
    ai_dice_of_selected: list[float] = field(default_factory=list)  # the AI mask vs the correction, per case


def _exported_log(folder: Path) -> Path:
    return folder.parent / "exported.json"


def export_first(order: Sequence[str], n: int, pool: dict[str, PoolCase], folder: Path,
                 corrector: Corrector) -> list[dict[str, Any]]:
    """Make ``folder`` hold exactly the first ``n`` cases of ``order`` (appending what is missing)."""
    log_path = _exported_log(folder)
    done = json.loads(log_path.read_text(encoding="utf-8")) if log_path.is_file() else []
    present = len(read_training_folder(folder).cases) if (folder / "manifest.json").is_file() else 0
    if present != len(done):
        raise RuntimeError(f"{folder}: holds {present} cases but {log_path} lists {len(done)}; an export was "
                           "interrupted: remove the strategy's folder and run again")
    if [d["pool_case"] for d in done] != list(order[:len(done)]):
        raise RuntimeError(f"{folder}: exported cases are not the start of this selection; use a new --work")
    for name in order[len(done):n]:
        facts = corrector.export(pool[name], folder)
        done.append({"pool_case": name, **facts})
        log_path.write_text(json.dumps(done, indent=2) + "\n", encoding="utf-8")
    return done[:n]


def fine_tune(exports: Path, subjects: Sequence[str], bundled: Path, output: Path, domain: Domain,
              settings: LoopSettings, name: str) -> None:
    """``neonatal-lung-seg train --init-model BUNDLED`` on the export folder, restricted by ``--split-file`` to
    ``subjects`` (the folder may hold more: a rerun with another recipe finds every export already there)."""
    if (output / "model.json").is_file():
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    split = output.with_name(output.name + ".split.json")
    split.write_text(json.dumps({"train": subjects, "val": [], "test": []}, indent=2) + "\n", encoding="utf-8")
    argv = ["train", "--data", str(exports), "--init-model", str(bundled), "--output", str(output),
            "--run-dir", str(output.with_name(output.name + ".run")), "--split-file", str(split),
            "--test-data", str(domain.heldout), "--test-description", domain.heldout_description,
            "--name", name, "--description", f"correction-loop fine-tune on {len(subjects)} corrected case(s)",
            *settings.train_flags()]
    if cli(argv) != 0:
        raise RuntimeError(f"training {output} failed: neonatal-lung-seg {' '.join(argv)}")


def heldout_scores_of(model: Path) -> dict[str, Any]:
    """The held-out per-case Dice the train command measured (``--test-data``), summarised."""
    per_case = json.loads((model.with_name(model.name + ".run") / "test_per_case.json").read_text(encoding="utf-8"))
    return _dice_summary([{"case_id": r["case_id"], "dice_lungs": r["dice_lungs"]} for r in per_case])


def run_domain(domain: Domain, settings: LoopSettings, corrector: Corrector, work: Path, bundled: Path,
               echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Baseline, ranking, and every (strategy, N) fine-tune of one domain; returns the domain's results."""
    work.mkdir(parents=True, exist_ok=True)
    if max(settings.sizes) > len(domain.pool):
        raise ValueError(f"{domain.key}: N = {max(settings.sizes)} needs that many pool cases; "
                         f"the pool holds {len(domain.pool)}")
    baseline_path = work / "baseline.json"
    if not baseline_path.is_file():
        echo(f"[{domain.key}] scoring the bundled model on {domain.heldout_description}")
        baseline_path.write_text(json.dumps(evaluate_model(bundled, domain.heldout, settings.device), indent=2))
    baseline = json.loads(baseline_path.read_text(encoding="utf-8"))
    echo(f"[{domain.key}] bundled model: held-out Dice {baseline['dice_mean']:.4f} (min {baseline['dice_min']:.4f})")
    started = time.perf_counter()
    ranking = rank_pool(bundled, domain.pool, work / "ranking.csv", settings.flip, settings.device)
    echo(f"[{domain.key}] ranked {len(ranking)} pool cases ({time.perf_counter() - started:.0f} s)")
    check_path = work / "ranking_check.json"
    if not check_path.is_file():
        check_path.write_text(json.dumps(ranking_check(bundled, domain.pool, work / "ranking.csv", settings.device,
                                                       top=max(settings.sizes)), indent=2))
    check = json.loads(check_path.read_text(encoding="utf-8"))
    echo(f"[{domain.key}] ranking vs real error on the pool: Spearman {check['spearman_benefit_vs_error']}")
    pool = {c.name: c for c in domain.pool}
    rows: list[LoopRow] = []
    for strategy in settings.strategies:
        order = selection_order(strategy, ranking, settings.seed)
        exports = work / strategy / "exports"
        for n in sorted(settings.sizes):
            exported = export_first(order, n, pool, exports, corrector)
            model = work / strategy / settings.models_folder / f"n{n:03d}"
            started = time.perf_counter()
            recipe = "-frozen" if settings.freeze_encoder else ""
            fine_tune(exports, [e["subject"] for e in exported], bundled, model, domain, settings,
                      f"{read_config(bundled).name}-{domain.key}-{strategy}{recipe}-n{n}")
            config = read_config(model)
            scores = heldout_scores_of(model)
            rows.append(LoopRow(domain.key, strategy, n, scores["dice_mean"], scores["dice_median"],
                                scores["dice_min"], scores["share_at_least_0.95"], str(model), config.version,
                                config.training["training_folder_manifest_sha256"],
                                float(config.training.get("minutes", 0.0)),
                                [e.get("ai_dice", float("nan")) for e in exported]))
            echo(f"[{domain.key}] {strategy:11s} N={n:3d}: held-out Dice {scores['dice_mean']:.4f} "
                 f"(median {scores['dice_median']:.4f}, min {scores['dice_min']:.4f}; "
                 f"{config.training.get('minutes', 0)} min training, {time.perf_counter() - started:.0f} s)")
    return {"domain": domain.key, "title": domain.title, "heldout": domain.heldout_description,
            "pool_cases": len(domain.pool), "baseline": {k: v for k, v in baseline.items() if k != "per_case"},
            "ranking_check": check,
            "rows": [asdict(r) for r in rows]}
