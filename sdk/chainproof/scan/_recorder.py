"""Recording unpicklers: what a loader would import and call, with nothing real imported (private).

Example:
    >>> import io, pickle
    >>> log = record(pickle.dumps({"a": [1]}, protocol=4))
    >>> log.events, log.error
    ([], None)
    >>> log = record(b"cos\\nsystem\\n(S'true'\\ntR.")
    >>> [(e.kind, e.target) for e in log.events]
    [('name', 'os.system'), ('call', 'os.system')]

:class:`RecordingUnpickler` is ``pickle._Unpickler`` (the pure-Python unpickler)
and :class:`RecordingNumpyUnpickler` is joblib's ``NumpyUnpickler``; in both,
``find_class`` returns an inert :class:`Ref` instead of importing, and every
opcode that calls or reconstructs records an :class:`Event` instead of calling.
joblib's array reading is followed exactly (the dtype is rebuilt with numpy from
plain values, raw array bytes are read and dropped, object arrays are read with
a fresh plain recording unpickler) so the recorder reads the same bytes as
opcodes that ``joblib.load`` would. The tests use it as the oracle the scanner is
checked against; ``scripts/make_allowlist.py`` uses it to learn which globals
benign pickles name, call and reconstruct.

The roles follow the scanner's rules (``chainproof.scan.pickles``): a call's
target is called; a global handed to a call may be called by it, except the
class a reconstructor (``copyreg._reconstructor``, numpy's ``_reconstruct``)
instantiates, which is reconstructed; ``BUILD`` reconstructs the class of its
target; ``APPEND``/``SETITEM``/``ADDITEMS`` on an instance call its methods.
"""

from __future__ import annotations

import _compat_pickle
import io
import math
import pickle
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Event", "Log", "Ref", "RecordingNumpyUnpickler", "RecordingUnpickler", "record"]

_RECONSTRUCTORS = {
    "copyreg._reconstructor": True,
    "numpy.core.multiarray._reconstruct": False,
    "numpy._core.multiarray._reconstruct": False,
}
_WRAPPER = "joblib.numpy_pickle.NumpyArrayWrapper"


@dataclass(frozen=True)
class Event:
    """One thing the loader would do: ``name`` (import), ``call``, ``build`` or ``ext``.

    ``target`` is the dotted global (``None`` when the target is not a global);
    ``how`` is the opcode or the way (``passed to ...``, ``method``).
    """

    kind: str
    target: str | None
    how: str


@dataclass
class Log:
    """What one load recorded; ``error`` is where the loader stopped, if it did."""

    events: list[Event] = field(default_factory=list)
    error: str | None = None

    def add(self, kind: str, target: str | None, how: str) -> None:
        self.events.append(Event(kind, target, how))

    @property
    def names(self) -> set[str]:
        return {e.target for e in self.events if e.kind == "name" and e.target}


class Ref:
    """An inert stand-in for a global: never imported, never called."""

    __slots__ = ("dotted",)

    def __init__(self, dotted: str) -> None:
        self.dotted = dotted

    def __repr__(self) -> str:
        return f"<ref {self.dotted}>"


class Inst:
    """An inert stand-in for the result of a call; methods the unpickler uses record."""

    def __init__(self, log: Log, factory: Any, args: Any, cls: str | None) -> None:
        self._log = log
        self.factory = factory
        self.args = args
        self.cls = cls
        self.state: Any = None

    def _method(self, how: str) -> None:
        self._log.add("call", self.cls, f"method {how}")

    def append(self, item: Any) -> None:
        self._method("append")

    def extend(self, items: Any) -> None:
        self._method("extend")

    def add(self, item: Any) -> None:
        self._method("add")

    def __setitem__(self, key: Any, value: Any) -> None:
        self._method("__setitem__")


class _Recording:
    """The recording behaviour shared by both unpicklers (a mixin over ``pickle._Unpickler``)."""

    log: Log
    stack: list[Any]
    proto: int
    fix_imports: bool

    def find_class(self, module: str, name: str) -> Ref:
        if self.proto < 3 and self.fix_imports:
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        dotted = f"{module}.{name}"
        self.log.add("name", dotted, "find_class")
        return Ref(dotted)

    def persistent_load(self, pid: Any) -> Any:
        self.log.add("persid", None, "persistent_load")
        raise pickle.UnpicklingError("no persistent_load")

    def get_extension(self, code: int) -> Any:
        self.log.add("ext", None, f"code {code}")
        raise pickle.UnpicklingError(f"extension code {code}")

    def _call(self, func: Any, args: Any, how: str, kwargs: Any = None) -> Inst:
        if not isinstance(func, Ref):
            self.log.add("call", None, how)
            return Inst(self.log, func, args, None)
        if (
            func.dotted == "builtins.getattr" and how == "REDUCE" and isinstance(args, tuple) and len(args) == 2
            and isinstance(args[0], Ref) and isinstance(args[1], str) and args[1].isidentifier()
        ):
            # getattr(Global, "attr") is the global Global.attr (the scanner resolves it so).
            dotted = f"{args[0].dotted}.{args[1]}"
            self.log.add("name", dotted, "getattr")
            return Ref(dotted)  # type: ignore[return-value]
        self.log.add("call", func.dotted, how)
        cls: str | None = func.dotted
        others: list[Any] = list(args) if isinstance(args, tuple) else []
        if func.dotted in _RECONSTRUCTORS and isinstance(args, tuple):
            first = args[0] if args else None
            cls = first.dotted if isinstance(first, Ref) else None
            self.log.add("build", cls, f"reconstructed by {func.dotted}")
            others = list(args[1:2]) if _RECONSTRUCTORS[func.dotted] else []
        elif isinstance(kwargs, dict):
            others.extend(kwargs.values())
        for a in others:
            if isinstance(a, Ref):
                self.log.add("call", a.dotted, f"passed to {func.dotted}")
        return Inst(self.log, func, args, cls)

    def _instantiate(self, klass: Any, args: Any) -> None:
        self.append(self._call(klass, tuple(args), "INST/OBJ"))  # type: ignore[attr-defined]

    def load_reduce(self) -> None:
        args = self.stack.pop()
        self.stack[-1] = self._call(self.stack[-1], args, "REDUCE")

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        self.stack.append(self._call(cls, args, "NEWOBJ"))

    def load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        self.stack.append(self._call(cls, args, "NEWOBJ_EX", kwargs))

    def load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if isinstance(inst, Inst):
            self.log.add("build", inst.cls, "BUILD")
            inst.state = state
        elif isinstance(inst, Ref):
            self.log.add("build", None, f"BUILD on the global {inst.dotted}")
        elif isinstance(inst, _Array):
            self.log.add("build", None, "BUILD on an array")
        else:
            # A plain value (list, dict, ...) has no __setstate__ and no __dict__: any
            # state makes the loader fail, an empty one does nothing.
            slot = state[1] if isinstance(state, tuple) and len(state) == 2 else None
            if (state[0] if slot is not None else state) or slot:
                raise pickle.UnpicklingError("BUILD on a plain value")


