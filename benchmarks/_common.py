"""Shared machinery: interleaved timing, medians, machine facts, child max RSS."""

from __future__ import annotations

import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MiB = 1 << 20
GiB = 1 << 30


@dataclass
class Context:
    """What every benchmark gets: the mode, the repetitions and the folders."""

    quick: bool
    reps: int
    out: Path
    cache: Path
    work: Path
    venvs: Path
    log: Callable[[str], None] = print
    only: set[str] = field(default_factory=set)


class Skip(Exception):
    """A contender that cannot run here (not installed, quick mode, ...)."""


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def interleave(
    contenders: dict[str, Callable[[], Any]],
    *,
    reps: int,
    setup: Callable[[str], None] | None = None,
    teardown: Callable[[str], None] | None = None,
    warmup: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, dict[str, Any]]:
    """Run each contender ``reps`` times, round-robin (A B C A B C ...), and time each call.

    Interleaving spreads the machine's noise (other jobs, thermal, page cache) over
    every contender alike. A contender that raises :class:`Skip` is recorded as skipped.
    """
    results: dict[str, dict[str, Any]] = {name: {"times_s": []} for name in contenders}
    live = dict(contenders)
    if warmup:
        for name, fn in list(live.items()):
            try:
                if setup:
                    setup(name)
                fn()
                if teardown:
                    teardown(name)
            except Skip as exc:
                results[name] = {"skipped": str(exc)}
                del live[name]
    for rep in range(reps):
        order = list(live.items())
        if rep % 2:
            order.reverse()  # ABC CBA: no contender always runs right after the same one
        for name, fn in order:
            if setup:
                setup(name)
            gc.collect()
            t0 = time.perf_counter()
            try:
                inner = fn()
            except Skip as exc:
                results[name] = {"skipped": str(exc)}
                del live[name]
                continue
            dt = time.perf_counter() - t0
            if isinstance(inner, float):
                dt = inner  # the contender timed its own work (in a child process)
            if teardown:
                teardown(name)
            results[name]["times_s"].append(round(dt, 6))
            log(f"    {name}: {dt:.3f} s")
    for name, r in results.items():
        if "times_s" in r:
            r["median_s"] = round(median(r["times_s"]), 6)
    return results


def add_throughput(results: dict[str, dict[str, Any]], nbytes: int) -> None:
    for r in results.values():
        if "median_s" in r and r["median_s"] > 0:
            r["MB_per_s"] = round(nbytes / 1e6 / r["median_s"], 1)


def ratios(results: dict[str, dict[str, Any]], base: str) -> dict[str, float]:
    """Median time of each other contender divided by the base's (>1: base is faster)."""
    b = results.get(base, {}).get("median_s")
    out: dict[str, float] = {}
    if not b:
        return out
    for name, r in results.items():
        if name != base and "median_s" in r:
            out[f"{name} / {base}"] = round(r["median_s"] / b, 3)
    return out


def target(description: str, met: bool | None, measured: str) -> dict[str, Any]:
    """A target, whether it was met (``None``: not measurable here), and the figure."""
    return {"target": description, "met": met, "measured": measured}


def run_child_maxrss(argv: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> tuple[float, int]:
    """Run a child process; return (wall seconds, its max RSS in bytes).

    ``RUSAGE_CHILDREN`` holds the largest child so far, so each case runs through a
    fresh intermediate process that reports its own child's figure.
    """
    probe = (
        "import resource,subprocess,sys,json,time;"
        "t=time.perf_counter();"
        "rc=subprocess.call(sys.argv[1:]);"
        "dt=time.perf_counter()-t;"
        "print(json.dumps({'rc':rc,'s':dt,'maxrss_kib':resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))"
    )
    out = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, env=env, cwd=cwd)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode or not lines:
        raise RuntimeError(f"{argv}: failed\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    doc = json.loads(lines[-1])
    if doc["rc"]:
        raise RuntimeError(f"{argv}: exit {doc['rc']}\n{out.stderr[-2000:]}")
    return doc["s"], int(doc["maxrss_kib"]) * 1024


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = round(int(line.split()[1]) / (1 << 20), 1)
    except OSError:
        pass
    flags = ""
    try:
        flags = next(ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags"))
    except (OSError, StopIteration):
        pass
    packages = {
        d: _version(d)
        for d in (
            "chainproof", "in-toto", "securesystemslib", "model-signing", "kfp", "scikit-learn", "numpy",
            "joblib", "requests", "matplotlib", "picklescan", "fickling", "modelscan",
        )
    }
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "sha_ni": " sha_ni" in flags,
        "ram_gib": ram,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {k: v for k, v in packages.items() if v},
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def clear_dir(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)


def fmt_bytes(n: int) -> str:
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if n >= size:
            v = n / size
            return f"{v:.0f} {unit}" if v == int(v) else f"{v:.1f} {unit}"
    return f"{n} B"


def self_maxrss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
