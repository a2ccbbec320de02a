"""No benign model is refused: a corpus generated here, from the installed libraries.

Every estimator of ``sklearn.utils.all_estimators()`` that fits on a small table
(classifiers, regressors, transformers, clusterers), pickled with protocols 2 to
5, with joblib plain and in every compression (zlib, gzip, bz2, lzma, xz, lz4),
and with skops; pandas Series and DataFrames with each kind of index and dtype
(pickle, ``to_pickle`` compressed, joblib); numpy object arrays, scalars and
generators, ``.npy`` with objects, ``.npz``; standard-library value types; and
PyTorch files in the zip and legacy formats (written by hand: torch is not a
test dependency). Every file must be safe.
"""

from __future__ import annotations

import io
import pickle
import time
import warnings
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from tests import scan_corpus as corpus

from chainproof.scan import Allowlist, scan_path

COMPRESSIONS = ("zlib", "gzip", "bz2", "lzma", "xz", "lz4")


def _dump_all(folder: Path, name: str, obj: Any, *, compressions: tuple[str, ...]) -> None:
    for proto in (2, 3, 4, 5):
        (folder / f"{name}.p{proto}.pkl").write_bytes(pickle.dumps(obj, protocol=proto))
    joblib.dump(obj, folder / f"{name}.joblib")
    for comp in compressions:
        joblib.dump(obj, folder / f"{name}.{comp}.joblib", compress=(comp, 1))


@pytest.fixture(scope="module")
def corpus_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, float]]:
    import pandas as pd
    import skops.io as sio

    root = tmp_path_factory.mktemp("benign-corpus")
    timing: dict[str, float] = {}
    t = time.perf_counter()
    estimators = corpus.fitted_estimators()
    timing["fit"] = time.perf_counter() - t
    assert len(estimators) >= 150, sorted(estimators)
    t = time.perf_counter()
    models = root / "estimators"
    models.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, est in sorted(estimators.items()):
            # Every estimator in every protocol, plain joblib and joblib in every compression.
            _dump_all(models, name, est, compressions=COMPRESSIONS)
            try:
                sio.dump(est, models / f"{name}.skops")
            except Exception:  # noqa: BLE001 - skops cannot write a few estimators (it says which)
                pass
    data = root / "data"
    data.mkdir()
    values = {**corpus.pandas_objects(), **corpus.stdlib_values(), **corpus.numpy_values()}
    for name, obj in values.items():
        _dump_all(data, name, obj, compressions=COMPRESSIONS if name == "frame_all_dtypes" else ())
    frame = values["frame_all_dtypes"]
    for comp in ("gzip", "bz2", "xz"):
        pd.to_pickle(frame, data / f"frame.{comp}.pkl", compression=comp)
    np.save(data / "objects.npy", np.array(["a", None, (1, 2)], dtype=object), allow_pickle=True)
    np.save(data / "structured_objects.npy", np.zeros(2, dtype=[("a", "f8"), ("b", "O")]), allow_pickle=True)
    np.savez(data / "arrays.npz", x=np.arange(4.0), objs=np.array([None, "b"], dtype=object))
    np.savez_compressed(data / "arrays_compressed.npz", x=np.arange(4.0), s=np.array(["a", "bc"]))
    (data / "model.pt").write_bytes(corpus.torch_like_zip())
    (data / "legacy.pt").write_bytes(corpus.torch_legacy_bytes())
    buf = io.BytesIO()
    joblib.dump({"X": np.arange(10.0), "objs": np.array([{"a": 1}], dtype=object)}, buf, compress=3)
    (data / "mixed.joblib").write_bytes(buf.getvalue())
    timing["write"] = time.perf_counter() - t
    return root, timing


def test_every_benign_file_is_safe(corpus_folder: tuple[Path, dict[str, float]]) -> None:
    root, timing = corpus_folder
    t = time.perf_counter()
    reports = scan_path(root, allowlist=Allowlist.default())
    timing["scan"] = time.perf_counter() - t
    refused = [str(f) for r in reports for f in r.findings]
    assert refused == [], f"{len(refused)} findings in {len(reports)} files, first: {refused[:5]}"
    kinds = {r.kind for r in reports}
    assert {"pickle", "joblib", "skops", "npy", "npz", "pytorch", "pytorch-legacy"} <= kinds, kinds
    assert {f"joblib+{c}" for c in COMPRESSIONS} <= kinds, kinds
    assert len(reports) > 1400, len(reports)
    print(f"benign corpus: {len(reports)} files, 0 refused; timing {timing}")


def test_a_class_missing_from_the_list_is_refused(corpus_folder: tuple[Path, dict[str, float]]) -> None:
    # The corpus test fails closed: take one estimator's class out of the list and its files are refused.
    root, _ = corpus_folder
    doc = Allowlist.default()
    narrowed = Allowlist(
        version=doc.version, source="narrowed", sha256="", generated_from=doc.generated_from,
        entries=doc.entries - {("sklearn.svm._classes", "SVC")},
        callable=doc.callable, buildable=doc.buildable,
    )
    reports = scan_path(root / "estimators" / "SVC.p4.pkl", allowlist=narrowed)
    assert "sklearn.svm._classes.SVC" in {f.what for r in reports for f in r.findings}
