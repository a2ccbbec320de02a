"""Check zip and tar archives member by member, in memory, never extracting to disk.

Example:
    >>> import io, zipfile
    >>> from chainproof.scan import scan_bytes
    >>> buf = io.BytesIO()
    >>> with zipfile.ZipFile(buf, "w") as z:
    ...     z.writestr("../evil.txt", "x")
    >>> [f.reason for f in scan_bytes(buf.getvalue(), name="a.zip").findings]
    ['path traversal: the name climbs out of the archive']

Refused: names that climb out (``..``) or are absolute, symbolic and hard
links, devices, duplicate names (also after normalising separators), encrypted
members, more members than the limit, and members that expand past the size or
ratio limits (counted on the bytes actually read, not the sizes the archive
declares). A zip is read two ways by different tools (its central directory,
or its local headers in order), so the two must agree: every local header has
the name, method, flags, CRC and sizes its directory entry says, members tile
the file from byte 0 to the central directory with no gap or overlap. Every
regular member is scanned by content, recursively, to a bounded depth.
"""

from __future__ import annotations

import stat
import struct
import tarfile
import zipfile
from collections.abc import Callable
from typing import Any, BinaryIO

from chainproof.scan._stream import ScanAbort, _Stream
from chainproof.scan.report import Finding, ScanLimits

__all__ = ["check_member_name", "scan_tar", "scan_zip"]

# (stream, label, depth, member name) -> kind; provided by the scanner's core.
ScanMember = Callable[[_Stream, str, int, str], str]


def check_member_name(name: str) -> str | None:
    """Return why an archive member's name is refused, or None if it is acceptable.

    Args:
        name: the member's name as the archive stores it.

    Returns:
        The reason, or None.
    """
    if "\x00" in name:
        return "NUL byte in the name"
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":"):
        return "absolute path"
    if ".." in norm.split("/"):
        return "path traversal: the name climbs out of the archive"
    return None


class _Guard:
    """A raw reader that refuses to expand past a ratio of the compressed bytes."""

    def __init__(self, raw: Any, *, compressed: Callable[[], int], limits: ScanLimits, label: str) -> None:
        self.raw = raw
        self.compressed = compressed
        self.limits = limits
        self.label = label
        self.out = 0

    def read(self, n: int = -1) -> bytes:
        data: bytes = self.raw.read(n)
        self.out += len(data)
        if self.out > self.limits.ratio_floor_bytes:
            ratio = self.out / max(1, self.compressed())
            if ratio > self.limits.max_ratio:
                raise ScanAbort(
                    Finding(
                        self.label,
                        self.out,
                        "ratio",
                        f"expands more than {self.limits.max_ratio}:1 (a decompression bomb)",
                    )
                )
        return data


