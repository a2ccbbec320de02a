"""The built-in trainer on real tables: categorical strings, missing cells, drop, regression, refusals."""

from __future__ import annotations

import csv
import math
import random
import tempfile
from pathlib import Path

import joblib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chainproof.errors import ColumnError, InputError
from chainproof.scan import scan_path, summarize
from chainproof.train import (
    CLASSIFIERS,
    REGRESSORS,
    _read_table,
    prepare_rows,
    train_classifier,
    train_table,
)

BREAST_CANCER = Path(__file__).resolve().parents[2] / "sdk" / "chainproof" / "data" / "breast_cancer.csv"
PLANS = {"basic": 1.2, "pro": 0.0, "enterprise": -1.4}
REGIONS = {"north": 0.3, "south": -0.2, "east": 0.0, "west": 0.5}


def _write(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def _churn_rows(n: int, seed: int) -> list[list[object]]:
    """A churn-like table: an ID, two categorical string columns, numbers, ~5% empty cells each."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        plan, region = rng.choice(list(PLANS)), rng.choice(list(REGIONS))
        tenure = rng.randint(0, 72)
        charges = round(rng.uniform(20, 120), 2)
        logit = PLANS[plan] + REGIONS[region] - 0.06 * tenure + 0.02 * (charges - 70) + 1.0
        churned = "yes" if rng.random() < 1 / (1 + math.exp(-3 * logit)) else "no"
        cells: list[object] = [f"C{i:05d}", plan, region, tenure, charges, churned]
        for j in (1, 2, 3, 4):
            if rng.random() < 0.05:
                cells[j] = ""
        rows.append(cells)
    return rows


CHURN_HEADER = ["customer_id", "plan", "region", "tenure", "monthly_charges", "churned"]


@pytest.fixture(scope="module")
def churn_csv(tmp_path_factory) -> Path:
    return _write(tmp_path_factory.mktemp("churn") / "churn.csv", CHURN_HEADER, _churn_rows(2000, seed=1))


@pytest.fixture(scope="module")
def house_csv(tmp_path_factory) -> Path:
    """A regression table: price is linear in area and rooms, shifted by a categorical city, plus noise."""
    rng = random.Random(2)
    rows = []
    for i in range(1500):
        area, rooms = rng.uniform(30, 200), rng.randint(1, 6)
        city = rng.choice(["paris", "lyon", "lille"])
        price = 3.0 * area + 10.0 * rooms + {"paris": 150.0, "lyon": 60.0, "lille": 0.0}[city] + rng.gauss(0, 20)
        rows.append([i, round(area, 1) if rng.random() > 0.03 else "", rooms, city if rng.random() > 0.03 else "",
                     round(price, 2)])
    return _write(tmp_path_factory.mktemp("house") / "house.csv", ["id", "area", "rooms", "city", "price"], rows)


def test_trains_a_classifier_on_categorical_strings_and_empty_cells(churn_csv, tmp_path):
    result = train_table(churn_csv, target="churned", drop=["customer_id"], model_dir=tmp_path / "m",
                         estimator="logistic_regression")
    assert result.task == "classification" and result.target == "churned" and result.classes == ["no", "yes"]
    assert result.features == [
        {"name": "plan", "type": "categorical", "categories": ["basic", "enterprise", "pro"]},
        {"name": "region", "type": "categorical", "categories": ["east", "north", "south", "west"]},
        {"name": "tenure", "type": "numeric"},
        {"name": "monthly_charges", "type": "numeric"},
    ]
    m = result.metrics
    assert m["rows"] == 2000 and m["train_rows"] + m["test_rows"] == 2000
    # The generating model is logistic: a sound pipeline gets most rows right; a constant guess does not.
    majority = max(sum(r[-1] == c for r in _churn_rows(2000, 1)) for c in ("yes", "no")) / 2000
    assert m["accuracy"] > max(0.75, majority + 0.1), m
    assert m["roc_auc"] > 0.8 and 0 < m["f1"] <= 1


def test_the_saved_pipeline_reloads_and_predicts_raw_rows_in_the_recorded_order(churn_csv, tmp_path):
    result = train_table(churn_csv, target="churned", drop=["customer_id"], model_dir=tmp_path / "m",
                         estimator="random_forest")
    model = joblib.load(result.model_path)  # our own file, written just now by this test
    assert [type(s).__name__ for s in model.named_steps.values()] == ["ColumnTransformer", "RandomForestClassifier"]
    with open(churn_csv, newline="") as f:
        raw = list(csv.DictReader(f))
    x = prepare_rows(raw, features=result.features)
    assert x.shape == (2000, 4) and x.dtype == object
    predicted = model.predict(x)
    truth = np.asarray([r["churned"] for r in raw])
    assert (predicted == truth).mean() > 0.75
    # The same rows built by hand (numbers, strings, NaN for an empty cell) in the recorded order: same answers.
    names = result.feature_names
    by_hand = np.empty((len(raw), len(names)), dtype=object)
    for i, r in enumerate(raw):
        for j, f in enumerate(result.features):
            cell = r[f["name"]]
            by_hand[i, j] = math.nan if cell == "" else (float(cell) if f["type"] == "numeric" else cell)
    assert (model.predict(by_hand) == predicted).all()
    # Sequences in the recorded order, an unseen category and missing cells predict without error.
    odd = prepare_rows([["platinum", None, "", "45.5"], ["pro", "west", 12, 80.0]], features=result.features)
    assert len(model.predict(odd)) == 2


def test_every_estimator_saves_one_pipeline_the_scanner_accepts(churn_csv, house_csv, tmp_path):
    for task, table, target, names in (("classification", churn_csv, "churned", CLASSIFIERS),
                                       ("regression", house_csv, "price", REGRESSORS)):
        for name in names:
            out = tmp_path / task / name
            params = '{"n_estimators": 20}' if name == "random_forest" else "{}"
            result = train_table(table, target=target, task=task, drop=[CHURN_HEADER[0] if task ==
                                 "classification" else "id"], model_dir=out, estimator=name, hyperparameters=params)
            assert sorted(p.name for p in out.iterdir()) == ["model.joblib"]
            report = summarize(scan_path(out))
            assert report["verdict"] == "safe", (task, name, report)
            assert result.task == task


def test_an_identifier_column_that_is_not_dropped_is_named(churn_csv, tmp_path):
    with pytest.raises(ColumnError) as err:
        train_table(churn_csv, target="churned", model_dir=tmp_path / "m", estimator="decision_tree")
    assert err.value.column == "customer_id"
    assert "2000 distinct values" in str(err.value) and "drop it" in str(err.value)
    assert not (tmp_path / "m").exists()


def test_drop_names_an_unknown_column_and_refuses_the_target(churn_csv, tmp_path):
    with pytest.raises(ColumnError, match=r"column 'cust_id': named in drop, but the table has no such column"):
        train_table(churn_csv, target="churned", drop=["cust_id"], model_dir=tmp_path / "m")
    with pytest.raises(ColumnError, match=r"column 'churned': is the target"):
        train_table(churn_csv, target="churned", drop=["customer_id", "churned"], model_dir=tmp_path / "m")
    with pytest.raises(InputError, match=r"no feature columns left"):
        train_table(churn_csv, target="churned", drop=CHURN_HEADER[:-1], model_dir=tmp_path / "m")
    result = train_table(churn_csv, target="churned", drop=["customer_id", "region", "plan"],
                         model_dir=tmp_path / "m", estimator="decision_tree")
    assert result.feature_names == ["tenure", "monthly_charges"]


def test_regression_on_a_numeric_target(house_csv, tmp_path):
    for name in ("ridge", "linear_regression", "gradient_boosting"):
        result = train_table(house_csv, target="price", task="regression", drop=["id"],
                             model_dir=tmp_path / name, estimator=name)
        m = result.metrics
        assert result.task == "regression" and result.classes == []
        assert m["r2"] > 0.5 and m["mae"] > 0 and m["rmse"] >= m["mae"], (name, m)
        assert "accuracy" not in m
    auto = train_table(house_csv, target="price", task="auto", drop=["id"], model_dir=tmp_path / "auto",
                       estimator="ridge")
    assert auto.task == "regression" and auto.metrics["r2"] > 0.9
    assert auto.features[2] == {"name": "city", "type": "categorical", "categories": ["lille", "lyon", "paris"]}


def test_refuses_a_many_valued_numeric_target_as_classification(house_csv, tmp_path):
    for call in (lambda: train_classifier(house_csv, target="price", drop=["id"], model_dir=tmp_path / "m"),
                 lambda: train_table(house_csv, target="price", drop=["id"], model_dir=tmp_path / "m")):
        with pytest.raises(ColumnError) as err:
            call()
        text = str(err.value)
        distinct = len({r[-1] for r in csv.reader(open(house_csv))}) - 1
        assert err.value.column == "price" and f"numeric with {distinct} distinct values in 1500 rows" in text
        assert "task='regression'" in text and "\n" not in text
    assert not (tmp_path / "m").exists()


def test_a_numeric_target_with_few_values_is_a_classification_target(tmp_path):
    rng = random.Random(3)
    rows = [[x, ["a", "b"][int(x > 0)], int(x > 0.5) + int(x > -0.5)] for x in (rng.uniform(-1.5, 1.5)
                                                                               for _ in range(300))]
    path = _write(tmp_path / "t.csv", ["x", "side", "band"], rows)
    result = train_table(path, target="band", task="auto", model_dir=tmp_path / "m", estimator="decision_tree")
    assert result.task == "classification" and result.classes == ["0", "1", "2"]
    assert result.metrics["accuracy"] > 0.9 and "roc_auc" not in result.metrics


@pytest.mark.parametrize(
    ("rows", "kwargs", "column", "says"),
    [
        ([[1, "", i % 2] for i in range(20)], {}, "b", "every cell is empty (20 rows)"),
        ([[i, 2, "a" if i % 3 else ""] for i in range(20)], {}, "y", "the target has 7 missing values in 20 rows "
                                                                   "(first on line 2)"),
        ([[i, "x" if i == 7 else i, "a"] for i in range(20)], {"column_types": {"b": "numeric"}}, "b",
         "declared numeric, but line 9 holds 'x'"),
        ([[i, "inf" if i == 4 else i, i % 2] for i in range(20)], {}, "b", "line 6 holds 'inf', not a finite number"),
        ([[i, i, "a" if i == 3 else i] for i in range(20)], {"task": "regression"}, "y",
         "a regression target must be numeric, but line 5 holds 'a'"),
        ([[i, i, "a"] for i in range(20)], {}, "y", "the target has 1 class, at least two are needed"),
        ([[i, i, i % 2] for i in range(20)], {"column_types": {"z": "numeric"}}, "z", "no such column"),
        ([[i, i, i % 2] for i in range(20)], {"column_types": {"b": "text"}}, "b", "column type 'text' is unknown"),
    ],
)
def test_errors_name_the_column(tmp_path, rows, kwargs, column, says):
    path = _write(tmp_path / "t.csv", ["a", "b", "y"], rows)
    with pytest.raises(ColumnError) as err:
        train_table(path, target="y", model_dir=tmp_path / "m", estimator="decision_tree", **kwargs)
    assert err.value.column == column and err.value.artifact == "t.csv"
    assert str(err.value).startswith(f"t.csv: column {column!r}: ") and says in str(err.value)
    assert not (tmp_path / "m").exists()


def test_a_declared_categorical_code_is_one_hot_encoded(tmp_path):
    rows = [[f"{i % 4:02d}", i % 4 == 1] for i in range(40)]
    path = _write(tmp_path / "t.csv", ["code", "y"], rows)
    result = train_table(path, target="y", column_types={"code": "categorical"}, model_dir=tmp_path / "m",
                         estimator="logistic_regression")
    assert result.features == [{"name": "code", "type": "categorical", "categories": ["00", "01", "02", "03"]}]
    assert result.metrics["accuracy"] == 1.0


def test_bad_parameters_are_input_errors(churn_csv, tmp_path):
    common = {"target": "churned", "drop": ["customer_id"], "model_dir": tmp_path / "m"}
    with pytest.raises(InputError, match="hyperparameters: not a JSON object"):
        train_table(churn_csv, hyperparameters="{max_depth: 3}", **common)
    with pytest.raises(InputError, match="hyperparameters for decision_tree"):
        train_table(churn_csv, estimator="decision_tree", hyperparameters='{"depth": 3}', **common)
    with pytest.raises(InputError, match="'logistic_regression': not a regression estimator"):
        train_table(churn_csv, task="regression", estimator="logistic_regression", **common)
    with pytest.raises(InputError, match="estimator 'svm': unknown"):
        train_table(churn_csv, estimator="svm", **common)
    with pytest.raises(InputError, match="task 'clustering': unknown"):
        train_table(churn_csv, task="clustering", **common)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="more than 100 rows"):
        train_table(churn_csv, max_rows=100, **common)
    # The step prefix earlier releases needed for logistic_regression still works.
    result = train_table(churn_csv, estimator="logistic_regression", hyperparameters='{"logisticregression__C": 0.5}',
                         **common)
    assert result.metrics["accuracy"] > 0.7


def test_the_numeric_breast_cancer_sample_still_trains(tmp_path):
    result = train_classifier(BREAST_CANCER, target="malignant", model_dir=tmp_path / "m")
    assert result.metrics["accuracy"] > 0.9 and result.metrics["roc_auc"] > 0.95
    assert len(result.features) == 30 and all(f["type"] == "numeric" for f in result.features)
    x = prepare_rows(list(csv.DictReader(open(BREAST_CANCER))), features=result.features)
    assert x.dtype == np.float64
    assert summarize(scan_path(tmp_path / "m"))["verdict"] == "safe"


# --------------------------------------------------------------------------- generated tables

CELLS = st.one_of(
    st.sampled_from(["", " ", "1", "2.5", "-3", "1e3", "0", "7", "a", "b", "nan", "inf", "-Infinity", "x y",
                     "1_0", "\n", '"q"', "a,b", "١٢"]),
    st.text(alphabet="ab19.-e +", max_size=4),
)
NAMES = st.lists(st.text(alphabet="abcxyz_", min_size=1, max_size=5), min_size=2, max_size=5, unique=True)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _expected_type(cells: list[str]) -> str:
    present = [c for c in cells if c.strip()]
    return "numeric" if all(_is_number(c) for c in present) else "categorical"


LABELS = st.sampled_from(["0", "1", "yes", "no", "2"])
QUANTITIES = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).map(repr)


@st.composite
def tables(draw):
    """Random tables; the first column is the target: labels, quantities, or a mix with missing cells."""
    header = draw(NAMES)
    n = draw(st.integers(min_value=10, max_value=30))
    kind = draw(st.sampled_from(["labels", "quantities", "one missing"]))
    target = draw(st.lists(QUANTITIES if kind == "quantities" else LABELS, min_size=n, max_size=n))
    if kind == "one missing":
        target[draw(st.integers(min_value=0, max_value=n - 1))] = ""
    features = draw(st.lists(st.lists(CELLS, min_size=len(header) - 1, max_size=len(header) - 1),
                             min_size=n, max_size=n))
    return header, [[t, *f] for t, f in zip(target, features)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table=tables(), task=st.sampled_from(["classification", "regression", "auto"]), data=st.data())
def test_random_tables_train_or_fail_naming_a_column(table, task, data):
    header, rows = table
    target = data.draw(st.sampled_from([header[0]] * 3 + header[1:]))
    with tempfile.TemporaryDirectory() as d:
        path = _write(Path(d) / "t.csv", header, rows)
        try:
            result = train_table(path, target=target, task=task, model_dir=Path(d) / "m", estimator="decision_tree")
        except ColumnError as exc:
            assert exc.column in header and "\n" not in str(exc), str(exc)
            assert not (Path(d) / "m").exists()
            return
        except InputError as exc:
            # Not a column's fault: the whole table (e.g. a stratified split that cannot fit).
            assert str(exc).startswith(("t.csv: ", "decision_tree: cannot fit t.csv")) and "\n" not in str(exc)
            return
    features = [h for h in header if h != target]
    assert result.feature_names == features
    for f, name in zip(result.features, features):
        cells = [r[header.index(name)] for r in rows]
        assert f["type"] == _expected_type(cells), (name, cells)
        if f["type"] == "categorical":
            # The categories learned from the training split: sorted, each one seen in the column.
            assert f["categories"] == sorted(set(f["categories"])), (name, cells)
            assert set(f["categories"]) <= {c for c in cells if c.strip()}, (name, cells)
    assert result.task in ("classification", "regression")


@settings(max_examples=60, deadline=None)
@given(table=tables(), chunk_rows=st.integers(min_value=1, max_value=7))
def test_reading_in_chunks_gives_the_same_columns(table, chunk_rows):
    """Differential: a column found categorical after chunks of numbers is re-read, never half-converted."""
    header, rows = table
    with tempfile.TemporaryDirectory() as d:
        path = _write(Path(d) / "t.csv", header, rows)

        def keep(h):
            return {n: None for n in h}

        def read(size):
            try:
                t = _read_table(path, keep=keep, max_rows=100, chunk_rows=size)
            except ColumnError as exc:
                return ("error", exc.column)
            out = {}
            for name, col in t.columns.items():
                values = [v for part in col.chunks for v in part]
                out[name] = (col.text, col.missing, col.first_missing, col.first_nonfinite,
                             [("nan" if isinstance(v, float) and math.isnan(v) else v) for v in values])
            return out

        small, whole = read(chunk_rows), read(10_000)
    assert small == whole
    if not isinstance(whole, tuple):
        for name in header:
            cells = [r[header.index(name)] for r in rows]
            assert whole[name][0] == (_expected_type(cells) == "categorical")


@settings(max_examples=40, deadline=None)
@given(columns=st.lists(
    st.lists(st.one_of(st.floats(-1e9, 1e9, allow_nan=False), st.just(math.nan)), min_size=12, max_size=12)
    .filter(lambda c: any(not math.isnan(v) for v in c)),
    min_size=1, max_size=4))
def test_the_saved_imputer_is_sklearns_median_imputer(columns):
    """Differential: fitted with numpy's median for speed, saved as SimpleImputer(strategy="median") with its values."""
    from sklearn.impute import SimpleImputer
    from sklearn.tree import DecisionTreeClassifier

    from chainproof.train import _as_median_imputer, _pipeline

    x = np.column_stack(columns)
    y = np.arange(12) % 2
    model = _pipeline("decision_tree", DecisionTreeClassifier(random_state=0), ["numeric"] * x.shape[1]).fit(x, y)
    _as_median_imputer(model)
    ours = model.named_steps["preprocess"].named_transformers_["numeric"].named_steps["impute"]
    theirs = SimpleImputer(strategy="median").fit(x)
    assert ours.get_params() == theirs.get_params()
    assert ours.statistics_.tolist() == theirs.statistics_.tolist()
    assert np.array_equal(ours.transform(x), theirs.transform(x))
    assert "median" == model.named_steps["preprocess"].transformers[0][1].named_steps["impute"].strategy
