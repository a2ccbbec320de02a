"""Workload identity, with the real google-auth against a metadata server on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from chainproof.attest import load_link
from chainproof.errors import CredentialRefused, PolicyViolation
from chainproof.policy import REFERENCE_PIPELINE_STEPS, REFERENCE_STEPS, generate_layout, sign_layout
from chainproof.runner import StepFailed, run_reference_pipeline
from chainproof.signing import load_public_key, load_signer
from chainproof.verify import LINKS_DIR, verify_bundle

from tests.integration.conftest import key_material, tool

STEPS = list(REFERENCE_PIPELINE_STEPS)


def _principals(bundle: Path) -> dict[str, dict]:
    found = {}
    for path in sorted((bundle / LINKS_DIR).glob("*.link")):
        _, link = load_link(path)
        found[link.name] = link.environment["chainproof"]["principal"]
    return found


def _files_text(*roots: Path) -> str:
    chunks = []
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                chunks.append(path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(chunks)


def test_every_link_records_the_workload_identity_from_the_metadata_server(on_gce, tmp_path):
    result = run_reference_pipeline(
        workdir=tmp_path / "work",
        trust_dir=tmp_path / "trust",
        identity="gcp",
        expected_principals={step: on_gce.email for step in STEPS},
    )
    principals = _principals(result.bundle)
    assert sorted(principals) == sorted(STEPS)
    for step, principal in principals.items():
        assert principal["kind"] == "metadata-server", step
        assert principal["name"] == on_gce.email, step
    # The real google-auth asked the server, always with the Metadata-Flavor header.
    assert "/computeMetadata/v1/instance/service-accounts/default/token" in on_gce.requests
    assert on_gce.refused == []
    assert any("pinned step principals match" in c for c in result.verification.checks)

    # No token, ever, in the run's files, links, registry or logs.
    text = _files_text(result.run_dir, result.bundle.parent)
    assert on_gce.token not in text
    assert "PRIVATE KEY" not in text


def test_local_mode_records_the_local_user_without_asking_any_metadata_server(on_gce, tmp_path):
    result = run_reference_pipeline(workdir=tmp_path / "work", trust_dir=tmp_path / "trust")
    for principal in _principals(result.bundle).values():
        assert principal["kind"] == "local-user" and "@" in principal["name"]
    assert on_gce.requests == []


def _call_every_component(tmp_path: Path, **identity):
    """Every step, as its component runs it (the explicit-chain API: the same open_step)."""
    from chainproof import steps

    common = dict(layout_sha256="0" * 64, signer="file:/nonexistent.pem", **identity)
    calls = {
        "secure_ingest": lambda: steps.secure_ingest(
            source_uri="file:///nonexistent.csv", expected_sha256="0" * 64, layout_uri="file:///nonexistent",
            dataset_dir=tmp_path / "ds", chain_dir=tmp_path / "c0", **common),
        "train_model": lambda: steps.train_model(
            dataset_dir=tmp_path / "ds", chain_in=tmp_path / "c0", target_column="y", model_dir=tmp_path / "model",
            chain_out=tmp_path / "c1", **common),
        "sign_and_attest": lambda: steps.sign_and_attest(model_dir=tmp_path / "model", chain_in=tmp_path / "c1",
                                                         chain_out=tmp_path / "c2", **common),
        "verify_chain": lambda: steps.verify_chain(model_dir=tmp_path / "model", chain_in=tmp_path / "c2",
                                                   chain_out=tmp_path / "c3", **common),
        "register_model": lambda: steps.register_model(
            model_dir=tmp_path / "model", chain_in=tmp_path / "c3", model_name="m",
            registry_uri=(tmp_path / "r").as_uri(), **common),
    }
    errors = {}
    for step, call in calls.items():
        with pytest.raises(CredentialRefused) as err:
            call()
        errors[step] = str(err.value)
    return errors


@pytest.mark.parametrize("mode", ["gcp", "local"])
def test_every_component_refuses_a_service_account_key_file(service_account_key_file, monkeypatch, tmp_path, mode):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(service_account_key_file))
    errors = _call_every_component(tmp_path, identity=mode)
    assert sorted(errors) == sorted(s.name for s in REFERENCE_STEPS)
    for step, message in errors.items():
        assert str(service_account_key_file) in message, step
        assert "leaked-key@chainproof-test.iam.gserviceaccount.com" in message
        assert "workload identity" in message and "allow_service_account_key=True" in message
        for fragment in key_material(service_account_key_file):
            assert fragment not in message
    # Refused before reading anything: no output of any step exists.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sa-key.json"]


def test_local_run_refuses_a_key_file_before_any_step_runs(service_account_key_file, tmp_path):
    with pytest.raises(CredentialRefused, match=r"refusing service-account key file .*sa-key.json"):
        run_reference_pipeline(workdir=tmp_path / "work", trust_dir=tmp_path / "trust",
                               adc_credentials_file=str(service_account_key_file))
    assert not (tmp_path / "work" / "runs").exists()


def test_cli_run_refuses_the_key_file_named_by_GOOGLE_APPLICATION_CREDENTIALS(service_account_key_file, tmp_path):
    env = dict(os.environ, GOOGLE_APPLICATION_CREDENTIALS=str(service_account_key_file),
               CHAINPROOF_TRUST_DIR=str(tmp_path / "trust"))
    proc = subprocess.run([tool("chainproof"), "run", "--workdir", str(tmp_path / "work")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "FAIL: refusing service-account key file" in proc.stderr
    assert str(service_account_key_file) in proc.stderr
    assert not (tmp_path / "work" / "runs").exists()
    for fragment in key_material(service_account_key_file):
        assert fragment not in proc.stdout + proc.stderr


def test_key_file_override_completes_and_verify_reports_the_violation(
    service_account_key_file, monkeypatch, tmp_path
):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(service_account_key_file))
    work = tmp_path / "work"
    with pytest.raises(PolicyViolation) as err:
        run_reference_pipeline(workdir=work, trust_dir=tmp_path / "trust", identity="gcp",
                               allow_service_account_key=True,
                               adc_credentials_file=str(service_account_key_file))
    assert "does not allow service-account keys" in str(err.value)
    # The run completed: the model was registered, and every link records the override.
    bundle = work / "registry" / "models" / "chainproof-model" / "1" / "bundle"
    principals = _principals(bundle)
    assert sorted(principals) == sorted(STEPS)
    for principal in principals.values():
        assert principal["kind"] == "service-account-key"
        assert principal["name"] == "leaked-key@chainproof-test.iam.gserviceaccount.com"
        assert principal["details"]["override"] == "allow_service_account_key"

    # The auditor's verify reports it as a policy violation (exit 1), naming the step.
    env = dict(os.environ, CHAINPROOF_TRUST_DIR=str(tmp_path / "trust"))
    proc = subprocess.run([tool("chainproof"), "verify", str(bundle), "--owner-key", str(work / "keys" / "owner.pub")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "FAIL: step secure_ingest: ran as leaked-key@chainproof-test.iam.gserviceaccount.com" in proc.stderr
    assert "does not allow service-account keys" in proc.stderr

    # Nothing of the key leaked into the run's files or logs.
    text = _files_text(work / "runs", work / "registry")
    for fragment in key_material(service_account_key_file):
        assert fragment not in text + proc.stdout + proc.stderr
    assert "PRIVATE KEY" not in text


def test_a_layout_that_allows_key_files_verifies_the_override(service_account_key_file, monkeypatch, tmp_path):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(service_account_key_file))
    result = run_reference_pipeline(workdir=tmp_path / "work", trust_dir=tmp_path / "trust", identity="gcp",
                                    allow_service_account_key=True,
                                    layout_extensions={"allow_service_account_keys": True})
    assert result.verification.step("train_model").principal == "leaked-key@chainproof-test.iam.gserviceaccount.com"


def test_step_running_as_an_unexpected_principal_is_refused_in_the_pipeline(on_gce, tmp_path):
    expected = "trainer-prod@chainproof-test.iam.gserviceaccount.com"
    with pytest.raises(StepFailed) as err:
        run_reference_pipeline(workdir=tmp_path / "work", trust_dir=tmp_path / "trust", identity="gcp",
                               expected_principals={"train_model": expected})
    message = str(err.value)
    assert err.value.step == "train_model"
    assert on_gce.email in message and expected in message


def test_verify_refuses_a_chain_whose_step_ran_as_someone_else(on_gce, tmp_path):
    work = tmp_path / "work"
    result = run_reference_pipeline(workdir=work, trust_dir=tmp_path / "trust", identity="gcp")
    # The owner's policy (re-signed by the owner) says train_model must run as another account.
    expected = "trainer-prod@chainproof-test.iam.gserviceaccount.com"
    owner = load_signer(f"file:{work / 'keys' / 'owner.pem'}")
    keys = {s: load_public_key(work / "keys" / f"{s}.pub") for s in STEPS}
    from chainproof.dsl import derive_graph
    from chainproof.pipelines import zero_trust_training

    graph = derive_graph(zero_trust_training)
    layout = generate_layout(graph.steps, keys,
                             extensions={**graph.extensions(), "expected_principals": {"train_model": expected}})
    (result.bundle / "root.layout").write_bytes(sign_layout(layout, owner))
    with pytest.raises(PolicyViolation) as err:
        verify_bundle(result.bundle, trusted_owner_keys={owner.keyid: owner.public_key})
    assert str(err.value) == (
        f"step train_model: ran as {on_gce.email} (metadata-server), but the layout expects {expected}"
    )
