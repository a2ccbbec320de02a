"""The benchmarks run at tiny sizes here, so the scripts never rot. Timings are never asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.e2e
def test_quick_benchmarks_write_results_of_the_documented_shape(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out), "--work", str(tmp_path / "work")],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["mode"] == "quick"
    assert {"cpu", "cores", "ram_gib", "python", "packages"} <= set(results["machine"])
    benches = results["benchmarks"]
    assert set(benches) == {"hash", "ingest", "scan", "verify", "pipeline", "memory"}
    for name, bench in benches.items():
        assert "error" not in bench, (name, bench.get("error"))
        if name == "memory":
            assert bench["series"] and all(p["maxrss_bytes"] > 0 for pts in bench["series"].values() for p in pts)
            continue
        assert bench["cases"], name
        for case in bench["cases"]:
            for who, r in case["contenders"].items():
                # Every contender either ran (times and a median) or says why it was skipped.
                assert ("skipped" in r and r["skipped"]) or (r["times_s"] and r["median_s"] >= 0), (name, who, r)
            for t in case.get("targets", []):
                assert t["met"] in (True, False, None) and t["measured"]
        assert any("median_s" in r for case in bench["cases"] for r in case["contenders"].values()
                   if not str(r.get("skipped", ""))), name
    # chainproof itself always runs; alternatives that are not installed here are skipped, never fetched.
    scan = benches["scan"]["cases"][0]["contenders"]
    assert "median_s" in scan["chainproof (command)"]
    readme = (out / "README.md").read_text()
    assert "| case | contender |" in readme and results["machine"]["cpu"] in readme
    assert (out / "verify_scaling.png").stat().st_size > 0 and (out / "memory.png").stat().st_size > 0
