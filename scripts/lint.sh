#!/usr/bin/env bash
# ruff (pinned in constraints-cpu.txt, configured in pyproject.toml) over the package, the tests
# and the scripts: lint, then whether the formatter would change a file. Notebooks are left out.
# Fix what it reports with `ruff check --fix` and `ruff format` on the files named.
set -uo pipefail
cd "$(dirname "$0")/.."
py="${1:-$(scripts/ensure_env.sh)}"
status=0
"$py" -m ruff check kalavai_utils tests scripts || status=1
"$py" -m ruff format --check kalavai_utils tests scripts || status=1
exit $status
