"""Check tabular data (CSV) for shape, size and an optional schema.

Example:
    >>> import pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp(), "t.csv")
    >>> _ = p.write_text("a,b\\n1,2\\n")
    >>> scan_csv(p).verdict
    'safe'
    >>> schema = TabularSchema(columns=(Column("a", "int", minimum=0, maximum=0), Column("b", "float")))
    >>> [f.reason for f in scan_csv(p, schema=schema).findings]
    ['1 is above the maximum 0']

A scan returns a :class:`ScanReport` whose findings name the file, the line,
the column and why. Anything the scanner cannot parse is unsafe (fail closed).
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from chainproof.scan.report import Finding, ScanReport

__all__ = ["Column", "TabularLimits", "TabularSchema", "scan_csv"]

ColumnType = Literal["int", "float", "str", "bool"]
_BOOLS = {"true", "false", "0", "1"}


@dataclass(frozen=True)
class TabularLimits:
    """Limits for tabular data.

    Attributes:
        max_rows: most data rows accepted.
        max_columns: most columns accepted.
        max_field_bytes: longest single field accepted.
        max_bytes: largest file accepted.
        max_findings: most findings reported per file (the rest are counted).
    """

    max_rows: int = 50_000_000
    max_columns: int = 10_000
    max_field_bytes: int = 1 << 20
    max_bytes: int = 16 << 30
    max_findings: int = 100


@dataclass(frozen=True)
class Column:
    """The expected name, type and range of one column.

    Attributes:
        name: the header name.
        type: ``int``, ``float``, ``str`` or ``bool`` (``true``/``false``/``0``/``1``).
        minimum: smallest accepted value (numbers only).
        maximum: largest accepted value (numbers only).
        nullable: whether an empty field is accepted.
    """

    name: str
    type: ColumnType = "str"
    minimum: float | None = None
    maximum: float | None = None
    nullable: bool = False


@dataclass(frozen=True)
class TabularSchema:
    """The columns a CSV must have, in order.

    Attributes:
        columns: the expected columns.
        allow_extra_columns: accept columns the schema does not name (after them).
    """

    columns: tuple[Column, ...]
    allow_extra_columns: bool = False

    @classmethod
    def from_dict(cls, doc: Any) -> TabularSchema:
        """Build a schema from ``{"columns": [{"name", "type", "minimum", "maximum", "nullable"}], "allow_extra_columns"}``.

        Raises:
            InputError: unknown fields, types or a malformed document.
        """
        from chainproof.errors import InputError

        if not isinstance(doc, dict) or not isinstance(doc.get("columns"), list) or not doc["columns"]:
            raise InputError("tabular schema: expected {\"columns\": [{\"name\": ..., \"type\": ...}, ...]}")
        unknown = sorted(set(doc) - {"columns", "allow_extra_columns"})
        if unknown:
            raise InputError(f"tabular schema: unknown field(s) {', '.join(unknown)}")
        columns = []
        for item in doc["columns"]:
            if not isinstance(item, dict) or "name" not in item:
                raise InputError(f"tabular schema: each column needs a name, got {item!r}")
            extra = sorted(set(item) - {"name", "type", "minimum", "maximum", "nullable"})
            if extra:
                raise InputError(f"tabular schema: column {item['name']!r}: unknown field(s) {', '.join(extra)}")
            if item.get("type", "str") not in ("int", "float", "str", "bool"):
                raise InputError(f"tabular schema: column {item['name']!r}: type must be int, float, str or bool")
            columns.append(
                Column(
                    name=str(item["name"]),
                    type=item.get("type", "str"),
                    minimum=None if item.get("minimum") is None else float(item["minimum"]),
                    maximum=None if item.get("maximum") is None else float(item["maximum"]),
                    nullable=bool(item.get("nullable", False)),
                )
            )
        return cls(columns=tuple(columns), allow_extra_columns=bool(doc.get("allow_extra_columns", False)))


def scan_csv(
    path: Path,
    *,
    name: str | None = None,
    limits: TabularLimits = TabularLimits(),
    schema: TabularSchema | None = None,
) -> ScanReport:
    """Check that a file is a well-formed UTF-8 CSV within limits (and a schema).

    Checks: UTF-8 text, a header of unique non-empty names, the same number of
    fields on every row, the size, row, column and field limits and, with a
    schema, the column names, types, ranges and empty fields.

    Args:
        path: the CSV file.
        name: the name findings report (default: the file name).
        limits: size limits.
        schema: the expected columns, if any.

    Returns:
        The report; its verdict is ``unsafe`` if any check failed.
    """
    label = name or path.name
    findings: list[Finding] = []
    rows = 0
    header: list[str] = []
    size = os.path.getsize(path)
    if size > limits.max_bytes:
        findings.append(Finding(label, None, "size", f"{size} bytes exceed the limit of {limits.max_bytes}"))
        return ScanReport(file=label, kind="csv", findings=findings, facts={"bytes": size})
    csv.field_size_limit(limits.max_field_bytes)
    dropped = 0
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
                if schema is not None:
                    findings.extend(_check_header(label, header, schema))
            typed = schema is not None and not findings
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
                if typed and schema is not None:
                    for column, value in zip(schema.columns, row):
                        reason = _check_value(column, value)
                        if reason:
                            if len(findings) < limits.max_findings:
                                findings.append(Finding(label, reader.line_num, column.name, reason))
                            else:
                                dropped += 1
    except UnicodeDecodeError as exc:
        findings.append(Finding(label, exc.start, "encoding", "not UTF-8 text"))
    except csv.Error as exc:
        findings.append(Finding(label, None, "csv", f"malformed CSV ({exc})"))
    facts: dict[str, object] = {"rows": rows, "columns": len(header)}
    if dropped:
        facts["findings_not_listed"] = dropped
    return ScanReport(file=label, kind="csv", findings=findings, facts=facts)


def _check_header(label: str, header: list[str], schema: TabularSchema) -> list[Finding]:
    expected = [c.name for c in schema.columns]
    got = header[: len(expected)]
    out = []
    if got != expected:
        out.append(Finding(label, 1, "header", f"columns {got} do not match the schema {expected}"))
    elif len(header) > len(expected) and not schema.allow_extra_columns:
        out.append(Finding(label, 1, "header", f"columns not in the schema: {header[len(expected):]}"))
    return out


def _check_value(column: Column, value: str) -> str | None:
    if value == "":
        return None if column.nullable else "empty field"
    if column.type == "str":
        return None
    if column.type == "bool":
        return None if value.strip().lower() in _BOOLS else f"{value[:40]!r} is not a boolean"
    try:
        number: float = int(value) if column.type == "int" else float(value)
    except ValueError:
        return f"{value[:40]!r} is not {'an int' if column.type == 'int' else 'a float'}"
    if isinstance(number, float) and not math.isfinite(number):
        return f"{value[:40]!r} is not a finite number"
    if column.minimum is not None and number < column.minimum:
        return f"{value} is below the minimum {column.minimum:g}"
    if column.maximum is not None and number > column.maximum:
        return f"{value} is above the maximum {column.maximum:g}"
    return None
