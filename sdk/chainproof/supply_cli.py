"""``chainproof sbom`` and ``chainproof vulns``: supply-chain evidence from the command line.

Example:
    $ chainproof sbom --signer file:keys/sign_and_attest.pem -o sbom.json
    $ chainproof sbom --lock image/requirements.lock --image REGISTRY/PATH@sha256:DIGEST \\
          --signer file:keys/sign_and_attest.pem -o sbom.json
    $ chainproof vulns --lock image/requirements.lock --image REGISTRY/PATH@sha256:DIGEST \\
          --advisories ../shared/data/pypa-advisory-database/vulns --signer file:keys/sign_and_attest.pem \\
          -o vulns.json --max-severity medium --max-database-age-days 30

Without ``--lock`` both describe the running Python environment (subject: the environment
digest); with ``--lock`` and ``--image`` they describe the image (subject: its digest).
``vulns`` prints one ``FOUND:`` line per advisory, then applies the policy options: exit 1
with one ``FAIL:`` line when it fails (an unchecked package always fails), 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from chainproof.errors import InputError

__all__ = ["add_parsers"]


def _bom(args: argparse.Namespace) -> dict[str, Any]:
    from chainproof.supply import environment_sbom, lock_sbom

    if args.image and not args.lock:
        raise InputError("--image needs --lock: the image is described by its lock file")
    return lock_sbom(args.lock) if args.lock else environment_sbom()


def _write(path: str, data: bytes) -> None:
    from chainproof.attest import write_atomic

    try:
        write_atomic(Path(path), data)
    except OSError as exc:
        raise InputError(f"{path}: cannot write ({exc.strerror})") from exc


def _cmd_sbom(args: argparse.Namespace) -> int:
    from chainproof.signing import load_signer
    from chainproof.supply import _subject, sbom_statement

    bom = _bom(args)
    name, digest = _subject(bom, args.image or "")
    _write(args.output, sbom_statement(bom, signer=load_signer(args.signer), image=args.image or ""))
    doc = {"statement": args.output, "subject": name, "sha256": digest, "components": len(bom.get("components") or [])}
    if args.format == "json":
        sys.stdout.write(json.dumps(doc, sort_keys=True) + "\n")
    else:
        print(f"OK: {args.output}: CycloneDX SBOM of {name} (sha256 {digest}), {doc['components']} components")
    return 0


def _cmd_vulns(args: argparse.Namespace) -> int:
    from chainproof.attest import load_statement
    from chainproof.signing import load_signer
    from chainproof.supply import (
        _subject,
        check_vulns_policy,
        load_advisories,
        scan_sbom,
        vulns_statement,
    )

    bom = _bom(args)
    subject = _subject(bom, args.image or "")
    scan = scan_sbom(bom, load_advisories(args.advisories))
    signer = load_signer(args.signer)
    envelope = vulns_statement(scan, signer=signer, subject=subject, database_date=args.database_date or "")
    _write(args.output, envelope)
    for f in scan.findings:
        print(f"FOUND: {f.package}=={f.version}: {f.advisory} ({f.severity}) fixed in {', '.join(f.fixed) or 'no release'}")
    for u in scan.unchecked:
        print(f"UNCHECKED: {u['name']}=={u['version'] or '?'}: {u['reason']}")
    statement = load_statement(envelope, key=signer.public_key, what=args.output)
    check_vulns_policy(
        statement, max_severity=args.max_severity, max_database_age_days=args.max_database_age_days,
        unknown_severity=args.unknown_severity, what=args.output,
    )
    summary = {"statement": args.output, "subject": subject[0], "sha256": subject[1], "checked": scan.checked,
               "findings": len(scan.findings), "database": scan.database.last_update}
    if args.format == "json":
        sys.stdout.write(json.dumps(summary, sort_keys=True) + "\n")
    else:
        print(f"OK: {args.output}: {scan.checked} packages checked, {len(scan.findings)} advisories, "
              f"database of {statement['predicate']['scanner']['db']['lastUpdate']}")
    return 0


def add_parsers(subparsers: Any) -> None:
    """Add ``sbom`` and ``vulns`` to the ``chainproof`` command.

    Args:
        subparsers: the parent parser's subparsers.
    """
    from chainproof.supply import SEVERITIES

    def common(parser: argparse.ArgumentParser, default_output: str) -> None:
        parser.add_argument("--lock", help="a pip lock file (image/requirements.lock); default: the running environment")
        parser.add_argument("--image", help="REGISTRY/PATH@sha256:DIGEST the lock was built into (the subject)")
        parser.add_argument("--signer", required=True, help="signer reference: file:PATH, gcpkms://..., sigstore:...")
        parser.add_argument("-o", "--output", default=default_output, help=f"the signed statement (default: {default_output})")
        parser.add_argument("--format", choices=["text", "json"], default="text")

    sbom = subparsers.add_parser("sbom", help="a signed CycloneDX SBOM of the environment or of an image's lock")
    common(sbom, "sbom.json")
    sbom.set_defaults(func=_cmd_sbom)

    vulns = subparsers.add_parser("vulns", help="scan an SBOM against an OSV advisory folder; signed vulns/v0.2 statement and policy")
    common(vulns, "vulns.json")
    vulns.add_argument("--advisories", required=True, help="an OSV advisory folder (e.g. pypa/advisory-database's vulns)")
    vulns.add_argument("--database-date", help="the database's date (RFC 3339), if newer than its newest advisory")
    vulns.add_argument("--max-severity", choices=SEVERITIES, help="fail on an advisory above this rating")
    vulns.add_argument("--max-database-age-days", type=int, help="fail when the database is older than this at scan time")
    vulns.add_argument("--unknown-severity", choices=SEVERITIES, default="critical",
                       help="how an advisory without severity ranks (default: critical)")
    vulns.set_defaults(func=_cmd_vulns)
