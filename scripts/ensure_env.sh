#!/usr/bin/env bash
# Prints the Python interpreter to use, creating ./.venv with every package when missing.
# CPU machines get the CPU torch wheel (torch==2.13.0): an unpinned torch pulls GBs of CUDA.
# GPU machines: create the conda env from environment.yml and set KALAVAI_PYTHON=python.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${KALAVAI_PYTHON:-}" ]; then echo "$KALAVAI_PYTHON"; exit 0; fi
venv="${KALAVAI_VENV:-.venv}"
check='import torch, transformers, datasets, accelerate, papermill, seaborn, statsmodels, ipykernel, kalavai_utils'
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "$check" >/dev/null 2>&1; then
  echo "[kalavai] creating the Python environment in $venv (CPU torch 2.13.0)" >&2
  python3 -m venv "$venv" >&2
  "$venv/bin/python" -m pip install -q --upgrade pip >&2 || true
  "$venv/bin/python" -m pip install -q "torch==2.13.0" >&2
  "$venv/bin/python" -m pip install -q -e ".[notebooks,test]" >&2
  "$venv/bin/python" -c "$check" >&2
fi
echo "$venv/bin/python"
