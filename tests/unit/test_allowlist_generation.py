"""The shipped allowlist is reproducible: each committed run from its library versions, the
shipped file from the runs (scripts/make_allowlist.py; a hand edit of either fails here)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "make_allowlist.py"


def _module():
    spec = importlib.util.spec_from_file_location("make_allowlist", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(generated_from: dict[str, str], globals_: dict[str, dict[str, list[str]]]) -> dict:
    return {"schema": "s", "version": 2, "comment": "c.", "generated_from": generated_from, "globals": globals_}


def test_the_shipped_allowlist_is_the_union_of_the_committed_runs():
    tool = _module()
    runs = [json.loads(p.read_text()) for p in sorted(tool.RUNS.glob("*.json"))]
    assert len(runs) >= 2, "one run per set of library versions users install"
    assert tool.SHIPPED.read_text() == tool._text(tool.union(runs))
    shipped = json.loads(tool.SHIPPED.read_text())
    for run in runs:  # every run's versions are recorded in the shipped file
        for package, version in run["generated_from"].items():
            assert version in shipped["generated_from"][package].split(", ")


def test_a_union_keeps_every_global_with_every_role_and_every_version():
    tool = _module()
    a = _run({"pandas": "2.3.3", "numpy": "2.4.6"}, {"m": {"A": ["call"], "B": []}, "z": {"Z": ["build"]}})
    b = _run({"pandas": "3.1.1", "numpy": "2.4.6"}, {"m": {"A": ["build"], "C": ["call"]}})
    got = tool.union([a, b])
    assert got["globals"] == {"m": {"A": ["build", "call"], "B": [], "C": ["call"]}, "z": {"Z": ["build"]}}
    assert got["generated_from"] == {"pandas": "2.3.3, 3.1.1", "numpy": "2.4.6"}
    assert got["comment"].startswith("c. The union of 2 runs")
    assert tool.union([a]) == a  # one run is its own union
    with pytest.raises(ValueError):
        tool.union([])


def test_the_run_for_the_installed_versions_is_reproduced():
    tool = _module()
    import joblib
    import numpy
    import pandas
    import scipy
    import sklearn

    import platform

    installed = {"python": platform.python_version(), "numpy": numpy.__version__, "scipy": scipy.__version__, "pandas": pandas.__version__,
                 "scikit-learn": sklearn.__version__, "joblib": joblib.__version__}
    runs = [json.loads(p.read_text())["generated_from"] for p in sorted(tool.RUNS.glob("*.json"))]
    if not any(all(run.get(k) == v for k, v in installed.items()) for run in runs):
        pytest.skip(f"no committed allowlist run for the installed versions {installed}")
    done = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, timeout=600,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
