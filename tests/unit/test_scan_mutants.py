"""Tests that kill surviving mutants of the pickle scanner (scripts/mutation.sh scan).

Each stream is built by hand from opcodes (or pickle.dumps of a benign value) and only
scanned: nothing here loads a pickle. See the "Mutation testing" section of tests/README.md.
"""

from __future__ import annotations

import io
import math
import pickle
from pathlib import Path

from chainproof.scan import Allowlist, ScanLimits, scan_bytes
from chainproof.scan._stream import ScanAbort, _Stream
from chainproof.scan.pickles import (
    PickleResult,
    _agree,
    _c_cstr,
    _c_strtol,
    _Global,
    _Opaque,
    _parse_float_line,
    _parse_int_line,
    _parse_long_line,
    _set_items,
    _static_attr,
    scan_pickle,
)

ALLOW = Allowlist.default()
P4 = b"\x80\x04"


def _str(s: str) -> bytes:
    raw = s.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def _sg(dotted: str) -> bytes:
    module, _, name = dotted.rpartition(".")
    return _str(module) + _str(name) + b"\x93"


def _found(data: bytes, **kw: object) -> list[tuple[str, str]]:
    return [(f.what, f.reason) for f in scan_bytes(data, name="m.pkl", **kw).findings]


def test_benign_values_of_every_protocol_are_safe() -> None:
    value = {"a": [1, 2.5, None, True, b"x", ("t", 3)], "b": {1, 2}, "c": frozenset({3}), "d": 10**30, "e": -7}
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        data = pickle.dumps(value, protocol=proto)
        assert _found(data) == [], proto


def _walk(data: bytes, **kw: object) -> PickleResult:
    kw.setdefault("allowlist", ALLOW)
    return scan_pickle(io.BytesIO(data), label="m.pkl", **kw)  # type: ignore[arg-type]


def _reasons(result: PickleResult) -> list[tuple[int | None, str, str]]:
    return [(f.offset, f.what, f.reason) for f in result.findings]


# -- the result of a walk -------------------------------------------------------


def test_result_of_a_complete_walk() -> None:
    r = _walk(P4 + b"K\x05.")
    assert (r.findings, r.complete, r.protocol, r.value, r.end, r.opcodes, r.stop) == ([], True, 4, 5, 5, 3, None)
    r = _walk(b"\x80\x02X\x01\x00\x00\x00aX\x01\x00\x00\x00b\x86q\x00.")
    assert (r.protocol, r.value) == (2, None)  # a tuple is not a plain value
    assert _walk(P4 + b"](X\x01\x00\x00\x00aX\x01\x00\x00\x00be.").value == ["a", "b"]
    assert _walk(P4 + b"](X\x01\x00\x00\x00aK\x01e.").value is None  # not all strings
    assert _walk(P4 + b"X\x02\x00\x00\x00hi.").value == "hi"
    assert _walk(P4 + b"}.").value is None
    assert _walk(P4 + b"\x88.").value is True
    assert _walk(P4 + b"\x89.").value is False
    assert _walk(b"K\x01.").protocol == 0


def test_bytes_after_stop_are_refused_only_when_eof_is_expected() -> None:
    assert _reasons(_walk(P4 + b"N.junk")) == [
        (4, "STOP", "bytes after the end of the pickle (a second payload or another format)")
    ]
    r = _walk(P4 + b"N.junk", expect_eof=False)
    assert (r.findings, r.complete, r.end) == ([], True, 4)


def test_malformed_stream_stops_and_probe_keeps_it_out_of_the_findings() -> None:
    r = _walk(P4 + b"N")
    assert (r.stop, r.complete, r.end) == ("malformed", False, 3)
    assert _reasons(r) == [(3, "EOF", "truncated: the pickle ends before STOP")]
    assert r.stop_finding == r.findings[0]
    p = _walk(P4 + b"N", probe=True)
    assert (p.findings, p.stop, p.stop_finding) == ([], "malformed", r.stop_finding)


def test_refused_stream_stops_with_its_finding_even_when_probed() -> None:
    r = _walk(P4 + b"NN.", limits=ScanLimits(max_opcodes=2), probe=True)
    assert r.stop == "refused"
    assert _reasons(r) == [(3, "NONE", "more than 2 opcodes (the limit)")]


def test_persistent_id_in_a_probe_stops_as_a_loader_would() -> None:
    r = _walk(b"Pabc\n.", probe=True)
    assert (r.stop, r.findings) == ("loader", [])
    assert r.stop_finding is not None and r.stop_finding.what == "PERSID"
    r = _walk(b"Pabc\n.")
    assert _reasons(r) == [(0, "PERSID", "persistent id: the loader decides what it means (refused outside PyTorch archives)")]
    assert _walk(b"Pabc\n.", persid_check=lambda pid: None).findings == []
    seen = []
    r = _walk(P4 + b"X\x03\x00\x00\x00pid" + b"Q.", persid_check=lambda pid: seen.append(pid) or "no")
    assert seen == ["pid"] and _reasons(r) == [(10, "BINPERSID", "no")]


# -- limits ----------------------------------------------------------------------


def test_opcode_limit_is_inclusive() -> None:
    data = P4 + b"K\x05."  # three opcodes
    assert _walk(data, limits=ScanLimits(max_opcodes=3)).findings == []
    assert _reasons(_walk(data, limits=ScanLimits(max_opcodes=2))) == [(4, "STOP", "more than 2 opcodes (the limit)")]


def test_stack_limit_counts_stack_and_memo_and_is_inclusive() -> None:
    data = P4 + b"K\x01K\x02K\x03\x87."  # three values on the stack before TUPLE3
    assert _walk(data, limits=ScanLimits(max_stack=3)).findings == []
    assert _reasons(_walk(data, limits=ScanLimits(max_stack=2))) == [
        (8, "TUPLE3", "more than 2 values on the stack and memo (the limit)")
    ]
    memo = P4 + b"K\x01\x94K\x02\x94\x86."  # two values and two memo entries before TUPLE2
    assert _walk(memo, limits=ScanLimits(max_stack=4)).findings == []
    assert _reasons(_walk(memo, limits=ScanLimits(max_stack=3)))[0][1:] == (
        "TUPLE2", "more than 3 values on the stack and memo (the limit)"
    )


def test_mark_depth_limit_is_inclusive() -> None:
    data = P4 + b"((ll."
    r = _walk(data, limits=ScanLimits(max_mark_depth=2))
    assert (r.findings, r.complete) == ([], True)
    assert _reasons(_walk(data, limits=ScanLimits(max_mark_depth=1))) == [(3, "MARK", "nested deeper than 1 (the limit)")]


def test_protocol_bounds() -> None:
    assert _walk(b"\x80\x05N.").protocol == 5
    assert _walk(b"\x80\x00N.").findings == []
    assert _reasons(_walk(b"\x80\x06N.")) == [(0, "PROTO", "unsupported pickle protocol 6")]


# -- constants and containers ---------------------------------------------------------


def test_large_ints_are_opaque_past_128_bits() -> None:
    def long1(n: int, size: int = 16) -> bytes:
        raw = n.to_bytes(size, "little", signed=True)
        return P4 + b"\x8a" + bytes([len(raw)]) + raw + b"."

    # LONG1 of 16 bytes is read, of 17 bytes opaque; a text LONG of more than 128 bits is opaque.
    assert _walk(long1((1 << 127) - 1)).value == (1 << 127) - 1
    assert _walk(long1(-(1 << 127))).value == -(1 << 127)
    assert _walk(long1(1 << 127, 17)).value is None
    assert _walk(long1(1, 17)).value is None  # the byte count decides, not the value
    assert _walk(b"L" + str(1 << 128).encode() + b"L\n.").value is None
    assert _walk(b"L" + str((1 << 128) - 1).encode() + b"L\n.").value == (1 << 128) - 1
    assert _walk(b"L" + str(-(1 << 128) + 1).encode() + b"L\n.").value == -(1 << 128) + 1