def scan_zip(
    fileobj: BinaryIO,
    *,
    label: str,
    depth: int,
    limits: ScanLimits,
    findings: list[Finding],
    scan_member: ScanMember,
    facts: dict[str, Any],
) -> str:
    """Check a zip archive and scan each member.

    Args:
        fileobj: the archive (seekable).
        label: the name findings use.
        depth: the nesting depth of this archive.
        limits: the limits of the scan.
        findings: where findings go.
        scan_member: scans one member's stream by content.
        facts: where facts go (members and their kinds).

    Returns:
        The kind: ``skops``, ``pytorch``, ``npz`` or ``zip``.
    """
    try:
        archive = zipfile.ZipFile(fileobj)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        findings.append(Finding(label, None, "zip", f"malformed zip ({exc})"))
        return "zip"
    with archive:
        infos = archive.infolist()
        facts["members"] = len(infos)
        if len(infos) > limits.max_members:
            findings.append(Finding(label, None, "members", f"{len(infos)} members exceed the limit of {limits.max_members}"))
            return "zip"
        names = [i.filename for i in infos]
        layout = _check_layout(fileobj, archive, infos, label)
        if layout:
            findings.extend(layout)
            return "zip"
        normalized: dict[str, str] = {}
        for n in names:
            key = _normal(n)
            if key in normalized and normalized[key] != n:
                findings.append(
                    Finding(f"{label}!{n}", None, n, f"duplicate name: {normalized[key]!r} and {n!r} are the same path")
                )
            normalized.setdefault(key, n)
        kind = _zip_kind(names)
        torch_prefix = _torch_prefix(names) if kind == "pytorch" else None
        declared = 0
        seen: set[str] = set()
        kinds: dict[str, str] = {}
        for info in infos:
            member = f"{label}!{info.filename}"
            reason = check_member_name(info.filename)
            if reason:
                findings.append(Finding(member, info.header_offset, info.filename, reason))
                continue
            if info.filename in seen:
                findings.append(
                    Finding(member, info.header_offset, info.filename, "duplicate name: two members claim this path")
                )
                continue
            seen.add(info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                findings.append(Finding(member, info.header_offset, info.filename, "symbolic link"))
                continue
            if info.flag_bits & 0x1:
                findings.append(Finding(member, info.header_offset, info.filename, "encrypted member cannot be scanned"))
                continue
            if info.is_dir():
                continue
            if info.file_size > limits.ratio_floor_bytes and info.file_size > limits.max_ratio * max(1, info.compress_size):
                findings.append(
                    Finding(member, info.header_offset, "ratio", f"declares more than {limits.max_ratio}:1 expansion (a decompression bomb)")
                )
                continue
            declared += info.file_size
            if declared > limits.max_decompressed_bytes:
                findings.append(
                    Finding(member, info.header_offset, "size", f"members expand past {limits.max_decompressed_bytes} bytes")
                )
                return kind
            if torch_prefix is not None and info.filename.startswith(f"{torch_prefix}/data/"):
                # PyTorch reads these as raw tensor bytes, never unpickles them.
                kinds[info.filename] = "tensor-data"
                continue
            try:
                with archive.open(info) as raw:
                    guard = _Guard(raw, compressed=lambda i=info: i.compress_size, limits=limits, label=member)  # type: ignore[misc]
                    stream = _Stream(guard, label=member, max_bytes=limits.max_file_bytes, max_line=limits.max_line_bytes)
                    kinds[info.filename] = scan_member(stream, member, depth + 1, info.filename)
            except ScanAbort as exc:
                findings.append(exc.finding)
            except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
                findings.append(Finding(member, info.header_offset, info.filename, f"unreadable member ({exc})"))
        facts["kinds"] = kinds
        if torch_prefix is not None:
            facts["pytorch_prefix"] = torch_prefix
        return kind


def _normal(name: str) -> str:
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    return "/".join(parts)


_LOCAL = struct.Struct("<4sHHHHHIIIHH")


def _zip64_sizes(extra: bytes) -> tuple[int, int] | None:
    # The zip64 extra field (id 1) of a local header: uncompressed, then compressed size.
    i = 0
    while i + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, i)
        if tag == 1 and size >= 16:
            return struct.unpack_from("<QQ", extra, i + 4)
        i += 4 + size
    return None


def _check_layout(fileobj: BinaryIO, archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo], label: str) -> list[Finding]:
    """Check that the central directory and the local headers describe the same members."""
    out: list[Finding] = []
    spans: list[tuple[int, int, str]] = []
    fileobj.seek(0, 2)
    size = fileobj.tell()
    for info in infos:
        member = f"{label}!{info.filename}"
        fileobj.seek(info.header_offset)
        head = fileobj.read(_LOCAL.size)
        if len(head) < _LOCAL.size or head[:4] != b"PK\x03\x04":
            out.append(Finding(member, info.header_offset, info.filename, "central directory points where there is no local header"))
            continue
        _, _, flags, method, _, _, crc, csize, usize, nlen, elen = _LOCAL.unpack(head)
        name = fileobj.read(nlen)
        extra = fileobj.read(elen)
        want = info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437")
        problems = []
        if name != want:
            problems.append(f"name {name[:60]!r} in the local header")
        if method != info.compress_type:
            problems.append(f"compression {method} in the local header, {info.compress_type} in the directory")
        if (flags ^ info.flag_bits) & 0x9:
            problems.append("encryption or data-descriptor flags differ")
        if not flags & 0x8:
            if 0xFFFFFFFF in (csize, usize):
                z64 = _zip64_sizes(extra)
                if z64 is not None:
                    usize, csize = z64
            if (crc, csize, usize) != (info.CRC, info.compress_size, info.file_size):
                problems.append("CRC or sizes in the local header differ from the directory")
        start = info.header_offset + _LOCAL.size + nlen + elen
        end = start + info.compress_size
        if flags & 0x8 and not problems:
            end = _descriptor_end(fileobj, end, info)
            if end is None:
                problems.append("no data descriptor matching the directory after the data")
        if problems:
            out.append(Finding(member, info.header_offset, info.filename, "local header disagrees with the central directory: " + "; ".join(problems)))
            continue
        spans.append((info.header_offset, end, info.filename))
    if out:
        return out
    spans.sort()
    at = 0
    for begin, end, member_name in spans:
        if begin < at:
            out.append(Finding(f"{label}!{member_name}", begin, member_name, "members overlap (one byte range read as two members)"))
        elif begin > at:
            out.append(Finding(label, at, "zip", f"{begin - at} bytes between members that no directory entry describes"))
        at = max(at, end)
    start_dir = getattr(archive, "start_dir", None)
    if isinstance(start_dir, int) and start_dir > at and not out:
        out.append(Finding(label, at, "zip", f"{start_dir - at} bytes between the last member and the central directory"))
    elif isinstance(start_dir, int) and start_dir < at and not out:
        out.append(Finding(label, start_dir, "zip", "the central directory overlaps the last member"))
    if at > size:
        out.append(Finding(label, size, "zip", "members extend past the end of the file"))
    return out


