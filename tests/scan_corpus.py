"""Build the scanner's test corpus in a folder: benign models and malicious samples.

Example:
    >>> import pathlib, tempfile
    >>> from scan_corpus import write_benign_sklearn
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
        "svc": SVC().fit(X, y),
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


def write_benign_sklearn(
    folder: Path, *, compressions: tuple[str, ...] = JOBLIB_COMPRESSIONS, models: tuple[str, ...] | None = None
) -> list[Path]:
    """Write every model (or those named) with pickle protocols 2-5, joblib (plain and compressed) and skops."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, model in fitted_models().items():
        if models is not None and name not in models:
            continue
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


# -- malicious samples --------------------------------------------------------
# Each entry: bytes, and the (what, reason fragment) of a finding it must raise.


def _sg(module: str, name: str) -> bytes:
    """Protocol-4 STACK_GLOBAL of string constants."""
    m, n = module.encode(), name.encode()
    return b"\x8c" + bytes([len(m)]) + m + b"\x8c" + bytes([len(n)]) + n + b"\x93"


def _call_true(callable_ops: bytes) -> bytes:
    """Protocol 4: callable('true')."""
    return b"\x80\x04" + callable_ops + b"\x8c\x04true\x85R."


class _ReduceSystem:
    """Pickles as os.system('true'); dumped, never loaded."""

    def __reduce__(self) -> tuple[Any, ...]:
        import os

        return (os.system, ("true",))


