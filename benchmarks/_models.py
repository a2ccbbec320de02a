"""Deterministic model files for the scan benchmark (cached; never loaded by the scanners)."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path


def big_forest(cache: Path, *, quick: bool) -> Path:
    """A joblib random forest: >= 200 MB at full size (fixed seeds), a few hundred KB in quick mode."""
    name = "forest-quick.joblib" if quick else "forest-200MB.joblib"
    path = cache / name
    if path.exists():
        return path
    import joblib
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    n, trees = (2_000, 3) if quick else (200_000, 60)
    x, y = make_classification(n_samples=n, n_features=20, n_informative=12, flip_y=0.2, random_state=0)
    model = RandomForestClassifier(n_estimators=trees, random_state=0, n_jobs=2).fit(x, y)
    tmp = path.with_suffix(".part")
    joblib.dump(model, tmp)
    os.replace(tmp, path)
    return path


def small_models(cache: Path, *, quick: bool) -> Path:
    """A folder of small model files of the kinds users ship (300 at full size, 12 in quick mode)."""
    count = 12 if quick else 300
    folder = cache / f"small-models-{count}"
    if folder.is_dir() and len(list(folder.iterdir())) == count:
        return folder
    import joblib
    import numpy as np
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    shutil.rmtree(folder, ignore_errors=True)
    tmp = folder.with_name(folder.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for i in range(count):
        x, y = make_classification(n_samples=300, n_features=10, random_state=i)
        kind = i % 5
        if kind == 0:
            joblib.dump(LogisticRegression(max_iter=500).fit(x, y), tmp / f"m{i:03d}-logreg.joblib")
        elif kind == 1:
            joblib.dump(DecisionTreeClassifier(max_depth=6, random_state=i).fit(x, y), tmp / f"m{i:03d}-tree.joblib")
        elif kind == 2:
            joblib.dump(StandardScaler().fit(x), tmp / f"m{i:03d}-scaler.joblib")
        elif kind == 3:
            rng = np.random.default_rng(i)
            joblib.dump({"w": rng.standard_normal((64, 32)), "b": rng.standard_normal(32)}, tmp / f"m{i:03d}-weights.joblib")
        else:
            rng = np.random.default_rng(i)
            with open(tmp / f"m{i:03d}-state.pkl", "wb") as f:
                pickle.dump({"epoch": i, "lr": 0.01, "history": rng.standard_normal(200).tolist()}, f, protocol=4)
    os.replace(tmp, folder)
    return folder
