"""Cloud KMS signers: the real google-cloud-kms client against a KMS on 127.0.0.1.

The KMS client needs ``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH`` set before the first TLS
channel of its process, and google-auth needs the metadata server variables before
its first import, so every client here runs in a subprocess (``chainproof run``, and
its kfp.local steps); the test process only runs the servers and the verifiers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from chainproof.attest import load_link
from chainproof.policy import REFERENCE_PIPELINE_STEPS
from chainproof.verify import LINKS_DIR

from tests.integration.conftest import tool

STEPS = list(REFERENCE_PIPELINE_STEPS)
KEY = "projects/chainproof-test/locations/europe-west4/keyRings/pipeline/cryptoKeys/{role}/cryptoKeyVersions/1"


def _env(cert: Path, tmp_path: Path) -> dict[str, str]:
    return dict(os.environ, GRPC_DEFAULT_SSL_ROOTS_FILE_PATH=str(cert), CHAINPROOF_TRUST_DIR=str(tmp_path / "trust"))


def test_pipeline_signed_entirely_by_kms_verifies_with_chainproof_and_in_toto_verify(kms_server, on_gce, tmp_path):
    kms, endpoint, cert = kms_server
    refs = {role: f"gcpkms://{kms.add_key(KEY.format(role=role))}?endpoint={endpoint}" for role in ["owner", *STEPS]}
    env = _env(cert, tmp_path)
    work = tmp_path / "work"
    args = [tool("chainproof"), "run", "--workdir", str(work), "--identity", "gcp", "--format", "json",
            "--owner-signer", refs["owner"]]
    for step in STEPS:
        args += ["--signer", f"{step}={refs[step]}", "--expect-principal", f"{step}={on_gce.email}"]
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    bundle = Path(summary["bundle"])

    # No development key was made: every key lives in "KMS".
    assert not (work / "keys").exists()
    # The KMS client authenticated with the workload identity token, every time.
    assert kms.unauthenticated == []
    for role in ["owner", *STEPS]:
        name = KEY.format(role=role)
        # The public key is fetched once, when the layout is made, and pinned there.
        assert kms.calls[("GetPublicKey", name)] == 1, role
        assert kms.calls[("AsymmetricSign", name)] >= 1, role
    # sign_and_attest signed four things in KMS: model.sig, the provenance, the SBOM statement and its link.
    assert kms.calls[("AsymmetricSign", KEY.format(role="sign_and_attest"))] == 4
    # Each link was signed by its step's KMS key and records the signer and principal.
    for path in (bundle / LINKS_DIR).glob("*.link"):
        _, link = load_link(path)
        env_doc = link.environment["chainproof"]
        assert env_doc["signer"]["backend"] == "gcpkms"
        assert env_doc["signer"]["reference"].startswith(f"gcpkms://{KEY.format(role=link.name)}")
        assert env_doc["principal"]["name"] == on_gce.email

    owner_pub = tmp_path / "owner.pub"
    owner_pub.write_text(kms.public_pem(KEY.format(role="owner")))
    verify = subprocess.run([tool("chainproof"), "verify", str(bundle), "--owner-key", str(owner_pub),
                             "--format", "json"], env=env, capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0, verify.stderr
    assert json.loads(verify.stdout.strip().splitlines()[-1])["verified"] is True

    in_toto = subprocess.run([tool("in-toto-verify"), "--layout", "root.layout", "--verification-keys",
                              str(owner_pub), "--link-dir", "links"], cwd=bundle, env=env,
                             capture_output=True, text=True, timeout=120)
    assert in_toto.returncode == 0, in_toto.stdout + in_toto.stderr

    # The model signature was made by KMS and verifies with model-signing's own CLI.
    attest_pub = tmp_path / "sign_and_attest.pub"
    attest_pub.write_text(kms.public_pem(KEY.format(role="sign_and_attest")))
    oms = subprocess.run([tool("model_signing"), "verify", "key", "--signature",
                          str(bundle / "attestations" / "model.sig"), "--public_key", str(attest_pub),
                          summary["model"]], env=env, capture_output=True, text=True, timeout=120)
    assert oms.returncode == 0, oms.stdout + oms.stderr

    # Neither the token nor any key material reached the run's files or its output.
    text = proc.stdout + proc.stderr
    for root in (work / "runs", work / "registry"):
        text += "\n".join(p.read_bytes().decode("utf-8", "replace") for p in root.rglob("*") if p.is_file())
    assert on_gce.token not in text
    assert "PRIVATE KEY" not in text


def _in_subprocess(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True,
                          text=True, timeout=120)


def test_kms_key_version_that_is_not_the_pinned_key_is_refused_before_use(kms_server, tmp_path):
    kms, endpoint, cert = kms_server
    pinned = kms.add_key(KEY.format(role="train_model"))
    other = kms.add_key(KEY.format(role="attacker"))
    pinned_pem = tmp_path / "pinned.pub"
    pinned_pem.write_text(kms.public_pem(pinned))
    proc = _in_subprocess(f"""
        from chainproof.errors import SignatureError
        from chainproof.signing import load_public_key, load_signer
        signer = load_signer("gcpkms://{other}?endpoint={endpoint}", public_key=load_public_key("{pinned_pem}"))
        try:
            signer.signer.sign(b"link payload")
        except SignatureError as exc:
            print("REFUSED:", exc)
    """, _env(cert, tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert f"REFUSED: gcpkms://{other}: signature does not verify with the pinned key" in proc.stdout
    assert kms.calls[("GetPublicKey", other)] == 0


def test_kms_refuses_a_client_without_the_workload_token(kms_server, tmp_path):
    kms, endpoint, cert = kms_server
    name = kms.add_key(KEY.format(role="owner"))
    proc = _in_subprocess(f"""
        from google.auth.credentials import AnonymousCredentials
        from chainproof.errors import SignatureError
        from chainproof.signing import kms_client, load_signer
        try:
            load_signer("gcpkms://{name}", kms_client=kms_client("{endpoint}", credentials=AnonymousCredentials()))
        except SignatureError as exc:
            print("REFUSED:", exc)
    """, _env(cert, tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "REFUSED:" in proc.stdout and "GetPublicKey failed" in proc.stdout
    assert kms.unauthenticated == ["GetPublicKey"]
