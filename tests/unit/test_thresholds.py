"""Metric thresholds: a model below its required minimum (or above a maximum) fails closed."""

from __future__ import annotations

import json
import math
import operator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chainproof.errors import InputError, MetricBelowThreshold, PolicyViolation
from chainproof.thresholds import Threshold, check_metrics, format_thresholds, parse_thresholds

NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-/]{0,15}", fullmatch=True)
FINITE = st.floats(allow_nan=False, allow_infinity=False)
PY = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}


def _threshold_sets(kind: str):
    comparisons = [">=", ">"] if kind == "min" else ["<=", "<"]
    entry = st.tuples(NAMES, st.sampled_from(comparisons), FINITE)
    return st.lists(entry, max_size=8, unique_by=lambda e: e[0]).map(
        lambda es: tuple(Threshold(metric=n, comparison=c, value=v) for n, c, v in es)
    )


@settings(max_examples=100, deadline=None)
@given(kind=st.sampled_from(["min", "max"]), data=st.data())
def test_compact_form_round_trips_exactly(kind, data):
    thresholds = data.draw(_threshold_sets(kind))
    text = format_thresholds(thresholds)
    assert parse_thresholds(text, kind=kind) == thresholds
    # Spaces around names, comparisons and numbers are allowed.
    spaced = " , ".join(f" {t.metric} {t.comparison} {t.value!r} " for t in thresholds)
    assert parse_thresholds(spaced, kind=kind) == thresholds


@settings(max_examples=100, deadline=None)
@given(kind=st.sampled_from(["min", "max"]),
       bounds=st.dictionaries(NAMES, st.one_of(FINITE, st.integers(-10**6, 10**6)), max_size=8))
def test_mapping_json_and_compact_forms_mean_the_same(kind, bounds):
    default = ">=" if kind == "min" else "<="
    expected = tuple(Threshold(metric=n, comparison=default, value=float(v)) for n, v in bounds.items())
    assert parse_thresholds(bounds, kind=kind) == expected
    assert parse_thresholds(json.dumps(bounds), kind=kind) == expected
    compact = ",".join(f"{n}{default}{float(v)!r}" for n, v in bounds.items())
    assert parse_thresholds(compact, kind=kind) == expected


@settings(max_examples=200, deadline=None)
@given(metric=NAMES, comparison=st.sampled_from([">=", ">", "<=", "<"]), bound=FINITE,
       value=st.one_of(FINITE, st.integers(-10**9, 10**9)))
def test_any_finite_value_compares_like_python(metric, comparison, bound, value):
    kind = "min" if comparison.startswith(">") else "max"
    spec = f"{metric}{comparison}{bound!r}"
    others = {"min_metrics": None, "max_metrics": None}
    others[f"{kind}_metrics"] = spec
    if PY[comparison](float(value), bound):
        passed = check_metrics({metric: value}, **others)
        assert [(t.metric, t.comparison, t.value) for t in passed] == [(metric, comparison, bound)]
    else:
        with pytest.raises(MetricBelowThreshold) as err:
            check_metrics({metric: value}, **others)
        e = err.value
        assert (e.metric, e.threshold, e.value, e.comparison) == (metric, bound, float(value), comparison)
        assert isinstance(e, PolicyViolation) and e.exit_code == 1
        assert "\n" not in str(e) and str(e).startswith(f"metric {metric} = ")


def test_message_names_metric_threshold_and_value():
    with pytest.raises(MetricBelowThreshold, match=r"^metric roc_auc = 0\.71 is below the required minimum 0\.80$"):
        check_metrics({"roc_auc": 0.71, "accuracy": 0.9}, min_metrics="roc_auc>=0.8,accuracy>=0.7", max_metrics=None)
    with pytest.raises(MetricBelowThreshold, match=r"^metric rmse = 4\.20 is above the allowed maximum 3\.50$"):
        check_metrics({"rmse": 4.2}, min_metrics=None, max_metrics="rmse<=3.5")
    with pytest.raises(MetricBelowThreshold, match=r"is below the required exclusive minimum 0\.80$"):
        check_metrics({"roc_auc": 0.8}, min_metrics="roc_auc>0.8", max_metrics=None)


