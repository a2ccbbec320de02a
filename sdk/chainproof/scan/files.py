"""Identify files by content and scan each with the right reader.

Example:
    >>> import pathlib, pickle, tempfile
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "weights.txt").write_bytes(pickle.dumps([1, 2, 3]))
    >>> [(r.file, r.kind, r.verdict) for r in scan_path(d)]
    [('weights.txt', 'pickle', 'safe')]

What a file is called never decides how it is read: the first bytes do. A
compressed stream is decompressed (within the size and ratio limits) and its
content identified again; archives are checked and their members scanned the
same way, to a bounded depth. Text that is not a pickle is accepted as text;
anything else the scanner does not recognise is unsafe (fail closed).
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from chainproof.errors import InputError
from chainproof.scan import archives, numpy_files, skops_files
from chainproof.scan._stream import ScanAbort, _Stream
from chainproof.scan.allowlist import Allowlist
from chainproof.scan.pickles import (
    FORK_WINDOW,
    IMPORT_OPCODES,
    _Global,
    looks_importable,
    scan_pickle,
)
from chainproof.scan.report import Finding, ScanLimits, ScanReport
from chainproof.scan.tabular import scan_csv

__all__ = ["scan_bytes", "scan_file", "scan_path"]

_ZLIB_HEADERS = (b"\x78\x01", b"\x78\x5e", b"\x78\x9c", b"\x78\xda")
_LZ4_MAGIC = b"\x04\x22\x4d\x18"
#: torch.save's legacy format starts with a pickle of this number (torch/serialization.py MAGIC_NUMBER).
_TORCH_MAGIC = 0x1950A86A20F9469CFC6C
#: Bytes per element of each storage type the legacy format writes.
_TORCH_ELEMENT = {
    "FloatStorage": 4, "DoubleStorage": 8, "HalfStorage": 2, "BFloat16Storage": 2, "LongStorage": 8,
    "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1, "ByteStorage": 1, "BoolStorage": 1,
}
#: A text file's walk as a pickle may stop this many opcodes in (besides GLOBALs of unimportable names).
_TEXT_OPCODES = 2


def scan_path(
    path: str | os.PathLike[str],
    *,
    allowlist: Allowlist | None = None,
    limits: ScanLimits = ScanLimits(),
) -> list[ScanReport]:
    """Scan a file, or every file under a folder, by content.

    Args:
        path: a file or a folder. Symbolic links under a folder are reported,
            never followed.
        allowlist: the exact globals pickles may name (default: the shipped list).
        limits: the limits of the scan.

    Returns:
        One report per file, named relative to ``path`` (a file: its name).

    Raises:
        InputError: ``path`` does not exist, or a folder holds more files than
            ``limits.max_files``.
    """
    root = Path(path)
    allowlist = allowlist or Allowlist.default()
    if root.is_file():
        return [scan_file(root, name=root.name, allowlist=allowlist, limits=limits)]
    if not root.is_dir():
        raise InputError(f"{root}: no such file or folder")
    reports: list[ScanReport] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for entry in sorted(filenames) + [d for d in dirnames if (Path(dirpath) / d).is_symlink()]:
            full = Path(dirpath) / entry
            rel = full.relative_to(root).as_posix()
            if len(reports) >= limits.max_files:
                raise InputError(f"{root}: more than {limits.max_files} files (the limit)")
            if full.is_symlink():
                reports.append(
                    ScanReport(rel, "symlink", [Finding(rel, None, os.readlink(full), "symbolic link (not followed)")])
                )
            elif full.is_file():
                reports.append(scan_file(full, name=rel, allowlist=allowlist, limits=limits))
            else:
                reports.append(ScanReport(rel, "special", [Finding(rel, None, rel, "not a regular file")]))
    return reports


def scan_file(
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    allowlist: Allowlist | None = None,
    limits: ScanLimits = ScanLimits(),
) -> ScanReport:
    """Scan one file by content.

    Args:
        path: the file.
        name: the name findings use (default: the file name).
        allowlist: the exact globals pickles may name (default: the shipped list).
        limits: the limits of the scan.

    Returns:
        The report.
    """
    p = Path(path)
    label = name or p.name
    scanner = _Scanner(allowlist or Allowlist.default(), limits)
    with open(p, "rb") as fh:
        kind = scanner.scan_top(fh, label=label, path=p)
    return scanner.report(label, kind)


def scan_bytes(
    data: bytes,
    *,
    name: str,
    allowlist: Allowlist | None = None,
    limits: ScanLimits = ScanLimits(),
) -> ScanReport:
    """Scan bytes already in memory by content.

    Args:
        data: the bytes.
        name: the name findings use.
        allowlist: the exact globals pickles may name (default: the shipped list).
        limits: the limits of the scan.

    Returns:
        The report.
    """
    scanner = _Scanner(allowlist or Allowlist.default(), limits)
    kind = scanner.scan_top(io.BytesIO(data), label=name, path=None)
    return scanner.report(name, kind)


@dataclass
class _Scanner:
    """One scan of one top-level file: its findings, facts and budgets."""

    allowlist: Allowlist
    limits: ScanLimits
    findings: list[Finding] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def report(self, label: str, kind: str) -> ScanReport:
        self.facts.setdefault("allowlist", self.allowlist.describe())
        return ScanReport(file=label, kind=kind, findings=self.findings, facts=self.facts)

    def scan_top(self, fh: BinaryIO, *, label: str, path: Path | None) -> str:
        stream = _Stream(fh, label=label, max_bytes=self.limits.max_file_bytes, max_line=self.limits.max_line_bytes)
        try:
            kind = self.scan_stream(stream, label, 0, label, self.facts, seekable=fh, csv_path=path)
        except ScanAbort as exc:
            self.findings.append(exc.finding)
            kind = "unknown"
        except (Exception, RecursionError, MemoryError) as exc:  # noqa: BLE001 - fail closed, with a verdict
            # A reader the scanner relies on failed in a way no check above names: the
            # file is unsafe (never an error of the scan), and the finding says where.
            self.findings.append(
                Finding(label, stream.pos, "scanner", f"cannot be scanned ({type(exc).__name__}: {str(exc)[:120]})")
            )
            kind = "unknown"
        # A file that is also a zip (its directory at the end) loads as a zip
        # wherever a loader checks for one first (torch.load does).
        if kind not in ("zip", "npz", "skops", "pytorch") and not kind.startswith("tar"):
            fh.seek(0)
            try:
                polyglot = zipfile.is_zipfile(fh)
            except OSError:
                polyglot = False
            if polyglot:
                self.findings.append(Finding(label, None, "zip", f"a {kind} that is also a zip archive (polyglot)"))
        return kind

    def scan_stream(
        self,
        stream: _Stream,
        label: str,
        depth: int,
        name: str,
        facts: dict[str, Any],
        *,
        seekable: BinaryIO | None = None,
        csv_path: Path | None = None,
    ) -> str:
        """Identify one stream by its first bytes and scan it; return its kind."""
        limits = self.limits
        if depth > limits.max_depth:
            self.findings.append(Finding(label, None, "depth", f"nested deeper than {limits.max_depth} containers"))
            return "nested"
        head = stream.peek(512)
        if not head:
            return "empty"
        if head[0] == 0x80:
            return self._pickle(stream, label, facts)
        container = _container_kind(head)
        if container is None:
            return self._other(stream, label, name, facts, csv_path)
        # What the content is decides, never the extension; and byte 0 of every file
        # is also read as a pickle, since pickle.load and joblib.load would read it so.
        self._probe_as_pickle(stream, label, container)
        if container == "zip":
            return self._zip(stream, label, depth, facts, seekable)
        if container == "npy":
            def rest(inner: _Stream) -> None:
                result = scan_pickle(inner, label=label, allowlist=self.allowlist, limits=self.limits, joblib=False)
                self.findings.extend(result.findings)
                facts["globals"] = sorted(result.globals)

            return numpy_files.scan_npy(stream, label=label, findings=self.findings, facts=facts, scan_pickle=rest)
        if container == "tar":
            return archives.scan_tar(
                stream, label=label, depth=depth, limits=limits, findings=self.findings,
                scan_member=self._member, facts=facts,
            )
        if container == "joblib-legacy":
            self.findings.append(Finding(label, 0, "ZF", "legacy joblib (< 0.9.3) compressed format is not supported"))
            return "joblib-legacy"
        if container == "safetensors":
            return self._safetensors(stream, label, facts)
        return self._compressed(stream, label, depth, name, facts, container)

    def _probe_as_pickle(self, stream: _Stream, label: str, kind: str) -> None:
        """Read the first bytes of a container as a pickle: a polyglot is refused."""
        window = stream.peek(FORK_WINDOW)
        sub = _Stream(io.BytesIO(window), label=label, max_bytes=len(window) + 1, max_line=self.limits.max_line_bytes)
        result = scan_pickle(sub, label=label, allowlist=self.allowlist, limits=self.limits, expect_eof=False, probe=True)
        if result.complete:
            self.findings.append(
                Finding(label, 0, "polyglot", f"a {kind} whose first {result.end} bytes are also a complete pickle (pickle.load reads them)")
            )
            self.findings.extend(result.findings)
            return
        if result.stop == "refused":
            self.findings.extend(result.findings)
            return
        if len(window) == FORK_WINDOW and sub.at_eof():
            self.findings.append(
                Finding(label, 0, "polyglot", f"the first {FORK_WINDOW} bytes of this {kind} parse as a pickle")
            )
            return
        # Before the point where every loader stops, whatever would be imported or called counts.
        self.findings.extend(_importing(result.findings, result.modules))

    def _member(self, stream: _Stream, label: str, depth: int, name: str) -> str:
        sub: dict[str, Any] = {}
        return self.scan_stream(stream, label, depth, name, sub)

    # -- pickles ----------------------------------------------------------

    def _pickle(self, stream: _Stream, label: str, facts: dict[str, Any], *, persid_check: Any = None) -> str:
        result = scan_pickle(
            stream, label=label, allowlist=self.allowlist, limits=self.limits, persid_check=persid_check, expect_eof=False
        )
        self.findings.extend(result.findings)
        if result.complete and not stream.at_eof():
            if result.value == _TORCH_MAGIC and not result.findings:
                return self._torch_legacy(stream, label, facts)
            self.findings.append(
                Finding(label, stream.pos, "STOP", "bytes after the end of the pickle (a second payload or another format)")
            )
        facts.update(
            {"protocol": result.protocol, "globals": sorted(result.globals), "inline_arrays": result.inline_arrays}
        )
        joblib_file = result.inline_arrays or result.inline_pickles or any(
            g.startswith("joblib.") for g in result.globals
        )
        return "joblib" if joblib_file else "pickle"

    def _torch_legacy(self, stream: _Stream, label: str, facts: dict[str, Any]) -> str:
        """The legacy ``torch.save`` format: pickles of the magic number, the protocol version,
        the system info, the object (storages as persistent ids) and the storage keys, then each
        storage's raw bytes (an 8-byte element count, then the elements)."""
        storages: dict[str, str] = {}

        def check(pid: Any) -> str | None:
            # torch.save (legacy) writes ('storage', StorageType, key, location, numel, view_metadata).
            if not isinstance(pid, tuple) or len(pid) != 6 or pid[0] != "storage":
                return "persistent id is not a PyTorch storage reference"
            storage_type, key = pid[1], pid[2]
            if not isinstance(storage_type, _Global) or storage_type.module != "torch" or storage_type.name not in _TORCH_ELEMENT:
                return "storage type is not a torch storage class"
            if not isinstance(key, str) or not isinstance(pid[3], str):
                return "storage key or location is not a string"
            if storages.setdefault(key, storage_type.name) != storage_type.name:
                return f"storage {key!r} is declared with two types"
            return None

        parts: list[tuple[str, Any]] = [("protocol version", None), ("system info", None), ("object", check), ("storage keys", None)]
        results = []
        for _what, persid in parts:
            r = scan_pickle(
                stream, label=label, allowlist=self.allowlist, limits=self.limits, joblib=False,
                persid_check=persid, expect_eof=False,
            )
            self.findings.extend(r.findings)
            results.append(r)
            if not r.complete:
                return "pytorch-legacy"
        if results[0].value != 1001:
            self.findings.append(Finding(label, None, "protocol", f"PyTorch legacy protocol version is not 1001 ({results[0].value!r})"))
            return "pytorch-legacy"
        keys = results[3].value
        if not isinstance(keys, list) or set(keys) != set(storages):
            self.findings.append(Finding(label, stream.pos, "storages", "storage keys do not match the storages the object references"))
            return "pytorch-legacy"
        for key in keys:
            at = stream.pos
            count = stream.read(8)
            n = int.from_bytes(count, "little") * _TORCH_ELEMENT[storages[key]]
            if len(count) < 8 or n > self.limits.max_decompressed_bytes or stream.skip(n) != n:
                self.findings.append(Finding(label, at, "storage", f"storage {key!r} is truncated"))
                return "pytorch-legacy"
        if not stream.at_eof():
            self.findings.append(Finding(label, stream.pos, "storage", "bytes after the last storage (a second payload)"))
        facts["globals"] = sorted(set().union(*(r.globals for r in results)))
        return "pytorch-legacy"

    def _other(
        self, stream: _Stream, label: str, name: str, facts: dict[str, Any], csv_path: Path | None
    ) -> str:
        # Protocol 0 and 1 pickles have no magic: walk the stream as a pickle. It is
        # text only when the walk stops where every unpickler stops, within its first
        # opcodes, without having named anything importable or called anything.
        probe = stream.peek(self.limits.max_text_probe_bytes)
        text = b"\x00" not in probe and _utf8_prefix(probe)
        result = scan_pickle(stream, label=label, allowlist=self.allowlist, limits=self.limits, expect_eof=True)
        if result.complete or result.stop == "refused":
            self.findings.extend(result.findings)
            facts.update({"protocol": result.protocol, "globals": sorted(result.globals)})
            return "pickle"
        # A persistent id only matters to a loader that reads the pickle to its end.
        importing = [f for f in _importing(result.findings, result.modules) if f is not result.stop_finding and f.what not in ("PERSID", "BINPERSID")]
        if importing:
            self.findings.extend(importing)
            self.findings.append(
                Finding(label, result.end, "pickle", "names a global before failing to parse: a loader would import it")
            )
            facts["globals"] = sorted(result.globals)
            return "pickle"
        stop = result.stop_finding
        # Rows of a CSV that start with "c" are read as GLOBALs of modules no installation has:
        # those import nothing and do not make the text a pickle.
        if text and result.opcodes - result.unimportable <= _TEXT_OPCODES:
            if csv_path is not None and name.lower().endswith((".csv", ".tsv")):
                report = scan_csv(csv_path, name=label)
                self.findings.extend(report.findings)
                facts.update(report.facts)
                return "csv"
            return "text"
        if result.opcodes == 0 or stop is None:
            self.findings.append(Finding(label, 0, "format", "unrecognised binary format: cannot be scanned"))
            return "unknown"
        self.findings.append(
            Finding(
                label, stop.offset, stop.what,
                f"starts like a pickle ({result.opcodes} opcodes) and cannot be walked to STOP: {stop.reason}",
            )
        )
        return "pickle"

    # -- containers ---------------------------------------------------------

    def _zip(self, stream: _Stream, label: str, depth: int, facts: dict[str, Any], seekable: BinaryIO | None) -> str:
        if seekable is None or stream.pos != 0:
            # A zip needs random access: a nested one is read into memory, bounded.
            data = stream.read(self.limits.max_in_memory_bytes + 1)
            if len(data) > self.limits.max_in_memory_bytes:
                self.findings.append(
                    Finding(label, None, "zip", f"nested zip larger than {self.limits.max_in_memory_bytes} bytes")
                )
                return "zip"
            fileobj: BinaryIO = io.BytesIO(data)
        else:
            fileobj = seekable
            fileobj.seek(0)
        kind = archives.scan_zip(
            fileobj, label=label, depth=depth, limits=self.limits, findings=self.findings,
            scan_member=self._member, facts=facts,
        )
        if kind == "skops":
            fileobj.seek(0)
            data = fileobj.read(self.limits.max_in_memory_bytes + 1)
            skops_files.check_skops(data, label=label, allowlist=self.allowlist, findings=self.findings, facts=facts)
        elif kind == "pytorch":
            fileobj.seek(0)
            try:
                self._torch(fileobj, label, facts)
            except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, KeyError) as exc:
                self.findings.append(Finding(label, None, "pytorch", f"unreadable PyTorch archive ({exc})"))
        return kind

    def _torch(self, fileobj: BinaryIO, label: str, facts: dict[str, Any]) -> None:
        # data.pkl is scanned here, with PyTorch's persistent ids accepted; the
        # generic member scan above refused them.
        with zipfile.ZipFile(fileobj) as archive:
            prefix = facts["pytorch_prefix"]
            storages = {n[len(prefix) + 6 :] for n in archive.namelist() if n.startswith(f"{prefix}/data/")}
            member = f"{label}!{prefix}/data.pkl"
            self.findings[:] = [
                f for f in self.findings if not (f.file == member and f.what in ("PERSID", "BINPERSID"))
            ]
            with archive.open(f"{prefix}/data.pkl") as raw:
                stream = _Stream(raw, label=member, max_bytes=self.limits.max_file_bytes, max_line=self.limits.max_line_bytes)
                check = _torch_persid(storages, self.allowlist)
                result = scan_pickle(
                    stream, label=member, allowlist=self.allowlist, limits=self.limits, joblib=False, persid_check=check
                )
            self.findings[:] = [f for f in self.findings if f.file != member]
            self.findings.extend(result.findings)
            facts["globals"] = sorted(result.globals)

    def _compressed(self, stream: _Stream, label: str, depth: int, name: str, facts: dict[str, Any], codec: str) -> str:
        inner_label = f"{label}|{codec}"
        raw: Any
        if codec == "gzip":
            raw = gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[call-overload]  # _Stream reads like a file
        elif codec == "bz2":
            raw = bz2.BZ2File(stream, mode="rb")  # type: ignore[call-overload]
        elif codec == "xz":
            raw = lzma.LZMAFile(stream, mode="rb", format=lzma.FORMAT_XZ)  # type: ignore[arg-type]  # noqa: SIM115 - read on below
        elif codec == "lzma":
            raw = lzma.LZMAFile(stream, mode="rb", format=lzma.FORMAT_ALONE)  # type: ignore[arg-type]  # noqa: SIM115
        elif codec == "zlib":
            raw = _ZlibReader(stream)
        else:
            try:
                import lz4.frame
            except ImportError:
                self.findings.append(
                    Finding(label, 0, "lz4", "lz4-compressed, and the lz4 package is not installed: cannot be scanned")
                )
                return "lz4"
            raw = lz4.frame.LZ4FrameFile(stream, mode="rb")
        guard = archives._Guard(raw, compressed=lambda: stream.pos, limits=self.limits, label=inner_label)
        inner = _Stream(
            guard, label=inner_label, max_bytes=self.limits.max_decompressed_bytes, max_line=self.limits.max_line_bytes,
            what="decompressed size",
        )
        sub: dict[str, Any] = {}
        try:
            kind = self.scan_stream(inner, inner_label, depth + 1, name, sub)
        except ScanAbort:
            raise
        except (OSError, EOFError, ValueError, RuntimeError, lzma.LZMAError, zlib.error) as exc:
            self.findings.append(Finding(inner_label, inner.pos, codec, f"cannot decompress ({exc})"))
            kind = "unknown"
        facts.update(sub)
        facts["compression"] = codec
        return f"{kind}+{codec}"

    def _safetensors(self, stream: _Stream, label: str, facts: dict[str, Any]) -> str:
        size = int.from_bytes(stream.read(8), "little")
        try:
            header = json.loads(stream.read(size))
        except (ValueError, RecursionError) as exc:
            self.findings.append(Finding(label, 8, "header", f"malformed safetensors header ({exc})"))
            return "safetensors"
        if not isinstance(header, dict):
            self.findings.append(Finding(label, 8, "header", "safetensors header is not an object"))
        facts["tensors"] = len([k for k in header if k != "__metadata__"]) if isinstance(header, dict) else 0
        return "safetensors"


