"""The improve loop on a real domain the bundled model fails on: hyperpolarised-gas ventilation MRI slices.

    OMP_NUM_THREADS=2 .venv/bin/python Training/scripts/improve_experiment.py --work runs/improve-experiment
    .venv/bin/python Training/scripts/improve_experiment.py --work runs/improve-experiment --report-only

For each configuration (N corrected cases, selection, seed, rehearsal on/off) the bundled model is improved
with `improve`'s own function and defaults (only rehearsal is switched off for the ablation) and the result
is scored on four sets it never trained on: held-out ventilation slices (the top of the id range, never in
the pool), the two real adult proton MRI volumes, the 21 held-out subjects of the real CT slices and
synthetic neonatal volumes of the generator's held-out family. Every run's figures are kept in
WORK/results/*.json, so a killed run resumes; the improved models are deleted once scored (they are
experiments on data that may not be bundled). The report and curve go to docs/improve-experiment.md and
docs/images/improve-ventilation.png.

Split: ventilation slice ids sorted; the lowest 70 % form the pool, the highest 30 % the test set, with the
ten ids around the cut dropped (slices of one person have ids close together: never split at random).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "NeonatalLungSeg"), str(REPO / "Training")]

from NeonatalLungSegLib.dataset.training_folder import add_case, read_training_folder  # noqa: E402
from NeonatalLungSegLib.inference.engine import Segmenter  # noqa: E402
from NeonatalLungSegLib.models.model_folder import read_config  # noqa: E402
from NeonatalLungSegLib.models.registry import bundled_model_folder  # noqa: E402
from neonatal_lung_training.datasets.import_cases import import_cases  # noqa: E402
from neonatal_lung_training.improve.anchors import anchor_sets, dense_rehearsal, rehearsal_folders  # noqa: E402
from neonatal_lung_training.improve.run import ImproveSettings, improve  # noqa: E402
from neonatal_lung_training.improve.scoring import dice_and_route  # noqa: E402
from neonatal_lung_training.locations import shared_data  # noqa: E402

VENTILATION = shared_data("ventilation-mri-slices")
PROTON = shared_data("adult-proton-lung-mri")
CT_SPLIT = REPO / "docs" / "reports" / "ct-lung-slices" / "split.json"
# (key, N, selection, seed, rehearsal), in the order they are run: the figures the issue asks for first
PLAN = [(5, "random", 0, True), (5, "random", 0, "frozen"), (20, "random", 0, True), (5, "random", 0, False),
        (20, "random", 0, False), (1, "random", 0, True), (2, "random", 0, True), (10, "random", 0, True),
        (5, "random", 1, True), (5, "random", 2, True), (20, "random", 1, True), (20, "random", 2, True),
        (5, "rank", 0, True), (10, "rank", 0, True), (5, "diverse", 0, True), (10, "diverse", 0, True),
        (10, "random", 1, True), (10, "random", 2, True), (1, "random", 1, True), (1, "random", 2, True),
        (2, "random", 1, True), (2, "random", 2, True)]
# rehearsal: True (improve's defaults), False (plain fine-tune: no rehearsal), "frozen" (defaults with the
# encoder frozen), "bnfrozen" (defaults with the batch-norm statistics kept)


# weight interpolations parent + alpha (child - parent) scored beside every child (WiSE-FT)
INTERPOLATE = (0.5, 0.7)


def key_of(n: int, selection: str, seed: int, rehearsal) -> str:
    name = {True: "rehearsal", False: "plain"}.get(rehearsal, rehearsal)
    return f"n{n:02d}-{selection}-s{seed}-{name}"


def ventilation_ids() -> tuple[list[str], list[str]]:
    ids = sorted(p.name[:6] for p in VENTILATION.glob("*Mask.nii.gz"))
    cut = int(len(ids) * 0.7)
    return ids[:cut - 5], ids[cut + 5:]


def _pairs_folder(root: Path, ids: list[str]) -> tuple[Path, Path]:
    images, labels = root / "images", root / "labels"
    for folder in (images, labels):
        folder.mkdir(parents=True, exist_ok=True)
    for slice_id in ids:
        for folder, suffix in ((images, "N4_Denoised"), (labels, "Mask")):
            link = folder / f"vent{slice_id}.nii.gz"
            if not link.exists():
                link.symlink_to(VENTILATION / f"{slice_id}{suffix}.nii.gz")
    return images, labels


def prepare(work: Path, rehearsal_cases: int | None = None, rehearsal_dense: int = 0) -> dict[str, Path]:
    """The pool, the test sets and the rehearsal / anchor folders, made once (an exploration of another
    rehearsal size gets its own rehearsal folders)."""
    pool_ids, test_ids = ventilation_ids()
    sets = {"pool": work / "vent-pool", "vent-test": work / "vent-test", "proton": work / "proton",
            "ct-test": work / "ct-test", "synthetic": work / "synthetic-heldout"}
    for key, ids in (("pool", pool_ids), ("vent-test", test_ids)):
        if not sets[key].exists():
            import_cases(sets[key], pairs=_pairs_folder(work / f"{key}-links", ids), label_map='{"1": "lung"}',
                         description=f"real hyperpolarised-gas ventilation MRI slices ({key}); evaluation and "
                                     "fine-tuning experiments only", echo=lambda *a, **k: None)
    if not sets["proton"].exists():
        links = work / "proton-links"
        for sub in ("images", "labels"):
            (links / sub).mkdir(parents=True, exist_ok=True)
        for case in ("proton-0006", "proton-0012"):
            for sub, name in (("images", f"{case}.nii.gz"), ("labels", f"{case}_lungs.nii.gz")):
                target = links / sub / f"{case}.nii.gz"
                if not target.exists():
                    target.symlink_to(PROTON / name)
        import_cases(sets["proton"], pairs=(links / "images", links / "labels"),
                     label_map='{"1": "right_lung", "2": "left_lung"}', echo=lambda *a, **k: None,
                     description="real adult proton lung MRI; evaluation only")
    if not sets["ct-test"].exists():
        from neonatal_lung_training.datasets.prepare_ct import main as prepare_ct

        full = work / "ct-data"
        if not full.exists():
            assert prepare_ct(["-o", str(full)]) == 0
        test_subjects = set(json.loads(CT_SPLIT.read_text())["test"])
        source = read_training_folder(full)
        staging = work / "ct-test.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        for record in source.cases:
            if record.subject in test_subjects:
                image, label = source.read_case(record)
                add_case(staging, image, label, record.subject, review_status="reference", source="ct",
                         description="held-out test subjects of the real CT lung slices")
        staging.rename(sets["ct-test"])
    if not sets["synthetic"].exists():
        from neonatal_lung_training.synthesis.synthesize import main as synthesize

        pairs = work / "synthetic-pairs"
        if not pairs.exists():
            assert synthesize(["-o", str(pairs), "--cases", "6", "--seed", "900000", "--anatomy", "atlas",
                               "--variant-family", "heldout", "--contrast", "ute"]) == 0
        import_cases(sets["synthetic"], pairs=(pairs / "images", pairs / "labels"), echo=lambda *a, **k: None,
                     label_map='{"1": "right_lung", "2": "left_lung"}',
                     description="synthetic neonatal UTE MRI, held-out anatomy family")
    default_cases = ImproveSettings().rehearsal_cases
    cases = rehearsal_cases or default_cases
    sets["rehearsal"] = rehearsal_folders(work / ("shared" if cases == default_cases else f"shared-rc{cases}"), cases)
    if rehearsal_dense:
        dense = dense_rehearsal(work / f"shared-dense{rehearsal_dense}", rehearsal_dense)
        sets["rehearsal"] += [dense] if dense is not None else []
    sets["anchors"] = anchor_sets(work / "shared", ImproveSettings().anchor_cases)
    return sets


def score_model(folder: Path, sets: dict, precision: str = "auto", gate: bool = True) -> dict[str, float]:
    """``gate=False``: a gated folder's fine-tuned network alone (what a scan the gate sends there gets)."""
    segmenter = Segmenter.load(folder, device="cpu", precision=precision, gate=gate)
    scores = {}
    for key in ("vent-test", "proton", "ct-test", "synthetic"):
        data = read_training_folder(sets[key])
        references = "physical" if key in ("ct-test", "synthetic") else "expert"  # generated / interpolated labels
        dice, routed = dice_and_route(segmenter, data, list(data.cases), references)
        scores[key] = round(dice, 4)
        if routed is not None:  # a gated model: share of the set's cases its fine-tuned network segmented
            scores[f"routed-{key}"] = round(routed, 4)
    return {**scores, "precision": segmenter.precision}


