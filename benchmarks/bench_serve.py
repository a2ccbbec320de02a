"""chainproof serve: start (verify + scan + load) and prediction latency with and without drift monitoring.

Run: ``python -m benchmarks.bench_serve [--quick] [--out FILE]`` (needs the serve extra and ``unshare -rn``).

Two chains:

- the reference model: ``chainproof run``'s pipeline on the built-in sample (6 steps);
- a large forest (>= 200 MB joblib): a random forest of fully grown trees on a synthetic table with
  noisy labels, through a chain of ingest, train and sign (OpenSSF model signature and SLSA
  provenance over the model; the robustness step is left out, its attacks would dominate).

Start is measured twice: in process (``load_verified``: verification, private copy, scan, load;
and ``verify_bundle`` alone, to split verification from the rest) and end to end (from spawning
``chainproof serve`` to ``/v2/health/ready`` answering 200, interpreter and KServe imports
included). Latency: one-row V1 predictions, sequential, against two servers started in the same
network namespace (one with drift monitoring, one with ``--no-monitor``), requests interleaved.
Everything listens only inside a new network namespace (KServe binds 0.0.0.0).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

HERE = Path(__file__).resolve().parent
CHAINPROOF = str(Path(sys.executable).with_name("chainproof"))


def _reference(work: Path) -> dict[str, Any]:
    from chainproof.runner import run_reference_pipeline

    run = run_reference_pipeline(workdir=work / "ref", trust_dir=work / "ref-trust")
    return {"name": "reference model", "bundle": str(run.bundle), "model": str(run.model),
            "owner_key": str(run.owner_key), "model_bytes": (run.model / "model.joblib").stat().st_size}


def _synthetic_csv(path: Path, rows: int, cols: int, seed: int = 0) -> None:
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, cols))
    # Labels barely related to the features: every tree grows a leaf for nearly every row.
    y = ((x[:, 0] + rng.normal(scale=3.0, size=rows)) > 0).astype(int)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([f"f{j}" for j in range(cols)] + ["label"])
        for row, label in zip(x, y):
            w.writerow([f"{v:.5f}" for v in row] + [int(label)])


def _forest(work: Path, *, rows: int, trees: int) -> dict[str, Any]:
    from chainproof import steps
    from chainproof.policy import REFERENCE_STEPS, generate_layout, sign_layout
    from chainproof.signing import init_keys, load_public_key, load_signer, public_key_pem

    base = work / "forest"
    base.mkdir(parents=True, exist_ok=True)
    data = base / "table.csv"
    _synthetic_csv(data, rows, 20)
    chain_steps = REFERENCE_STEPS[:3]
    ring = init_keys(base / "keys", roles=["owner", *(s.name for s in chain_steps)], development=True)
    owner = load_signer(ring.signer_reference("owner"))
    layout = sign_layout(generate_layout(chain_steps, {s.name: load_public_key(ring.public_key_path(s.name))
                                                       for s in chain_steps}), owner)
    (base / "root.layout").write_bytes(layout)
    sha = hashlib.sha256(layout).hexdigest()
    steps.secure_ingest(source_uri=data.as_uri(), expected_sha256=hashlib.sha256(data.read_bytes()).hexdigest(),
                        layout_uri=(base / "root.layout").as_uri(), layout_sha256=sha,
                        signer=ring.signer_reference("secure_ingest"), dataset_dir=base / "dataset",
                        chain_dir=base / "chain-ingest", owner_public_key=public_key_pem(owner.public_key))
    steps.train_model(dataset_dir=base / "dataset", chain_in=base / "chain-ingest", layout_sha256=sha,
                      signer=ring.signer_reference("train_model"), target_column="label", model_dir=base / "model",
                      chain_out=base / "chain-train",
                      hyperparameters=json.dumps({"n_estimators": trees, "min_samples_leaf": 1, "n_jobs": 2}))
    steps.sign_and_attest(model_dir=base / "model", chain_in=base / "chain-train", layout_sha256=sha,
                          signer=ring.signer_reference("sign_and_attest"), chain_out=base / "bundle")
    return {"name": f"forest ({trees} trees, {rows} rows)", "bundle": str(base / "bundle"), "model": str(base / "model"),
            "owner_key": str(ring.public_key_path("owner")),
            "model_bytes": (base / "model" / "model.joblib").stat().st_size}


def _in_process_start(chain: dict[str, Any], reps: int) -> dict[str, Any]:
    from chainproof.serve.loader import load_verified
    from chainproof.signing import load_public_key
    from chainproof.verify import verify_bundle

    key = load_public_key(chain["owner_key"])
    keys = {key.keyid: key}
    totals, verifies = [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        verify_bundle(chain["bundle"], trusted_owner_keys=keys, model_dir=chain["model"])
        verifies.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        served = load_verified(chain["bundle"], trusted_owner_keys=keys, model_dir=chain["model"])
        totals.append(time.perf_counter() - t0)
        served.close()
    return {"load_verified_s": round(median(totals), 3), "verify_bundle_s": round(median(verifies), 3),
            "copy_scan_load_s": round(median(totals) - median(verifies), 3), "reps": reps}


_INNER_CLIENT = r"""
import json, subprocess, sys, time, urllib.request
spec = json.loads(sys.argv[1])
def call(port, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.status, r.read()
def start(args, port):
    t0 = time.perf_counter()
    p = subprocess.Popen([spec["chainproof"], "serve", *args, "--port", str(port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        if p.poll() is not None:
            raise SystemExit(f"server exited {p.returncode}")
        try:
            if call(port, "/v2/health/ready")[0] == 200:
                return p, time.perf_counter() - t0
        except OSError:
            time.sleep(0.05)
out = {}
procs = []
try:
    mon, out["ready_monitor_s"] = start(spec["args"], 8080); procs.append(mon)
    plain, out["ready_plain_s"] = start(spec["args"] + ["--no-monitor"], 8081); procs.append(plain)
    rows = spec["rows"]
    lat = {8080: [], 8081: []}
    for i in range(spec["warmup"]):
        for port in (8080, 8081):
            call(port, spec["path"], {"instances": [rows[i % len(rows)]]})
    for i in range(spec["requests"]):
        for port in ((8080, 8081) if i % 2 == 0 else (8081, 8080)):
            body = {"instances": [rows[i % len(rows)]]}
            t0 = time.perf_counter()
            status, _ = call(port, spec["path"], body)
            lat[port].append(time.perf_counter() - t0)
            assert status == 200
    out["latency_monitor"], out["latency_plain"] = lat[8080], lat[8081]
finally:
    for p in procs:
        p.terminate(); p.wait(timeout=30)
print(json.dumps(out))
"""


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _serve_run(chain: dict[str, Any], rows: list[list[float]], requests: int, name: str) -> dict[str, Any]:
    args = [chain["bundle"], "--model", chain["model"], "--owner-key", chain["owner_key"],
            "--every", "50", "--window", "1000"]
    spec = {"chainproof": CHAINPROOF, "args": args, "rows": rows, "requests": requests, "warmup": 20,
            "path": f"/v1/models/{name}:predict"}
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as fh:
        fh.write(_INNER_CLIENT)
    try:
        done = subprocess.run(["unshare", "-rn", "sh", "-c", 'ip link set lo up; exec "$0" "$1" "$2"',
                               sys.executable, fh.name, json.dumps(spec)],
                              capture_output=True, text=True, timeout=3600)
    finally:
        os.unlink(fh.name)
    if done.returncode != 0:
        raise SystemExit(f"serve run failed: {done.stderr[-2000:]}")
    raw = json.loads(done.stdout.strip().splitlines()[-1])
    out = {"ready_monitor_s": round(raw["ready_monitor_s"], 2), "ready_plain_s": round(raw["ready_plain_s"], 2),
           "requests": requests}
    for key in ("monitor", "plain"):
        lat = raw[f"latency_{key}"]
        out[f"p50_{key}_ms"] = round(1000 * _pct(lat, 0.5), 2)
        out[f"p99_{key}_ms"] = round(1000 * _pct(lat, 0.99), 2)
    return out


def _rows(chain: dict[str, Any], n: int) -> list[list[float]]:
    features = json.loads((Path(chain["model"]) / "features.json").read_text())["features"]
    import numpy as np

    rng = np.random.default_rng(1)
    return [[round(float(v), 4) for v in rng.normal(loc=12.0, scale=3.0, size=len(features))] for _ in range(n)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_serve", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small forest, few requests")
    parser.add_argument("--out", default=str(HERE / "serve.json"))
    parser.add_argument("--work", help="scratch folder (default: a temporary one)")
    args = parser.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="chainproof-bench-serve-"))
    requests = 100 if args.quick else 1000
    chains = [_reference(work)]
    t0 = time.perf_counter()
    chains.append(_forest(work, rows=2000 if args.quick else 20000, trees=10 if args.quick else 600))
    chains[-1]["train_s"] = round(time.perf_counter() - t0, 1)
    results: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                               "cores": os.cpu_count(), "mode": "quick" if args.quick else "full", "chains": []}
    for chain, name in zip(chains, ["chainproof-model", "model"]):
        print(f"{chain['name']}: model.joblib {chain['model_bytes'] / 2**20:.1f} MiB", flush=True)
        entry = {**chain, "start": _in_process_start(chain, reps=1 if args.quick else 3)}
        print(f"  start in process: {entry['start']}", flush=True)
        entry["serve"] = _serve_run(chain, _rows(chain, 200), requests, name)
        print(f"  serve: {entry['serve']}", flush=True)
        results["chains"].append(entry)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
