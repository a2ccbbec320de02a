"""Drift monitoring against the reference profile that training attests.

Example:
    >>> import numpy as np
    >>> from chainproof.drift import build_profile, psi_report
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(500, 1))
    >>> profile = build_profile(x, features=[{"name": "a", "type": "numeric"}], scores=rng.random(200))
    >>> round(psi_report(profile, x)["a"], 6)
    0.0

The training step writes ``reports/profile.json`` (a product of its link, so it travels in the
evidence bundle under the train step's signature): for each feature, quantile bins with the
training fraction in each (numeric) or category frequencies (categorical), the missing-value
fraction, and the distribution of the model's score on the held-out rows (quantiles). It holds
no raw rows: only bin edges, fractions and score quantiles.

At serving time the population stability index (PSI) of each feature and a two-sample
Kolmogorov-Smirnov statistic of the scores are computed over a sliding window of recent
requests; a value above its threshold is an alert. ``chainproof monitor`` does the same
offline over a CSV of logged inputs.
"""

from __future__ import annotations

import json
import math
import os
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chainproof.errors import DigestMismatch, InputError

__all__ = [
    "PROFILE_PRODUCT",
    "PROFILE_SCHEMA",
    "DriftMonitor",
    "DriftStatus",
    "DriftThresholds",
    "bin_labels",
    "bin_table",
    "build_profile",
    "evaluate",
    "render_html",
    "ks_statistic",
    "ks_against_profile",
    "load_profile",
    "psi",
    "psi_report",
    "model_scores",
    "record_profile",
]

#: The profile's logical name in the chain (a product of the training step).
PROFILE_PRODUCT = "reports/profile.json"
PROFILE_SCHEMA = "https://chainproof.dev/profile/v1"

#: Fractions are floored at this value in PSI, so an empty bin does not make it infinite.
_EPS = 1e-4
_MISSING = "__missing__"
_OTHER = "__other__"


@dataclass(frozen=True)
class DriftThresholds:
    """When a statistic is an alert.

    Attributes:
        psi: a feature's PSI above this is drift (0.1 is a small shift, 0.25 a large one).
        ks: the scores' KS statistic above this is drift.
        min_samples: no statistic is judged before the window holds this many rows.
    """

    psi: float = 0.2
    ks: float = 0.2
    min_samples: int = 100


def _np() -> Any:
    import numpy as np

    return np


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return False


def _numeric_bins(values: Any, edges: Sequence[float]) -> Any:
    """Bin index of each finite value: bin i holds edges[i-1] < v <= edges[i] (len(edges)+1 bins)."""
    np = _np()
    return np.searchsorted(np.asarray(edges, dtype=float), values, side="left")


