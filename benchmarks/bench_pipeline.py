"""The reference zero-trust pipeline vs the same ingest/train/register without controls.

Both run with kfp.local's SubprocessRunner in this interpreter, one process per
step, on the same CSV and the same estimator (a decision tree: the 1M-row
random forest of the default would take minutes per run on 2 cores and only
hide the controls' cost behind training time).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from pathlib import Path
from typing import Any

from benchmarks._common import Context, fmt_bytes, interleave, target

NAME = "pipeline"
ESTIMATOR = "decision_tree"


def make_csv(cache: Path, rows: int) -> Path:
    """A deterministic binary-classification CSV: 10 numeric features and a 0/1 label."""
    path = cache / f"train-{rows}.csv"
    if path.exists():
        return path
    import numpy as np

    rng = np.random.default_rng(42)
    tmp = path.with_suffix(".part")
    w = rng.standard_normal(10)
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(",".join([f"f{i}" for i in range(10)] + ["label"]) + "\n")
        for start in range(0, rows, 100_000):
            n = min(100_000, rows - start)
            x = rng.standard_normal((n, 10))
            y = ((x @ w + 0.5 * rng.standard_normal(n)) > 0).astype(int)
            block = np.column_stack([x, y])
            f.write("\n".join(",".join(f"{v:.6f}" for v in r[:-1]) + f",{int(r[-1])}" for r in block) + "\n")
    os.replace(tmp, path)
    return path


def zero_trust(work: Path, csv: Path, sha: str) -> None:
    from chainproof.runner import run_reference_pipeline

    run_reference_pipeline(workdir=work / "zt", trust_dir=work / "zt-trust", data=csv, sha256=sha, target="label",
                           estimator=ESTIMATOR)


def plain(work: Path, csv: Path) -> None:
    import kfp.local

    from benchmarks._plain_pipeline import plain_training

    root = work / "plain"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    with contextlib.redirect_stdout(io.StringIO()):
        kfp.local.init(runner=kfp.local.SubprocessRunner(use_venv=False), pipeline_root=str(root / "pipeline"),
                       raise_on_error=True)
        plain_training(source_path=str(csv), target="label", estimator=ESTIMATOR,
                       registry_dir=str(root / "registry"), model_name="m")


def run(ctx: Context) -> dict[str, Any]:
    from chainproof.digests import sha256_file

    sizes = [200] if ctx.quick else [10_000, 1_000_000]
    cases = []
    work = ctx.work / "pipeline"
    # Steps import benchmarks._plain_pipeline from the repo root.
    os.environ["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent) + os.pathsep + os.environ.get("PYTHONPATH", "")
    for rows in sizes:
        csv = make_csv(ctx.cache, rows)
        sha = sha256_file(csv)
        ctx.log(f"  {rows} rows ({fmt_bytes(csv.stat().st_size)})")
        reps = ctx.reps if rows < 1_000_000 else max(1, min(ctx.reps, 3))
        res = interleave({
            "zero-trust pipeline (chainproof)": lambda: zero_trust(work, csv, sha),
            "same pipeline without controls": lambda: plain(work, csv),
        }, reps=reps, log=ctx.log, warmup=not ctx.quick, setup=lambda _n: shutil.rmtree(work, ignore_errors=True))
        ours = res["zero-trust pipeline (chainproof)"]["median_s"]
        base = res["same pipeline without controls"]["median_s"]
        cases.append({
            "case": f"{rows} rows ({fmt_bytes(csv.stat().st_size)} CSV), {ESTIMATOR}",
            "rows": rows, "base": "zero-trust pipeline (chainproof)", "contenders": res,
            "targets": [target("<= 1.15x wall time of the pipeline without controls", bool(ours <= 1.15 * base),
                               f"{ours / base:.2f}x ({ours - base:+.1f} s)")],
        })
    shutil.rmtree(work, ignore_errors=True)
    return {"note": "kfp.local SubprocessRunner(use_venv=False) for both; zero-trust = 5 steps (ingest+scan, train, "
                    "sign, verify, register) + the final verify_bundle; without controls = 3 steps (copy, train, copy)",
            "cases": cases}
