"""A differential oracle: the scanner never says safe where a recording unpickler would do harm.

The oracle (``chainproof.scan._recorder``) is ``pickle._Unpickler`` and joblib's
``NumpyUnpickler`` with ``find_class`` returning inert recorders: nothing real is
imported or called. A hypothesis fuzzer (fixed seed, bounded examples) builds
opcode streams (GLOBAL, STACK_GLOBAL, REDUCE, OBJ, NEWOBJ, NEWOBJ_EX, INST,
BUILD, EXT1/2/4, APPEND/SETITEM, memo ops, joblib array wrappers whose data are
opcodes), nests them in every container and compression (gzip, bz2, xz, lzma, zlib,
lz4, zip, tar, ``.npy`` object arrays, ``.npz``, PyTorch zip), and checks:

- the scanner never says safe where either loader records a use of a global
  that the allowlist does not permit (import, call, reconstruction), a call of
  something that is not a global, or an extension code;
- every global an oracle resolves was reported by the scanner (unless the scan
  stopped earlier with a refusal).

Each opcode that imports or calls also has a test of its own, built so that
only that opcode's check can catch it.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import tarfile
import zipfile
import zlib
from typing import Any

import pytest
from hypothesis import given, seed, settings
from hypothesis import strategies as st

from chainproof.scan import Allowlist, scan_bytes
from chainproof.scan._recorder import Log, record
from chainproof.scan.pickles import looks_importable, scan_pickle

ALLOW = Allowlist.default()

CALLABLE = ["builtins.list", "collections.OrderedDict", "builtins.dict", "sklearn.linear_model._base.LinearRegression"]
NAMED_ONLY = ["numpy.memmap"]
DENIED = ["os.system", "builtins.eval", "subprocess.Popen", "numpy.testing._private.utils.runstring", "builtins.getattr"]
RECONSTRUCTORS = ["copyreg._reconstructor", "numpy.core.multiarray._reconstruct"]
GLOBALS = CALLABLE + NAMED_ONLY + DENIED + RECONSTRUCTORS + ["builtins.object", "numpy.ndarray"]


def _permitted(log: Log) -> list[str]:
    """Every event the allowlist does not permit."""
    bad = []
    for e in log.events:
        if e.kind in ("ext", "persid"):
            bad.append(f"{e.kind} {e.how}")
            continue
        if e.target is None:
            bad.append(f"{e.kind} of a value that is not a global ({e.how})")
            continue
        module, _, name = e.target.rpartition(".")
        if e.kind == "name" and not looks_importable(module):
            continue  # __import__ of a module name that is not dotted identifiers finds nothing installed
        if e.kind == "name" and e.target == "builtins.getattr":
            continue  # naming getattr imports nothing; calling it is an event of its own
        role = {"name": "name", "call": "call", "build": "build"}[e.kind]
        if not ALLOW.may(module, name, role):
            bad.append(f"{e.kind} {e.target} ({e.how})")
    return bad


# -- a generator of opcode streams -------------------------------------------------


def _str(s: str) -> bytes:
    b = s.encode()
    return b"\x8c" + bytes([len(b)]) + b


class _Gen:
    def __init__(self, data: st.DataObject, proto: int) -> None:
        self.d = data
        self.proto = proto
        self.memo = 0

    def draw(self, strategy: Any) -> Any:
        return self.d.draw(strategy)

    def memoize(self, ops: bytes) -> bytes:
        if self.draw(st.booleans()):
            self.memo += 1
            return ops + b"\x94"
        return ops

    def glob(self) -> bytes:
        dotted = self.draw(st.sampled_from(GLOBALS))
        if self.proto == 2 and dotted == "builtins.eval" and self.draw(st.booleans()):
            dotted = "__builtin__.eval"  # the Python 2 name, mapped by fix_imports
        module, _, name = dotted.rpartition(".")
        how = self.draw(st.sampled_from(["GLOBAL", "STACK_GLOBAL", "memo"]))
        if how == "GLOBAL" or self.proto < 4:
            ops = b"c" + module.encode() + b"\n" + name.encode() + b"\n"
        else:
            ops = _str(module) + _str(name) + b"\x93"
        if how == "memo" and self.memo:
            return b"h" + bytes([self.draw(st.integers(0, self.memo - 1))])
        return self.memoize(ops)

    def const(self) -> bytes:
        kind = self.draw(st.sampled_from(["int", "str", "none", "list", "dict", "tuple"]))
        if kind == "int":
            return b"K" + bytes([self.draw(st.integers(0, 255))])
        if kind == "str":
            return _str(self.draw(st.sampled_from(["true", "os", "system", "latin1", "C", "f8"])))
        if kind == "none":
            return b"N"
        if kind == "list":
            return b"]"
        if kind == "dict":
            return b"}"
        return b")"

    def args(self, depth: int) -> bytes:
        items = [self.expr(depth + 1) for _ in range(self.draw(st.integers(0, 3)))]
        return b"(" + b"".join(items) + b"t"

    def expr(self, depth: int = 0) -> bytes:
        if depth > 3:
            return self.const()
        kind = self.draw(
            st.sampled_from(
                ["const", "global", "reduce", "newobj", "newobj_ex", "obj", "inst", "build", "ext", "append", "setitem", "wrapper"]
            )
        )
        if kind == "const":
            return self.const()
        if kind == "global":
            return self.glob()
        if kind == "reduce":
            return self.memoize(self.glob() + self.args(depth) + b"R")
        if kind == "newobj" and self.proto >= 2:
            return self.memoize(self.glob() + self.args(depth) + b"\x81")
        if kind == "newobj_ex" and self.proto >= 4:
            kw = b"}(" + _str("k") + self.expr(depth + 1) + b"u"
            return self.memoize(self.glob() + self.args(depth) + kw + b"\x92")
        if kind == "obj":
            items = b"".join(self.expr(depth + 1) for _ in range(self.draw(st.integers(0, 2))))
            return self.memoize(b"(" + self.glob() + items + b"o")
        if kind == "inst":
            dotted = self.draw(st.sampled_from(GLOBALS))
            module, _, name = dotted.rpartition(".")
            items = b"".join(self.expr(depth + 1) for _ in range(self.draw(st.integers(0, 2))))
            return b"(" + items + b"i" + module.encode() + b"\n" + name.encode() + b"\n"
        if kind == "build":
            return self.expr(depth + 1) + self.expr(depth + 1) + b"b"
        if kind == "ext":
            return self.draw(st.sampled_from([b"\x82\x01", b"\x83\x01\x00", b"\x84\x01\x00\x00\x00"]))
        if kind == "append":
            return self.expr(depth + 1) + self.expr(depth + 1) + b"a"
        if kind == "setitem":
            return self.expr(depth + 1) + self.const() + self.expr(depth + 1) + b"s"
        if kind == "wrapper":
            return self.wrapper(depth)
        return self.const()

    def wrapper(self, depth: int) -> bytes:
        # A joblib NumpyArrayWrapper of n int8 elements whose raw bytes are drawn: zeros,
        # or opcodes (what pickle.load reads them as) followed by whatever pads them out.
        n = self.draw(st.integers(1, 48))
        code = self.draw(st.sampled_from(["i1", "f8", "O"]))
        dtype = b"cnumpy\ndtype\n" + _str(code) + b"\x89\x88\x87R" + b"(K\x03" + _str("|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
        state = (
            b"}(" + _str("subclass") + b"cnumpy\nndarray\n" + _str("shape") + b"K" + bytes([n]) + b"\x85"
            + _str("order") + _str("C") + _str("dtype") + dtype + _str("allow_mmap") + b"\x89u"
        )
        head = b"cjoblib.numpy_pickle\nNumpyArrayWrapper\n)\x81" + state + b"b"
        if code == "O":
            return head + b"\x80\x04" + self.expr(depth + 1) + b"."
        itemsize = 8 if code == "f8" else 1
        payload = self.draw(st.sampled_from([b"", b"0" + self.expr(depth + 1) + b"0", b"N."]))
        body = payload[: n * itemsize].ljust(n * itemsize, b"\x00")
        return head + body

    def stream(self) -> bytes:
        parts = [self.expr() for _ in range(self.draw(st.integers(1, 3)))]
        body = b"".join(p + b"0" for p in parts[:-1]) + parts[-1]
        return (b"\x80" + bytes([self.proto]) if self.proto else b"") + body + b"."


def _contain(data: bytes, how: str) -> bytes:
    if how == "raw":
        return data
    if how == "gzip":
        return gzip.compress(data)
    if how == "bz2":
        return bz2.compress(data)
    if how == "xz":
        return lzma.compress(data)
    if how == "lzma":
        return lzma.compress(data, format=lzma.FORMAT_ALONE)
    if how == "zlib":
        return zlib.compress(data)
    if how == "lz4":
        import lz4.frame

        return lz4.frame.compress(data)
    buf = io.BytesIO()
    if how in ("npy", "npz"):
        # An object array: numpy.load(allow_pickle=True) unpickles what follows the header.
        import numpy.lib.format as npy_format

        npy = io.BytesIO()
        npy_format.write_array_header_1_0(npy, {"descr": "|O", "fortran_order": False, "shape": (1,)})
        npy.write(data)
        if how == "npy":
            return npy.getvalue()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("arr_0.npy", npy.getvalue())
        return buf.getvalue()
    if how == "torch":
        # PyTorch's zip format: torch.load unpickles archive/data.pkl.
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("archive/data.pkl", data)
            z.writestr("archive/byteorder", b"little")
            z.writestr("archive/version", b"3\n")
        return buf.getvalue()
    if how == "zip":
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("model.pkl", data)
    else:
        with tarfile.open(fileobj=buf, mode="w:gz") as t:
            info = tarfile.TarInfo("model.pkl")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


CONTAINERS = ["raw", "gzip", "bz2", "xz", "lzma", "zlib", "lz4", "zip", "tar", "npy", "npz", "torch"]


#: Examples per run: 300 in the suite (a few seconds); a longer run sets CHAINPROOF_SCAN_FUZZ_EXAMPLES
#: (benchmarks/README.md records one).
FUZZ_EXAMPLES = int(os.environ.get("CHAINPROOF_SCAN_FUZZ_EXAMPLES", "300"))


@seed(20261202)
@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(data=st.data())
def test_scanner_never_says_safe_where_the_oracle_records_harm(data: st.DataObject) -> None:
    proto = data.draw(st.sampled_from([0, 2, 4]))
    stream = _Gen(data, proto).stream()
    plain, joblib = record(stream), record(stream, joblib=True)
    harm = _permitted(plain) + _permitted(joblib)
    how = data.draw(st.sampled_from(CONTAINERS))
    report = scan_bytes(_contain(stream, how), name="model.pkl", allowlist=ALLOW)
    assert not (report.verdict == "safe" and harm), (how, stream, harm)
    assert all(f.what != "scanner" for f in report.findings), [str(f) for f in report.findings]
    # Every global the oracle resolves is one the scanner reported.
    result = scan_pickle(io.BytesIO(stream), label="m", allowlist=ALLOW)
    if result.stop != "refused":
        missing = (plain.names | joblib.names) - result.globals
        assert not missing, (stream, missing, result.stop_finding)


def test_the_oracle_sees_what_joblib_reads_in_array_data() -> None:
    # The elsize differential: joblib.load reads 8 bytes per element, and calls os.system.
    from pathlib import Path
    import tempfile

    from tests import scan_corpus as corpus

    path = corpus.joblib_dtype_elsize_differential(Path(tempfile.mkdtemp()) / "m.joblib")
    log = record(path.read_bytes(), joblib=True)
    assert ("call", "os.system") in {(e.kind, e.target) for e in log.events}


# -- one test per opcode that imports or calls ---------------------------------------
# A custom list gives each role on its own, so that only one check can catch each stream.

ROLES = Allowlist.from_json(
    b'{"schema": "https://chainproof.dev/scan/allowlist/v2", "version": 9, "globals": {'
    b'"builtins": {"object": ["call"], "list": ["call", "build"]},'
    b'"copyreg": {"_reconstructor": ["call"]},'
    b'"mypkg": {"Named": [], "Callable": ["call"], "Built": ["build"], "Both": ["call", "build"]}}}',
    source="roles",
)


def _whats(data: bytes) -> list[tuple[str, str]]:
    return [(f.what, f.reason) for f in scan_bytes(data, name="m.pkl", allowlist=ROLES).findings]


def _sg(dotted: str) -> bytes:
    module, _, name = dotted.rpartition(".")
    return _str(module) + _str(name) + b"\x93"


P4 = b"\x80\x04"


@pytest.mark.parametrize(
    "data, what, reason",
    [
        # GLOBAL and STACK_GLOBAL: a name outside the list.
        (b"cos\nsystem\n.", "os.system", "GLOBAL: global not in the allowlist"),
        (P4 + _sg("os.system") + b".", "os.system", "STACK_GLOBAL: global not in the allowlist"),
        # STACK_GLOBAL of a computed module name.
        (P4 + _sg("mypkg.Callable") + b")R" + _str("x") + b"\x93.", "STACK_GLOBAL", "cannot be resolved statically"),
        # Each calling opcode, on a global that may only be named.
        (P4 + _sg("mypkg.Named") + b")R.", "mypkg.Named", "REDUCE: mypkg.Named may be named but not called"),
        (P4 + _sg("mypkg.Named") + b")\x81.", "mypkg.Named", "NEWOBJ: mypkg.Named may be named but not called"),
        (P4 + _sg("mypkg.Named") + b")}\x92.", "mypkg.Named", "NEWOBJ_EX: mypkg.Named may be named but not called"),
        (P4 + b"(" + _sg("mypkg.Named") + b"o.", "mypkg.Named", "OBJ: mypkg.Named may be named but not called"),
        (b"(imypkg\nNamed\n.", "mypkg.Named", "INST: mypkg.Named may be named but not called"),
        # A named-only global handed to a callable (which may call it).
        (P4 + _sg("mypkg.Callable") + _sg("mypkg.Named") + b"\x85R.", "mypkg.Named", "is passed to mypkg.Callable, and may not be called"),
        # BUILD (runs __setstate__) on an instance of a class that may be called, not reconstructed.
        (P4 + _sg("mypkg.Callable") + b")\x81}b.", "mypkg.Callable", "BUILD: mypkg.Callable may be named but not reconstructed"),
        # A reconstructor instantiating a class that may only be named.
        (P4 + _sg("copyreg._reconstructor") + _sg("mypkg.Named") + _sg("builtins.object") + b"N\x87R.",
         "mypkg.Named", "may be named but not reconstructed"),
        # Calling the result of a call.
        (P4 + _sg("mypkg.Callable") + b")R)R.", "REDUCE", "calls a value that is not a global"),
        # Extension registry codes.
        (b"\x80\x02\x82\x01.", "EXT1", "extension registry code 1"),
        (b"\x80\x02\x83\x01\x00.", "EXT2", "extension registry code 1"),
        (b"\x80\x02\x84\x01\x00\x00\x00.", "EXT4", "extension registry code 1"),
        # Methods of an instance (APPEND calls .append) of a class that may not be called.
        (P4 + _sg("copyreg._reconstructor") + _sg("mypkg.Built") + _sg("builtins.object") + b"N\x87R" + b"Na.", "mypkg.Built",
         "APPEND: calls a method of mypkg.Built, which may not be called"),
    ],
)
def test_each_importing_or_calling_opcode_is_checked(data: bytes, what: str, reason: str) -> None:
    found = _whats(data)
    assert any(w == what and reason in r for w, r in found), found


def test_each_role_alone_passes() -> None:
    # The same shapes with a global that has the role: no finding (the checks are not blanket refusals).
    assert _whats(P4 + _sg("mypkg.Callable") + b")R.") == []
    assert _whats(P4 + _sg("mypkg.Both") + b")\x81}b.") == []
    assert _whats(P4 + _sg("copyreg._reconstructor") + _sg("mypkg.Both") + _sg("builtins.object") + b"N\x87R}b.") == []


def test_default_list_names_memmap_but_never_calls_it() -> None:
    assert ALLOW.allows("numpy", "memmap") and not ALLOW.may("numpy", "memmap", "call")
    data = P4 + _sg("numpy.memmap") + _str("/tmp/x") + _str("w+") + b"\x86R."
    assert ("numpy.memmap", "REDUCE: numpy.memmap may be named but not called") in [
        (f.what, f.reason) for f in scan_bytes(data, name="m.pkl").findings
    ]

