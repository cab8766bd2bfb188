#!/usr/bin/env bash
# The click-refinement development set (issue 15), the data every engine rule and refinement trial is
# chosen on (the real proton MRI is evaluation only):
#   scripts/click-dev-set.sh OUT_DIR [REFINE_MODEL_DIR] [MAX_CLICKS]
# builds, once, runs/dr-dev6 (six held-out domain-randomised volumes, seed 700000) with two kinds of rim
# starts (rim_starts.py --seed 5: every shell voxel; --partial-volume: partial volume only, in
# runs/dr-dev6pv, which links the same images and labels), then scores MAX_CLICKS (default 10) simulated
# clicks from an empty mask, from the bundled segmentation model's output and from both rim starts:
# OUT_DIR/{empty-model,rims,partial-volume-rims}/ (report.md, noc.csv, noc.json, dice-per-click.png).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then echo "usage: $0 OUT_DIR [REFINE_MODEL_DIR] [MAX_CLICKS]" >&2; exit 2; fi
out=$1
model=${2:-Resources/Models/neonatal-lung-refine-r50}
clicks=${3:-10}
bin=.venv/bin/neonatal-lung-seg
py=.venv/bin/python

dev=runs/dr-dev6
pv=runs/dr-dev6pv
if [ ! -d "$dev/images" ]; then
  $bin synthesize --domain-random --family heldout --cases 6 --seed 700000 -o "$dev"
fi
if [ ! -d "$dev/starts" ]; then
  $py -m neonatal_lung_training.interactive.rim_starts --data "$dev" --seed 5
fi
if [ ! -d "$pv/starts" ]; then
  mkdir -p "$pv"
  ln -sfn "$PWD/$dev/images" "$pv/images"
  ln -sfn "$PWD/$dev/labels" "$pv/labels"
  $py -m neonatal_lung_training.interactive.rim_starts --data "$pv" --seed 5 --partial-volume
fi
$bin evaluate-clicks --data "$dev" --refine-model "$model" --max-clicks "$clicks" --start empty --start model \
  -o "$out/empty-model"
$bin evaluate-clicks --data "$dev" --refine-model "$model" --max-clicks "$clicks" --start given -o "$out/rims"
$bin evaluate-clicks --data "$pv" --refine-model "$model" --max-clicks "$clicks" --start given \
  -o "$out/partial-volume-rims"
