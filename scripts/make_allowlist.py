"""Regenerate ``sdk/chainproof/data/allowlist-v1.json`` on purpose (a reviewed data file).

Example:
    $ python scripts/make_allowlist.py > sdk/chainproof/data/allowlist-v1.json

The list is exact names, never prefixes: every scikit-learn estimator class
(``sklearn.utils.all_estimators``), the classes and unpickle helpers real
scikit-learn models reference (trees, losses, distance metrics, neighbour
trees, binners, optimizers, kernels), and the numpy and pandas names that
pickles of arrays, data frames and their indexes use. Each helper was read:
it constructs its own type, or rebuilds a numpy/pandas value, and never calls
something it is given by name. Review the diff before committing.
"""

from __future__ import annotations

import inspect
import json
import sys
import warnings

_CLASS_MODULES = (
    "sklearn._loss._loss",
    "sklearn._loss.link",
    "sklearn._loss.loss",
    "sklearn.metrics._dist_metrics",
    "sklearn.neighbors._kd_tree",
    "sklearn.neighbors._ball_tree",
    "sklearn.tree._tree",
    "sklearn.ensemble._hist_gradient_boosting.binning",
    "sklearn.ensemble._hist_gradient_boosting.predictor",
    "sklearn.neural_network._stochastic_optimizers",
    "sklearn.gaussian_process.kernels",
)
# Functions that only construct the type they are handed (Cython and sklearn
# unpickle helpers) or rebuild numpy/pandas values from plain data.
_FUNCTIONS = {
    "sklearn.metrics._dist_metrics": ["newObj"],
    "sklearn.neighbors._kd_tree": ["newObj"],
    "sklearn.neighbors._ball_tree": ["newObj"],
    "numpy.random.bit_generator": ["__pyx_unpickle_SeedSequence", "__bit_generator_ctor"],
    "numpy.random._pickle": ["__bit_generator_ctor", "__generator_ctor", "__randomstate_ctor"],
    "pandas._libs.arrays": ["__pyx_unpickle_NDArrayBacked"],
    "pandas._libs.internals": ["_unpickle_block"],
    "pandas.core.internals.blocks": ["new_block"],
    "pandas.core.indexes.base": ["_new_Index"],
    "pandas._libs.tslibs.timestamps": ["_unpickle_timestamp"],
    "pandas._libs.tslibs.timedeltas": ["_timedelta_unpickle"],
    "pandas._libs.tslibs.nattype": ["__nat_unpickle"],
}
_BASE = {
    "builtins": ["bool", "bytearray", "bytes", "complex", "dict", "float", "frozenset", "int", "list", "object", "set", "slice", "str", "tuple"],
    "copyreg": ["_reconstructor"],
    "_codecs": ["encode"],
    "collections": ["OrderedDict", "defaultdict"],
    "datetime": ["date", "datetime", "time", "timedelta", "timezone"],
    "numpy": ["dtype", "ndarray", "matrix", "memmap", "bool_", "float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "complex64", "complex128", "str_", "bytes_", "datetime64", "timedelta64", "random.Generator"],
    "numpy.core.multiarray": ["_reconstruct", "scalar"],
    "numpy._core.multiarray": ["_reconstruct", "scalar"],
    "numpy.core.numeric": ["_frombuffer"],
    "numpy._core.numeric": ["_frombuffer"],
    "numpy.matrixlib.defmatrix": ["matrix"],
    "numpy.random._pcg64": ["PCG64"],
    "numpy.random._mt19937": ["MT19937"],
    "numpy.random.bit_generator": ["SeedSequence"],
    "numpy.random.mtrand": ["RandomState"],
    "numpy.random._generator": ["Generator"],
    "numpy.dtypes": [],
    "joblib.numpy_pickle": ["NumpyArrayWrapper"],
    "torch._utils": ["_rebuild_tensor_v2", "_rebuild_parameter"],
    "torch": ["FloatStorage", "DoubleStorage", "HalfStorage", "BFloat16Storage", "LongStorage", "IntStorage", "ShortStorage", "CharStorage", "ByteStorage", "BoolStorage", "Size"],
    "scipy.sparse._csr": ["csr_matrix", "csr_array"],
    "scipy.sparse._csc": ["csc_matrix", "csc_array"],
    "scipy.sparse._coo": ["coo_matrix", "coo_array"],
    "pandas": ["DataFrame", "Series", "Index", "RangeIndex", "MultiIndex", "DatetimeIndex", "CategoricalIndex", "Categorical", "CategoricalDtype", "StringDtype", "Timestamp", "Timedelta", "DatetimeTZDtype", "Int64Dtype", "Float64Dtype", "BooleanDtype"],
    "pandas.arrays": ["DatetimeArray", "TimedeltaArray", "StringArray", "IntegerArray", "FloatingArray", "BooleanArray", "ArrowStringArray"],
    "pandas.core.frame": ["DataFrame"],
    "pandas.core.series": ["Series"],
    "pandas.core.internals.managers": ["BlockManager", "SingleBlockManager"],
    "pandas.core.indexes.base": ["Index"],
    "pandas.core.indexes.range": ["RangeIndex"],
    "pandas.core.indexes.multi": ["MultiIndex"],
    "pandas.core.indexes.datetimes": ["DatetimeIndex"],
    "pandas.core.indexes.category": ["CategoricalIndex"],
    "pandas.core.arrays.categorical": ["Categorical"],
    "pandas.core.dtypes.dtypes": ["CategoricalDtype", "DatetimeTZDtype"],
}


def build() -> dict[str, list[str]]:
    """Return the globals, module to sorted names."""
    import importlib

    from sklearn.utils import all_estimators

    out: dict[str, set[str]] = {m: set(n) for m, n in _BASE.items() if n}
    out["numpy"].discard("random.Generator")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _, cls in all_estimators():
            out.setdefault(cls.__module__, set()).add(cls.__qualname__)
    for modname in _CLASS_MODULES:
        mod = importlib.import_module(modname)
        for name, obj in vars(mod).items():
            if inspect.isclass(obj) and getattr(obj, "__module__", None) == modname and not name.startswith("__"):
                out.setdefault(modname, set()).add(name)
    for modname, names in _FUNCTIONS.items():
        out.setdefault(modname, set()).update(names)
    return {m: sorted(n) for m, n in sorted(out.items())}


def main() -> int:
    """Print the allowlist document."""
    doc = {
        "schema": "https://chainproof.dev/scan/allowlist/v1",
        "version": 1,
        "comment": "Exact globals (module: qualified names) a scanned pickle may name. Generated by scripts/make_allowlist.py; reviewed.",
        "globals": build(),
    }
    json.dump(doc, sys.stdout, indent=1, sort_keys=False)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
