"""Streaming SHA-256 of files and folders, named by stable logical names.

Example:
    >>> import pathlib, tempfile
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "model.joblib").write_bytes(b"abc")
    >>> digest_tree(d, prefix="model")
    {'model/model.joblib': 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'}

Files are read in large blocks into one reused buffer, never whole into memory.
Folders are hashed on a small thread pool: hashlib releases the GIL while it
hashes, so several files are hashed at once on several cores.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NewType

from chainproof.errors import ArtifactRefused, DigestMismatch, InputError

__all__ = [
    "CHUNK_SIZE",
    "Sha256Hex",
    "check_artifacts",
    "check_sha256_hex",
    "digest_tree",
    "manifest_digest",
    "sha256_file",
]

Sha256Hex = NewType("Sha256Hex", str)

#: Bytes per read. 1 MiB keeps syscall overhead negligible and memory flat.
CHUNK_SIZE = 1 << 20

_HEX64 = re.compile(r"[0-9a-f]{64}")


def check_sha256_hex(value: str, *, what: str) -> Sha256Hex:
    """Validate a lowercase hex SHA-256 digest, accepting an optional ``sha256:`` prefix.

    Args:
        value: the digest as given by a user or a document.
        what: what the digest is for, named in the error.

    Returns:
        The 64-character lowercase hex digest.

    Raises:
        InputError: the value is not a SHA-256 hex digest.
    """
    text = value.strip()
    if text.startswith("sha256:"):
        text = text[len("sha256:") :]
    text = text.lower()
    if not _HEX64.fullmatch(text):
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise InputError(f"{what}: expected a sha256 hex digest (64 hex characters), got {shown!r}")
    return Sha256Hex(text)


def sha256_file(path: str | os.PathLike[str], *, chunk_size: int = CHUNK_SIZE) -> Sha256Hex:
    """Return the SHA-256 of a regular file, streamed in ``chunk_size`` blocks.

    Args:
        path: the file to hash.
        chunk_size: bytes per read.

    Returns:
        The lowercase hex digest.

    Raises:
        ArtifactRefused: the path is not a regular file.
    """
    h = hashlib.sha256()
    buf = bytearray(chunk_size)
    view = memoryview(buf)
    try:
        with open(path, "rb", buffering=0) as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise ArtifactRefused(str(path), "not a regular file")
            while n := f.readinto(buf):
                h.update(view[:n])
    except (IsADirectoryError, FileNotFoundError, PermissionError) as exc:
        raise ArtifactRefused(str(path), f"cannot be read ({exc.strerror})") from exc
    return Sha256Hex(h.hexdigest())


def _walk_files(root: Path) -> list[tuple[str, Path]]:
    """List regular files under ``root`` as (relative posix name, path), refusing links."""
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in dirnames:
            full = Path(dirpath, name)
            if full.is_symlink():
                # A symlink can point outside the artifact: what it names is not attested.
                raise ArtifactRefused(str(full), "symbolic links are not allowed in an artifact")
        for name in sorted(filenames):
            full = Path(dirpath, name)
            mode = os.lstat(full).st_mode
            if not stat.S_ISREG(mode):
                raise ArtifactRefused(str(full), "only regular files are allowed in an artifact")
            found.append((full.relative_to(root).as_posix(), full))
    return found


def digest_tree(
    root: str | os.PathLike[str], *, prefix: str = "", max_workers: int | None = None
) -> dict[str, str]:
    """Hash every regular file under ``root`` and name it ``prefix/relative/path``.

    A single file as ``root`` is named ``prefix/<file name>``. Names are POSIX
    paths relative to ``root``, so the same folder gets the same names on every
    machine and under every mount point (local run or Vertex AI).

    Args:
        root: a folder or a file.
        prefix: the logical name prefix (``dataset``, ``model``); empty for none.
        max_workers: hashing threads; defaults to the number of CPUs.

    Returns:
        Logical name to SHA-256, sorted by name.

    Raises:
        ArtifactRefused: ``root`` is missing, or holds a symlink or special file.
    """
    base = Path(root)
    if base.is_symlink():
        raise ArtifactRefused(str(base), "symbolic links are not allowed in an artifact")
    if base.is_file():
        files = [(base.name, base)]
    elif base.is_dir():
        files = _walk_files(base)
    else:
        raise ArtifactRefused(str(base), "does not exist")
    names = [f"{prefix}/{rel}" if prefix else rel for rel, _ in files]
    workers = max(1, min(max_workers or os.cpu_count() or 1, len(files) or 1))
    if workers == 1:
        hexes = [sha256_file(p) for _, p in files]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            hexes = list(pool.map(sha256_file, [p for _, p in files]))
    return dict(sorted(zip(names, hexes)))


def manifest_digest(manifest: Mapping[str, str]) -> Sha256Hex:
    """Return one SHA-256 for a whole name→digest manifest (canonical JSON, sorted keys).

    Args:
        manifest: logical name to SHA-256 hex.

    Returns:
        The digest of ``json.dumps(manifest, sort_keys=True, separators=(",", ":"))``.
    """
    canonical = json.dumps(dict(manifest), sort_keys=True, separators=(",", ":"))
    return Sha256Hex(hashlib.sha256(canonical.encode()).hexdigest())


def check_artifacts(
    expected: Mapping[str, str], actual: Mapping[str, str], *, producer: str, what: str
) -> None:
    """Check delivered files against attested products: same names, same digests.

    Args:
        expected: logical name to SHA-256, as attested by ``producer``.
        actual: logical name to SHA-256, as delivered.
        producer: the step whose link attests ``expected``.
        what: what the files are (``model``, ``dataset``), for the error.

    Raises:
        DigestMismatch: a file has other bytes than attested.
        ArtifactRefused: a file is missing or was added.
    """
    for name in sorted(expected):
        if name not in actual:
            raise ArtifactRefused(name, f"{what} file attested by {producer} is missing")
        if actual[name] != expected[name]:
            raise DigestMismatch(name, expected[name], actual[name], context=f"attested by {producer}")
    extra = sorted(set(actual) - set(expected))
    if extra:
        raise ArtifactRefused(extra[0], f"{what} file not attested by {producer} (added after it ran)")
