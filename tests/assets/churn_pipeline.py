"""A data scientist's own pipeline, written only with ``from chainproof import dsl`` and kfp's
artifact types: chainproof's ingest and registration around their own preprocessing and training.
(The shape the README shows; tests run it with ``chainproof run --pipeline``.)"""

from kfp.dsl import Dataset, Input, Metrics, Model, Output

from chainproof import dsl
from chainproof.components import register_model, secure_ingest


@dsl.component
def preprocess(raw: Input[Dataset], features: Output[Dataset]):
    """Drop the ID column and write the features as one CSV."""
    import csv
    import os

    src = raw.path if os.path.isfile(raw.path) else os.path.join(raw.path, sorted(os.listdir(raw.path))[0])
    with open(src, newline="") as f_in, open(features.path, "w", newline="") as f_out:
        rows = csv.DictReader(f_in)
        keep = [c for c in rows.fieldnames if c != "customer_id"]
        out = csv.writer(f_out, lineterminator="\n")
        out.writerow(keep)
        for row in rows:
            out.writerow([row[c] for c in keep])


@dsl.component
def train(features: Input[Dataset], model: Output[Model], metrics: Output[Metrics]):
    """The data scientist's own scikit-learn Pipeline: one-hot categories, impute gaps, logistic regression."""
    import csv
    import os

    import joblib
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    with open(features.path, newline="") as f:
        rows = list(csv.DictReader(f))
    categorical, numeric = ["plan", "region"], ["tenure", "charges"]
    x = np.array(
        [[r[c] or np.nan for c in categorical] + [float(r[c]) if r[c] else np.nan for c in numeric] for r in rows],
        dtype=object,
    )
    y = np.array([int(r["churned"]) for r in rows])
    prep = ColumnTransformer([
        ("categorical", make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")),
         [0, 1]),
        ("numeric", SimpleImputer(strategy="median"), [2, 3]),
    ])
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0)
    clf = Pipeline([("prep", prep), ("model", LogisticRegression(max_iter=1000))]).fit(x_train, y_train)
    os.makedirs(model.path, exist_ok=True)
    joblib.dump(clf, os.path.join(model.path, "model.joblib"))
    metrics.log_metric("accuracy", float(clf.score(x_test, y_test)))


@dsl.pipeline(name="churn")
def churn(source_uri: str, expected_sha256: str):
    raw = secure_ingest(source_uri=source_uri, expected_sha256=expected_sha256)
    feats = preprocess(raw=raw.outputs["dataset"])
    trained = train(features=feats.outputs["features"])
    register_model(model=trained.outputs["model"], model_name="churn")


@dsl.component
def broken_train(features: Input[Dataset], model: Output[Model]):
    """A training step of the user's own that fails on their data."""
    raise ValueError("column 'tenure' has no values")


@dsl.pipeline(name="churn-broken")
def churn_broken(source_uri: str, expected_sha256: str):
    raw = secure_ingest(source_uri=source_uri, expected_sha256=expected_sha256)
    feats = preprocess(raw=raw.outputs["dataset"])
    trained = broken_train(features=feats.outputs["features"])
    register_model(model=trained.outputs["model"], model_name="churn")


@dsl.component(role="train")
def train_profiled(features: Input[Dataset], model: Output[Model]):
    """The same training, declared as the pipeline's training step: it records the drift profile and
    the feature contract (chainproof.drift.record_profile), so serve and monitor can watch it."""
    import csv
    import os

    import joblib
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    from chainproof.drift import record_profile

    with open(features.path, newline="") as f:
        rows = list(csv.DictReader(f))
    names = ["plan", "region", "tenure", "charges"]
    x = np.array([[r["plan"] or np.nan, r["region"] or np.nan] + [float(r[c]) if r[c] else np.nan for c in names[2:]]
                  for r in rows], dtype=object)
    y = np.array([int(r["churned"]) for r in rows])
    prep = ColumnTransformer([
        ("categorical", make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")),
         [0, 1]),
        ("numeric", SimpleImputer(strategy="median"), [2, 3]),
    ])
    x_train, x_test, y_train, _ = train_test_split(x, y, test_size=0.25, random_state=0)
    clf = Pipeline([("prep", prep), ("model", LogisticRegression(max_iter=1000))]).fit(x_train, y_train)
    os.makedirs(model.path, exist_ok=True)
    joblib.dump(clf, os.path.join(model.path, "model.joblib"))
    record_profile(clf, x_train, x_test, features=names, model_dir=model.path, target="churned")


@dsl.pipeline(name="churn-profiled")
def churn_profiled(source_uri: str, expected_sha256: str):
    raw = secure_ingest(source_uri=source_uri, expected_sha256=expected_sha256)
    feats = preprocess(raw=raw.outputs["dataset"])
    trained = train_profiled(features=feats.outputs["features"])
    register_model(model=trained.outputs["model"], model_name="churn")
