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
``STACK_GLOBAL``) must be an exact entry of the allowlist, and each use of it
must be one its entry permits (:class:`~chainproof.scan.allowlist.Allowlist`
roles): naming it, calling it (``REDUCE``, ``NEWOBJ``, ``NEWOBJ_EX``, ``OBJ``,
``INST``, or passing it to a call), or reconstructing an instance of it
(``BUILD``, which runs ``__setstate__``). Anything that cannot be resolved
statically, any opcode benign model files never need, and any parse error is a
finding.

One byte stream is read differently by different loaders, so the walk follows
the union of what they accept: protocol-0 arguments are parsed as both CPython
unpicklers parse them (``INT`` with base 0 and C's ``strtol``, ``LONG`` without
its ``L``, ``FLOAT`` as C and Python read it; a value the two disagree on is
opaque). joblib's ``NumpyPickler`` writes raw array bytes right after each
``NumpyArrayWrapper``: the joblib walk reads the wrapper's shape, dtype and
alignment from the opcodes and skips exactly those bytes, and, because a plain
``pickle.load`` of the same file reads those bytes as opcodes, the walk also
forks there and reads them as a plain unpickler would. The pickle joblib writes
inline for object arrays is read by joblib with a plain unpickler, so it is
walked as a plain pickle (a ``NumpyArrayWrapper`` inside it is only an object).
"""

from __future__ import annotations

import _compat_pickle
import codecs
import copy
import io
import math
import pickletools
import re
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chainproof.scan._stream import ScanAbort, _Stream
from chainproof.scan.allowlist import Allowlist
from chainproof.scan.report import Finding, ScanLimits

__all__ = ["PickleResult", "scan_pickle"]

_OPS = {op.code.encode("latin-1"): op for op in pickletools.opcodes}
# Opcodes that make the unpickler import something.
IMPORT_OPCODES = frozenset({"GLOBAL", "STACK_GLOBAL", "INST"})
_JOBLIB_WRAPPER = ("joblib.numpy_pickle", "NumpyArrayWrapper")
_GETATTR = ("builtins", "getattr")
_NUMPY_DTYPE = ("numpy", "dtype")
_DTYPE_STR = re.compile(r"^[?a-zA-Z][0-9]{0,9}$")
_IDENT_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
# Reconstructors: they create an instance of their first argument without calling it
# (``object.__new__`` / ``ndarray.__new__``); copyreg's also calls its second (the base).
_RECONSTRUCTORS = {
    ("copyreg", "_reconstructor"): True,
    ("numpy.core.multiarray", "_reconstruct"): False,
    ("numpy._core.multiarray", "_reconstruct"): False,
}
#: Payloads (bytes, strings, big ints) larger than this are skipped, not kept.
_KEEP_MAX = 1 << 20
#: Bytes of joblib array data read as opcodes, as a plain ``pickle.load`` would.
FORK_WINDOW = 1 << 20
_WS = b" \t\n\v\f\r"
_C_FLOAT = re.compile(
    rb"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|(?i:infinity|inf|nan))"
)


_FIXED = {
    "BININT": (4, True), "BININT1": (1, False), "BININT2": (2, False), "BINGET": (1, False),
    "LONG_BINGET": (4, False), "BINPUT": (1, False), "LONG_BINPUT": (4, False), "EXT1": (1, False),
    "EXT2": (2, False), "EXT4": (4, True), "PROTO": (1, False), "FRAME": (8, False),
}
_WIDTH = {
    "SHORT_BINUNICODE": 1, "BINUNICODE": 4, "BINUNICODE8": 8, "SHORT_BINBYTES": 1, "SHORT_BINSTRING": 1,
    "BINBYTES": 4, "BINSTRING": 4, "BINBYTES8": 8, "BYTEARRAY8": 8,
}


class _Malformed(ScanAbort):
    """A parse error every unpickler stops at (the stream is not a pickle from here)."""


class _LoaderStops(ScanAbort):
    """A point where every loader that could read this stream raises (a probe ends here)."""


@dataclass(frozen=True)
class _Global:
    """A global the stream names (never imported)."""

    module: str
    name: str

    @property
    def dotted(self) -> str:
        return f"{self.module}.{self.name}"


class _Obj:
    """The inert result of calling or instantiating something.

    ``cls`` is the global whose instance it is (what ``BUILD`` would reconstruct),
    or None when that cannot be told statically.
    """

    __slots__ = ("factory", "args", "state", "cls", "exact")

    def __init__(self, factory: Any, args: Any, cls: _Global | None, exact: bool = False) -> None:
        self.factory = factory
        self.args = args
        self.state: Any = None
        self.cls = cls
        # Made by cls.__new__ (NEWOBJ, a reconstructor): certainly an instance of cls.
        self.exact = exact

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
        opcodes: how many opcodes were walked.
        stop: why the walk stopped before ``STOP``: ``"malformed"`` (every unpickler
            stops there too), ``"loader"`` (a loader raises there: a persistent id
            with no loader for it), ``"refused"`` (a limit or a finding), or None.
        stop_finding: the finding of that stop.
        modules: the module of each global named (``find_class`` imports the module first).
        unimportable: globals named whose module no installation could have (CSV lines read as GLOBAL).
        value: what the pickle returns, when it is an int, a string or a list of strings.
    """

    findings: list[Finding] = field(default_factory=list)
    globals: set[str] = field(default_factory=set)
    complete: bool = False
    protocol: int = 0
    inline_arrays: int = 0
    inline_pickles: int = 0
    end: int = 0
    opcodes: int = 0
    stop: str | None = None
    stop_finding: Finding | None = None
    value: Any = None
    modules: dict[str, str] = field(default_factory=dict)
    unimportable: int = 0


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
    probe: bool = False,
) -> PickleResult:
    """Walk one pickle (or joblib) stream and report what it would do.

    Args:
        raw: a binary stream (or a private ``_Stream``) positioned at the pickle.
        label: the name findings use.
        allowlist: the exact globals accepted, with their roles.
        limits: the limits of the scan.
        joblib: skip and scan joblib's inline array data after each
            ``NumpyArrayWrapper`` (as ``joblib.load`` reads it), and read the same
            bytes as opcodes (as ``pickle.load`` reads them).
        persid_check: accepts persistent ids (PyTorch archives); without it
            every ``PERSID``/``BINPERSID`` is refused.
        expect_eof: refuse bytes after ``STOP`` (a second payload or a polyglot).
        probe: the stream is another format that is also tried as a pickle: a
            persistent id ends the walk (no loader of such a file has a
            ``persistent_load``), and parse errors are not findings.

    Returns:
        The result; its ``findings`` are empty when the stream is safe.
    """
    stream = raw if isinstance(raw, _Stream) else _Stream(
        raw, label=label, max_bytes=limits.max_decompressed_bytes, max_line=limits.max_line_bytes
    )
    result = PickleResult()
    walker = _Walker(stream, label, allowlist, limits, joblib, persid_check, result, probe=probe)
    try:
        walker.walk()
        result.complete = True
        if expect_eof and not stream.at_eof():
            result.findings.append(
                Finding(label, stream.pos, "STOP", "bytes after the end of the pickle (a second payload or another format)")
            )
    except _Malformed as exc:
        result.stop, result.stop_finding = "malformed", exc.finding
        if not probe:
            result.findings.append(exc.finding)
    except _LoaderStops as exc:
        result.stop, result.stop_finding = "loader", exc.finding
        if not probe:
            result.findings.append(exc.finding)
    except ScanAbort as exc:
        result.stop, result.stop_finding = "refused", exc.finding
        result.findings.append(exc.finding)
    result.end = stream.pos
    result.opcodes = walker.ops
    return result


