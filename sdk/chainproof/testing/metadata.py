"""A small GCE metadata server on 127.0.0.1, enough for google-auth.

It answers the probe (``GET /``), the service-account info, access-token and
identity endpoints, and the project id, and refuses every request that lacks
``Metadata-Flavor: Google`` (as the real server does). The token and the identity
token are fake, but recognisable, so tests can search outputs for leaks.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

_PREFIX = "/computeMetadata/v1/"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class FakeMetadataServer:
    """The server's state: who it says the workload is, and what it was asked."""

    email: str = "trainer@chainproof-test.iam.gserviceaccount.com"
    project: str = "chainproof-test"
    token: str = field(default_factory=lambda: "ya29.FAKE-METADATA-TOKEN-" + secrets.token_hex(12))
    requests: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    # Other instance/ paths answered verbatim (e.g. "machine-type": "projects/1/machineTypes/n2d-standard-4").
    instance: dict[str, str] = field(default_factory=dict)

    def identity_token(self, audience: str) -> str:
        """A JWT-shaped identity token for ``audience`` (its signature is not real)."""
        now = int(time.time())
        header = {"alg": "RS256", "typ": "JWT", "kid": "fake"}
        claims = {
            "iss": "https://accounts.google.com",
            "aud": audience,
            "azp": "1234567890",
            "sub": "1234567890",
            "email": self.email,
            "email_verified": True,
            "iat": now,
            "nbf": now - 5,
            "exp": now + 3600,
        }
        body = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        return body + "." + _b64(b"FAKE-ID-TOKEN-SIGNATURE-" + self.token.encode())

    def start(self) -> str:
        """Start serving on an ephemeral port; return ``127.0.0.1:PORT``."""
        state = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                return

            def _send(self, status: int, body: str, ctype: str = "application/text") -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Metadata-Flavor", "Google")
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                url = urlparse(self.path)
                query = parse_qs(url.query)
                state.requests.append(url.path)
                if self.headers.get("Metadata-Flavor") != "Google":
                    state.refused.append(url.path)
                    self._send(403, "Missing Metadata-Flavor:Google header.")
                    return
                path = url.path
                if path in ("/", ""):
                    self._send(200, "computeMetadata/\n")
                    return
                if not path.startswith(_PREFIX):
                    self._send(404, "not found")
                    return
                rest = path[len(_PREFIX):]
                accounts = "instance/service-accounts/"
                if rest == "project/project-id":
                    self._send(200, state.project)
                elif rest == "universe/universe-domain":
                    self._send(200, "googleapis.com")
                elif rest.startswith(accounts):
                    account, _, what = rest[len(accounts):].partition("/")
                    if account not in ("default", state.email):
                        self._send(404, "no such service account")
                    elif what == "" and query.get("recursive") == ["true"]:
                        info = {"email": state.email, "aliases": ["default"],
                                "scopes": ["https://www.googleapis.com/auth/cloud-platform"]}
                        self._send(200, json.dumps(info), "application/json")
                    elif what == "email":
                        self._send(200, state.email)
                    elif what == "token":
                        doc = {"access_token": state.token, "expires_in": 3599, "token_type": "Bearer"}
                        self._send(200, json.dumps(doc), "application/json")
                    elif what == "identity" and query.get("audience"):
                        self._send(200, state.identity_token(query["audience"][0]))
                    else:
                        self._send(404, "not found")
                elif rest.startswith("instance/") and rest[len("instance/"):] in state.instance:
                    self._send(200, state.instance[rest[len("instance/"):]])
                else:
                    self._send(404, "not found")

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        port = self._httpd.server_address[1]
        return f"127.0.0.1:{port}"

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()
