"""chainproof.drift: PSI, KS, the profile and the sliding window (property tests)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy import stats

from chainproof.drift import (
    DriftMonitor,
    DriftThresholds,
    build_profile,
    evaluate,
    ks_statistic,
    load_profile,
    psi,
    psi_report,
    render_html,
    bin_table,
)
from chainproof.errors import DigestMismatch, InputError

FEATURES = [{"name": "amount", "type": "numeric"}, {"name": "age", "type": "numeric"},
            {"name": "channel", "type": "categorical", "categories": ["app", "shop", "web"]}]
_settings = settings(max_examples=40, deadline=None, derandomize=True)


def _table(rng: np.random.Generator, n: int, *, shift: float = 0.0, web: float = 0.2) -> np.ndarray:
    x = np.empty((n, 3), dtype=object)
    x[:, 0] = rng.lognormal(3.0 + shift, 1.0, n)
    x[:, 1] = rng.integers(18, 90, n).astype(float)
    x[:, 2] = rng.choice(["app", "shop", "web"], n, p=[0.8 - web, 0.2, web])
    return x


@_settings
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(20, 2000), bins=st.integers(2, 20))
def test_psi_of_a_sample_against_its_own_profile_is_zero(seed, n, bins):
    rng = np.random.default_rng(seed)
    x = _table(rng, n)
    x[rng.random(n) < 0.05, 1] = np.nan  # gaps have their own bin
    profile = build_profile(x, features=FEATURES, scores=rng.random(50), bins=bins)
    for value in psi_report(profile, x).values():
        assert value == pytest.approx(0.0, abs=1e-12)


@_settings
@given(seed=st.integers(0, 2**32 - 1), shift=st.floats(0.8, 3.0))
def test_an_injected_shift_raises_psi_of_that_feature_only(seed, shift):
    rng = np.random.default_rng(seed)
    profile = build_profile(_table(rng, 4000), features=FEATURES, scores=rng.random(500))
    clean = psi_report(profile, _table(rng, 2000))
    moved = psi_report(profile, _table(rng, 2000, shift=shift))
    assert moved["amount"] > 0.25 > clean["amount"]
    assert moved["age"] < 0.1 and clean["age"] < 0.1
    recat = psi_report(profile, _table(rng, 2000, web=0.6))
    assert recat["channel"] > 0.25 > clean["channel"]


@_settings
@given(a=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=300),
       b=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=300))
def test_ks_matches_scipy_ks_2samp(a, b):
    assert ks_statistic(a, b) == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)


@_settings
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(5, 500))
def test_ks_matches_scipy_with_ties(seed, n):
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 5, n).astype(float), rng.integers(0, 6, n + 3).astype(float)
    assert ks_statistic(a, b) == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)


def test_psi_refuses_different_bins():
    with pytest.raises(InputError, match="expected 3 bins, got 2"):
        psi([0.2, 0.3, 0.5], [0.5, 0.5])


def test_profile_holds_no_raw_rows():
    rng = np.random.default_rng(7)
    x = _table(rng, 300)
    text = json.dumps(build_profile(x, features=FEATURES, scores=rng.random(80)))
    # Bin edges are quantiles (values that occur), but no row of the table is in the profile.
    for row in x[:50]:
        assert json.dumps([float(row[0]), float(row[1]), row[2]])[1:-1] not in text


def test_window_alerts_on_a_shift_and_not_on_clean_data():
    rng = np.random.default_rng(3)
    reference = _table(rng, 4000)
    scores = rng.beta(2, 5, 1000)
    profile = build_profile(reference, features=FEATURES, scores=scores)
    monitor = DriftMonitor(profile, window=400, every=100, thresholds=DriftThresholds(min_samples=200))
    statuses = [monitor.observe(list(_table(rng, 100)), rng.beta(2, 5, 100)) for _ in range(6)]
    assert all(s is not None and not s.alerts for s in statuses), [s.alerts for s in statuses if s]
    for _ in range(4):
        status = monitor.observe(list(_table(rng, 100, shift=1.5)), rng.beta(5, 2, 100))
    assert status is not None and status.samples == 400
    assert status.drifting == ["amount"]
    assert any(a.startswith("score KS") for a in status.alerts)
    page = render_html(status, bin_table(profile, list(_table(rng, 100, shift=1.5))), subject="m")
    assert page.count("<svg") == 1 and "<h3>amount</h3>" in page and "<script" not in page


def test_no_judgement_below_min_samples():
    rng = np.random.default_rng(5)
    profile = build_profile(_table(rng, 1000), features=FEATURES, scores=rng.random(100))
    status = evaluate(profile, _table(rng, 20, shift=3.0), rng.random(20), DriftThresholds(min_samples=50))
    assert status.psi["amount"] > 0.25 and not status.alerts


def test_a_profile_that_is_not_the_attested_one_is_refused():
    data = json.dumps(build_profile(_table(np.random.default_rng(1), 100), features=FEATURES, scores=[0.5])).encode()
    digest = hashlib.sha256(data).hexdigest()
    assert load_profile(data, expected_sha256=digest)["rows"] == 100
    tampered = data.replace(b'"rows": 100', b'"rows": 101')
    with pytest.raises(DigestMismatch) as err:
        load_profile(tampered, expected_sha256=digest)
    assert err.value.artifact == "reports/profile.json"
    with pytest.raises(InputError, match="expected schema"):
        load_profile(b"{}", expected_sha256=hashlib.sha256(b"{}").hexdigest())


def test_a_feature_name_with_spaces_is_reported_whole():
    rng = np.random.default_rng(9)
    features = [{"name": "transaction amount (EUR)", "type": "numeric"}]
    profile = build_profile(rng.normal(size=(2000, 1)), features=features, scores=rng.random(100))
    status = evaluate(profile, rng.normal(loc=2.0, size=(300, 1)), None, DriftThresholds(min_samples=10))
    assert status.drifting == ["transaction amount (EUR)"] and not status.score_drift
    assert status.to_dict()["drifting_features"] == ["transaction amount (EUR)"]
