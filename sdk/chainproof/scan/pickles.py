"""Scan pickle and joblib streams by walking their opcodes, never by loading them.

Example:
    >>> import io, pickle
    >>> from chainproof.scan.allowlist import Allowlist
    >>> result = scan_pickle(io.BytesIO(pickle.dumps({"a": [1, 2.0]})), label="t.pkl",
    ...                      allowlist=Allowlist.default())
    >>> result.findings, result.complete
    ([], True)

The walk simulates the unpickler's stack, mark stack and memo without creating a
single object: values are plain constants (so ``STACK_GLOBAL`` can be resolved
statically) or inert placeholders. Every global (``GLOBAL``, ``INST``,
``STACK_GLOBAL``) must be an exact entry of the allowlist; anything that cannot
be resolved statically, any opcode benign model files never need, and any
parse error is a finding. joblib's ``NumpyPickler`` writes raw array bytes right
after each ``NumpyArrayWrapper``: the walk reads the wrapper's shape, dtype and
alignment from the opcodes, skips exactly those bytes, and scans the pickle
joblib writes inline for object arrays.
"""

from __future__ import annotations

import _compat_pickle
import math
import pickletools
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from chainproof.scan._stream import ScanAbort, _Stream
from chainproof.scan.allowlist import Allowlist
from chainproof.scan.report import Finding, ScanLimits

__all__ = ["PickleResult", "scan_pickle"]

_OPS = {op.code.encode("latin-1"): op for op in pickletools.opcodes}
# Opcodes that make the unpickler import something.
IMPORT_OPCODES = frozenset({"GLOBAL", "STACK_GLOBAL", "INST"})
_JOBLIB_WRAPPER = ("joblib.numpy_pickle", "NumpyArrayWrapper")
_NUMPY_DTYPE = ("numpy", "dtype")
_DTYPE_STR = re.compile(r"^[?a-zA-Z][0-9]{0,9}$")
_IDENT_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class _Global:
    """A global the stream names (never imported)."""

    module: str
    name: str

    @property
    def dotted(self) -> str:
        return f"{self.module}.{self.name}"


class _Obj:
    """The inert result of calling or instantiating something."""

    __slots__ = ("factory", "args", "state")

    def __init__(self, factory: Any, args: Any) -> None:
        self.factory = factory
        self.args = args
        self.state: Any = None

    def made_by(self, module_name: tuple[str, str]) -> bool:
        f = self.factory
        return isinstance(f, _Global) and (f.module, f.name) == module_name


class _Opaque:
    """A value the walk does not track (bytes, big numbers, computed results)."""

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what


@dataclass
class PickleResult:
    """What walking one pickle stream found.

    Attributes:
        findings: every reason the stream is unsafe.
        globals: every global the stream names, as ``module.name``.
        complete: whether the walk reached ``STOP`` without a parse error.
        protocol: the protocol the stream declares (0 when it declares none).
        inline_arrays: joblib arrays whose raw bytes were skipped.
        inline_pickles: joblib object arrays whose inline pickles were scanned.
        end: the offset after ``STOP`` (or where the walk stopped).
    """

    findings: list[Finding] = field(default_factory=list)
    globals: set[str] = field(default_factory=set)
    complete: bool = False
    protocol: int = 0
    inline_arrays: int = 0
    inline_pickles: int = 0
    end: int = 0


# A check of persistent ids (PERSID/BINPERSID): returns a reason to refuse, or None.
PersidCheck = Callable[[Any], "str | None"]


def scan_pickle(
    raw: Any,
    *,
    label: str,
    allowlist: Allowlist,
    limits: ScanLimits = ScanLimits(),
    joblib: bool = True,
    persid_check: PersidCheck | None = None,
    expect_eof: bool = True,
) -> PickleResult:
    """Walk one pickle (or joblib) stream and report what it would do.

    Args:
        raw: a binary stream (or a private ``_Stream``) positioned at the pickle.
        label: the name findings use.
        allowlist: the exact globals accepted.
        limits: the limits of the scan.
        joblib: skip and scan joblib's inline array data after each
            ``NumpyArrayWrapper`` (as ``joblib.load`` reads it).
        persid_check: accepts persistent ids (PyTorch archives); without it
            every ``PERSID``/``BINPERSID`` is refused.
        expect_eof: refuse bytes after ``STOP`` (a second payload or a polyglot).

    Returns:
        The result; its ``findings`` are empty when the stream is safe.
    """
    stream = raw if isinstance(raw, _Stream) else _Stream(
        raw, label=label, max_bytes=limits.max_decompressed_bytes, max_line=limits.max_line_bytes
    )
    result = PickleResult()
    walker = _Walker(stream, label, allowlist, limits, joblib, persid_check, result)
    try:
        walker.walk()
        result.complete = True
        if expect_eof and not stream.at_eof():
            result.findings.append(
                Finding(label, stream.pos, "STOP", "bytes after the end of the pickle (a second payload or another format)")
            )
    except ScanAbort as exc:
        result.findings.append(exc.finding)
    result.end = stream.pos
    return result


