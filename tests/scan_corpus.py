"""Build the scanner's test corpus in a folder: benign models and malicious samples.

Example:
    >>> import pathlib, tempfile
    >>> from tests.scan_corpus import write_benign_sklearn
    >>> files = write_benign_sklearn(pathlib.Path(tempfile.mkdtemp()))  # doctest: +SKIP

Malicious samples are written with raw opcodes or with ``__reduce__`` classes
and dumped, never loaded; their payloads are harmless (``os.system('true')``).
Each is named for what is wrong with it.
"""

from __future__ import annotations

import io
import pickle
import struct
import warnings
from pathlib import Path
from typing import Any

import joblib
import numpy as np

JOBLIB_COMPRESSIONS = ("zlib", "gzip", "bz2", "lzma", "xz", "lz4")


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    return X, y


def fitted_models() -> dict[str, Any]:
    """Return small fitted scikit-learn models of many estimator types."""
    import pandas as pd
    from sklearn.cluster import KMeans
    from sklearn.compose import ColumnTransformer
    from sklearn.decomposition import PCA
    from sklearn.ensemble import (
        GradientBoostingClassifier,
        HistGradientBoostingClassifier,
        IsolationForest,
        RandomForestClassifier,
    )
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeClassifier

    X, y = _data()
    frame = pd.DataFrame({"num": X[:, 0], "cat": np.where(X[:, 1] > 0, "a", "b"), "flag": X[:, 2] > 0})
    models: dict[str, Any] = {
        "random_forest": RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0).fit(X, y),
        "gradient_boosting": GradientBoostingClassifier(n_estimators=3, max_depth=2, random_state=0).fit(X, y),
        "hist_gradient_boosting": HistGradientBoostingClassifier(max_iter=3).fit(X, y),
        "logreg_pipeline": Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())]).fit(X, y),
        "svc": SVC(probability=False).fit(X, y),
        "kneighbors": KNeighborsClassifier(n_neighbors=3).fit(X, y),
        "decision_tree": DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y),
        "kmeans": KMeans(n_clusters=2, n_init=1, random_state=0).fit(X),
        "pca": PCA(n_components=2).fit(X),
        "isolation_forest": IsolationForest(n_estimators=3, random_state=0).fit(X),
        "column_transformer": Pipeline(
            [
                (
                    "prep",
                    ColumnTransformer(
                        [("num", StandardScaler(), ["num"]), ("cat", OneHotEncoder(handle_unknown="ignore"), ["cat"])]
                    ),
                ),
                ("clf", LogisticRegression()),
            ]
        ).fit(frame, y),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        models["mlp"] = MLPClassifier(hidden_layer_sizes=(4,), max_iter=5, random_state=0).fit(X, y)
    return models


def write_benign_sklearn(folder: Path, *, compressions: tuple[str, ...] = JOBLIB_COMPRESSIONS) -> list[Path]:
    """Write every model with pickle protocols 2-5, joblib (plain and compressed) and skops."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, model in fitted_models().items():
        for proto in (2, 3, 4, 5):
            p = folder / f"{name}.p{proto}.pkl"
            p.write_bytes(pickle.dumps(model, protocol=proto))
            out.append(p)
        p = folder / f"{name}.joblib"
        joblib.dump(model, p)
        out.append(p)
        for comp in compressions:
            p = folder / f"{name}.{comp}.joblib"
            joblib.dump(model, p, compress=(comp, 3))
            out.append(p)
        try:
            import skops.io as sio
        except ImportError:  # pragma: no cover - skops is in the test environment
            continue
        p = folder / f"{name}.skops"
        sio.dump(model, p)
        out.append(p)
    return out


def write_benign_data(folder: Path) -> list[Path]:
    """Write numpy and pandas artifacts a pipeline produces."""
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    X, y = _data()
    out = []
    np.save(folder / "x.npy", X)
    np.save(folder / "structured.npy", np.zeros(3, dtype=[("a", "<f8"), ("b", "<i4")]))
    np.save(folder / "strings.npy", np.array(["a", "bc"]))
    np.savez(folder / "arrays.npz", x=X, y=y)
    np.savez_compressed(folder / "arrays_compressed.npz", x=X, y=y)
    frame = pd.DataFrame(
        {"num": X[:, 0], "cat": pd.Categorical(np.where(y > 0, "a", "b")), "when": pd.date_range("2024-01-01", periods=len(y))}
    )
    frame.to_pickle(folder / "frame.pkl")
    frame.to_pickle(folder / "frame.pkl.gz", compression="gzip")
    joblib.dump({"X": X, "y": y, "names": np.array(["a", None], dtype=object)}, folder / "arrays.joblib")
    joblib.dump({"X": X, "names": np.array(["a", None], dtype=object)}, folder / "arrays.zlib.joblib", compress=3)
    (folder / "weights.bin").write_bytes(pickle.dumps({"w": X.astype(np.float32), "scalar": np.float64(1.5)}, protocol=5))
    (folder / "notes.txt").write_text("city,population\nParis,2100000\n")
    (folder / "config.json").write_text('{"a": 1}')
    for p in folder.iterdir():
        out.append(p)
    return out