def test_protocol0_numbers_and_strings() -> None:
    assert _walk(b"I42\n.").value == 42
    assert _walk(b"I01\n.").value is True
    assert _walk(b"I00\n.").value is False
    assert _walk(b"I-7\n.").value == -7
    assert _walk(b"I0x10\n.").value == 16
    assert _walk(b"L12L\n.").value == 12
    assert _walk(b"S'abc'\n.").value == "abc"
    assert _walk(b"S'\\xe9'\n.").value is None  # not ASCII: bytes under Python 3
    assert _walk(b"Vabc\n.").value == "abc"
    assert _walk(P4 + b"U\x03abc.").value == "abc"
    assert _walk(P4 + b"T\x03\x00\x00\x00abc.").value == "abc"
    assert _walk(P4 + b"U\x01\xe9.").value is None
    assert _walk(b"F1.5\n.").findings == []
    assert _reasons(_walk(b"Ix\n.")) == [(0, "INT", "malformed argument b'x\\n'")]
    assert _reasons(_walk(b"Fx\n.")) == [(0, "FLOAT", "malformed argument b'x\\n'")]
    assert _reasons(_walk(b"Lx\n.")) == [(0, "LONG", "malformed argument b'x\\n'")]
    assert _reasons(_walk(b"Sabc\n.")) == [(0, "STRING", "the STRING argument must be quoted")]
    assert _reasons(_walk(b"S'abc\"\n.")) == [(0, "STRING", "the STRING argument must be quoted")]
    assert _reasons(_walk(b"S'\n.")) == [(0, "STRING", "the STRING argument must be quoted")]
    assert _reasons(_walk(b"I42")) == [(0, "INT", "truncated: no newline after the argument")]


def test_out_of_band_buffers_are_refused() -> None:
    assert _reasons(_walk(b"\x80\x05\x97.")) == [(2, "NEXT_BUFFER", "out-of-band buffer: the file is not self-contained")]
    r = _walk(b"\x80\x05\x97\x98.")
    assert [w for _, w, _ in _reasons(r)] == ["NEXT_BUFFER", "READONLY_BUFFER"]
    # READONLY_BUFFER leaves the buffer on the stack; alone it has nothing to work on.
    assert _reasons(_walk(b"\x80\x05N\x98.")) == [(3, "READONLY_BUFFER", "out-of-band buffer: the file is not self-contained")]


def test_fixed_tuples_need_their_items() -> None:
    assert _walk(P4 + b"K\x01\x85.").findings == []
    assert _reasons(_walk(P4 + b"K\x01\x86.")) == [(4, "TUPLE2", "stack underflow (malformed pickle)")]
    assert _reasons(_walk(P4 + b"K\x01K\x02\x87.")) == [(6, "TUPLE3", "stack underflow (malformed pickle)")]
    assert _reasons(_walk(P4 + b"\x85.")) == [(2, "TUPLE1", "stack underflow (malformed pickle)")]


def test_containers_and_the_values_they_make() -> None:
    assert _walk(P4 + b"(X\x01\x00\x00\x00aX\x01\x00\x00\x00bl.").value == ["a", "b"]
    assert _walk(P4 + b"]X\x01\x00\x00\x00aa.").value == ["a"]
    assert _walk(P4 + b"(X\x01\x00\x00\x00at.").value is None
    assert _reasons(_walk(P4 + b"t.")) == [(2, "TUPLE", "no MARK on the stack (malformed pickle)")]
    assert _reasons(_walk(P4 + b"l.")) == [(2, "LIST", "no MARK on the stack (malformed pickle)")]
    assert _reasons(_walk(P4 + b"d.")) == [(2, "DICT", "no MARK on the stack (malformed pickle)")]
    assert _reasons(_walk(P4 + b"N0.")) == [(4, "STOP", "STOP with an empty stack (malformed pickle)")]
    # POP with an empty stack pops a MARK (as both unpicklers do).
    assert _walk(P4 + b"N(0.").findings == []
    assert _reasons(_walk(P4 + b"0N.")) == [(2, "POP", "no MARK on the stack (malformed pickle)")]
    assert _walk(P4 + b"N(K\x01K\x021.").findings == []
    assert _reasons(_walk(P4 + b"N1.")) == [(3, "POP_MARK", "no MARK on the stack (malformed pickle)")]
    assert _reasons(_walk(P4 + b"a.")) == [(2, "APPEND", "stack underflow (malformed pickle)")]
    assert _reasons(_walk(P4 + b"Na.")) == [(3, "APPEND", "stack underflow (malformed pickle)")]
    assert _reasons(_walk(P4 + b"2.")) == [(2, "DUP", "stack underflow (malformed pickle)")]
    assert _walk(P4 + b"X\x01\x00\x00\x00a2\x86.").findings == []


def test_memo() -> None:
    assert _walk(b"Va\np0\ng0\n\x86.").findings == []
    assert _reasons(_walk(b"Va\np-1\n.")) == [(3, "PUT", "negative memo index")]
    assert _reasons(_walk(b"Va\np0\ng1\n.")) == [(6, "GET", "memo index 1 was never stored (malformed pickle)")]
    assert _reasons(_walk(b"Va\npx\n.")) == [(3, "PUT", "malformed memo index b'x\\n'")]
    # _pickle.c reads "1\0" as 1, pickle.py refuses it.
    assert _reasons(_walk(b"Va\np1\x00\n.")) == [(3, "PUT", "the unpicklers disagree on the memo index b'1\\x00\\n'")]
    assert _walk(P4 + b"N\x94N\x94h\x01\x86.").findings == []  # MEMOIZE stores at len(memo)
    assert _reasons(_walk(P4 + b"N\x94h\x01.")) == [(4, "BINGET", "memo index 1 was never stored (malformed pickle)")]
    assert _reasons(_walk(P4 + b"\x94.")) == [(2, "MEMOIZE", "stack underflow (malformed pickle)")]
    assert _reasons(_walk(P4 + b"q\x00.")) == [(2, "BINPUT", "stack underflow (malformed pickle)")]


def test_bad_opcode_and_truncated_arguments() -> None:
    assert _reasons(_walk(P4 + b"\xff.")) == [(2, "b'\\xff'", "not a pickle opcode")]
    assert _reasons(_walk(P4 + b"J\x01\x00")) == [(2, "BININT", "truncated: the argument needs 4 bytes")]
    assert _reasons(_walk(P4 + b"X\x05\x00\x00\x00ab")) == [(2, "BINUNICODE", "truncated: the argument needs 5 bytes")]
    assert _reasons(_walk(P4 + b"X\x05\x00")) == [(2, "BINUNICODE", "truncated: the argument needs 4 bytes")]
    assert _reasons(_walk(P4 + b"G\x00\x00")) == [(2, "BINFLOAT", "truncated: the argument needs 8 bytes")]
    assert _reasons(_walk(P4 + b"T\xff\xff\xff\xff.")) == [(2, "BINSTRING", "negative byte count")]
    assert _reasons(_walk(P4 + b"\x8b\xff\xff\xff\xff.")) == [(2, "LONG4", "negative byte count")]
    assert _reasons(_walk(P4 + b"X\x01\x00\x00\x00\xff.")) == [(2, "BINUNICODE", "malformed argument (invalid start byte)")]
    assert _reasons(_walk(P4 + b"B\x08\x00\x00\x00abcdefgh.", limits=ScanLimits(max_decompressed_bytes=7))) == [
        (2, "BINBYTES", "argument of 8 bytes exceeds the limit")
    ]


def test_arguments_past_a_mebibyte_are_skipped_not_kept() -> None:
    big = (1 << 20) + 1
    assert _walk(P4 + b"X" + big.to_bytes(4, "little") + b"a" * big + b".").value is None
    assert _walk(P4 + b"X" + (1 << 20).to_bytes(4, "little") + b"a" * (1 << 20) + b".").value == "a" * (1 << 20)
    assert _reasons(_walk(P4 + b"X" + big.to_bytes(4, "little") + b"a" * 10)) == [
        (2, "BINUNICODE", f"truncated: the argument needs {big} bytes")
    ]


