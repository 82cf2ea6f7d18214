#!/usr/bin/env bash
# Run every notebook headless at one scale (default: tiny, offline, CPU).
#   ./run_all.sh [--scale smoke|tiny|synthetic-25m|410m|1b|6.9b] [--only 00,01] [--seeds 42,137] [--processes 4]
#                [--capacity-pretrain-fraction F] [--ablation-sections freeze,crossover,...]
# --processes N: notebook 02's specialists train first over N processes of this machine
# (accelerate launch; add KALAVAI_FSDP=1 to shard them, as 6.9b needs), the notebooks then in one.
# --capacity-pretrain-fraction F: notebook 05's parameter, in (0, 1]; 1 = the like-for-like capacity control.
# --ablation-sections A,B: notebook 05's sections (default: all offline; at a Hub scale all but the
# long crossover ladder). At a Hub scale the expected GPU-hours print first (`kalavai budget`).
# Executed notebooks: runs/<scale>/notebooks/ (HTML: runs/<scale>/report/index.html);
# seconds per notebook: runs/<scale>/timings.json; results and checkpoints: runs/<scale>/;
# figures: figures/<scale>/. A rerun skips finished steps whose configuration matches.
# Settings (KALAVAI_RUNS, KALAVAI_PYTHON, ...): docs/configuration.md; `python -m kalavai_utils env` prints them.
set -euo pipefail
cd "$(dirname "$0")"
scale=tiny only="" seeds="" processes="" fraction="" sections=""
while [ $# -gt 0 ]; do
  case "$1" in
    --scale) scale="${2:?--scale needs a value}"; shift 2 ;;
    --only) only="${2:?--only needs a value}"; shift 2 ;;
    --seeds) seeds="${2:?--seeds needs a value}"; shift 2 ;;
    --processes) processes="${2:?--processes needs a value}"; shift 2 ;;
    --capacity-pretrain-fraction) fraction="${2:?--capacity-pretrain-fraction needs a value}"; shift 2 ;;
    --ablation-sections) sections="${2:?--ablation-sections needs a value}"; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "error: unknown argument $1 (see ./run_all.sh --help)" >&2; exit 2 ;;
  esac
done
py="$(scripts/ensure_env.sh)"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
args=(--scale "$scale")
[ -n "$only" ] && args+=(--only "$only")
[ -n "$seeds" ] && args+=(--seeds "$seeds")
[ -n "$processes" ] && args+=(--processes "$processes")
[ -n "$fraction" ] && args+=(--capacity-pretrain-fraction "$fraction")
[ -n "$sections" ] && args+=(--ablation-sections "$sections")
# Every argument and KALAVAI_* setting checked before anything runs: a bad one is one line, exit 2.
"$py" -m kalavai_utils check-scale "$scale" "${args[@]:2}"
# A Hub scale: the expected GPU-hours per notebook, an estimate from H100 timings (nothing at an offline scale).
"$py" -m kalavai_utils budget --skip-offline --scale "$scale" ${only:+--only "$only"} ${seeds:+--seeds "$seeds"} \
  ${sections:+--ablation-sections "$sections"}
# A Hub scale: every model revision and dataset the notebooks read is checked first, one line each.
"$py" -m kalavai_utils preflight --scale "$scale" ${only:+--only "$only"}
"$py" -m kalavai_utils run-notebooks "${args[@]}"
out="${KALAVAI_RUNS:-runs}/$scale"
figs="figures/$scale"
[ "${KALAVAI_SIZES:-}" = ci ] && figs="$out/figures"  # a code-path test's figures are no result
echo "[kalavai] done: $out/notebooks (report: $out/report/index.html), $figs"
