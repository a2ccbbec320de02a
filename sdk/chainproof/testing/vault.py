"""A loopback server that speaks the part of the Vault HTTP API chainproof uses.

No Vault or OpenBao binary can be installed here, so this answers ``hvac`` (the real
client) on 127.0.0.1:

- ``POST /v1/auth/MOUNT/login`` for the Kubernetes auth method (the service-account JWT
  must be one the "cluster" issued, bound to the role) and the GCP auth method (an
  identity token whose audience is ``.../vault/ROLE``, unexpired, for a service account
  the role binds, and whose signature the given verifier accepts);
- ``GET /v1/MOUNT/data/PATH[?version=N]`` (KV v2);
- ``GET /v1/MOUNT/creds/ROLE`` (dynamic database credentials: a new user and password
  per lease);
- ``PUT /v1/sys/leases/revoke`` and ``POST /v1/auth/token/revoke-self``.

Every data call needs a live ``X-Vault-Token`` that a login issued, whose role's policy
allows the path; anything else is refused the way Vault refuses it (``403
{"errors": ["permission denied"]}``). Every request is logged, with the headers it carried.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


def jwt_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT (no signature check)."""
    body = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return claims


@dataclass
class Role:
    """A Vault role: who may log in as it, and the path prefixes its policy allows."""

    paths: list[str]
    service_accounts: list[str] = field(default_factory=list)  # kubernetes: "NAMESPACE/NAME"; gcp: emails