# -- imports and calls ------------------------------------------------------------------

ROLES = Allowlist.from_json(
    b'{"schema": "https://chainproof.dev/scan/allowlist/v2", "version": 9, "globals": {'
    b'"builtins": {"object": ["call"], "list": ["call", "build"]},'
    b'"copyreg": {"_reconstructor": ["call"]}, "_codecs": {"encode": ["call"]},'
    b'"mypkg": {"Named": [], "Callable": ["call"], "Built": ["build"], "Both": ["call", "build"],'
    b' "Callable.attr": ["call"]}}}',
    source="roles",
)


def _roles(data: bytes) -> list[tuple[int | None, str, str]]:
    return _reasons(_walk(data, allowlist=ROLES))


def test_globals_are_recorded_with_their_module() -> None:
    r = _walk(P4 + _sg("mypkg.Named") + _sg("a,b.c") + b".", allowlist=ROLES)
    assert r.globals == {"mypkg.Named", "a,b.c"}
    assert r.modules == {"mypkg.Named": "mypkg", "a,b.c": "a,b"}
    assert r.unimportable == 1
    assert _reasons(r) == [(25, "a,b.c", "STACK_GLOBAL: global not in the allowlist (module 'a,b', name 'c')")]


def test_python2_names_are_checked_as_the_unpickler_maps_them() -> None:
    # protocol < 3: fix_imports maps __builtin__ to builtins, and (exceptions, X) pairs by name.
    r = _walk(b"c__builtin__\neval\n.")
    assert r.globals == {"builtins.eval"}
    assert _reasons(r) == [(0, "builtins.eval", "GLOBAL: global not in the allowlist (module 'builtins', name 'eval')")]
    assert _walk(b"\x80\x02c__builtin__\nlist\n.", allowlist=ROLES).findings == []
    assert _walk(b"\x80\x02cUserList\nUserList\n.").globals == {"collections.UserList"}
    # protocol 3 and later: written names are imported as they are.
    assert _walk(b"\x80\x03c__builtin__\nlist\n.").globals == {"__builtin__.list"}


def test_global_names_must_be_utf8_and_end_in_newlines() -> None:
    assert _reasons(_walk(b"cos\nsys\xfftem\n.")) == [(0, "GLOBAL", "global name is not UTF-8")]
    assert _reasons(_walk(b"cos\xff\nsystem\n.")) == [(0, "GLOBAL", "global name is not UTF-8")]
    r = _walk(b"cos\nsystem")
    # the truncated name is still checked (pickle.py imports it), then the walk stops.
    assert _reasons(r) == [
        (0, "os.syste", "GLOBAL: global not in the allowlist (module 'os', name 'syste')"),
        (0, "GLOBAL", "truncated: no newline after the global's name"),
    ]
    assert _walk(b"cmypkg\nNamed\n.", allowlist=ROLES).findings == []


def test_stack_global_needs_two_strings() -> None:
    assert _roles(P4 + b"K\x01" + _str("x") + b"\x93.") == [(7, "STACK_GLOBAL", "module and name must be strings (malformed pickle)")]
    assert _roles(P4 + _str("mypkg") + b"N\x93.") == [(10, "STACK_GLOBAL", "module and name must be strings (malformed pickle)")]
    assert _roles(P4 + _str("x") + b"\x93.") == [(5, "STACK_GLOBAL", "stack underflow (malformed pickle)")]
    # a value that may be a str at load time (the result of a call) cannot be resolved
    r = _walk(P4 + _str("mypkg") + _sg("mypkg.Callable") + b")R\x93.", allowlist=ROLES)
    assert _reasons(r)[-1] == (
        29, "STACK_GLOBAL", "module and name are not string constants: the global cannot be resolved statically"
    )
    assert r.globals == {"mypkg.Callable"}


def test_calls_of_values_that_are_not_globals() -> None:
    assert _roles(P4 + b"N)R.") == [(4, "REDUCE", "calls a value that is not a global (NoneType): cannot be checked statically")]
    assert _roles(P4 + b"\x8f)R.") == [(4, "REDUCE", "calls a value that is not a global (set): cannot be checked statically")]
    assert _roles(P4 + b"(o.") == [(3, "OBJ", "OBJ without a class (malformed pickle)")]
    assert _roles(P4 + b"(" + _sg("mypkg.Callable") + b"K\x01o.") == []
    assert _roles(P4 + _sg("mypkg.Callable") + b"K\x01\x85\x81.") == []
    assert _roles(P4 + _sg("mypkg.Callable") + b")}\x92.") == []


def test_arguments_that_are_not_a_tuple() -> None:
    reason = "arguments are not a tuple (the scan cannot check them)"
    assert _roles(P4 + _sg("mypkg.Callable") + b"NR.") == [(21, "REDUCE", reason)]
    assert _roles(P4 + _sg("mypkg.Callable") + b"N\x81.") == [(21, "NEWOBJ", reason)]
    assert _roles(P4 + _sg("mypkg.Callable") + b"N}\x92.") == [(22, "NEWOBJ_EX", reason)]
    # OBJ and INST always build a tuple
    assert _roles(P4 + b"(" + _sg("mypkg.Callable") + b"o.") == []


def test_globals_handed_to_a_call() -> None:
    passed = "is passed to mypkg.Callable, and may not be called"
    assert _roles(P4 + _sg("mypkg.Callable") + _sg("mypkg.Named") + b"\x85R.") == [
        (36, "mypkg.Named", f"REDUCE: mypkg.Named {passed}")
    ]
    # as a keyword argument of NEWOBJ_EX
    kw = P4 + _sg("mypkg.Callable") + b")}" + _str("k") + _sg("mypkg.Named") + b"s\x92."
    assert _roles(kw) == [(41, "mypkg.Named", f"NEWOBJ_EX: mypkg.Named {passed}")]
    # a callable global, or a global not in the list (already refused when named), is not reported again
    assert _roles(P4 + _sg("mypkg.Callable") + _sg("mypkg.Both") + b"\x85R.") == []
    assert _roles(P4 + _sg("mypkg.Callable") + _sg("os.system") + b"\x85R.")[-1][2].startswith("STACK_GLOBAL: global not in")
    # getattr, which may be named anywhere, may not be handed over
    found = _walk(P4 + _sg("collections.OrderedDict") + _sg("builtins.getattr") + b"\x85R.")
    assert [(f.what, f.reason) for f in found.findings] == [
        ("builtins.getattr", "REDUCE: builtins.getattr is passed to collections.OrderedDict, and may not be called")
    ]


def test_getattr_of_a_global_and_a_name_is_checked_as_that_global() -> None:
    call = P4 + _sg("builtins.getattr") + _sg("mypkg.Callable") + _str("attr") + b"\x86R"
    r = _walk(call + b")R.", allowlist=ROLES)
    assert r.findings == [] and "mypkg.Callable.attr" in r.globals
    r = _walk(P4 + _sg("builtins.getattr") + _sg("mypkg.Callable") + _str("other") + b"\x86R.", allowlist=ROLES)
    assert [(w, x) for _, w, x in _reasons(r)] == [
        ("mypkg.Callable.other", "getattr: global not in the allowlist (module 'mypkg', name 'Callable.other')")
    ]
    bad = "getattr of anything but a global and a constant name"
    for args in (_sg("mypkg.Callable") + _str("a.b") + b"\x86", _sg("mypkg.Callable") + b"K\x01\x86",
                 b"N" + _str("attr") + b"\x86", _sg("mypkg.Callable") + _str("a") + _str("b") + b"\x87"):
        found = _roles(P4 + _sg("builtins.getattr") + args + b"R.")
        assert [(w, x) for _, w, x in found] == [("builtins.getattr", f"REDUCE: {bad}")], args
    found = _roles(P4 + _sg("builtins.getattr") + _sg("mypkg.Callable") + _str("attr") + b"\x86\x81.")
    assert [(w, x) for _, w, x in found] == [("builtins.getattr", f"NEWOBJ: {bad}")]
    # the result of a refused getattr is not a global: calling it is refused too
    found = _roles(P4 + _sg("builtins.getattr") + args + b"R)R.")
    assert found[-1][1:] == ("REDUCE", "calls a value that is not a global (_Obj): cannot be checked statically")


