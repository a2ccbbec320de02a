"""Fixtures for the integration tests: servers on 127.0.0.1 that the real clients talk to."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from chainproof.testing.metadata import FakeMetadataServer
from chainproof.testing.servers import make_self_signed_cert

BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """A console script installed next to the test interpreter."""
    path = BIN / name
    assert path.exists(), f"{name} is not installed next to {sys.executable}"
    return str(path)


@pytest.fixture
def metadata_server() -> Iterator[FakeMetadataServer]:
    """A metadata server on 127.0.0.1; stopped at teardown."""
    server = FakeMetadataServer()
    server.address = server.start()  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def on_gce(metadata_server: FakeMetadataServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeMetadataServer:
    """Point google-auth (in every new process: kfp.local steps, CLI runs) at the metadata server.

    google-auth reads these variables when ``google.auth.compute_engine._metadata`` is first
    imported, which this test process has already done: only subprocesses see them.
    """
    address = metadata_server.address  # type: ignore[attr-defined]
    monkeypatch.setenv("GCE_METADATA_HOST", address)
    monkeypatch.setenv("GCE_METADATA_IP", address)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.delenv("NO_GCE_CHECK", raising=False)
    # No gcloud user credentials of the machine running the tests can be picked up.
    empty = tmp_path / "gcloud-config"
    empty.mkdir()
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(empty))
    return metadata_server


@pytest.fixture
def service_account_key_file(tmp_path: Path) -> Path:
    """A service-account JSON key file with a freshly generated RSA key (never a real account)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    doc = {
        "type": "service_account",
        "project_id": "chainproof-test",
        "private_key_id": "0123456789abcdef0123456789abcdef01234567",
        "private_key": pem.decode(),
        "client_email": "leaked-key@chainproof-test.iam.gserviceaccount.com",
        "client_id": "111111111111111111111",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    path = tmp_path / "sa-key.json"
    path.write_text(json.dumps(doc))
    os.chmod(path, 0o600)
    return path


def key_material(path: Path) -> list[str]:
    """Recognisable fragments of a key file's private key (for leak searches)."""
    pem = json.loads(path.read_text())["private_key"]
    body = "".join(pem.strip().splitlines()[1:-1])
    return [body[i : i + 48] for i in range(0, len(body) - 48, 200)]


@pytest.fixture
def kms_server(on_gce, tmp_path: Path) -> Iterator[tuple[object, str, Path]]:
    """A fake KMS on 127.0.0.1 that accepts only the metadata server's token.

    Yields (server, endpoint, certificate file). Clients must trust the certificate
    with ``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH`` before their first TLS channel, so they
    run in subprocesses.
    """
    from chainproof.testing.kms import FakeKms, write_self_signed_cert

    cert_path, key_pem, cert_pem = write_self_signed_cert(tmp_path)
    server = FakeKms(expected_token=on_gce.token)
    endpoint = server.start(key_pem, cert_pem)
    try:
        yield server, endpoint, cert_path
    finally:
        server.stop()



@pytest.fixture(scope="session")
def loopback_tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One self-signed certificate for 127.0.0.1, trusted by every gRPC TLS channel of the session.

    gRPC reads ``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH`` once, when the process opens its
    first TLS channel: every loopback gRPC fake must use this one certificate, and
    no test may open a TLS channel before this fixture ran.
    """
    existing = os.environ.get("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH")
    if existing and Path(existing).with_name("key.pem").is_file():
        return Path(existing), Path(existing).with_name("key.pem")
    cert, key = make_self_signed_cert(tmp_path_factory.mktemp("loopback-tls"))
    os.environ["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = str(cert)
    return cert, key