def select(pool: Path, n: int, selection: str, seed: int, parent: Path) -> list[str]:
    """Case ids of the pool to 'correct': random (seeded), the parent's own ranking, or diverse (greedy
    farthest-point on downsampled images, from a seeded start)."""
    folder = read_training_folder(pool)
    ids = sorted(c.case_id for c in folder.cases)
    if selection == "random":
        return sorted(np.random.default_rng(seed).permutation(ids)[:n].tolist())
    if selection == "rank":
        from NeonatalLungSegLib.dataset.ranking import rank_cases, read_folder_image

        segmenter = Segmenter.load(parent, device="cpu")
        records = {c.case_id: c for c in folder.cases}
        ranked = rank_cases(segmenter, [(i, folder.root / records[i].image) for i in ids], echo=None,
                            read=read_folder_image)
        return sorted(r.case for r in ranked[:n])
    from scipy.ndimage import zoom

    features = []
    for record in sorted(folder.cases, key=lambda c: c.case_id):
        image, _ = folder.read_case(record)
        import SimpleITK as sitk

        array = sitk.GetArrayFromImage(image).astype(np.float32).squeeze()
        small = zoom(array, (32 / array.shape[0], 32 / array.shape[1]), order=1).ravel()
        features.append((small - small.mean()) / (small.std() + 1e-6))
    features = np.array(features)
    chosen = [int(np.random.default_rng(seed).integers(len(ids)))]
    distance = np.linalg.norm(features - features[chosen[0]], axis=1)
    while len(chosen) < n:
        chosen.append(int(np.argmax(distance)))
        distance = np.minimum(distance, np.linalg.norm(features - features[chosen[-1]], axis=1))
    return sorted(ids[i] for i in chosen)