def test_codecs_encode_only_as_pickle_writes_bytes() -> None:
    enc = P4 + _sg("_codecs.encode")
    assert _roles(enc + _str("abc") + _str("latin1") + b"\x86R.") == []
    only = "only _codecs.encode(str, 'latin1') (as pickle writes bytes) is accepted"
    for args in (_str("abc") + _str("rot13") + b"\x86", _str("abc") + b"\x85", b"K\x01" + _str("latin1") + b"\x86",
                 _str("abc") + _str("latin1") + _str("x") + b"\x87"):
        assert [(w, x) for _, w, x in _roles(enc + args + b"R.")] == [("_codecs.encode", only)], args


def test_reconstructors() -> None:
    rec = P4 + _sg("copyreg._reconstructor")
    obj = _sg("builtins.object")
    assert _roles(rec + _sg("mypkg.Both") + obj + b"N\x87R}b.") == []
    assert _roles(rec + _sg("mypkg.Built") + obj + b"N\x87R}b.") == []
    assert [(w, x) for _, w, x in _roles(rec + b"N" + obj + b"N\x87R.")] == [
        ("copyreg._reconstructor", "REDUCE: reconstructs a class that is not a global")
    ]
    assert [(w, x) for _, w, x in _roles(rec + b")R.")] == [
        ("copyreg._reconstructor", "REDUCE: reconstructs a class that is not a global")
    ]
    # its class is checked for "build", its base (the second argument) as a value handed over
    assert [(w, x) for _, w, x in _roles(rec + _sg("mypkg.Callable") + obj + b"N\x87R.")] == [
        ("mypkg.Callable", "REDUCE: mypkg.Callable may be named but not reconstructed")
    ]
    assert [(w, x) for _, w, x in _roles(rec + _sg("mypkg.Both") + _sg("mypkg.Named") + b"N\x87R.")] == [
        ("mypkg.Named", "REDUCE: mypkg.Named is passed to copyreg._reconstructor, and may not be called")
    ]
    # the third argument (the state) is not handed to a call
    assert _roles(rec + _sg("mypkg.Both") + obj + _sg("mypkg.Named") + b"\x87R.") == []
    # the instance's class is the reconstructed one: BUILD and methods check it
    assert [(w, x) for _, w, x in _roles(rec + _sg("mypkg.Built") + obj + b"N\x87RNa.")] == [
        ("mypkg.Built", "APPEND: calls a method of mypkg.Built, which may not be called")
    ]
    assert [(w, x) for _, w, x in _roles(rec + b"N" + obj + b"N\x87R}b.")][-1] == (
        "BUILD", "reconstructs an object whose class cannot be told statically"
    )


def _build(data: bytes, **kw: object) -> list[tuple[str, str]]:
    """Findings of a stream that ends in BUILD, STOP: each at the BUILD's offset."""
    kw.setdefault("allowlist", ROLES)
    r = _walk(data, **kw)
    return [(w, x) for o, w, x in _reasons(r) if o == len(data) - 2]


def test_build_targets() -> None:
    assert _build(P4 + _sg("mypkg.Both") + b")R}b.") == []
    assert _build(P4 + _sg("mypkg.Callable") + b")R}b.") == [
        ("mypkg.Callable", "BUILD: mypkg.Callable may be named but not reconstructed")
    ]
    # a global not in the list is refused where it is named, not again at BUILD
    assert _build(P4 + _sg("other.Thing") + b")R}b.") == []
    assert _build(P4 + _sg("mypkg.Both") + b"}b.") == [("BUILD", "sets attributes of the global mypkg.Both itself")]
    assert _build(P4 + b"N)R}b.")[-1] == ("BUILD", "reconstructs an object whose class cannot be told statically")
    assert _build(b"\x80\x02\x82\x01}b.") == [("BUILD", "reconstructs a value the scan does not track (extension)")]
    assert _build(b"\x80\x05\x97}b.") == [("BUILD", "reconstructs a value the scan does not track (buffer)")]
    assert _build(P4 + b"Pa\n}b.", persid_check=lambda p: None) == [
        ("BUILD", "reconstructs a value the scan does not track (persistent)")
    ]
    assert _build(P4 + _str("m") + _sg("mypkg.Callable") + b")R\x93}b.")[-1] == (
        "BUILD", "reconstructs a value the scan does not track (unresolved global)"
    )
    arr = _wrapper(align=False) + bytes(12) + b"}b."
    assert _build(arr, allowlist=ALLOW) == [("BUILD", "reconstructs a value the scan does not track (ndarray)")]
    # plain containers and other opaque values may be built (the unpickler updates a dict)
    assert _build(P4 + b"}}b.") == []
    assert _build(P4 + b"\x8f}b.") == []
    assert _build(P4 + b"K\x01}b.") == []


def test_method_calls_on_values() -> None:
    method = "calls a method of a value the scan cannot check"
    assert _roles(P4 + _sg("mypkg.Both") + b"Na.") == [(17, "APPEND", f"{method} (mypkg.Both)")]
    assert _roles(P4 + b"\x8f(N\x90.") == []
    assert _roles(P4 + b"(\x91(N\x90.") == [(6, "ADDITEMS", f"{method} (frozenset)")]
    assert _roles(P4 + _sg("mypkg.Callable") + b")R(Ne.") == []
    assert _roles(P4 + _sg("mypkg.Built") + b")R(Ne.")[-1] == (
        21, "mypkg.Built", "APPENDS: calls a method of mypkg.Built, which may not be called"
    )
    assert _roles(P4 + _sg("mypkg.Built") + b")RNNs.")[-1] == (
        21, "mypkg.Built", "SETITEM: calls a method of mypkg.Built, which may not be called"
    )
    assert _roles(P4 + _sg("mypkg.Built") + b")R(NNu.")[-1] == (
        22, "mypkg.Built", "SETITEMS: calls a method of mypkg.Built, which may not be called"
    )
    assert _roles(P4 + b"N)R(NNu.")[-1] == (8, "SETITEMS", "calls a method of an object whose class cannot be told statically")
    assert _walk(P4 + b"}(X\x01\x00\x00\x00aK\x01u.").findings == []
    assert _walk(P4 + b"}X\x01\x00\x00\x00aK\x01s.").findings == []


def test_extension_codes() -> None:
    assert _reasons(_walk(b"\x80\x02\x82\x05.")) == [(2, "EXT1", "extension registry code 5: imports whatever copyreg maps it to")]
    assert _reasons(_walk(b"\x80\x02\x83\x05\x01.")) == [(2, "EXT2", "extension registry code 261: imports whatever copyreg maps it to")]


# -- joblib arrays ------------------------------------------------------------------------

I4 = _sg("numpy.dtype") + _str("i4") + b"\x89\x88\x87R"
OBJECTS = _sg("numpy.dtype") + _str("O8") + b"\x89\x88\x87R"
WRAP = "NumpyArrayWrapper"


def _wrapper(shape: bytes = b"K\x03\x85", order: bytes = b"\x8c\x01C", dtype: bytes = I4, align: bool = True,
             state: bytes | None = None) -> bytes:
    """A joblib NumpyArrayWrapper up to its BUILD (the array bytes follow)."""
    if state is None:
        state = b"}(" + _str("shape") + shape + _str("order") + order + _str("dtype") + dtype
        if align:
            state += _str("numpy_array_alignment_bytes") + b"K\x10"
        state += b"u"
    return P4 + _sg("joblib.numpy_pickle.NumpyArrayWrapper") + b")\x81" + state + b"b"


def _joblib(data: bytes, **kw: object) -> PickleResult:
    kw.setdefault("allowlist", ALLOW)
    return scan_pickle(io.BytesIO(data), label="m.joblib", **kw)  # type: ignore[arg-type]


