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

Sources, chosen by URI scheme:

- ``gs://bucket/object[#generation]``: google-cloud-storage. The generation is read
  (or taken from the URI), pinned for the download, and recorded with the digest.
  GCS only offers crc32c/md5, so the SHA-256 is computed here, over the stored bytes.
- ``https://host/path``: TLS only; a redirect to anything but https is refused.
- ``s3://bucket/key[#versionId]``: public objects over anonymous HTTPS (path-style
  requests to a configurable endpoint).
- ``file://`` URIs and plain paths.

A URI ending in ``/`` (``gs://bucket/prefix/`` or a local folder) names a folder:
every object under it is fetched the same way, within ``max_objects``, and the
folder is pinned by the manifest digest of its files (see
:func:`chainproof.digests.manifest_digest`).

Transient faults (HTTP 5xx and 429, reset connections, truncated bodies) are retried
with exponential backoff, resuming with a byte range where the protocol allows. The
final digest check decides, whatever happened on the way.
"""

from __future__ import annotations

import hashlib
import os
import queue
import random
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Protocol
from urllib.parse import parse_qsl, quote, unquote, urljoin, urlparse, urlsplit, urlunsplit

from chainproof.digests import CHUNK_SIZE, check_sha256_hex, manifest_digest
from chainproof.errors import ArtifactRefused, DigestMismatch, InputError

__all__ = [
    "FetchLimits",
    "FetchOptions",
    "Fetched",
    "FetchedTree",
    "RetryPolicy",
    "Source",
    "TransientError",
    "fetch",
    "fetch_tree",
    "is_folder_uri",
    "source_for",
]


@dataclass(frozen=True)
class FetchLimits:
    """Limits applied while fetching.

    Attributes:
        max_bytes: the largest object accepted; the download stops past it.
        max_objects: the most objects a folder URI may hold.
    """

    max_bytes: int = 64 << 30
    max_objects: int = 10_000


@dataclass(frozen=True)
class RetryPolicy:
    """How transient faults are retried.

    Attributes:
        attempts: total tries per object (1 = no retry).
        initial_delay: seconds before the first retry.
        max_delay: the longest wait between tries.
        deadline: seconds after which the client libraries stop retrying on their own.
    """

    attempts: int = 5
    initial_delay: float = 0.5
    max_delay: float = 16.0
    deadline: float = 120.0

    def delays(self) -> Iterator[float]:
        """Yield the wait before each retry: exponential with full jitter."""
        delay = self.initial_delay
        for _ in range(self.attempts - 1):
            yield random.uniform(0, delay)  # noqa: S311 - jitter, not security
            delay = min(delay * 2, self.max_delay)


@dataclass(frozen=True)
class FetchOptions:
    """Where remote sources are and how to reach them.

    Attributes:
        s3_endpoint: base URL of the S3 endpoint (path-style requests).
        ca_file: a CA bundle for https sources (default: the system's / certifi's).
        retry: the retry policy.
        timeout: seconds to wait for a connection or a read.
        gcs_client_factory: builds the google-cloud-storage client (default:
            ``storage.Client()``, which honours ``STORAGE_EMULATOR_HOST``).
    """

    s3_endpoint: str = "https://s3.amazonaws.com"
    ca_file: str | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: float = 60.0
    gcs_client_factory: Callable[[], Any] | None = None


@dataclass(frozen=True)
class Fetched:
    """One verified object, released into the destination folder.

    Attributes:
        uri: the source URI as given (without a generation suffix).
        name: the file name it was released under (a relative POSIX path for folders).
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


@dataclass(frozen=True)
class FetchedTree:
    """A verified folder of objects.

    Attributes:
        uri: the folder URI.
        files: the objects, by relative name.
        manifest_sha256: the manifest digest of ``{name: sha256}``.
    """

    uri: str
    files: list[Fetched]
    manifest_sha256: str


class TransientError(Exception):
    """A fault worth retrying: a 5xx, a reset connection, a truncated body."""


class _BackgroundHash:
    """SHA-256 on a second thread, so hashing overlaps the network and the disk.

    hashlib releases the GIL while it hashes, and so do socket reads and file writes:
    the download thread only queues each chunk (bounded: memory stays flat).
    """

    def __init__(self) -> None:
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=16)
        self._hash = hashlib.sha256()
        self._thread = threading.Thread(target=self._run, name="chainproof-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            self._hash.update(chunk)

    def update(self, chunk: bytes) -> None:
        self._queue.put(chunk)

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def hexdigest(self) -> str:
        self.close()
        return self._hash.hexdigest()


class _QuarantineWriter:
    """A write-only file that hashes and counts what it is given, within a byte limit."""

    def __init__(self, f: BinaryIO, uri: str, max_bytes: int) -> None:
        self._f, self._uri, self._max = f, uri, max_bytes
        self._hash = _BackgroundHash()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        if self.size > self._max:
            raise ArtifactRefused(self._uri, f"larger than the {self._max}-byte limit")
        # Queue an immutable copy: a caller may reuse its buffer once write() returns.
        chunk = data if isinstance(data, bytes) else bytes(data)
        self._hash.update(chunk)
        return self._f.write(chunk)

    def tell(self) -> int:
        return self.size

    def seek(self, pos: int, whence: int = 0) -> int:
        # Clients seek to 0 to restart a download from scratch: start the hash over too.
        if (pos, whence) not in ((0, 0), (self.size, 0), (0, 1)):
            raise OSError(f"{self._uri}: quarantine file only rewinds to 0")
        if pos == 0 and whence == 0:
            self._f.seek(0)
            self._f.truncate()
            self._hash.close()
            self._hash = _BackgroundHash()
            self.size = 0
        return self.size

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        """Stop the hashing thread (idempotent)."""
        self._hash.close()

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class Source(Protocol):
    """Where bytes come from: one implementation per URI scheme."""

    uri: str

    def name(self) -> str:
        """Return the object's base name."""
        ...

    def prepare(self) -> None:
        """Read metadata and pin the version to download (before any byte is read)."""
        ...

    def generation(self) -> str | None:
        """Return the pinned generation/version, if the scheme has one."""
        ...

    def download(self, writer: _QuarantineWriter) -> None:
        """Write the object's bytes into ``writer``, resuming at ``writer.tell()`` if possible.

        Raises:
            TransientError: a fault worth retrying.
        """
        ...


class _LocalSource:
    """A local file (``file://`` URI or plain path)."""

    def __init__(self, path: Path, uri: str) -> None:
        self.uri, self._path = uri, path

    def name(self) -> str:
        return self._path.name

    def prepare(self) -> None:
        if self._path.is_symlink():
            raise ArtifactRefused(self.uri, "is a symbolic link; give the file it points to")

    def generation(self) -> str | None:
        return None

    def download(self, writer: _QuarantineWriter) -> None:
        try:
            f = open(self._path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError as exc:
            raise InputError(f"{self.uri}: no such file") from exc
        except (IsADirectoryError, PermissionError) as exc:
            raise InputError(f"{self.uri}: cannot be read ({exc.strerror})") from exc
        with f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise ArtifactRefused(self.uri, "not a regular file")
            f.seek(writer.tell())
            while chunk := f.read(CHUNK_SIZE):
                writer.write(chunk)


class _GCSSource:
    """A Cloud Storage object, pinned to one generation for the whole download."""

    def __init__(self, bucket: str, name: str, generation: str | None, uri: str, options: FetchOptions) -> None:
        self.uri, self._bucket, self._name, self._options = uri, bucket, name, options
        self._generation = generation
        self._blob: Any = None

    def name(self) -> str:
        return PurePosixPath(self._name).name

    def _client(self) -> Any:
        if self._options.gcs_client_factory is not None:
            return self._options.gcs_client_factory()
        import google.cloud.storage as storage

        return storage.Client()

    def _retry(self) -> Any:
        from google.cloud.storage.retry import DEFAULT_RETRY

        return DEFAULT_RETRY.with_deadline(self._options.retry.deadline).with_delay(
            initial=self._options.retry.initial_delay, maximum=self._options.retry.max_delay
        )

    def prepare(self) -> None:
        from google.api_core import exceptions as gexc

        bucket = self._client().bucket(self._bucket)
        try:
            # Read the live generation (or check the pinned one exists), then download
            # exactly that generation: a later overwrite cannot slip in mid-download.
            blob = bucket.get_blob(
                self._name,
                generation=int(self._generation) if self._generation else None,
                retry=self._retry(),
                timeout=self._options.timeout,
            )
        except gexc.Forbidden as exc:
            raise InputError(f"{self.uri}: access denied ({exc.code})") from exc
        except gexc.GoogleAPIError as exc:
            raise ArtifactRefused(self.uri, f"cannot read object metadata ({type(exc).__name__})") from exc
        if blob is None:
            pinned = f" generation {self._generation}" if self._generation else ""
            raise InputError(f"{self.uri}: no such object{pinned}")
        self._generation = str(blob.generation) if blob.generation is not None else self._generation
        self._blob = bucket.blob(self._name, generation=int(self._generation) if self._generation else None)

    def generation(self) -> str | None:
        return self._generation

    def download(self, writer: _QuarantineWriter) -> None:
        from google.api_core import exceptions as gexc
        from google.cloud.storage.exceptions import DataCorruption

        try:
            self._blob.download_to_file(
                writer,
                start=writer.tell() or None,
                raw_download=True,  # hash the bytes as stored, not a transcoded rendition
                checksum="crc32c" if writer.tell() == 0 else None,
                retry=self._retry(),
                timeout=self._options.timeout,
            )
        except DataCorruption as exc:
            raise TransientError("crc32c mismatch (corrupted or truncated transfer)") from exc
        except gexc.NotFound as exc:
            raise InputError(f"{self.pinned()}: no such object generation") from exc
        except (gexc.ServerError, gexc.TooManyRequests, gexc.RetryError) as exc:
            raise TransientError(type(exc).__name__) from exc
        except OSError as exc:  # connection resets surface as requests/urllib3 OSErrors
            raise TransientError(type(exc).__name__) from exc

    def pinned(self) -> str:
        return f"{self.uri}#{self._generation}" if self._generation else self.uri


class _HTTPSSource:
    """An object over HTTPS (also the transport of public S3 objects)."""

    _MAX_REDIRECTS = 5

    def __init__(self, url: str, uri: str, options: FetchOptions, version: str | None = None) -> None:
        self.uri, self._url, self._options, self._version = uri, url, options, version

    def name(self) -> str:
        return PurePosixPath(unquote(urlparse(self._url).path)).name

    def prepare(self) -> None:
        if urlparse(self._url).scheme != "https":
            raise InputError(f"{self.uri}: only https:// is accepted (plain http can be altered in transit)")

    def generation(self) -> str | None:
        return self._version

    def _get(self, session: Any, offset: int) -> Any:
        import requests

        url = self._url
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        for _ in range(self._MAX_REDIRECTS + 1):
            try:
                response = session.get(
                    url,
                    headers=headers,
                    stream=True,
                    allow_redirects=False,
                    timeout=self._options.timeout,
                    verify=self._options.ca_file or True,
                )
            except requests.exceptions.SSLError as exc:
                raise InputError(f"{self.uri}: TLS verification failed ({type(exc).__name__})") from exc
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
                raise TransientError(type(exc).__name__) from exc
            if response.status_code in (301, 302, 303, 307, 308):
                target = urljoin(url, response.headers.get("Location", ""))
                response.close()
                if urlparse(target).scheme != "https":
                    raise ArtifactRefused(self.uri, f"redirect to non-https URL refused ({urlparse(target).scheme}://...)")
                url = target
                continue
            return response
        raise ArtifactRefused(self.uri, f"more than {self._MAX_REDIRECTS} redirects")

    def download(self, writer: _QuarantineWriter) -> None:
        import requests

        offset = writer.tell()
        with requests.Session() as session:
            response = self._get(session, offset)
            with response:
                status = response.status_code
                if status >= 500 or status == 429:
                    raise TransientError(f"HTTP {status}")
                if status == 206 and offset:
                    content_range = response.headers.get("Content-Range", "")
                    if not content_range.startswith(f"bytes {offset}-"):
                        writer.seek(0)
                        raise TransientError(f"unexpected Content-Range {content_range!r}")
                elif status == 200:
                    if offset:
                        writer.seek(0)  # the server ignored the range: start over
                elif status == 404:
                    raise InputError(f"{self.uri}: not found (HTTP 404)")
                else:
                    raise ArtifactRefused(self.uri, f"HTTP {status}")
                expected_length = response.headers.get("Content-Length")
                start = writer.tell()
                try:
                    for chunk in response.iter_content(chunk_size=CHUNK_SIZE):
                        writer.write(chunk)
                except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError) as exc:
                    raise TransientError(f"connection dropped after {writer.tell()} bytes") from exc
                received = writer.tell() - start
                if expected_length is not None and received < int(expected_length):
                    raise TransientError(f"truncated body: {received} of {expected_length} bytes")


#: Query parameters that never carry secrets and help an auditor (object versions).
_PLAIN_QUERY_KEYS = {"versionid", "generation", "alt"}


def redact_uri(uri: str) -> str:
    """Return ``uri`` without secrets, for links, metadata, logs and errors.

    User information (``user:password@``) is replaced, and every query value except
    object versions is replaced by ``REDACTED``: pre-signed URLs carry signatures and
    session tokens there. The bytes are pinned by digest, so nothing is lost for
    verification.

    Args:
        uri: a source URI as given.

    Returns:
        The URI safe to record and print.
    """
    parts = urlsplit(uri)
    if not parts.scheme or parts.scheme == "file":
        return uri
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "REDACTED@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = "&".join(f"{k}={v if k.lower() in _PLAIN_QUERY_KEYS else 'REDACTED'}" for k, v in pairs)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _split_fragment(uri: str) -> tuple[str, str | None]:
    base, sep, fragment = uri.partition("#")
    return base, (fragment if sep else None)


def source_for(uri: str, options: FetchOptions = FetchOptions()) -> Source:
    """Return the source for a URI.

    Args:
        uri: ``gs://``, ``https://``, ``s3://``, ``file://`` or a plain path.
        options: endpoints, CA bundle and retry policy.

    Returns:
        The source.

    Raises:
        InputError: the scheme is not supported or the URI is malformed.
    """
    parsed = urlparse(uri)
    scheme = parsed.scheme.lower()
    if scheme == "gs":
        base, generation = _split_fragment(uri)
        p = urlparse(base)
        name = p.path.lstrip("/")
        if not p.netloc or not name:
            raise InputError(f"{redact_uri(uri)}: expected gs://BUCKET/OBJECT[#GENERATION]")
        if generation is not None and not generation.isdigit():
            raise InputError(f"{redact_uri(uri)}: generation must be a number, got {generation!r}")
        return _GCSSource(p.netloc, name, generation, base, options)
    if scheme == "s3":
        base, version = _split_fragment(uri)
        p = urlparse(base)
        key = p.path.lstrip("/")
        if not p.netloc or not key:
            raise InputError(f"{redact_uri(uri)}: expected s3://BUCKET/KEY[#VERSIONID]")
        url = f"{options.s3_endpoint.rstrip('/')}/{quote(p.netloc)}/{quote(key)}"
        if version:
            url += f"?versionId={quote(version)}"
        return _HTTPSSource(url, base, options, version=version)
    if scheme in ("https", "http"):
        # The URL keeps its credentials for the request; messages get the redacted form.
        return _HTTPSSource(uri, redact_uri(uri), options)
    if scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise InputError(f"{redact_uri(uri)}: file:// URIs must name a local path")
        return _LocalSource(Path(unquote(parsed.path)), uri)
    if scheme == "":
        return _LocalSource(Path(uri).absolute(), uri)
    raise InputError(f"{redact_uri(uri)}: unsupported source scheme {parsed.scheme!r} (supported: gs://, https://, s3://, file://, paths)")


def _safe_relative(name: str, uri: str) -> PurePosixPath:
    rel = PurePosixPath(name)
    if not name or rel.is_absolute() or any(part in ("", ".", "..") for part in rel.parts) or "\\" in name:
        raise ArtifactRefused(uri, f"unsafe object name {name!r}")
    return rel


def fetch(
    uri: str,
    *,
    dest_dir: Path,
    expected_sha256: str | None,
    name: str | None = None,
    limits: FetchLimits = FetchLimits(),
    options: FetchOptions = FetchOptions(),
    sleep: Callable[[float], None] = time.sleep,
) -> Fetched:
    """Fetch one object into ``dest_dir``, verified against its pinned SHA-256.

    Args:
        uri: the source.
        dest_dir: the folder the verified file is released into (created if missing).
        expected_sha256: the pinned digest. ``None`` only where the caller verifies the
            bytes another way before anything uses them (a publisher signature over a
            folder, checked by :func:`fetch_tree`'s caller while still in quarantine).
        name: the relative file name in ``dest_dir`` (default: the object's base name).
        limits: size limits.
        options: endpoints, CA bundle and retry policy.
        sleep: how to wait between retries (tests pass a no-op).

    Returns:
        The verified object.

    Raises:
        DigestMismatch: the bytes are not the pinned ones (names URI, generation, expected, actual).
        ArtifactRefused: over a limit, a refused redirect, or retries exhausted.
        InputError: the URI or digest is malformed, or the source is missing.

    Side effects:
        Reads the source (local file, Cloud Storage, HTTPS). Writes one quarantine file
        next to the destination, renamed into place only on success.
    """
    shown = redact_uri(uri)
    expected = check_sha256_hex(expected_sha256, what=f"{shown} expected sha256") if expected_sha256 is not None else None
    source = source_for(uri, options)
    out_name = name or source.name()
    rel = _safe_relative(out_name, shown)
    final = dest_dir / Path(*rel.parts)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=final.parent, prefix=f".quarantine-{rel.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        source.prepare()
        with os.fdopen(fd, "w+b") as out:
            writer = _QuarantineWriter(out, shown, limits.max_bytes)
            try:
                delays = options.retry.delays()
                while True:
                    try:
                        source.download(writer)
                        break
                    except TransientError as exc:
                        delay = next(delays, None)
                        if delay is None:
                            raise ArtifactRefused(
                                shown, f"download failed after {options.retry.attempts} attempts ({exc})"
                            ) from exc
                        sleep(delay)
                actual = writer.hexdigest()
            finally:
                writer.close()
        generation = source.generation()
        if expected is not None and actual != expected:
            raise DigestMismatch(shown, expected, actual, context=f"generation {generation}" if generation else "")
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    base_uri = shown.partition("#")[0]
    return Fetched(uri=base_uri, name=rel.as_posix(), path=final, sha256=actual, size=writer.size, generation=generation)


def is_folder_uri(uri: str) -> bool:
    """Return True for a URI that names a folder (trailing ``/``, or a local directory)."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        path = Path(unquote(parsed.path)) if parsed.scheme == "file" else Path(uri)
        return path.is_dir()
    return uri.endswith("/")


def _list_folder(uri: str, limits: FetchLimits, options: FetchOptions, exclude: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """List (object URI, relative name) under a folder URI, within ``max_objects``."""
    parsed = urlparse(uri)
    entries: list[tuple[str, str]] = []
    if parsed.scheme == "gs":
        if options.gcs_client_factory is not None:
            client = options.gcs_client_factory()
        else:
            import google.cloud.storage as storage

            client = storage.Client()
        prefix = parsed.path.lstrip("/")
        for blob in client.list_blobs(parsed.netloc, prefix=prefix, max_results=limits.max_objects + 1):
            if blob.name.endswith("/"):
                continue  # a "folder" placeholder object
            rel = blob.name[len(prefix) :]
            if rel in exclude:
                continue
            entries.append((f"gs://{parsed.netloc}/{blob.name}#{blob.generation}", rel))
            if len(entries) > limits.max_objects:
                break
    elif parsed.scheme in ("", "file"):
        root = Path(unquote(parsed.path)) if parsed.scheme == "file" else Path(uri)
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames.sort()
            for fname in sorted(filenames):
                full = Path(dirpath, fname)
                if full.relative_to(root).as_posix() in exclude:
                    continue
                entries.append((str(full), full.relative_to(root).as_posix()))
                if len(entries) > limits.max_objects:
                    break
            for dname in dirnames:
                if Path(dirpath, dname).is_symlink():
                    raise ArtifactRefused(str(Path(dirpath, dname)), "symbolic links are not allowed in a source folder")
    else:
        raise InputError(f"{redact_uri(uri)}: folders are supported for gs:// and local sources only")
    if len(entries) > limits.max_objects:
        raise ArtifactRefused(redact_uri(uri), f"more than {limits.max_objects} objects")
    if not entries:
        raise InputError(f"{redact_uri(uri)}: folder is empty")
    return entries


def fetch_tree(
    uri: str,
    *,
    dest_dir: Path,
    expected_manifest_sha256: str | None,
    limits: FetchLimits = FetchLimits(),
    options: FetchOptions = FetchOptions(),
    verify: Callable[[Path], None] | None = None,
    exclude: frozenset[str] = frozenset(),
    sleep: Callable[[float], None] = time.sleep,
) -> FetchedTree:
    """Fetch every object under a folder URI, verified as one manifest, released atomically.

    Args:
        uri: ``gs://bucket/prefix/`` or a local folder.
        dest_dir: the folder to create with the objects (must not exist yet).
        expected_manifest_sha256: the pinned manifest digest of ``{relative name: sha256}``;
            ``None`` only together with ``verify``.
        limits: size and object-count limits.
        options: endpoints and retry policy.
        verify: an extra check run on the quarantined folder before release (for
            example a publisher's model signature); it raises to refuse.
        exclude: relative names to leave out (a signature stored inside the folder).
        sleep: how to wait between retries.

    Returns:
        The verified folder.

    Raises:
        DigestMismatch: the manifest digest is not the pinned one.
        ArtifactRefused: over a limit, or refused by ``verify``.
        InputError: bad arguments.

    Side effects:
        Lists and reads the source; writes a quarantine folder next to ``dest_dir``.
    """
    if expected_manifest_sha256 is None and verify is None:
        raise InputError(f"{redact_uri(uri)}: a folder needs a pinned manifest sha256 or a publisher signature")
    expected = (
        check_sha256_hex(expected_manifest_sha256, what=f"{uri} expected manifest sha256")
        if expected_manifest_sha256 is not None
        else None
    )
    if dest_dir.exists() and any(dest_dir.iterdir()):
        raise InputError(f"{dest_dir}: already exists; refusing to overwrite it")
    dest_dir.parent.mkdir(parents=True, exist_ok=True)
    quarantine = Path(tempfile.mkdtemp(dir=dest_dir.parent, prefix=f".quarantine-{dest_dir.name}-"))
    try:
        files = []
        total = 0
        for object_uri, rel in _list_folder(uri, limits, options, exclude):
            got = fetch(object_uri, dest_dir=quarantine, expected_sha256=None, name=rel,
                        limits=limits, options=options, sleep=sleep)
            total += got.size
            files.append(got)
        manifest = {f.name: f.sha256 for f in files}
        actual = manifest_digest(manifest)
        if expected is not None and actual != expected:
            raise DigestMismatch(redact_uri(uri), expected, actual, context="manifest of the folder")
        if verify is not None:
            verify(quarantine)
        if dest_dir.exists():
            dest_dir.rmdir()
        os.rename(quarantine, dest_dir)
    except BaseException:
        shutil.rmtree(quarantine, ignore_errors=True)
        raise
    released = [
        Fetched(uri=f.uri, name=f.name, path=dest_dir / f.name, sha256=f.sha256, size=f.size, generation=f.generation)
        for f in files
    ]
    return FetchedTree(uri=uri, files=released, manifest_sha256=actual)
