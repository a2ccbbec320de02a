"""chainproof monitor: logged inputs against the training profile the chain attests."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from chainproof.runner import SAMPLE

CHAINPROOF = str(Path(sys.executable).with_name("chainproof"))


def _held_out() -> tuple[list[str], list[dict[str, str]]]:
    import numpy as np
    from sklearn.model_selection import train_test_split

    with open(SAMPLE.path(), newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        header = list(reader.fieldnames or [])
    y = np.array([r[SAMPLE.target] for r in rows])
    _, test = train_test_split(np.arange(len(rows)), test_size=0.25, random_state=0, stratify=y)
    return header, [rows[i] for i in sorted(test)]


def _log(path: Path, header: list[str], rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["received", *header])
        writer.writeheader()
        for i, row in enumerate(rows):
            writer.writerow({"received": f"2026-12-02T10:{i % 60:02d}:00Z", **row})
    return path


def _monitor(copy, inputs: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CHAINPROOF, "monitor", str(copy.bundle), "--model", str(copy.model),
                           "--owner-key", str(copy.keys_dir / "owner.pub"), "--inputs", str(inputs), *extra],
                          capture_output=True, text=True, timeout=300)


def test_monitor_finds_no_drift_in_a_clean_held_out_sample(registered, tmp_path):
    header, rows = _held_out()
    done = _monitor(registered, _log(tmp_path / "clean.csv", header, rows), "--format", "json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["drift"] is False and doc["alerts"] == [] and doc["samples"] == len(rows)
    assert max(doc["psi"].values()) < 0.2 and doc["ks"] < 0.2
    assert doc["model"] == "chainproof-model"


def test_monitor_reports_a_shifted_feature_with_its_plot(registered, tmp_path):
    header, rows = _held_out()
    shifted = [{**r, "mean_texture": str(float(r["mean_texture"]) + 8.0)} for r in rows]
    inputs = _log(tmp_path / "shifted.csv", header, shifted)
    done = _monitor(registered, inputs, "--format", "json")
    assert done.returncode == 1, done.stderr
    doc = json.loads(done.stdout)
    assert doc["drifting_features"] == ["mean_texture"]
    assert doc["psi"]["mean_texture"] > 0.2
    assert doc["bins"]["mean_texture"]["observed"] != doc["bins"]["mean_texture"]["expected"]
    page = tmp_path / "drift.html"
    done = _monitor(registered, inputs, "--format", "html", "-o", str(page))
    assert done.returncode == 1
    html = page.read_text()
    assert "<h1>Drift: drift</h1>" in html and "<h3>mean_texture</h3>" in html and html.count("<svg") == 1
    text = _monitor(registered, inputs)
    assert "ALERT: feature mean_texture PSI" in text.stdout and text.stdout.rstrip().endswith("alert(s)")


def test_monitor_refuses_a_profile_that_is_not_the_attested_one(registered, tmp_path):
    header, rows = _held_out()
    profile = registered.bundle / "reports" / "profile.json"
    doc = json.loads(profile.read_text())
    doc["features"][1]["edges"] = [e + 8.0 for e in doc["features"][1]["edges"]]  # hides the shift above
    profile.write_text(json.dumps(doc))
    done = _monitor(registered, _log(tmp_path / "clean.csv", header, rows))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith("FAIL: reports/profile.json (produced by train_model): expected sha256:")


def test_monitor_names_a_feature_missing_from_the_log(registered, tmp_path):
    header, rows = _held_out()
    kept = [h for h in header if h != "mean_area"]
    done = _monitor(registered, _log(tmp_path / "partial.csv", kept, [{k: r[k] for k in kept} for r in rows]))
    assert done.returncode == 2
    assert "found no column 'mean_area'" in done.stderr and "Traceback" not in done.stderr