def _whats(r: PickleResult) -> list[tuple[str, str]]:
    return [(f.what, f.reason) for f in r.findings]


def test_joblib_array_bytes_are_skipped() -> None:
    r = _joblib(_wrapper() + b"\x03\xff\xff\xff" + bytes(12) + b".")
    assert (r.findings, r.inline_arrays, r.complete) == ([], 1, True)
    r = _joblib(_wrapper(align=False) + bytes(12) + b".")
    assert (r.findings, r.inline_arrays) == ([], 1)
    r = _joblib(_wrapper(shape=b")", align=False) + bytes(4) + b".")  # a 0-d array holds one item
    assert (r.findings, r.inline_arrays) == ([], 1)
    r = _joblib(_wrapper(shape=b"K\x02K\x03\x86", order=b"\x8c\x01F", align=False) + bytes(24) + b".")
    assert (r.findings, r.inline_arrays) == ([], 1)
    r = _joblib(_wrapper(shape=b"K\x00\x85", align=False) + b".")
    assert (r.findings, r.inline_arrays) == ([], 1)
    # without joblib the same bytes are opcodes
    r = _joblib(_wrapper(align=False) + bytes(12) + b".", joblib=False)
    assert (r.inline_arrays, r.stop) == (0, "malformed")


def test_joblib_array_state_is_checked() -> None:
    assert _whats(_joblib(_wrapper(state=b"N") + b".")) == [(WRAP, "state is not a dict: the array size cannot be computed")]
    assert _whats(_joblib(_wrapper(shape=b"K\x03") + b".")) == [(WRAP, "shape is not a tuple of sizes (3)")]
    assert _whats(_joblib(_wrapper(shape=b"J\xff\xff\xff\xff\x85") + b".")) == [(WRAP, "shape is not a tuple of sizes (a tuple of 1)")]
    assert _whats(_joblib(_wrapper(shape=b"\x88\x85") + b".")) == [(WRAP, "shape is not a tuple of sizes (a tuple of 1)")]
    assert _whats(_joblib(_wrapper(shape=b"X\x01\x00\x00\x003\x85") + b".")) == [(WRAP, "shape is not a tuple of sizes (a tuple of 1)")]
    assert _whats(_joblib(_wrapper(order=b"\x8c\x01K") + b".")) == [(WRAP, "order is not 'C' or 'F' ('K')")]
    assert _whats(_joblib(_wrapper(order=b"N") + b".")) == [(WRAP, "order is not 'C' or 'F' (None)")]
    assert _whats(_joblib(_wrapper(dtype=b"N") + b".")) == [(WRAP, "dtype cannot be resolved statically")]
    assert _whats(_joblib(_wrapper(dtype=_str("i4")) + b".")) == [(WRAP, "dtype cannot be resolved statically")]


def test_joblib_array_truncations_and_limits() -> None:
    assert _whats(_joblib(_wrapper())) == [(WRAP, "truncated: no alignment byte after the wrapper")]
    assert _whats(_joblib(_wrapper() + b"\x03\xff")) == [(WRAP, "truncated inside the alignment padding")]
    r = _joblib(_wrapper(align=False) + bytes(11))
    assert _whats(r) == [(WRAP, "truncated: the array needs 12 bytes")] and r.inline_arrays == 0
    assert r.findings[0].offset == len(_wrapper(align=False))
    big = _wrapper(shape=b"J\x00\x00\x00\x01\x85", align=False) + b"."  # 1 << 24 items of 4 bytes
    assert _whats(_joblib(big, limits=ScanLimits(max_decompressed_bytes=(1 << 26) - 1))) == [
        (WRAP, f"array of {1 << 26} bytes exceeds the limit")
    ]


def test_joblib_object_arrays_are_read_as_inline_pickles() -> None:
    inner = P4 + b"N."
    r = _joblib(_wrapper(dtype=OBJECTS, align=False) + inner + b".")
    assert (r.findings, r.inline_pickles, r.inline_arrays) == ([], 1, 0)
    r = _joblib(_wrapper(dtype=OBJECTS, align=False) + b"cos\nsystem\n.")
    assert ("os.system", "GLOBAL: global not in the allowlist (module 'os', name 'system')") in _whats(r)
    assert "os.system" in r.globals and r.modules["os.system"] == "os"
    two = _wrapper(dtype=OBJECTS, align=False) + inner + _wrapper(dtype=OBJECTS, align=False)[2:] + inner + b"\x86."
    assert _joblib(two).inline_pickles == 2
    assert _whats(_joblib(two, limits=ScanLimits(max_inline_pickles=1)))[-1] == (WRAP, "more than 1 inline pickles")
    assert _joblib(two, limits=ScanLimits(max_inline_pickles=2)).findings == []
    # the inner walk counts toward the opcode limit of the stream
    outer = _joblib(_wrapper(dtype=OBJECTS, align=False) + inner + b".")
    assert outer.opcodes > len(_wrapper(dtype=OBJECTS, align=False)) // 8 + 3
    n = outer.opcodes
    assert _joblib(_wrapper(dtype=OBJECTS, align=False) + inner + b".", limits=ScanLimits(max_opcodes=n)).findings == []
    assert _whats(_joblib(_wrapper(dtype=OBJECTS, align=False) + inner + b".", limits=ScanLimits(max_opcodes=n - 1)))


def test_joblib_array_bytes_are_also_read_as_pickle_load_reads_them() -> None:
    note = "as pickle.load reads joblib's array data: "
    payload = b"cos\nsystem\n."  # 12 bytes: the array's data
    r = _joblib(_wrapper(align=False) + payload + b".")
    assert ("os.system", f"{note}GLOBAL: global not in the allowlist (module 'os', name 'system')") in _whats(r)
    assert "os.system" in r.globals and r.modules["os.system"] == "os"
    assert r.inline_arrays == 1
    # only once per stream
    r = _joblib(_wrapper(align=False) + bytes(12) + _wrapper(align=False)[2:] + payload + b"\x86.")
    assert r.findings == [] and r.inline_arrays == 2


def test_joblib_array_inside_a_frame_is_refused() -> None:
    body = _wrapper(align=False)[2:]
    framed = P4 + b"\x95" + (len(body) + 12).to_bytes(8, "little") + body + bytes(12) + b"."
    assert _whats(_joblib(framed)) == [("BUILD", "joblib array data inside a pickle frame (joblib never writes this)")]
    # a frame that ends where the array starts is what joblib writes
    framed = P4 + b"\x95" + len(body).to_bytes(8, "little") + body + bytes(12) + b"."
    assert _joblib(framed).findings == []


# -- the stream ---------------------------------------------------------------------------


def _stream(data: bytes, **kw: object) -> _Stream:
    kw.setdefault("max_bytes", 1 << 30)
    return _Stream(io.BytesIO(data), label="s", **kw)  # type: ignore[arg-type]


def _limit(fn: object) -> tuple[int | None, str, str]:
    try:
        fn()  # type: ignore[operator]
    except ScanAbort as exc:
        return (exc.finding.offset, exc.finding.what, exc.finding.reason)
    raise AssertionError("no abort")


def test_stream_reads_with_a_position() -> None:
    s = _stream(b"abc\ndef")
    assert (s.peek(2), s.pos) == (b"ab", 0)
    assert (s.read(1), s.pos) == (b"a", 1)
    assert (s.readline(), s.pos) == (b"bc\n", 4)
    assert not s.at_eof()
    assert (s.read(), s.pos) == (b"def", 7)
    assert s.at_eof() and s.read(3) == b"" and s.readline() == b""
    s = _stream(b"x" * 200_000)
    assert s.skip(150_000) == 150_000 and s.pos == 150_000
    assert s.skip(100_000) == 50_000 and s.pos == 200_000
    s = _stream(b"a" * 70_000 + b"\nb")
    assert len(s.readline()) == 70_001 and s.readline() == b"b"


