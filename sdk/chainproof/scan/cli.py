"""The ``chainproof scan`` subcommand.

Example:
    $ chainproof scan model/ --format json
    $ chainproof scan model.joblib --allowlist-extra extra-globals.json

Prints one ``FAIL: file@offset: global: reason`` line per finding (and one
``OK: file (kind)`` line per safe file) for people, or the reports as JSON (the
last line of stdout) with ``--format json``. Exit code 0 when every file is
safe, 1 when any is unsafe, 2 on a usage or input error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from chainproof.errors import InputError
from chainproof.scan.allowlist import Allowlist, load_extension_names
from chainproof.scan.files import scan_path
from chainproof.scan.report import summarize

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``scan`` to the ``chainproof`` command.

    Args:
        subparsers: the parent parser's subparsers.

    Returns:
        The new parser.
    """
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "scan", help="scan a file or folder by content (pickle, joblib, archives, numpy, skops), never loading it"
    )
    parser.add_argument("path", help="a local file or folder, or a gs://, https:// or s3:// URI")
    parser.add_argument(
        "--allowlist-extra",
        action="append",
        default=[],
        metavar="FILE",
        help="extra exact globals: a JSON list of 'module:qualname' (repeatable)",
    )
    parser.add_argument("--format", choices=["text", "json"], default="text")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Scan ``args.path`` and print the result.

    Args:
        args: the parsed arguments (``path``, ``allowlist_extra``, ``format``).

    Returns:
        0 when every file is safe, 1 otherwise.

    Raises:
        InputError: the path or an extension file is missing or malformed.
    """
    from urllib.parse import urlparse

    if urlparse(args.path).scheme in ("gs", "https", "s3"):
        # A remote object is scanned from a quarantine copy; its digest is reported,
        # not checked: scanning pins nothing, ingest does.
        import tempfile

        from chainproof.storage import fetch, fetch_tree, is_folder_uri

        with tempfile.TemporaryDirectory(prefix="chainproof-scan-") as tmp:
            if is_folder_uri(args.path):
                fetch_tree(args.path, dest_dir=Path(tmp) / "objects", expected_manifest_sha256=None, verify=lambda _: None)
                return _scan_and_print(Path(tmp) / "objects", args)
            got = fetch(args.path, dest_dir=Path(tmp), expected_sha256=None)
            return _scan_and_print(got.path, args)
    path = Path(args.path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    return _scan_and_print(path, args)


def _scan_and_print(path: Path, args: argparse.Namespace) -> int:
    """Scan a local file or folder and print the result."""
    allowlist = Allowlist.default()
    extra: list[str] = []
    for file in args.allowlist_extra:
        extra.extend(load_extension_names(file))
    if extra:
        allowlist = allowlist.extend(extra)
    reports = scan_path(path, allowlist=allowlist)
    summary = summarize(reports)
    if args.format == "json":
        doc = summary | {"path": str(getattr(args, "path", path)), "allowlist": allowlist.describe(), "reports": [r.to_dict() for r in reports]}
        sys.stdout.write(json.dumps(doc, sort_keys=True) + "\n")
    else:
        for report in reports:
            if report.findings:
                for finding in report.findings:
                    print(f"FAIL: {finding}")
            else:
                print(f"OK: {report.file} ({report.kind})")
        print(f"{summary['verdict']}: {summary['files']} files, {len(summary['unsafe'])} unsafe")
    return 0 if summary["verdict"] == "safe" else 1
