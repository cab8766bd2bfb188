#!/usr/bin/env bash
# Create .venv with everything the project needs, from the package registries only (idempotent).
# torch and torchvision come from the registry as a matched pair: segmentation-models-pytorch imports
# torchvision, and a CPU-only local torch with the registry's torchvision fails to import.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet torch torchvision
  .venv/bin/python -m pip install --quiet -e ".[test]"
  touch "$stamp"
fi
