"""Every malformed input gets a verdict: truncated and corrupted variants of benign files.

Each variant is scanned by content; the scan must end with a verdict (safe, or
unsafe with a reason), never with the scanner's own failure (the ``scanner``
finding of the fail-closed backstop) or an exception.
"""

from __future__ import annotations

import functools
import io
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, seed, settings
from hypothesis import strategies as st
from tests import scan_corpus as corpus

from chainproof.cli import main
from chainproof.scan import scan_bytes


@functools.lru_cache(maxsize=1)
def _benign_files() -> dict[str, bytes]:
    root = Path(tempfile.mkdtemp(prefix="benign-variants-"))
    paths = corpus.write_benign_data(root / "data")
    paths += corpus.write_benign_sklearn(root / "models", models=("random_forest", "column_transformer", "hist_gradient_boosting"))
    files = {p.name: p.read_bytes() for p in paths if p.is_file()}
    for version in ((2, 0), (3, 0)):
        buf = io.BytesIO()
        np.lib.format.write_array(buf, np.zeros(2, dtype=[("\u00e9t\u00e9", "<f8")]), version=version)
        files[f"v{version[0]}.npy"] = buf.getvalue()
    files["torch.pt"] = corpus.torch_like_zip()
    files["legacy.pt"] = corpus.torch_legacy_bytes()
    buf = io.BytesIO()
    np.save(buf, np.array(["a", None, 2], dtype=object), allow_pickle=True)
    files["objects.npy"] = buf.getvalue()
    files["a.tar"] = corpus.tar_bytes([("m.pkl", b"\x80\x04N.")])
    files["st.safetensors"] = corpus.safetensors_bytes()
    shutil.rmtree(root)
    return files


@pytest.fixture(scope="module")
def benign_files() -> dict[str, bytes]:
    return _benign_files()


def _verdict_not_error(data: bytes, name: str) -> None:
    report = scan_bytes(data, name=name)
    broken = [str(f) for f in report.findings if f.what == "scanner"]
    assert broken == [], broken
    for f in report.findings:
        assert f.reason, f


def test_every_benign_file_is_safe_as_written(benign_files: dict[str, bytes]) -> None:
    assert {n: [str(f) for f in scan_bytes(d, name=n).findings] for n, d in benign_files.items()} == {
        n: [] for n in benign_files
    }


@seed(20261202)
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_truncated_and_corrupted_variants_get_a_verdict(data: st.DataObject) -> None:
    files = _benign_files()
    name = data.draw(st.sampled_from(sorted(files)))
    raw = bytearray(files[name])
    how = data.draw(st.sampled_from(["truncate", "flip", "splice"]))
    if how == "truncate":
        raw = raw[: data.draw(st.integers(0, max(0, len(raw) - 1)))]
    elif how == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] = data.draw(st.integers(0, 255))
    else:
        i = data.draw(st.integers(0, len(raw)))
        raw[i:i] = data.draw(st.binary(min_size=1, max_size=64))
    _verdict_not_error(bytes(raw), name)


@pytest.mark.parametrize(
    "data",
    [
        b"\x93NUMPY\x09\x00" + b"\x10\x00" + b"{}".ljust(16),  # unknown version
        b"\x93NUMPY\x01\x00\x20\x00{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }",  # truncated
        b"\x93NUMPY\x01\x00\x30\x00{'descr': 'zz', 'fortran_order': False, 'shape': (2,)}".ljust(58),
        b"\x93NUMPY\x01\x00\x30\x00{'descr': '<f8', 'fortran_order': 1, 'shape': (2,)}".ljust(58),
        b"\x93NUMPY\x01\x00\x30\x00{'descr': '<f8', 'fortran_order': False, 'shape': (-2,)}".ljust(58),
        b"\x93NUMPY\x01\x00\x30\x00__import__('os').system('true')".ljust(58),
        b"\x93NUMPY\x03\x00\x10\x00\x00\x00" + b"\xff" * 16,  # not utf-8
    ],
)
def test_malformed_npy_headers_are_refused_with_a_reason(data: bytes) -> None:
    report = scan_bytes(data, name="a.npy")
    assert report.verdict == "unsafe"
    assert [f.what for f in report.findings] == ["header"], [str(f) for f in report.findings]
    assert report.findings[0].reason.startswith("malformed .npy header: ")


def test_cli_exits_1_not_2_on_a_corrupted_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    buf = io.BytesIO()
    np.save(buf, np.arange(3.0))
    (tmp_path / "a.npy").write_bytes(b"\x93NUMPY\x07\x00" + buf.getvalue()[8:])
    assert main(["scan", str(tmp_path)]) == 1
    out = capsys.readouterr()
    assert "internal error" not in out.err and "Traceback" not in out.err
    assert "unknown format version 7.0" in out.out


def test_huge_length_fields_are_refused_without_allocating() -> None:
    # BINBYTES8 and BINUNICODE8 claiming 2**62 bytes, in a 20-byte file.
    for op in (b"\x8e", b"\x8d", b"\x96"):
        report = scan_bytes(b"\x80\x05" + op + (1 << 62).to_bytes(8, "little") + b"abc.", name="m.pkl")
        assert report.verdict == "unsafe" and all(f.what != "scanner" for f in report.findings)
