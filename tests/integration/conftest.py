"""Integration fixtures shared by the loopback gRPC fakes (Vertex AI; KMS may reuse it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .servers import make_self_signed_cert


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
