"""Publisher signatures made by model-transparency itself verify offline; every tampering is refused.

The fixtures are sigstore/model-transparency's own signed folders (Apache-2.0, in
``/work/shared/data/model-transparency``): an EC key, a certificate chain, and keyless
Sigstore (``stefanb@us.ibm.com`` via ``https://sigstore.verify.ibm.com/oauth2``), each
signed with ``--ignore-paths ignore-me``. Nothing here touches the network.
"""

from __future__ import annotations

import datetime
import json
import shutil
from pathlib import Path

import pytest

from chainproof.cli import main
from chainproof.errors import ArtifactRefused, InputError, SignatureError
from chainproof.publisher import PublisherPolicy, ingest

DATA = Path("/work/shared/data/model-transparency/scripts/tests")
CERTS = DATA / "keys" / "certificate"
IDENTITY, ISSUER = "stefanb@us.ibm.com", "https://sigstore.verify.ibm.com/oauth2"

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"{DATA} (model-transparency fixtures) is not here")


def _policy(kind: str, **kw) -> PublisherPolicy:
    ignore = kw.pop("ignore", ("ignore-me",))
    if kind == "key":
        return PublisherPolicy.key((CERTS / "signing-key-pub.pem").read_text(), ignore=ignore)
    if kind == "certificate":
        return PublisherPolicy.certificate(
            (CERTS / kw.get("leaf", "signing-key-cert.pem")).read_text(),
            kw.get("cas", [(CERTS / "ca-cert.pem").read_text()]), ignore=ignore)
    return PublisherPolicy.sigstore(identity=kw.get("identity", IDENTITY), issuer=kw.get("issuer", ISSUER), ignore=ignore)


FOLDERS = {"key": "v1.0.1-elliptic-key", "certificate": "v1.0.1-certificate", "sigstore": "v1.0.1-sigstore"}


@pytest.fixture
def copy(tmp_path):
    def make(kind: str) -> Path:
        dest = tmp_path / f"src-{kind}"
        shutil.copytree(DATA / FOLDERS[kind], dest)
        for p in dest.rglob("*"):
            p.chmod(0o644)
        dest.chmod(0o755)
        return dest
    return make


@pytest.mark.parametrize("kind", sorted(FOLDERS))
def test_publisher_signature_verifies_offline_and_records_the_publisher(kind, tmp_path, copy):
    record = ingest(str(copy(kind)), tmp_path / "out", publisher=_policy(kind))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["signme-1", "signme-2"]
    who = record["publisher"]
    assert who["kind"] == kind and who["signed_files"] == ["signme-1", "signme-2"] and who["ignored"] == ["ignore-me"]
    assert who["verified_offline"] is True and len(who["signature_sha256"]) == 64
    if kind == "sigstore":
        assert who["identity"] == IDENTITY and who["issuer"] == ISSUER and "offline" in who["trust_root"]
    if kind == "certificate":
        assert len(who["ca_sha256"]) == 1 and who["certificate_sha256"]
    assert record["scan"]["verdict"] == "safe"


def test_single_file_signed_with_a_key_verifies_with_its_signature(tmp_path):
    folder = DATA / "v1.0.0-elliptic-key"
    record = ingest(str(folder / "signme-1"), tmp_path / "out", publisher=_policy("key", ignore=()),
                    signature=str(folder / "model.sig"))
    assert list(record["files"]) == ["signme-1"] and (tmp_path / "out" / "signme-1").is_file()


@pytest.mark.parametrize("kind", sorted(FOLDERS))
@pytest.mark.parametrize("attack", ["modified", "added", "removed", "unsigned_file_not_ignored"])
def test_rejects_tampered_publisher_folder_and_releases_nothing(kind, attack, tmp_path, copy):
    src = copy(kind)
    ignore = ("ignore-me",)
    if attack == "modified":
        (src / "signme-1").write_bytes(b"poisoned\n")
    elif attack == "added":
        (src / "extra.bin").write_bytes(b"planted")
    elif attack == "removed":
        (src / "signme-2").unlink()
    else:
        ignore = ()
    with pytest.raises(SignatureError, match=r"model\.sig \(publisher signature\): does not verify"):
        ingest(str(src), tmp_path / "out", publisher=_policy(kind, ignore=ignore))
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "quarantine left behind"


def test_rejects_wrong_sigstore_identity(tmp_path, copy):
    with pytest.raises(SignatureError, match=r"SANs do not match eve@example.com"):
        ingest(str(copy("sigstore")), tmp_path / "out", publisher=_policy("sigstore", identity="eve@example.com"))


def test_rejects_wrong_sigstore_issuer(tmp_path, copy):
    with pytest.raises(SignatureError, match=r"does not verify as sigstore signature"):
        ingest(str(copy("sigstore")), tmp_path / "out", publisher=_policy("sigstore", issuer="https://accounts.google.com"))