class _Array:
    """What joblib's array reading produced (the bytes were read and dropped)."""


def _dispatch(base: dict[int, Any]) -> dict[int, Any]:
    table = dict(base)
    table[pickle.REDUCE[0]] = _Recording.load_reduce
    table[pickle.NEWOBJ[0]] = _Recording.load_newobj
    table[pickle.NEWOBJ_EX[0]] = _Recording.load_newobj_ex
    table[pickle.BUILD[0]] = _Recording.load_build
    return table


class RecordingUnpickler(_Recording, pickle._Unpickler):
    """``pickle._Unpickler`` that records instead of importing or calling."""

    dispatch = _dispatch(pickle._Unpickler.dispatch)

    def __init__(self, file: Any, log: Log) -> None:
        super().__init__(file)
        self.log = log


def _plain(value: Any) -> Any:
    # Turn a recorded numpy.dtype(...) (and nested ones) back into a real dtype.
    import numpy as np

    if isinstance(value, Inst):
        if not (isinstance(value.factory, Ref) and value.factory.dotted == "numpy.dtype"):
            raise pickle.UnpicklingError("dtype is not numpy.dtype(...)")
        args = tuple(_plain(a) for a in value.args)
        if not all(isinstance(a, (str, bool, int)) for a in args):
            raise pickle.UnpicklingError("dtype arguments are not plain")
        d = np.dtype(*args)
        if value.state is not None:
            d.__setstate__(_plain(value.state))
        return d
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (Ref, _Array)):
        raise pickle.UnpicklingError("not a plain value")
    return value


def _numpy_unpickler_base() -> Any:
    from joblib.numpy_pickle import NumpyUnpickler

    return NumpyUnpickler


class RecordingNumpyUnpickler(_Recording, _numpy_unpickler_base()):  # type: ignore[misc]
    """joblib's ``NumpyUnpickler`` that records instead of importing or calling.

    A ``BUILD`` of a ``NumpyArrayWrapper`` reads the array as
    ``NumpyArrayWrapper.read_array`` does (joblib/numpy_pickle.py).
    """

    dispatch = _dispatch(_numpy_unpickler_base().dispatch)

    def __init__(self, file: Any, log: Log) -> None:
        super().__init__("<recorded>", file, ensure_native_byte_order=False)
        self.log = log

    def load_build(self) -> None:
        _Recording.load_build(self)
        inst = self.stack[-1]
        if isinstance(inst, Inst) and inst.cls == _WRAPPER and isinstance(inst.factory, Ref):
            self.stack.pop()
            self._read_array(inst.state if isinstance(inst.state, dict) else {})
            self.stack.append(_Array())

    dispatch[pickle.BUILD[0]] = load_build

    def _read_array(self, state: dict[str, Any]) -> None:
        from joblib.numpy_pickle import _read_bytes

        try:
            dtype = _plain(state["dtype"])
            shape = tuple(int(d) for d in state["shape"])
        except (KeyError, TypeError, ValueError) as exc:
            raise pickle.UnpicklingError(f"wrapper state: {exc}") from exc
        count = math.prod(shape) if shape else 1
        if dtype.hasobject:
            inner = RecordingUnpickler(self.file_handle, self.log)
            inner.load()
            return
        if state.get("numpy_array_alignment_bytes") is not None:
            pad = self.file_handle.read(1)
            n = int.from_bytes(pad, "little")
            if n:
                self.file_handle.read(n)
        if count < 0:
            raise pickle.UnpicklingError("negative array size")
        _read_bytes(self.file_handle, count * dtype.itemsize, "array data")


def record(data: bytes, *, joblib: bool = False) -> Log:
    """Load ``data`` with a recording unpickler and return what it recorded.

    Args:
        data: the pickle (or joblib) bytes.
        joblib: read it as ``joblib.load`` does (``NumpyUnpickler``) instead of ``pickle.load``.

    Returns:
        The log; ``error`` says where the load stopped, if it did.
    """
    log = Log()
    f = io.BytesIO(data)
    unpickler = RecordingNumpyUnpickler(f, log) if joblib else RecordingUnpickler(f, log)
    try:
        unpickler.load()
    except Exception as exc:  # noqa: BLE001 - a loader stops at any error; the log keeps what came before
        log.error = f"{type(exc).__name__}: {str(exc)[:100]}"
    return log
