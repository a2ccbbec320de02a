"""Loopback servers for integration tests: the GCS emulator, an HTTPS object server,
and a fault-injecting, request-logging proxy. Everything binds 127.0.0.1 only."""

from __future__ import annotations

import contextlib
import datetime
import http.client
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def make_self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """Write a self-signed certificate for 127.0.0.1/localhost; return (cert, key) paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@dataclass
class Faults:
    """Faults to inject, consumed in order, for requests whose path contains ``match``.

    Each entry of ``plan`` is one of: ``"503"`` (answer 503), ``"drop"`` (send the
    headers and half the body, then close), ``"truncate"`` (declare the full length,
    send half, close), ``"ok"`` (pass through).
    """

    match: str = ""
    plan: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_for(self, path: str) -> str:
        if self.match not in path:
            return "ok"
        with self.lock:
            return self.plan.pop(0) if self.plan else "ok"


@dataclass
class RequestLog:
    """Every request line a server saw: (method, path with query, Range header)."""

    entries: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, method: str, path: str, range_header: str) -> None:
        self.entries.append((method, path, range_header))


def _send_with_fault(handler: BaseHTTPRequestHandler, status: int, headers: list[tuple[str, str]], body: bytes, fault: str) -> None:
    if fault == "503":
        handler.send_response(503)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
        return
    handler.send_response(status)
    sent_length = False
    for key, value in headers:
        if key.lower() in ("transfer-encoding", "connection", "content-length"):
            continue
        handler.send_header(key, value)
    handler.send_header("Content-Length", str(len(body)))
    sent_length = True
    handler.end_headers()
    if fault in ("drop", "truncate"):
        handler.wfile.write(body[: len(body) // 2])
        handler.wfile.flush()
        handler.close_connection = True
        with contextlib.suppress(OSError):
            handler.connection.shutdown(2)
        return
    assert sent_length
    handler.wfile.write(body)


class _ObjectHandler(BaseHTTPRequestHandler):
    """Serves ``server.objects`` (path → bytes) with Range support, redirects and faults."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
        pass

    def do_GET(self) -> None:  # noqa: N802
        srv: Any = self.server  # a _Server with the attributes serve() set
        srv.log.add("GET", self.path, self.headers.get("Range", ""))
        fault = srv.faults.next_for(self.path)
        path = self.path.split("?", 1)[0]
        if path in srv.redirects:
            self.send_response(302)
            self.send_header("Location", srv.redirects[path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if path not in srv.objects:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = srv.objects[path]
        status, headers = 200, [("Content-Type", "application/octet-stream")]
        rng = self.headers.get("Range", "")
        if rng.startswith("bytes=") and srv.honour_ranges:
            start = int(rng[len("bytes="):].split("-", 1)[0])
            headers.append(("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}"))
            status, data = 206, data[start:]
        _send_with_fault(self, status, headers, data, fault)


class ProxyHandler(BaseHTTPRequestHandler):
    """Forwards to ``server.upstream`` (host, port), logging and injecting faults."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def _forward(self, method: str) -> None:
        srv: Any = self.server  # a _Server with the attributes serve() set
        srv.log.add(method, self.path, self.headers.get("Range", ""))
        fault = srv.faults.next_for(self.path)
        length = int(self.headers.get("Content-Length", "0") or 0)
        body = self.rfile.read(length) if length else None
        host, port = srv.upstream
        conn = http.client.HTTPConnection(host, port, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        conn.request(method, self.path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        conn.close()
        if method == "HEAD":
            self.send_response(response.status)
            for key, value in response.getheaders():
                self.send_header(key, value)
            self.end_headers()
            return
        _send_with_fault(self, response.status, response.getheaders(), data, fault)

    def do_GET(self) -> None:  # noqa: N802
        self._forward("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._forward("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._forward("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._forward("DELETE")

    def do_PATCH(self) -> None:  # noqa: N802
        self._forward("PATCH")

    def do_HEAD(self) -> None:  # noqa: N802
        self._forward("HEAD")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


@contextmanager
def serve(handler: type[BaseHTTPRequestHandler], *, tls: tuple[Path, Path] | None = None, **attrs: object) -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0), handler)
    srv.log = RequestLog()  # type: ignore[attr-defined]
    srv.faults = Faults()  # type: ignore[attr-defined]
    for key, value in attrs.items():
        setattr(srv, key, value)
    if tls is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(tls[0]), str(tls[1]))
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


@contextmanager
def object_server(objects: dict[str, bytes], *, tls: tuple[Path, Path] | None, honour_ranges: bool = True,
                  redirects: dict[str, str] | None = None) -> Iterator[_Server]:
    with serve(_ObjectHandler, tls=tls, objects=objects, honour_ranges=honour_ranges, redirects=redirects or {}) as srv:
        yield srv


@contextmanager
def proxy(upstream: tuple[str, int]) -> Iterator[_Server]:
    with serve(ProxyHandler, upstream=upstream) as srv:
        yield srv


@contextmanager
def gcs_emulator() -> Iterator[tuple[str, int]]:
    """The gcp-storage-emulator, in process, in memory. Always stopped (its thread is not a daemon)."""
    from gcp_storage_emulator.server import create_server

    srv = create_server("127.0.0.1", 0, in_memory=True)
    srv.start()
    try:
        yield srv._api._httpd.server_address[:2]
    finally:
        srv.stop()
