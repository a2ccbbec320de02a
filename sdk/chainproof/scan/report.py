"""What a scan found: findings, per-file reports, limits and the overall verdict.

Example:
    >>> from chainproof.scan.report import Finding, ScanReport, summarize
    >>> bad = ScanReport(file="m.pkl", kind="pickle",
    ...                  findings=[Finding("m.pkl", 2, "os.system", "global not in the allowlist")])
    >>> str(bad.findings[0])
    'm.pkl@2: os.system: global not in the allowlist'
    >>> summarize([bad])["verdict"]
    'unsafe'

A report is ``safe`` only when it has no findings. Anything the scanner cannot
parse, decompress within its limits, or resolve becomes a finding: the scanner
fails closed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from chainproof._version import __version__

__all__ = ["Finding", "ScanLimits", "ScanReport", "summarize"]


@dataclass(frozen=True)
class Finding:
    """One reason a file is unsafe.

    Attributes:
        file: the file (logical or base name). A member of an archive is named
            ``archive!member``; a decompressed stream ``file|codec`` (its offsets
            count bytes of the decompressed stream).
        offset: where (a byte offset, or a line number for text), if known.
        what: the offending item (an opcode, a global, a member, a column).
        reason: why it is refused.
    """

    file: str
    offset: int | None
    what: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {"file": self.file, "offset": self.offset, "what": self.what, "reason": self.reason}

    def __str__(self) -> str:
        """Return ``file@offset: what: reason``."""
        where = f"@{self.offset}" if self.offset is not None else ""
        return f"{self.file}{where}: {self.what}: {self.reason}"


@dataclass(frozen=True)
class ScanReport:
    """The result of scanning one file.

    Attributes:
        file: the file's name.
        kind: what its content was identified as (``csv``, ``pickle``,
            ``joblib``, ``zip``, ``npy``, ``skops``, ...).
        findings: every reason it is unsafe; empty when safe.
        facts: what was read (rows and columns, globals, archive members, ...).
    """

    file: str
    kind: str
    findings: list[Finding] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        """``safe`` when there are no findings, else ``unsafe``."""
        return "unsafe" if self.findings else "safe"

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form written as a scan report."""
        return {
            "scanner": f"chainproof.scan {__version__}",
            "file": self.file,
            "kind": self.kind,
            "verdict": self.verdict,
            "facts": self.facts,
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass(frozen=True)
class ScanLimits:
    """Limits of one scan. Whatever exceeds them is unsafe, never skipped.

    Attributes:
        max_file_bytes: largest file (or archive member) read.
        max_decompressed_bytes: most bytes one compressed stream or archive
            may expand to, in total.
        max_ratio: largest decompressed/compressed size ratio accepted once a
            stream has expanded past ``ratio_floor_bytes``.
        ratio_floor_bytes: decompressed size below which the ratio is not
            checked (small, very regular files compress very well).
        max_members: most entries in one archive.
        max_depth: deepest nesting of containers (archive in archive, stream
            in archive).
        max_files: most files scanned under one folder.
        max_opcodes: most pickle opcodes read from one stream.
        max_stack: largest simulated pickle stack and memo.
        max_mark_depth: deepest nesting of pickle MARKs (containers).
        max_line_bytes: longest protocol-0 text argument.
        max_inline_pickles: most object arrays pickled inline in one joblib file.
        max_text_probe_bytes: bytes read to decide whether a file is text.
        max_in_memory_bytes: largest nested zip (or skops file) read into
            memory (a zip needs random access).
    """

    max_file_bytes: int = 16 << 30
    max_decompressed_bytes: int = 16 << 30
    max_ratio: int = 200
    ratio_floor_bytes: int = 64 << 20
    max_members: int = 10_000
    max_depth: int = 4
    max_files: int = 100_000
    max_opcodes: int = 50_000_000
    max_stack: int = 5_000_000
    max_mark_depth: int = 2_000
    max_line_bytes: int = 1 << 20
    max_inline_pickles: int = 100_000
    max_text_probe_bytes: int = 1 << 16
    max_in_memory_bytes: int = 2 << 30


def summarize(reports: Sequence[ScanReport]) -> dict[str, Any]:
    """Return the overall verdict of several reports.

    The verdict is ``safe`` only if there is at least one report and every
    report is safe: an empty scan proves nothing.

    Args:
        reports: the reports of one scan.

    Returns:
        ``{"verdict", "files", "unsafe", "findings"}``: the verdict, the number
        of files, the names of the unsafe files and the number of findings.
    """
    unsafe = [r.file for r in reports if r.verdict != "safe"]
    verdict = "safe" if reports and not unsafe else "unsafe"
    return {
        "scanner": f"chainproof.scan {__version__}",
        "verdict": verdict,
        "files": len(reports),
        "unsafe": unsafe,
        "findings": sum(len(r.findings) for r in reports),
    }
