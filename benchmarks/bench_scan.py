"""Scanning model files without loading them: chainproof scan vs picklescan, modelscan, fickling.

Every contender runs as a command (a fresh process, as users run them), on the same
files, interleaved. What each tool concluded is recorded next to its time: a tool
that stops at the first byte it cannot parse is fast and blind, and says so here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks import _models
from benchmarks._common import Context, Skip, add_throughput, fmt_bytes, interleave, target
from benchmarks._venvs import tool_bin, tool_version

NAME = "scan"

_FICKLING_LOOP = r"""
import sys, pathlib
from fickling.fickle import Pickled
from fickling.analysis import check_safety
root = pathlib.Path(sys.argv[1])
files = [root] if root.is_file() else sorted(p for p in root.rglob('*') if p.is_file())
bad = err = 0
for p in files:
    try:
        with open(p, 'rb') as f:
            res = check_safety(Pickled.load(f))
        bad += 0 if res.severity.name in ('LIKELY_SAFE',) else 1
    except Exception as exc:
        err += 1
print(f'fickling: {len(files)} files, {bad} not likely safe, {err} could not be parsed')
"""


#: Library calls timed inside the tool's own interpreter, after its imports (scan work only).
_INPROC = {
    "picklescan": "from picklescan.scanner import scan_file_path as f, scan_directory_path as d\n"
                  "def scan(p): return (f if p.is_file() else d)(str(p))",
    "modelscan": "from modelscan.modelscan import ModelScan\n"
                 "def scan(p): return ModelScan().scan(str(p))",
    "fickling": "from fickling.fickle import Pickled\nfrom fickling.analysis import check_safety\n"
                "def scan(p):\n"
                "    for q in ([p] if p.is_file() else sorted(x for x in p.rglob('*') if x.is_file())):\n"
                "        try:\n"
                "            with open(q, 'rb') as fh: check_safety(Pickled.load(fh))\n"
                "        except Exception: pass",
    "chainproof": "from chainproof.scan import scan_path, summarize\n"
                  "def scan(p): return summarize(scan_path(p))",
}
_TIMER = "\nimport sys, time, pathlib\np = pathlib.Path(sys.argv[1])\nt = time.perf_counter(); scan(p)\nprint('ELAPSED', time.perf_counter() - t)\n"


def _inproc(ctx: Context, tool: str, path: Path) -> Any:
    python = sys.executable if tool == "chainproof" else str(tool_bin(ctx, tool) / "python")
    code = _INPROC[tool] + _TIMER

    def run() -> float:
        out = subprocess.run([python, "-c", code, str(path)], capture_output=True, text=True, timeout=1800)
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith("ELAPSED ")]
        if not lines:
            raise RuntimeError(f"{tool} in process failed: {out.stderr[-1500:]}")
        return float(lines[-1].split()[1])

    return run


def _command(ctx: Context, tool: str, path: Path) -> list[str]:
    if tool == "chainproof":
        return [sys.executable, "-m", "chainproof.cli", "scan", str(path)]
    bindir = tool_bin(ctx, tool)
    if tool == "picklescan":
        return [str(bindir / "picklescan"), "-p", str(path)]
    if tool == "modelscan":
        return [str(bindir / "modelscan"), "-p", str(path)]
    if tool == "fickling":
        return [str(bindir / "python"), "-c", _FICKLING_LOOP, str(path)]
    raise ValueError(tool)


def _runner(cmd: list[str] | None, outcome: dict[str, str], skip: str = "") -> Any:
    def run() -> None:
        if cmd is None:
            raise Skip(skip)
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        tail = [ln for ln in (out.stdout + out.stderr).strip().splitlines() if ln.strip()]
        outcome["outcome"] = f"exit {out.returncode}: {tail[-1][:160] if tail else ''}"

    return run


def _case(ctx: Context, title: str, path: Path, nbytes: int) -> dict[str, Any]:
    outcomes: dict[str, dict[str, str]] = {}
    contenders: dict[str, Any] = {}
    versions: dict[str, str | None] = {}
    for tool in ("chainproof", "picklescan", "modelscan", "fickling"):
        outcomes[tool] = {}
        try:
            cmd = _command(ctx, tool, path)
            if tool != "chainproof":
                versions[tool] = tool_version(Path(cmd[0]).parent, tool)
            contenders[f"{tool} (command)"] = _runner(cmd, outcomes[tool])
        except Skip as exc:
            contenders[f"{tool} (command)"] = _runner(None, outcomes[tool], str(exc))
    for tool in ("chainproof", "picklescan", "modelscan", "fickling"):
        try:
            contenders[f"{tool} (library call)"] = _inproc(ctx, tool, path)
        except Skip as exc:
            contenders[f"{tool} (library call)"] = _runner(None, {}, str(exc))
    ctx.log(f"  {title}")
    res = interleave(contenders, reps=ctx.reps, log=ctx.log, warmup=not ctx.quick)
    for tool, oc in outcomes.items():
        key = f"{tool} (command)"
        if "median_s" in res[key]:
            res[key].update(oc)
            if tool in versions:
                res[key]["version"] = versions[tool]
    add_throughput(res, nbytes)
    targets = []
    for how in ("command", "library call"):
        ours = res[f"chainproof ({how})"].get("median_s")
        others = {k: v["median_s"] for k, v in res.items()
                  if "median_s" in v and not k.startswith("chainproof") and k.endswith(f"({how})")}
        if others and ours:
            fastest = min(others, key=others.get)
            targets.append(target(
                f">= 5x faster than the fastest alternative ({how})", bool(others[fastest] >= 5 * ours),
                f"fastest: {fastest} {others[fastest]:.3f} s; chainproof {ours:.3f} s "
                f"({others[fastest] / ours:.2f}x)",
            ))
        else:
            targets.append(target(f">= 5x faster than the fastest alternative ({how})", None, "no alternative ran"))
    return {"case": title, "base": "chainproof (command)", "bytes": nbytes, "contenders": res, "targets": targets}


def run(ctx: Context) -> dict[str, Any]:
    big = _models.big_forest(ctx.cache, quick=ctx.quick)
    folder = _models.small_models(ctx.cache, quick=ctx.quick)
    folder_bytes = sum(p.stat().st_size for p in folder.iterdir())
    n = len(list(folder.iterdir()))
    cases = [
        _case(ctx, f"joblib random forest ({fmt_bytes(big.stat().st_size)})", big, big.stat().st_size),
        _case(ctx, f"{n} small model files ({fmt_bytes(folder_bytes)})", folder, folder_bytes),
    ]
    inproc = cases[0]["contenders"]["chainproof (library call)"]
    mbps = inproc.get("MB_per_s", 0)
    cases[0]["targets"].append(target(">= 200 MB/s on the large file (in process)", bool(mbps >= 200), f"{mbps} MB/s"))
    return {
        "note": "(command): the tool's CLI in a fresh process, start-up included; (library call): the scan call "
        "timed inside the tool's interpreter after its imports. 'outcome': exit code and last output line",
        "cases": cases,
    }