def _c_strtol(s: bytes) -> tuple[int, int, bool]:
    """C's ``strtol(s, &end, 0)``: (value, end index, overflowed); end 0 when nothing parsed."""
    n, i = len(s), 0
    while i < n and s[i] in _WS:
        i += 1
    neg = False
    if i < n and s[i] in b"+-":
        neg = s[i] == 0x2D
        i += 1
    digits = b"0123456789"
    if i < n and s[i] == 0x30:
        if s[i + 1 : i + 2] in (b"x", b"X") and s[i + 2 : i + 3] and s[i + 2] in b"0123456789abcdefABCDEF":
            i += 2
            digits, base = b"0123456789abcdefABCDEF", 16
        else:
            digits, base = b"01234567", 8
    else:
        base = 10
    j = i
    while i < n and s[i] in digits:
        i += 1
    if i == j:
        return 0, 0, False
    value = int(s[j:i], base)
    value = -value if neg else value
    return value, i, not (-(1 << 63) <= value < (1 << 63))


def _py_int(text: bytes, base: int) -> int | None:
    try:
        return int(text, base)
    except ValueError:
        return None


def _c_cstr(line: bytes) -> bytes:
    # C reads the line as a NUL-terminated string.
    i = line.find(b"\0")
    return line if i < 0 else line[:i]