def test_a_required_metric_that_is_missing_fails_naming_it():
    with pytest.raises(MetricBelowThreshold, match=r"^metric roc_auc is missing \(required minimum 0\.80\)$") as err:
        check_metrics({"accuracy": 0.99, "r2": 0.9}, min_metrics={"roc_auc": 0.8}, max_metrics=None)
    assert err.value.value is None and err.value.metric == "roc_auc"


@pytest.mark.parametrize("found", ["0.9", None, True, [0.9], {"v": 1}, math.nan, math.inf, -math.inf])
def test_a_metric_that_is_not_a_finite_number_fails(found):
    with pytest.raises(MetricBelowThreshold, match=r"^metric accuracy = .* is not a (finite )?number"):
        check_metrics({"accuracy": found}, min_metrics="accuracy>=0.5", max_metrics=None)
    with pytest.raises(MetricBelowThreshold):
        check_metrics({"accuracy": found}, min_metrics=None, max_metrics="accuracy<=0.5")


def test_numpy_scalars_are_numbers():
    np = pytest.importorskip("numpy")
    assert check_metrics({"r2": np.float64(0.7)}, min_metrics="r2>=0.5", max_metrics=None)
    with pytest.raises(MetricBelowThreshold):
        check_metrics({"r2": np.float32(0.4)}, min_metrics="r2>=0.5", max_metrics=None)


def test_no_thresholds_check_nothing_and_say_so():
    for empty in (None, "", "  ", {}, "{}"):
        assert check_metrics({}, min_metrics=empty, max_metrics=empty) == []


@pytest.mark.parametrize(
    ("spec", "kind", "says"),
    [
        ("roc_auc>=nan", "min", "is not METRIC>=NUMBER"),
        ("roc_auc>=inf", "min", "is not METRIC>=NUMBER"),
        ("roc_auc>=1e999", "min", "expected a finite number, found inf"),
        ('{"roc_auc": NaN}', "min", "NaN is not a finite number"),
        ('{"roc_auc": Infinity}', "min", "Infinity is not a finite number"),
        ('{"roc_auc": "0.8"}', "min", "roc_auc: expected a finite number, found '0.8'"),
        ('{"roc_auc": true}', "min", "roc_auc: expected a finite number"),
        ('{"roc_auc": 0.8, "roc_auc": 0.9}', "min", "named more than once"),
        ("roc_auc>=0.8,roc_auc>=0.9", "min", "named more than once"),
        ('["roc_auc"]', "min", "is not METRIC>=NUMBER"),
        ('{"roc_auc": 0.8', "min", "not a valid JSON object"),
        ("rmse<=3.5", "min", "uses <=; a minimum is written with >= or >"),
        ("roc_auc>=0.8", "max", "uses >=; a maximum is written with <= or <"),
        ("roc_auc==0.8", "min", "uses ==;"),
        ("roc_auc=>0.8", "min", "is not METRIC>=NUMBER"),
        ("roc_auc>=0.8,", "min", "'' is not METRIC>=NUMBER"),
        ("roc auc>=0.8", "min", "is not METRIC>=NUMBER"),
        ("1x>=0.8", "min", "is not METRIC>=NUMBER"),
        ("roc_auc>=0x10", "min", "is not METRIC>=NUMBER"),
        ("roc_auc>=1_0", "min", "is not METRIC>=NUMBER"),
    ],
)
def test_malformed_thresholds_are_refused_with_one_line(spec, kind, says):
    with pytest.raises(InputError) as err:
        parse_thresholds(spec, kind=kind)
    text = str(err.value)
    assert says in text and text.startswith(f"{kind}_metrics: ") and "\n" not in text
    assert not isinstance(err.value, MetricBelowThreshold)


def test_mapping_with_a_bad_name_or_type_is_refused():
    with pytest.raises(InputError, match="metric name 'roc auc' is not a name"):
        parse_thresholds({"roc auc": 0.8}, kind="min")
    with pytest.raises(InputError, match="expected a mapping, a JSON object or a string, found list"):
        parse_thresholds([("roc_auc", 0.8)], kind="min")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="more than the limit of 64"):
        parse_thresholds({f"m{i}": 0.5 for i in range(65)}, kind="max")