class _Walker:
    """The opcode walk of one stream (and the inline pickles inside it)."""

    def __init__(
        self,
        stream: _Stream,
        label: str,
        allowlist: Allowlist,
        limits: ScanLimits,
        joblib: bool,
        persid_check: PersidCheck | None,
        result: PickleResult,
    ) -> None:
        self.s = stream
        self.label = label
        self.allowlist = allowlist
        self.limits = limits
        self.joblib = joblib
        self.persid_check = persid_check
        self.result = result
        self.ops = 0

    def _abort(self, offset: int | None, what: str, reason: str) -> ScanAbort:
        return ScanAbort(Finding(self.label, offset, what, reason))

    def _flag(self, offset: int | None, what: str, reason: str) -> None:
        self.result.findings.append(Finding(self.label, offset, what, reason))

    # -- globals --------------------------------------------------------------

    def _resolve(self, module: str, name: str, proto: int, pos: int, opname: str) -> _Global:
        # The unpickler maps Python 2 names for protocols < 3 (fix_imports), so
        # check the name it would import, not the one written.
        if proto < 3:
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        g = _Global(module, name)
        self.result.globals.add(g.dotted)
        if not self.allowlist.allows(module, name):
            self._flag(pos, g.dotted, f"{opname}: global not in the allowlist (module {module!r}, name {name!r})")
        return g

    def _read_nl_pair(self, pos: int, opname: str) -> tuple[str, str]:
        # As the unpickler does: two lines, newline dropped, decoded as UTF-8.
        parts = []
        for _ in range(2):
            line = self.s.readline()
            if not line.endswith(b"\n"):
                raise self._abort(pos, opname, "truncated: no newline after the global's name")
            try:
                parts.append(line[:-1].decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise self._abort(pos, opname, "global name is not UTF-8") from exc
        return parts[0], parts[1]

    # -- the walk -------------------------------------------------------------

    def walk(self) -> None:
        s, limits = self.s, self.limits
        stack: list[Any] = []
        metastack: list[list[Any]] = []
        memo: dict[int, Any] = {}
        proto = 0
        frame_end: int | None = None

        def pop_mark(pos: int, opname: str) -> list[Any]:
            nonlocal stack
            if not metastack:
                raise self._abort(pos, opname, "no MARK on the stack (malformed pickle)")
            items = stack
            stack = metastack.pop()
            return items

        def pop(pos: int, opname: str) -> Any:
            if not stack:
                raise self._abort(pos, opname, "stack underflow (malformed pickle)")
            return stack.pop()

        while True:
            pos = s.pos
            code = s.read(1)
            if not code:
                raise self._abort(pos, "EOF", "truncated: the pickle ends before STOP")
            op = _OPS.get(code)
            if op is None:
                raise self._abort(pos, repr(code), "not a pickle opcode")
            self.ops += 1
            if self.ops > limits.max_opcodes:
                raise self._abort(pos, op.name, f"more than {limits.max_opcodes} opcodes (the limit)")
            if frame_end is not None and pos >= frame_end:
                frame_end = None
            name = op.name
            arg: Any = None
            if name in ("GLOBAL", "INST"):
                arg = self._read_nl_pair(pos, name)
            elif op.arg is not None:
                try:
                    arg = op.arg.reader(s)
                except ScanAbort:
                    raise
                except (ValueError, UnicodeDecodeError, OverflowError) as exc:
                    why = "truncated" if s.at_eof() else "malformed argument"
                    raise self._abort(pos, name, f"{why} ({exc})") from exc
            if len(stack) + len(memo) > limits.max_stack:
                raise self._abort(pos, name, f"more than {limits.max_stack} values on the stack and memo (the limit)")

            if name == "PROTO":
                if not 0 <= arg <= 5:
                    raise self._abort(pos, name, f"unsupported pickle protocol {arg}")
                proto = arg
            elif name == "FRAME":
                if frame_end is not None:
                    raise self._abort(pos, name, "a new frame begins before the current one ends")
                frame_end = s.pos + arg
            elif name == "STOP":
                if not stack:
                    raise self._abort(pos, name, "STOP with an empty stack (malformed pickle)")
                self.result.protocol = proto
                return
            # -- constants
            elif name in ("INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT"):
                if isinstance(arg, int) and not isinstance(arg, bool) and arg.bit_length() > 64:
                    stack.append(_Opaque("int"))
                else:
                    stack.append(arg)
            elif name == "NONE":
                stack.append(None)
            elif name in ("NEWTRUE", "NEWFALSE"):
                stack.append(name == "NEWTRUE")
            elif name in ("UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8"):
                stack.append(arg)
            elif name in ("STRING", "BINSTRING", "SHORT_BINSTRING"):
                # Python 3 decodes protocol-2 strings as ASCII by default.
                stack.append(arg if isinstance(arg, str) and arg.isascii() else _Opaque("bytes"))
            elif name in ("BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8"):
                stack.append(_Opaque(f"bytes[{len(arg)}]"))
            elif name in ("NEXT_BUFFER", "READONLY_BUFFER"):
                self._flag(pos, name, "out-of-band buffer: the file is not self-contained")
                if name == "NEXT_BUFFER":
                    stack.append(_Opaque("buffer"))
            # -- containers
            elif name == "MARK":
                if len(metastack) >= limits.max_mark_depth:
                    raise self._abort(pos, name, f"nested deeper than {limits.max_mark_depth} (the limit)")
                metastack.append(stack)
                stack = []
            elif name == "EMPTY_LIST":
                stack.append([])
            elif name == "EMPTY_DICT":
                stack.append({})
            elif name == "EMPTY_TUPLE":
                stack.append(())
            elif name == "EMPTY_SET":
                stack.append(_Opaque("set"))
            elif name == "TUPLE":
                # pop_mark rebinds `stack`: take the items before appending.
                items = pop_mark(pos, name)
                stack.append(tuple(items))
            elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                n = int(name[-1])
                if len(stack) < n:
                    raise self._abort(pos, name, "stack underflow (malformed pickle)")
                items = stack[-n:]
                del stack[-n:]
                stack.append(tuple(items))
            elif name == "LIST":
                items = pop_mark(pos, name)
                stack.append(list(items))
            elif name == "DICT":
                items = pop_mark(pos, name)
                d: dict[Any, Any] = {}
                _set_items(d, items)
                stack.append(d)
            elif name == "FROZENSET":
                pop_mark(pos, name)
                stack.append(_Opaque("frozenset"))
            elif name == "APPEND":
                value = pop(pos, name)
                target = self._top(stack, pos, name)
                if isinstance(target, list):
                    target.append(value)
            elif name == "APPENDS":
                items = pop_mark(pos, name)
                target = self._top(stack, pos, name)
                if isinstance(target, list):
                    target.extend(items)
            elif name == "SETITEM":
                value = pop(pos, name)
                key = pop(pos, name)
                target = self._top(stack, pos, name)
                if isinstance(target, dict):
                    _set_items(target, [key, value])
            elif name == "SETITEMS":
                items = pop_mark(pos, name)
                target = self._top(stack, pos, name)
                if isinstance(target, dict):
                    _set_items(target, items)
            elif name == "ADDITEMS":
                pop_mark(pos, name)
                self._top(stack, pos, name)
            elif name == "POP":
                if stack:
                    stack.pop()
                else:
                    pop_mark(pos, name)
            elif name == "POP_MARK":
                pop_mark(pos, name)
            elif name == "DUP":
                stack.append(self._top(stack, pos, name))
            # -- memo
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                if arg < 0:
                    raise self._abort(pos, name, "negative memo index")
                memo[arg] = self._top(stack, pos, name)
            elif name == "MEMOIZE":
                memo[len(memo)] = self._top(stack, pos, name)
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                if arg not in memo:
                    raise self._abort(pos, name, f"memo index {arg} was never stored (malformed pickle)")
                stack.append(memo[arg])
            # -- imports and calls
            elif name == "GLOBAL":
                stack.append(self._resolve(arg[0], arg[1], proto, pos, name))
            elif name == "STACK_GLOBAL":
                gname = pop(pos, name)
                module = pop(pos, name)
                if not isinstance(module, str) or not isinstance(gname, str):
                    self._flag(
                        pos,
                        name,
                        "module and name are not string constants: the global cannot be resolved statically",
                    )
                    stack.append(_Opaque("unresolved global"))
                else:
                    stack.append(self._resolve(module, gname, proto, pos, name))
            elif name == "INST":
                args = pop_mark(pos, name)
                g = self._resolve(arg[0], arg[1], proto, pos, name)
                stack.append(_Obj(g, tuple(args)))
            elif name == "OBJ":
                items = pop_mark(pos, name)
                if not items:
                    raise self._abort(pos, name, "OBJ without a class (malformed pickle)")
                self._check_callable(items[0], pos, name)
                stack.append(_Obj(items[0], tuple(items[1:])))
            elif name in ("NEWOBJ", "NEWOBJ_EX"):
                if name == "NEWOBJ_EX":
                    pop(pos, name)
                args = pop(pos, name)
                cls = pop(pos, name)
                self._check_callable(cls, pos, name)
                stack.append(_Obj(cls, args))
            elif name == "REDUCE":
                args = pop(pos, name)
                func = pop(pos, name)
                self._check_callable(func, pos, name)
                self._check_call_args(func, args, pos)
                stack.append(_Obj(func, args))
            elif name == "BUILD":
                state = pop(pos, name)
                target = self._top(stack, pos, name)
                if isinstance(target, _Obj):
                    target.state = state
                if self.joblib and isinstance(target, _Obj) and target.made_by(_JOBLIB_WRAPPER):
                    if frame_end is not None and s.pos != frame_end:
                        raise self._abort(
                            pos, name, "joblib array data inside a pickle frame (joblib never writes this)"
                        )
                    frame_end = None
                    self._skip_joblib_array(target, pos)
                    stack[-1] = _Opaque("ndarray")
            elif name in ("EXT1", "EXT2", "EXT4"):
                self._flag(pos, name, f"extension registry code {arg}: imports whatever copyreg maps it to")
                stack.append(_Opaque("extension"))
            elif name in ("PERSID", "BINPERSID"):
                pid = arg if name == "PERSID" else pop(pos, name)
                reason = (
                    "persistent id: the loader decides what it means (refused outside PyTorch archives)"
                    if self.persid_check is None
                    else self.persid_check(pid)
                )
                if reason:
                    self._flag(pos, name, reason)
                stack.append(_Opaque("persistent"))
            else:  # pragma: no cover - every opcode of pickletools is handled above
                raise self._abort(pos, name, "opcode the scanner does not handle")

    def _top(self, stack: list[Any], pos: int, name: str) -> Any:
        if not stack:
            raise self._abort(pos, name, "stack underflow (malformed pickle)")
        return stack[-1]

    def _check_callable(self, func: Any, pos: int, opname: str) -> None:
        # Benign pickles only call globals. Calling anything else (the result of
        # an earlier call, such as getattr(...)) is how allowlist bypasses chain.
        if not isinstance(func, _Global):
            what = func.what if isinstance(func, _Opaque) else type(func).__name__
            self._flag(pos, opname, f"calls a value that is not a global ({what}): cannot be checked statically")

    def _check_call_args(self, func: Any, args: Any, pos: int) -> None:
        if not isinstance(args, tuple):
            self._flag(pos, "REDUCE", "arguments are not a tuple (malformed pickle)")
            return
        # pickle writes bytes as _codecs.encode(text, "latin1") for protocol < 3;
        # any other codec could be a chosen transform, so only that one is accepted.
        if isinstance(func, _Global) and (func.module, func.name) == ("_codecs", "encode"):
            if len(args) != 2 or not isinstance(args[0], str) or args[1] != "latin1":
                self._flag(pos, "_codecs.encode", "only _codecs.encode(str, 'latin1') (as pickle writes bytes) is accepted")

    # -- joblib ---------------------------------------------------------------

    def _skip_joblib_array(self, wrapper: _Obj, pos: int) -> None:
        # Mirrors NumpyArrayWrapper.read_array (joblib/numpy_pickle.py).
        state = wrapper.state
        if not isinstance(state, dict):
            raise self._abort(pos, "NumpyArrayWrapper", "state is not a dict: the array size cannot be computed")
        shape = state.get("shape")
        if not isinstance(shape, tuple) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise self._abort(pos, "NumpyArrayWrapper", f"shape is not a tuple of sizes ({_show(shape)})")
        if state.get("order") not in ("C", "F"):
            raise self._abort(pos, "NumpyArrayWrapper", f"order is not 'C' or 'F' ({_show(state.get('order'))})")
        itemsize, hasobject = _dtype_facts(state.get("dtype"))
        if itemsize is None:
            raise self._abort(pos, "NumpyArrayWrapper", "dtype cannot be resolved statically")
        if hasobject:
            # joblib pickles object arrays inline with a fresh unpickler.
            self.result.inline_pickles += 1
            if self.result.inline_pickles > self.limits.max_inline_pickles:
                raise self._abort(pos, "NumpyArrayWrapper", f"more than {self.limits.max_inline_pickles} inline pickles")
            inner = PickleResult()
            walker = _Walker(self.s, self.label, self.allowlist, self.limits, True, self.persid_check, inner)
            walker.ops = self.ops
            try:
                walker.walk()
            finally:
                self.ops = walker.ops
                self.result.findings.extend(inner.findings)
                self.result.globals |= inner.globals
                self.result.inline_arrays += inner.inline_arrays
                self.result.inline_pickles += inner.inline_pickles
            return
        alignment = state.get("numpy_array_alignment_bytes")
        if alignment is not None:
            pad = self.s.read(1)
            if not pad:
                raise self._abort(self.s.pos, "NumpyArrayWrapper", "truncated: no alignment byte after the wrapper")
            if self.s.skip(pad[0]) != pad[0]:
                raise self._abort(self.s.pos, "NumpyArrayWrapper", "truncated inside the alignment padding")
        count = math.prod(shape) if shape else 1
        nbytes = count * itemsize
        if nbytes > self.limits.max_decompressed_bytes:
            raise self._abort(pos, "NumpyArrayWrapper", f"array of {nbytes} bytes exceeds the limit")
        start = self.s.pos
        if self.s.skip(nbytes) != nbytes:
            raise self._abort(start, "NumpyArrayWrapper", f"truncated: the array needs {nbytes} bytes")
        self.result.inline_arrays += 1


def _set_items(d: dict[Any, Any], items: list[Any]) -> None:
    for k, v in zip(items[::2], items[1::2]):
        try:
            d[k] = v
        except TypeError:
            continue


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, (str, int, float, tuple, type(None))) else type(value).__name__
    return text[:80]


