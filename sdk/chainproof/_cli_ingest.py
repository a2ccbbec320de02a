"""``chainproof ingest SOURCE -o DIR``: a model or dataset released only once its pin or publisher verifies.

Example:
    $ chainproof ingest ./bert/ -o released --publisher-identity stefanb@us.ibm.com \\
          --publisher-issuer https://sigstore.verify.ibm.com/oauth2 --ignore ignore-me
    $ chainproof ingest ./bert/ -o released --publisher-certificate signing-key-cert.pem --publisher-ca ca-cert.pem
    $ chainproof ingest model.bin -o released --publisher-key pub.pem --signature model.sig
    $ chainproof ingest gs://bucket/data/train.csv -o data --sha256 HEX

Exit 0: verified, scanned and released into DIR; 1: refused (nothing written); 2: usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from chainproof.errors import InputError

__all__ = ["add_parser", "add_publisher_arguments", "publisher_policy"]


def _read(path: str, flag: str) -> str:
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{flag} {path}: cannot read ({getattr(exc, 'strerror', None) or type(exc).__name__})") from exc


def publisher_policy(args: argparse.Namespace) -> Any:
    """The :class:`chainproof.publisher.PublisherPolicy` the ``--publisher-*`` flags ask for, or None.

    Raises:
        InputError: two kinds of publisher at once, half of a pair, or ``--ignore`` / ``--signature``
            without a publisher.
    """
    from chainproof.publisher import PublisherPolicy

    ignore = tuple(getattr(args, "ignore", None) or ())
    chosen = [name for name, given in (
        ("--publisher-key", args.publisher_key),
        ("--publisher-certificate", args.publisher_certificate or args.publisher_ca),
        ("--publisher-identity", args.publisher_identity or args.publisher_issuer),
    ) if given]
    if len(chosen) > 1:
        raise InputError(f"{' and '.join(chosen)}: choose one kind of publisher signature")
    if args.publisher_key:
        return PublisherPolicy.key(_read(args.publisher_key, "--publisher-key"), ignore=ignore)
    if args.publisher_certificate or args.publisher_ca:
        if not args.publisher_certificate or not args.publisher_ca:
            raise InputError("--publisher-certificate PEM and --publisher-ca PEM go together (the CA is what is trusted)")
        return PublisherPolicy.certificate(
            _read(args.publisher_certificate, "--publisher-certificate"),
            [_read(p, "--publisher-ca") for p in args.publisher_ca], ignore=ignore)
    if args.publisher_identity or args.publisher_issuer:
        if not args.publisher_identity or not args.publisher_issuer:
            raise InputError("--publisher-identity ID and --publisher-issuer URL go together")
        return PublisherPolicy.sigstore(identity=args.publisher_identity, issuer=args.publisher_issuer, ignore=ignore)
    if ignore:
        raise InputError("--ignore goes with a publisher signature (a --sha256 pin covers every file)")
    if args.signature:
        raise InputError("--signature goes with a publisher (--publisher-key, --publisher-certificate, --publisher-identity)")
    return None


def _cmd_ingest(args: argparse.Namespace) -> int:
    from chainproof.publisher import ingest

    policy = publisher_policy(args)
    record = ingest(args.source, Path(args.output), sha256=args.sha256 or None, publisher=policy,
                    signature=args.signature or "")
    if args.format == "json":
        sys.stdout.write(json.dumps(record, sort_keys=True) + "\n")
        return 0
    who = record.get("publisher") or {}
    by = ""
    if who:
        by = {"key": f" signed by key sha256:{str(who.get('public_key_sha256', ''))[:16]}",
              "certificate": f" signed by certificate {who.get('certificate_subject')} (issuer {who.get('certificate_issuer')})",
              "sigstore": f" signed by {who.get('identity')} (issuer {who.get('issuer')}, Sigstore, verified offline)",
              }[who["kind"]]
        if who.get("ignored"):
            by += f"; left out, not signed: {', '.join(who['ignored'])}"
    print(f"OK: released {len(record['files'])} files into {record['released']}{by}; scan {record['scan']['verdict']}")
    return 0


def add_publisher_arguments(p: Any, *, signature_help: str) -> None:
    """Add the ``--publisher-*`` flags and ``--signature`` (read back by :func:`publisher_policy`).

    Args:
        p: an argparse parser.
        signature_help: what ``--signature`` means for this command.
    """
    p.add_argument("--publisher-key", metavar="PEM", help="the publisher's EC public key")
    p.add_argument("--publisher-certificate", metavar="PEM", help="the publisher's signing certificate")
    p.add_argument("--publisher-ca", metavar="PEM", action="append", help="a CA trusted to issue it (repeatable)")
    p.add_argument("--publisher-identity", metavar="ID", help="the expected Sigstore identity (email, URI)")
    p.add_argument("--publisher-issuer", metavar="URL", help="the expected OIDC issuer of that identity")
    p.add_argument("--signature", metavar="URI", help=signature_help)


def add_parser(sub: Any) -> None:
    """Register ``ingest`` on the top-level subparsers.

    Args:
        sub: the top-level ``add_subparsers`` object.
    """
    p = sub.add_parser("ingest", help="fetch a model or dataset, verify its pin or publisher signature, scan it, release it")
    p.add_argument("source", help="a file or folder (path, file://, gs://, https://, s3://; a folder URI ends in /)")
    p.add_argument("-o", "--output", required=True, help="the folder to release into (must not exist or be empty)")
    p.add_argument("--sha256", help="the pinned SHA-256 (of a file, or of a folder's manifest)")
    add_publisher_arguments(p, signature_help="the model.sig (default: model.sig inside a folder source)")
    p.add_argument("--ignore", metavar="NAME", action="append", help="a file the signature does not cover: left out, recorded")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=_cmd_ingest)