def _parse_int_line(line: bytes) -> tuple[bool, Any]:
    """INT as _pickle.c and pickle.py read it: (some loader accepts it, the value or _Opaque)."""
    c_val: Any = None
    if len(line) >= 2:
        cs = _c_cstr(line)
        x, end, over = _c_strtol(cs)
        nxt = cs[end : end + 1] if end < len(cs) else b""
        if not over and nxt in (b"\n", b""):
            c_val = bool(x) if len(line) == 3 and x in (0, 1) else x
        else:
            c_val = _py_int(cs, 0)
    if line == b"00\n":
        py_val: Any = False
    elif line == b"01\n":
        py_val = True
    else:
        py_val = _py_int(line, 0)
    return _agree(c_val, py_val)


def _parse_long_line(line: bytes) -> tuple[bool, Any]:
    c_val: Any = None
    if len(line) >= 2:
        s = line[:-2] + b"\0" if line[-2:-1] == b"L" else line
        c_val = _py_int(_c_cstr(s), 0)
    val = line[:-1]
    if val[-1:] == b"L":
        val = val[:-1]
    return _agree(c_val, _py_int(val, 0))


def _parse_float_line(line: bytes) -> tuple[bool, Any]:
    c_val: Any = None
    if len(line) >= 2:
        cs = _c_cstr(line)
        m = _C_FLOAT.match(cs)
        if m and cs[m.end() : m.end() + 1] in (b"\n", b""):
            v = float(m.group(0))
            c_val = None if math.isinf(v) and b"inf" not in m.group(0).lower() else v
    try:
        py_val: Any = float(line[:-1])
    except ValueError:
        py_val = None
    return _agree(c_val, py_val)