def _numeric_column(column: Sequence[Any]) -> tuple[Any, int]:
    """The finite values of a column and how many cells are missing (empty, NaN, not a number)."""
    np = _np()
    try:
        arr = np.asarray(column, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        cells = []
        for v in column:
            try:
                cells.append(float(v) if not _is_missing(v) else math.nan)
            except (TypeError, ValueError):
                cells.append(math.nan)
        arr = np.asarray(cells, dtype=float)
    finite = np.isfinite(arr)
    return arr[finite], int(len(arr) - int(finite.sum()))


def _numeric_fractions(column: Sequence[Any], edges: Sequence[float]) -> list[float]:
    """Fractions per bin, then the missing fraction last."""
    np = _np()
    values, missing = _numeric_column(column)
    total = len(values) + missing
    if total == 0:
        return [0.0] * (len(edges) + 2)
    counts = np.bincount(_numeric_bins(values, edges), minlength=len(edges) + 1) if len(values) else np.zeros(len(edges) + 1)
    return [float(c) / total for c in counts] + [missing / total]


def _categorical_fractions(column: Sequence[Any], categories: Sequence[str]) -> list[float]:
    """Fractions per known category, then unseen categories, then missing."""
    index = {c: i for i, c in enumerate(categories)}
    counts = [0] * (len(categories) + 2)
    for v in column:
        if _is_missing(v):
            counts[-1] += 1
        else:
            counts[index.get(str(v), len(categories))] += 1
    total = sum(counts)
    return [c / total if total else 0.0 for c in counts]


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index of two binned distributions over the same bins.

    Args:
        expected: the reference fractions (sum 1).
        actual: the observed fractions (sum 1).

    Returns:
        ``sum((a - e) * ln(a / e))`` with both floored at 1e-4; 0 for identical distributions.

    Raises:
        InputError: the two have a different number of bins.
    """
    if len(expected) != len(actual):
        raise InputError(f"psi: expected {len(expected)} bins, got {len(actual)}")
    total = 0.0
    for e, a in zip(expected, actual):
        e, a = max(float(e), _EPS), max(float(a), _EPS)
        total += (a - e) * math.log(a / e)
    return total


def ks_statistic(a: Sequence[float], b: Sequence[float]) -> float:
    """The two-sample Kolmogorov-Smirnov statistic: the largest gap between the two empirical CDFs.

    Args:
        a: one sample.
        b: another sample.

    Returns:
        ``sup |F_a(x) - F_b(x)|`` (as ``scipy.stats.ks_2samp(a, b).statistic``).

    Raises:
        InputError: a sample is empty.
    """
    np = _np()
    x, y = np.sort(np.asarray(a, dtype=float)), np.sort(np.asarray(b, dtype=float))
    if not len(x) or not len(y):
        raise InputError("ks: both samples need at least one value")
    grid = np.concatenate([x, y])
    fa = np.searchsorted(x, grid, side="right") / len(x)
    fb = np.searchsorted(y, grid, side="right") / len(y)
    return float(np.max(np.abs(fa - fb)))


def ks_against_profile(scores: Sequence[float], score_profile: Mapping[str, Any]) -> float:
    """KS statistic of a sample of scores against the profile's score quantiles.

    The profile keeps the reference sample's quantiles at levels 0, 1/Q, ..., 1 (no raw rows);
    its CDF is the step function of those quantile points, each weighing 1/(Q+1).

    Args:
        scores: the observed scores.
        score_profile: the profile's ``score`` section.

    Returns:
        The KS statistic.
    """
    quantiles = score_profile.get("quantiles") or []
    return ks_statistic(scores, [float(q) for q in quantiles])


def model_scores(model: Any, x: Any) -> Any:
    """The model's score for each row: P(positive class) for two classes, the top class
    probability for more, the prediction for a regressor.

    Args:
        model: a fitted scikit-learn estimator or Pipeline.
        x: its input.

    Returns:
        A 1-D float array.
    """
    np = _np()
    if hasattr(model, "predict_proba"):
        proba = np.asarray(model.predict_proba(x), dtype=float)
        return proba[:, 1] if proba.shape[1] == 2 else proba.max(axis=1)
    return np.asarray(model.predict(x), dtype=float).reshape(-1)


def _columns(x: Any, n: int) -> list[Any]:
    if hasattr(x, "shape") and len(getattr(x, "shape", ())) == 2:
        return [x[:, j] for j in range(n)]
    rows = list(x)
    return [[row[j] for row in rows] for j in range(n)]


def build_profile(
    x: Any,
    *,
    features: Sequence[Mapping[str, Any]],
    scores: Sequence[float],
    bins: int = 10,
    score_quantiles: int = 100,
    score_kind: str = "score",
) -> dict[str, Any]:
    """Build the reference profile of a training table (no raw rows).

    Args:
        x: the training rows (2-D array or rows of cells), columns in feature order.
        features: the feature contract (``name``, ``type``, and ``categories`` for categorical ones).
        scores: the model's scores on held-out rows (:func:`model_scores`).
        bins: quantile bins per numeric feature (fewer when values repeat).
        score_quantiles: how many quantile steps of the score distribution to keep.
        score_kind: what the score is, for readers.

    Returns:
        The profile document (``reports/profile.json``).
    """
    np = _np()
    out: list[dict[str, Any]] = []
    columns = _columns(x, len(features))
    for feature, column in zip(features, columns):
        name, kind = str(feature["name"]), str(feature["type"])
        if kind == "numeric":
            values, _ = _numeric_column(column)
            if len(values):
                levels = np.linspace(0, 1, bins + 1)[1:-1]
                edges = sorted({float(v) for v in np.quantile(values, levels, method="inverted_cdf")})
            else:
                edges = []
            out.append({"name": name, "type": "numeric", "edges": edges,
                        "fractions": _numeric_fractions(column, edges)})
        else:
            categories = [str(c) for c in feature.get("categories") or sorted({str(v) for v in column if not _is_missing(v)})]
            out.append({"name": name, "type": "categorical", "categories": categories,
                        "fractions": _categorical_fractions(column, categories)})
    s = np.asarray(list(scores), dtype=float)
    quantiles = [float(q) for q in np.quantile(s, np.linspace(0, 1, score_quantiles + 1))] if len(s) else []
    return {
        "schema": PROFILE_SCHEMA,
        "rows": int(len(columns[0]) if columns else 0),
        "features": out,
        "score": {"kind": score_kind, "rows": int(len(s)), "quantiles": quantiles},
        "bins": "numeric: fractions per quantile bin (edges[i-1] < v <= edges[i]) then missing; "
                "categorical: per category, then unseen, then missing",
    }


def _infer_features(x: Any, names: Sequence[str]) -> list[dict[str, Any]]:
    """The feature contract of a table: numeric where every present value is a number."""
    np = _np()
    width = x.shape[1] if hasattr(x, "shape") and len(x.shape) == 2 else len(next(iter(x), ()))
    if width != len(names):
        raise InputError(f"record_profile: {len(names)} feature names for {width} columns")
    features: list[dict[str, Any]] = []
    for name, column in zip(names, _columns(x, len(names))):
        numeric = all(
            _is_missing(v) or (isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_)))
            for v in column
        )
        features.append({"name": str(name), "type": "numeric" if numeric else "categorical"})
    return features


def record_profile(
    model: Any,
    x_train: Any,
    x_held_out: Any,
    *,
    features: Sequence[str] | Sequence[Mapping[str, Any]] | None = None,
    model_dir: str | os.PathLike[str] | None = None,
    target: str = "",
) -> dict[str, Any]:
    """Write the drift reference profile of your own training step into its chain.

    Call it inside a ``chainproof.dsl`` component declared with ``role="train"`` (its layout
    rule allows ``reports/profile.json``): the profile becomes evidence of the step, attested
    by its link, and ``chainproof serve`` and ``chainproof monitor`` use it like the built-in
    trainer's.

    Args:
        model: the fitted estimator (its scores on ``x_held_out`` are profiled).
        x_train: the training rows, columns in the model's input order (a DataFrame or rows).
        x_held_out: rows the model did not train on.
        features: the feature names in column order (default: the DataFrame's columns), or
            the full contract (``{"name", "type", "categories"}`` each). A column is numeric
            when every present value is a number.
        model_dir: the model output folder: ``features.json`` (the feature contract that
            ``chainproof serve`` reads instances by, and ``monitor`` reads inputs by) is
            written there, beside ``model.joblib``, and is attested with the model's files.
        target: the label column's name, recorded in ``features.json``.

    Returns:
        The profile written.

    Raises:
        InputError: not inside a chainproof step, or the names do not fit the columns.
    """
    from chainproof.step import current_step

    ctx = current_step()
    rows = x_train.to_numpy(dtype=object) if hasattr(x_train, "iloc") else x_train  # a DataFrame
    if features is None:
        if not hasattr(x_train, "columns"):
            raise InputError("record_profile: give features=[names in column order] for a table without column names")
        features = [str(c) for c in x_train.columns]
    if features and all(isinstance(f, Mapping) for f in features):
        contract = [dict(f) for f in features if isinstance(f, Mapping)]
    else:
        contract = _infer_features(rows, [str(f) for f in features])
    profile = build_profile(rows, features=contract, scores=list(model_scores(model, x_held_out)))
    ctx.add_evidence(PROFILE_PRODUCT, profile)
    if model_dir is not None:
        described = [
            {"name": f["name"], "type": f["type"], **({"categories": f["categories"]} if f["type"] == "categorical" else {})}
            for f in profile["features"]
        ]
        classes = [str(c) for c in getattr(model, "classes_", [])]
        document = {"task": "classification" if hasattr(model, "predict_proba") else "regression",
                    "target": target, "features": described, "classes": classes}
        path = Path(model_dir) / "features.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return profile


def _fractions_for(feature: Mapping[str, Any], column: Sequence[Any]) -> list[float]:
    if feature["type"] == "numeric":
        return _numeric_fractions(column, feature["edges"])
    return _categorical_fractions(column, feature["categories"])


def psi_report(profile: Mapping[str, Any], x: Any) -> dict[str, float]:
    """PSI of each feature of a sample against the profile.

    Args:
        profile: the reference profile.
        x: the sample's rows, columns in feature order.

    Returns:
        Feature name to PSI.
    """
    features = profile["features"]
    columns = _columns(x, len(features))
    return {str(f["name"]): psi(f["fractions"], _fractions_for(f, col)) for f, col in zip(features, columns)}


def load_profile(data: bytes, *, expected_sha256: str, what: str = PROFILE_PRODUCT) -> dict[str, Any]:
    """Parse a profile after checking its bytes against the digest its link attests.

    Args:
        data: the profile's bytes.
        expected_sha256: the digest the training step's (verified) link records for it.
        what: its name, for errors.

    Returns:
        The profile.

    Raises:
        DigestMismatch: the bytes are not the attested ones.
        InputError: it is not a chainproof profile.
    """
    import hashlib

    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256:
        raise DigestMismatch(what, expected_sha256, actual, context="attested by the training step")
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise InputError(f"{what}: not JSON") from exc
    if not isinstance(doc, dict) or doc.get("schema") != PROFILE_SCHEMA:
        raise InputError(f"{what}: expected schema {PROFILE_SCHEMA}, found {doc.get('schema') if isinstance(doc, dict) else type(doc).__name__}")
    return doc


@dataclass(frozen=True)
class DriftStatus:
    """The statistics of one window.

    Attributes:
        samples: rows in the window.
        psi: feature name to PSI.
        ks: the scores' KS statistic (``None`` before any score).
        alerts: one line per statistic above its threshold.
        drifting: the features whose PSI is above its threshold.
        score_drift: whether the scores' KS is above its threshold.
    """

    samples: int
    psi: dict[str, float]
    ks: float | None
    alerts: list[str] = field(default_factory=list)
    drifting: list[str] = field(default_factory=list)
    score_drift: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {"samples": self.samples, "psi": self.psi, "ks": self.ks, "alerts": self.alerts,
                "drifting_features": self.drifting, "score_drift": self.score_drift}


def _judge(profile: Mapping[str, Any], psis: Mapping[str, float], ks: float | None, samples: int,
           thresholds: DriftThresholds) -> DriftStatus:
    alerts: list[str] = []
    drifting: list[str] = []
    score_drift = False
    if samples >= thresholds.min_samples:
        for name, value in psis.items():
            if value > thresholds.psi:
                drifting.append(name)
                alerts.append(f"feature {name} PSI {value:.3f} > {thresholds.psi} over {samples} rows")
        if ks is not None and ks > thresholds.ks:
            score_drift = True
            alerts.append(f"score KS {ks:.3f} > {thresholds.ks} over {samples} rows")
    return DriftStatus(samples=samples, psi=dict(psis), ks=ks, alerts=alerts, drifting=drifting, score_drift=score_drift)


def evaluate(profile: Mapping[str, Any], x: Any, scores: Sequence[float] | None,
             thresholds: DriftThresholds = DriftThresholds()) -> DriftStatus:
    """Judge one whole sample (``chainproof monitor``).

    Args:
        profile: the reference profile.
        x: the rows, in feature order.
        scores: the model's scores on them (or ``None``).
        thresholds: when a statistic is an alert.

    Returns:
        The status.
    """
    rows = len(x)
    psis = psi_report(profile, x) if rows else {str(f["name"]): 0.0 for f in profile["features"]}
    ks = ks_against_profile(scores, profile["score"]) if scores is not None and len(scores) and profile["score"].get("quantiles") else None
    return _judge(profile, psis, ks, rows, thresholds)


class DriftMonitor:
    """PSI per feature and KS on scores over a sliding window of recent rows.

    Args:
        profile: the verified reference profile.
        window: how many recent rows the statistics cover.
        thresholds: when a statistic is an alert.
    """

    def __init__(self, profile: Mapping[str, Any], *, window: int = 1000, every: int = 50,
                 thresholds: DriftThresholds = DriftThresholds()) -> None:
        self.profile = profile
        self.window = window
        self.every = max(1, every)
        self.thresholds = thresholds
        self._rows: deque[list[Any]] = deque(maxlen=window)
        self._scores: deque[float] = deque(maxlen=window)
        self._since = 0

    def observe(self, rows: Sequence[Sequence[Any]], scores: Sequence[float]) -> DriftStatus | None:
        """Add rows (cells in feature order) and their scores to the window.

        Returns:
            The window's status when ``every`` rows have arrived since the last one, else ``None``
            (the statistics are recomputed every ``every`` rows, not on every request).
        """
        self._rows.extend(list(r) for r in rows)
        self._scores.extend(float(s) for s in scores)
        self._since += len(rows)
        if self._since < self.every:
            return None
        self._since = 0
        return self.status()

    def status(self) -> DriftStatus:
        """The statistics of the current window."""
        rows = list(self._rows)
        return evaluate(self.profile, rows, list(self._scores) if self._scores else None, self.thresholds)


def bin_labels(feature: Mapping[str, Any]) -> list[str]:
    """The labels of a profiled feature's bins, in the order of its fractions."""
    if feature["type"] == "numeric":
        edges = [float(e) for e in feature["edges"]]
        if not edges:
            return ["all", "missing"]
        labels = [f"<= {edges[0]:.4g}"]
        labels += [f"({lo:.4g}, {hi:.4g}]" for lo, hi in zip(edges, edges[1:])]
        return labels + [f"> {edges[-1]:.4g}", "missing"]
    return [str(c) for c in feature["categories"]] + ["(unseen)", "(missing)"]


def bin_table(profile: Mapping[str, Any], x: Any) -> dict[str, dict[str, list[Any]]]:
    """Reference and observed fractions per bin of every feature (for reports and plots).

    Args:
        profile: the reference profile.
        x: the sample's rows, in feature order.

    Returns:
        Feature name to ``{"bins": labels, "expected": fractions, "observed": fractions}``.
    """
    features = profile["features"]
    columns = _columns(x, len(features))
    return {str(f["name"]): {"bins": bin_labels(f), "expected": list(f["fractions"]),
                             "observed": _fractions_for(f, col)} for f, col in zip(features, columns)}


def _svg_bars(name: str, table: Mapping[str, list[Any]]) -> str:
    """An inline SVG: reference (grey) and observed (red) fraction of each bin."""
    from html import escape

    bins, expected, observed = table["bins"], table["expected"], table["observed"]
    width, height, pad = max(320, 46 * len(bins)), 180, 30
    top = max([*expected, *observed, 1e-9])
    slot = (width - 2 * pad) / max(1, len(bins))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 60}" role="img" '
             f'aria-label="bins of {escape(name)}">']
    for i, (label, e, o) in enumerate(zip(bins, expected, observed)):
        x0 = pad + i * slot
        for j, (value, colour) in enumerate(((e, "#999"), (o, "#c0392b"))):
            h = (height - pad) * float(value) / top
            parts.append(f'<rect x="{x0 + 4 + j * slot / 2.5:.1f}" y="{height - h:.1f}" width="{slot / 2.6:.1f}" '
                         f'height="{h:.1f}" fill="{colour}"><title>{escape(label)}: {value:.3f}</title></rect>')
        parts.append(f'<text x="{x0 + slot / 2:.1f}" y="{height + 14}" font-size="9" text-anchor="end" '
                     f'transform="rotate(-35 {x0 + slot / 2:.1f} {height + 14})">{escape(label)}</text>')
    parts.append(f'<text x="{pad}" y="14" font-size="11">grey: training profile · red: observed</text></svg>')
    return "".join(parts)


