#!/usr/bin/env bash
# The static checks CI runs before the tests (.ci/run); any error fails CI.
#
#   scripts/lint.sh            ruff (the rules pyproject.toml selects) on sdk/, components/ and
#                              pipelines/; pyflakes' rules (--select F) on tests/, benchmarks/
#                              and scripts/; mypy --strict on pyproject.toml's files
#   scripts/lint.sh FILE...    the same ruff rules and mypy --strict on these files only
#                              (tests/unit/test_lint.py feeds it files with one error each)
#
# LINT_BIN names the folder holding ruff and mypy (default: .venv/bin).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${LINT_BIN:-$ROOT/.venv/bin}
if [ $# -gt 0 ]; then
  "$BIN/ruff" check --no-cache --config "$ROOT/pyproject.toml" "$@"
  exec "$BIN/mypy" --config-file "$ROOT/pyproject.toml" --no-incremental "$@"
fi
cd "$ROOT"
"$BIN/ruff" check sdk components pipelines
"$BIN/ruff" check --select F tests benchmarks scripts
exec "$BIN/mypy"
