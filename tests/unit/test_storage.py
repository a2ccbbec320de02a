"""Pinned fetch: one pass, quarantine, atomic release, nothing left on failure."""

from __future__ import annotations

import hashlib

import pytest

from chainproof.errors import ArtifactRefused, DigestMismatch, InputError
from chainproof.storage import FetchLimits, fetch


def test_fetch_releases_verified_file(tmp_path):
    src = tmp_path / "src.csv"
    src.write_bytes(b"a,b\n1,2\n")
    out = tmp_path / "out"
    got = fetch(str(src), dest_dir=out, expected_sha256=hashlib.sha256(b"a,b\n1,2\n").hexdigest())
    assert got.path == out / "src.csv" and got.size == 8
    assert [p.name for p in out.iterdir()] == ["src.csv"]


def test_fetch_mismatch_names_uri_expected_actual_and_leaves_nothing(tmp_path):
    src = tmp_path / "src.csv"
    src.write_bytes(b"poisoned")
    out = tmp_path / "out"
    with pytest.raises(DigestMismatch) as err:
        fetch(src.as_uri(), dest_dir=out, expected_sha256="a" * 64)
    assert src.as_uri() in str(err.value)
    assert err.value.expected == "a" * 64
    assert err.value.actual == hashlib.sha256(b"poisoned").hexdigest()
    assert list(out.iterdir()) == []


def test_fetch_refuses_objects_over_the_size_limit(tmp_path):
    src = tmp_path / "big"
    src.write_bytes(b"x" * 100)
    with pytest.raises(ArtifactRefused, match="larger than the 10-byte limit"):
        fetch(str(src), dest_dir=tmp_path / "out", expected_sha256=hashlib.sha256(b"x" * 100).hexdigest(),
              limits=FetchLimits(max_bytes=10))
    assert list((tmp_path / "out").iterdir()) == []


def test_fetch_refuses_symlinked_source(tmp_path):
    real = tmp_path / "real"
    real.write_bytes(b"1")
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(ArtifactRefused, match="symbolic link"):
        fetch(str(link), dest_dir=tmp_path / "out", expected_sha256=hashlib.sha256(b"1").hexdigest())


def test_fetch_missing_source_and_unknown_scheme_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        fetch(str(tmp_path / "missing"), dest_dir=tmp_path / "out", expected_sha256="a" * 64)
    with pytest.raises(InputError, match="unsupported source scheme 'ftp'"):
        fetch("ftp://host/x", dest_dir=tmp_path / "out", expected_sha256="a" * 64)
