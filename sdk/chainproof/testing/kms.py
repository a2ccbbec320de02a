"""An in-process Cloud KMS ``KeyManagementService`` on 127.0.0.1 (gRPC over TLS).

It implements ``GetPublicKey`` and ``AsymmetricSign`` for EC P-256 / SHA-256 keys it
holds as real private keys, checks the CRC32C integrity fields and the bearer token
the client sends, and counts the calls. The server is built from the proto-plus
types' ``serialize``/``deserialize`` with generic handlers: the client under test is
the real ``google-cloud-kms``.
"""

from __future__ import annotations

from collections import Counter
from concurrent import futures
from pathlib import Path
from typing import Any

import google_crc32c
import grpc
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from google.cloud import kms_v1

SERVICE = "google.cloud.kms.v1.KeyManagementService"
P256 = kms_v1.CryptoKeyVersion.CryptoKeyVersionAlgorithm.EC_SIGN_P256_SHA256


def write_self_signed_cert(directory: Path) -> tuple[Path, bytes, bytes]:
    """A self-signed certificate for 127.0.0.1; returns (cert path, key PEM, cert PEM)."""
    from chainproof.testing.servers import make_self_signed_cert

    tls = directory / "kms-tls"
    tls.mkdir(exist_ok=True)
    cert_path, key_path = make_self_signed_cert(tls)
    return cert_path, key_path.read_bytes(), cert_path.read_bytes()


def _crc(data: bytes) -> int:
    return int(google_crc32c.value(data))


class FakeKms:
    """Key versions by name, and the calls made to them."""

    def __init__(self, *, expected_token: str | None = None) -> None:
        self.keys: dict[str, ec.EllipticCurvePrivateKey] = {}
        self.calls: Counter[tuple[str, str]] = Counter()
        self.unauthenticated: list[str] = []
        self.expected_token = expected_token
        # Response fields to corrupt in transit (tests of the client's CRC32C checks):
        # "signature_crc32c", "verified_digest_crc32c", "pem_crc32c".
        self.corrupt: set[str] = set()

    def add_key(self, name: str) -> str:
        """Create a P-256 key version under ``name``; return the name."""
        self.keys[name] = ec.generate_private_key(ec.SECP256R1())
        return name

    def public_pem(self, name: str) -> str:
        """The public key PEM of a key version."""
        return self.keys[name].public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    def _authorize(self, method: str, context: grpc.ServicerContext) -> None:
        if self.expected_token is None:
            return
        metadata = dict(context.invocation_metadata())
        if metadata.get("authorization") != f"Bearer {self.expected_token}":
            self.unauthenticated.append(method)
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "Request had invalid authentication credentials.")

    def _key(self, name: str, context: grpc.ServicerContext) -> ec.EllipticCurvePrivateKey:
        key = self.keys.get(name)
        if key is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"CryptoKeyVersion {name} not found.")
            raise AssertionError("unreachable: abort raises")
        return key

    def get_public_key(self, request: kms_v1.GetPublicKeyRequest, context: grpc.ServicerContext) -> kms_v1.PublicKey:
        self._authorize("GetPublicKey", context)
        self._key(request.name, context)
        self.calls[("GetPublicKey", request.name)] += 1
        pem = self.public_pem(request.name)
        crc = _crc(pem.encode()) ^ (1 if "pem_crc32c" in self.corrupt else 0)
        return kms_v1.PublicKey(pem=pem, pem_crc32c=crc, algorithm=P256, name=request.name)

    def asymmetric_sign(
        self, request: kms_v1.AsymmetricSignRequest, context: grpc.ServicerContext
    ) -> kms_v1.AsymmetricSignResponse:
        self._authorize("AsymmetricSign", context)
        key = self._key(request.name, context)
        self.calls[("AsymmetricSign", request.name)] += 1
        digest = request.digest.sha256
        if len(digest) != 32:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "EC_SIGN_P256_SHA256 needs a 32-byte sha256 digest.")
        if "digest_crc32c" in request and request.digest_crc32c != _crc(digest):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "digest_crc32c does not match.")
        signature = key.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
        return kms_v1.AsymmetricSignResponse(
            signature=signature,
            signature_crc32c=_crc(signature) ^ (1 if "signature_crc32c" in self.corrupt else 0),
            verified_digest_crc32c="digest_crc32c" in request and "verified_digest_crc32c" not in self.corrupt,
            name=request.name,
        )

    def start(self, key_pem: bytes, cert_pem: bytes) -> str:
        """Serve over TLS on an ephemeral port; return ``127.0.0.1:PORT``."""
        def unary(fn: Any, req_type: Any, resp_type: Any) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(
                fn, request_deserializer=req_type.deserialize, response_serializer=resp_type.serialize
            )

        handler = grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "GetPublicKey": unary(self.get_public_key, kms_v1.GetPublicKeyRequest, kms_v1.PublicKey),
                "AsymmetricSign": unary(
                    self.asymmetric_sign, kms_v1.AsymmetricSignRequest, kms_v1.AsymmetricSignResponse
                ),
            },
        )
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        self._server.add_generic_rpc_handlers((handler,))
        port = self._server.add_secure_port(
            "127.0.0.1:0", grpc.ssl_server_credentials([(key_pem, cert_pem)])
        )
        self._server.start()
        return f"127.0.0.1:{port}"

    def stop(self) -> None:
        """Stop the server (no grace period: tests are done with it)."""
        self._server.stop(None).wait()
