"""Train a scikit-learn classifier on a verified CSV and write it with joblib.

Example:
    >>> from chainproof.train import ESTIMATORS
    >>> sorted(ESTIMATORS)[:2]
    ['gradient_boosting', 'logistic_regression']

Estimators are chosen from a fixed table by name, never imported by a string
the caller controls. Hyperparameters are a JSON object validated by the
estimator's own ``set_params``.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chainproof.errors import InputError

__all__ = ["ESTIMATORS", "TrainResult", "train_classifier"]


def _random_forest() -> Any:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=100, random_state=0)


def _logistic_regression() -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))


def _gradient_boosting() -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(random_state=0)


def _decision_tree() -> Any:
    from sklearn.tree import DecisionTreeClassifier

    return DecisionTreeClassifier(random_state=0)


#: Estimator name to a factory for its default configuration.
ESTIMATORS: dict[str, Callable[[], Any]] = {
    "random_forest": _random_forest,
    "logistic_regression": _logistic_regression,
    "gradient_boosting": _gradient_boosting,
    "decision_tree": _decision_tree,
}


@dataclass(frozen=True)
class TrainResult:
    """What training produced.

    Attributes:
        model_path: the joblib file.
        metrics: held-out metrics (accuracy, roc_auc, rows).
        features: the feature column names, in order.
    """

    model_path: Path
    metrics: dict[str, Any]
    features: list[str]


def _load_csv(path: Path, target: str, *, max_rows: int) -> tuple[list[str], list[list[float]], list[str]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if not header:
                raise InputError(f"{path.name}: empty CSV")
            if target not in header:
                raise InputError(f"{path.name}: target column {target!r} not found (columns: {', '.join(header[:12])})")
            t = header.index(target)
            features = [h for i, h in enumerate(header) if i != t]
            rows: list[list[float]] = []
            labels: list[str] = []
            for lineno, row in enumerate(reader, start=2):
                if not row:
                    continue
                if len(row) != len(header):
                    raise InputError(f"{path.name}: line {lineno} has {len(row)} fields, expected {len(header)}")
                try:
                    values = [float(v) for i, v in enumerate(row) if i != t]
                except ValueError as exc:
                    raise InputError(f"{path.name}: line {lineno}: non-numeric feature value ({exc})") from exc
                if not all(math.isfinite(v) for v in values):
                    raise InputError(f"{path.name}: line {lineno}: non-finite feature value")
                rows.append(values)
                labels.append(row[t])
                if len(rows) > max_rows:
                    raise InputError(f"{path.name}: more than {max_rows} rows")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path.name}: not UTF-8 text") from exc
    return features, rows, labels


def train_classifier(
    csv_path: Path,
    *,
    target: str,
    model_dir: Path,
    estimator: str = "random_forest",
    hyperparameters: str | dict[str, Any] = "{}",
    test_size: float = 0.25,
    random_state: int = 0,
    max_rows: int = 10_000_000,
) -> TrainResult:
    """Fit a classifier on a CSV of numeric features and write ``model.joblib``.

    Args:
        csv_path: the verified training data.
        target: the label column.
        model_dir: the folder ``model.joblib`` is written to.
        estimator: a name from :data:`ESTIMATORS`.
        hyperparameters: a JSON object (or dict) passed to ``set_params``.
        test_size: fraction held out for the metrics.
        random_state: seed for the split.
        max_rows: refuse larger files.

    Returns:
        The model path, the held-out metrics and the feature names.

    Raises:
        InputError: unknown estimator, bad hyperparameters, or unusable data.
    """
    import joblib
    import numpy as np
    from sklearn.metrics import accuracy_score, roc_auc_score
    from sklearn.model_selection import train_test_split

    if estimator not in ESTIMATORS:
        raise InputError(f"estimator {estimator!r}: unknown (choose from {', '.join(sorted(ESTIMATORS))})")
    params = json.loads(hyperparameters) if isinstance(hyperparameters, str) else dict(hyperparameters)
    if not isinstance(params, dict):
        raise InputError(f"hyperparameters: expected a JSON object, got {type(params).__name__}")
    model = ESTIMATORS[estimator]()
    try:
        model.set_params(**params)
    except (ValueError, TypeError) as exc:
        raise InputError(f"hyperparameters for {estimator}: {exc}") from exc

    features, rows, labels = _load_csv(csv_path, target, max_rows=max_rows)
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise InputError(f"{csv_path.name}: target column {target!r} has fewer than two classes")
    if len(rows) < 10:
        raise InputError(f"{csv_path.name}: {len(rows)} rows are too few to train and evaluate")
    x = np.asarray(rows, dtype=np.float64)
    y = np.asarray(labels)
    stratify = y if min(labels.count(c) for c in classes) >= 2 else None
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_size, random_state=random_state, stratify=stratify
    )
    try:
        model.fit(x_train, y_train)
    except ValueError as exc:
        raise InputError(f"{estimator}: cannot fit this data ({exc})") from exc
    predicted = model.predict(x_test)
    metrics: dict[str, Any] = {
        "estimator": estimator,
        "rows": len(rows),
        "train_rows": len(x_train),
        "test_rows": len(x_test),
        "accuracy": round(float(accuracy_score(y_test, predicted)), 6),
    }
    if len(classes) == 2 and hasattr(model, "predict_proba"):
        proba = model.predict_proba(x_test)[:, 1]
        metrics["roc_auc"] = round(float(roc_auc_score(y_test == model.classes_[1], proba)), 6)
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / "model.joblib"
    joblib.dump(model, path)
    return TrainResult(model_path=path, metrics=metrics, features=features)
