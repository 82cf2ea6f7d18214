#!/usr/bin/env bash
# Prints the Python interpreter to use, creating ./.venv with every package when missing.
# Every package is installed at the exact version of constraints-cpu.txt (the versions the
# results were made with); pyproject.toml only states compatible ranges.
# CPU machines want the CPU torch wheel (an unpinned torch pulls GBs of CUDA): where pip is
# not already configured with a CPU wheel, run with
#   PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu ./run_all.sh
# GPU machines: create the conda env from environment.yml and set KALAVAI_PYTHON=python.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${KALAVAI_PYTHON:-}" ]; then echo "$KALAVAI_PYTHON"; exit 0; fi
venv="${KALAVAI_VENV:-.venv}"
check='import torch, transformers, datasets, accelerate, peft, papermill, nbconvert, seaborn, statsmodels, ipykernel, lm_eval, kalavai_utils'
# The packages follow constraints-cpu.txt and pyproject.toml: a pull that changes either
# (a new dependency, a new pin) re-syncs the existing environment.
stamp="$(cat constraints-cpu.txt pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -x "$venv/bin/python" ]; then
  echo "[kalavai] creating the Python environment in $venv (CPU torch 2.13.0)" >&2
  python3 -m venv "$venv" >&2
  "$venv/bin/python" -m pip install -q --upgrade pip >&2 || true
fi
if [ "$(cat "$venv/.kalavai-env" 2>/dev/null)" != "$stamp" ] || ! "$venv/bin/python" -c "$check" >/dev/null 2>&1; then
  echo "[kalavai] installing the pinned packages into $venv" >&2
  "$venv/bin/python" -m pip install -q -c constraints-cpu.txt "torch==2.13.0" >&2
  "$venv/bin/python" -m pip install -q -c constraints-cpu.txt -e ".[notebooks,test,eval]" >&2
  "$venv/bin/python" -c "$check" >&2
  echo "$stamp" > "$venv/.kalavai-env"
fi
echo "$venv/bin/python"
