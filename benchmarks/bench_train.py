"""The built-in trainer (``chainproof.train.train_table``) vs the same fit without its table handling.

Two cases, each in this process, interleaved, on the same CSV and estimator (a decision tree):

- numeric: the 10-feature CSV of ``bench_pipeline``. ``train_table`` (chunked column
  parsing, type inference, the imputer + estimator Pipeline, the atomic dump) against
  the per-row ``float()`` parse and bare-estimator fit the trainer did before
  (``benchmarks/_plain_pipeline.py`` does the same).
- churn: a table with an ID, two categorical string columns and empty cells.
  ``train_table`` against what a data scientist writes by hand: ``pandas.read_csv`` and
  a ColumnTransformer (median / most-frequent imputation, one-hot) Pipeline.

Run alone: ``python -m benchmarks.bench_train [--rows N ...] [--reps R]``.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

from benchmarks._common import Context, fmt_bytes, interleave, target
from benchmarks.bench_pipeline import make_csv

NAME = "train"
ESTIMATOR = "decision_tree"


def make_churn_csv(cache: Path, rows: int) -> Path:
    """A deterministic churn-like CSV: customer_id, plan, region, tenure, monthly_charges, churned."""
    path = cache / f"churn-{rows}.csv"
    if path.exists():
        return path
    rng = random.Random(7)
    tmp = path.with_suffix(".part")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("customer_id,plan,region,tenure,monthly_charges,churned\n")
        for i in range(rows):
            plan, region = rng.choice(["basic", "pro", "enterprise", ""]), rng.choice(["n", "s", "e", "w", ""])
            tenure = "" if rng.random() < 0.05 else str(rng.randint(0, 72))
            charges = "" if rng.random() < 0.05 else f"{rng.uniform(20, 120):.2f}"
            churned = "yes" if (plan == "basic") ^ (rng.random() < 0.2) else "no"
            f.write(f"C{i:07d},{plan},{region},{tenure},{charges},{churned}\n")
    os.replace(tmp, path)
    return path


def ours(csv: Path, out: Path, target_column: str, drop: list[str]) -> None:
    from chainproof.train import train_table

    train_table(csv, target=target_column, drop=drop, model_dir=out, estimator=ESTIMATOR)


def before(csv: Path, out: Path, target_column: str) -> None:
    """The trainer's earlier path: floats row by row, a bare estimator, joblib.dump."""
    import csv as csvmod

    import joblib
    import numpy as np
    from sklearn.model_selection import train_test_split
    from sklearn.tree import DecisionTreeClassifier

    with open(csv, newline="", encoding="utf-8") as f:
        reader = csvmod.reader(f)
        header = next(reader)
        t = header.index(target_column)
        rows, labels = [], []
        for row in reader:
            rows.append([float(v) for i, v in enumerate(row) if i != t])
            labels.append(row[t])
    x, y = np.asarray(rows, dtype=np.float64), np.asarray(labels)
    x_train, _x_test, y_train, _y_test = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    est = DecisionTreeClassifier(random_state=0).fit(x_train, y_train)
    out.mkdir(parents=True, exist_ok=True)
    joblib.dump(est, out / "model.joblib")


def by_hand(csv: Path, out: Path) -> None:
    """What a data scientist writes: pandas and a ColumnTransformer Pipeline."""
    import joblib
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder
    from sklearn.tree import DecisionTreeClassifier

    df = pd.read_csv(csv, keep_default_na=False, na_values=[""])
    y = df.pop("churned").astype(str)
    x = df.drop(columns=["customer_id"])
    pre = ColumnTransformer([
        ("numeric", SimpleImputer(strategy="median"), ["tenure", "monthly_charges"]),
        ("categorical", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                      OneHotEncoder(handle_unknown="ignore")), ["plan", "region"]),
    ])
    model = Pipeline([("preprocess", pre), ("model", DecisionTreeClassifier(random_state=0))])
    x_train, _x_test, y_train, _y_test = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    model.fit(x_train, y_train)
    out.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, out / "model.joblib")


def run(ctx: Context, sizes: list[int] | None = None) -> dict[str, Any]:
    sizes = sizes or ([2_000] if ctx.quick else [100_000, 1_000_000])
    work = ctx.work / "train"
    cases = []
    for rows in sizes:
        numeric = make_csv(ctx.cache, rows)
        churn = make_churn_csv(ctx.cache, rows)
        reps = ctx.reps if rows < 1_000_000 else max(1, min(ctx.reps, 3))
        for label, csv, contenders, base, other in (
            ("numeric", numeric, {
                "train_table (chainproof)": lambda c=numeric: ours(c, work / "a", "label", []),
                "row-by-row floats + bare estimator (before)": lambda c=numeric: before(c, work / "b", "label"),
            }, "train_table (chainproof)", "row-by-row floats + bare estimator (before)"),
            ("churn", churn, {
                "train_table (chainproof)": lambda c=churn: ours(c, work / "a", "churned", ["customer_id"]),
                "pandas + ColumnTransformer (by hand)": lambda c=churn: by_hand(c, work / "b"),
            }, "train_table (chainproof)", "pandas + ColumnTransformer (by hand)"),
        ):
            ctx.log(f"  {label}: {rows} rows ({fmt_bytes(csv.stat().st_size)})")
            res = interleave(contenders, reps=reps, log=ctx.log, warmup=not ctx.quick,
                             setup=lambda _n: shutil.rmtree(work, ignore_errors=True))
            a, b = res[base]["median_s"], res[other]["median_s"]
            cases.append({
                "case": f"{label}, {rows} rows ({fmt_bytes(csv.stat().st_size)} CSV), {ESTIMATOR}",
                "rows": rows, "base": base, "contenders": res,
                "targets": [target(f"<= 1.10x wall time of {other}", bool(a <= 1.10 * b), f"{a / b:.2f}x")],
            })
    shutil.rmtree(work, ignore_errors=True)
    return {"note": "in-process, interleaved; a decision tree so that parsing and preprocessing, not the fit, "
                    "dominate", "cases": cases}


if __name__ == "__main__":
    import argparse
    import json
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_train")
    parser.add_argument("--rows", type=int, action="append", help="table sizes (default: 100000 and 1000000)")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="chainproof-bench-train-"))
    try:
        ctx = Context(quick=False, reps=args.reps, out=tmp, cache=tmp, work=tmp, venvs=tmp)
        print(json.dumps(run(ctx, args.rows), indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
