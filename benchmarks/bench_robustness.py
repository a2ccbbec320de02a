"""Time of the robustness evaluation (chainproof.robustness) for the reference model and a 500-tree forest.

``python -m benchmarks.bench_robustness [--reps N] [--quick]``: trains the reference pipeline's model
(the built-in scikit-learn random forest, 100 trees, on the Wisconsin breast-cancer sample, the same
25 % held-out split) and a 500-tree forest on the same split, then times
:func:`chainproof.robustness.evaluate_robustness` on the held-out rows (143) with the default
settings (HopSkipJump on up to 64 rows, 3 iterations; Gaussian noise, missing values; 60 s budget),
repeated. It prints one JSON line per model: median seconds, rows attacked of rows planned, whether
the time limit cut the attack short, and the figures the gate reads. ``--quick`` attacks 8 rows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any


def _models() -> tuple[dict[str, Any], Any, Any]:
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import train_test_split

    x, y = load_breast_cancer(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    models = {
        "reference (random forest, 100 trees)": RandomForestClassifier(n_estimators=100, random_state=0),
        "random forest, 500 trees": RandomForestClassifier(n_estimators=500, random_state=0),
    }
    for model in models.values():
        model.fit(x_train, y_train)
    return models, x_test, y_test


def main(argv: list[str] | None = None) -> int:
    from chainproof.robustness import AttackSettings, evaluate_robustness

    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_robustness", description=__doc__)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="attack 8 rows, one repetition")
    args = parser.parse_args(argv)
    reps = 1 if args.quick else args.reps
    settings = AttackSettings(max_attack_rows=8) if args.quick else AttackSettings()
    models, x_test, y_test = _models()
    for name, model in models.items():
        times, report = [], None
        for _ in range(reps):
            t0 = time.perf_counter()
            report = evaluate_robustness(model, x_test, y_test, sample_size=200, seed=0, settings=settings)
            times.append(time.perf_counter() - t0)
        assert report is not None
        hsj = report["evasion"]["hopskipjump"]
        print(json.dumps({
            "model": name,
            "rows": report["sample"]["rows"],
            "median_s": round(statistics.median(times), 2),
            "times_s": [round(t, 2) for t in times],
            "rows_attacked": hsj["rows_attacked"],
            "rows_planned": hsj["rows_planned"],
            "truncated": report["truncated"],
            "metrics": report["metrics"],
        }, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