def render_html(status: DriftStatus, tables: Mapping[str, Mapping[str, list[Any]]], *, subject: str) -> str:
    """A self-contained page: the verdict, every statistic, and a plot per drifting feature.

    Args:
        status: the statistics.
        tables: :func:`bin_table` of the same sample.
        subject: what was monitored (the reference).

    Returns:
        The HTML page (inline SVG, no scripts, no external resources).
    """
    from html import escape

    verdict = "drift" if status.alerts else "no drift"
    rows = "".join(f"<tr><td>{escape(n)}</td><td>{v:.4f}</td><td>{'ALERT' if n in status.drifting else ''}</td></tr>"
                   for n, v in status.psi.items())
    plots = "".join(f"<h3>{escape(n)}</h3>{_svg_bars(n, tables[n])}" for n in status.drifting if n in tables)
    ks = "n/a" if status.ks is None else f"{status.ks:.4f}"
    alerts = "".join(f"<li>{escape(a)}</li>" for a in status.alerts) or "<li>none</li>"
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>chainproof monitor</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 10px;text-align:left}</style></head><body>"
        f"<h1>Drift: {escape(verdict)}</h1><p>{escape(subject)}: {status.samples} rows against the attested "
        f"training profile; score KS {ks}</p><h2>Alerts</h2><ul>{alerts}</ul>"
        f"<h2>PSI per feature</h2><table><tr><th>feature</th><th>PSI</th><th></th></tr>{rows}</table>"
        f"<h2>Drifting features</h2>{plots or '<p>none</p>'}</body></html>\n"
    )
