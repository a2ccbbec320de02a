"""Each class of loader-dependent verdict is caught, each with its own reason.

A stream passes only if it passes under every loader that could read it (plain
``pickle.load``, joblib, torch, numpy, pandas); byte 0 of every file is read as
a pickle; what the content is decides, never the extension.
"""

from __future__ import annotations

import io
import pickle
import struct
import tarfile
import zipfile

import numpy as np
import pytest
from tests import scan_corpus as corpus

from chainproof.scan import scan_bytes

CALL_SYSTEM = b"cos\nsystem\n(S'true'\ntR"


def _findings(data: bytes, name: str = "model.bin") -> list[tuple[str, str]]:
    return [(f.what, f.reason) for f in scan_bytes(data, name=name).findings]


# -- "could not parse" is never "not a pickle" ---------------------------------------


@pytest.mark.parametrize(
    "arg",
    [b"I0x10\n", b"I010\n", b"I 1_0 \n", b"I5\x00junk\n", b"L0x5L\n", b"L 7 \n", b"F 1.5\n", b"F1_0\n", b"F1.5\x00x\n"],
)
def test_protocol0_arguments_parsed_as_cpython_reads_them(arg: bytes) -> None:
    # Each argument is one that pickletools refuses and at least one CPython unpickler
    # accepts: the stream goes on to call os.system, so it is a pickle, not text.
    data = arg + b"0" + CALL_SYSTEM + b"."
    for U in (pickle.Unpickler, pickle._Unpickler):  # type: ignore[attr-defined]
        try:
            U(io.BytesIO(arg + b".")).load()
            break
        except Exception:  # noqa: BLE001 - the other unpickler may accept it
            continue
    else:  # pragma: no cover - the cases are chosen so that one accepts
        pytest.fail(f"no unpickler accepts {arg!r}")
    assert ("os.system", "GLOBAL: global not in the allowlist (module 'os', name 'system')") in _findings(data, "notes.txt")


def test_text_argument_longer_than_the_line_limit_is_refused_not_text() -> None:
    data = b"S'" + b"a" * (2 << 20) + b"'\n0" + CALL_SYSTEM + b"."
    found = _findings(data, "notes.txt")
    assert any(w == "line" and "longer than" in r for w, r in found), found


def test_stream_that_starts_like_a_pickle_and_breaks_is_refused_with_offset() -> None:
    # A protocol-0 list that never reaches STOP: refused, with where and why.
    report = scan_bytes(b"(lp0\nI1\naI2\naI3\na", name="notes.txt")
    assert report.verdict == "unsafe"
    (f,) = report.findings
    assert f.offset == 17 and "cannot be walked to STOP" in f.reason and "truncated" in f.reason


def test_csv_read_as_a_pickle_is_still_text() -> None:
    assert scan_bytes(b"city,population\nParis,2100000\nLyon,500000\n", name="cities.csv").findings == []
    assert scan_bytes(b"Paris,2100000\n", name="cities.txt").findings == []
    # Every row starts with "c": 1,001 GLOBALs of modules no installation has, then EOF.
    rows = b"customer_id,plan,tenure\n" + b"".join(b"c%05d,basic,%d\n" % (i, i % 70) for i in range(2001))
    assert scan_bytes(rows, name="churn.csv").findings == []
    # The same rows with one importable module name among them are refused.
    assert scan_bytes(rows + b"cos\nsystem\n", name="churn.csv").findings != []


# -- polyglots beyond zip ------------------------------------------------------------


