"""Adversarial robustness of a fitted classifier: evasion attacks, perturbations, and a gate.

Example:
    >>> from sklearn.datasets import load_breast_cancer
    >>> from sklearn.linear_model import LogisticRegression
    >>> from chainproof.robustness import check_robustness, evaluate_robustness
    >>> x, y = load_breast_cancer(return_X_y=True)
    >>> model = LogisticRegression(max_iter=5000).fit(x[::2], y[::2])
    >>> report = evaluate_robustness(model, x[1::2], y[1::2], sample_size=20)  # doctest: +SKIP
    >>> check_robustness(report, {"flip_rate_noise": "<= 0.1"})  # doctest: +SKIP

What is measured, on a seeded sample of held-out rows:

- **Evasion** with IBM's Adversarial Robustness Toolbox (ART). HopSkipJump, a
  decision-based black-box attack, works on any classifier (it only calls
  ``predict``); ART's ``DecisionTreeAttack`` runs where it applies (a bare
  scikit-learn decision tree over numeric features). Attacks act on the numeric
  features only, in units of the sample's standard deviation per feature, so the
  budget ``eps`` means the same thing for every column. A row counts as *evaded*
  when the attack changes its prediction with an L2 perturbation of at most ``eps``;
  ``accuracy_under_attack`` is the share of rows still correctly classified after
  that. HopSkipJump's perturbations are upper bounds on the smallest one that
  exists, so this accuracy is an optimistic estimate: a gate on it is a floor.
- **Perturbations** in Robustness Gym's spirit: Gaussian noise on numeric
  features, missing values, and category flips, each reported as the accuracy
  drop and the share of predictions that flip.

Reproducibility: HopSkipJump draws its own unseeded starting points unless it is
given ``x_adv_init``; here every attacked row starts from the nearest sample row
the model classifies differently, and the attack's own random directions come
from NumPy's global generator, seeded per row and restored afterwards. The same
seed therefore gives the same report, as long as the time limit did not cut the
attack short: the clock is checked between rows, and a truncated attack says so
(``truncated``, ``rows_attacked`` of ``rows_planned``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chainproof.errors import InputError, PolicyViolation

__all__ = [
    "REPORT_NAME",
    "ROBUSTNESS_SCHEMA",
    "AttackSettings",
    "FeatureSpec",
    "RobustnessBelowThreshold",
    "Threshold",
    "check_robustness",
    "evaluate_model_dir",
    "evaluate_robustness",
    "load_report",
    "write_report",
]

#: The logical name of the report in the chain.
REPORT_NAME = "reports/robustness.json"

#: Identifies the report format (and the predicate of a statement carrying it).
ROBUSTNESS_SCHEMA = "https://chainproof.dev/robustness/v1"

_DIGITS = 6


class RobustnessBelowThreshold(PolicyViolation):
    """A robustness metric is on the wrong side of its threshold (or missing).

    Attributes:
        metric: the metric's name in the report's ``metrics``.
        threshold: the threshold as written (``">= 0.6"``).
        value: the measured value (``None`` when the report lacks the metric).
    """

    def __init__(self, metric: str, threshold: str, value: float | None, *, artifact: str = REPORT_NAME) -> None:
        found = "absent from the report" if value is None else f"{value:g}"
        super().__init__(f"{artifact}: {metric} must be {threshold}, found {found}")
        self.metric, self.threshold, self.value, self.artifact = metric, threshold, value, artifact


@dataclass(frozen=True)
class FeatureSpec:
    """Which input columns are numeric and which are categorical.

    Columns are names for a pandas DataFrame, positions for a NumPy array.

    Attributes:
        numeric: the columns attacks and noise act on.
        categorical: the columns category flips act on (never attacked).
    """

    numeric: tuple[Any, ...]
    categorical: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        overlap = set(self.numeric) & set(self.categorical)
        if overlap:
            raise InputError(f"feature_spec: columns both numeric and categorical: {sorted(map(str, overlap))}")
        if not self.numeric:
            raise InputError("feature_spec: at least one numeric column is needed (attacks act on numeric features)")


@dataclass(frozen=True)
class AttackSettings:
    """How hard the attacks and perturbations push.

    Attributes:
        eps: the evasion budget: L2 norm of the perturbation, in standard deviations
            of each numeric feature over the sample.
        max_iter: HopSkipJump iterations per row.
        max_eval: HopSkipJump's most model calls per gradient estimate.
        init_eval: HopSkipJump's first gradient estimate's model calls.
        max_attack_rows: the most correctly classified rows HopSkipJump attacks (the
            first ones of the seeded sample); its cost is per row, the perturbations' is not.
        noise_scale: Gaussian noise, in standard deviations of each numeric feature.
        missing_rate: share of numeric cells made missing.
        flip_rate: share of categorical cells changed to another observed category.
    """

    eps: float = 1.0
    max_iter: int = 3
    max_eval: int = 100
    init_eval: int = 10
    max_attack_rows: int = 64
    noise_scale: float = 0.1
    missing_rate: float = 0.1
    flip_rate: float = 0.1

    def __post_init__(self) -> None:
        for name in ("eps", "noise_scale"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise InputError(f"{name}: expected a finite number >= 0, got {value!r}")
        for name in ("missing_rate", "flip_rate"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 <= value <= 1):
                raise InputError(f"{name}: expected a share in [0, 1], got {value!r}")
        for name in ("max_iter", "max_eval", "init_eval", "max_attack_rows"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise InputError(f"{name}: expected an integer >= 1, got {value!r}")


@dataclass(frozen=True)
class Threshold:
    """One gate condition: ``metric >= value`` or ``metric <= value``.

    Attributes:
        metric: a name in the report's ``metrics``.
        op: ``>=`` or ``<=``.
        value: the bound.
    """

    metric: str
    op: str
    value: float

    @classmethod
    def parse(cls, metric: str, text: str | float) -> Threshold:
        """Parse ``">= 0.6"`` (or ``"<=0.1"``) for a metric.

        Args:
            metric: the metric name.
            text: the condition; a bare number is refused (the direction must be stated).

        Returns:
            The threshold.

        Raises:
            InputError: the condition is not ``>= N`` or ``<= N``.
        """
        spec = str(text).strip()
        op = spec[:2]
        try:
            value = float(spec[2:])
        except ValueError:
            value = math.nan
        if op not in (">=", "<=") or not math.isfinite(value):
            raise InputError(f"threshold for {metric}: expected '>= N' or '<= N', got {text!r}")
        return cls(metric=metric, op=op, value=value)

    def __str__(self) -> str:
        return f"{self.op} {self.value:g}"

    def holds(self, measured: float) -> bool:
        """Return whether ``measured`` satisfies the condition (NaN never does)."""
        if not math.isfinite(measured):
            return False
        return measured >= self.value if self.op == ">=" else measured <= self.value


# ---------------------------------------------------------------------------
# The sample: numeric block (attacked), categorical block (flipped), assembly.


class _Table:
    """A sample split into its numeric and categorical blocks, and back into model input."""

    def __init__(self, x: Any, spec: FeatureSpec | None) -> None:
        import numpy as np

        self.frame = _is_frame(x)
        if self.frame:
            columns = list(x.columns)
            if spec is None:
                numeric = tuple(c for c in columns if _is_numeric_dtype(x[c]))
                spec = FeatureSpec(numeric=numeric, categorical=tuple(c for c in columns if c not in numeric))
            missing = [c for c in (*spec.numeric, *spec.categorical) if c not in columns]
            if missing:
                raise InputError(f"feature_spec: columns not in the data: {missing[:5]}")
            self.base = x.reset_index(drop=True)
            try:
                self.num = self.base[list(spec.numeric)].to_numpy(dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise InputError(f"feature_spec: a numeric column is not numeric ({exc})") from exc
            self.cat = self.base[list(spec.categorical)].to_numpy(dtype=object) if spec.categorical else None
        else:
            arr = np.asarray(x)
            if arr.ndim != 2:
                raise InputError(f"x: expected a 2-D table, got shape {arr.shape}")
            if spec is None:
                spec = FeatureSpec(numeric=tuple(range(arr.shape[1])))
            bad = [c for c in (*spec.numeric, *spec.categorical) if not (isinstance(c, int) and 0 <= c < arr.shape[1])]
            if bad:
                raise InputError(f"feature_spec: column positions out of range for {arr.shape[1]} columns: {bad[:5]}")
            self.base = arr
            try:
                self.num = arr[:, list(spec.numeric)].astype(np.float64)
            except (TypeError, ValueError) as exc:
                raise InputError(f"feature_spec: a numeric column is not numeric ({exc})") from exc
            self.cat = arr[:, list(spec.categorical)] if spec.categorical else None
        if not np.all(np.isfinite(self.num)):
            raise InputError("x: numeric features must be finite (missing values are a perturbation, not an input)")
        self.spec = spec

    def __len__(self) -> int:
        return int(self.num.shape[0])

    def assemble(self, num: Any, cat: Any = None, rows: Any = None) -> Any:
        """Model input with the numeric (and categorical) blocks replaced, for ``rows``."""
        import numpy as np

        idx = np.arange(len(self)) if rows is None else np.asarray(rows)
        if self.frame:
            out = self.base.iloc[idx].reset_index(drop=True).copy()
            for j, name in enumerate(self.spec.numeric):
                out[name] = num[:, j]
            if cat is not None:
                for j, name in enumerate(self.spec.categorical):
                    out[name] = cat[:, j]
            return out
        if cat is None and not self.spec.categorical:
            out = self.base[idx].astype(np.float64, copy=True)
        else:
            out = self.base[idx].astype(object, copy=True)
        out[:, list(self.spec.numeric)] = num
        if cat is not None:
            out[:, list(self.spec.categorical)] = cat
        return out


def _is_frame(x: Any) -> bool:
    return type(x).__name__ == "DataFrame" and hasattr(x, "columns") and hasattr(x, "iloc")


def _is_numeric_dtype(column: Any) -> bool:
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    return bool(is_numeric_dtype(column) and not is_bool_dtype(column))


@contextlib.contextmanager
def _seeded_global_numpy(seed: int) -> Iterator[None]:
    # HopSkipJump draws its random directions from NumPy's global generator: seed it
    # for the attack, and give the caller's state back afterwards.
    import numpy as np

    state = np.random.get_state()
    np.random.seed(seed % (2**32))
    try:
        yield
    finally:
        np.random.set_state(state)


def _quiet_art() -> Any:
    # ART warns on import that PyTorch is absent; that is expected here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import art.attacks.evasion as evasion
        import art.estimators.classification as classification
    import logging

    logging.getLogger("art").setLevel(logging.ERROR)
    return evasion, classification


def _r(value: float) -> float:
    return round(float(value), _DIGITS)


def _median(values: Sequence[float]) -> float | None:
    import numpy as np

    return _r(float(np.median(values))) if len(values) else None


# ---------------------------------------------------------------------------
# Evasion


def _hopskipjump(
    model: Any,
    table: _Table,
    y: Any,
    clean: Any,
    *,
    classes: Any,
    settings: AttackSettings,
    seed: int,
    deadline: float,
    clock: Callable[[], float],
) -> dict[str, Any]:
    import numpy as np

    evasion, classification = _quiet_art()
    mu = table.num.mean(axis=0)
    sd = table.num.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    z = (table.num - mu) / sd
    lo, hi = float(z.min()) - 1.0, float(z.max()) + 1.0
    class_index = {c: i for i, c in enumerate(classes)}
    n, k = z.shape

    rows_planned = [i for i in range(n) if clean[i] == y[i]][: settings.max_attack_rows]
    norms: list[float] = []
    evaded = no_start = attacked = 0
    truncated = False
    for i in rows_planned:
        # Between rows (the attack's batches), the clock decides whether to go on.
        if clock() >= deadline:
            truncated = True
            break
        attacked += 1
        cat_row = table.cat[i : i + 1] if table.cat is not None else None

        def predict(batch: Any, _cat: Any = cat_row, _i: int = i) -> Any:
            num = np.asarray(batch, dtype=np.float64) * sd + mu
            cats = np.repeat(_cat, len(num), axis=0) if _cat is not None else None
            rows = np.full(len(num), _i)
            labels = model.predict(table.assemble(num, cats, rows=rows))
            onehot = np.zeros((len(num), len(classes)), dtype=np.float32)
            onehot[np.arange(len(num)), [class_index[v] for v in labels]] = 1.0
            return onehot

        # The starting point: the nearest sample row the model labels differently
        # when it carries this row's categories (no unseeded random draws).
        order = np.argsort(((z - z[i]) ** 2).sum(axis=1), kind="stable")
        candidates = [j for j in order if clean[j] != clean[i]][:10]
        start = None
        if candidates:
            labels = predict(z[candidates]).argmax(axis=1)
            for j, label in zip(candidates, labels):
                if classes[label] != clean[i]:
                    start = z[j : j + 1].astype(np.float32)
                    break
        if start is None:
            no_start += 1
            continue
        estimator = classification.BlackBoxClassifier(
            predict, input_shape=(k,), nb_classes=len(classes), clip_values=(lo, hi)
        )
        attack = evasion.HopSkipJump(
            estimator,
            norm=2,
            max_iter=settings.max_iter,
            max_eval=settings.max_eval,
            init_eval=settings.init_eval,
            verbose=False,
        )
        with _seeded_global_numpy(seed * 1_000_003 + i):
            adv = attack.generate(z[i : i + 1].astype(np.float32), x_adv_init=start.copy())
        if classes[predict(adv).argmax(axis=1)[0]] == clean[i]:
            continue  # the attack lost the adversarial side; the row stands
        size = float(np.linalg.norm(adv[0].astype(np.float64) - z[i]))
        norms.append(size)
        if size <= settings.eps:
            evaded += 1
    total = len(table)
    # Accuracy under attack, estimated on the attacked rows: the clean accuracy times
    # the share of attacked (correctly classified) rows the attack did not evade.
    clean_accuracy = sum(1 for i in range(n) if clean[i] == y[i]) / n
    accuracy = clean_accuracy * (attacked - evaded) / attacked if attacked else 0.0
    return {
        "attack": "HopSkipJump (ART, decision-based black box)",
        "norm": "l2",
        "units": "standard deviations of each numeric feature over the sample",
        "eps": settings.eps,
        "max_iter": settings.max_iter,
        "max_eval": settings.max_eval,
        "init_eval": settings.init_eval,
        "max_attack_rows": settings.max_attack_rows,
        "rows": total,
        "rows_planned": len(rows_planned),
        "rows_attacked": attacked,
        "rows_without_start": no_start,
        "rows_evaded": evaded,
        "truncated": truncated,
        "accuracy_under_attack": _r(accuracy),
        "median_perturbation": _median(norms),
    }


def _tree_attack(model: Any, table: _Table, y: Any, clean: Any, *, settings: AttackSettings) -> dict[str, Any]:
    import numpy as np
    from sklearn.tree import DecisionTreeClassifier

    name = "DecisionTreeAttack (ART)"
    tree = model
    if table.spec.categorical:
        return {"attack": name, "applicable": False, "reason": "the model has categorical inputs"}
    full = np.asarray(table.assemble(table.num), dtype=np.float64)
    steps = getattr(model, "steps", None)
    if isinstance(steps, list) and steps and isinstance(steps[-1][1], DecisionTreeClassifier):
        # A Pipeline ending in a tree (the built-in trainer's): the attack applies when its
        # preprocessing leaves this sample unchanged (imputation of finite data), so the
        # tree's thresholds are thresholds on the model's own inputs.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                seen = np.asarray(model[:-1].transform(table.assemble(table.num)), dtype=np.float64)
            except (TypeError, ValueError):
                seen = None
        if seen is not None and seen.shape == full.shape and np.array_equal(seen, full):
            tree = steps[-1][1]
    if not isinstance(tree, DecisionTreeClassifier):
        return {
            "attack": name,
            "applicable": False,
            "reason": f"{_model_name(model)} is not a scikit-learn decision tree (or a Pipeline whose "
            "preprocessing leaves the sample unchanged, ending in one); ART's tree attack needs one, "
            "its tree-ensemble verifier needs inputs scaled to [0, 1]",
        }
    evasion, classification = _quiet_art()
    if table.frame:
        columns = list(table.base.columns)
        positions = [columns.index(c) for c in table.spec.numeric]
    else:
        positions = list(table.spec.numeric)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a tree fit on a DataFrame warns about feature names
        estimator = classification.SklearnClassifier(model=tree)
        adv_full = evasion.DecisionTreeAttack(estimator, verbose=False).generate(full.astype(np.float32))
    adv = adv_full.astype(np.float64)[:, positions]
    adv_labels = np.asarray(model.predict(table.assemble(adv)))
    sd = table.num.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    sizes = np.linalg.norm((adv - table.num) / sd, axis=1)
    correct = clean == y
    flipped = adv_labels != clean
    evaded = correct & flipped & (sizes <= settings.eps)
    return {
        "attack": name,
        "applicable": True,
        "norm": "l2",
        "units": "standard deviations of each numeric feature over the sample",
        "eps": settings.eps,
        "rows": len(table),
        "rows_evaded": int(evaded.sum()),
        "accuracy_under_attack": _r((correct & ~evaded).mean()),
        "median_perturbation": _median([float(s) for s in sizes[correct & flipped]]),
    }


# ---------------------------------------------------------------------------
# Perturbations


def _outcome(y: Any, clean: Any, perturbed: Any, clean_accuracy: float) -> dict[str, Any]:
    import numpy as np

    if clean_accuracy != clean_accuracy:  # NaN: a regression model (see _regression_outcome)
        return _regression_outcome(y, clean, np.asarray(perturbed, dtype=np.float64))
    accuracy = float((perturbed == y).mean())
    return {
        "accuracy": _r(accuracy),
        "accuracy_drop": _r(clean_accuracy - accuracy),
        "flip_rate": _r((perturbed != clean).mean()),
    }


def _rmse(y: Any, predicted: Any) -> float:
    import numpy as np

    return float(np.sqrt(np.mean((np.asarray(predicted, dtype=np.float64) - np.asarray(y, dtype=np.float64)) ** 2)))


def _regression_outcome(y: Any, clean: Any, perturbed: Any) -> dict[str, Any]:
    """A regressor's outcome: its error and how far its predictions moved (in target SDs)."""
    import numpy as np

    clean_rmse, rmse = _rmse(y, clean), _rmse(y, perturbed)
    scale = float(np.std(np.asarray(y, dtype=np.float64))) or 1.0
    return {
        "rmse": _r(rmse),
        "rmse_increase": _r(rmse - clean_rmse),
        "relative_change": _r(float(np.mean(np.abs(perturbed - np.asarray(clean, dtype=np.float64)))) / scale),
    }


