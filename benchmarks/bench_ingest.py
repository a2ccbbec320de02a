"""Ingest: fetch one object from a loopback HTTPS server, hash it, scan it; vs a plain download.

The server runs in its own process (``chainproof.testing.servers`` over TLS), so
both contenders pay the same TLS and loopback costs. The object is a joblib file
holding one float64 array (model weights), generated once with a fixed seed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks._common import GiB, MiB, REPO, Context, add_throughput, clear_dir, fmt_bytes, interleave, ratios, target

NAME = "ingest"


def make_object(cache: Path, size: int) -> tuple[Path, str]:
    """A joblib file of about ``size`` bytes (one float64 array), cached, and its SHA-256."""
    path = cache / f"weights-{size}.joblib"
    if not path.exists():
        import joblib
        import numpy as np

        rng = np.random.default_rng(7)
        arr = rng.standard_normal(size // 8)
        tmp = path.with_suffix(".part")
        joblib.dump({"weights": arr, "meta": {"seed": 7}}, tmp)
        os.replace(tmp, path)
    from chainproof.digests import sha256_file

    return path, sha256_file(path)


@contextmanager
def https_server(work: Path, objects: dict[str, Path]) -> Iterator[tuple[str, Path]]:
    """Start the object server in a child process; yield (base URL, CA file)."""
    from chainproof.testing.servers import make_self_signed_cert

    certdir = work / "tls"
    certdir.mkdir(parents=True, exist_ok=True)
    cert, key = make_self_signed_cert(certdir)
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks._object_server", str(cert), str(key),
         *[f"{n}={p}" for n, p in objects.items()]],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO, env=env,
    )
    try:
        port = int(proc.stdout.readline())  # type: ignore[union-attr]
        yield f"https://127.0.0.1:{port}", cert
    finally:
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait(timeout=30)


def plain_download(url: str, dest: Path, cert: Path) -> None:
    """What a pipeline without controls does: stream the object to a file."""
    import requests

    with requests.Session() as s, s.get(url, stream=True, verify=str(cert), timeout=60) as r:
        r.raise_for_status()
        with open(dest, "wb") as f:
            for chunk in r.iter_content(chunk_size=MiB):
                f.write(chunk)


def chainproof_ingest(url: str, dest_dir: Path, cert: Path, sha: str, *, scan: bool) -> None:
    from chainproof.scan import scan_path, summarize
    from chainproof.storage import FetchOptions, fetch

    got = fetch(url, dest_dir=dest_dir, expected_sha256=sha, options=FetchOptions(ca_file=str(cert)))
    if scan:
        verdict = summarize(scan_path(got.path))["verdict"]
        if verdict != "safe":
            raise RuntimeError(f"benchmark object scanned {verdict}")


def run(ctx: Context) -> dict[str, Any]:
    size = 2 * MiB if ctx.quick else GiB
    obj, sha = make_object(ctx.cache, size)
    nbytes = obj.stat().st_size
    dest = ctx.work / "ingest-dest"
    with https_server(ctx.work, {"weights.joblib": obj}) as (base, cert):
        url = f"{base}/weights.joblib"
        contenders = {
            "chainproof fetch+hash+scan": lambda: chainproof_ingest(url, dest, cert, sha, scan=True),
            "chainproof fetch+hash": lambda: chainproof_ingest(url, dest, cert, sha, scan=False),
            "plain download (requests)": lambda: plain_download(url, dest / "weights.joblib", cert),
        }
        ctx.log(f"  one {fmt_bytes(nbytes)} object")
        res = interleave(contenders, reps=ctx.reps, setup=lambda _n: clear_dir(dest), log=ctx.log, warmup=not ctx.quick)
    clear_dir(dest)
    dest.rmdir()
    add_throughput(res, nbytes)
    ours = res["chainproof fetch+hash+scan"]["median_s"]
    plain = res["plain download (requests)"]["median_s"]
    case = {
        "case": f"one {fmt_bytes(nbytes)} object over loopback HTTPS",
        "base": "chainproof fetch+hash+scan",
        "bytes": nbytes,
        "contenders": res,
        "ratios": ratios(res, "plain download (requests)"),
        "targets": [target("<= 1.10x a plain download", bool(ours <= 1.10 * plain), f"{ours / plain:.2f}x")],
    }
    return {"note": "server in its own process on 127.0.0.1 (TLS); destination on local disk", "cases": [case]}