def _is_global_finding(f: Finding) -> bool:
    return f.reason.split(":")[0] in IMPORT_OPCODES and "not in the allowlist" in f.reason


def _importing(findings: list[Finding], modules: dict[str, str]) -> list[Finding]:
    # Names no module could have (a line of a CSV read as GLOBAL) import nothing.
    return [f for f in findings if not _is_global_finding(f) or looks_importable(modules.get(f.what, f.what))]


def _container_kind(head: bytes) -> str | None:
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    codec = _codec(head)
    if codec is not None:
        return codec
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    if head.startswith(b"ZF"):
        return "joblib-legacy"
    if _looks_safetensors(head):
        return "safetensors"
    return None


def _codec(head: bytes) -> str | None:
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"BZh"):
        return "bz2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head.startswith(b"\x5d\x00\x00"):
        return "lzma"
    if head[:2] in _ZLIB_HEADERS:
        return "zlib"
    if head.startswith(_LZ4_MAGIC):
        return "lz4"
    return None


def _looks_safetensors(head: bytes) -> bool:
    if len(head) < 10:
        return False
    size = int.from_bytes(head[:8], "little")
    return 2 <= size <= 100_000_000 and head[8:9] == b"{"


def _utf8_prefix(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A probe may cut a character in two: only its last 3 bytes may fail.
        return exc.start >= len(data) - 3 and exc.reason == "unexpected end of data"
    return True


class _ZlibReader:
    """A streaming reader of a zlib stream (joblib's ``compress='zlib'``)."""

    def __init__(self, raw: _Stream) -> None:
        self.raw = raw
        self.dec = zlib.decompressobj()
        self.done = False

    def read(self, n: int = -1) -> bytes:
        out = b""
        want = n if n > 0 else 1 << 20
        while len(out) < want and not self.done:
            if self.dec.unconsumed_tail:
                out += self.dec.decompress(self.dec.unconsumed_tail, want - len(out))
                continue
            chunk = self.raw.read(1 << 16)
            if not chunk:
                if not self.dec.eof:
                    raise EOFError("zlib stream ends early")
                self.done = True
                break
            out += self.dec.decompress(chunk, want - len(out))
            if self.dec.eof:
                self.done = True
        return out


def _torch_persid(storages: set[str], allowlist: Allowlist) -> Any:
    def check(pid: Any) -> str | None:
        # torch.save writes ('storage', StorageType, key, location, numel).
        if not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != "storage":
            return "persistent id is not a PyTorch storage reference"
        storage_type, key, location = pid[1], pid[2], pid[3]
        if not isinstance(storage_type, _Global):
            return "storage type is not a global"
        if not isinstance(key, str) or key not in storages:
            return f"storage {key!r} is not a member of the archive"
        if not isinstance(location, str):
            return "storage location is not a string"
        return None

    return check