def malicious_pickles() -> dict[str, tuple[bytes, str, str]]:
    """Return named malicious pickles with the finding each must raise."""
    system = pickle.dumps(_ReduceSystem(), protocol=4)
    samples: dict[str, tuple[bytes, str, str]] = {
        "pickle_reduce_class_os_system": (system, "posix.system", "not in the allowlist"),
        "pickle_global_os_system_proto0": (b"cos\nsystem\n(S'true'\ntR.", "os.system", "GLOBAL: global not in the allowlist"),
        "pickle_inst_os_system_proto0": (b"(S'true'\nios\nsystem\n.", "os.system", "INST: global not in the allowlist"),
        "pickle_obj_os_system": (b"(cos\nsystem\nS'true'\no.", "os.system", "GLOBAL: global not in the allowlist"),
        "pickle_py2_builtin_eval_compat_name": (b"c__builtin__\neval\n(S'1'\ntR.", "builtins.eval", "not in the allowlist"),
        "pickle_stack_global_os_system": (_call_true(_sg("os", "system")), "os.system", "STACK_GLOBAL: global not in the allowlist"),
        "pickle_stack_global_via_memo": (
            b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94\x8c\x05numpy\x8c\x05dtype\x93"
            b"0h\x00h\x01\x93\x8c\x04true\x85R.",
            "os.system",
            "STACK_GLOBAL: global not in the allowlist",
        ),
        "pickle_stack_global_computed_name": (
            # module = _codecs.encode('os', 'latin1') (an allowlisted call): not a constant.
            b"\x80\x04" + _sg("_codecs", "encode") + b"\x8c\x02os\x8c\x06latin1\x86R\x8c\x06system\x93\x8c\x04true\x85R.",
            "STACK_GLOBAL",
            "cannot be resolved statically",
        ),
        "pickle_getattr_import_chain": (
            b"\x80\x04" + _sg("builtins", "getattr") + _sg("builtins", "__import__")
            + b"\x8c\x02os\x85R\x8c\x06system\x86R\x8c\x04true\x85R.",
            "builtins.getattr",
            "getattr of anything but a global and a constant name",
        ),
        "pickle_reduce_on_computed_callable": (
            b"\x80\x04" + _sg("builtins", "getattr") + _sg("builtins", "__import__")
            + b"\x8c\x02os\x85R\x8c\x06system\x86R\x8c\x04true\x85R.",
            "REDUCE",
            "calls a value that is not a global",
        ),
        "pickle_operator_attrgetter": (_call_true(_sg("operator", "attrgetter")), "operator.attrgetter", "not in the allowlist"),
        "pickle_functools_partial": (_call_true(_sg("functools", "partial")), "functools.partial", "not in the allowlist"),
        "pickle_numpy_runstring": (
            _call_true(_sg("numpy.testing._private.utils", "runstring")),
            "numpy.testing._private.utils.runstring",
            "not in the allowlist",
        ),
        "pickle_pydoc_locate": (_call_true(_sg("pydoc", "locate")), "pydoc.locate", "not in the allowlist"),
        "pickle_pkgutil_resolve_name": (_call_true(_sg("pkgutil", "resolve_name")), "pkgutil.resolve_name", "not in the allowlist"),
        "pickle_importlib_import_module": (
            _call_true(_sg("importlib", "import_module")), "importlib.import_module", "not in the allowlist"
        ),
        "pickle_code_interactive_interpreter": (
            _call_true(_sg("code", "InteractiveInterpreter.runsource")),
            "code.InteractiveInterpreter.runsource",
            "not in the allowlist",
        ),
        "pickle_pip_internal_main": (_call_true(_sg("pip._internal", "main")), "pip._internal.main", "not in the allowlist"),
        "pickle_bdb_run": (_call_true(_sg("bdb", "Bdb.run")), "bdb.Bdb.run", "not in the allowlist"),
        "pickle_cprofile_run": (_call_true(_sg("cProfile", "run")), "cProfile.run", "not in the allowlist"),
        "pickle_timeit": (_call_true(_sg("timeit", "timeit")), "timeit.timeit", "not in the allowlist"),
        "pickle_nested_pickle_loads": (_call_true(_sg("pickle", "loads")), "pickle.loads", "not in the allowlist"),
        "pickle_nested_c_pickle_loads": (_call_true(_sg("_pickle", "loads")), "_pickle.loads", "not in the allowlist"),
        "pickle_zipimport": (_call_true(_sg("zipimport", "zipimporter")), "zipimport.zipimporter", "not in the allowlist"),
        "pickle_runpy": (_call_true(_sg("runpy", "_run_code")), "runpy._run_code", "not in the allowlist"),
        "pickle_sklearn_helper_not_a_class": (
            # A module prefix allowlist would accept this: sklearn's own helper imports by name.
            _call_true(_sg("sklearn.utils._testing", "ignore_warnings")),
            "sklearn.utils._testing.ignore_warnings",
            "not in the allowlist",
        ),
        "pickle_unicode_module_name": (_call_true(_sg("\u043es", "system")), "\u043es.system", "not in the allowlist"),
        "pickle_ext1_extension_registry": (b"\x80\x02\x82\x01)R.", "EXT1", "extension registry"),
        "pickle_ext4_extension_registry": (b"\x80\x02\x84\x01\x00\x00\x00)R.", "EXT4", "extension registry"),
        "pickle_persid_proto0": (b"Pstorage\n.", "PERSID", "persistent id"),
        "pickle_binpersid": (b"\x80\x02X\x01\x00\x00\x00aQ.", "BINPERSID", "persistent id"),
        "pickle_next_buffer": (b"\x80\x05\x97.", "NEXT_BUFFER", "out-of-band"),
        "pickle_junk_after_stop": (pickle.dumps([1, 2]) + b"cos\nsystem\n(S'true'\ntR.", "STOP", "bytes after the end"),
        "pickle_second_stream_after_stop": (pickle.dumps(1, protocol=2) + system, "STOP", "bytes after the end"),
        "pickle_truncated": (pickle.dumps(list(range(100)), protocol=4)[:-5], "BININT1", "truncated"),
        "pickle_deeply_nested": (b"\x80\x04" + b"(" * 5000 + b"t" * 5000 + b".", "MARK", "nested deeper"),
        "pickle_memo_get_unset": (b"\x80\x04h\x07.", "BINGET", "never stored"),
        "pickle_codecs_encode_other_codec": (
            b"\x80\x04" + _sg("_codecs", "encode") + b"\x8c\x02ab\x8c\x06base64\x86R.",
            "_codecs.encode",
            "only _codecs.encode",
        ),
        "pickle_protocol_6": (b"\x80\x06N.", "PROTO", "unsupported pickle protocol"),
        "pickle_proto0_global_split_across_lines": (
            b"cos\nsys\ntem\n.", "os.sys", "not in the allowlist"
        ),
    }
    return samples


