"""Peak memory (max RSS of a child process) of ingest and verify at several input sizes.

Each case runs in a fresh child; ``RUSAGE_CHILDREN`` of an intermediate process
gives that child's peak. Streaming code keeps the peak flat as the input grows.
"""

from __future__ import annotations

import shutil
import sys
from typing import Any

from benchmarks import bench_ingest, bench_verify
from benchmarks._common import GiB, MiB, REPO, Context, fmt_bytes, run_child_maxrss, target

NAME = "memory"

_INGEST = ("import sys, pathlib; from benchmarks.bench_ingest import chainproof_ingest as f; "
           "f(sys.argv[1], pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3]), sys.argv[4], scan=True)")
_PLAIN = ("import sys, pathlib; from benchmarks.bench_ingest import plain_download as f; "
          "f(sys.argv[1], pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3]))")
_VERIFY = ("import sys, pathlib; from benchmarks.bench_verify import chainproof_verify as f; r = pathlib.Path(sys.argv[1]); "
           "f({'layout': r / 'root.layout', 'links': r / 'links', 'owner_pub': r / 'keys' / 'owner.pub'})")
_INTOTO = ("import sys, pathlib; from benchmarks.bench_verify import intoto_verify_lib as f; r = pathlib.Path(sys.argv[1]); "
           "f({'layout': r / 'root.layout', 'links': r / 'links', 'owner_pub': r / 'keys' / 'owner.pub'})")
_IMPORTS = "import chainproof.storage, chainproof.scan, chainproof.verify, requests"


def _point(input_bytes: int, wall: float, rss: int, **extra: Any) -> dict[str, Any]:
    return {"input_bytes": input_bytes, "seconds": round(wall, 3), "maxrss_bytes": rss, **extra}


def run(ctx: Context) -> dict[str, Any]:
    py = sys.executable
    series: dict[str, list[dict[str, Any]]] = {}
    _, floor = run_child_maxrss([py, "-c", _IMPORTS], cwd=REPO)
    ingest_sizes = [MiB, 4 * MiB] if ctx.quick else [64 * MiB, 256 * MiB, GiB]
    objects = {f"w{s}.joblib": bench_ingest.make_object(ctx.cache, s) for s in ingest_sizes}
    dest = ctx.work / "memory-dest"
    with bench_ingest.https_server(ctx.work, {k: v[0] for k, v in objects.items()}) as (base, cert):
        for name, (path, sha) in objects.items():
            for label, code, args in (
                ("ingest: chainproof fetch+hash+scan", _INGEST, [str(dest), str(cert), sha]),
                ("ingest: plain download (requests)", _PLAIN, [str(dest / "x.bin"), str(cert)]),
            ):
                shutil.rmtree(dest, ignore_errors=True)
                dest.mkdir(parents=True)
                wall, rss = run_child_maxrss([py, "-c", code, f"{base}/{name}", *args], cwd=REPO)
                ctx.log(f"  {label} {fmt_bytes(path.stat().st_size)}: {rss / 1e6:.0f} MB")
                series.setdefault(label, []).append(_point(path.stat().st_size, wall, rss))
    shutil.rmtree(dest, ignore_errors=True)
    verify_sizes = [10, 100] if ctx.quick else [1_000, 10_000, 100_000]
    for n in verify_sizes:
        root = ctx.work / f"memory-verify-{n}"
        bench_verify.build_bundle(root, n)
        size = sum(p.stat().st_size for p in (root / "links").iterdir())
        for label, code in (("verify: chainproof (chain)", _VERIFY), ("verify: in-toto verifylib", _INTOTO)):
            wall, rss = run_child_maxrss([py, "-c", code, str(root)], cwd=REPO)
            ctx.log(f"  {label} {n} artifacts: {rss / 1e6:.0f} MB")
            series.setdefault(label, []).append(_point(size, wall, rss, artifacts=n))
        shutil.rmtree(root, ignore_errors=True)
    targets = []
    for label, pts in series.items():
        first, last = pts[0], pts[-1]
        d_in = last["input_bytes"] - first["input_bytes"]
        d_rss = last["maxrss_bytes"] - first["maxrss_bytes"]
        frac = d_rss / d_in if d_in else 0.0
        targets.append(target(
            f"peak memory flat in input size ({label})",
            bool(d_rss < max(0.05 * d_in, 16e6)) if "chainproof" in label else None,
            f"input {fmt_bytes(first['input_bytes'])} -> {fmt_bytes(last['input_bytes'])}: peak RSS "
            f"{first['maxrss_bytes'] / 1e6:.0f} -> {last['maxrss_bytes'] / 1e6:.0f} MB "
            f"({frac * 100:.1f}% of the input growth)",
        ))
    return {"note": f"max RSS of a fresh child per case; importing chainproof.storage/scan/verify + requests alone: "
                    f"{floor / 1e6:.0f} MB", "import_floor_bytes": floor, "series": series, "targets": targets}
