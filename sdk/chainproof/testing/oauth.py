"""An OAuth 2.0 token endpoint on 127.0.0.1, and the Application Default Credentials file that uses it.

google-auth reads ``GOOGLE_APPLICATION_CREDENTIALS`` each time ``google.auth.default()`` runs: an
``external_account_authorized_user`` file (workforce identity federation, as
``gcloud auth application-default login`` writes it for a federated user) whose ``token_url`` is this endpoint gives the real client libraries real
bearer tokens in the test process itself (the metadata server's variables are read only once per
process). The endpoint answers the refresh-token grant with its current token.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs

from chainproof.testing.servers import serve


class _TokenHandler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
        pass

    def do_POST(self) -> None:  # noqa: N802
        form = parse_qs(self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode())
        if self.path != "/token" or form.get("grant_type") != ["refresh_token"] or form.get("refresh_token") != [
                self.server.refresh_token]:  # type: ignore[attr-defined]
            body, status = json.dumps({"error": "invalid_grant"}).encode(), 400
        else:
            self.server.issued += 1  # type: ignore[attr-defined]
            body = json.dumps({"access_token": self.server.token, "expires_in": 3600,  # type: ignore[attr-defined]
                               "token_type": "Bearer"}).encode()
            status = 200
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def token_endpoint() -> Iterator[object]:
    """Serve the endpoint; the server has ``token`` (settable), ``refresh_token``, ``issued`` and ``adc_file(dir)``."""
    with serve(_TokenHandler, token=secrets.token_urlsafe(24), refresh_token=secrets.token_urlsafe(24), issued=0) as srv:
        def adc_file(directory: Path) -> Path:
            path = directory / "adc.json"
            path.write_text(json.dumps({
                "type": "external_account_authorized_user",
                "audience": "//iam.googleapis.com/locations/global/workforcePools/chainproof-test/providers/idp",
                "client_id": "chainproof-test", "client_secret": "not-a-secret",
                "refresh_token": srv.refresh_token,  # type: ignore[attr-defined]
                "token_url": f"http://127.0.0.1:{srv.server_address[1]}/token",
            }))
            return path

        srv.adc_file = adc_file  # type: ignore[attr-defined]
        yield srv
