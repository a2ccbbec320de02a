"""Check numpy ``.npy`` files by their header, never with ``np.load``.

Example:
    >>> import io, numpy as np
    >>> from chainproof.scan import scan_bytes
    >>> buf = io.BytesIO(); np.save(buf, np.array([1, None], dtype=object))
    >>> [f.reason for f in scan_bytes(buf.getvalue(), name="a.npy").findings]
    ['object dtype: loading it needs pickle (allow_pickle=True)']

The header is parsed with :mod:`numpy.lib.format` (a literal, never code). An
array with objects anywhere in its dtype (plain or structured) is refused:
loading it would unpickle. The data must be exactly as long as the header says.
"""

from __future__ import annotations

import math
from typing import Any

from chainproof.scan._stream import ScanAbort, _Stream
from chainproof.scan.report import Finding

__all__ = ["scan_npy"]


def scan_npy(stream: _Stream, *, label: str, findings: list[Finding], facts: dict[str, Any]) -> str:
    """Check one ``.npy`` stream.

    Args:
        stream: the stream, at the magic string.
        label: the name findings use.
        findings: where findings go.
        facts: where facts go (version, shape, dtype).

    Returns:
        The kind, ``npy``.
    """
    from numpy.lib import format as npformat

    try:
        version = npformat.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = npformat.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran, dtype = npformat.read_array_header_2_0(stream)
        elif version == (3, 0):
            shape, fortran, dtype = npformat._read_array_header(stream, version)
        else:  # pragma: no cover - read_magic only returns known versions
            raise ValueError(f"unknown version {version}")
    except ScanAbort:
        raise
    except (ValueError, TypeError, SyntaxError, EOFError) as exc:
        findings.append(Finding(label, stream.pos, "header", f"malformed .npy header ({exc})"))
        return "npy"
    facts.update({"npy_version": list(version), "shape": list(shape), "dtype": str(dtype)})
    if dtype.hasobject:
        findings.append(Finding(label, stream.pos, str(dtype), "object dtype: loading it needs pickle (allow_pickle=True)"))
        return "npy"
    nbytes = math.prod(shape) * dtype.itemsize
    got = stream.skip(nbytes)
    if got != nbytes:
        findings.append(Finding(label, stream.pos, "data", f"truncated: the header promises {nbytes} bytes, {got} follow"))
    elif not stream.at_eof():
        findings.append(Finding(label, stream.pos, "data", "bytes after the array data (a second payload)"))
    return "npy"
