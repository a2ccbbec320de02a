"""CLI for serving: ``chainproof k8s manifests``, ``chainproof k8s check`` (hooked by ``cli.build_parser``)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from chainproof.errors import InputError, PolicyViolation

__all__ = ["add_parsers"]


class ManifestCheckFailed(PolicyViolation):
    """A manifest set violates the Pod Security Standards or the project's hardening rules."""

    exit_code = 1


def _cmd_k8s_manifests(args: argparse.Namespace) -> int:
    from chainproof.k8s.manifests import ManifestOptions, check_documents, dump, render_manifests

    opts = ManifestOptions(ref=args.ref, image=args.image, namespace=args.namespace,
                           model_source=args.model_source, model_sha256=args.model_sha256, egress_cidrs=tuple(args.egress_cidr or ()),
                           port=args.port)
    docs = render_manifests(opts)
    # The manifests command runs the project's own check on its output before writing it.
    findings = check_documents(docs, level="restricted", hardening=True)
    if findings:
        raise ManifestCheckFailed(f"generated manifests: expected none, found {len(findings)} weakening(s): "
                                  + "; ".join(map(str, findings)))
    text = dump(docs)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text)
        print(f"wrote {len(docs)} documents to {args.output} (Pod Security restricted: pass)", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _cmd_k8s_check(args: argparse.Namespace) -> int:
    from chainproof.k8s.manifests import check_documents, load_documents
    from chainproof.k8s.pss import parse_version

    try:
        version = parse_version(args.version)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    results: list[dict[str, Any]] = []
    total = 0
    for path in args.files:
        findings = check_documents(load_documents(path), level=args.level, version=version,
                                   hardening=args.hardening)
        total += len(findings)
        results.append({"file": path, "pass": not findings,
                        "violations": [{"document": f.document, "check": f.violation.check,
                                        "field": f.violation.field, "found": f.violation.found}
                                       for f in findings]})
        if args.format == "text":
            print(f"{'PASS' if not findings else 'FAIL'} {path} ({args.level}, {args.version})")
            for f in findings:
                print(f"  {f}")
    if args.format == "json":
        print(json.dumps({"level": args.level, "version": args.version, "pass": total == 0, "files": results},
                         indent=2))
    return 0 if total == 0 else 1


def add_parsers(sub: Any) -> None:
    """Add ``k8s`` (and its subcommands) to the top-level subparsers."""
    k8s = sub.add_parser("k8s", help="hardened Kubernetes manifests and an offline Pod Security Standards check")
    k8s_sub = k8s.add_subparsers(dest="k8s_command", required=True)
    man = k8s_sub.add_parser("manifests", help="write hardened manifests for serving a model (multi-document YAML)")
    man.add_argument("ref", help="the model's registry reference (local://NAME@VERSION) or bundle folder")
    man.add_argument("--image", required=True, help="the serving image, pinned: IMAGE@sha256:<digest>")
    man.add_argument("--namespace", default="chainproof-serving")
    man.add_argument("--model-source", help="s3://, gs:// or https:// URI the init container fetches the model from")
    man.add_argument("--model-sha256", help="the fetched model's pinned SHA-256 (needed with --model-source)")
    man.add_argument("--egress-cidr", action="append",
                     help="CIDR the pod may reach on TCP 443 to fetch the model (repeatable; needs --model-source)")
    man.add_argument("--port", type=int, default=8080)
    man.add_argument("-o", "--output", help="write the YAML here (default: stdout)")
    man.set_defaults(func=_cmd_k8s_manifests)
    chk = k8s_sub.add_parser("check", help="check pods and workloads against the Pod Security Standards")
    chk.add_argument("files", nargs="+")
    chk.add_argument("--level", choices=["baseline", "restricted"], default="restricted")
    chk.add_argument("--version", default="latest", help="Kubernetes version of the standard: latest or v1.N")
    chk.add_argument("--hardening", action="store_true",
                     help="also require digest-pinned images, read-only root, no SA token, default-deny policies")
    chk.add_argument("--format", choices=["text", "json"], default="text")
    chk.set_defaults(func=_cmd_k8s_check)



