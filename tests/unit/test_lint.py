"""CI fails on a lint or type error: scripts/lint.sh, which .ci/run runs before the tests.

Each case is a small module with exactly one fault of a kind the project declares it refuses
(pyflakes, import order, a blind except, a missing annotation under mypy --strict); the script
must exit non-zero and name the rule. A clean module passes, so the checks are not blanket
refusals.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = ROOT / "scripts" / "lint.sh"

CLEAN = '''"""A clean module."""

from __future__ import annotations

import json


def dump(value: dict[str, int]) -> str:
    """Return the JSON text."""
    return json.dumps(value)
'''

FAULTS = {
    "F401": CLEAN.replace("import json\n", "import json\nimport os\n"),
    "I001": CLEAN.replace("import json\n", "import sys\nimport json\n").replace(
        "return json.dumps(value)", "return json.dumps(value) + str(sys.maxsize)"),
    "BLE001": CLEAN + '''

def safe(value: dict[str, int]) -> str:
    """Swallow everything."""
    try:
        return dump(value)
    except Exception:
        return ""
''',
    "B006": CLEAN + '''

def grow(acc: list[int] = []) -> list[int]:
    """A mutable default."""
    acc.append(1)
    return acc
''',
    "no-untyped-def": CLEAN + '''

def untyped(value):
    """No annotations."""
    return value
''',
    "arg-type": CLEAN + '''

def wrong() -> str:
    """A type error."""
    return dump("not a dict")
''',
}


def _lint(path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LINT_BIN": str(Path(sys.executable).parent), "MYPY_CACHE_DIR": str(path.parent / ".mypy")}
    return subprocess.run(["bash", str(LINT), str(path)], capture_output=True, text=True, env=env, timeout=300)


def test_ci_runs_the_lint_script_before_the_tests():
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"&& scripts/lint\.sh \\\n\s+&& \.venv/bin/python -m pytest", ci), "lint must gate the tests"
    assert "set -euo pipefail" in ci


def test_a_clean_module_passes(tmp_path):
    path = tmp_path / "clean.py"
    path.write_text(CLEAN)
    done = _lint(path)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("rule", sorted(FAULTS))
def test_each_kind_of_fault_fails_the_lint_and_is_named(tmp_path, rule):
    path = tmp_path / "faulty.py"
    path.write_text(FAULTS[rule])
    done = _lint(path)
    assert done.returncode != 0, f"{rule}: the lint passed"
    assert rule in done.stdout + done.stderr
