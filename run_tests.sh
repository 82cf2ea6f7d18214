#!/usr/bin/env bash
# The test suite, including every notebook executed under papermill at the smoke scale.
set -euo pipefail
cd "$(dirname "$0")"
py="$(scripts/ensure_env.sh)"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
"$py" -m pytest -q "$@"
