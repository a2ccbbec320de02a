"""Regenerate ``sdk/chainproof/data/allowlist-v2.json`` from the installed libraries, reproducibly.

Example:
    $ python scripts/make_allowlist.py > scripts/allowlist-runs/pandas-X.Y.Z.json   # one run
    $ python scripts/make_allowlist.py --union scripts/allowlist-runs/*.json \
          > sdk/chainproof/data/allowlist-v2.json                              # the shipped list
    $ python scripts/make_allowlist.py --check     # exit 1 if either differs from what it gives

The shipped list is the union of committed runs, one per set of library versions users
install (pandas 3 with the base install; pandas 2.3 beside kserve, which pins ``pandas<3``):
each run is reproducible from its versions, and the union from the runs. ``--check``
regenerates the run for the installed versions and compares it with the committed run of the
same versions (when there is one), then compares the shipped file with the union of the runs.

Run it from the repository root (it imports the benign corpus from
``tests/scan_corpus.py``). What it does:

1. builds the benign objects: every classifier, regressor, transformer and
   clusterer of ``sklearn.utils.all_estimators()`` that fits on a small table,
   pandas Series and DataFrames with each kind of index and dtype, numpy arrays
   and scalars, and standard-library value types;
2. pickles each (protocols 2 to 5, and ``joblib.dump``) and loads the bytes with
   the recording unpicklers of ``chainproof.scan._recorder`` (nothing is imported
   or called): each global is recorded with what the pickle does with it,
   ``name``, ``call`` or ``build`` (see ``chainproof.scan.allowlist.ROLES``);
3. adds every estimator class itself (named, called, reconstructed), the types
   skops reports for the same objects (named), and a short reviewed list of
   names the installed libraries cannot show (PyTorch's rebuild helpers and
   storages, numpy 1.x module paths of what numpy 2 records);
4. removes the reviewed denylist: callables that touch files, processes, the
   network, imports or ``eval`` are dropped, or kept as named only
   (``numpy.memmap``: harmless as a type, creates or truncates a file when called);
5. records the versions of Python, numpy, scipy, pandas, scikit-learn and joblib.

The output is sorted and has no timestamp: the same installed versions give the
same bytes. Review the diff before committing.
"""

from __future__ import annotations

import argparse
import fnmatch
import io
import json
import pickle
import platform
import sys
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Reviewed: named only (never called, never reconstructed).
NAME_ONLY = ["numpy.memmap", "numpy.core.memmap.memmap", "numpy._core.memmap.memmap"]
# Reviewed: never in the list, whatever pickles name them (files, processes, network, imports, eval).
DENY = [
    "numpy.load", "numpy.save*", "numpy.fromfile", "numpy.loadtxt", "numpy.genfromtxt", "numpy.tofile",
    "numpy.lib.npyio.*", "numpy.lib.format.*", "numpy.testing.*", "numpy.distutils.*", "numpy.f2py.*",
    "numpy.ctypeslib.*", "numpy.lib._npyio_impl.*", "numpy._core.records.fromfile", "numpy.rec.fromfile",
    "pandas.read_*", "pandas.io.*", "pandas.eval", "pandas.core.computation.*", "pandas.util._tester.*",
    "scipy.io.*", "scipy._lib._testutils.*", "joblib.load", "joblib.dump", "joblib.parallel.*",
    "sklearn.datasets.*", "sklearn.utils._testing.*", "sklearn.utils._show_versions.*",
    "builtins.eval", "builtins.exec", "builtins.compile", "builtins.open", "builtins.getattr", "builtins.setattr",
    "builtins.__import__", "builtins.globals", "builtins.vars", "builtins.input", "builtins.breakpoint",
]
# Reviewed (carried from allowlist v1): modules whose classes sklearn models pickle (losses,
# kernels, trees, neighbour trees, binners, optimizers); every class defined there.
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
# Reviewed (v1): unpickle helpers that only construct the type they are handed.
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

# Reviewed (v1): numpy, pandas, scipy and stdlib names pickles of arrays and frames use.
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

# Reviewed names the installed libraries cannot show: PyTorch (not installed to generate this).
STATIC: dict[str, list[str]] = {
    "torch._utils._rebuild_tensor_v2": ["call"],
    "torch._utils._rebuild_parameter": ["call"],
    "torch.Size": ["call"],
    **{f"torch.{t}Storage": [] for t in ("Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool")},
    "joblib.numpy_pickle.NumpyArrayWrapper": ["call", "build"],
    "_codecs.encode": ["call"],
}