def _descriptor_end(fileobj: BinaryIO, at: int, info: zipfile.ZipInfo) -> int | None:
    fileobj.seek(at)
    raw = fileobj.read(28)
    off = 4 if raw[:4] == b"PK\x07\x08" else 0
    if len(raw) < off + 12 or struct.unpack_from("<I", raw, off)[0] != info.CRC:
        return None
    if struct.unpack_from("<II", raw, off + 4) == (info.compress_size & 0xFFFFFFFF, info.file_size & 0xFFFFFFFF):
        if info.compress_size < 0xFFFFFFFF and info.file_size < 0xFFFFFFFF:
            return at + off + 12
    if len(raw) >= off + 20 and struct.unpack_from("<QQ", raw, off + 4) == (info.compress_size, info.file_size):
        return at + off + 20
    return None


def _zip_kind(names: list[str]) -> str:
    if "schema.json" in names:
        return "skops"
    if _torch_prefix(names) is not None:
        return "pytorch"
    if names and all(n.endswith(".npy") for n in names):
        return "npz"
    return "zip"


def _torch_prefix(names: list[str]) -> str | None:
    # torch.save writes <prefix>/data.pkl plus <prefix>/data/<key> raw storages.
    prefixes = {n[: -len("/data.pkl")] for n in names if n.endswith("/data.pkl") and n.count("/") == 1}
    return next(iter(prefixes)) if len(prefixes) == 1 else None


def scan_tar(
    stream: _Stream,
    *,
    label: str,
    depth: int,
    limits: ScanLimits,
    findings: list[Finding],
    scan_member: ScanMember,
    facts: dict[str, Any],
) -> str:
    """Check a tar archive, read as a stream, and scan each regular member.

    Args:
        stream: the (already decompressed) tar stream.
        label: the name findings use.
        depth: the nesting depth of this archive.
        limits: the limits of the scan.
        findings: where findings go.
        scan_member: scans one member's stream by content.
        facts: where facts go (members and their kinds).

    Returns:
        The kind, ``tar``.
    """
    seen: set[str] = set()
    kinds: dict[str, str] = {}
    count = 0
    declared = 0
    try:
        with tarfile.open(fileobj=stream, mode="r|") as archive:  # type: ignore[call-overload]
            for info in archive:
                count += 1
                member = f"{label}!{info.name}"
                if count > limits.max_members:
                    findings.append(Finding(label, None, "members", f"more than {limits.max_members} members (the limit)"))
                    break
                reason = check_member_name(info.name)
                if reason is None and (info.issym() or info.islnk()):
                    kind = "symbolic" if info.issym() else "hard"
                    reason = f"{kind} link to {info.linkname!r}"
                elif reason is None and not (info.isfile() or info.isdir()):
                    reason = "device, FIFO or other special file"
                elif reason is None and info.name in seen:
                    reason = "duplicate name: two members claim this path"
                if reason:
                    findings.append(Finding(member, info.offset, info.name, reason))
                    continue
                seen.add(info.name)
                if info.isdir():
                    continue
                declared += info.size
                if declared > limits.max_decompressed_bytes:
                    findings.append(Finding(member, info.offset, "size", f"members exceed {limits.max_decompressed_bytes} bytes"))
                    break
                raw = archive.extractfile(info)
                if raw is None:  # pragma: no cover - regular files always have data
                    continue
                inner = _Stream(raw, label=member, max_bytes=limits.max_file_bytes, max_line=limits.max_line_bytes)
                try:
                    kinds[info.name] = scan_member(inner, member, depth + 1, info.name)
                except ScanAbort as exc:
                    findings.append(exc.finding)
    except ScanAbort:
        raise
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        findings.append(Finding(label, stream.pos, "tar", f"malformed tar ({exc})"))
    facts["members"] = count
    facts["kinds"] = kinds
    return "tar"
