"""Check numpy ``.npy`` files by their header, never with ``np.load``.

Example:
    >>> import io, numpy as np
    >>> from chainproof.scan import scan_bytes
    >>> buf = io.BytesIO(); np.save(buf, np.array([1, None], dtype=object))
    >>> scan_bytes(buf.getvalue(), name="a.npy").findings
    []

The header is read here, byte by byte, as the format documents it (magic, version,
a little-endian header length, then a Python literal): the literal is parsed with
:func:`ast.literal_eval` (never evaluated as code) and must be a dict of exactly
``descr``, ``fortran_order`` and ``shape``; the dtype is built with the public
:func:`numpy.lib.format.descr_to_dtype`. An array with objects anywhere in its
dtype (plain or structured) is refused: loading it would unpickle. The data must
be exactly as long as the header says. Any malformed header is a finding with
its reason, never an error of the scanner. An array with objects is stored as a
pickle after the header (``np.load(..., allow_pickle=True)`` unpickles it): that
pickle is walked like any other, and must end the file.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from typing import Any

from chainproof.scan._stream import _Stream
from chainproof.scan.report import Finding

__all__ = ["scan_npy"]

_MAGIC = b"\x93NUMPY"
#: (major, minor) -> (bytes of the header length, header encoding), as numpy.lib.format writes them.
_VERSIONS = {(1, 0): (2, "latin1"), (2, 0): (4, "latin1"), (3, 0): (4, "utf8")}
#: numpy refuses headers longer than this by default (``max_header_size``); so do we.
_MAX_HEADER = 10_000
_KEYS = {"descr", "fortran_order", "shape"}


class _BadHeader(Exception):
    """Why a header is malformed (a finding, not an error)."""


def parse_header(stream: _Stream) -> tuple[tuple[int, int], tuple[int, ...], bool, Any]:
    """Read the magic and header of an ``.npy`` stream.

    Args:
        stream: the stream, at the magic string.

    Returns:
        ``(version, shape, fortran_order, dtype)``.

    Raises:
        _BadHeader: the header is malformed (the message says how).
    """
    from numpy.lib import format as npformat

    magic = stream.read(8)
    if len(magic) < 8 or not magic.startswith(_MAGIC):
        raise _BadHeader("truncated magic string")
    version = (magic[6], magic[7])
    if version not in _VERSIONS:
        raise _BadHeader(f"unknown format version {version[0]}.{version[1]} (known: 1.0, 2.0, 3.0)")
    width, encoding = _VERSIONS[version]
    raw_len = stream.read(width)
    if len(raw_len) < width:
        raise _BadHeader("truncated header length")
    hlen = int.from_bytes(raw_len, "little")
    if hlen > _MAX_HEADER:
        raise _BadHeader(f"header of {hlen} bytes is longer than {_MAX_HEADER} (numpy's default limit)")
    raw = stream.read(hlen)
    if len(raw) < hlen:
        raise _BadHeader(f"truncated header: {hlen} bytes announced, {len(raw)} present")
    try:
        text = raw.decode(encoding)
        header = ast.literal_eval(text)
    except (UnicodeDecodeError, ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        raise _BadHeader(f"header is not a Python literal ({type(exc).__name__})") from exc
    if not isinstance(header, dict) or set(header) != _KEYS:
        raise _BadHeader(f"header is not a dict of exactly {sorted(_KEYS)}")
    shape, fortran, descr = header["shape"], header["fortran_order"], header["descr"]
    if not isinstance(shape, tuple) or not all(type(d) is int and d >= 0 for d in shape):
        raise _BadHeader(f"shape is not a tuple of non-negative ints ({str(shape)[:60]})")
    if not isinstance(fortran, bool):
        raise _BadHeader("fortran_order is not a bool")
    if not isinstance(descr, (str, list, tuple)):
        raise _BadHeader("descr is not a dtype description")
    try:
        dtype = npformat.descr_to_dtype(descr)  # type: ignore[arg-type]  # checked: a str, list or tuple
    except Exception as exc:  # numpy raises many types for a bad descr; each is a finding
        raise _BadHeader(f"descr is not a valid dtype ({type(exc).__name__}: {str(exc)[:80]})") from exc
    return version, shape, fortran, dtype


def scan_npy(
    stream: _Stream,
    *,
    label: str,
    findings: list[Finding],
    facts: dict[str, Any],
    scan_pickle: Callable[[_Stream], None] | None = None,
) -> str:
    """Check one ``.npy`` stream.

    Args:
        stream: the stream, at the magic string.
        label: the name findings use.
        findings: where findings go.
        facts: where facts go (version, shape, dtype).
        scan_pickle: walks the pickle of an object array (the rest of the stream);
            without it an object array is refused.

    Returns:
        The kind, ``npy``.
    """
    try:
        version, shape, _fortran, dtype = parse_header(stream)
    except _BadHeader as exc:
        findings.append(Finding(label, stream.pos, "header", f"malformed .npy header: {exc}"))
        return "npy"
    facts.update({"npy_version": list(version), "shape": list(shape), "dtype": str(dtype)})
    if dtype.hasobject:
        if scan_pickle is None:
            findings.append(Finding(label, stream.pos, str(dtype), "object dtype: loading it needs pickle (allow_pickle=True)"))
        else:
            scan_pickle(stream)
        return "npy"
    nbytes = math.prod(shape) * dtype.itemsize
    got = stream.skip(nbytes)
    if got != nbytes:
        findings.append(Finding(label, stream.pos, "data", f"truncated: the header promises {nbytes} bytes, {got} follow"))
    elif not stream.at_eof():
        findings.append(Finding(label, stream.pos, "data", "bytes after the array data (a second payload)"))
    return "npy"
