"""A Kubeflow Pipelines API server on 127.0.0.1: the v2beta1 REST endpoints ``kfp.Client`` uses.

``GET /apis/v2beta1/healthz``, ``GET``/``POST /apis/v2beta1/experiments`` (the display-name filter
``kfp.Client.get_experiment`` sends), ``POST /apis/v2beta1/runs`` and ``GET /apis/v2beta1/runs/{run_id}``,
with the JSON field names of KFP's OpenAPI (snake_case, as ``kfp_server_api`` sends and reads them).
A created run is PENDING; a ``runner`` (the test's) then runs its tasks in a thread, meanwhile
RUNNING, and the run ends SUCCEEDED, or FAILED with the runner's error. Every request is logged.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlparse

from chainproof.testing.servers import serve

API = "/apis/v2beta1"


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class _State:
    def __init__(self) -> None:
        self.experiments: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, Any]] = []
        self.runner: Any = None
        self.lock = threading.Lock()

    def calls(self, method: str, path: str) -> list[Any]:
        """Bodies (or queries) of the requests with this method and path prefix."""
        return [body for m, p, body in self.requests if m == method and p.startswith(path)]

    def run_tasks(self, run: dict[str, Any]) -> None:
        with self.lock:
            run["state"] = "RUNNING"
            run["state_history"].append({"update_time": _now(), "state": "RUNNING"})
        try:
            self.runner(json.loads(json.dumps(run)))
        except Exception as exc:  # noqa: BLE001 - the run fails with the task's error, as on KFP
            with self.lock:
                run["state"], run["error"] = "FAILED", {"code": 2, "message": str(exc)[:500]}
                run["state_history"].append({"update_time": _now(), "state": "FAILED"})
            return
        with self.lock:
            run["state"], run["finished_at"] = "SUCCEEDED", _now()
            run["state_history"].append({"update_time": _now(), "state": "SUCCEEDED"})


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
        pass

    @property
    def state(self) -> _State:
        state: _State = self.server.state  # type: ignore[attr-defined]
        return state

    def _send(self, status: int, doc: Any) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        url = urlparse(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        self.state.requests.append(("GET", url.path, query))
        with self.state.lock:
            if url.path == f"{API}/healthz":
                return self._send(200, {"multi_user": False})
            if url.path == f"{API}/experiments":
                found = list(self.state.experiments.values())
                for predicate in json.loads(query.get("filter") or "{}").get("predicates", []):
                    if predicate.get("key") == "display_name":
                        found = [e for e in found if e["display_name"] == predicate.get("stringValue")]
                return self._send(200, {"experiments": found, "total_size": len(found)} if found else {})
            if url.path.startswith(f"{API}/runs/"):
                run = self.state.runs.get(url.path.rsplit("/", 1)[1])
                if run is None:
                    return self._send(404, {"code": 5, "message": "run not found"})
                return self._send(200, run)
        self._send(404, {"code": 5, "message": f"no such endpoint {url.path}"})

    def do_POST(self) -> None:  # noqa: N802
        url = urlparse(self.path)
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        self.state.requests.append(("POST", url.path, body))
        with self.state.lock:
            if url.path == f"{API}/experiments":
                experiment = {"experiment_id": str(uuid.uuid4()), "display_name": body["display_name"],
                              "created_at": _now(), "storage_state": "AVAILABLE", "namespace": body.get("namespace", "")}
                self.state.experiments[experiment["experiment_id"]] = experiment
                return self._send(200, experiment)
            if url.path == f"{API}/runs":
                if body.get("experiment_id") not in self.state.experiments:
                    return self._send(400, {"code": 3, "message": "unknown experiment_id"})
                if not body.get("pipeline_spec"):
                    return self._send(400, {"code": 3, "message": "no pipeline_spec"})
                run = {**body, "run_id": str(uuid.uuid4()), "state": "PENDING", "created_at": _now(),
                       "storage_state": "AVAILABLE", "state_history": [{"update_time": _now(), "state": "PENDING"}]}
                self.state.runs[run["run_id"]] = run
                if self.state.runner is not None:
                    threading.Thread(target=self.state.run_tasks, args=(run,), daemon=True).start()
                return self._send(200, run)
        self._send(404, {"code": 5, "message": f"no such endpoint {url.path}"})


@contextmanager
def kfp_server() -> Iterator[tuple[_State, str]]:
    """Serve a fresh KFP API; yield its state and ``http://127.0.0.1:PORT``. Always stopped."""
    state = _State()
    with serve(_Handler, state=state) as srv:
        yield state, f"http://127.0.0.1:{srv.server_address[1]}"
