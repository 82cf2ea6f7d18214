#!/usr/bin/env bash
# The test suite, including every notebook executed under papermill at the smoke scale, after
# ruff's lint and format check (scripts/lint.sh). Arguments go to pytest:
#   ./run_tests.sh -m "not slow"   the everyday lane (docs/configuration.md)
# A lint failure does not stop the tests; the exit status is the worse of the two.
set -euo pipefail
cd "$(dirname "$0")"
py="$(scripts/ensure_env.sh)"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
lint=0
scripts/lint.sh "$py" || lint=$?
"$py" -m pytest -q "$@"
[ "$lint" -eq 0 ] || { echo "ruff: see above (scripts/lint.sh)" >&2; exit "$lint"; }
