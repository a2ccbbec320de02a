"""The robustness gate: a brittle model fails it, a regularised one passes, reports are reproducible."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from chainproof.errors import InputError, PolicyViolation
from chainproof.robustness import (
    AttackSettings,
    FeatureSpec,
    RobustnessBelowThreshold,
    Threshold,
    check_robustness,
    evaluate_robustness,
    load_report,
    write_report,
)

GATE = {"accuracy_under_attack": ">= 0.6", "flip_rate_noise": "<= 0.1"}
SETTINGS = AttackSettings(eps=0.8, noise_scale=0.3, max_attack_rows=24)


@pytest.fixture(scope="module")
def noisy_data():
    # Label noise (flip_y) is what an unpruned tree memorises and a regularised model ignores.
    x, y = make_classification(
        n_samples=900, n_features=8, n_informative=4, n_redundant=2, flip_y=0.25, class_sep=1.0, random_state=3
    )
    return x[:600], y[:600], x[600:], y[600:]


@pytest.fixture(scope="module")
def brittle_report(noisy_data):
    x_train, y_train, x_test, y_test = noisy_data
    model = DecisionTreeClassifier(random_state=0).fit(x_train, y_train)
    return evaluate_robustness(model, x_test, y_test, sample_size=120, seed=7, settings=SETTINGS)


@pytest.fixture(scope="module")
def regularised_report(noisy_data):
    x_train, y_train, x_test, y_test = noisy_data
    model = LogisticRegression(C=0.1).fit(x_train, y_train)
    return evaluate_robustness(model, x_test, y_test, sample_size=120, seed=7, settings=SETTINGS)


def test_unpruned_tree_on_noisy_data_fails_the_gate(brittle_report):
    with pytest.raises(RobustnessBelowThreshold) as failed:
        check_robustness(brittle_report, GATE)
    error = failed.value
    assert isinstance(error, PolicyViolation) and error.exit_code == 1
    assert error.metric in GATE
    assert error.threshold == str(Threshold.parse(error.metric, GATE[error.metric]))
    assert error.value == brittle_report["metrics"][error.metric]
    assert f"{error.metric} must be {error.threshold}, found {error.value:g}" in str(error)
    # Both conditions fail on their own, and the tree-specific attack ran on the bare tree.
    for metric, condition in GATE.items():
        with pytest.raises(RobustnessBelowThreshold):
            check_robustness(brittle_report, {metric: condition})
    assert brittle_report["evasion"]["tree"]["applicable"] is True
    tree = brittle_report["evasion"]["tree"]
    assert tree["rows_evaded"] > 0
    assert brittle_report["metrics"]["accuracy_under_tree_attack"] < brittle_report["metrics"]["accuracy_clean"]


def test_regularised_model_passes_the_gate(regularised_report):
    lines = check_robustness(regularised_report, GATE)
    assert len(lines) == 2
    assert regularised_report["evasion"]["tree"]["applicable"] is False
    assert not regularised_report["truncated"]
    hsj = regularised_report["evasion"]["hopskipjump"]
    assert hsj["rows_attacked"] == hsj["rows_planned"] == 24
    assert hsj["median_perturbation"] > SETTINGS.eps


def test_same_seed_gives_an_identical_report(noisy_data, brittle_report, tmp_path):
    x_train, y_train, x_test, y_test = noisy_data
    model = DecisionTreeClassifier(random_state=0).fit(x_train, y_train)
    np.random.seed(12345)
    before = np.random.get_state()[1].copy()
    again = evaluate_robustness(model, x_test, y_test, sample_size=120, seed=7, settings=SETTINGS)
    assert json.dumps(again, sort_keys=True) == json.dumps(brittle_report, sort_keys=True)
    # The attack seeds NumPy's global generator for itself and gives the caller's state back.
    assert (np.random.get_state()[1] == before).all()
    other = evaluate_robustness(model, x_test, y_test, sample_size=120, seed=8, settings=SETTINGS)
    assert other["perturbations"] != brittle_report["perturbations"]
    path = write_report(again, tmp_path / "reports")
    assert path.name == "robustness.json"
    assert load_report(path.read_bytes()) == again


def test_pipeline_with_categories_is_attacked_on_numbers_and_flipped_on_categories():
    pd = pytest.importorskip("pandas")
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(0)
    n = 300
    frame = pd.DataFrame(
        {
            "amount": rng.normal(100, 30, n),
            "age": rng.normal(40, 10, n),
            "channel": rng.choice(["web", "shop", "phone"], n),
        }
    )
    y = ((frame["amount"] > 110) ^ (frame["channel"] == "phone")).astype(int).to_numpy()
    model = Pipeline(
        [
            ("prep", ColumnTransformer([("num", StandardScaler(), ["amount", "age"]),
                                        ("cat", OneHotEncoder(handle_unknown="ignore"), ["channel"])])),
            ("clf", LogisticRegression()),
        ]
    ).fit(frame, y)
    spec = FeatureSpec(numeric=("amount", "age"), categorical=("channel",))
    settings = AttackSettings(max_attack_rows=8, flip_rate=0.5)
    report = evaluate_robustness(model, frame, y, feature_spec=spec, sample_size=60, seed=1, settings=settings)
    flips = report["perturbations"]["category_flips"]
    assert flips["applicable"] and flips["cells"] > 0
    # The label depends on the channel: flipping half of them must flip predictions.
    assert report["metrics"]["flip_rate_category"] > 0.2
    assert report["perturbations"]["missing_values"]["handling"].startswith("imputed")
    assert report["sample"] == {"rows": 60, "of": 300, "seed": 1, "numeric_features": 2, "categorical_features": 1}
    assert report["evasion"]["hopskipjump"]["rows_attacked"] == 8
    # By dtype, without a spec, the same columns are found.
    same = evaluate_robustness(model, frame, y, sample_size=60, seed=1, settings=settings)
    assert same == report


def test_time_limit_truncates_between_rows_and_says_so(noisy_data):
    x_train, y_train, x_test, y_test = noisy_data
    model = LogisticRegression().fit(x_train, y_train)
    ticks = iter(range(10_000))

    def clock() -> float:  # one tick per reading: the budget runs out after a few rows
        return float(next(ticks))

    report = evaluate_robustness(
        model, x_test, y_test, sample_size=60, settings=AttackSettings(max_attack_rows=20), time_limit_s=10, clock=clock
    )
    hsj = report["evasion"]["hopskipjump"]
    assert report["truncated"] is True and hsj["truncated"] is True
    assert 0 < hsj["rows_attacked"] < hsj["rows_planned"]
    check_robustness(report, {"accuracy_clean": ">= 0.5"})
    with pytest.raises(PolicyViolation, match="truncated by its time limit"):
        check_robustness(report, {"accuracy_clean": ">= 0.5"}, allow_truncated=False)


@pytest.mark.parametrize(
    "thresholds, match",
    [
        ({}, "no thresholds"),
        ({"flip_rate_noise": "0.1"}, "expected '>= N' or '<= N'"),
        ({"flip_rate_noise": "<= lots"}, "expected '>= N' or '<= N'"),
    ],
)
def test_gate_refuses_thresholds_that_check_nothing(regularised_report, thresholds, match):
    with pytest.raises(InputError, match=match):
        check_robustness(regularised_report, thresholds)


def test_gate_fails_closed_on_a_missing_metric(regularised_report):
    with pytest.raises(RobustnessBelowThreshold, match="flip_rate_category must be <= 0.1, found absent"):
        check_robustness(regularised_report, {"flip_rate_category": "<= 0.1"})


def test_bad_inputs_are_one_line_input_errors(noisy_data):
    x_train, y_train, x_test, y_test = noisy_data
    model = LogisticRegression().fit(x_train, y_train)
    with pytest.raises(InputError, match="expected 300 labels"):
        evaluate_robustness(model, x_test, y_test[:5])
    with pytest.raises(InputError, match="out of range"):
        evaluate_robustness(model, x_test, y_test, feature_spec=FeatureSpec(numeric=(0, 99)))
    bad = x_test.copy()
    bad[0, 0] = np.nan
    with pytest.raises(InputError, match="must be finite"):
        evaluate_robustness(model, bad, y_test, sample_size=300)
    with pytest.raises(InputError, match="eps"):
        AttackSettings(eps=float("nan"))
    with pytest.raises(InputError, match="eps"):
        evaluate_robustness(model, x_test, y_test, eps=-1.0)
    with pytest.raises(InputError, match="not a robustness|expected a report"):
        load_report(b'{"schema": "other"}')


def _train_folder(tmp_path, estimator: str):
    """A model folder as the train step leaves it: model.joblib and its feature contract."""
    from chainproof.train import train_table

    rng = np.random.default_rng(5)
    rows = ["amount,tenure,plan,churned"]
    for i in range(240):
        amount, tenure, plan = rng.normal(50, 15), rng.integers(1, 60), rng.choice(["basic", "plus", "pro"])
        churned = int((amount > 55) != (plan == "pro")) if rng.random() > 0.2 else int(rng.integers(2))
        gap = "" if i % 37 == 0 else f"{amount:.2f}"  # a few missing cells, as real tables have
        rows.append(f"{gap},{tenure},{plan},{churned}")
    csv_path = tmp_path / "train.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    model_dir = tmp_path / f"model-{estimator}"
    result = train_table(csv_path, target="churned", model_dir=model_dir, estimator=estimator)
    contract = {"task": result.task, "target": result.target, "features": result.features, "classes": result.classes}
    (model_dir / "features.json").write_text(json.dumps(contract))
    return csv_path, model_dir, result


def test_step_work_evaluates_the_trainers_held_out_rows_and_writes_the_report(tmp_path):
    from chainproof.robustness import evaluate_model_dir

    csv_path, model_dir, trained = _train_folder(tmp_path, "logistic_regression")
    report = evaluate_model_dir(model_dir, csv_path, target_column="churned", reports_dir=tmp_path / "reports",
                                settings=AttackSettings(max_attack_rows=6))
    assert report["sample"]["rows"] + report["sample"]["rows_with_gaps"] == trained.metrics["test_rows"]
    assert report["sample"]["categorical_features"] == 1
    assert report["perturbations"]["category_flips"]["applicable"] is True
    assert load_report((tmp_path / "reports" / "robustness.json").read_bytes()) == report


def test_step_work_fails_closed_after_writing_the_report(tmp_path):
    from chainproof.robustness import evaluate_model_dir

    csv_path, model_dir, _ = _train_folder(tmp_path, "decision_tree")
    with pytest.raises(RobustnessBelowThreshold) as failed:
        evaluate_model_dir(model_dir, csv_path, target_column="churned", reports_dir=tmp_path / "reports",
                           thresholds={"flip_rate_category": "<= 0.01"}, settings=AttackSettings(max_attack_rows=4))
    assert failed.value.metric == "flip_rate_category"
    # The evidence of the failure is kept: the report the gate read.
    report = load_report((tmp_path / "reports" / "robustness.json").read_bytes())
    assert report["metrics"]["flip_rate_category"] == failed.value.value


def test_step_work_never_loads_a_model_the_scanner_refuses(tmp_path):
    from chainproof.errors import ArtifactRefused
    from chainproof.robustness import evaluate_model_dir

    csv_path, model_dir, _ = _train_folder(tmp_path, "decision_tree")
    # A pickle that would call os.system on load (protocol 2, GLOBAL + REDUCE); it is only scanned.
    (model_dir / "model.joblib").write_bytes(b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03.")
    with pytest.raises(ArtifactRefused, match="scan verdict 'unsafe'; not loaded"):
        evaluate_model_dir(model_dir, csv_path, target_column="churned", reports_dir=tmp_path / "reports")
    assert not (tmp_path / "reports").exists()


def test_component_writes_its_report_and_gates_with_the_pipelines_threshold_syntax(tmp_path):
    from kfp.dsl import Artifact, Dataset, Model

    from chainproof.components.evaluate_robustness import evaluate_robustness as component
    from chainproof.errors import MetricBelowThreshold

    csv_path, model_dir, _ = _train_folder(tmp_path, "logistic_regression")
    data = tmp_path / "dataset"
    data.mkdir()
    (data / "train.csv").write_bytes(csv_path.read_bytes())

    def run(out: str, **gate: str) -> None:
        component.python_func(
            model=Model(name="model", uri=str(model_dir)), dataset=Dataset(name="dataset", uri=str(data)),
            target_column="churned", reports=Artifact(name="reports", uri=str(tmp_path / out)),
            max_attack_rows=4, **gate,
        )

    run("passed", min_metrics="accuracy_clean>=0.5", max_metrics="flip_rate_noise<=0.5")
    report = load_report((tmp_path / "passed" / "robustness.json").read_bytes())
    assert report["evasion"]["hopskipjump"]["rows_attacked"] == 4
    with pytest.raises(MetricBelowThreshold) as failed:
        run("failed", min_metrics="accuracy_under_attack>=0.99")
    assert failed.value.metric == "accuracy_under_attack"
    assert failed.value.value == load_report((tmp_path / "failed" / "robustness.json").read_bytes())["metrics"][
        "accuracy_under_attack"]


_finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@hsettings(max_examples=200, deadline=None)
@given(value=_finite, bound=_finite, op=st.sampled_from([">=", "<="]), spaced=st.booleans())
def test_gate_passes_exactly_when_the_condition_holds(value, bound, op, spaced):
    # Differential oracle: Python's own comparison of the two floats.
    condition = f"{op} {bound!r}" if spaced else f"{op}{bound!r}"
    report = {"metrics": {"m": value}, "truncated": False}
    holds = value >= bound if op == ">=" else value <= bound
    if holds:
        assert check_robustness(report, {"m": condition}) == [f"m = {value:g} (must be {op} {bound:g})"]
    else:
        with pytest.raises(RobustnessBelowThreshold) as failed:
            check_robustness(report, {"m": condition})
        assert (failed.value.metric, failed.value.value) == ("m", value)
        assert failed.value.threshold == f"{op} {bound:g}"


@hsettings(max_examples=50, deadline=None)
@given(op=st.sampled_from([">=", "<="]), bound=_finite)
def test_gate_never_passes_a_nan_metric(op, bound):
    with pytest.raises(RobustnessBelowThreshold):
        check_robustness({"metrics": {"m": float("nan")}}, {"m": f"{op} {bound!r}"})


def test_tree_attack_reaches_a_tree_behind_preprocessing_that_changes_nothing(noisy_data):
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_train, y_train, x_test, y_test = noisy_data
    settings = AttackSettings(max_attack_rows=2)
    imputed = make_pipeline(SimpleImputer(), DecisionTreeClassifier(random_state=0)).fit(x_train, y_train)
    report = evaluate_robustness(imputed, x_test, y_test, sample_size=40, settings=settings)
    assert report["evasion"]["tree"]["applicable"] is True
    assert report["evasion"]["tree"]["rows_evaded"] > 0
    # Scaling moves the thresholds away from the inputs: the tree attack does not apply.
    scaled = make_pipeline(StandardScaler(), DecisionTreeClassifier(random_state=0)).fit(x_train, y_train)
    report = evaluate_robustness(scaled, x_test, y_test, sample_size=40, settings=settings)
    assert report["evasion"]["tree"]["applicable"] is False
    assert "Pipeline(StandardScaler, DecisionTreeClassifier)" in report["evasion"]["tree"]["reason"]


@hsettings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_a_regressor_is_evaluated_by_error_and_shift_and_an_evasion_threshold_fails_closed(seed):
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(300, 4))
    y = x @ np.array([3.0, -2.0, 1.0, 0.5]) + rng.normal(scale=0.1, size=300)
    model = Ridge().fit(x[:200], y[:200])
    report = evaluate_robustness(model, x[200:], y[200:], sample_size=80, seed=seed)
    metrics = report["metrics"]
    assert report["model"]["task"] == "regression"
    assert not report["evasion"]["hopskipjump"]["applicable"] and "classifiers" in report["evasion"]["tree"]["reason"]
    # Noise of a tenth of a standard deviation moves a linear model's predictions, and its error grows.
    assert metrics["relative_change_noise"] > 0 and metrics["rmse_increase_noise"] > 0
    assert metrics["rmse_clean"] < 0.5
    assert evaluate_robustness(model, x[200:], y[200:], sample_size=80, seed=seed) == report  # reproducible
    with pytest.raises(RobustnessBelowThreshold, match="accuracy_under_attack"):
        check_robustness(report, {"accuracy_under_attack": ">= 0.6"})
    assert check_robustness(report, {"relative_change_noise": "<= 5"})