def _tar_named(name: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        info = tarfile.TarInfo("x")
        info.size = 1
        t.addfile(info, io.BytesIO(b"x"))
    raw = bytearray(buf.getvalue())
    raw[: len(name)] = name
    # Recompute the header checksum so tarfile accepts the archive.
    raw[148:156] = b" " * 8
    raw[148:156] = b"%06o\x00 " % sum(raw[:512])
    return bytes(raw)


def test_tar_whose_first_bytes_are_a_complete_pickle_is_a_polyglot() -> None:
    found = _findings(_tar_named(b"N."), "a.tar")
    assert ("polyglot", "a tar whose first 2 bytes are also a complete pickle (pickle.load reads them)") in found
    # Starting with PROTO, the file is a pickle by content, with a second format after it.
    assert ("STOP", "bytes after the end of the pickle (a second payload or another format)") in _findings(
        _tar_named(b"\x80\x04N."), "a.tar"
    )


def test_tar_whose_first_bytes_call_os_system_is_refused() -> None:
    found = _findings(_tar_named(CALL_SYSTEM + b"."), "a.tar")
    assert any(w == "os.system" for w, _ in found), found


def test_npy_and_safetensors_whose_first_bytes_are_a_pickle() -> None:
    # A safetensors header length whose bytes are also GLOBAL/REDUCE opcodes.
    header = b'{"w": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}}'
    st = len(header).to_bytes(8, "little") + header
    assert scan_bytes(st, name="m.safetensors").findings == []
    buf = io.BytesIO()
    np.save(buf, np.arange(3))
    assert scan_bytes(buf.getvalue(), name="a.npy").findings == []


def test_zip_with_a_pickle_prepended_is_refused() -> None:
    data = pickle.dumps([1], protocol=2) + corpus.zip_bytes([("a.txt", b"x")])
    found = _findings(data, "model.pt")
    assert any(w == "STOP" for w, _ in found) and any("polyglot" in r for _, r in found), found


# -- zip archives ----------------------------------------------------------------------


def test_zip_local_header_name_disagreeing_with_directory_is_refused() -> None:
    data = bytearray(corpus.zip_bytes([("model.txt", b"hello"), ("b.txt", b"x")]))
    i = data.index(b"model.txt")  # the first occurrence is the local header's
    data[i : i + 9] = b"model.pkl"
    found = _findings(bytes(data), "a.zip")
    assert any("local header disagrees with the central directory" in r and "name" in r for _, r in found), found


def test_zip_local_size_disagreeing_with_directory_is_refused() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("a.bin", b"abcdef")
    data = bytearray(buf.getvalue())
    struct.pack_into("<I", data, 18, 3)  # the local header's compressed size
    found = _findings(bytes(data), "a.zip")
    assert any("CRC or sizes in the local header differ" in r for _, r in found), found


def test_zip_with_hidden_bytes_between_members_is_refused() -> None:
    one = corpus.zip_bytes([("a.txt", b"x")])
    # Shift the central directory: insert bytes after the member, fix the directory offset.
    cd = one.index(b"PK\x01\x02")
    hidden = b"cos\nsystem\n."
    data = bytearray(one[:cd] + hidden + one[cd:])
    eocd = data.rindex(b"PK\x05\x06")
    struct.pack_into("<I", data, eocd + 16, cd + len(hidden))
    found = _findings(bytes(data), "a.zip")
    assert any("bytes between the last member and the central directory" in r for _, r in found), found


def test_zip_names_equal_after_normalisation_are_duplicates() -> None:
    found = _findings(corpus.zip_bytes([("a/model.pkl", b"x"), ("a//model.pkl", b"y")]), "a.zip")
    assert any("are the same path" in r for _, r in found), found


# -- loader-dependent verdicts (joblib vs pickle.load) -----------------------------------


def _wrapper(n: int) -> bytes:
    """joblib's NumpyArrayWrapper of ``n`` int8 elements, without alignment padding (as older joblib wrote it)."""
    return (
        b"cjoblib.numpy_pickle\nNumpyArrayWrapper\n)\x81}(X\x08\x00\x00\x00subclasscnumpy\nndarray\n"
        b"X\x05\x00\x00\x00shapeK" + bytes([n]) + b"\x85X\x05\x00\x00\x00orderX\x01\x00\x00\x00C"
        b"X\x05\x00\x00\x00dtypecnumpy\ndtype\nX\x02\x00\x00\x00i1\x89\x88\x87R(K\x03X\x01\x00\x00\x00|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
        b"X\n\x00\x00\x00allow_mmap\x89ub"
    )


def _joblib_with_array_bytes(payload: bytes) -> bytes:
    """A joblib file whose int8 array data are ``payload`` (what pickle.load reads as opcodes)."""
    return b"\x80\x02" + _wrapper(len(payload)) + payload + b"."


def test_array_data_that_pickle_load_reads_as_a_call_is_refused() -> None:
    payload = b"0" + CALL_SYSTEM + b"."
    data = _joblib_with_array_bytes(payload)
    # joblib.load skips the payload; pickle.load calls os.system.
    found = _findings(data, "model.joblib")
    assert any(w == "os.system" and r.startswith("as pickle.load reads joblib's array data: ") for w, r in found), found


def test_nested_wrapper_inside_an_object_array_is_read_as_plain_pickle() -> None:
    # In an object array's inline pickle, a NumpyArrayWrapper is only an object: the bytes
    # after it are opcodes (here: a call of os.system), not array data to skip.
    wrapper = _wrapper(16)
    inner = b"\x80\x04" + wrapper + b"0" + CALL_SYSTEM + b"0N."
    import joblib

    arr = np.empty(1, dtype=object)
    arr[0] = 1
    buf = io.BytesIO()
    joblib.dump(arr, buf)
    data = buf.getvalue()
    start = data.index(b"ub\x80") + 2  # after the outer wrapper's BUILD: the inline pickle
    end = len(data) - 1
    patched = data[:start] + inner + data[end:]
    found = _findings(patched, "model.joblib")
    assert any(w == "os.system" for w, _ in found), found
