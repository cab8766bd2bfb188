#!/usr/bin/env bash
# Score click refinement with simulated clicks (issue 15):
#   scripts/evaluate-clicks.sh OUT_DIR [REFINE_MODEL_DIR] [MAX_CLICKS]
# writes OUT_DIR/proton-mri and OUT_DIR/synthetic-heldout (each: report.md, noc.csv, noc.json,
# dice-per-click.png), from an empty mask and from the bundled segmentation model's output, and
# OUT_DIR/seconds-per-click.json (benchmarks/refine_click.py, 96 x 256 x 256). The real adult proton MRI of
# ../shared/data is evaluation only: linked into runs/ for reading, never copied or trained on.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then echo "usage: $0 OUT_DIR [REFINE_MODEL_DIR] [MAX_CLICKS]" >&2; exit 2; fi
out=$1
model=${2:-Resources/Models/neonatal-lung-refine-r50}
clicks=${3:-20}
bin=.venv/bin/neonatal-lung-seg

source scripts/link-proton-eval.sh
if link_proton_eval; then
  $bin evaluate-clicks --data runs/proton-eval --refine-model "$model" --max-clicks "$clicks" -o "$out/proton-mri"
fi

# Two volumes of the held-out anatomy family's test set (bundled-model-1.2.0.yaml): one atlas, one procedural.
if [ ! -d runs/syn-heldout-clicks ]; then
  mkdir -p runs/syn-heldout-clicks/images runs/syn-heldout-clicks/labels
  for case in s0-synthetic-900000_v001 s1-synthetic-900100_v001; do
    test -f "runs/syn-heldout-test/images/$case.nii.gz" || { echo "runs/syn-heldout-test is missing: run scripts/evaluate-real.sh first" >&2; exit 2; }
    ln -sfn "$PWD/runs/syn-heldout-test/images/$case.nii.gz" "runs/syn-heldout-clicks/images/$case.nii.gz"
    ln -sfn "$PWD/runs/syn-heldout-test/labels/$case.nii.gz" "runs/syn-heldout-clicks/labels/$case.nii.gz"
  done
fi
$bin evaluate-clicks --data runs/syn-heldout-clicks --refine-model "$model" --max-clicks "$clicks" -o "$out/synthetic-heldout"
.venv/bin/python benchmarks/refine_click.py --refine-model "$model" --json "$out/seconds-per-click.json"