def test_stream_limit_is_inclusive() -> None:
    assert _stream(b"abcd", max_bytes=4).read(4) == b"abcd"
    assert _limit(lambda: _stream(b"abcde", max_bytes=4).read(5)) == (4, "size", "more than 4 bytes (the limit)")
    assert _limit(lambda: _stream(b"abcde", max_bytes=4, what="decompressed size").read()) == (
        4, "decompressed size", "more than 4 bytes (the limit)"
    )
    s = _stream(b"abcd", max_bytes=4)
    assert s.read() == b"abcd" and s.at_eof()
    s = _stream(b"abcde", max_bytes=4)
    assert s.read(2) == b"ab" and s.peek(2) == b"cd"
    assert _limit(lambda: s.peek(3))[2] == "more than 4 bytes (the limit)"
    assert _limit(lambda: _stream(b"abcdef", max_bytes=4).skip(5))[2] == "more than 4 bytes (the limit)"


def test_stream_line_limit() -> None:
    line = b"x" * 100
    assert _stream(line + b"\n", max_line=100).readline() == line + b"\n"
    assert _stream(line, max_line=100).readline() == line
    # One byte over is refused, whether the newline is in the same chunk or not.
    for over in (line + b"x" + b"\n", line + b"x", b"y" * 200_000 + b"\n"):
        assert _limit(lambda over=over: _stream(over, max_line=100).readline()) == (
            0, "line", "text argument longer than 100 bytes (the limit)"
        )
    assert _limit(lambda: _stream(b"y" * 200_000 + b"\n", max_line=65_536).readline()) == (
        0, "line", "text argument longer than 65536 bytes (the limit)"
    )
    s = _stream(b"ab\n" + b"z" * 101 + b"\n", max_line=100)
    assert s.readline() == b"ab\n"
    assert _limit(s.readline)[0] == 3  # the offset of the long line
    r = scan_pickle(io.BytesIO(b"I" + b"1" * 200_000 + b"\n."), label="m.pkl", allowlist=ALLOW, limits=ScanLimits(max_line_bytes=65_536))
    assert [(f.what, f.reason) for f in r.findings] == [("line", "text argument longer than 65536 bytes (the limit)")]


def test_stream_seeks_over_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"a" * ((1 << 20) + 10) + b"tail")
    with path.open("rb") as raw:
        s = _Stream(raw, label="f", max_bytes=1 << 30)
        assert s._regular_file()
        assert s.read(3) == b"aaa"
        assert s.skip((1 << 20) + 7) == (1 << 20) + 7 and s.pos == (1 << 20) + 10
        assert s.read() == b"tail"
    with path.open("rb") as raw:
        s = _Stream(raw, label="f", max_bytes=1 << 30)
        assert s.skip(2 << 20) == (1 << 20) + 14 and s.pos == (1 << 20) + 14 and s.at_eof()
    with path.open("rb") as raw:
        s = _Stream(raw, label="f", max_bytes=1 << 20)
        assert _limit(lambda: s.skip((1 << 20) + 1)) == (1 << 20, "size", f"more than {1 << 20} bytes (the limit)")
    assert not _stream(b"x")._regular_file()


# -- number parsing as the two unpicklers read it --------------------------------------


def test_c_strtol() -> None:
    assert _c_strtol(b"42") == (42, 2, False)
    assert _c_strtol(b" \t\n\v\f\r-42x") == (-42, 9, False)
    assert _c_strtol(b"+7") == (7, 2, False)
    assert _c_strtol(b"0x1F") == (31, 4, False)
    assert _c_strtol(b"0X1f") == (31, 4, False)
    assert _c_strtol(b"-0x10") == (-16, 5, False)
    assert _c_strtol(b"0x") == (0, 1, False)
    assert _c_strtol(b"0xg") == (0, 1, False)
    assert _c_strtol(b"017") == (15, 3, False)
    assert _c_strtol(b"08") == (0, 1, False)
    assert _c_strtol(b"0") == (0, 1, False)
    assert _c_strtol(b"9a") == (9, 1, False)
    for nothing in (b"", b"   ", b"-", b"+", b"x", b"-x"):
        assert _c_strtol(nothing) == (0, 0, False), nothing
    assert _c_strtol(str((1 << 63) - 1).encode()) == ((1 << 63) - 1, 19, False)
    assert _c_strtol(str(1 << 63).encode()) == (1 << 63, 19, True)
    assert _c_strtol(str(-(1 << 63)).encode()) == (-(1 << 63), 20, False)
    assert _c_strtol(str(-(1 << 63) - 1).encode()) == (-(1 << 63) - 1, 20, True)


def _opaque(v: object) -> bool:
    return isinstance(v, _Opaque) and v.what == "number (loaders disagree)"


def test_int_lines() -> None:
    assert _parse_int_line(b"42\n") == (True, 42)
    assert _parse_int_line(b"01\n") == (True, True) and _parse_int_line(b"01\n")[1] is True
    assert _parse_int_line(b"00\n")[1] is False
    assert _parse_int_line(b"1\n") == (True, 1) and _parse_int_line(b"1\n")[1] is not True
    assert _parse_int_line(b"0x10\n") == (True, 16)
    assert _parse_int_line(b"1_000\n") == (True, 1000)
    assert _parse_int_line(str(1 << 70).encode() + b"\n") == (True, 1 << 70)
    assert _parse_int_line(b"x\n") == (False, None)
    assert _parse_int_line(b"\n") == (False, None)
    ok, v = _parse_int_line(b"010\n")  # C reads octal 8; int(..., 0) refuses a leading zero
    assert ok and _opaque(v)
    ok, v = _parse_int_line(b"1\x002\n")  # C stops at the NUL
    assert ok and _opaque(v)
    ok, v = _parse_int_line(b" 1\n")  # three bytes holding 0 or 1: C's bool, pickle.py's int
    assert ok and _opaque(v)


def test_long_and_float_lines() -> None:
    assert _parse_long_line(b"12L\n") == (True, 12)
    assert _parse_long_line(b"12\n") == (True, 12)
    assert _parse_long_line(b"0x1fL\n") == (True, 31)
    assert _parse_long_line(b"L\n") == (False, None)
    assert _parse_long_line(b"xL\n") == (False, None)
    ok, v = _parse_long_line(b"1\x002L\n")
    assert ok and _opaque(v)
    assert _parse_float_line(b"1.5\n") == (True, 1.5)
    assert _parse_float_line(b"-2e3\n") == (True, -2000.0)
    assert _parse_float_line(b"inf\n") == (True, math.inf)
    assert _parse_float_line(b"-Infinity\n") == (True, -math.inf)
    ok, v = _parse_float_line(b"nan\n")
    assert ok and math.isnan(v)
    ok, v = _parse_float_line(b"1e999\n")  # C's strtod overflows to inf without saying "inf": refused there
    assert ok and _opaque(v)
    assert _parse_float_line(b"1.5x\n") == (False, None)
    assert _parse_float_line(b"\n") == (False, None)
    ok, v = _parse_float_line(b"1_0.5\n")  # float() accepts the underscore, C stops at it
    assert ok and _opaque(v)
    ok, v = _parse_float_line(b"1.5\x00\n")
    assert ok and _opaque(v)


def test_agree() -> None:
    assert _agree(None, None) == (False, None)
    assert _agree(2, 2) == (True, 2)
    for c, p in ((None, 1), (1, None), (1, 1.0), (True, 1), (1, 2)):
        ok, v = _agree(c, p)
        assert ok and _opaque(v), (c, p)
    assert _c_cstr(b"ab\0cd") == b"ab" and _c_cstr(b"abc") == b"abc" and _c_cstr(b"\0") == b""


def test_static_attr() -> None:
    g = _Global("mypkg", "Callable")
    assert _static_attr((g, "name")) and _static_attr((g, "_x9"))
    for args in ((g, "1a"), (g, "a.b"), (g, "a b"), (g, ""), (g,), ("mypkg", "a"), (g, "a", "b"), [g, "a"], (g, 1)):
        assert not _static_attr(args), args