def _benign_objects() -> dict[str, Any]:
    from tests import scan_corpus as corpus

    objects: dict[str, Any] = {}
    objects.update(corpus.fitted_estimators())
    objects.update(corpus.pandas_objects())
    objects.update(corpus.stdlib_values())
    objects.update(corpus.numpy_values())
    return objects


def _record_roles(objects: dict[str, Any]) -> dict[str, set[str]]:
    import joblib

    from chainproof.scan._recorder import record

    roles: dict[str, set[str]] = {}
    for obj in objects.values():
        streams = [(pickle.dumps(obj, protocol=p), False) for p in (2, 3, 4, 5)]
        buf = io.BytesIO()
        joblib.dump(obj, buf)
        streams.append((buf.getvalue(), True))
        for data, as_joblib in streams:
            log = record(data, joblib=as_joblib)
            if log.error:
                raise SystemExit(f"the recorder could not read a benign pickle of {type(obj).__name__}: {log.error}")
            for e in log.events:
                if e.target is None or e.kind not in ("name", "call", "build"):
                    continue
                roles.setdefault(e.target, set())
                if e.kind != "name":
                    roles[e.target].add(e.kind)
    return roles


def _skops_types(objects: dict[str, Any]) -> set[str]:
    try:
        import skops.io as sio
    except ImportError:
        return set()
    found: set[str] = set()
    for obj in objects.values():
        try:
            found |= set(sio.get_untrusted_types(data=sio.dumps(obj)))
        except Exception:  # noqa: BLE001 - an object skops cannot write is not a skops file users meet
            continue
    return found


def _reviewed() -> dict[str, set[str]]:
    """The reviewed v1 names, with roles from what each is: a class is called and reconstructed, a function called."""
    import importlib
    import inspect

    out: dict[str, set[str]] = {}
    for modname in _CLASS_MODULES:
        mod = importlib.import_module(modname)
        for name, obj in vars(mod).items():
            if inspect.isclass(obj) and getattr(obj, "__module__", None) == modname and not name.startswith("__"):
                out[f"{modname}.{name}"] = {"call", "build"}
    for modname, names in _FUNCTIONS.items():
        for name in names:
            out[f"{modname}.{name}"] = {"call"}
    for modname, names in _BASE.items():
        if modname.startswith("torch"):
            continue
        try:
            mod = importlib.import_module(modname)
        except ImportError:
            continue
        for name in names:
            obj: Any = mod
            for part in name.split("."):
                obj = getattr(obj, part, None)
            if obj is None:
                continue
            out[f"{modname}.{name}"] = {"call", "build"} if inspect.isclass(obj) else {"call"}
    return out


def build() -> dict[str, Any]:
    """Return the allowlist document."""
    import joblib
    import numpy
    import pandas
    import scipy
    import sklearn
    from sklearn.utils import all_estimators

    from chainproof.scan.allowlist import _NEVER_BUILTINS, _NEVER_MODULES

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        objects = _benign_objects()
        roles = _record_roles(objects)
        for _, cls in all_estimators():
            roles.setdefault(f"{cls.__module__}.{cls.__qualname__}", set()).update({"call", "build"})
        for dotted in _skops_types(objects):
            roles.setdefault(dotted, set())
    for dotted, extra in _reviewed().items():
        roles.setdefault(dotted, set()).update(extra)
    for dotted, extra in STATIC.items():
        roles.setdefault(dotted, set()).update(extra)
    for dotted in NAME_ONLY:
        roles.setdefault(dotted, set())
    # numpy 2 records numpy._core.*; files written with numpy 1.x name numpy.core.* (the same objects).
    for dotted in list(roles):
        if dotted.startswith("numpy._core."):
            roles.setdefault("numpy.core." + dotted[len("numpy._core."):], set()).update(roles[dotted])
    dropped = []
    for dotted in sorted(roles):
        module = dotted.rpartition(".")[0]
        never = module.split(".")[0] in _NEVER_MODULES or (module == "builtins" and dotted.rpartition(".")[2] in _NEVER_BUILTINS)
        if never or any(fnmatch.fnmatchcase(dotted, p) for p in DENY):
            dropped.append(dotted)
            del roles[dotted]
        elif dotted in NAME_ONLY:
            roles[dotted] = set()
    if dropped:
        print(f"dropped by the denylist: {', '.join(dropped)}", file=sys.stderr)
    globals_: dict[str, dict[str, list[str]]] = {}
    for dotted in sorted(roles):
        module, _, name = _split(dotted)
        globals_.setdefault(module, {})[name] = sorted(roles[dotted])
    return {
        "schema": "https://chainproof.dev/scan/allowlist/v2",
        "version": 2,
        "comment": (
            "Exact globals a scanned pickle may name, with what it may do with each beyond naming it: "
            "call (REDUCE/NEWOBJ/OBJ/INST, or handed to a call), build (reconstructed; BUILD runs __setstate__). "
            "Generated by scripts/make_allowlist.py from the libraries below; reviewed."
        ),
        "generated_from": {
            "python": platform.python_version(),
            "numpy": numpy.__version__,
            "scipy": scipy.__version__,
            "pandas": pandas.__version__,
            "scikit-learn": sklearn.__version__,
            "joblib": joblib.__version__,
        },
        "globals": {m: globals_[m] for m in sorted(globals_)},
    }


