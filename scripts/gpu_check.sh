#!/usr/bin/env bash
# The prepared GPU check: what one call on a lent GPU machine measures in 8 minutes
# (docs/gpu-and-hub-scales.md, "The prepared GPU check"; logic: kalavai_utils/gpu_check.py).
#   scripts/gpu_check.sh prepare        here, with PyPI: the notebook stack's wheels for the GPU
#                                       machine's Python into .whl/ (cached), and the 64 MiB travel check
#   scripts/gpu_check.sh plan           the time plan: each part's cap and its expected H100 seconds,
#                                       computed from results/410m/*.json and results/synthetic-25m/
#   scripts/gpu_check.sh run            on the GPU machine (carry .whl): install, benchmark --scale 410m,
#                                       benchmark-inference --scale 410m, synthetic-25m's data, its
#                                       notebooks 00-03 at seed 42, each under its own cap within 480 s;
#                                       JSON: results/gpu-check/gpu-check-<device>.json, copied to $OUT
#   scripts/gpu_check.sh run --dry      the same parts at scale smoke, on a CPU (tests/test_gpu_check.py)
#   scripts/gpu_check.sh data [--scale S]   one scale's tokenizer and chunked corpora (cached)
# Options: --budget SECONDS, --runs-root DIR, --out DIR. A second run in the same runs folder skips
# the parts that finished and resumes the notebooks from their cached steps.
# Python: KALAVAI_PYTHON, else a python3 that has torch (the GPU machine's), else scripts/ensure_env.sh.
set -euo pipefail
started="$(date +%s.%N)"
cd "$(dirname "$0")/.."
stage="${1:-}"
case "$stage" in
  prepare|plan|run|data) shift ;;
  -h|--help|"") sed -n '2,17p' "$0"; exit 0 ;;
  *) echo "error: unknown stage $stage: prepare, plan, run or data (scripts/gpu_check.sh --help)" >&2; exit 2 ;;
esac
if [ -n "${KALAVAI_PYTHON:-}" ]; then py="$KALAVAI_PYTHON"
elif python3 -c 'import torch' >/dev/null 2>&1; then py=python3
else py="$(scripts/ensure_env.sh)"; fi
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$py" -m kalavai_utils gpu-check "$stage" --started-at "$started" "$@"
