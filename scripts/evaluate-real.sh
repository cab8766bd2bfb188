#!/usr/bin/env bash
# Score models on real data and on the synthetic held-out anatomy family, side by side (issue 12):
#   [PRECISION=bf16] scripts/evaluate-real.sh OUT_DIR MODEL_DIR [MODEL_DIR ...]
# writes OUT_DIR/proton-mri, OUT_DIR/ct-test and OUT_DIR/synthetic-heldout (each: report.md, per_case.csv,
# summary.json, plots, overlays of the worst cases). The real adult proton MRI of ../shared/data is
# evaluation only: it is linked into runs/ for reading, never copied into the repository or trained on.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 2 ]; then echo "usage: $0 OUT_DIR MODEL_DIR [MODEL_DIR ...]" >&2; exit 2; fi
out=$1; shift
models=(--precision "${PRECISION:-auto}"); for m in "$@"; do models+=(--model "$m"); done
data=$(cd .. && pwd)/shared/data
bin=.venv/bin/neonatal-lung-seg

source scripts/link-proton-eval.sh
if link_proton_eval; then
  $bin evaluate "${models[@]}" --data runs/proton-eval --out "$out/proton-mri" --overwrite --worst 2
fi

if [ -d "$data/ct-lung-slices" ]; then
  test -d runs/ct-data || $bin prepare-ct -o runs/ct-data
  $bin evaluate "${models[@]}" --data runs/ct-data --split docs/reports/ct-lung-slices/split.json --part test \
    --out "$out/ct-test" --overwrite --references physical
else
  echo "skipped the CT slices: $data/ct-lung-slices is absent" >&2
fi

# The fresh held-out-family test set of bundled model 1.2.0 (docs/bundled-model-retraining.md).
if [ ! -d runs/syn-heldout-test ]; then
  # each part once (a rerun after an interrupted combine reuses them)
  test -d runs/syn-heldout-test-atlas || $bin synthesize -o runs/syn-heldout-test-atlas --cases 10 --seed 900000 \
    --anatomy atlas --variant-family heldout --contrast ute
  test -d runs/syn-heldout-test-procedural || $bin synthesize -o runs/syn-heldout-test-procedural --cases 10 \
    --seed 900100 --anatomy procedural --variant-family heldout --contrast ute
  .venv/bin/python -m neonatal_lung_training.datasets.combine -o runs/syn-heldout-test --val-fraction 0 \
    --source runs/syn-heldout-test-atlas --source runs/syn-heldout-test-procedural
fi
$bin evaluate "${models[@]}" --data runs/syn-heldout-test --out "$out/synthetic-heldout" --overwrite --references physical
