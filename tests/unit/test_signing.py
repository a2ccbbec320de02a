"""Keys: ECDSA P-256, private keys 0600, never overwritten, trust store by key id."""

from __future__ import annotations

import stat

import pytest

from chainproof.errors import InputError, KeyExists
from chainproof.signing import TrustStore, init_keys, load_public_key, load_signer


def test_init_keys_creates_p256_keys_with_private_mode_0600(tmp_path):
    ring = init_keys(tmp_path / "k", roles=["owner", "train_model"])
    for role in ("owner", "train_model"):
        mode = stat.S_IMODE(ring.private_key_path(role).stat().st_mode)
        assert mode == 0o600, oct(mode)
        signer = load_signer(ring.signer_reference(role))
        assert signer.public_key.keytype == "ecdsa"
        assert signer.public_key.scheme == "ecdsa-sha2-nistp256"
        assert signer.keyid == ring.roles[role]
        assert load_public_key(ring.public_key_path(role)).keyid == signer.keyid


def test_init_keys_refuses_to_overwrite_and_writes_nothing(tmp_path):
    ring = init_keys(tmp_path / "k", roles=["owner"])
    before = ring.private_key_path("owner").read_bytes()
    with pytest.raises(KeyExists, match="refusing to overwrite"):
        init_keys(tmp_path / "k", roles=["owner", "secure_ingest"])
    assert ring.private_key_path("owner").read_bytes() == before
    assert not (tmp_path / "k" / "secure_ingest.pem").exists()


def test_development_flag_is_carried_by_the_signer(tmp_path):
    dev = init_keys(tmp_path / "dev", roles=["a"], development=True)
    prod = init_keys(tmp_path / "prod", roles=["a"])
    assert load_signer(dev.signer_reference("a")).development is True
    assert load_signer(prod.signer_reference("a")).development is False


def test_describe_never_contains_key_material(tmp_path):
    ring = init_keys(tmp_path / "k", roles=["a"])
    signer = load_signer(ring.signer_reference("a"))
    text = str(signer.describe())
    assert "PRIVATE" not in text and "BEGIN" not in text
    pem = ring.private_key_path("a").read_text()
    body = "".join(pem.splitlines()[1:-1])
    assert body[:40] not in text


def test_load_signer_errors_do_not_echo_the_key_file(tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nSECRETSECRETSECRET\n-----END PRIVATE KEY-----\n")
    with pytest.raises(InputError) as err:
        load_signer(f"file:{bad}")
    assert "SECRETSECRET" not in str(err.value)


def test_unknown_signer_backend_is_a_clear_error():
    with pytest.raises(InputError, match="unknown backend 'vault'"):
        load_signer("vault:secret/key")


def test_trust_store_ignores_files_whose_name_is_not_their_key_id(tmp_path):
    ring = init_keys(tmp_path / "k", roles=["owner", "other"])
    store = TrustStore(tmp_path / "trust")
    store.add(load_public_key(ring.public_key_path("owner")))
    # A key dropped in under another key's id is not trusted.
    (tmp_path / "trust" / f"{ring.roles['owner'][:10]}x.pub").write_text(ring.public_key_path("other").read_text())
    assert set(store.keys()) == {ring.roles["owner"]}


def test_signer_reference_survives_percent_and_python3_in_the_path(tmp_path):
    # kfp.local rewrites "python3" in parameters; chainproof's runner encodes it.
    from chainproof.runner import kfp_safe

    ring = init_keys(tmp_path / "lib" / "python3.11" / "100%" / "k", roles=["a"])
    reference = kfp_safe(ring.signer_reference("a"))
    assert "python3" not in reference
    assert load_signer(reference).keyid == ring.roles["a"]


def test_malformed_kms_reference_is_a_clear_error_without_any_call():
    with pytest.raises(InputError, match=r"expected gcpkms://projects/P/locations/L"):
        load_signer("gcpkms://projects/p/keyRings/r")
    with pytest.raises(InputError, match=r"expected gcpkms://"):
        load_signer("gcpkms://projects/chainproof-test/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1?token=x")