def _split(dotted: str) -> tuple[str, str, str]:
    # The module is the longest importable prefix; qualified names (Outer.Inner) keep their dots.
    import importlib

    parts = dotted.split(".")
    for i in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:i])
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001 - not a module (or not installed): try a shorter prefix
            continue
        return module, ".", ".".join(parts[i:])
    return dotted.rpartition(".")


RUNS = ROOT / "scripts" / "allowlist-runs"
SHIPPED = ROOT / "sdk" / "chainproof" / "data" / "allowlist-v2.json"


def _text(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=1, sort_keys=False) + "\n"


def union(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the shipped list: every global of any run, with the union of its roles.

    ``generated_from`` maps each package to the versions the runs used (comma-separated).
    """
    if not runs:
        raise ValueError("no runs to unite")
    roles: dict[str, dict[str, set[str]]] = {}
    versions: dict[str, set[str]] = {}
    for run in runs:
        for module, names in run["globals"].items():
            for name, granted in names.items():
                roles.setdefault(module, {}).setdefault(name, set()).update(granted)
        for package, version in run["generated_from"].items():
            versions.setdefault(package, set()).add(version)
    doc = dict(runs[0])
    doc["comment"] = runs[0]["comment"] + (
        f" The union of {len(runs)} runs (scripts/allowlist-runs/), one per set of library versions users install."
        if len(runs) > 1 else "")
    doc["generated_from"] = {p: ", ".join(sorted(v)) for p, v in versions.items()}
    doc["globals"] = {m: {n: sorted(roles[m][n]) for n in sorted(roles[m])} for m in sorted(roles)}
    return doc


def check() -> list[str]:
    """Return what differs: the run for the installed versions, and the shipped union."""
    problems = []
    committed = {path: json.loads(path.read_text()) for path in sorted(RUNS.glob("*.json"))}
    run = build()
    same = [path for path, doc in committed.items() if doc["generated_from"] == run["generated_from"]]
    if not same:
        problems.append(f"no committed run for the installed versions {run['generated_from']}: "
                        f"python scripts/make_allowlist.py > scripts/allowlist-runs/NAME.json, review, commit")
    elif (text := _text(run)) != same[0].read_text():
        problems.append(f"{same[0].relative_to(ROOT)} differs from what the installed libraries give "
                        f"({len(text)} bytes against {len(same[0].read_text())})")
    if committed and SHIPPED.read_text() != _text(union(list(committed.values()))):
        problems.append(f"{SHIPPED.relative_to(ROOT)} is not the union of scripts/allowlist-runs/*.json")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="compare the committed run and the shipped file with what they must be")
    parser.add_argument("--union", nargs="+", metavar="RUN", type=Path,
                        help="print the union of these runs (the shipped list) instead of a run")
    args = parser.parse_args(argv)
    if args.check:
        problems = check()
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    if args.union:
        sys.stdout.write(_text(union([json.loads(path.read_text()) for path in args.union])))
        return 0
    sys.stdout.write(_text(build()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
