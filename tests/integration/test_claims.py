"""Claims the documentation makes that no test proved before: each test fails when its check is removed."""

from __future__ import annotations

import hashlib
import json

import pytest

from chainproof import steps
from chainproof.digests import digest_tree
from chainproof.errors import ArtifactRefused, CredentialRefused, DigestMismatch
from chainproof.policy import REFERENCE_STEPS, StepSpec, generate_layout, sign_layout
from chainproof.registry import LocalModelRegistry
from chainproof.runner import SAMPLE
from chainproof.signing import init_keys, load_public_key, load_signer
from chainproof.verify import VerificationResult

from tests.integration.test_kms import KEY, _env, _in_subprocess


# --- identity: user credentials are refused outside local mode ------------------------------------


def test_user_credentials_are_refused_in_gcp_mode(tmp_path, monkeypatch):
    from chainproof.identity import resolve_principal

    adc = tmp_path / "application_default_credentials.json"
    adc.write_text(json.dumps({
        "type": "authorized_user", "client_id": "123.apps.googleusercontent.com",
        "client_secret": "not-a-real-secret", "refresh_token": "1//not-a-real-refresh-token",
    }))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc))
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "chainproof-test")
    with pytest.raises(CredentialRefused) as err:
        resolve_principal(mode="gcp")
    assert "user" in str(err.value).lower()
    assert "not-a-real" not in str(err.value)
    # The same credentials are fine for a local trial, recorded as the local user.
    assert resolve_principal(mode="local").kind == "local-user"


# --- Cloud KMS: response integrity (CRC32C) ------------------------------------------------------


@pytest.mark.parametrize("field, message", [
    ("signature_crc32c", "the response was corrupted in transit"),
    ("verified_digest_crc32c", "the request was corrupted in transit"),
    ("pem_crc32c", "public key corrupted in transit"),
])
def test_kms_response_failing_its_crc32c_check_is_refused(kms_server, tmp_path, field, message):
    kms, endpoint, cert = kms_server
    name = kms.add_key(KEY.format(role="train_model"))
    kms.corrupt.add(field)
    pinned = tmp_path / "pinned.pub"
    pinned.write_text(kms.public_pem(name))
    # With a pinned key no GetPublicKey is made: the pem check needs the unpinned path.
    pin = "" if field == "pem_crc32c" else f', public_key=load_public_key("{pinned}")'
    proc = _in_subprocess(f"""
        from chainproof.errors import SignatureError
        from chainproof.signing import load_public_key, load_signer
        try:
            signer = load_signer("gcpkms://{name}?endpoint={endpoint}"{pin})
            signer.signer.sign(b"link payload")
            print("SIGNED")
        except SignatureError as exc:
            print("REFUSED:", exc)
    """, _env(cert, tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert f"REFUSED: gcpkms://{name}: {message}" in proc.stdout, proc.stdout


# --- the registry re-hashes what it stores ----------------------------------------------------------


def test_registry_refuses_a_model_swapped_between_the_check_and_the_copy(tmp_path):
    verified_model = tmp_path / "verified"
    verified_model.mkdir()
    (verified_model / "model.joblib").write_bytes(b"the verified model")
    verified = VerificationResult(layout_sha256="0" * 64, owner_keyid="", steps=[],
                                  model_files=digest_tree(verified_model, prefix="model"))
    swapped = tmp_path / "swapped"
    swapped.mkdir()
    (swapped / "model.joblib").write_bytes(b"another model, put there after verification")
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "bundle.json").write_text("{}")
    reg = LocalModelRegistry(tmp_path / "registry")
    pending = reg.prepare("fraud")
    with pytest.raises(DigestMismatch, match=r"model/model\.joblib \(attested by the verified chain\)"):
        reg.commit(pending, model_dir=swapped, bundle_dir=bundle, verified=verified)
    base = tmp_path / "registry" / "models" / "fraud"
    assert not (base / "1").exists() and not [p for p in base.iterdir() if p.name.startswith(".staging")]
    # The genuine model registers.
    assert reg.commit(pending, model_dir=verified_model, bundle_dir=bundle, verified=verified).version == "1"


# --- register_model requires a passing gate summary, even when the layout has no gate -------------


def test_register_model_refuses_a_chain_without_a_gate_summary_under_a_gateless_layout(tmp_path):
    by_name = {s.name: s for s in REFERENCE_STEPS}
    register = by_name["register_model"]
    gateless = (
        by_name["secure_ingest"], by_name["train_model"], by_name["sign_and_attest"],
        StepSpec(name=register.name, description=register.description, expected_products=register.expected_products,
                 expected_materials=tuple(r for r in register.expected_materials if "verify_chain" not in r)),
    )
    ring = init_keys(tmp_path / "keys", roles=["owner", *(s.name for s in gateless)], development=True)
    layout = sign_layout(generate_layout(gateless, {s.name: load_public_key(ring.public_key_path(s.name)) for s in gateless}),
                         load_signer(ring.signer_reference("owner")))
    (tmp_path / "root.layout").write_bytes(layout)
    sha = hashlib.sha256(layout).hexdigest()
    sig = ring.signer_reference
    steps.secure_ingest(source_uri=SAMPLE.path().as_uri(), expected_sha256=SAMPLE.sha256,
                        layout_uri=(tmp_path / "root.layout").as_uri(), layout_sha256=sha, signer=sig("secure_ingest"),
                        dataset_dir=tmp_path / "dataset", chain_dir=tmp_path / "c1")
    steps.train_model(dataset_dir=tmp_path / "dataset", chain_in=tmp_path / "c1", layout_sha256=sha,
                      signer=sig("train_model"), target_column=SAMPLE.target, model_dir=tmp_path / "model",
                      chain_out=tmp_path / "c2", hyperparameters=json.dumps({"n_estimators": 3}))
    steps.sign_and_attest(model_dir=tmp_path / "model", chain_in=tmp_path / "c2", layout_sha256=sha,
                          signer=sig("sign_and_attest"), chain_out=tmp_path / "c3")
    registry = LocalModelRegistry(tmp_path / "registry")
    with pytest.raises(ArtifactRefused, match=r"attestations/vsa.json: no verification summary: the gate did not pass"):
        steps.register_model(model_dir=tmp_path / "model", chain_in=tmp_path / "c3", layout_sha256=sha,
                             signer=sig("register_model"), model_name="fraud", registry=registry)
    assert not (tmp_path / "registry" / "models" / "fraud" / "1").exists()
