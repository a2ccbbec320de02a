"""A bounded, counting reader over any binary stream (private).

Example:
    >>> import io
    >>> s = _Stream(io.BytesIO(b"ab\\ncd"), label="t", max_bytes=10)
    >>> s.readline(), s.read(1), s.pos
    (b'ab\\n', b'c', 4)

Every byte the scanner reads goes through one of these, so a limit on size holds
however deeply streams are nested, and every finding knows its offset.
"""

from __future__ import annotations

import io
import os
import stat
from typing import BinaryIO, Protocol

from chainproof.scan.report import Finding

_CHUNK = 1 << 16
#: Skips longer than this seek in a regular file instead of reading (array payloads).
_SEEK_OVER = 1 << 20
#: Largest single read from the raw stream.
_MAX_READ = 16 << 20


class ScanAbort(Exception):
    """Stop scanning a stream: the finding says why (a limit, a parse error)."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(str(finding))
        self.finding = finding


class _Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class _Stream:
    """Read a binary stream with a position, a byte limit and one-chunk lookahead.

    Args:
        raw: the stream.
        label: the name findings use.
        max_bytes: most bytes that may be read; reading past it aborts the scan.
        max_line: longest line ``readline`` accepts.
        what: the name of the limit, for the finding.
    """

    def __init__(
        self,
        raw: _Readable | BinaryIO,
        *,
        label: str,
        max_bytes: int,
        max_line: int = 1 << 20,
        what: str = "size",
    ) -> None:
        self.raw = raw
        self.label = label
        self.max_bytes = max_bytes
        self.max_line = max_line
        self.what = what
        self.pos = 0
        # Buffered bytes are self._buf[self._off:]: reads move the offset, never copy the rest.
        self._buf = b""
        self._off = 0
        self._eof = False

    def _limit(self) -> ScanAbort:
        return ScanAbort(Finding(self.label, self.max_bytes, self.what, f"more than {self.max_bytes} bytes (the limit)"))

    def _fill(self, want: int) -> None:
        # Read raw chunks until `want` bytes are buffered or the stream ends. A request
        # past the limit reads at most one byte past it (never allocates what a length
        # field claims), then aborts.
        have = len(self._buf) - self._off
        if have >= want or self._eof:
            if self.pos + min(want, have) > self.max_bytes:
                raise self._limit()
            return
        cap = self.max_bytes - self.pos + 1
        target = min(want, cap)
        parts = [self._buf[self._off :]] if have else []
        while have < target and not self._eof:
            chunk = self.raw.read(max(_CHUNK, min(target - have, _MAX_READ)))
            if not chunk:
                self._eof = True
                break
            parts.append(chunk)
            have += len(chunk)
        self._buf = b"".join(parts)
        self._off = 0
        if self.pos + min(want, have) > self.max_bytes:
            raise self._limit()

    def peek(self, n: int) -> bytes:
        """Return up to ``n`` next bytes without consuming them."""
        self._fill(n)
        return self._buf[self._off : self._off + n]

    def read(self, n: int = -1) -> bytes:
        """Read ``n`` bytes (fewer at the end); ``-1`` reads to the end, within the limit."""
        if n is None or n < 0:
            n = self.max_bytes - self.pos + 1
        self._fill(n)
        off = self._off
        data = self._buf[off : off + n]
        self._off = off + len(data)
        self.pos += len(data)
        return data

    def readline(self, size: int = -1) -> bytes:
        """Read up to and including the next newline; a line of more than ``max_line`` bytes (newline not counted) is refused."""
        start = self._off
        while True:
            i = self._buf.find(b"\n", start)
            if i >= 0 and i - self._off <= self.max_line:
                return self.read(i + 1 - self._off)
            have = len(self._buf) - self._off if i < 0 else i - self._off
            if have > self.max_line:
                raise ScanAbort(
                    Finding(self.label, self.pos, "line", f"text argument longer than {self.max_line} bytes (the limit)")
                )
            if self._eof:
                return self.read(have)
            self._fill(have + _CHUNK)
            start = self._off + have

    def skip(self, n: int) -> int:
        """Consume ``n`` bytes without keeping them; return how many were there."""
        if n > _SEEK_OVER and self._regular_file():
            return self._seek_over(n)
        done = 0
        while done < n:
            got = len(self.read(min(_MAX_READ, n - done)))
            if not got:
                break
            done += got
        return done

    def _regular_file(self) -> bool:
        # Only a plain file opened by the scanner: archive members and decompressors
        # must be read through (their limits and checks count every byte).
        if not isinstance(self.raw, (io.BufferedReader, io.FileIO)):
            return False
        try:
            return stat.S_ISREG(os.fstat(self.raw.fileno()).st_mode)
        except (OSError, ValueError):
            return False

    def _seek_over(self, n: int) -> int:
        # Bytes that are skipped are never interpreted, so seeking past them reaches the
        # same state as reading them: the same position, the same limit, and the same
        # count when the file is shorter than ``n`` (the caller reports the truncation).
        if self.pos + n > self.max_bytes:
            raise self._limit()
        buffered = min(n, len(self._buf) - self._off)
        self._off += buffered
        self.pos += buffered
        want = n - buffered
        if want and not self._eof:
            raw = self.raw
            here = raw.tell()  # type: ignore[union-attr]
            size = os.fstat(raw.fileno()).st_size  # type: ignore[union-attr]
            moved = max(0, min(want, size - here))
            raw.seek(here + moved)  # type: ignore[union-attr]
            self.pos += moved
            if moved < want:
                self._eof = True
            return buffered + moved
        return buffered

    def at_eof(self) -> bool:
        """Return whether no byte is left."""
        return not self.peek(1)
