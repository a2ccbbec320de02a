"""Fetch by URI into quarantine, hash in the same pass, release only what verified.

Example:
    >>> import hashlib, pathlib, tempfile
    >>> src = pathlib.Path(tempfile.mkdtemp(), "train.csv")
    >>> _ = src.write_bytes(b"a,b\\n1,2\\n")
    >>> got = fetch(src.as_uri(), dest_dir=pathlib.Path(tempfile.mkdtemp()),
    ...             expected_sha256=hashlib.sha256(b"a,b\\n1,2\\n").hexdigest())
    >>> got.name, got.size
    ('train.csv', 8)

Every fetch streams into a quarantine file next to the destination while hashing
it (one pass over the bytes), compares the digest with the pinned one, and only
then renames the file into place. On any failure the partial file is deleted:
nothing unverified is ever where a later step could pick it up.

Sources are chosen by URI scheme: ``file://`` and plain paths here; the ``Source``
seam takes the remote schemes.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import unquote, urlparse

from chainproof.digests import CHUNK_SIZE, check_sha256_hex
from chainproof.errors import ArtifactRefused, DigestMismatch, InputError

__all__ = ["FetchLimits", "Fetched", "Source", "fetch", "source_for"]


@dataclass(frozen=True)
class FetchLimits:
    """Limits applied while fetching.

    Attributes:
        max_bytes: the largest object accepted; the download stops past it.
    """

    max_bytes: int = 64 << 30


@dataclass(frozen=True)
class Fetched:
    """One verified object, released into the destination folder.

    Attributes:
        uri: the source URI as given.
        name: the file name it was released under.
        path: where it is now.
        sha256: its verified digest.
        size: its size in bytes.
        generation: the object generation / version it was pinned to, if the source has one.
    """

    uri: str
    name: str
    path: Path
    sha256: str
    size: int
    generation: str | None = None

    @property
    def pinned_uri(self) -> str:
        """The URI with its generation (``gs://b/o#123``), as recorded in the link."""
        return f"{self.uri}#{self.generation}" if self.generation else self.uri


class Source(Protocol):
    """Where bytes come from: one implementation per URI scheme."""

    def name(self) -> str:
        """Return the object's base name."""
        ...

    def generation(self) -> str | None:
        """Return the pinned generation/version, if the scheme has one."""
        ...

    @contextmanager
    def open(self) -> Iterator[BinaryIO]:
        """Open the object as a binary stream."""
        ...


class _LocalSource:
    """A local file (``file://`` URI or plain path)."""

    def __init__(self, path: Path, uri: str) -> None:
        self._path, self._uri = path, uri

    def name(self) -> str:
        return self._path.name

    def generation(self) -> str | None:
        return None

    @contextmanager
    def open(self) -> Iterator[BinaryIO]:
        try:
            if self._path.is_symlink():
                raise ArtifactRefused(self._uri, "is a symbolic link; give the file it points to")
            f = open(self._path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError as exc:
            raise InputError(f"{self._uri}: no such file") from exc
        except (IsADirectoryError, PermissionError) as exc:
            raise InputError(f"{self._uri}: cannot be read ({exc.strerror})") from exc
        try:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise ArtifactRefused(self._uri, "not a regular file")
            yield f
        finally:
            f.close()


def source_for(uri: str) -> Source:
    """Return the source for a URI.

    Args:
        uri: ``file:///abs/path`` or a plain path.

    Returns:
        The source.

    Raises:
        InputError: the scheme is not supported.
    """
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise InputError(f"{uri}: file:// URIs must name a local path")
        return _LocalSource(Path(unquote(parsed.path)), uri)
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):
        return _LocalSource(Path(uri).absolute(), uri)
    raise InputError(f"{uri}: unsupported source scheme {parsed.scheme!r} (supported: file://, paths)")


def fetch(
    uri: str,
    *,
    dest_dir: Path,
    expected_sha256: str,
    name: str | None = None,
    limits: FetchLimits = FetchLimits(),
) -> Fetched:
    """Fetch one object into ``dest_dir``, verified against its pinned SHA-256.

    Args:
        uri: the source.
        dest_dir: the folder the verified file is released into (created if missing).
        expected_sha256: the pinned digest (mandatory).
        name: the file name in ``dest_dir`` (default: the object's base name).
        limits: size limits.

    Returns:
        The verified object.

    Raises:
        DigestMismatch: the bytes are not the pinned ones (names URI, expected, actual).
        ArtifactRefused: the object is over the size limit or not a regular file.
        InputError: the URI or digest is malformed, or the source is missing.

    Side effects:
        Reads the source (local files here; network for remote schemes). Writes one
        quarantine file next to the destination, renamed into place only on success.
    """
    expected = check_sha256_hex(expected_sha256, what=f"{uri} expected sha256")
    source = source_for(uri)
    out_name = name or source.name()
    if not out_name or "/" in out_name or out_name in (".", ".."):
        raise InputError(f"{uri}: cannot derive a safe file name ({out_name!r})")
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / out_name
    fd, tmp_name = tempfile.mkstemp(dir=dest_dir, prefix=f".quarantine-{out_name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        size = 0
        with os.fdopen(fd, "wb") as out, source.open() as stream:
            while chunk := stream.read(CHUNK_SIZE):
                size += len(chunk)
                if size > limits.max_bytes:
                    raise ArtifactRefused(uri, f"larger than the {limits.max_bytes}-byte limit")
                h.update(chunk)
                out.write(chunk)
        actual = h.hexdigest()
        generation = source.generation()
        if actual != expected:
            where = f"generation {generation}" if generation else ""
            raise DigestMismatch(uri, expected, actual, context=where)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return Fetched(uri=uri, name=out_name, path=final, sha256=actual, size=size, generation=generation)
