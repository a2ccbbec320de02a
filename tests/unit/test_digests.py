"""Digests: streaming, stable logical names, refusal of links and special files."""

from __future__ import annotations

import hashlib
import os

import pytest

from chainproof.digests import check_sha256_hex, digest_tree, manifest_digest, sha256_file
from chainproof.errors import ArtifactRefused, DigestMismatch, InputError


def test_sha256_file_matches_hashlib_across_chunk_boundaries(tmp_path):
    data = os.urandom((1 << 20) * 2 + 123)
    p = tmp_path / "blob"
    p.write_bytes(data)
    assert sha256_file(p) == hashlib.sha256(data).hexdigest()
    assert sha256_file(p, chunk_size=4096) == hashlib.sha256(data).hexdigest()


def test_digest_tree_names_are_relative_posix_and_sorted(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.bin").write_bytes(b"z")
    (tmp_path / "a.bin").write_bytes(b"a")
    tree = digest_tree(tmp_path, prefix="model")
    assert list(tree) == ["model/a.bin", "model/b/z.bin"]
    assert tree["model/a.bin"] == hashlib.sha256(b"a").hexdigest()
    # Same content elsewhere gives the same names and digests: nothing depends on the mount point.
    other = tmp_path.parent / "elsewhere"
    import shutil

    shutil.copytree(tmp_path, other)
    assert digest_tree(other, prefix="model") == tree


def test_digest_tree_refuses_symlink_to_outside(tmp_path):
    secret = tmp_path.parent / "outside.txt"
    secret.write_text("not part of the model")
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights").symlink_to(secret)
    with pytest.raises(ArtifactRefused, match="only regular files"):
        digest_tree(model, prefix="model")


def test_digest_tree_refuses_missing_root(tmp_path):
    with pytest.raises(ArtifactRefused, match="does not exist"):
        digest_tree(tmp_path / "nope")


def test_digest_mismatch_names_artifact_expected_and_actual(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(b"x")
    err = DigestMismatch("dataset/x", "0" * 64, sha256_file(p))
    assert str(err) == f"dataset/x: expected sha256:{'0' * 64}, got sha256:{hashlib.sha256(b'x').hexdigest()}"


@pytest.mark.parametrize("bad", ["", "abc", "g" * 64, "0" * 63, "sha512:" + "0" * 64])
def test_check_sha256_hex_refuses_malformed_digests(bad):
    with pytest.raises(InputError, match="expected a sha256 hex digest"):
        check_sha256_hex(bad, what="--sha256")


def test_check_sha256_hex_accepts_prefix_and_uppercase():
    assert check_sha256_hex("sha256:" + "AB" * 32, what="x") == "ab" * 32


def test_manifest_digest_is_order_independent():
    assert manifest_digest({"a": "1", "b": "2"}) == manifest_digest({"b": "2", "a": "1"})
    assert manifest_digest({"a": "1"}) != manifest_digest({"a": "2"})
