"""The correction loop's learning-curve figure and Markdown table, from WORK/results.json.

    .venv/bin/python Training/scripts/correction_loop_report.py runs/correction-loop/results.json

rewrites docs/correction-loop.md and docs/images/correction-loop.png without training anything.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
TARGET = 0.95
NOTES_START, NOTES_END = "<!-- notes: kept when this file is regenerated -->", "<!-- end of notes -->"
COLOURS = {"uncertainty": "#c0392b", "random": "#2c7fb8"}


def _curves(domain: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    curves: dict[str, list[dict[str, Any]]] = {}
    for row in domain["rows"]:
        curves.setdefault(row["strategy"], []).append(row)
    return {k: sorted(v, key=lambda r: r["n"]) for k, v in curves.items()}


def write_figure(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    domains = results["domains"]
    figure, axes = plt.subplots(1, len(domains), figsize=(5.2 * len(domains), 4.0), squeeze=False)
    for axis, domain in zip(axes[0], domains):
        baseline = domain["baseline"]["dice_mean"]
        sizes = sorted({r["n"] for r in domain["rows"]})
        positions = {n: i + 1 for i, n in enumerate(sizes)}
        for strategy, rows in _curves(domain).items():
            xs = [0] + [positions[r["n"]] for r in rows]
            axis.plot(xs, [baseline] + [r["dice_mean"] for r in rows], "o-", color=COLOURS.get(strategy),
                      label=f"{strategy}: mean")
            axis.plot(xs[1:], [r["dice_min"] for r in rows], "v:", color=COLOURS.get(strategy), alpha=0.6,
                      label=f"{strategy}: worst case")
        axis.axhline(TARGET, color="0.4", lw=0.8, ls="--", label=f"Dice {TARGET}")
        axis.set_xticks([0, *positions.values()], ["0\n(bundled)", *map(str, sizes)])
        axis.set_xlabel("corrected cases N")
        axis.set_ylabel("held-out Dice (whole lung)")
        axis.set_ylim(0, 1.0)
        axis.set_title(f"{domain['domain']}: {domain['heldout']}", fontsize=9)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7, loc="lower right")
    figure.suptitle("Fine-tuning the bundled model on N corrected cases (exported through the Slicer module)",
                    fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".tmp-{path.name}")
    figure.savefig(temporary, dpi=110)
    plt.close(figure)
    os.replace(temporary, path)


def _training_minutes(results: dict[str, Any]) -> float:
    return sum(float(r.get("train_minutes", 0.0)) for d in results["domains"] for r in d["rows"])


def _first_reaching(rows: list[dict[str, Any]], target: float) -> int | None:
    return next((r["n"] for r in rows if r["dice_mean"] >= target), None)


def verdict(domain: dict[str, Any]) -> str:
    """Which selection did better, counted over the N both strategies ran, in plain words."""
    curves = _curves(domain)
    if set(curves) != {"uncertainty", "random"}:
        return "Only one selection strategy ran; no comparison."
    by_n = {s: {r["n"]: r["dice_mean"] for r in rows} for s, rows in curves.items()}
    shared = sorted(set(by_n["uncertainty"]) & set(by_n["random"]))
    wins = sum(by_n["uncertainty"][n] > by_n["random"][n] + 0.005 for n in shared)
    losses = sum(by_n["random"][n] > by_n["uncertainty"][n] + 0.005 for n in shared)
    mean_gap = sum(by_n["uncertainty"][n] - by_n["random"][n] for n in shared) / max(1, len(shared))
    if wins > losses:
        who = "uncertainty-ranked selection did better"
    elif losses > wins:
        who = "random selection did better"
    else:
        who = "neither selection did consistently better"
    return (f"Over N = {', '.join(map(str, shared))}: {who} (uncertainty ahead by more than 0.005 at {wins} N, "
            f"behind at {losses}; mean difference {mean_gap:+.4f} Dice).")


def write_markdown(results: dict[str, Any], path: Path, figure: Path) -> None:
    settings = results["settings"]
    lines = [
        "# The correction loop, measured",
        "",
        "Does correcting a few cases make the bundled model better on a domain it was not trained on, and does "
        "it matter which cases a reviewer corrects? Each corrected case was pushed through the Slicer module's "
        "real export path (the module Logic's *Segment* on real slicer-core MRML, the segments redrawn from the "
        "reference label with Slicer's segment editor logic, then the Logic's *Export for retraining*), and the "
        "bundled model was fine-tuned on the exported folder with `neonatal-lung-seg train --init-model`. "
        "Held-out Dice is the engine's output with post-processing against the reference (whole lung).",
        "",
        f"![learning curves]({os.path.relpath(figure, path.parent)})",
        "",
        "Reproduce (results are cached under the work folder; a rerun only does what is missing):",
        "",
        "```bash",
        results["command"],
        "```",
        "",
        f"Machine: {results['machine']}; training took {_training_minutes(results):.0f} min over "
        f"{sum(len(d['rows']) for d in results['domains'])} models (shared with other jobs). "
        f"Fine-tuning per model: {settings['epochs']} epochs x {settings['steps_per_epoch']} steps, batch "
        f"{settings['batch_size']}, Adam {settings['learning_rate']}, "
        f"{'encoder frozen' if settings['freeze_encoder'] else 'all weights trained'}, MONAI augmentation of the "
        "recipe, no validation subjects (every corrected case trains; the best epoch is picked on the training "
        "slices). The same compute budget for every N. Uncertainty ranking: `neonatal-lung-seg rank` with the "
        f"bundled model{' and left-right flip agreement' if settings['flip'] else ''} (1 - estimated Dice); "
        f"random: a shuffle with seed {settings['seed']}. Selections are nested (the N = 5 cases include the "
        "N = 2 ones), as a growing training folder is.",
        "",
    ]
    for domain in results["domains"]:
        curves = _curves(domain)
        base = domain["baseline"]
        strategies = list(curves)
        lines += [f"## {domain['title']}", "",
                  f"Held out: {domain['heldout']}; pool of {domain['pool_cases']} cases to select from.", "",
                  "| corrected cases N | " + " | ".join(f"{s}: mean (median, min)" for s in strategies) + " |",
                  "|---|" + "---|" * len(strategies),
                  "| 0 (bundled model) | " + " | ".join(
                      f"{base['dice_mean']:.4f} ({base['dice_median']:.4f}, {base['dice_min']:.4f})"
                      for _ in strategies) + " |"]
        for n in sorted({r["n"] for r in domain["rows"]}):
            cells = []
            for s in strategies:
                row = next((r for r in curves[s] if r["n"] == n), None)
                cells.append("-" if row is None else
                             f"{row['dice_mean']:.4f} ({row['dice_median']:.4f}, {row['dice_min']:.4f})")
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
        lines.append("")
        for s in strategies:
            reached = _first_reaching(curves[s], TARGET)
            lines.append(f"- {s}: mean held-out Dice >= {TARGET} " +
                         (f"first at N = {reached}." if reached else "not reached at any N tried."))
        check = domain.get("ranking_check")
        if check:
            rho = check["spearman_benefit_vs_error"]
            rho = "undefined" if rho is None else f"{rho:.3f}"
            lines.append(
                f"- The ranking itself, checked against the pool's labels: Spearman correlation {rho} between "
                f"predicted benefit and the bundled model's real "
                f"error (1 - Dice) over {check['cases']} cases; real error {check['mean_error_top']:.3f} in the top "
                f"{check['top']} against {check['mean_error_all']:.3f} over all; failures (Dice < 0.5) "
                f"{100 * check['share_failed_top']:.0f} % of the top {check['top']}, "
                f"{100 * check['share_failed_all']:.0f} % of the pool.")
        lines += [f"- {verdict(domain)}", ""]
    lines += ["Limits: one seed per configuration (no error bars); a CPU budget of a few minutes per model; "
              "the CT slices are CT, not neonatal MRI, and the MRI domain is synthetic. The numbers say how "
              "fast this pipeline adapts, not how a model performs on real newborns.", "",
              _kept_notes(path), ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")


def _kept_notes(path: Path) -> str:
    """The hand-written reading of the results from the previous version of the file, if any."""
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    if NOTES_START in old and NOTES_END in old:
        return old[old.index(NOTES_START):old.index(NOTES_END) + len(NOTES_END)]
    return f"{NOTES_START}\n{NOTES_END}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Rewrite the correction-loop figure and table from results.json")
    parser.add_argument("results", type=Path)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "correction-loop.md")
    parser.add_argument("--figure", type=Path, default=REPO / "docs" / "images" / "correction-loop.png")
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text(encoding="utf-8"))
    write_figure(results, args.figure)
    write_markdown(results, args.out, args.figure)
    print(f"wrote {args.out} and {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
