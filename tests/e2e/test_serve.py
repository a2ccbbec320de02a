"""chainproof serve: verify, scan, then load, behind KServe's real REST server.

KServe binds 0.0.0.0, so every server here runs inside a fresh network namespace
(``unshare -rn``, loopback only) together with its client; nothing listens on the host.
"""

from __future__ import annotations

import csv
import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("kserve")

from chainproof.runner import SAMPLE  # noqa: E402

PORT = 8080
CHAINPROOF = str(Path(sys.executable).with_name("chainproof"))


def _namespaces_work() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-rn", "sh", "-c", "ip link set lo up"], capture_output=True, timeout=30)
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(not _namespaces_work(), reason="needs unshare -rn (user and network namespaces)")

_CLIENT = textwrap.dedent('''
    import json, os, socket, sys, time, urllib.request, urllib.error
    BASE = "http://127.0.0.1:%d"
    SERVER_PID = int(sys.argv[1])
    def alive():
        try:
            os.kill(SERVER_PID, 0)
        except OSError:
            return False
        with open(f"/proc/{SERVER_PID}/stat") as fh:
            return fh.read().split()[2] != "Z"
    def call(method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(BASE + path, data=data, method=method,
                                     headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=20) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
    def wait_ready(limit=90):
        end = time.monotonic() + limit
        while time.monotonic() < end and alive():
            try:
                status, _ = call("GET", "/v2/health/ready")
                if status == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.2)
        return False
    def port_ever_opened(limit=90):
        """Poll the port until the server process exits: did it ever accept a connection?"""
        end = time.monotonic() + limit
        while time.monotonic() < end and alive():
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", %d)) == 0:
                    return True
            time.sleep(0.05)
        return False
    OUT = {}
''' % (PORT, PORT))