def joblib_object_array_os_system(path: Path) -> Path:
    """A joblib file whose object array pickles os.system inline."""
    arr = np.empty(2, dtype=object)
    arr[0] = _ReduceSystem()
    arr[1] = 1
    joblib.dump({"w": np.arange(3.0), "objs": arr}, path)
    return path


def joblib_wrapper_truncated(path: Path) -> Path:
    """A joblib file cut inside its raw array bytes."""
    joblib.dump({"w": np.arange(1000.0)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def joblib_dtype_elsize_differential(path: Path) -> Path:
    """A joblib file whose dtype state says elsize=1 for an 'f8' array (found in review).

    numpy ignores elsize for fixed-size types, so joblib.load reads 8 bytes per element
    and resumes the pickle where a hidden ``os.system`` call waits; a scanner that trusts
    elsize skips 1 byte per element and sees only a harmless BINBYTES blob. Never loaded.
    """
    import struct

    import joblib

    benign = path.with_suffix(".benign")
    joblib.dump(np.arange(16, dtype="f8"), benign, protocol=2)
    b = bytearray(benign.read_bytes())
    benign.unlink()
    i = b.index(b"J\xff\xff\xff\xff")  # the first BININT -1 in the dtype state: elsize
    b[i : i + 5] = b"J" + struct.pack("<i", 1)
    build = b.index(b"K\x10ub") + 3
    pad = b[build + 1]
    head = bytes(b[: build + 2 + pad])
    n, item = 16, 8
    tail = b"0" + b"cos\nsystem\n(S'true'\ntR."
    region = bytearray(n * item)
    region[n : n + 5] = b"B" + struct.pack("<I", n * item - n - 5 + len(tail))
    path.write_bytes(head + bytes(region) + tail + b"0.")
    return path


def zip_bytes(members: list[tuple[Any, bytes]]) -> bytes:
    """Build a zip from (name or ZipInfo, data) pairs, duplicates allowed."""
    import zipfile

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
            for name, data in members:
                z.writestr(name, data)
    return buf.getvalue()


def tar_bytes(members: list[tuple[Any, bytes]], mode: str = "w") -> bytes:
    """Build a tar from (name or TarInfo, data) pairs."""
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as t:
        for info, data in members:
            if isinstance(info, str):
                info = tarfile.TarInfo(info)
                info.size = len(data)
            t.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return buf.getvalue()


def torch_like_zip(payload: bytes | None = None) -> bytes:
    """A PyTorch-style archive: archive/data.pkl with a storage persistent id, archive/data/0."""
    storage = b"\x80\x02(X\x07\x00\x00\x00storage" + b"ctorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x04tQ"
    data_pkl = (
        b"\x80\x02ccollections\nOrderedDict\n)R"
        b"X\x06\x00\x00\x00weightctorch._utils\n_rebuild_tensor_v2\n(" + storage[2:]
        + b"K\x00K\x04\x85K\x01\x85\x89ccollections\nOrderedDict\n)RtRs."
    )
    if payload is not None:
        data_pkl = payload
    return zip_bytes([("archive/data.pkl", data_pkl), ("archive/data/0", struct.pack("<4f", 1, 2, 3, 4)), ("archive/version", b"3\n")])


def safetensors_bytes() -> bytes:
    """A safetensors file of one float32 tensor, written by hand (the format is an 8-byte length and JSON)."""
    import json

    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    return len(header).to_bytes(8, "little") + header + struct.pack("<2f", 1.0, 2.0)


# -- the benign corpus: every estimator that fits on a small table, pandas, stdlib, numpy ----

#: Parameters that make fitting on a 40-row table fast (set only where the estimator has them).
_FAST = {"max_iter": 5, "n_estimators": 3, "n_init": 1, "cv": 2, "Cs": 2, "n_alphas": 3, "max_depth": 3,
         "n_components": 2, "n_clusters": 2, "n_neighbors": 3, "n_resampling": 2, "max_trials": 3}
_SKIP = {"TSNE"}  # a 250-iteration minimum: seconds, and it keeps no model


def _table() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = np.abs(rng.normal(size=(40, 4))) + 0.1
    y = (X[:, 0] > X[:, 1]).astype(int)
    return X, y


def fitted_estimators() -> dict[str, Any]:
    """Every classifier, regressor, transformer and clusterer of ``sklearn.utils.all_estimators()``
    that fits on a small table (meta-estimators get a small base estimator), fitted."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
    from sklearn.utils import all_estimators

    X, y = _table()
    out: dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, cls in all_estimators(type_filter=["classifier", "regressor", "transformer", "cluster"]):
            if name in _SKIP:
                continue
            is_reg = "Regressor" in name or name.endswith(("Regression", "CV", "Net", "Lasso", "Lars", "SVR"))
            base = (lambda: Ridge()) if is_reg else (lambda: LogisticRegression(max_iter=50))
            tree = (lambda: DecisionTreeRegressor(max_depth=2)) if is_reg else (lambda: DecisionTreeClassifier(max_depth=2))
            attempts: list[dict[str, Any]] = [{}, {"estimator": base()}, {"estimators": [("a", base()), ("b", tree())]},
                                              {"transformers": [("s", "passthrough", [0, 1])]},
                                              {"transformer_list": [("s", "passthrough")]}]
            for extra in attempts:
                try:
                    est = cls(**extra)
                    params = est.get_params(deep=False)
                    est.set_params(**{k: v for k, v in _FAST.items() if k in params})
                    yy = np.c_[y, 1 - y] if name.startswith("MultiTask") or name in ("CCA", "PLSCanonical", "PLSSVD") else y
                    try:
                        est.fit(X, yy)
                    except (TypeError, ValueError):
                        est.fit(X)
                except Exception:  # noqa: BLE001 - an estimator that does not fit this table is left out
                    continue
                out[name] = est
                break
    return out


def pandas_objects() -> dict[str, Any]:
    """Series and DataFrames with each kind of index and of dtype."""
    import pandas as pd

    n = 4
    indexes = {
        "range": pd.RangeIndex(n),
        "int": pd.Index([3, 1, 2, 0]),
        "float": pd.Index([0.5, 1.5, 2.5, 3.5]),
        "str": pd.Index(list("abcd")),
        "object": pd.Index(["a", 1, 2.0, None], dtype=object),
        "datetime": pd.date_range("2024-01-01", periods=n),
        "datetime_tz": pd.date_range("2024-01-01", periods=n, tz="UTC"),
        "timedelta": pd.timedelta_range("1D", periods=n),
        "period": pd.period_range("2024-01", periods=n, freq="M"),
        "categorical": pd.CategoricalIndex(list("abab")),
        "interval": pd.interval_range(0, n),
        "multi": pd.MultiIndex.from_product([["x", "y"], [1, 2]]),
        "bool": pd.Index([True, False, True, False]),
    }
    columns = {
        "int": np.arange(n), "float": np.linspace(0, 1, n), "bool": np.array([True, False] * 2),
        "object": np.array(["a", None, 1, 2.5], dtype=object), "string": pd.array(list("wxyz"), dtype="string"),
        "category": pd.Categorical(list("abab")), "datetime": pd.date_range("2024-01-01", periods=n),
        "datetime_tz": pd.date_range("2024-01-01", periods=n, tz="Europe/Paris"),
        "timedelta": pd.to_timedelta(np.arange(n), unit="s"), "period": pd.period_range("2024", periods=n, freq="Y"),
        "interval": pd.arrays.IntervalArray.from_breaks(range(n + 1)), "Int64": pd.array([1, None, 3, 4], dtype="Int64"),
        "Float64": pd.array([1.5, None, 3.0, 4.0], dtype="Float64"), "boolean": pd.array([True, None, False, True], dtype="boolean"),
        "sparse": pd.arrays.SparseArray([0, 0, 1, 0]),
    }
    out: dict[str, Any] = {}
    for iname, index in indexes.items():
        out[f"frame_index_{iname}"] = pd.DataFrame({"v": np.arange(n)}, index=index)
        out[f"series_index_{iname}"] = pd.Series(np.arange(n), index=index)
    for cname, col in columns.items():
        out[f"series_{cname}"] = pd.Series(col)
    out["frame_all_dtypes"] = pd.DataFrame(columns)
    return out


def stdlib_values() -> dict[str, Any]:
    """Standard-library value types that pickles commonly carry."""
    import collections
    import datetime as dt
    import decimal
    import fractions

    tz = dt.timezone(dt.timedelta(hours=2), "X")
    return {
        "numbers": [1, -(2**70), 1.5, float("nan"), complex(1, -2), decimal.Decimal("1.10"), fractions.Fraction(1, 3), True],
        "ranges": [range(10), range(1, 10, 3)],
        "sets": [set([1, 2]), frozenset({"a"}), set()],
        "bytes": [b"\x00\xff", bytearray(b"abc"), bytearray()],
        "dates": [dt.datetime(2024, 1, 2, 3, 4, 5, 6), dt.datetime(2024, 1, 2, tzinfo=tz), dt.date(2024, 2, 29),
                  dt.time(12, 30, tzinfo=dt.timezone.utc), dt.timedelta(days=-1, seconds=5), dt.timezone.utc, tz],
        "containers": [collections.OrderedDict(a=1), collections.defaultdict(list, {"k": [1]}), (1, (2, (3,))), {"a": [None]}],
        "slice": [slice(1, None, 2)],
    }


def numpy_values() -> dict[str, Any]:
    """numpy arrays pickles carry: object arrays, structured, masked-free scalars, a random generator."""
    return {
        "object_array": np.array(["a", None, 1.5, (1, 2)], dtype=object),
        "nested_object": np.array([np.arange(3), np.array(["x"])], dtype=object),
        "structured": np.zeros(3, dtype=[("a", "<f8"), ("b", "<i4"), ("c", "U3")]),
        "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        "scalars": [np.float32(1.5), np.int64(-3), np.bool_(True), np.str_("s"), np.datetime64("2024-01-01")],
        "generator": np.random.default_rng(1),
        "random_state": np.random.RandomState(2),
    }


def torch_legacy_bytes() -> bytes:
    """A file in torch.save's legacy format (``_use_new_zipfile_serialization=False``), written by hand:
    pickles of the magic number, the protocol version and the system info, the object (a tensor
    whose storage is a persistent id), the storage keys, then the storage's element count and bytes."""
    magic = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
    version = pickle.dumps(1001, protocol=2)
    sysinfo = pickle.dumps(
        {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2
    )
    storage = b"(X\x07\x00\x00\x00storage" + b"ctorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x04NtQ"
    obj = (
        b"\x80\x02ccollections\nOrderedDict\n)R"
        b"X\x06\x00\x00\x00weightctorch._utils\n_rebuild_tensor_v2\n(" + storage
        + b"K\x00K\x04\x85K\x01\x85\x89ccollections\nOrderedDict\n)RtRs."
    )
    keys = pickle.dumps(["0"], protocol=2)
    return magic + version + sysinfo + obj + keys + struct.pack("<q", 4) + struct.pack("<4f", 1, 2, 3, 4)