def _perturbations(
    model: Any, table: _Table, y: Any, clean: Any, *, settings: AttackSettings, seeds: Any, regression: bool = False
) -> dict[str, Any]:
    import numpy as np

    # NaN marks a regressor for _outcome: its outcomes are errors and prediction shifts.
    clean_accuracy = float("nan") if regression else float((clean == y).mean())
    sd = table.num.std(axis=0)
    out: dict[str, Any] = {}

    rng = np.random.default_rng(seeds[0])
    noisy = table.num + rng.normal(size=table.num.shape) * sd * settings.noise_scale
    out["gaussian_noise"] = {
        "scale": settings.noise_scale,
        "units": "standard deviations of each numeric feature over the sample",
        **_outcome(y, clean, model.predict(table.assemble(noisy, table.cat)), clean_accuracy),
    }

    rng = np.random.default_rng(seeds[1])
    holes = rng.random(table.num.shape) < settings.missing_rate
    with_nan = np.where(holes, np.nan, table.num)
    handling = "passed to the model as NaN"
    try:
        predicted = model.predict(table.assemble(with_nan, table.cat))
    except ValueError:
        # The model refuses NaN: a serving system would impute; the sample median is the plain choice.
        handling = "imputed with the sample median (the model refuses NaN)"
        predicted = model.predict(table.assemble(np.where(holes, np.median(table.num, axis=0), table.num), table.cat))
    out["missing_values"] = {
        "rate": settings.missing_rate,
        "cells": int(holes.sum()),
        "handling": handling,
        **_outcome(y, clean, predicted, clean_accuracy),
    }

    if table.cat is None:
        out["category_flips"] = {"applicable": False, "reason": "no categorical features"}
    else:
        rng = np.random.default_rng(seeds[2])
        flipped = table.cat.copy()
        changed = 0
        for j in range(flipped.shape[1]):
            levels = sorted({str(v): v for v in table.cat[:, j]}.items())
            values = [v for _, v in levels]
            if len(values) < 2:
                continue
            for i in np.nonzero(rng.random(len(table)) < settings.flip_rate)[0]:
                others = [v for v in values if str(v) != str(flipped[i, j])]
                flipped[i, j] = others[int(rng.integers(len(others)))]
                changed += 1
        out["category_flips"] = {
            "applicable": True,
            "rate": settings.flip_rate,
            "cells": changed,
            **_outcome(y, clean, model.predict(table.assemble(table.num, flipped)), clean_accuracy),
        }
    return out