def _self_signed_ca() -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "root-ca")])  # same name, other key
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def test_rejects_certificate_chain_to_an_untrusted_ca(tmp_path, copy):
    with pytest.raises(SignatureError, match=r"does not verify as certificate signature"):
        ingest(str(copy("certificate")), tmp_path / "out", publisher=_policy("certificate", cas=[_self_signed_ca()]))
    assert not (tmp_path / "out").exists()


def test_rejects_a_signature_by_another_certificate_of_the_trusted_ca(tmp_path, copy):
    with pytest.raises(SignatureError, match=r"expected the publisher certificate sha256:"):
        ingest(str(copy("certificate")), tmp_path / "out", publisher=_policy("certificate", leaf="int-ca-cert.pem"))


def test_rejects_git_paths_model_signing_would_skip(tmp_path, copy):
    src = copy("key")
    (src / ".gitattributes").write_text("* binary\n")
    with pytest.raises((ArtifactRefused, SignatureError)):
        ingest(str(src), tmp_path / "out", publisher=_policy("key"))
    assert not (tmp_path / "out").exists()


def test_certificate_policy_without_a_ca_is_refused():
    # model-signing would otherwise fall back to the operating system's trust store.
    with pytest.raises(InputError, match="trusted CA"):
        PublisherPolicy(kind="certificate", certificate_pem=(CERTS / "signing-key-cert.pem").read_text())


def test_cli_ingest_exit_codes(tmp_path, copy, capsys):
    src = copy("sigstore")
    ok = main(["ingest", str(src), "-o", str(tmp_path / "ok"), "--publisher-identity", IDENTITY,
               "--publisher-issuer", ISSUER, "--ignore", "ignore-me", "--format", "json"])
    assert ok == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["publisher"]["identity"] == IDENTITY and sorted(record["files"]) == ["signme-1", "signme-2"]
    refused = main(["ingest", str(src), "-o", str(tmp_path / "no"), "--publisher-identity", "eve@example.com",
                    "--publisher-issuer", ISSUER, "--ignore", "ignore-me"])
    assert refused == 1 and not (tmp_path / "no").exists()
    assert capsys.readouterr().err.count("FAIL:") == 1
    assert main(["ingest", str(src), "-o", str(tmp_path / "u")]) == 2
    assert main(["ingest", str(src), "-o", str(tmp_path / "u"), "--publisher-certificate",
                 str(CERTS / "signing-key-cert.pem")]) == 2
    with pytest.raises(SystemExit) as usage:
        main(["ingest", str(src), "-o", str(tmp_path / "u"), "--publisher-identiy", IDENTITY])
    assert usage.value.code == 2
    assert "usage: chainproof ingest" in capsys.readouterr().err


@pytest.fixture
def signed_layout(tmp_path):
    import hashlib

    from chainproof.policy import REFERENCE_STEPS, generate_layout, sign_layout
    from chainproof.signing import init_keys, load_public_key, load_signer

    ring = init_keys(tmp_path / "keys", roles=["owner", *(s.name for s in REFERENCE_STEPS)], development=True)
    data = sign_layout(generate_layout(REFERENCE_STEPS, {s.name: load_public_key(ring.public_key_path(s.name))
                                                         for s in REFERENCE_STEPS}), load_signer(ring.signer_reference("owner")))
    (tmp_path / "root.layout").write_bytes(data)
    return ring, (tmp_path / "root.layout").as_uri(), hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("kind", sorted(FOLDERS))
def test_secure_ingest_model_records_the_publisher_in_its_link(kind, tmp_path, copy, signed_layout):
    import base64

    from chainproof import steps

    ring, layout_uri, layout_sha = signed_layout
    outcome = steps.secure_ingest(source_uri=str(copy(kind)), expected_sha256="", layout_uri=layout_uri,
                                  layout_sha256=layout_sha, signer=ring.signer_reference("secure_ingest"),
                                  dataset_dir=tmp_path / "model", chain_dir=tmp_path / "chain", output_prefix="model",
                                  publisher_policy=_policy(kind))
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["signme-1", "signme-2"]
    payload = json.loads(base64.b64decode(json.loads(outcome.link.read_text())["payload"]))
    who = payload["environment"]["chainproof"]["parameters"]["publisher"]
    assert who["kind"] == kind and who["ignored"] == ["ignore-me"] and who["signed_files"] == ["signme-1", "signme-2"]
    assert sorted(payload["products"]) == ["model/signme-1", "model/signme-2", "reports/scan-ingest.json", "run/id"]


def test_secure_ingest_model_refuses_an_unsigned_file_and_leaves_nothing(tmp_path, copy, signed_layout):
    from chainproof import steps

    ring, layout_uri, layout_sha = signed_layout
    with pytest.raises(SignatureError, match="Extra files found"):
        steps.secure_ingest(source_uri=str(copy("sigstore")), expected_sha256="", layout_uri=layout_uri,
                            layout_sha256=layout_sha, signer=ring.signer_reference("secure_ingest"),
                            dataset_dir=tmp_path / "model", chain_dir=tmp_path / "chain", output_prefix="model",
                            publisher_policy=_policy("sigstore", ignore=()))
    assert not (tmp_path / "model").exists() and not (tmp_path / "chain").exists()
