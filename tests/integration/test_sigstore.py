"""Sigstore keyless signing: what can be shown offline.

Keyless signing needs Fulcio and Rekor on the network, so it is not run here. What is
shown: the layout pins the identity (not a key); the step takes its identity token from
the metadata server (the real google-auth) and refuses, before any network call, a token
for another identity than the pinned one; and the offline verifier refuses a signature
that is not a valid keyless bundle, using only the trust root shipped with sigstore-python.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from chainproof.policy import REFERENCE_STEPS, generate_layout, sign_layout
from chainproof.signing import init_keys, load_signer
from chainproof.verify import load_layout


def test_layout_pins_the_keyless_identity_and_issuer(tmp_path):
    ring = init_keys(tmp_path / "k", roles=["owner", *(s.name for s in REFERENCE_STEPS)])
    keys = {s.name: load_signer(ring.signer_reference(s.name)).public_key for s in REFERENCE_STEPS}
    keyless = load_signer("sigstore:?identity=trainer@chainproof-test.iam.gserviceaccount.com")
    keys["train_model"] = keyless.public_key
    _, layout = load_layout(sign_layout(generate_layout(REFERENCE_STEPS, keys), load_signer(ring.signer_reference("owner"))))
    pinned = layout.keys[keyless.keyid]
    assert pinned["keytype"] == "sigstore-oidc" and pinned["scheme"] == "Fulcio"
    assert pinned["keyval"] == {"identity": "trainer@chainproof-test.iam.gserviceaccount.com",
                                "issuer": "https://accounts.google.com"}


def _run(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True,
                          text=True, timeout=120)


def test_keyless_signer_uses_the_metadata_identity_token_and_refuses_another_identity(on_gce, tmp_path):
    env = dict(os.environ)
    proc = _run(f"""
        from chainproof.errors import SignatureError
        from chainproof.signing import load_signer
        ok = load_signer("sigstore:?identity={on_gce.email}").signer.identity_token()
        print("IDENTITY:", ok.identity, ok.federated_issuer or ok.issuer)
        try:
            load_signer("sigstore:?identity=trainer-prod@chainproof-test.iam.gserviceaccount.com").signer.sign(b"x")
        except SignatureError as exc:
            print("REFUSED:", exc)
    """, env)
    assert proc.returncode == 0, proc.stderr
    assert f"IDENTITY: {on_gce.email} https://accounts.google.com" in proc.stdout
    assert (f"REFUSED: sigstore: the workload's identity token is for {on_gce.email} (https://accounts.google.com), "
            "but the layout pins trainer-prod@chainproof-test.iam.gserviceaccount.com") in proc.stdout
    assert any(p.endswith("/identity") for p in on_gce.requests)
    assert on_gce.token not in proc.stdout + proc.stderr


def test_offline_verifier_refuses_a_signature_that_is_no_keyless_bundle(tmp_path):
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path / "data"), XDG_CACHE_HOME=str(tmp_path / "cache"))
    proc = _run("""
        from securesystemslib.exceptions import UnverifiedSignatureError
        from securesystemslib.signer import Signature
        from chainproof.sigstore_backend import sigstore_key
        key = sigstore_key("trainer@chainproof-test.iam.gserviceaccount.com")
        try:
            key.verify_signature(Signature(key.keyid, "00", {"bundle": {"mediaType": "x"}}), b"payload")
        except UnverifiedSignatureError as exc:
            print("REFUSED:", exc)
    """, env)
    assert proc.returncode == 0, proc.stderr
    assert "REFUSED: keyless signature by trainer@chainproof-test.iam.gserviceaccount.com does not verify" in proc.stdout
