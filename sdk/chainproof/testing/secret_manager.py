"""An in-process Secret Manager ``SecretManagerService`` on 127.0.0.1 (gRPC over TLS).

It implements ``AccessSecretVersion`` (with ``latest``, disabled and destroyed versions,
and the ``data_crc32c`` integrity field), checks the bearer token the client sends, and
logs every request it decoded. Built from the proto-plus types' ``serialize`` /
``deserialize`` with generic handlers, like ``chainproof.testing.kms``: the client under test is the
real ``google-cloud-secret-manager``.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import google_crc32c
import grpc
from google.cloud.secretmanager_v1.types import resources, service

SERVICE = "google.cloud.secretmanager.v1.SecretManagerService"


@dataclass
class FakeSecretManager:
    """Secrets by name (``projects/P/secrets/S``) with their versions, and what was asked."""

    expected_token: str | None = None
    versions: dict[str, list[tuple[bytes, str]]] = field(default_factory=dict)  # name -> [(data, state)]
    requests: list[str] = field(default_factory=list)
    unauthenticated: list[str] = field(default_factory=list)
    corrupt: bool = False

    def add_version(self, name: str, data: bytes, *, state: str = "ENABLED") -> str:
        """Add a version (numbered from 1) to a secret; return its full name."""
        self.versions.setdefault(name, []).append((data, state))
        return f"{name}/versions/{len(self.versions[name])}"

    def access(self, request: service.AccessSecretVersionRequest, ctx: grpc.ServicerContext) -> service.AccessSecretVersionResponse:
        self.requests.append(request.name)
        metadata = dict(ctx.invocation_metadata())
        if self.expected_token is not None and metadata.get("authorization") != f"Bearer {self.expected_token}":
            self.unauthenticated.append(request.name)
            ctx.abort(grpc.StatusCode.UNAUTHENTICATED, "Request had invalid authentication credentials.")
        secret, sep, version = request.name.rpartition("/versions/")
        if not sep or secret not in self.versions:
            ctx.abort(grpc.StatusCode.NOT_FOUND, f"Secret [{secret}] not found or has no versions.")
        versions = self.versions[secret]
        if version == "latest":
            enabled = [i for i, (_, state) in enumerate(versions) if state == "ENABLED"]
            if not enabled:
                ctx.abort(grpc.StatusCode.FAILED_PRECONDITION, "No enabled version.")
            index = enabled[-1]
        elif version.isdigit() and 1 <= int(version) <= len(versions):
            index = int(version) - 1
        else:
            ctx.abort(grpc.StatusCode.NOT_FOUND, f"Secret Version [{request.name}] not found.")
        data, state = versions[index]
        if state != "ENABLED":
            ctx.abort(grpc.StatusCode.FAILED_PRECONDITION, f"Secret Version [{request.name}] is in {state} state.")
        crc = int(google_crc32c.value(data)) ^ (1 if self.corrupt else 0)
        return service.AccessSecretVersionResponse(
            name=f"{secret}/versions/{index + 1}",
            payload=resources.SecretPayload(data=data, data_crc32c=crc),
        )

    def start(self, key_pem: bytes, cert_pem: bytes) -> str:
        """Serve over TLS on an ephemeral port; return ``127.0.0.1:PORT``."""
        handler = grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "AccessSecretVersion": grpc.unary_unary_rpc_method_handler(
                    self.access,
                    request_deserializer=service.AccessSecretVersionRequest.deserialize,
                    response_serializer=service.AccessSecretVersionResponse.serialize,
                )
            },
        )
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self._server.add_generic_rpc_handlers((handler,))
        port = self._server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key_pem, cert_pem)]))
        self._server.start()
        return f"127.0.0.1:{port}"

    def stop(self) -> None:
        """Stop the server."""
        self._server.stop(None).wait()


@contextmanager
def secret_manager_server(cert: Path, key: Path, *, expected_token: str | None = None) -> Iterator[tuple[FakeSecretManager, str]]:
    """A running fake and its ``HOST:PORT``, stopped at exit."""
    fake = FakeSecretManager(expected_token=expected_token)
    address = fake.start(key.read_bytes(), cert.read_bytes())
    try:
        yield fake, address
    finally:
        fake.stop()