def _run_in_namespace(serve_args: list[str], client: str, tmp_path: Path, timeout: int = 240, *, before: str = "",
                      env: dict[str, str] | None = None) -> dict:
    """Start ``chainproof serve`` and a client in one new network namespace; return the client's OUT,
    the server's exit code and its output. ``before`` runs in the namespace first (another loopback server)."""
    script = tmp_path / "client.py"
    script.write_text(_CLIENT + textwrap.dedent(client) + "\nprint(json.dumps(OUT))\n")
    log = tmp_path / "server.log"
    cmd = " ".join(f"'{a}'" for a in [CHAINPROOF, "serve", *serve_args, "--port", str(PORT)])
    shell = (f"ip link set lo up; {before} {cmd} > '{log}' 2>&1 & P=$!; "
             f"'{sys.executable}' '{script}' $P; C=$?; kill $P 2>/dev/null; wait $P; S=$?; echo \"server-exit=$S\"; exit $C")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    done = subprocess.run(["unshare", "-rn", "sh", "-c", shell], capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, done.stdout + done.stderr + log.read_text()
    lines = done.stdout.strip().splitlines()
    out = json.loads(lines[-2])
    out["_server_exit"] = int(lines[-1].split("=")[1])
    out["_log"] = log.read_text()
    return out


def _refused(serve_args: list[str], tmp_path: Path) -> dict:
    out = _run_in_namespace(serve_args, 'OUT["opened"] = port_ever_opened()\n', tmp_path)
    assert out["opened"] is False, out["_log"]
    assert out["_server_exit"] == 1, out["_log"]
    lines = out["_log"].strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("FAIL: "), out["_log"]
    assert "Traceback" not in out["_log"]
    return {"line": lines[0]}


def _sample_rows() -> list[dict[str, str]]:
    with open(SAMPLE.path(), newline="") as fh:
        return list(csv.DictReader(fh))


def _features(model_dir: Path) -> list[dict]:
    return json.loads((model_dir / "features.json").read_text())["features"]


def _held_out(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    # The rows the training step held out (same split as chainproof.train.train_table).
    import numpy as np
    from sklearn.model_selection import train_test_split

    y = np.array([r[SAMPLE.target] for r in rows])
    _, test = train_test_split(np.arange(len(rows)), test_size=0.25, random_state=0, stratify=y)
    return [rows[i] for i in sorted(test)]


def _bundle_args(copy) -> list[str]:
    return [str(copy.bundle), "--model", str(copy.model), "--owner-key", str(copy.keys_dir / "owner.pub")]


def test_v1_and_v2_predictions_match_the_model_under_its_registered_name(reference_run, tmp_path):
    import joblib

    from chainproof.train import prepare_rows

    features = _features(reference_run.model)
    names = [f["name"] for f in features]
    rows = _sample_rows()[:25]
    as_lists = [[float(r[n]) for n in names] for r in rows]
    as_objects = [{n: float(r[n]) for n in names} for r in rows]
    # The verified model, loaded here only to compute the expected answers.
    expected = [str(p) for p in joblib.load(reference_run.model / "model.joblib").predict(
        prepare_rows(rows, features=features))]
    client = f'''
        assert wait_ready()
        LISTS, OBJECTS, NAMES = {as_lists!r}, {as_objects!r}, {names!r}
        OUT["ready"] = call("GET", "/v2/models/chainproof-model/ready")
        OUT["v1_list"] = call("POST", "/v1/models/chainproof-model:predict", {{"instances": LISTS}})
        OUT["v1_object"] = call("POST", "/v1/models/chainproof-model:predict", {{"instances": OBJECTS}})
        flat = [v for row in LISTS for v in row]
        OUT["v2_matrix"] = call("POST", "/v2/models/chainproof-model/infer",
                                {{"inputs": [{{"name": "input-0", "shape": [len(LISTS), len(NAMES)],
                                              "datatype": "FP64", "data": flat}}]}})
        OUT["v2_named"] = call("POST", "/v2/models/chainproof-model/infer",
                               {{"inputs": [{{"name": n, "shape": [len(LISTS)], "datatype": "FP64",
                                             "data": [row[n] for row in OBJECTS]}} for n in NAMES]}})
        OUT["short"] = call("POST", "/v1/models/chainproof-model:predict", {{"instances": [LISTS[0][:-1]]}})
        OUT["long"] = call("POST", "/v1/models/chainproof-model:predict", {{"instances": [LISTS[0] + [1.0]]}})
        bad = dict(OBJECTS[0]); bad[NAMES[3]] = "not-a-number"
        OUT["type"] = call("POST", "/v1/models/chainproof-model:predict", {{"instances": [bad]}})
        missing = dict(OBJECTS[0]); del missing[NAMES[5]]
        OUT["missing"] = call("POST", "/v1/models/chainproof-model:predict", {{"instances": [missing]}})
        OUT["v2_short"] = call("POST", "/v2/models/chainproof-model/infer",
                               {{"inputs": [{{"name": "x", "shape": [1, len(NAMES) - 1], "datatype": "FP64",
                                             "data": LISTS[0][:-1]}}]}})
        OUT["other_name"] = call("POST", "/v1/models/model:predict", {{"instances": LISTS[:1]}})
        OUT["metrics"] = call("GET", "/metrics")
    '''
    out = _run_in_namespace([reference_run.registered, "--registry", str(reference_run.bundle.parents[3]),
                             "--owner-key", str(reference_run.owner_key)], client, tmp_path)
    assert out["ready"][0] == 200
    for key in ("v1_list", "v1_object"):
        assert out[key][0] == 200, out[key]
        assert json.loads(out[key][1])["predictions"] == expected
    for key in ("v2_matrix", "v2_named"):
        assert out[key][0] == 200, out[key]
        (output,) = json.loads(out[key][1])["outputs"]
        assert output["name"] == "predict" and output["shape"] == [len(rows)]
        assert output["data"] == expected
    last = names[-1]
    assert out["short"][0] == 400 and f"feature '{last}' is missing" in out["short"][1]
    assert out["long"][0] == 400 and f"nothing follows feature '{last}'" in out["long"][1]
    assert out["type"][0] == 400 and f"feature '{names[3]}' is numeric" in out["type"][1]
    assert "not-a-number" not in out["type"][1] + out["_log"]  # inputs are not echoed or logged
    assert out["missing"][0] == 400 and f"feature '{names[5]}' is missing" in out["missing"][1]
    assert out["v2_short"][0] == 400 and f"feature '{last}' is missing" in out["v2_short"][1]
    assert out["other_name"][0] == 404
    metrics = out["metrics"][1]
    assert out["metrics"][0] == 200
    assert f'chainproof_model_verified{{layout_sha256="{reference_run.verification.layout_sha256}",' \
           f'model="chainproof-model",model_sha256="{reference_run.model_sha256}"}} 1.0' in metrics
    assert "request_predict_seconds" in metrics  # KServe's own latency histograms
    assert "Traceback" not in out["_log"]  # a 400 is one line in the log
    # The server said what it verified before it listened.
    assert "OK: (2) layout signed by trusted owner key" in out["_log"]


def test_refuses_to_start_on_a_tampered_model_file(registered, tmp_path):
    with open(registered.model / "model.joblib", "r+b") as fh:
        fh.seek(200)
        byte = fh.read(1)
        fh.seek(200)
        fh.write(bytes([byte[0] ^ 1]))
    line = _refused(_bundle_args(registered), tmp_path)["line"]
    assert line.startswith("FAIL: model/model.joblib (attested by train_model): expected sha256:"), line


def test_refuses_to_start_on_a_bundle_from_an_untrusted_owner(registered, tmp_path):
    from chainproof.signing import init_keys

    other = init_keys(tmp_path / "other-keys", roles=["owner"], development=True)
    args = [str(registered.bundle), "--model", str(registered.model), "--owner-key", str(other.public_key_path("owner"))]
    line = _refused(args, tmp_path)["line"]
    assert "root.layout" in line and "trusted" in line, line


def test_refuses_to_start_on_a_tampered_drift_profile(registered, tmp_path):
    path = registered.bundle / "reports" / "profile.json"
    doc = json.loads(path.read_text())
    doc["features"][0]["fractions"][0] += 0.5  # a profile that would hide a shift
    path.write_text(json.dumps(doc))
    line = _refused(_bundle_args(registered), tmp_path)["line"]
    assert line.startswith("FAIL: reports/profile.json (produced by train_model): expected sha256:"), line


class _Payload:
    """A harmless code-execution payload: pickling records os.system('true')."""

    def __reduce__(self):
        return (os.system, ("true",))


def test_refuses_to_start_on_a_malicious_pickle_the_training_step_attested(tmp_path):
    # An insider with the training key ships a payload as the model and signs it: the chain
    # verifies and every digest matches. The scan does not pass, so nothing is unpickled.
    from in_toto.models.metadata import Envelope

    from chainproof import steps
    from chainproof.attest import load_link, write_link
    from chainproof.digests import digest_tree
    from chainproof.policy import REFERENCE_STEPS, generate_layout, sign_layout
    from chainproof.signing import init_keys, load_public_key, load_signer, public_key_pem

    chain_steps = REFERENCE_STEPS[:2]  # an owner's layout of ingest and training only
    ring = init_keys(tmp_path / "keys", roles=["owner", *(s.name for s in chain_steps)], development=True)
    owner = load_signer(ring.signer_reference("owner"))
    layout = sign_layout(generate_layout(chain_steps, {s.name: load_public_key(ring.public_key_path(s.name))
                                                       for s in chain_steps}), owner)
    layout_path = tmp_path / "root.layout"
    layout_path.write_bytes(layout)
    import hashlib

    layout_sha = hashlib.sha256(layout).hexdigest()
    steps.secure_ingest(source_uri=SAMPLE.path().as_uri(), expected_sha256=SAMPLE.sha256, layout_uri=layout_path.as_uri(),
                        layout_sha256=layout_sha, signer=ring.signer_reference("secure_ingest"),
                        dataset_dir=tmp_path / "dataset", chain_dir=tmp_path / "chain",
                        owner_public_key=public_key_pem(owner.public_key))
    model = tmp_path / "model"
    steps.train_model(dataset_dir=tmp_path / "dataset", chain_in=tmp_path / "chain", layout_sha256=layout_sha,
                      signer=ring.signer_reference("train_model"), target_column=SAMPLE.target, model_dir=model,
                      chain_out=tmp_path / "chain-train")
    (model / "model.joblib").write_bytes(pickle.dumps(_Payload(), protocol=4))
    (link_file,) = (tmp_path / "chain-train" / "links").glob("train_model.*.link")
    _, link = load_link(link_file)
    for name, digest in digest_tree(model, prefix="model").items():
        link.products[name] = {"sha256": digest}
    envelope = Envelope.from_signable(link)
    envelope.create_signature(load_signer(ring.signer_reference("train_model")).signer)
    link_file.unlink()
    write_link(envelope, tmp_path / "chain-train" / "links")

    args = [str(tmp_path / "chain-train"), "--model", str(model), "--owner-key", str(ring.public_key_path("owner"))]
    line = _refused(args, tmp_path)["line"]
    assert "model/model.joblib@" in line and "scan refused it" in line and "system" in line, line


def test_a_model_swapped_on_disk_after_start_is_refused_at_reload(registered, tmp_path):
    features = _features(registered.model)
    row = [float(_sample_rows()[0][f["name"]]) for f in features]
    target = registered.model / "model.joblib"
    client = f'''
        assert wait_ready()
        ROW = {row!r}
        OUT["before"] = call("POST", "/v1/models/chainproof-model:predict", {{"instances": [ROW]}})
        # An honest reload of the unchanged model passes.
        OUT["reload_same"] = call("POST", "/v2/repository/models/chainproof-model/load")
        # Swap the model file on disk (same size, one byte changed), then ask for a reload.
        with open({str(target)!r}, "r+b") as fh:
            fh.seek(100); b = fh.read(1); fh.seek(100); fh.write(bytes([b[0] ^ 1]))
        OUT["reload_swapped"] = call("POST", "/v2/repository/models/chainproof-model/load")
        OUT["ready_after"] = call("GET", "/v2/models/chainproof-model/ready")
        OUT["predict_after"] = call("POST", "/v1/models/chainproof-model:predict", {{"instances": [ROW]}})
        OUT["metrics"] = call("GET", "/metrics")
    '''
    out = _run_in_namespace(_bundle_args(registered), client, tmp_path)
    assert out["before"][0] == 200
    assert out["reload_same"][0] == 200, out["reload_same"]
    status, body = out["reload_swapped"]
    assert status == 503 and "model/model.joblib (attested by the chain): expected sha256:" in body, out["reload_swapped"]
    assert out["ready_after"][0] == 503
    assert out["predict_after"][0] == 503
    assert 'chainproof_model_verified{' in out["metrics"][1]
    assert [line for line in out["metrics"][1].splitlines()
            if line.startswith("chainproof_model_verified{")][0].endswith(" 0.0")
    assert 'chainproof_reload_refused_total{model="chainproof-model"} 1.0' in out["metrics"][1]
    assert "REFUSED reload of chainproof-model: model/model.joblib" in out["_log"]


def test_a_model_swapped_on_disk_is_refused_by_the_periodic_recheck_and_restored_when_it_verifies(registered, tmp_path):
    features = _features(registered.model)
    row = [float(_sample_rows()[0][f["name"]]) for f in features]
    target = registered.model / "model.joblib"
    client = f'''
        assert wait_ready()
        ROW = {row!r}
        def flip():
            with open({str(target)!r}, "r+b") as fh:
                fh.seek(100); b = fh.read(1); fh.seek(100); fh.write(bytes([b[0] ^ 1]))
        def until(status, limit=30):
            end = time.monotonic() + limit
            while time.monotonic() < end:
                if call("GET", "/v2/models/chainproof-model/ready")[0] == status:
                    return True
                time.sleep(0.1)
            return False
        OUT["before"] = call("POST", "/v1/models/chainproof-model:predict", {{"instances": [ROW]}})
        flip()  # no reload asked for: the recheck alone must notice
        OUT["unready"] = until(503)
        OUT["predict_swapped"] = call("POST", "/v1/models/chainproof-model:predict", {{"instances": [ROW]}})
        OUT["metrics_swapped"] = call("GET", "/metrics")
        flip()  # the attested bytes are back: verified again, copied, scanned, loaded
        OUT["ready_again"] = until(200)
        OUT["predict_restored"] = call("POST", "/v1/models/chainproof-model:predict", {{"instances": [ROW]}})
    '''
    out = _run_in_namespace([*_bundle_args(registered), "--recheck", "0.3"], client, tmp_path)
    assert out["before"][0] == 200
    assert out["unready"] is True, out["_log"]
    assert out["predict_swapped"][0] == 503
    verified = [line for line in out["metrics_swapped"][1].splitlines() if line.startswith("chainproof_model_verified{")]
    assert verified and verified[0].endswith(" 0.0")
    assert out["ready_again"] is True, out["_log"]
    assert out["predict_restored"] == out["before"]
    assert "REFUSED recheck of chainproof-model: model/model.joblib (attested by the chain): expected sha256:" in out["_log"]
    assert "files rechecked every 0.3 s" in out["_log"]


@pytest.mark.parametrize("value", ["-1", "0.01", "nan", "inf"])
def test_a_recheck_interval_out_of_range_is_a_usage_error(registered, value):
    proc = subprocess.run([CHAINPROOF, "serve", *_bundle_args(registered), "--recheck", value],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("FAIL: --recheck ") and "Traceback" not in proc.stderr, proc.stderr


def test_drift_shift_raises_the_gauge_and_the_alert_a_clean_held_out_sample_does_not(registered, tmp_path):
    features = _features(registered.model)
    names = [f["name"] for f in features]
    held = [[float(r[n]) for n in names] for r in _held_out(_sample_rows())]
    shifted = [[v * 1.3 if j == 0 else v for j, v in enumerate(row)] for row in held]
    window = len(held)
    client = f'''
        import re
        assert wait_ready()
        HELD, SHIFTED = {held!r}, {shifted!r}
        def gauges():
            text = call("GET", "/metrics")[1]
            psi = {{m.group(1): float(m.group(2)) for m in
                   re.finditer(r'chainproof_drift_psi{{feature="([^"]+)",model="chainproof-model"}} (\\S+)', text)}}
            ks = re.search(r'chainproof_drift_score_ks{{model="chainproof-model"}} (\\S+)', text)
            return {{"psi": psi, "ks": float(ks.group(1)) if ks else None}}
        for i in range(0, len(HELD), 13):
            assert call("POST", "/v1/models/chainproof-model:predict", {{"instances": HELD[i:i + 13]}})[0] == 200
        OUT["clean"] = gauges()
        for i in range(0, len(SHIFTED), 13):
            assert call("POST", "/v1/models/chainproof-model:predict", {{"instances": SHIFTED[i:i + 13]}})[0] == 200
        OUT["shifted"] = gauges()
    '''
    args = [*_bundle_args(registered), "--window", str(window), "--every", "13", "--min-samples", "100"]
    out = _run_in_namespace(args, client, tmp_path)
    clean, shifted = out["clean"], out["shifted"]
    assert set(clean["psi"]) == set(names)
    assert max(clean["psi"].values()) < 0.2 and clean["ks"] < 0.2, clean
    assert shifted["psi"][names[0]] > 0.2, shifted
    assert all(v < 0.2 for n, v in shifted["psi"].items() if n != names[0]), shifted
    alerts = [line for line in out["_log"].splitlines() if "ALERT drift" in line]
    assert alerts and all(f"feature {names[0]} PSI" in a or "score KS" in a for a in alerts), alerts
    assert any(f"ALERT drift chainproof-model: feature {names[0]} PSI" in a for a in alerts), alerts


_OBJECT_SERVER = textwrap.dedent('''
    import http.server, ssl, sys, pathlib
    root, cert, key, ready = (pathlib.Path(a) for a in sys.argv[1:5])
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            path = root / self.path.removeprefix("/models/m1/")
            if not self.path.startswith("/models/m1/") or not path.is_file():
                self.send_response(404); self.send_header("Content-Length", "0"); self.end_headers(); return
            body = path.read_bytes()
            self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
            self.wfile.write(body)
        def log_message(self, *args):
            pass
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 8443), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(str(cert), str(key))
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    ready.write_text("ok")
    srv.serve_forever()
''')


def test_serves_a_model_fetched_at_startup_over_https(registered, tmp_path):
    # The object store (HTTPS on loopback) runs inside the same namespace; the model is fetched from it.
    from chainproof.testing.servers import make_self_signed_cert

    cert, key = make_self_signed_cert(tmp_path)
    store = tmp_path / "store"
    shutil.copytree(registered.model, store)
    shutil.rmtree(registered.model)
    script = tmp_path / "objects.py"
    script.write_text(_OBJECT_SERVER)
    ready = tmp_path / "store.ready"
    # Its output goes nowhere and it is stopped with the namespace's last process.
    before = (f"'{sys.executable}' '{script}' '{store}' '{cert}' '{key}' '{ready}' >/dev/null 2>&1 & O=$!; "
              f"trap 'kill $O 2>/dev/null' EXIT; "
              f"while [ ! -f '{ready}' ]; do sleep 0.1; done;")
    features = _features(store)
    row = [float(_sample_rows()[0][f["name"]]) for f in features]
    client = f'''
        assert wait_ready()
        OUT["predict"] = call("POST", "/v1/models/chainproof-model:predict", {{"instances": [{row!r}]}})
    '''
    args = [str(registered.bundle), "--model-source", "https://127.0.0.1:8443/models/m1/",
            "--owner-key", str(registered.keys_dir / "owner.pub")]
    out = _run_in_namespace(args, client, tmp_path, before=before, env={"CHAINPROOF_CA_FILE": str(cert)})
    assert out["predict"][0] == 200, out
    assert "OK: (9) 2 model files match the products of train_model" in out["_log"]


def _publisher_key(tmp_path: Path, name: str) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private, public = tmp_path / f"{name}.key", tmp_path / f"{name}.pub"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def _publish(registered, tmp_path: Path, *, extra_signed: bool = False) -> tuple[Path, Path]:
    """The registered model moved to a folder 'store', signed there by a publisher key (model-signing's
    own signer). Returns the store and the publisher's public key."""
    from model_signing import signing

    store = tmp_path / "store"
    shutil.copytree(registered.model, store)
    shutil.rmtree(registered.model)
    private, public = _publisher_key(tmp_path, "publisher")
    signed = store
    if extra_signed:  # the publisher signed one more file than the chain attests
        signed = tmp_path / "signed"
        shutil.copytree(store, signed)
        (signed / "NOTICE").write_text("not attested by the chain\n")
    signing.Config().use_elliptic_key_signer(private_key=private).sign(signed, tmp_path / "model.sig")
    shutil.copy(tmp_path / "model.sig", store / "model.sig")
    return store, public


def test_serves_a_fetched_model_only_with_its_publishers_signature_when_a_publisher_is_named(registered, tmp_path):
    store, public = _publish(registered, tmp_path)
    features = _features(store)
    row = [float(_sample_rows()[0][f["name"]]) for f in features]
    client = f'''
        assert wait_ready()
        OUT["predict"] = call("POST", "/v1/models/chainproof-model:predict", {{"instances": [{row!r}]}})
    '''
    args = [str(registered.bundle), "--model-source", f"{store}/", "--publisher-key", str(public),
            "--owner-key", str(registered.keys_dir / "owner.pub")]
    out = _run_in_namespace(args, client, tmp_path)
    assert out["predict"][0] == 200, out
    assert "OK: serve: publisher signature by key sha256:" in out["_log"], out["_log"]
    assert "covers the 2 fetched model files" in out["_log"], out["_log"]


@pytest.mark.parametrize("attack", ["other-publisher", "no-signature", "signature-over-other-files",
                                    "truncated-signature"])
def test_a_fetched_model_without_the_named_publishers_signature_never_starts(registered, tmp_path, attack):
    store, public = _publish(registered, tmp_path, extra_signed=attack == "signature-over-other-files")
    if attack == "other-publisher":
        _, public = _publisher_key(tmp_path, "eve")
    elif attack == "no-signature":
        (store / "model.sig").unlink()
    elif attack == "truncated-signature":
        sig = store / "model.sig"
        sig.write_bytes(sig.read_bytes()[:100])
    args = [str(registered.bundle), "--model-source", f"{store}/", "--publisher-key", str(public),
            "--owner-key", str(registered.keys_dir / "owner.pub")]
    line = _refused(args, tmp_path)["line"]
    assert line.startswith("FAIL: model.sig (publisher signature): "), line
    if attack == "no-signature":
        assert "expected at " in line and "found none" in line, line
    elif attack != "truncated-signature":
        assert "does not verify as key signature by the expected publisher" in line, line


@pytest.mark.parametrize("extra", [["--publisher-key", "pub.pem"], ["--signature", "x/model.sig"]])
def test_a_publisher_without_a_fetched_model_is_a_usage_error(registered, tmp_path, extra):
    args = [*_bundle_args(registered), *extra]
    if extra[0] == "--publisher-key":
        _publisher_key(tmp_path, "pub")
        args[-1] = str(tmp_path / "pub.pub")
    # In a network namespace of its own: were the refusal missing, nothing would listen outside it.
    done = subprocess.run(["unshare", "-rn", CHAINPROOF, "serve", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("FAIL: --"), done.stderr
    assert "with --model-source" in done.stderr or "goes with a publisher" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_serves_a_users_own_pipeline_model_by_its_recorded_feature_contract(tmp_path):
    """A data scientist's pipeline whose training step records its profile and contract
    (chainproof.drift.record_profile): served by name, instances read by the user's own columns."""
    import joblib
    import numpy as np

    from tests.e2e.test_dsl_pipeline import make_churn_table, run_user_pipeline

    data = tmp_path / "churn.csv"
    result, run_env = run_user_pipeline("churn_profiled", data, make_churn_table(data, rows=600), tmp_path)
    env = {**os.environ, "CHAINPROOF_TRUST_DIR": run_env["CHAINPROOF_TRUST_DIR"]}
    lists = [["basic", "north", 3.0, 99.5], ["max", "west", 60.0, 20.0], ["", "east", 12.0, 55.0]]
    objects = [dict(zip(["plan", "region", "tenure", "charges"], row)) for row in lists]
    model = joblib.load(Path(result["model"]) / "model.joblib")
    expected = [int(p) for p in model.predict(np.array([[c if c != "" else np.nan for c in r] for r in lists],
                                                        dtype=object))]
    client = f'''
        assert wait_ready()
        OUT["lists"] = call("POST", "/v1/models/churn:predict", {{"instances": {lists!r}}})
        OUT["objects"] = call("POST", "/v1/models/churn:predict", {{"instances": {objects!r}}})
        OUT["bad"] = call("POST", "/v1/models/churn:predict", {{"instances": [["basic", "north", "soon", 1.0]]}})
        OUT["metrics"] = call("GET", "/metrics")
    '''
    out = _run_in_namespace([result["registered"], "--registry", str(tmp_path / "cw" / "registry"),
                             "--owner-key", result["owner_key"], "--every", "1"], client, tmp_path, env=env)
    for key in ("lists", "objects"):
        assert out[key][0] == 200, out[key]
        assert [int(p) for p in json.loads(out[key][1])["predictions"]] == expected
    assert out["bad"][0] == 400 and "feature 'tenure' is numeric" in out["bad"][1]
    assert "drift: reports/profile.json matches the digest train_profiled attests (4 features)" in out["_log"]
    # The drift monitor watches the user's features: six rows in its window, PSI per feature of their own.
    assert 'chainproof_drift_window_rows{model="churn"} 6.0' in out["metrics"][1]
    assert 'chainproof_drift_psi{feature="plan",model="churn"}' in out["metrics"][1]