@dataclass
class FakeVault:
    """The server's state."""

    auth_mounts: dict[str, str] = field(default_factory=lambda: {"kubernetes": "kubernetes", "gcp": "gcp"})
    roles: dict[str, Role] = field(default_factory=dict)
    kubernetes_jwts: dict[str, str] = field(default_factory=dict)  # jwt -> "NAMESPACE/NAME"
    gcp_verifier: Callable[[str], bool] = lambda jwt: False
    kv: dict[str, list[dict[str, str]]] = field(default_factory=dict)  # "MOUNT/PATH" -> versions
    database_mounts: set[str] = field(default_factory=lambda: {"database"})
    tokens: dict[str, str] = field(default_factory=dict)  # live token -> role
    revoked_tokens: list[str] = field(default_factory=list)
    leases: dict[str, dict[str, str]] = field(default_factory=dict)  # live lease -> credentials
    revoked_leases: list[str] = field(default_factory=list)
    issued_credentials: list[dict[str, str]] = field(default_factory=list)
    log: list[tuple[str, str, dict[str, str], str]] = field(default_factory=list)  # method, path, headers, body
    refused: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_kv(self, path: str, data: dict[str, str]) -> int:
        """Add a version of a KV v2 secret ``MOUNT/PATH``; return its version number."""
        self.kv.setdefault(path, []).append(dict(data))
        return len(self.kv[path])

    def kubernetes_jwt(self, service_account: str) -> str:
        """A service-account JWT the 'cluster' issued for ``NAMESPACE/NAME``."""
        ns, name = service_account.split("/")
        claims = {"iss": "kubernetes/serviceaccount", "sub": f"system:serviceaccount:{ns}:{name}"}

        def enc(doc: dict[str, str]) -> str:
            return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()

        token = f"{enc({'alg': 'RS256'})}.{enc(claims)}.{secrets.token_urlsafe(32)}"
        self.kubernetes_jwts[token] = service_account
        return token

    # -- request handling

    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: str) -> tuple[int, Any]:
        with self.lock:
            self.log.append((method, raw_path, headers, body))
        url = urlparse(raw_path)
        path = url.path
        if not path.startswith("/v1/"):
            return 404, {"errors": []}
        path = path[len("/v1/"):]
        doc = json.loads(body) if body else {}
        if path.startswith("auth/") and path.endswith("/login") and method in ("POST", "PUT"):
            return self._login(path[len("auth/"):-len("/login")], doc, headers)
        role = self._role_of(headers)
        if role is None:
            self.refused.append((method, path))
            return 403, {"errors": ["permission denied"]}
        if path == "auth/token/revoke-self" and method in ("POST", "PUT"):
            token = headers["x-vault-token"]
            self.tokens.pop(token, None)
            self.revoked_tokens.append(token)
            return 204, None
        if path == "sys/leases/revoke" and method in ("PUT", "POST"):
            lease = doc.get("lease_id", "")
            if lease not in self.leases:
                return 400, {"errors": ["invalid lease"]}
            del self.leases[lease]
            self.revoked_leases.append(lease)
            return 204, None
        if method != "GET":
            return 405, {"errors": ["unsupported operation"]}
        if not any(path.startswith(prefix) for prefix in self.roles[role].paths):
            self.refused.append((method, path))
            return 403, {"errors": ["1 error occurred:\n\t* permission denied\n\n"]}
        mount, _, rest = path.partition("/")
        if mount in self.database_mounts and rest.startswith("creds/"):
            return self._creds(mount, rest[len("creds/"):])
        if rest.startswith("data/"):
            return self._kv(f"{mount}/{rest[len('data/'):]}", parse_qs(url.query))
        return 404, {"errors": []}

    def _role_of(self, headers: dict[str, str]) -> str | None:
        return self.tokens.get(headers.get("x-vault-token", ""))

    def _login(self, mount: str, doc: dict[str, Any], headers: dict[str, str]) -> tuple[int, Any]:
        method = self.auth_mounts.get(mount)
        role_name, jwt = str(doc.get("role", "")), str(doc.get("jwt", ""))
        role = self.roles.get(role_name)
        if method is None:
            return 400, {"errors": [f"no handler for route \"auth/{mount}/login\""]}
        if role is None:
            self.refused.append(("login", mount))
            return 400, {"errors": [f"invalid role name \"{role_name}\""]}
        if method == "kubernetes":
            who = self.kubernetes_jwts.get(jwt)
            if who is None or who not in role.service_accounts:
                self.refused.append(("login", mount))
                return 403, {"errors": ["permission denied"]}
        else:
            try:
                claims = jwt_claims(jwt)
            except (IndexError, ValueError):
                self.refused.append(("login", mount))
                return 400, {"errors": ["unable to parse JWT"]}
            ok = (
                str(claims.get("aud", "")).endswith(f"vault/{role_name}")
                and int(claims.get("exp", 0)) > time.time()
                and claims.get("email") in role.service_accounts
                and self.gcp_verifier(jwt)
            )
            if not ok:
                self.refused.append(("login", mount))
                return 403, {"errors": ["permission denied"]}
        token = "hvs." + secrets.token_urlsafe(24)
        self.tokens[token] = role_name
        return 200, {
            "request_id": secrets.token_hex(8), "lease_id": "", "renewable": False, "lease_duration": 0, "data": None,
            "auth": {"client_token": token, "accessor": secrets.token_hex(8), "policies": [role_name],
                     "token_policies": [role_name], "lease_duration": 3600, "renewable": True},
        }

    def _kv(self, name: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        versions = self.kv.get(name)
        if not versions:
            return 404, {"errors": []}
        wanted = query.get("version", ["0"])[0]
        number = int(wanted) if wanted.isdigit() and int(wanted) > 0 else len(versions)
        if number > len(versions):
            return 404, {"errors": []}
        return 200, {
            "request_id": secrets.token_hex(8), "lease_id": "", "renewable": False, "lease_duration": 0,
            "data": {"data": versions[number - 1],
                     "metadata": {"version": number, "created_time": "2026-12-01T00:00:00Z",
                                  "deletion_time": "", "destroyed": False, "custom_metadata": None}},
        }

    def _creds(self, mount: str, role: str) -> tuple[int, Any]:
        lease = f"{mount}/creds/{role}/{secrets.token_urlsafe(12)}"
        creds = {"username": f"v-{role}-{secrets.token_hex(6)}", "password": "A1a-" + secrets.token_urlsafe(20)}
        self.leases[lease] = creds
        self.issued_credentials.append(creds)
        return 200, {"request_id": secrets.token_hex(8), "lease_id": lease, "renewable": True,
                     "lease_duration": 3600, "data": creds}

    # -- serving

    def start(self) -> str:
        """Serve on an ephemeral loopback port; return ``http://127.0.0.1:PORT``."""
        state = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return

            def _do(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, doc = state.handle(self.command, self.path, headers, body)
                data = b"" if doc is None else json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_LIST = _do

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        port = self._httpd.server_address[1]
        return f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        """Stop serving."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


@contextmanager
def vault_server(**kwargs: Any) -> Iterator[tuple[FakeVault, str]]:
    """A running fake Vault and its address, stopped at exit."""
    fake = FakeVault(**kwargs)
    address = fake.start()
    try:
        yield fake, address
    finally:
        fake.stop()
