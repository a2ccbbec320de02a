"""Scan artifacts by reading them, never by loading them.

Example:
    >>> import pathlib, pickle, tempfile
    >>> from chainproof.scan import scan_path, summarize
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "t.csv").write_text("a,b\\n1,2\\n")
    >>> _ = (d / "model.bin").write_bytes(pickle.dumps({"w": [0.5]}, protocol=4))
    >>> summarize(scan_path(d))["verdict"]
    'safe'

Every file is identified by its content, whatever it is called: pickles
(protocols 0 to 5) and joblib files (plain or compressed with zlib, gzip, bz2,
lzma, xz or lz4), zip and tar archives (PyTorch archives, ``.npz`` and skops
files among them), numpy ``.npy``, safetensors, CSV and other text. Pickles are
walked opcode by opcode against an allowlist of exact globals
(:class:`Allowlist`); archives are checked for traversal, links, duplicates and
bombs; nothing is ever unpickled, extracted or imported. A scan returns
:class:`ScanReport` objects whose findings name the file, the byte offset, the
offending global or opcode, and why. Anything the scanner cannot parse,
decompress within its :class:`ScanLimits`, or resolve is unsafe.
"""

from __future__ import annotations

from chainproof.scan.allowlist import Allowlist, load_extension_names
from chainproof.scan.files import scan_bytes, scan_file, scan_path
from chainproof.scan.report import Finding, ScanLimits, ScanReport, summarize
from chainproof.scan.tabular import Column, TabularLimits, TabularSchema, scan_csv

__all__ = [
    "Allowlist",
    "Column",
    "Finding",
    "ScanLimits",
    "ScanReport",
    "TabularLimits",
    "TabularSchema",
    "load_extension_names",
    "scan_bytes",
    "scan_csv",
    "scan_file",
    "scan_path",
    "summarize",
]