# ---------------------------------------------------------------------------
# The report


def evaluate_robustness(
    model: Any,
    x: Any,
    y: Any,
    *,
    feature_spec: FeatureSpec | None = None,
    sample_size: int = 200,
    seed: int = 0,
    settings: AttackSettings = AttackSettings(),
    eps: float | None = None,
    time_limit_s: float = 60.0,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Attack and perturb a fitted classifier on a seeded sample of held-out rows.

    Args:
        model: a fitted scikit-learn classifier (or Pipeline) with ``predict``.
        x: held-out features: a NumPy array or a pandas DataFrame.
        y: their true labels.
        feature_spec: numeric and categorical columns (default: all columns numeric
            for an array; by dtype for a DataFrame).
        sample_size: rows drawn (without replacement, seeded) from ``x``.
        seed: the seed of the sample, the attacks and the perturbations.
        settings: the evasion budget and the perturbations' strength.
        eps: the evasion budget, overriding ``settings.eps`` (L2, in standard deviations).
        time_limit_s: wall-clock budget of the evaluation; the attack checks it between rows,
            keeping back the time the perturbations after it will take.
        clock: the clock the budget is read from (a seam for tests of truncation).

    Returns:
        The report (JSON-ready): ``metrics`` holds the flat figures a gate reads;
        ``evasion`` and ``perturbations`` hold the details. The report holds no
        timings, so equal inputs and seed give an identical report unless
        ``truncated`` is true.

    Raises:
        InputError: the data, the specification or the settings are unusable.
    """
    import numpy as np

    started = clock()
    if eps is not None:
        settings = dataclasses.replace(settings, eps=eps)
    if not hasattr(model, "predict"):
        raise InputError(f"model: {type(model).__name__} has no predict method")
    if not isinstance(sample_size, int) or sample_size < 2:
        raise InputError(f"sample_size: expected an integer >= 2, got {sample_size!r}")
    if not (isinstance(time_limit_s, (int, float)) and time_limit_s > 0):
        raise InputError(f"time_limit_s: expected a positive number, got {time_limit_s!r}")
    labels = np.asarray(y)
    n = len(x)
    if labels.shape != (n,):
        raise InputError(f"y: expected {n} labels, got shape {labels.shape}")
    if n < 2:
        raise InputError(f"x: {n} rows are too few to evaluate")
    seeds = np.random.SeedSequence(seed).generate_state(4)
    rows = np.arange(n)
    if n > sample_size:
        rows = np.sort(np.random.default_rng(seeds[3]).choice(n, size=sample_size, replace=False))
    sample = x.iloc[rows] if _is_frame(x) else np.asarray(x)[rows]
    table = _Table(sample, feature_spec)
    y_s = labels[rows]
    before = clock()
    try:
        clean = np.asarray(model.predict(table.assemble(table.num, table.cat)))
    except Exception as exc:  # the model's own refusal of this data
        raise InputError(f"model: cannot predict on x ({type(exc).__name__}: {str(exc)[:200]})") from exc
    # The budget covers the whole evaluation: keep back what the perturbations and the
    # tree attack will cost after the attack (about five predictions of the sample).
    reserve = 5 * (clock() - before)
    if _is_regressor(model):
        return _regression_report(model, table, y_s, clean, n=n, seed=seed, settings=settings,
                                  seeds=seeds, time_limit_s=time_limit_s)
    classes = np.asarray(getattr(model, "classes_", np.unique(np.concatenate([y_s, clean]))))
    if len(classes) < 2:
        raise InputError("model: fewer than two classes")
    clean_accuracy = float((clean == y_s).mean())

    hsj = _hopskipjump(
        model, table, y_s, clean, classes=classes, settings=settings, seed=seed,
        deadline=started + time_limit_s - reserve, clock=clock,
    )
    tree = _tree_attack(model, table, y_s, clean, settings=settings)
    perturbations = _perturbations(model, table, y_s, clean, settings=settings, seeds=seeds)

    metrics: dict[str, float] = {
        "accuracy_clean": _r(clean_accuracy),
        "accuracy_under_attack": hsj["accuracy_under_attack"],
    }
    if hsj["median_perturbation"] is not None:
        metrics["median_perturbation"] = hsj["median_perturbation"]
    if tree.get("applicable"):
        metrics["accuracy_under_tree_attack"] = tree["accuracy_under_attack"]
        if tree["median_perturbation"] is not None:
            metrics["median_perturbation_tree"] = tree["median_perturbation"]
    for key, short in (("gaussian_noise", "noise"), ("missing_values", "missing"), ("category_flips", "category")):
        section = perturbations[key]
        if "flip_rate" in section:
            metrics[f"accuracy_drop_{short}"] = section["accuracy_drop"]
            metrics[f"flip_rate_{short}"] = section["flip_rate"]
    return {
        "schema": ROBUSTNESS_SCHEMA,
        "model": {"type": _model_name(model), "classes": [str(c) for c in classes]},
        "sample": _sample_section(table, n=n, seed=seed),
        "time_limit_s": time_limit_s,
        "truncated": bool(hsj["truncated"]),
        "metrics": metrics,
        "evasion": {"hopskipjump": hsj, "tree": tree},
        "perturbations": perturbations,
    }


def _model_name(model: Any) -> str:
    steps = getattr(model, "steps", None)
    if isinstance(steps, list) and steps:
        return "Pipeline(" + ", ".join(type(s[1]).__name__ for s in steps) + ")"
    return type(model).__name__


def check_robustness(
    report: Mapping[str, Any],
    thresholds: Mapping[str, str | float],
    *,
    allow_truncated: bool = True,
    artifact: str = REPORT_NAME,
) -> list[str]:
    """The gate: every metric must satisfy its threshold, or the model is refused.

    Args:
        report: a report from :func:`evaluate_robustness` (or :func:`load_report`).
        thresholds: metric name to a condition, ``{"accuracy_under_attack": ">= 0.6",
            "flip_rate_noise": "<= 0.1"}``. An empty mapping is refused: a gate
            that checks nothing is not a gate.
        allow_truncated: accept a report whose attack the time limit cut short.
        artifact: the name errors report.

    Returns:
        One line per condition that held.

    Raises:
        RobustnessBelowThreshold: a metric is below (or above) its threshold, or absent
            (names the metric, the threshold and the value).
        PolicyViolation: the attack was truncated and ``allow_truncated`` is false.
        InputError: no thresholds, or one that does not parse.
    """
    if not thresholds:
        raise InputError("robustness gate: no thresholds given")
    parsed = [Threshold.parse(metric, text) for metric, text in sorted(thresholds.items())]
    metrics = report.get("metrics")
    if not isinstance(metrics, Mapping):
        raise InputError(f"{artifact}: no metrics section")
    if report.get("truncated") and not allow_truncated:
        hsj = (report.get("evasion") or {}).get("hopskipjump") or {}
        raise PolicyViolation(
            f"{artifact}: the attack was truncated by its time limit "
            f"({hsj.get('rows_attacked')} of {hsj.get('rows_planned')} rows attacked)"
        )
    lines = []
    for threshold in parsed:
        value = metrics.get(threshold.metric)
        if value is None:
            raise RobustnessBelowThreshold(threshold.metric, str(threshold), None, artifact=artifact)
        measured = float(value)
        if not threshold.holds(measured):
            raise RobustnessBelowThreshold(threshold.metric, str(threshold), measured, artifact=artifact)
        lines.append(f"{threshold.metric} = {measured:g} (must be {threshold})")
    return lines


def write_report(report: Mapping[str, Any], reports_dir: str | Path) -> Path:
    """Write ``robustness.json`` (canonical JSON: sorted keys) into a reports folder.

    Args:
        report: the report.
        reports_dir: the ``reports/`` folder of a step's outputs.

    Returns:
        The file written (atomically).
    """
    from chainproof.attest import write_atomic

    path = Path(reports_dir) / Path(REPORT_NAME).name
    write_atomic(path, (json.dumps(report, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    return path


def load_report(data: bytes, *, what: str = REPORT_NAME) -> dict[str, Any]:
    """Parse a robustness report.

    Args:
        data: the file's bytes.
        what: the name errors report.

    Returns:
        The report.

    Raises:
        InputError: not JSON, or not a robustness report.
    """
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise InputError(f"{what}: not JSON") from exc
    if not isinstance(doc, dict) or doc.get("schema") != ROBUSTNESS_SCHEMA:
        found = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise InputError(f"{what}: expected a report of schema {ROBUSTNESS_SCHEMA}, found {found!r}")
    if not isinstance(doc.get("metrics"), dict):
        raise InputError(f"{what}: no metrics section")
    return doc


# ---------------------------------------------------------------------------
# The pipeline step's work: a model folder and its verified training table


def _sample_section(table: _Table, *, n: int, seed: int) -> dict[str, int]:
    return {
        "rows": len(table),
        "of": n,
        "seed": seed,
        "numeric_features": len(table.spec.numeric),
        "categorical_features": len(table.spec.categorical),
    }


def _is_regressor(model: Any) -> bool:
    from sklearn.base import is_regressor

    return bool(is_regressor(model)) and not hasattr(model, "classes_")


def _regression_report(
    model: Any, table: _Table, y: Any, clean: Any, *, n: int, seed: int, settings: AttackSettings,
    seeds: Any, time_limit_s: float,
) -> dict[str, Any]:
    """The report of a regressor: the perturbations' error increase and prediction shift.

    ART's evasion attacks (HopSkipJump, the decision-tree attack) are defined for
    classifiers; for a regressor they are reported as not applicable, with the reason,
    and a threshold on their metrics fails closed as an absent metric.
    """
    import numpy as np

    y = np.asarray(y, dtype=np.float64)
    perturbations = _perturbations(model, table, y, clean, settings=settings, seeds=seeds, regression=True)
    metrics: dict[str, float] = {"rmse_clean": _r(_rmse(y, clean))}
    for key, short in (("gaussian_noise", "noise"), ("missing_values", "missing"), ("category_flips", "category")):
        section = perturbations[key]
        if "rmse_increase" in section:
            metrics[f"rmse_increase_{short}"] = section["rmse_increase"]
            metrics[f"relative_change_{short}"] = section["relative_change"]
    reason = "a regression model: ART's evasion attacks here are defined for classifiers"
    return {
        "schema": ROBUSTNESS_SCHEMA,
        "model": {"type": _model_name(model), "task": "regression"},
        "sample": _sample_section(table, n=n, seed=seed),
        "time_limit_s": time_limit_s,
        "truncated": False,
        "metrics": metrics,
        "evasion": {"hopskipjump": {"applicable": False, "reason": reason},
                    "tree": {"applicable": False, "reason": reason}},
        "perturbations": perturbations,
    }


def evaluate_model_dir(
    model_dir: str | Path,
    dataset_csv: str | Path,
    *,
    target_column: str,
    reports_dir: str | Path,
    thresholds: Mapping[str, str | float] | None = None,
    test_size: float = 0.25,
    random_state: int = 0,
    sample_size: int = 200,
    seed: int = 0,
    settings: AttackSettings = AttackSettings(),
    time_limit_s: float = 60.0,
) -> dict[str, Any]:
    """Evaluate a trained model folder on the held-out split of its training table, then gate it.

    The model is scanned before it is loaded (an unsafe or unscannable file is refused,
    never unpickled). The held-out rows are the trainer's: the same split (size, seed,
    stratification) of the same table, read with the trainer's own conversion and the
    feature contract ``features.json`` beside the model. Rows with a missing numeric
    cell are left out (the attacks need numbers) and counted in ``sample.rows_with_gaps``.

    Args:
        model_dir: the model folder (``model.joblib``, ``features.json``), verified by the step.
        dataset_csv: the verified training CSV.
        target_column: its label column.
        reports_dir: where ``robustness.json`` is written.
        thresholds: the gate's conditions (``{"accuracy_under_attack": ">= 0.6"}``); none: no gate.
        test_size: the trainer's held-out fraction.
        random_state: the trainer's split seed.
        sample_size: rows drawn from the held-out split.
        seed: the seed of the sample, the attacks and the perturbations.
        settings: the evasion budget and the perturbations' strength.
        time_limit_s: the attacks' wall-clock budget.

    Returns:
        The report (already written; on a gate failure it is written before the error).

    Raises:
        ArtifactRefused: the model's scan is not ``safe``, or a file is missing.
        RobustnessBelowThreshold: a metric is on the wrong side of its threshold.
        InputError: the table or the feature contract is unusable.
    """
    import csv

    import joblib
    import numpy as np
    from sklearn.model_selection import train_test_split

    from chainproof.errors import ArtifactRefused
    from chainproof.scan import scan_path, summarize
    from chainproof.train import prepare_rows

    model_dir, dataset_csv = Path(model_dir), Path(dataset_csv)
    # Never unpickle what the scanner did not pass.
    verdict = summarize(scan_path(model_dir))
    if verdict.get("verdict") != "safe":
        raise ArtifactRefused("model/model.joblib", f"scan verdict {verdict.get('verdict')!r}; not loaded")
    try:
        contract = json.loads((model_dir / "features.json").read_text(encoding="utf-8"))
        features = list(contract["features"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"model/features.json: missing or malformed ({type(exc).__name__})") from exc
    try:
        with open(dataset_csv, newline="", encoding="utf-8") as f:
            records = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{dataset_csv.name}: cannot read the table ({type(exc).__name__})") from exc
    if not records or target_column not in records[0]:
        raise InputError(f"{dataset_csv.name}: no rows, or no target column {target_column!r}")
    model = joblib.load(model_dir / "model.joblib")
    x = prepare_rows(records, features=features)
    labels = [r[target_column] for r in records]
    index = np.arange(len(records))
    stratify = None
    if _is_regressor(model):
        try:
            y = np.asarray([float(v) for v in labels], dtype=np.float64)
        except ValueError as exc:
            raise InputError(f"{dataset_csv.name}: target column {target_column!r} of a regression model "
                             f"is not numeric ({exc})") from exc
    else:
        # The trainer's split: stratified by class where every class has two rows.
        lookup = {str(c): c for c in getattr(model, "classes_", [])}
        y = np.asarray([lookup.get(v, v) for v in labels], dtype=object if not lookup else None)
        _, counts = np.unique(np.asarray(labels), return_counts=True)
        stratify = np.asarray(labels) if counts.min() >= 2 else None
    try:
        _, test = train_test_split(index, test_size=test_size, random_state=random_state, stratify=stratify)
    except ValueError:
        _, test = train_test_split(index, test_size=test_size, random_state=random_state)
    test = np.sort(test)
    kinds = [str(f["type"]) for f in features]
    numeric = tuple(j for j, k in enumerate(kinds) if k == "numeric")
    categorical = tuple(j for j, k in enumerate(kinds) if k != "numeric")
    held = x[test]
    finite = np.all(np.isfinite(held[:, list(numeric)].astype(np.float64)), axis=1)
    report = evaluate_robustness(
        model, held[finite], y[test][finite], feature_spec=FeatureSpec(numeric=numeric, categorical=categorical),
        sample_size=sample_size, seed=seed, settings=settings, time_limit_s=time_limit_s,
    )
    report["sample"]["rows_with_gaps"] = int((~finite).sum())
    write_report(report, reports_dir)
    if thresholds:
        check_robustness(report, thresholds)
    return report