def subset(pool: Path, case_ids: list[str], out: Path) -> Path:
    source = read_training_folder(pool)
    shutil.rmtree(out, ignore_errors=True)
    for record in source.cases:
        if record.case_id in case_ids:
            image, label = source.read_case(record)
            add_case(out, image, label, record.subject, review_status="reviewed", source="experiment",
                     description="corrected ventilation slices (experiment)")
    return out


def run_one(work: Path, sets: dict, n: int, selection: str, seed: int, rehearsal: bool, parent: Path,
            overrides: dict | None = None, tag: str = "", interpolate: tuple = INTERPOLATE) -> dict:
    """One configuration; ``overrides`` replace ImproveSettings defaults (exploring new defaults, under
    ``tag`` in the result's key so they never mix with the defaults' figures)."""
    key = key_of(n, selection, seed, rehearsal) + (f"-{tag}" if tag else "")
    result_path = work / "results" / f"{key}.json"
    if result_path.exists():
        return json.loads(result_path.read_text())
    started = time.perf_counter()
    chosen = select(sets["pool"], n, selection, seed, parent)
    data = subset(sets["pool"], chosen, work / "selections" / key)
    model = work / "models" / key
    model.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(model, ignore_errors=True)
    shutil.rmtree(model.with_name(model.name + ".run"), ignore_errors=True)
    settings = ImproveSettings(device="cpu", seed=seed, int8=False, freeze_encoder=rehearsal == "frozen",
                               freeze_batchnorm=rehearsal == "bnfrozen" or ImproveSettings().freeze_batchnorm,
                               rehearsal_fraction=(overrides or {}).get("rehearsal_fraction",
                                                                        ImproveSettings().rehearsal_fraction)
                               if rehearsal else 0.0,
                               **{k: v for k, v in (overrides or {}).items() if k != "rehearsal_fraction"})
    decision = improve(data, model, parent, settings, register=False, rehearsal=sets["rehearsal"],
                       anchors=sets["anchors"])
    training = read_training_record(model)
    scores = score_model(model, sets)
    alone = score_model(model, sets, gate=False) if read_config(model).gate else None
    interpolated = {str(alpha): score_model(_interpolated(parent, model, alpha, work / "models" / f"{key}-a{alpha}"),
                                            sets) for alpha in interpolate}
    result = {"interpolated": interpolated, "tag": tag, "key": key, "n": n, "selection": selection, "seed": seed,
              "rehearsal": rehearsal, "cases": chosen, "scores": scores, "fine_tuned_alone": alone,
              "decision": decision.to_dict(),
              "parent": f"{read_config(parent).name} {read_config(parent).version}",
              "train_minutes": training.get("minutes", 0.0),
              "epochs_run": training.get("epochs_run"), "load1": os.getloadavg()[0],
              "total_minutes": round((time.perf_counter() - started) / 60, 2), "settings": {
                  "minutes": settings.minutes, "learning_rate": settings.learning_rate,
                  "rehearsal_fraction": settings.rehearsal_fraction,
                  "rehearsal_targets": settings.rehearsal_targets, "anchor_decay": settings.anchor_decay,
                  "weight_average": settings.weight_average, "adam_eps": settings.adam_eps,
                  "warmup_steps": settings.warmup_steps, "batchnorm_momentum": settings.batchnorm_momentum,
                  "rehearsal_cases": len(read_training_folder(sets["rehearsal"][0]).cases),
                  "rehearsal_dense": len(read_training_folder(sets["rehearsal"][3]).cases)
                  if len(sets["rehearsal"]) > 3 else 0,
                  "label_boundary": settings.label_boundary}}
    result_path.parent.mkdir(parents=True, exist_ok=True)
    result_path.write_text(json.dumps(result, indent=1) + "\n")
    for alpha in interpolate:
        shutil.rmtree(work / "models" / f"{key}-a{alpha}", ignore_errors=True)
    shutil.rmtree(model, ignore_errors=True)  # an experiment model on non-distributable data: never kept
    return result