def test_fork_reads_at_most_a_window_of_array_data_as_opcodes() -> None:
    n = 393216  # 1.5 MiB of int32
    data = b"\x8d" + (1 << 21).to_bytes(8, "little")  # BINUNICODE8 of 2 MiB: read past the window
    stream = _wrapper(shape=b"J" + n.to_bytes(4, "little") + b"\x85", align=False) + data + bytes(4 * n - len(data)) + b"."
    r = _joblib(stream)
    assert _whats(r) == [(WRAP, "pickle.load reads more than 1048576 bytes of joblib's array data as opcodes")]
    assert r.findings[0].offset == len(_wrapper(shape=b"J" + n.to_bytes(4, "little") + b"\x85", align=False))
    assert r.inline_arrays == 1
    # a refusal inside the forked walk is kept, with its note
    r = _joblib(_wrapper(align=False) + b"((((" + bytes(8) + b".", limits=ScanLimits(max_mark_depth=3))
    assert _whats(r) == [("MARK", "as pickle.load reads joblib's array data: nested deeper than 3 (the limit)")]


def test_set_items_keeps_plain_keys_in_pairs() -> None:
    d: dict[object, object] = {}
    _set_items(d, ["a", 1, 2, "b", 1.5, "c", None, "d", ("t",), "e", b"k", "f", "odd"])
    assert d == {"a": 1, 2: "b", 1.5: "c", None: "d"}
    # DICT and SETITEMS keep the last value of a key, as dict does
    r = _joblib(_wrapper(state=b"}(" + _str("shape") + b"N" + _str("shape") + b"K\x03\x85" + _str("order") + _str("C")
                         + _str("dtype") + I4 + b"u") + bytes(12) + b".")
    assert (r.findings, r.inline_arrays) == ([], 1)


def test_stack_global_operands_that_can_never_be_strings() -> None:
    malformed = "module and name must be strings (malformed pickle)"
    unresolved = "module and name are not string constants: the global cannot be resolved statically"
    name = _str("x")
    for module in (b"K\x01", b"G" + bytes(8), b"C\x01a", b"]", b"}", b")", _sg("mypkg.Callable"), b"N",
                   b"\x8f", b"(\x91", b"\x8a\x01\x01",
                   _sg("mypkg.Callable") + b")\x81"):  # NEWOBJ makes exactly that class
        assert _roles(P4 + module + name + b"\x93.")[-1][2] == malformed, module
    for module in (_sg("mypkg.Callable") + b")R",  # a call may return a str
                   _sg("builtins.str") + b")\x81",  # NEWOBJ of str is a str
                   b"\x82\x01", b"Pa\n"):
        found = _walk(P4 + module + name + b"\x93.", allowlist=ROLES, persid_check=lambda p: None).findings
        assert found and found[-1].reason == unresolved, module


def test_dtype_of_a_joblib_array_is_rebuilt_with_numpy() -> None:
    state = b"(K\x03" + _str("<") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t"
    assert _joblib(_wrapper(dtype=I4 + state + b"b", align=False) + bytes(12) + b".").findings == []
    one = _sg("numpy.dtype") + _str("?") + b"\x89\x88\x87R"  # bool: one byte
    r = _joblib(_wrapper(dtype=one, align=False) + bytes(3) + b".")
    assert (r.findings, r.inline_arrays) == ([], 1)
    unresolved = [(WRAP, "dtype cannot be resolved statically")]
    for dtype in (
        _sg("numpy.dtype") + b"(" + _str("i4") + b"\x89\x88\x88tR",  # four arguments
        _sg("numpy.dtype") + _str("i4") + b"K\x00\x86R",  # an argument that is not a bool
        _sg("numpy.dtype") + _str("<i4") + b"\x85R",  # not a plain type string
        _sg("numpy.dtype") + _str("i12345678901") + b"\x85R",
        _sg("numpy.dtype") + b")R",  # no arguments
        _sg("numpy.dtype") + b"K\x04\x85R",
        _sg("numpy.dtype") + b"NR",  # arguments not a tuple
        _sg("builtins.list") + _str("i4") + b"\x85R",  # not made by numpy.dtype
        I4 + b"(K\x03\x8f" + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb",  # opaque in its state
        I4 + b"(K\x03tb",  # a state numpy refuses
    ):
        assert _whats(_joblib(_wrapper(dtype=dtype, align=False) + bytes(12) + b".")) [-1:] == unresolved, dtype
    # a one-argument dtype is enough
    r = _joblib(_wrapper(dtype=_sg("numpy.dtype") + _str("i4") + b"\x85R", align=False) + bytes(12) + b".")
    assert (r.findings, r.inline_arrays) == ([], 1)
    # a nested dtype in the state (a structured dtype's fields) is rebuilt too
    f8 = _sg("numpy.dtype") + _str("f8") + b"\x89\x88\x87R"
    fields = b"(" + _str("x") + b"(" + f8 + b"K\x00t" + b"d"
    struct_state = b"(K\x03" + _str("|") + b"N(" + _str("x") + b"t" + fields + b"K\x08K\x01K\x10tb"
    v8 = _sg("numpy.dtype") + _str("V8") + b"\x89\x88\x87R" + struct_state
    r = _joblib(_wrapper(shape=b"K\x02\x85", dtype=v8, align=False) + bytes(16) + b".")
    assert (r.findings, r.inline_arrays) == ([], 1)


def test_joblib_refusals_are_at_the_wrappers_build_or_where_the_bytes_run_out() -> None:
    for w in (_wrapper(state=b"N"), _wrapper(shape=b"K\x03"), _wrapper(order=b"N"), _wrapper(dtype=b"N")):
        r = _joblib(w + b".")
        assert [(f.offset, f.what) for f in r.findings] == [(len(w) - 1, WRAP)]
        assert r.stop == "refused"
    w = _wrapper(shape=b"J\x00\x00\x00\x01\x85", align=False)
    r = _joblib(w + b".", limits=ScanLimits(max_decompressed_bytes=(1 << 26) - 1))
    assert [(f.offset, f.what) for f in r.findings] == [(len(w) - 1, WRAP)] and r.stop == "refused"
    w = _wrapper()
    r = _joblib(w)
    assert [(f.offset, f.what) for f in r.findings] == [(len(w), WRAP)] and r.stop == "malformed"
    r = _joblib(w + b"\x03\xff")
    assert [(f.offset, f.what) for f in r.findings] == [(len(w) + 2, WRAP)] and r.stop == "malformed"
    r = _joblib(w + b"\x03\xff\xff\xff" + bytes(5))
    assert [(f.offset, f.reason) for f in r.findings] == [(len(w) + 4, "truncated: the array needs 12 bytes")]
    two = _wrapper(dtype=OBJECTS, align=False) + P4 + b"N." + _wrapper(dtype=OBJECTS, align=False)[2:]
    r = _joblib(two + P4 + b"N.\x86.", limits=ScanLimits(max_inline_pickles=1))
    assert [(f.offset, f.what) for f in r.findings] == [(len(two) - 1, WRAP)] and r.stop == "refused"


def test_number_parsing_edges() -> None:
    # a character that is neither a sign nor a digit stops strtol at once
    assert _c_strtol(b"X5") == (0, 0, False)
    assert _c_strtol(b"1X") == (1, 1, False)
    assert _c_strtol(b"07X") == (7, 2, False)
    assert _c_strtol(b"0x1X") == (1, 3, False)
    assert _c_strtol(b"0xX") == (0, 1, False)
    assert _c_strtol(b"0xA") == (10, 3, False)
    assert _c_strtol(b"0xa") == (10, 3, False)
    assert _c_strtol(b"0xga5") == (0, 1, False)  # only the digit after "0x" decides the base
    ok, v = _parse_int_line(b"010\x00\n")  # C reads 8 up to the NUL; pickle.py refuses the line
    assert ok and _opaque(v)
    assert _parse_long_line(b"\n") == (False, None)
    assert _parse_long_line(b"5\n") == (True, 5)
    assert _parse_float_line(b"5\n") == (True, 5.0)
    g = _Global("mypkg", "Callable")
    assert _static_attr((g, "Attr")) and _static_attr((g, "ATTR_2"))


