"""Metric thresholds a model must meet before it is trusted: ``min_metrics`` and ``max_metrics``.

Example:
    >>> from chainproof.thresholds import check_metrics, parse_thresholds
    >>> [str(t) for t in parse_thresholds("roc_auc>=0.8, accuracy>0.7", kind="min")]
    ['roc_auc>=0.8', 'accuracy>0.7']
    >>> passed = check_metrics({"roc_auc": 0.91, "rmse": 2.0}, min_metrics={"roc_auc": 0.8}, max_metrics="rmse<=3.5")
    >>> [str(t) for t in passed]
    ['roc_auc>=0.8', 'rmse<=3.5']
    >>> check_metrics({"roc_auc": 0.71}, min_metrics="roc_auc>=0.80", max_metrics=None)
    Traceback (most recent call last):
    ...
    chainproof.errors.MetricBelowThreshold: metric roc_auc = 0.71 is below the required minimum 0.80

A threshold set is given in one of three forms, all meaning the same:

- a mapping ``{"roc_auc": 0.8}`` (a minimum is ``>=``, a maximum ``<=``);
- the same as a JSON object, ``'{"roc_auc": 0.8}'``;
- a compact string, ``"roc_auc>=0.8,accuracy>=0.7"`` or ``"rmse<=3.5"``; a strict
  ``>`` (or ``<``) may be written where the bound itself must fail.

Bounds are finite numbers; a minimum takes ``>=`` or ``>``, a maximum ``<=`` or
``<``; a metric is named at most once per set (a range is a minimum and a maximum).
A required metric that is missing, or whose value is not a finite number, fails:
a check never passes for want of evidence.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Real
from typing import Any, Literal

from chainproof.errors import InputError, MetricBelowThreshold

__all__ = ["Comparison", "Threshold", "check_metrics", "format_thresholds", "parse_thresholds"]

Comparison = Literal[">=", ">", "<=", "<"]
Kind = Literal["min", "max"]

_ALLOWED: dict[str, tuple[str, ...]] = {"min": (">=", ">"), "max": ("<=", "<")}
_DEFAULT: dict[str, Comparison] = {"min": ">=", "max": "<="}
_NAME = r"[A-Za-z_][A-Za-z0-9_.\-/]*"
_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_ENTRY = re.compile(rf"\s*({_NAME})\s*(>=|<=|>|<|==|=|!=)\s*({_NUMBER})\s*")
_NAME_RE = re.compile(rf"{_NAME}\Z")
_MAX_ENTRIES = 64


@dataclass(frozen=True)
class Threshold:
    """One bound on one metric.

    Attributes:
        metric: the metric's name, as it appears in the metrics (``roc_auc``).
        comparison: what must hold between the value and the bound.
        value: the bound, a finite number.
    """

    metric: str
    comparison: Comparison
    value: float

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.metric):
            raise InputError(f"threshold: metric name {self.metric!r} is not a name (letters, digits, _ . - /)")
        if self.comparison not in (">=", ">", "<=", "<"):
            raise InputError(f"threshold {self.metric}: unknown comparison {self.comparison!r} (expected >=, >, <= or <)")
        if isinstance(self.value, bool) or not isinstance(self.value, Real) or not math.isfinite(float(self.value)):
            raise InputError(f"threshold {self.metric}: expected a finite number, found {self.value!r}")
        object.__setattr__(self, "value", float(self.value))

    @property
    def kind(self) -> Kind:
        """``min`` for a lower bound, ``max`` for an upper bound."""
        return "min" if self.comparison.startswith(">") else "max"

    def holds(self, value: float) -> bool:
        """Return whether ``value`` meets this bound (a NaN never does).

        Args:
            value: the metric's value.

        Returns:
            The comparison's result, exactly as Python compares the two floats.
        """
        if self.comparison == ">=":
            return value >= self.value
        if self.comparison == ">":
            return value > self.value
        if self.comparison == "<=":
            return value <= self.value
        return value < self.value

    def check(self, metrics: Mapping[str, Any]) -> None:
        """Raise unless ``metrics`` holds this metric as a finite number meeting the bound.

        Args:
            metrics: metric name to value.

        Raises:
            MetricBelowThreshold: the metric is missing, not a finite number, or fails the bound.
        """
        if self.metric not in metrics:
            raise MetricBelowThreshold(self.metric, self.value, None, self.comparison, reason="is missing")
        found = metrics[self.metric]
        if isinstance(found, bool) or not isinstance(found, Real):
            raise MetricBelowThreshold(
                self.metric, self.value, found, self.comparison,
                reason=f"= {str(found)[:40]!r} is not a number",
            )
        number = float(found)
        if not math.isfinite(number):
            raise MetricBelowThreshold(
                self.metric, self.value, number, self.comparison, reason=f"= {number!r} is not a finite number"
            )
        if not self.holds(number):
            raise MetricBelowThreshold(self.metric, self.value, number, self.comparison)

    def __str__(self) -> str:
        return f"{self.metric}{self.comparison}{self.value!r}"


def parse_thresholds(
    spec: str | Mapping[str, Any] | None,
    *,
    kind: Kind,
    what: str = "",
) -> tuple[Threshold, ...]:
    """Parse a set of minimums or maximums from a mapping, a JSON object or a compact string.

    Args:
        spec: ``{"roc_auc": 0.8}``, ``'{"roc_auc": 0.8}'`` or ``"roc_auc>=0.8,accuracy>=0.7"``;
            ``None``, ``""`` and ``{}`` mean no thresholds.
        kind: ``min`` (bounds from below: ``>=``, ``>``) or ``max`` (``<=``, ``<``).
        what: how the caller names this set in errors (default ``min_metrics`` / ``max_metrics``).

    Returns:
        The thresholds, in the order given.

    Raises:
        InputError: malformed text, a bound that is not a finite number, a comparison that
            does not fit ``kind``, a metric named twice, or more than 64 entries.
    """
    if kind not in _ALLOWED:
        raise InputError(f"thresholds: kind must be 'min' or 'max', got {kind!r}")
    label = what or f"{kind}_metrics"
    if spec is None:
        return ()
    if isinstance(spec, str):
        text = spec.strip()
        if not text:
            return ()
        if text.startswith("{"):
            try:
                doc = json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)
            except ValueError as exc:
                raise InputError(f"{label}: not a valid JSON object ({exc})") from exc
            if not isinstance(doc, dict):
                raise InputError(f"{label}: expected a JSON object, found {type(doc).__name__}")
            return _from_mapping(doc, kind=kind, label=label)
        return _from_text(text, kind=kind, label=label)
    if isinstance(spec, Mapping):
        return _from_mapping(spec, kind=kind, label=label)
    raise InputError(f"{label}: expected a mapping, a JSON object or a string, found {type(spec).__name__}")


def format_thresholds(thresholds: tuple[Threshold, ...] | list[Threshold]) -> str:
    """Write thresholds in the compact form :func:`parse_thresholds` reads back unchanged.

    Args:
        thresholds: the thresholds.

    Returns:
        ``"roc_auc>=0.8,accuracy>=0.7"`` (floats written with ``repr``: exact round trip).
    """
    return ",".join(str(t) for t in thresholds)


def check_metrics(
    metrics: Mapping[str, Any],
    *,
    min_metrics: str | Mapping[str, Any] | None,
    max_metrics: str | Mapping[str, Any] | None,
) -> list[Threshold]:
    """Check metrics against every minimum and maximum; the first failure raises.

    Args:
        metrics: metric name to value (e.g. ``TrainResult.metrics``).
        min_metrics: the minimums, in any form :func:`parse_thresholds` reads.
        max_metrics: the maximums, likewise.

    Returns:
        The thresholds checked (all of which hold), minimums first.

    Raises:
        InputError: a threshold set is malformed.
        MetricBelowThreshold: a required metric is missing, not a finite number, below
            its minimum or above its maximum.
    """
    checked = [*parse_thresholds(min_metrics, kind="min"), *parse_thresholds(max_metrics, kind="max")]
    if not isinstance(metrics, Mapping):
        raise InputError(f"metrics: expected a mapping of metric name to value, found {type(metrics).__name__}")
    for threshold in checked:
        threshold.check(metrics)
    return checked


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a finite number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for key, value in pairs:
        if key in doc:
            raise ValueError(f"metric {key} is named more than once")
        doc[key] = value
    return doc


def _from_mapping(doc: Mapping[Any, Any], *, kind: str, label: str) -> tuple[Threshold, ...]:
    if len(doc) > _MAX_ENTRIES:
        raise InputError(f"{label}: {len(doc)} entries, more than the limit of {_MAX_ENTRIES}")
    out: list[Threshold] = []
    for name, bound in doc.items():
        if not isinstance(name, str):
            raise InputError(f"{label}: metric names must be strings, found {name!r}")
        if isinstance(bound, bool) or not isinstance(bound, Real):
            raise InputError(f"{label}: {name}: expected a finite number, found {str(bound)[:40]!r}")
        out.append(_threshold(name, _DEFAULT[kind], bound, label=label))
    return tuple(out)


def _from_text(text: str, *, kind: str, label: str) -> tuple[Threshold, ...]:
    entries = text.split(",")
    if len(entries) > _MAX_ENTRIES:
        raise InputError(f"{label}: {len(entries)} entries, more than the limit of {_MAX_ENTRIES}")
    out: list[Threshold] = []
    seen: set[str] = set()
    for entry in entries:
        match = _ENTRY.fullmatch(entry)
        if not match:
            raise InputError(
                f"{label}: {entry.strip()[:60]!r} is not METRIC{_ALLOWED[kind][0]}NUMBER "
                f"(e.g. {'roc_auc>=0.8' if kind == 'min' else 'rmse<=3.5'})"
            )
        name, comparison, number = match.groups()
        if comparison not in _ALLOWED[kind]:
            raise InputError(
                f"{label}: {entry.strip()!r} uses {comparison}; a {'minimum' if kind == 'min' else 'maximum'} "
                f"is written with {' or '.join(_ALLOWED[kind])}"
            )
        if name in seen:
            raise InputError(f"{label}: metric {name} is named more than once")
        seen.add(name)
        out.append(_threshold(name, comparison, float(number), label=label))
    return tuple(out)


def _threshold(name: str, comparison: str, bound: Any, *, label: str) -> Threshold:
    try:
        return Threshold(metric=name, comparison=comparison, value=bound)  # type: ignore[arg-type]
    except InputError as exc:
        raise InputError(f"{label}: {exc}") from None
