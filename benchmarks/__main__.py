"""Entry point: ``python -m benchmarks [--quick] [--out DIR] [--only NAME ...]``."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

from benchmarks import _common
from benchmarks._common import HERE, Context

BENCHMARKS = ["hash", "ingest", "scan", "verify", "pipeline", "memory"]
#: Run only when named with --only (they need data outside the repository).
OPTIONAL = ["publisher"]


def _module(name: str):  # noqa: ANN202
    import importlib

    return importlib.import_module(f"benchmarks.bench_{name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, no alternative venvs, no network")
    parser.add_argument("--out", default=str(HERE), help="where results.json, README table and plots go")
    parser.add_argument("--reps", type=int, help="repetitions per contender (default: 5 full, 1 quick)")
    parser.add_argument("--only", action="append", choices=BENCHMARKS + OPTIONAL, help="run only these (repeatable)")
    parser.add_argument("--work", help="scratch folder for big test files (default: a temp folder)")
    args = parser.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="chainproof-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    cache = (work / "cache") if args.quick else HERE / ".cache"
    cache.mkdir(parents=True, exist_ok=True)
    ctx = Context(
        quick=args.quick,
        reps=args.reps or (1 if args.quick else 5),
        out=out,
        cache=cache,
        work=work,
        venvs=HERE / ".venvs",
        log=lambda msg: print(msg, flush=True),
        only=set(args.only or BENCHMARKS),
    )
    results = {
        "mode": "quick" if args.quick else "full",
        "reps": ctx.reps,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": _common.machine_info(),
        "benchmarks": {},
    }
    previous = out / "results.json"
    if args.only and previous.is_file():
        # Running some benchmarks keeps the others' published results (each says when it was measured).
        try:
            earlier = json.loads(previous.read_text())
        except ValueError:
            earlier = {}
        if earlier.get("mode") == results["mode"]:
            for name, bench in (earlier.get("benchmarks") or {}).items():
                if name not in ctx.only and isinstance(bench, dict):
                    bench.setdefault("measured", earlier.get("started", "?"))
                    results["benchmarks"][name] = bench
    failed = False
    for name in BENCHMARKS + OPTIONAL:
        if name not in ctx.only:
            continue
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        try:
            results["benchmarks"][name] = _module(name).run(ctx)
        except Exception as exc:  # noqa: BLE001 - record and go on; exit code says it failed
            traceback.print_exc()
            results["benchmarks"][name] = {"error": f"{type(exc).__name__}: {exc}"}
            failed = True
        results["benchmarks"][name]["wall_s"] = round(time.perf_counter() - t0, 2)
        results["benchmarks"][name]["measured"] = results["started"]
        (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    order = {name: i for i, name in enumerate(BENCHMARKS + OPTIONAL)}
    results["benchmarks"] = dict(sorted(results["benchmarks"].items(), key=lambda kv: order.get(kv[0], len(order))))
    results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in __import__("os").getloadavg()]
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    from benchmarks import report

    report.write(results, out, quick=args.quick)
    if not args.work:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