def _interpolated(parent: Path, child: Path, alpha: float, out: Path) -> Path:
    """A model folder with weights parent + alpha (child - parent) (batch-norm statistics too)."""
    from NeonatalLungSegLib.models.model_folder import load_state_dict, write_model_folder

    shutil.rmtree(out, ignore_errors=True)
    config = read_config(child)
    old, new = load_state_dict(parent, read_config(parent)), load_state_dict(child, config)
    mixed = {k: (old[k] + alpha * (v - old[k])) if v.is_floating_point() else v for k, v in new.items()}
    write_model_folder(out, config, mixed, dtype="float32")
    return out


def read_training_record(model: Path) -> dict:
    from NeonatalLungSegLib.models.model_folder import read_config

    return dict(read_config(model).training)


def _parse_only(text: str) -> tuple:
    n, selection, seed, rehearsal = text.split(",")
    return int(n), selection, int(seed), {"yes": True, "no": False}.get(rehearsal, rehearsal)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "improve-experiment")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--limit", type=int, default=len(PLAN), help="run at most this many configurations")
    parser.add_argument("--learning-rate", type=float, default=None, help="explore: instead of the default")
    parser.add_argument("--rehearsal-fraction", type=float, default=None, help="explore: instead of the default")
    parser.add_argument("--minutes", type=float, default=None, help="explore: instead of the default")
    parser.add_argument("--anchor-decay", type=float, default=None, help="explore: instead of the default")
    parser.add_argument("--weight-average", type=float, default=None, help="explore: instead of the default")
    parser.add_argument("--adam-eps", type=float, default=None, help="explore: instead of the default")
    parser.add_argument("--warmup-steps", type=int, default=None, help="explore: instead of the default")
    parser.add_argument("--batchnorm-momentum", type=float, default=None, help="explore: instead of the default")
    parser.add_argument("--rehearsal-targets", choices=("labels", "parent"), default=None,
                        help="explore: instead of the default")
    parser.add_argument("--parent", type=Path, default=None,
                        help="the model to improve (default: the bundled one); pins a grid to one version")
    parser.add_argument("--rehearsal-cases", type=int, default=None,
                        help="explore: rehearsal cases per generator instead of the default")
    parser.add_argument("--rehearsal-dense", type=int, default=0,
                        help="explore: full-size UTE cases whose dense-lung slabs join the rehearsal")
    parser.add_argument("--tag", default="", help="suffix of the result keys of an exploration")
    parser.add_argument("--no-interpolate", action="store_true", help="score the child only")
    parser.add_argument("--only", action="append", default=[], metavar="N,SELECTION,SEED,REHEARSAL",
                        help="run these configurations instead of the plan (REHEARSAL: yes, no, frozen, bnfrozen)")
    args = parser.parse_args(argv)
    if not VENTILATION.is_dir():
        print(f"error: {VENTILATION} is absent", file=sys.stderr)
        return 2
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    parent = args.parent.resolve() if args.parent else bundled_model_folder()
    sets = prepare(work, args.rehearsal_cases, args.rehearsal_dense)
    baseline_path = work / "results" / "baseline.json"
    if not baseline_path.exists():
        baseline_path.parent.mkdir(parents=True, exist_ok=True)
        baseline = {"fp32-comparable": score_model(parent, sets, precision="fp32")}
        baseline_path.write_text(json.dumps(baseline, indent=1) + "\n")
    baseline = json.loads(baseline_path.read_text())
    scored = [json.loads(p.read_text())["scores"]["precision"] for p in sorted(baseline_path.parent.glob("n*.json"))]
    if "as-children" not in baseline and scored:  # the parent at the precision its children were scored at
        baseline["as-children"] = score_model(parent, sets, precision=scored[0])  # (auto would pick its int8)
        baseline_path.write_text(json.dumps(baseline, indent=1) + "\n")
    if not args.report_only:
        plan = [_parse_only(text) for text in args.only] or PLAN[:args.limit]
        for n, selection, seed, rehearsal in plan:
            print(f"== {key_of(n, selection, seed, rehearsal)} {args.tag}", flush=True)
            overrides = {k: v for k, v in (("learning_rate", args.learning_rate),
                                           ("rehearsal_fraction", args.rehearsal_fraction),
                                           ("minutes", args.minutes), ("anchor_decay", args.anchor_decay),
                                           ("weight_average", args.weight_average),
                                           ("adam_eps", args.adam_eps),
                                           ("warmup_steps", args.warmup_steps),
                                           ("batchnorm_momentum", args.batchnorm_momentum),
                                           ("rehearsal_targets", args.rehearsal_targets)) if v is not None}
            if (overrides or args.rehearsal_cases or args.rehearsal_dense) and not args.tag:
                parser.error("give --tag with an explore option (--learning-rate ... --rehearsal-dense)")
            run_one(work, sets, n, selection, seed, rehearsal, parent, overrides, args.tag,
                    () if args.no_interpolate else INTERPOLATE)
    from improve_experiment_report import write_report

    write_report(work, REPO / "docs" / "improve-experiment.md", REPO / "docs" / "images" / "improve-ventilation.png")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    sys.exit(main())
