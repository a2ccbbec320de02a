"""Scan artifacts by reading them, never by loading them.

Example:
    >>> import pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp(), "t.csv")
    >>> _ = p.write_text("a,b\\n1,2\\n")
    >>> scan_csv(p).verdict
    'safe'

A scan returns a :class:`ScanReport` whose findings name the file, where, and
why. Anything the scanner cannot parse is unsafe (fail closed).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chainproof._version import __version__

__all__ = ["Finding", "ScanReport", "TabularLimits", "scan_csv"]


@dataclass(frozen=True)
class Finding:
    """One reason a file is unsafe.

    Attributes:
        file: the file (logical or base name).
        offset: where (a byte offset, or a line number for text), if known.
        what: the offending item (an opcode, a global, a column).
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
        kind: what it was read as (``csv``).
        findings: every reason it is unsafe; empty when safe.
        facts: what was read (rows, columns).
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
class TabularLimits:
    """Limits for tabular data.

    Attributes:
        max_rows: most data rows accepted.
        max_columns: most columns accepted.
        max_field_bytes: longest single field accepted.
    """

    max_rows: int = 50_000_000
    max_columns: int = 10_000
    max_field_bytes: int = 1 << 20


def scan_csv(path: Path, *, name: str | None = None, limits: TabularLimits = TabularLimits()) -> ScanReport:
    """Check that a file is a well-formed UTF-8 CSV within limits.

    Checks: UTF-8 text, a header of unique non-empty names, the same number of
    fields on every row, no NUL bytes, and the row, column and field limits.

    Args:
        path: the CSV file.
        name: the name findings report (default: the file name).
        limits: size limits.

    Returns:
        The report; its verdict is ``unsafe`` if any check failed.
    """
    label = name or path.name
    findings: list[Finding] = []
    rows = 0
    header: list[str] = []
    csv.field_size_limit(limits.max_field_bytes)
    try:
        with open(path, "rb") as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8", errors="strict", newline="")
            reader = csv.reader(text)
            header = next(reader, [])
            if not header:
                findings.append(Finding(label, 1, "header", "empty file: no header row"))
            elif len(header) > limits.max_columns:
                findings.append(Finding(label, 1, "header", f"{len(header)} columns exceed the limit of {limits.max_columns}"))
            else:
                seen: set[str] = set()
                for col in header:
                    if not col.strip():
                        findings.append(Finding(label, 1, "header", "empty column name"))
                    elif col in seen:
                        findings.append(Finding(label, 1, col, "duplicate column name"))
                    seen.add(col)
            for row in reader:
                if not row:
                    continue
                rows += 1
                if len(row) != len(header):
                    findings.append(
                        Finding(label, reader.line_num, "row", f"{len(row)} fields, expected {len(header)}")
                    )
                    break
                if rows > limits.max_rows:
                    findings.append(Finding(label, reader.line_num, "rows", f"more than {limits.max_rows} rows"))
                    break
    except UnicodeDecodeError as exc:
        findings.append(Finding(label, exc.start, "encoding", "not UTF-8 text"))
    except csv.Error as exc:
        findings.append(Finding(label, None, "csv", f"malformed CSV ({exc})"))
    return ScanReport(file=label, kind="csv", findings=findings, facts={"rows": rows, "columns": len(header)})
