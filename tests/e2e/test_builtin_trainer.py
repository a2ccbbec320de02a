"""The built-in trainer on real tables, end to end: categories and gaps, regression, --drop, refusals, thresholds."""

import csv
import hashlib
import json
import random
import subprocess
import sys
from pathlib import Path


from tests.e2e.test_dsl_pipeline import make_churn_table

CLI = str(Path(sys.executable).parent / "chainproof")


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"CHAINPROOF_TRUST_DIR": str(tmp_path / "trust"), "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    return subprocess.run([CLI, "run", "--workdir", str(tmp_path / "cw"), *args], capture_output=True, text=True,
                          timeout=600, env=env)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_classification_on_categorical_columns_with_gaps_and_a_dropped_id(tmp_path):
    data = tmp_path / "churn.csv"
    digest = make_churn_table(data)
    proc = _run(tmp_path, "--data", str(data), "--sha256", digest, "--target", "churned", "--drop", "customer_id",
                "--format", "json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["metrics"]["roc_auc"] > 0.7
    contract = json.loads((Path(result["model"]) / "features.json").read_text())
    names = [f["name"] for f in contract["features"]]
    assert names == ["plan", "region", "tenure", "charges"] and contract["task"] == "classification"
    types = {f["name"]: f["type"] for f in contract["features"]}
    assert types == {"plan": "categorical", "region": "categorical", "tenure": "numeric", "charges": "numeric"}
    # The features are recorded in the training link too (the registered model's chain).
    from chainproof.signing import load_public_key
    from chainproof.verify import verify_bundle

    owner = load_public_key(result["owner_key"])
    link = verify_bundle(result["bundle"], trusted_owner_keys={owner.keyid: owner}).step("train_model")
    assert [f["name"] for f in link.environment["parameters"]["features"]] == names
    assert link.environment["parameters"]["drop"] == ["customer_id"]


def test_regression_on_a_numeric_target(tmp_path):
    rng = random.Random(3)
    data = tmp_path / "prices.csv"
    with open(data, "w", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(["area", "rooms", "district", "price"])
        for _ in range(600):
            area, rooms, district = rng.uniform(20, 200), rng.randint(1, 6), rng.choice(["a", "b", "c"])
            price = 3 * area + 10 * rooms + {"a": 0, "b": 50, "c": 120}[district] + rng.gauss(0, 5)
            out.writerow([f"{area:.1f}", rooms, district, f"{price:.2f}"])
    proc = _run(tmp_path, "--data", str(data), "--sha256", _sha(data), "--target", "price", "--task", "regression",
                "--estimator", "ridge", "--max-metric", "rmse<=40", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(proc.stdout.strip().splitlines()[-1])["metrics"]
    assert metrics["r2"] > 0.9 and metrics["rmse"] <= 40


def test_many_valued_numeric_target_is_refused_as_classification_naming_the_column(tmp_path):
    rng = random.Random(5)
    data = tmp_path / "sales.csv"
    with open(data, "w", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(["x", "amount"])
        for _ in range(2000):
            out.writerow([f"{rng.random():.4f}", f"{rng.uniform(0, 5000):.2f}"])
    proc = _run(tmp_path, "--data", str(data), "--sha256", _sha(data), "--target", "amount")
    assert proc.returncode != 0
    fail = [line for line in proc.stderr.splitlines() if line.startswith("FAIL:")]
    assert len(fail) == 1 and "amount" in fail[0] and "distinct" in fail[0] and "regression" in fail[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "cw" / "registry" / "models").exists()


def test_a_metric_below_its_threshold_fails_the_gate_closed(tmp_path):
    proc = _run(tmp_path, "--min-metric", "roc_auc>=0.9999", "--min-metric", "accuracy>=0.5")
    assert proc.returncode == 1, proc.stderr
    fail = [line for line in proc.stderr.splitlines() if line.startswith("FAIL:")]
    assert len(fail) == 1 and fail[0].startswith("FAIL: verify_chain:"), proc.stderr
    assert "roc_auc" in fail[0] and "0.9999" in fail[0], fail[0]
    assert not (tmp_path / "cw" / "registry" / "models").exists()


def test_a_metric_threshold_that_holds_is_recorded_in_the_gate_summary(tmp_path):
    proc = _run(tmp_path, "--min-metric", "roc_auc>=0.8", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    bundle = Path(json.loads(proc.stdout.strip().splitlines()[-1])["bundle"])
    import base64

    vsa = json.loads(base64.b64decode(json.loads((bundle / "attestations" / "vsa.json").read_text())["payload"]))
    assert any(c.startswith("metric thresholds (layout): roc_auc>=0.8") for c in vsa["predicate"]["checks"])