def _agree(c_val: Any, py_val: Any) -> tuple[bool, Any]:
    if c_val is None and py_val is None:
        return False, None
    if c_val is None or py_val is None or type(c_val) is not type(py_val) or (c_val != py_val and c_val == c_val):
        return True, _Opaque("number (loaders disagree)")
    return True, c_val


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
        *,
        probe: bool = False,
        fork: bool = True,
        note: str = "",
    ) -> None:
        self.s = stream
        self.label = label
        self.allowlist = allowlist
        self.limits = limits
        self.joblib = joblib
        self.persid_check = persid_check
        self.result = result
        self.probe = probe
        # Fork a plain-pickle walk at the first joblib array (once per stream).
        self.fork = fork and joblib
        self.note = note
        self.ops = 0

    def _abort(self, offset: int | None, what: str, reason: str) -> ScanAbort:
        return ScanAbort(Finding(self.label, offset, what, self.note + reason))

    def _bad(self, offset: int | None, what: str, reason: str) -> _Malformed:
        return _Malformed(Finding(self.label, offset, what, self.note + reason))

    def _flag(self, offset: int | None, what: str, reason: str) -> None:
        self.result.findings.append(Finding(self.label, offset, what, self.note + reason))

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
        self.result.modules[g.dotted] = module
        if not _IDENT_PATH.match(module):
            self.result.unimportable += 1
        if (module, name) == _GETATTR:
            # Naming getattr imports nothing (builtins is loaded); calling it is checked
            # where it is called or handed to a call (_call).
            return g
        if not self.allowlist.allows(module, name):
            self._flag(pos, g.dotted, f"{opname}: global not in the allowlist (module {module!r}, name {name!r})")
        return g

    def _read_nl_pair(self, pos: int, opname: str, proto: int) -> tuple[str, str]:
        # As the unpickler does: two lines, newline dropped, decoded as UTF-8. At the
        # end of the stream pickle.py drops the last byte whatever it is and imports
        # anyway (_pickle.c stops): the name it would import is checked, then the walk stops.
        parts = []
        truncated = False
        for _ in range(2):
            line = self.s.readline()
            truncated = truncated or not line.endswith(b"\n")
            try:
                parts.append(line[:-1].decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise self._bad(pos, opname, "global name is not UTF-8") from exc
        if truncated:
            self._resolve(parts[0], parts[1], proto, pos, opname)
            raise self._bad(pos, opname, "truncated: no newline after the global's name")
        return parts[0], parts[1]

    # -- arguments ------------------------------------------------------------

    def _line(self, pos: int, name: str) -> bytes:
        line = self.s.readline()
        if not line.endswith(b"\n"):
            raise self._bad(pos, name, "truncated: no newline after the argument")
        return line

    def _payload(self, pos: int, name: str, n: int, what: str) -> Any:
        # Read (or, when large, skip) n bytes of a length-prefixed argument.
        if n > self.limits.max_decompressed_bytes:
            raise self._abort(pos, name, f"argument of {n} bytes exceeds the limit")
        if n > _KEEP_MAX:
            if self.s.skip(n) != n:
                raise self._bad(pos, name, f"truncated: the argument needs {n} bytes")
            return _Opaque(f"{what}[{n}]")
        data = self.s.read(n)
        if len(data) != n:
            raise self._bad(pos, name, f"truncated: the argument needs {n} bytes")
        return data

    def _fixed(self, pos: int, name: str, n: int) -> bytes:
        data = self.s.read(n)
        if len(data) != n:
            raise self._bad(pos, name, f"truncated: the argument needs {n} bytes")
        return data

    def _arg(self, name: str, pos: int) -> Any:
        """Read the argument of opcode ``name`` as CPython's unpicklers do."""
        fixed = _FIXED.get(name)
        if fixed is not None:
            data = self.s.read(fixed[0])
            if len(data) != fixed[0]:
                raise self._bad(pos, name, f"truncated: the argument needs {fixed[0]} bytes")
            return int.from_bytes(data, "little", signed=fixed[1])
        if name in ("INT", "LONG", "FLOAT"):
            line = self._line(pos, name)
            parse = {"INT": _parse_int_line, "LONG": _parse_long_line, "FLOAT": _parse_float_line}[name]
            ok, value = parse(line)
            if not ok:
                raise self._bad(pos, name, f"malformed argument {line[:40]!r}")
            return value
        if name == "STRING":
            data = self._line(pos, name)[:-1]
            if not (len(data) >= 2 and data[0] == data[-1] and data[0] in b"\"'"):
                raise self._bad(pos, name, "the STRING argument must be quoted")
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    raw = codecs.escape_decode(data[1:-1])[0]
            except ValueError as exc:
                raise self._bad(pos, name, f"malformed argument ({exc})") from exc
            return raw.decode("ascii") if raw.isascii() else _Opaque("bytes")
        if name in ("GET", "PUT"):
            line = self._line(pos, name)
            c_val = _py_int(_c_cstr(line), 10)
            py_val = _py_int(line[:-1], 10)
            if c_val is None and py_val is None:
                raise self._bad(pos, name, f"malformed memo index {line[:40]!r}")
            if c_val != py_val:
                raise self._abort(pos, name, f"the unpicklers disagree on the memo index {line[:40]!r}")
            return c_val
        if name == "UNICODE":
            line = self._line(pos, name)
            try:
                return str(line[:-1], "raw-unicode-escape")
            except UnicodeDecodeError as exc:
                raise self._bad(pos, name, f"malformed argument ({exc.reason})") from exc
        if name == "PERSID":
            return self._line(pos, name)[:-1]
        if name in ("BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8"):
            width = _WIDTH[name]
            n = int.from_bytes(self._fixed(pos, name, width), "little")
            data = self._payload(pos, name, n, "str")
            if isinstance(data, _Opaque):
                return data
            try:
                return str(data, "utf-8", "surrogatepass")
            except UnicodeDecodeError as exc:
                raise self._bad(pos, name, f"malformed argument ({exc.reason})") from exc
        if name in ("BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8", "BINSTRING", "SHORT_BINSTRING"):
            width = _WIDTH[name]
            raw_n = self._fixed(pos, name, width)
            n = int.from_bytes(raw_n, "little", signed=name == "BINSTRING")
            if n < 0:
                raise self._bad(pos, name, "negative byte count")
            data = self._payload(pos, name, n, "bytes")
            if name in ("BINSTRING", "SHORT_BINSTRING") and isinstance(data, bytes) and data.isascii():
                return data.decode("ascii")
            if isinstance(data, bytes) and n <= 64 and name in ("BINBYTES", "SHORT_BINBYTES", "BINBYTES8"):
                return data  # small bytes are kept: a dtype's datetime unit is one (b'ns')
            return data if isinstance(data, _Opaque) else _Opaque(f"bytes[{n}]")
        if name in ("LONG1", "LONG4"):
            if name == "LONG1":
                n = self._fixed(pos, name, 1)[0]
            else:
                n = int.from_bytes(self._fixed(pos, name, 4), "little", signed=True)
                if n < 0:
                    raise self._bad(pos, name, "negative byte count")
            data = self._payload(pos, name, n, "int")
            if isinstance(data, _Opaque) or n > 16:
                return _Opaque("int")
            return int.from_bytes(data, "little", signed=True)
        if name == "BINFLOAT":
            return struct.unpack(">d", self._fixed(pos, name, 8))[0]
        width, signed = _FIXED[name]
        return int.from_bytes(self._fixed(pos, name, width), "little", signed=signed)

    # -- the walk -------------------------------------------------------------

    def walk(self, state: tuple[list[Any], list[list[Any]], dict[int, Any], int] | None = None) -> None:
        s, limits = self.s, self.limits
        stack: list[Any]
        metastack: list[list[Any]]
        memo: dict[int, Any]
        stack, metastack, memo, proto = state if state is not None else ([], [], {}, 0)
        frame_end: int | None = None

        def pop_mark(pos: int, opname: str) -> list[Any]:
            nonlocal stack
            if not metastack:
                raise self._bad(pos, opname, "no MARK on the stack (malformed pickle)")
            items = stack
            stack = metastack.pop()
            return items

        def pop(pos: int, opname: str) -> Any:
            if not stack:
                raise self._bad(pos, opname, "stack underflow (malformed pickle)")
            return stack.pop()

        def top(pos: int, opname: str) -> Any:
            if not stack:
                raise self._bad(pos, opname, "stack underflow (malformed pickle)")
            return stack[-1]

        while True:
            pos = s.pos
            code = s.read(1)
            if not code:
                raise self._bad(pos, "EOF", "truncated: the pickle ends before STOP")
            op = _OPS.get(code)
            if op is None:
                raise self._bad(pos, repr(code), "not a pickle opcode")
            self.ops += 1
            if self.ops > limits.max_opcodes:
                raise self._abort(pos, op.name, f"more than {limits.max_opcodes} opcodes (the limit)")
            if frame_end is not None and pos >= frame_end:
                frame_end = None
            name = op.name
            arg: Any = None
            if name in ("GLOBAL", "INST"):
                arg = self._read_nl_pair(pos, name, proto)
            elif op.arg is not None:
                arg = self._arg(name, pos)
            if len(stack) + len(memo) > limits.max_stack:
                raise self._abort(pos, name, f"more than {limits.max_stack} values on the stack and memo (the limit)")

            if name == "PROTO":
                if not 0 <= arg <= 5:
                    raise self._bad(pos, name, f"unsupported pickle protocol {arg}")
                proto = arg
            elif name == "FRAME":
                # _pickle.c accepts a frame inside a frame; pickle.py refuses it. Frames
                # never change what the bytes mean, so the walk only tracks the end.
                frame_end = s.pos + arg
            elif name == "STOP":
                if not stack:
                    raise self._bad(pos, name, "STOP with an empty stack (malformed pickle)")
                self.result.protocol = proto
                value = stack[-1]
                plain = isinstance(value, (int, str)) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
                self.result.value = value if plain else None
                return
            # -- constants
            elif name in ("INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT"):
                if isinstance(arg, int) and not isinstance(arg, bool) and arg.bit_length() > 128:
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
                stack.append(arg)
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
                    raise self._bad(pos, name, "stack underflow (malformed pickle)")
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
                target = top(pos, name)
                if isinstance(target, list):
                    target.append(value)
                else:
                    self._check_method_target(target, pos, name)
            elif name == "APPENDS":
                items = pop_mark(pos, name)
                target = top(pos, name)
                if isinstance(target, list):
                    target.extend(items)
                else:
                    self._check_method_target(target, pos, name)
            elif name == "SETITEM":
                value = pop(pos, name)
                key = pop(pos, name)
                target = top(pos, name)
                if isinstance(target, dict):
                    _set_items(target, [key, value])
                else:
                    self._check_method_target(target, pos, name)
            elif name == "SETITEMS":
                items = pop_mark(pos, name)
                target = top(pos, name)
                if isinstance(target, dict):
                    _set_items(target, items)
                else:
                    self._check_method_target(target, pos, name)
            elif name == "ADDITEMS":
                pop_mark(pos, name)
                target = top(pos, name)
                if not isinstance(target, _Opaque) or target.what != "set":
                    self._check_method_target(target, pos, name)
            elif name == "POP":
                if stack:
                    stack.pop()
                else:
                    pop_mark(pos, name)
            elif name == "POP_MARK":
                pop_mark(pos, name)
            elif name == "DUP":
                stack.append(top(pos, name))
            # -- memo
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                if arg < 0:
                    raise self._bad(pos, name, "negative memo index")
                memo[arg] = top(pos, name)
            elif name == "MEMOIZE":
                memo[len(memo)] = top(pos, name)
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                if arg not in memo:
                    raise self._bad(pos, name, f"memo index {arg} was never stored (malformed pickle)")
                stack.append(memo[arg])
            # -- imports and calls
            elif name == "GLOBAL":
                stack.append(self._resolve(arg[0], arg[1], proto, pos, name))
            elif name == "STACK_GLOBAL":
                gname = pop(pos, name)
                module = pop(pos, name)
                if _never_str(module) or _never_str(gname):
                    # Both unpicklers raise "STACK_GLOBAL requires str".
                    raise self._bad(pos, name, "module and name must be strings (malformed pickle)")
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
                # pickle.py imports before it pops the mark (_pickle.c checks the mark first).
                g = self._resolve(arg[0], arg[1], proto, pos, name)
                args = pop_mark(pos, name)
                stack.append(self._call(g, tuple(args), pos, name))
            elif name == "OBJ":
                items = pop_mark(pos, name)
                if not items:
                    raise self._bad(pos, name, "OBJ without a class (malformed pickle)")
                stack.append(self._call(items[0], tuple(items[1:]), pos, name))
            elif name in ("NEWOBJ", "NEWOBJ_EX"):
                kwargs = pop(pos, name) if name == "NEWOBJ_EX" else {}
                args = pop(pos, name)
                cls = pop(pos, name)
                stack.append(self._call(cls, args, pos, name, kwargs=kwargs))
            elif name == "REDUCE":
                args = pop(pos, name)
                func = top(pos, name)
                stack[-1] = self._call(func, args, pos, name)
            elif name == "BUILD":
                state = pop(pos, name)
                target = top(pos, name)
                self._check_build(target, pos)
                if isinstance(target, _Obj):
                    target.state = state
                if self.joblib and isinstance(target, _Obj) and target.made_by(_JOBLIB_WRAPPER):
                    if frame_end is not None and s.pos != frame_end:
                        raise self._abort(
                            pos, name, "joblib array data inside a pickle frame (joblib never writes this)"
                        )
                    frame_end = None
                    if self.fork:
                        self.fork = False
                        self._fork_plain(stack, metastack, memo, proto)
                    self._skip_joblib_array(target, pos)
                    stack[-1] = _Opaque("ndarray")
            elif name in ("EXT1", "EXT2", "EXT4"):
                self._flag(pos, name, f"extension registry code {arg}: imports whatever copyreg maps it to")
                stack.append(_Opaque("extension"))
            elif name in ("PERSID", "BINPERSID"):
                pid = arg if name == "PERSID" else pop(pos, name)
                if self.probe:
                    raise _LoaderStops(Finding(self.label, pos, name, "persistent id: no loader of this format has one"))
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

    # -- calls and reconstruction ---------------------------------------------

    def _check_method_target(self, target: Any, pos: int, opname: str) -> None:
        # APPEND/SETITEM/ADDITEMS on an object call its append/extend/__setitem__/add.
        if isinstance(target, _Obj):
            cls = target.cls
            if cls is None:
                self._flag(pos, opname, "calls a method of an object whose class cannot be told statically")
            elif not self.allowlist.may(cls.module, cls.name, "call"):
                self._flag(pos, cls.dotted, f"{opname}: calls a method of {cls.dotted}, which may not be called")
        elif isinstance(target, (_Global, _Opaque)):
            what = target.dotted if isinstance(target, _Global) else target.what
            self._flag(pos, opname, f"calls a method of a value the scan cannot check ({what})")

    def _call(self, func: Any, args: Any, pos: int, opname: str, *, kwargs: Any = None) -> Any:
        """Check one call (REDUCE, NEWOBJ, NEWOBJ_EX, OBJ, INST) and return its inert result."""
        # Benign pickles only call globals. Calling anything else (the result of
        # an earlier call, such as getattr(...)) is how allowlist bypasses chain.
        if not isinstance(func, _Global):
            what = func.what if isinstance(func, _Opaque) else type(func).__name__
            self._flag(pos, opname, f"calls a value that is not a global ({what}): cannot be checked statically")
            return _Obj(func, args, None)
        if (func.module, func.name) == _GETATTR:
            if opname == "REDUCE" and _static_attr(args):
                # getattr(Global, "attr") names Global.attr, as a protocol-4 qualified name
                # does (pickle writes zoneinfo.ZoneInfo._unpickle so): checked as that global.
                return self._resolve(args[0].module, f"{args[0].name}.{args[1]}", 4, pos, "getattr")
            self._flag(pos, "builtins.getattr", f"{opname}: getattr of anything but a global and a constant name")
            return _Obj(func, args, None)
        if not self.allowlist.may(func.module, func.name, "call"):
            if self.allowlist.allows(func.module, func.name):
                self._flag(pos, func.dotted, f"{opname}: {func.dotted} may be named but not called")
        if not isinstance(args, tuple):
            if opname in ("REDUCE", "NEWOBJ", "NEWOBJ_EX"):
                self._flag(pos, opname, "arguments are not a tuple (the scan cannot check them)")
            return _Obj(func, args, None)
        key = (func.module, func.name)
        cls: _Global | None = func
        if key in _RECONSTRUCTORS:
            cls = None
            first = args[0] if args else None
            if not isinstance(first, _Global):
                self._flag(pos, func.dotted, f"{opname}: reconstructs a class that is not a global")
            else:
                cls = first
                if not self.allowlist.may(first.module, first.name, "build"):
                    if self.allowlist.allows(first.module, first.name):
                        self._flag(pos, first.dotted, f"{opname}: {first.dotted} may be named but not reconstructed")
            rest = args[1:2] if _RECONSTRUCTORS[key] else ()
            others = list(rest)
        else:
            others = list(args)
            if isinstance(kwargs, dict):
                others.extend(kwargs.values())
        # A global handed to a callable may be called by it (pandas' _new_Index(cls, d)
        # calls cls.__new__(cls, **d)): it must be one that may be called.
        for a in others:
            if isinstance(a, _Global) and not self.allowlist.may(a.module, a.name, "call"):
                if self.allowlist.allows(a.module, a.name) or (a.module, a.name) == _GETATTR:
                    self._flag(pos, a.dotted, f"{opname}: {a.dotted} is passed to {func.dotted}, and may not be called")
        # pickle writes bytes as _codecs.encode(text, "latin1") for protocol < 3;
        # any other codec could be a chosen transform, so only that one is accepted.
        if key == ("_codecs", "encode"):
            if len(args) != 2 or not isinstance(args[0], str) or args[1] != "latin1":
                self._flag(pos, "_codecs.encode", "only _codecs.encode(str, 'latin1') (as pickle writes bytes) is accepted")
        exact = cls is not None and (opname in ("NEWOBJ", "NEWOBJ_EX") or key in _RECONSTRUCTORS)
        return _Obj(func, args, cls, exact)

    def _check_build(self, target: Any, pos: int) -> None:
        # BUILD runs the instance's __setstate__, or sets its attributes.
        if isinstance(target, _Obj):
            cls = target.cls
            if cls is None:
                self._flag(pos, "BUILD", "reconstructs an object whose class cannot be told statically")
            elif not self.allowlist.may(cls.module, cls.name, "build"):
                if self.allowlist.allows(cls.module, cls.name):
                    self._flag(pos, cls.dotted, f"BUILD: {cls.dotted} may be named but not reconstructed")
        elif isinstance(target, _Global):
            self._flag(pos, "BUILD", f"sets attributes of the global {target.dotted} itself")
        elif isinstance(target, _Opaque) and target.what in ("ndarray", "unresolved global", "extension", "persistent", "buffer"):
            self._flag(pos, "BUILD", f"reconstructs a value the scan does not track ({target.what})")

    # -- joblib ---------------------------------------------------------------

    def _fork_plain(self, stack: list[Any], metastack: list[list[Any]], memo: dict[int, Any], proto: int) -> None:
        # pickle.load reads joblib's array bytes as opcodes: walk them so, from a copy
        # of the state, over a bounded window (benign array data stops it at once).
        base = self.s.pos
        window = self.s.peek(FORK_WINDOW)
        sub = _Stream(io.BytesIO(window), label=self.label, max_bytes=base + len(window) + 1, max_line=self.limits.max_line_bytes)
        sub.pos = base
        try:
            state = copy.deepcopy((stack, metastack, memo))
        except RecursionError:
            self._flag(base, "NumpyArrayWrapper", "values nested too deeply to read joblib's array data as pickle.load does")
            return
        forked = PickleResult()
        walker = _Walker(
            sub, self.label, self.allowlist, self.limits, False, self.persid_check, forked,
            probe=self.probe, note="as pickle.load reads joblib's array data: ",
        )
        try:
            walker.walk((state[0], state[1], state[2], proto))
        except _Malformed as exc:
            if len(window) == FORK_WINDOW and sub.at_eof():
                self._flag(
                    exc.finding.offset, "NumpyArrayWrapper",
                    f"pickle.load reads more than {FORK_WINDOW} bytes of joblib's array data as opcodes",
                )
        except _LoaderStops:
            pass
        except ScanAbort as exc:
            forked.findings.append(exc.finding)
        self.result.findings.extend(forked.findings)
        self.result.globals |= forked.globals
        self.result.modules.update(forked.modules)

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
            # joblib reads object arrays with a fresh plain unpickler (pickle._Unpickler):
            # a NumpyArrayWrapper inside it is only an object, its bytes are opcodes.
            self.result.inline_pickles += 1
            if self.result.inline_pickles > self.limits.max_inline_pickles:
                raise self._abort(pos, "NumpyArrayWrapper", f"more than {self.limits.max_inline_pickles} inline pickles")
            inner = PickleResult()
            walker = _Walker(self.s, self.label, self.allowlist, self.limits, False, self.persid_check, inner, note=self.note)
            walker.ops = self.ops
            try:
                walker.walk()
            finally:
                self.ops = walker.ops
                self.result.findings.extend(inner.findings)
                self.result.globals |= inner.globals
                self.result.modules.update(inner.modules)
            return
        alignment = state.get("numpy_array_alignment_bytes")
        if alignment is not None:
            pad = self.s.read(1)
            if not pad:
                raise self._bad(self.s.pos, "NumpyArrayWrapper", "truncated: no alignment byte after the wrapper")
            if self.s.skip(pad[0]) != pad[0]:
                raise self._bad(self.s.pos, "NumpyArrayWrapper", "truncated inside the alignment padding")
        count = math.prod(shape) if shape else 1
        nbytes = count * itemsize
        if nbytes > self.limits.max_decompressed_bytes:
            raise self._abort(pos, "NumpyArrayWrapper", f"array of {nbytes} bytes exceeds the limit")
        start = self.s.pos
        if self.s.skip(nbytes) != nbytes:
            raise self._bad(start, "NumpyArrayWrapper", f"truncated: the array needs {nbytes} bytes")
        self.result.inline_arrays += 1


def _set_items(d: dict[Any, Any], items: list[Any]) -> None:
    # Only plain keys are kept (the walk reads string-keyed states): hashing an
    # arbitrarily nested tuple could exhaust the C stack.
    for k, v in zip(items[::2], items[1::2]):
        if isinstance(k, (str, int, float)) or k is None:
            d[k] = v


_NOT_STR = ("set", "frozenset", "bytes", "int", "number")


def _static_attr(args: Any) -> bool:
    return (
        isinstance(args, tuple) and len(args) == 2 and isinstance(args[0], _Global)
        and isinstance(args[1], str) and bool(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", args[1]))
    )


def _never_str(value: Any) -> bool:
    """Whether a simulated value can never be a str at load time."""
    if isinstance(value, _Opaque):
        return value.what.startswith(_NOT_STR)
    if isinstance(value, _Obj):
        return value.exact and value.cls is not None and value.cls.dotted != "builtins.str"
    return isinstance(value, (int, float, bytes, list, dict, tuple, _Global)) or value is None


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return f"a tuple of {len(value)}"
    text = repr(value) if isinstance(value, (str, int, float, type(None))) else type(value).__name__
    return text[:80]


def _dtype_facts(dtype: Any) -> tuple[int | None, bool]:
    """Return (itemsize, has objects) of a simulated ``numpy.dtype(...)`` call, or (None, _).

    The dtype is rebuilt with numpy from the plain values the stream holds (its
    arguments, then ``__setstate__`` with its state, as the unpickler would), so the
    size and the object flag are numpy's own: a state whose ``elsize`` or flags
    disagree with the type string means what numpy makes of it, not what it claims.
    """
    try:
        real = _real_dtype(dtype, 0)
    except Exception:  # noqa: BLE001 - numpy refuses a malformed state in many ways; each is unresolvable
        return None, True
    if real is None:
        return None, True
    return real.itemsize, bool(real.hasobject)


def _real_dtype(value: Any, depth: int) -> Any:
    import numpy

    if depth > 32 or not isinstance(value, _Obj) or not value.made_by(_NUMPY_DTYPE):
        return None
    args = value.args
    if not isinstance(args, tuple) or not args or not isinstance(args[0], str) or not _DTYPE_STR.match(args[0]):
        return None
    if not all(isinstance(a, bool) for a in args[1:]) or len(args) > 3:
        return None
    real = numpy.dtype(*args)
    if value.state is not None:
        state = _plain_state(value.state, depth)
        if state is None:
            return None
        real.__setstate__(state)  # type: ignore[attr-defined]  # numpy dtypes and arrays have it
    return real


_UNRESOLVED = object()


def _plain_state(value: Any, depth: int) -> Any:
    # Plain values (and nested dtypes) only; None when anything is opaque.
    out = _plain(value, depth)
    return None if out is _UNRESOLVED else out


def _plain(value: Any, depth: int) -> Any:
    if depth > 32:
        return _UNRESOLVED
    if isinstance(value, _Obj):
        d = _real_dtype(value, depth + 1)
        return _UNRESOLVED if d is None else d
    if isinstance(value, tuple):
        items = tuple(_plain(v, depth + 1) for v in value)
        return _UNRESOLVED if any(i is _UNRESOLVED for i in items) else items
    if isinstance(value, dict):
        pairs = {k: _plain(v, depth + 1) for k, v in value.items()}
        return _UNRESOLVED if any(v is _UNRESOLVED for v in pairs.values()) else pairs
    if isinstance(value, (str, int, float, bytes)) or value is None:
        return value
    return _UNRESOLVED


def looks_importable(module: str) -> bool:
    """Return whether ``module`` is shaped like a module Python could import.

    ``find_class`` imports the module before it looks the name up, so the module
    alone decides whether anything is imported. A line of a CSV read as a module
    name (``city,population``) names no module a normal installation has.
    """
    return bool(_IDENT_PATH.match(module))
