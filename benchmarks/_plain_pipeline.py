"""The same ingest -> train -> register as the reference pipeline, without any control.

No pinned digest, no scan, no attestation, no signature, no verification: what a
pipeline without chainproof does. Run with the same runner (kfp.local
``SubprocessRunner(use_venv=False)``, no kfp install per step) as the zero-trust one.
No ``from __future__ import annotations`` here: kfp reads the annotations as types.
"""


from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def plain_ingest(source_path: str, dataset: Output[Dataset]) -> None:
    """Copy the CSV in."""
    import os
    import shutil

    os.makedirs(dataset.path, exist_ok=True)
    shutil.copyfile(source_path, os.path.join(dataset.path, "data.csv"))


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def plain_train(dataset: Input[Dataset], target: str, estimator: str, model: Output[Model]) -> None:
    """Parse the CSV, fit, dump (the same work chainproof.train does, minus its checks)."""
    import csv
    import os

    import joblib
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import accuracy_score
    from sklearn.model_selection import train_test_split
    from sklearn.tree import DecisionTreeClassifier

    with open(os.path.join(dataset.path, "data.csv"), newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        t = header.index(target)
        rows, labels = [], []
        for row in reader:
            rows.append([float(v) for i, v in enumerate(row) if i != t])
            labels.append(row[t])
    x, y = np.asarray(rows, dtype=np.float64), np.asarray(labels)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    est = (DecisionTreeClassifier(random_state=0) if estimator == "decision_tree"
           else RandomForestClassifier(n_estimators=100, random_state=0))
    est.fit(x_train, y_train)
    accuracy_score(y_test, est.predict(x_test))
    os.makedirs(model.path, exist_ok=True)
    joblib.dump(est, os.path.join(model.path, "model.joblib"))


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def plain_register(model: Input[Model], registry_dir: str, model_name: str) -> str:
    """Copy the model into a registry folder."""
    import os
    import shutil

    dest = os.path.join(registry_dir, model_name, "1")
    os.makedirs(dest, exist_ok=True)
    shutil.copyfile(os.path.join(model.path, "model.joblib"), os.path.join(dest, "model.joblib"))
    return dest


@dsl.pipeline(name="plain-training")
def plain_training(source_path: str, target: str, estimator: str, registry_dir: str, model_name: str) -> str:
    """Ingest, train, register."""
    ingest = plain_ingest(source_path=source_path)
    train = plain_train(dataset=ingest.outputs["dataset"], target=target, estimator=estimator)
    return plain_register(model=train.outputs["model"], registry_dir=registry_dir, model_name=model_name).output
