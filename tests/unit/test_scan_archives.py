"""Archive attacks are refused with their reason; numpy and skops files are checked."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from tests import scan_corpus as corpus

from chainproof.scan import ScanLimits, scan_bytes

PICKLE_SYSTEM = corpus.malicious_pickles()["pickle_stack_global_os_system"][0]


def _reasons(data: bytes, name: str, **limits: int) -> list[str]:
    return [f.reason for f in scan_bytes(data, name=name, limits=ScanLimits(**limits)).findings]


def test_rejects_zip_path_traversal() -> None:
    assert _reasons(corpus.zip_bytes([("../evil.pkl", b"x")]), "a.zip") == ["path traversal: the name climbs out of the archive"]


def test_rejects_zip_absolute_path() -> None:
    assert _reasons(corpus.zip_bytes([("/etc/cron.d/x", b"x")]), "a.zip") == ["absolute path"]


def test_rejects_zip_symlink() -> None:
    info = zipfile.ZipInfo("link")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    assert _reasons(corpus.zip_bytes([(info, b"/etc/passwd")]), "a.zip") == ["symbolic link"]


def test_rejects_zip_duplicate_names() -> None:
    reasons = _reasons(corpus.zip_bytes([("model.pkl", b"x"), ("model.pkl", PICKLE_SYSTEM)]), "a.zip")
    assert "duplicate name: two members claim this path" in reasons


def test_rejects_zip_bomb_by_ratio() -> None:
    data = corpus.zip_bytes([("zeros.bin", b"\0" * (3 << 20))])
    assert any("decompression bomb" in r for r in _reasons(data, "a.zip", ratio_floor_bytes=1 << 20))


def test_rejects_zip_with_too_many_members() -> None:
    data = corpus.zip_bytes([(f"f{i}.txt", b"x") for i in range(10)])
    assert _reasons(data, "a.zip", max_members=5) == ["10 members exceed the limit of 5"]


def test_rejects_pickle_in_zip_under_a_misleading_name() -> None:
    report = scan_bytes(corpus.zip_bytes([("weights.txt", PICKLE_SYSTEM)]), name="a.zip")
    assert [(f.file, f.what) for f in report.findings] == [("a.zip!weights.txt", "os.system")]


def test_rejects_archives_nested_past_the_depth_limit() -> None:
    data = PICKLE_SYSTEM
    for i in range(4):
        data = corpus.zip_bytes([(f"l{i}.zip", data)])
    assert any("nested deeper" in r for r in _reasons(data, "a.zip", max_depth=2))


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
def test_rejects_tar_traversal_in_every_compression(mode: str) -> None:
    assert _reasons(corpus.tar_bytes([("../../evil", b"x")], mode), "a.tar") == [
        "path traversal: the name climbs out of the archive"
    ]


def test_rejects_tar_absolute_path() -> None:
    assert _reasons(corpus.tar_bytes([("/etc/x", b"x")]), "a.tar") == ["absolute path"]


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_rejects_tar_links(kind: bytes) -> None:
    info = tarfile.TarInfo("model.pkl")
    info.type = kind
    info.linkname = "/etc/passwd"
    assert any("link to '/etc/passwd'" in r for r in _reasons(corpus.tar_bytes([(info, b"")]), "a.tar"))


def test_rejects_tar_duplicate_names_and_scans_members() -> None:
    report = scan_bytes(corpus.tar_bytes([("m.pkl", b"\x80\x04N."), ("m.pkl", PICKLE_SYSTEM)], "w:gz"), name="a.tgz")
    assert [f.reason for f in report.findings] == ["duplicate name: two members claim this path"]
    report = scan_bytes(corpus.tar_bytes([("m.bin", PICKLE_SYSTEM)], "w:gz"), name="a.tgz")
    assert [(f.file, f.what) for f in report.findings] == [("a.tgz|gzip!m.bin", "os.system")]


def test_rejects_tar_with_too_many_members() -> None:
    data = corpus.tar_bytes([(f"f{i}", b"x") for i in range(10)])
    assert "more than 5 members (the limit)" in _reasons(data, "a.tar", max_members=5)


def _object_npy(payload: bytes | None = None, dtype: object = object) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.zeros(2, dtype=dtype) if dtype is not object else np.array([1, None], dtype=object))
    data = buf.getvalue()
    if payload is None:
        return data
    header_end = data.index(b"\n") + 1  # np.load(allow_pickle=True) unpickles what follows the header
    return data[:header_end] + payload


def test_accepts_npy_with_object_dtype_whose_pickle_is_benign() -> None:
    assert _reasons(_object_npy(), "a.npy") == []
    assert _reasons(_object_npy(dtype=[("a", "f8"), ("b", "O")]), "a.npy") == []


def test_rejects_npy_with_object_dtype_whose_pickle_calls_os_system() -> None:
    report = scan_bytes(_object_npy(PICKLE_SYSTEM), name="a.npy")
    assert [f.what for f in report.findings] == ["os.system"]


def test_rejects_npz_with_malicious_object_member(tmp_path: Path) -> None:
    data = corpus.zip_bytes([("ok.npy", _object_npy()), ("bad.npy", _object_npy(PICKLE_SYSTEM))])
    report = scan_bytes(data, name="a.npz")
    assert [(f.file, f.what) for f in report.findings] == [("a.npz!bad.npy", "os.system")]


def test_rejects_truncated_npy() -> None:
    buf = io.BytesIO()
    np.save(buf, np.arange(100.0))
    assert any("truncated" in r for r in _reasons(buf.getvalue()[:-8], "a.npy"))


def test_rejects_skops_file_with_type_outside_the_allowlist(tmp_path: Path) -> None:
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    path = tmp_path / "model.skops"
    sio.dump(FunctionTransformer(func=os.getcwd), path)
    report = scan_bytes(path.read_bytes(), name="model.skops")
    assert report.kind == "skops"
    assert "posix.getcwd" in {f.what for f in report.findings}


def test_rejects_unrecognised_binary() -> None:
    assert _reasons(b"\x00\x01\x02binary", "x.bin") == ["unrecognised binary format: cannot be scanned"]