def test_inline_pickle_findings_name_the_file() -> None:
    r = _joblib(_wrapper(dtype=OBJECTS, align=False) + b"cos\nsystem\n.")
    assert {f.file for f in r.findings} == {"m.joblib"}


def test_forked_walk_works_on_a_copy_and_keeps_the_streams_settings() -> None:
    note = "as pickle.load reads joblib's array data: "
    # the fork appends None to the list below the wrapper: the main walk's list stays empty
    data = P4 + b"]" + _wrapper(align=False)[2:] + b"0Na." + bytes(8) + b"0."
    r = _joblib(data)
    assert (r.findings, r.value, r.inline_arrays) == ([], [], 1)
    # its findings name the file, its globals add to the stream's
    r = _joblib(_wrapper(align=False) + b"cos\nsystem\n.")
    assert {f.file for f in r.findings} == {"m.joblib"}
    assert {"os.system", "joblib.numpy_pickle.NumpyArrayWrapper", "numpy.dtype"} <= r.globals
    # the stream's line limit applies to it
    n = 17501
    line = b"I" + b"1" * (4 * n - 1)
    r = _joblib(_wrapper(shape=b"J" + n.to_bytes(4, "little") + b"\x85", align=False) + line + b".",
                limits=ScanLimits(max_line_bytes=1000))
    assert _whats(r) == [("line", "text argument longer than 1000 bytes (the limit)")]  # the stream's own finding
    assert r.findings[0].file == "m.joblib"
    # a probe stops at a persistent id there too, without a finding
    r = _joblib(_wrapper(align=False) + b"Pa\n." + bytes(8) + b".", probe=True)
    assert (r.findings, r.inline_arrays) == ([], 1)
    assert _whats(_joblib(_wrapper(align=False) + b"Pa\n." + bytes(8) + b".")) == [
        ("PERSID", f"{note}persistent id: the loader decides what it means (refused outside PyTorch archives)")
    ]


def test_values_too_deep_to_copy_for_the_fork_are_refused() -> None:
    depth = 3000
    w = _wrapper(align=False)
    data = P4 + b"]" * depth + b"a" * (depth - 1) + w[2:] + bytes(12) + b"0."
    r = _joblib(data)
    assert [(f.offset, f.what, f.reason) for f in r.findings] == [
        (len(data) - 14, WRAP, "values nested too deeply to read joblib's array data as pickle.load does")
    ]
    assert r.inline_arrays == 1


def test_stream_skips_and_seeks_at_their_edges(tmp_path: Path) -> None:
    # more than one read's worth (16 MiB) through a stream that is not a file
    big = (16 << 20) + (1 << 20)
    s = _stream(bytes(big + 10))
    assert s.skip(big) == big and s.pos == big
    s = _stream(bytes(3 << 20))
    assert s.skip(2 << 20) == 2 << 20 and s.pos == 2 << 20  # a BytesIO is never seeked
    # a file read whole into the buffer, then skipped past its end
    path = tmp_path / "chunk.bin"
    path.write_bytes(bytes(65536))
    with path.open("rb") as raw:
        s = _Stream(raw, label="f", max_bytes=1 << 30)
        s.read(3)
        assert s.skip(2 << 20) == 65533 and s.pos == 65536
    path = tmp_path / "f.bin"
    path.write_bytes(bytes((1 << 20) + 10))
    with path.open("rb") as raw:
        s = _Stream(raw, label="f", max_bytes=(1 << 20) + 10)
        assert s.skip((1 << 20) + 10) == (1 << 20) + 10  # up to the limit exactly
    with path.open("rb") as raw:
        s = _Stream(raw, label="f", max_bytes=1 << 30)
        s.read(3)
        assert s.skip(2 << 20) == (1 << 20) + 7 and s.pos == (1 << 20) + 10 and s.at_eof()


def test_stream_limit_names_the_stream() -> None:
    try:
        _Stream(io.BytesIO(b"abcde"), label="the-file", max_bytes=4).read(5)
    except ScanAbort as exc:
        assert (exc.finding.file, exc.finding.offset) == ("the-file", 4)
    else:
        raise AssertionError("no abort")


def test_stream_readline_across_chunks() -> None:
    assert _stream(b"\nabc").readline() == b"\n"
    s = _stream(b"ab\n" + b"c" * 70_000 + b"\n" + b"d")
    assert s.readline() == b"ab\n"
    assert s.readline() == b"c" * 70_000 + b"\n"
    assert (s.readline(), s.pos) == (b"d", 70_005)
    # the line limit counts the bytes of the line, not those already read
    s = _stream(b"x" + b"a" * 65_536 + b"\n", max_line=65_536)
    assert s.read(1) == b"x" and len(s.readline()) == 65_537
    try:
        _Stream(io.BytesIO(b"y" * 200_000), label="the-file", max_bytes=1 << 30, max_line=1000).readline()
    except ScanAbort as exc:
        assert (exc.finding.file, exc.finding.what) == ("the-file", "line")
    else:
        raise AssertionError("no abort")


def test_call_findings_at_the_calling_opcode() -> None:
    data = P4 + _sg("mypkg.Named") + b")R."
    assert _roles(data) == [(len(data) - 2, "mypkg.Named", "REDUCE: mypkg.Named may be named but not called")]
    rec = P4 + _sg("copyreg._reconstructor")
    data = rec + b"N" + _sg("builtins.object") + b"N\x87R."
    assert _roles(data) == [(len(data) - 2, "copyreg._reconstructor", "REDUCE: reconstructs a class that is not a global")]
    data = rec + _sg("mypkg.Callable") + _sg("builtins.object") + b"N\x87R."
    assert _roles(data) == [(len(data) - 2, "mypkg.Callable", "REDUCE: mypkg.Callable may be named but not reconstructed")]
    data = P4 + _sg("builtins.getattr") + _sg("mypkg.Callable") + _str("other") + b"\x86R."
    assert [o for o, _, _ in _roles(data)] == [len(data) - 2]
    # NEWOBJ_EX, like NEWOBJ, makes exactly its class: never a str unless the class is str
    assert _roles(P4 + _sg("mypkg.Callable") + b")}\x92" + _str("x") + b"\x93.")[-1][2] == (
        "module and name must be strings (malformed pickle)"
    )


def test_string_quotes() -> None:
    assert _walk(b"S''\n.").value == ""
    assert _walk(b'S"a"\n.').value == "a"
    assert _reasons(_walk(b"SXabcX\n.")) == [(0, "STRING", "the STRING argument must be quoted")]


def test_numpy_reconstruct_does_not_call_its_other_arguments() -> None:
    rec = P4 + _sg("numpy.core.multiarray._reconstruct") + _sg("numpy.ndarray")
    assert _found(rec + _sg("numpy.memmap") + b"C\x01b\x87R.") == []
    # copyreg._reconstructor's second argument (the base) is checked as a value handed over
    data = P4 + _sg("copyreg._reconstructor") + _sg("collections.OrderedDict") + _sg("numpy.memmap") + b"N\x87R."
    assert ("numpy.memmap", "REDUCE: numpy.memmap is passed to copyreg._reconstructor, and may not be called") in _found(data)


def test_every_length_prefixed_opcode_in_a_benign_stream() -> None:
    assert _walk(P4 + b"\x8b\x02\x00\x00\x00\x05\x01.").value == 261  # LONG4
    assert _walk(P4 + b"\x8d\x02" + bytes(7) + b"hi.").value == "hi"  # BINUNICODE8
    for op in (b"B\x02\x00\x00\x00", b"C\x02", b"\x8e\x02" + bytes(7), b"\x96\x02" + bytes(7)):  # BINBYTES..BYTEARRAY8
        r = _walk(b"\x80\x05" + op + b"hi.")
        assert (r.findings, r.complete) == ([], True), op
    assert _walk(P4 + b"T\x02\x00\x00\x00hi.").value == "hi"  # BINSTRING
