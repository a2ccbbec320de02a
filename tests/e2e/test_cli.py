"""The CLI end to end, as a new user runs it: run, verify, inspect, and the standard tools."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name
    found = str(path) if path.exists() else shutil.which(name)
    assert found, f"{name} is not installed next to {sys.executable}"
    return found


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory) -> dict[str, str]:
    env = dict(os.environ)
    env["CHAINPROOF_TRUST_DIR"] = str(tmp_path_factory.mktemp("cli-trust"))
    return env


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, cli_env):
    cwd = tmp_path_factory.mktemp("cli-run")
    proc = _run([_tool("chainproof"), "run", "--format", "json"], cwd, cli_env)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    return cwd, summary, proc


def test_run_prints_json_summary_last_and_progress(cli_run):
    cwd, summary, proc = cli_run
    assert summary["verified"] is True
    assert summary["registered"] == "local://chainproof-model@1"
    assert Path(summary["bundle"]).is_dir() and Path(summary["model"]).is_dir()
    assert Path(summary["owner_key"]) == cwd / "chainproof-work" / "keys" / "owner.pub"
    assert len(summary["model_sha256"]) == 64
    for step in ("secure_ingest", "train_model", "sign_and_attest", "verify_chain", "register_model"):
        assert step in proc.stderr


def test_verify_accepts_the_bundle_with_the_owner_key(cli_run, cli_env):
    cwd, summary, _ = cli_run
    proc = _run([_tool("chainproof"), "verify", summary["bundle"], "--owner-key", summary["owner_key"],
                 "--format", "json"], cwd, cli_env)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    assert doc["verified"] is True and doc["model_sha256"] == summary["model_sha256"]


def test_verify_uses_the_trust_store_run_maintains(cli_run, cli_env):
    cwd, summary, _ = cli_run
    proc = _run([_tool("chainproof"), "verify", summary["bundle"]], cwd, cli_env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith("OK: ")


def test_in_toto_verify_accepts_the_bundle(cli_run, cli_env):
    cwd, summary, _ = cli_run
    bundle = Path(summary["bundle"])
    proc = _run([_tool("in-toto-verify"), "--layout", "root.layout", "--verification-keys", "keys/owner.pub",
                 "--link-dir", "links"], bundle, cli_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_model_signing_cli_verifies_the_model_signature(cli_run, cli_env):
    cwd, summary, _ = cli_run
    keys = Path(summary["owner_key"]).parent
    proc = _run([_tool("model_signing"), "verify", "key", "--signature",
                 str(Path(summary["bundle"]) / "attestations" / "model.sig"),
                 "--public_key", str(keys / "sign_and_attest.pub"), summary["model"]], cwd, cli_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_verify_exits_1_naming_the_model_file_after_a_byte_flip(cli_run, cli_env, tmp_path):
    cwd, summary, _ = cli_run
    copy = tmp_path / "v"
    shutil.copytree(Path(summary["bundle"]).parent, copy)
    model = copy / "model" / "model.joblib"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    proc = _run([_tool("chainproof"), "verify", str(copy / "bundle"), "--owner-key", summary["owner_key"]], cwd, cli_env)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("FAIL: model/model.joblib")
    assert "Traceback" not in proc.stderr


def test_verify_without_any_trusted_key_is_a_usage_error(cli_run, tmp_path):
    cwd, summary, _ = cli_run
    env = dict(os.environ, CHAINPROOF_TRUST_DIR=str(tmp_path / "empty"))
    proc = _run([_tool("chainproof"), "verify", summary["bundle"]], cwd, env)
    assert proc.returncode == 2
    assert "no trusted owner key" in proc.stderr and "Traceback" not in proc.stderr


def test_verify_against_someone_elses_owner_key_names_the_signing_key(cli_run, cli_env, tmp_path):
    cwd, summary, _ = cli_run
    other = _run([_tool("chainproof"), "keys", "init", str(tmp_path / "other")], cwd, cli_env)
    assert other.returncode == 0, other.stderr
    proc = _run([_tool("chainproof"), "verify", summary["bundle"], "--owner-key",
                 str(tmp_path / "other" / "owner.pub")], cwd, cli_env)
    assert proc.returncode == 1
    assert "root.layout: signed by key" in proc.stderr and "not a trusted key" in proc.stderr


def test_inspect_shows_steps_principals_and_digests(cli_run, cli_env):
    cwd, summary, _ = cli_run
    proc = _run([_tool("chainproof"), "inspect", summary["bundle"], "--format", "json"], cwd, cli_env)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [s["name"] for s in doc["steps"]][0] == "secure_ingest" and doc["verified"] is False
    assert all(s["principal"] and len(s["keyid"]) == 64 for s in doc["steps"])
    table = _run([_tool("chainproof"), "inspect", summary["bundle"]], cwd, cli_env)
    assert table.returncode == 0 and "train_model" in table.stdout and "model/model.joblib" in table.stdout


def test_run_with_wrong_sha256_stops_before_training_and_registers_nothing(cli_env, tmp_path):
    data = tmp_path / "mine.csv"
    from chainproof.runner import SAMPLE

    shutil.copy(SAMPLE.path(), data)
    wrong = "ab" * 32
    proc = _run([_tool("chainproof"), "run", "--data", str(data), "--sha256", wrong, "--target", "malignant",
                 "--format", "json"], tmp_path, cli_env)
    assert proc.returncode == 1, proc.stderr
    fail = [l for l in proc.stderr.splitlines() if l.startswith("FAIL:")]
    assert len(fail) == 1
    assert "secure_ingest" in fail[0] and f"expected sha256:{wrong}" in fail[0] and f"got sha256:{SAMPLE.sha256}" in fail[0]
    assert "train_model" not in proc.stderr.split("FAIL:")[0].replace("secure_ingest", "")
    assert not (tmp_path / "chainproof-work" / "registry").exists()
    assert json.loads(proc.stdout.strip().splitlines()[-1])["verified"] is False


def test_run_on_users_own_csv(cli_env, tmp_path):
    import hashlib

    rows = ["x1,x2,label"] + [f"{i % 7},{(i * 3) % 11},{int(i % 7 > 3)}" for i in range(200)]
    data = tmp_path / "own.csv"
    data.write_text("\n".join(rows) + "\n")
    digest = hashlib.sha256(data.read_bytes()).hexdigest()
    proc = _run([_tool("chainproof"), "run", "--data", str(data), "--sha256", digest, "--target", "label",
                 "--model-name", "own", "--estimator", "logistic_regression", "--format", "json"], tmp_path, cli_env)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["registered"] == "local://own@1"


def test_keys_init_refuses_to_overwrite(cli_env, tmp_path):
    first = _run([_tool("chainproof"), "keys", "init", str(tmp_path / "k")], tmp_path, cli_env)
    assert first.returncode == 0, first.stderr
    again = _run([_tool("chainproof"), "keys", "init", str(tmp_path / "k")], tmp_path, cli_env)
    assert again.returncode == 2
    assert "refusing to overwrite" in again.stderr and "Traceback" not in again.stderr


def test_usage_errors_exit_2_without_traceback(cli_env, tmp_path):
    proc = _run([_tool("chainproof"), "run", "--data", "x.csv"], tmp_path, cli_env)
    assert proc.returncode == 2 and "--sha256" in proc.stderr and "Traceback" not in proc.stderr
    proc = _run([_tool("chainproof"), "verify", str(tmp_path / "nope")], tmp_path, cli_env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