def _dtype_facts(dtype: Any) -> tuple[int | None, bool]:
    """Return (itemsize, has objects) of a simulated ``numpy.dtype(...)`` call, or (None, _)."""
    if not isinstance(dtype, _Obj) or not dtype.made_by(_NUMPY_DTYPE):
        return None, True
    args = dtype.args
    if not isinstance(args, tuple) or not args or not isinstance(args[0], str) or not _DTYPE_STR.match(args[0]):
        return None, True
    import numpy

    try:
        base = numpy.dtype(args[0])
    except TypeError:
        return None, True
    hasobject = base.hasobject
    state = dtype.state
    itemsize = base.itemsize
    if state is not None:
        if not isinstance(state, tuple) or len(state) < 8:
            return None, True
        subarray, fields, elsize, flags = state[2], state[4], state[5], state[7]
        if not isinstance(elsize, int):
            return None, True
        if elsize not in (-1, itemsize):
            # numpy honours elsize only for unsized flexible types; for any other dtype a
            # different elsize would make the scanner skip other bytes than joblib reads
            # (a parser differential that hides opcodes): accept it only where numpy uses it.
            if base.itemsize != 0 or elsize <= 0:
                return None, True
            itemsize = elsize
        if isinstance(flags, int) and flags & 1:
            hasobject = True
        if subarray is not None:
            if not isinstance(subarray, tuple) or len(subarray) != 2:
                return None, True
            sub_size, sub_obj = _dtype_facts(subarray[0])
            if sub_size is None:
                return None, True
            hasobject = hasobject or sub_obj
        if fields is not None:
            if not isinstance(fields, dict):
                return None, True
            for value in fields.values():
                if not isinstance(value, tuple) or not value:
                    return None, True
                f_size, f_obj = _dtype_facts(value[0])
                if f_size is None:
                    return None, True
                hasobject = hasobject or f_obj
    return itemsize, hasobject


def looks_importable(dotted: str) -> bool:
    """Return whether ``module.name`` is shaped like a name Python could import."""
    return bool(_IDENT_PATH.match(dotted))
