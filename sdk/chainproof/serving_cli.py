"""CLI for serving: ``chainproof serve``, ``chainproof monitor``, ``chainproof k8s manifests``, ``chainproof k8s check``
(hooked by ``cli.build_parser``)."""

from __future__ import annotations

import argparse
import json
import re
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
    validate = _schema_validator(args.schemas) if args.schemas else None
    results: list[dict[str, Any]] = []
    total = 0
    for path in args.files:
        documents = load_documents(path)
        findings = check_documents(documents, level=args.level, version=version, hardening=args.hardening)
        violations: list[dict[str, Any]] = [
            {"document": f.document, "check": f.violation.check, "field": f.violation.field, "found": f.violation.found}
            for f in findings
        ]
        lines = [str(f) for f in findings]
        for index, doc in enumerate(documents):
            for field, message in validate(doc) if validate is not None else []:
                violations.append({"document": index, "check": f"schema {args.schemas}", "field": field,
                                   "found": message})
                lines.append(f"document {index} ({doc.get('kind', '?')}): schema {args.schemas}: {field}: {message}")
        total += len(violations)
        results.append({"file": path, "pass": not violations, "violations": violations})
        if args.format == "text":
            print(f"{'PASS' if not violations else 'FAIL'} {path} ({args.level}, {args.version}"
                  f"{', schemas ' + args.schemas if args.schemas else ''})")
            for line in lines:
                print(f"  {line}")
    if args.format == "json":
        print(json.dumps({"level": args.level, "version": args.version, "pass": total == 0, "files": results},
                         indent=2))
    return 0 if total == 0 else 1


def _schema_validator(kubernetes_version: str) -> Any:
    """Return a function that lists a document's schema errors (``kubernetes-validate``, strict)."""
    try:
        import kubernetes_validate
        from kubernetes_validate import utils as kv_utils
    except ImportError:
        raise InputError("--schemas needs kubernetes-validate: pip install 'chainproof[serve]'") from None
    if not re.fullmatch(r"\d+\.\d+\.\d+", kubernetes_version):
        raise InputError(f"--schemas {kubernetes_version!r}: expected a Kubernetes version such as 1.32.0")

    def errors(doc: Any) -> list[tuple[str, str]]:
        if not isinstance(doc, dict):
            return [("", f"not a mapping ({type(doc).__name__})")]
        try:
            kubernetes_validate.validate(doc, kubernetes_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            field = ".".join(str(p) for p in exc.path)
            return [(field, str(exc.message))]
        except kv_utils.VersionNotSupportedError:
            raise InputError(f"--schemas {kubernetes_version}: kubernetes-validate has no schemas for this "
                             "version") from None
        except kubernetes_validate.SchemaNotFoundError:
            return [("kind", f"no schema for {doc.get('apiVersion')}/{doc.get('kind')} in Kubernetes "
                             f"{kubernetes_version}")]
        return []

    return errors


def _load_verified(args: argparse.Namespace) -> Any:
    """Verify REF or BUNDLE against the trusted owner keys; copy, scan, load its model."""
    from chainproof.cli import _trusted_keys, _vertex_access
    from chainproof.serve.loader import load_verified

    registry: Any = None
    if args.ref.startswith("vertex://"):
        from chainproof.registry import VertexModelRegistry, parse_vertex_reference

        project, location, _, _ = parse_vertex_reference(args.ref)
        registry = VertexModelRegistry(project=project, location=location, **_vertex_access())
    elif args.ref.startswith("local://"):
        from chainproof.registry import LocalModelRegistry

        registry = LocalModelRegistry(args.registry)
    source = getattr(args, "model_source", None)
    options = None
    if source:
        import os

        from chainproof.storage import FetchOptions

        # The CLI reads the environment: a non-AWS S3 endpoint (https) and a CA bundle for https sources.
        options = FetchOptions(s3_endpoint=os.environ.get("CHAINPROOF_S3_ENDPOINT", FetchOptions.s3_endpoint),
                               ca_file=os.environ.get("CHAINPROOF_CA_FILE") or None)
    publisher = None
    if hasattr(args, "publisher_key"):
        from chainproof._cli_ingest import publisher_policy

        publisher = publisher_policy(args)
    return load_verified(args.ref, trusted_owner_keys=_trusted_keys(args.owner_key), registry=registry,
                         model_dir=args.model, model_source=source, model_sha256=getattr(args, "model_sha256", None),
                         fetch_options=options, publisher=publisher, signature_uri=getattr(args, "signature", None) or "")


def _thresholds(args: argparse.Namespace) -> Any:
    from chainproof.drift import DriftThresholds

    return DriftThresholds(psi=args.psi_threshold, ks=args.ks_threshold, min_samples=args.min_samples)


def _cmd_serve(args: argparse.Namespace) -> int:
    import importlib.util

    # Before anything is verified: a missing extra is a usage error, named with its fix.
    if importlib.util.find_spec("kserve") is None:
        raise InputError("chainproof serve needs KServe's model server (kserve): pip install 'chainproof[serve]'")
    if not 0 < args.port < 65536:
        raise InputError(f"--port {args.port}: expected 1-65535")
    if not (args.recheck == 0 or 0.1 <= args.recheck <= 86400):
        raise InputError(f"--recheck {args.recheck:g}: expected 0 (off) or 0.1 to 86400 seconds")
    served = _load_verified(args)
    monitor = None
    if served.profile is not None and not args.no_monitor:
        from chainproof.drift import DriftMonitor

        monitor = DriftMonitor(served.profile, window=args.window, every=args.every, thresholds=_thresholds(args))
    for line in served.checks:
        print(f"OK: {line}", file=sys.stderr)
    from chainproof.serve.server import serve

    try:
        serve(served, host=args.host, port=args.port, monitor=monitor, recheck=args.recheck)
    finally:
        served.close()
    return 0


def _read_log(path: str, names: list[str]) -> list[dict[str, str]]:
    import csv

    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header = list(reader.fieldnames or [])
            missing = [n for n in names if n not in header]
            if missing:
                raise InputError(f"{path}: expected a column for every feature, found no column {missing[0]!r} "
                                 f"(header: {', '.join(header[:12])})")
            return [dict(row) for row in reader]
    except OSError as exc:
        raise InputError(f"{path}: cannot read the inputs ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: expected a UTF-8 CSV, found undecodable bytes") from exc


def _cmd_monitor(args: argparse.Namespace) -> int:
    from chainproof.drift import bin_table, evaluate, model_scores, render_html
    from chainproof.errors import ArtifactRefused
    from chainproof.train import prepare_rows

    served = _load_verified(args)
    try:
        if served.profile is None:
            raise ArtifactRefused("reports/profile.json", "the chain carries no drift profile (trained before profiles)")
        rows = _read_log(args.inputs, served.feature_names)
        if not rows:
            raise InputError(f"{args.inputs}: no rows")
        x = prepare_rows(rows, features=served.features)
        scores = model_scores(served.estimator, x)
        status = evaluate(served.profile, x, scores, _thresholds(args))
        tables = bin_table(served.profile, x)
    finally:
        served.close()
    doc = {"model": served.name, "model_sha256": served.model_sha256, "inputs": args.inputs,
           "drift": bool(status.alerts), **status.to_dict(),
           "bins": {n: tables[n] for n in status.drifting}}
    if args.format == "json":
        text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    elif args.format == "html":
        text = render_html(status, tables, subject=f"{served.name} ({args.ref}), inputs {args.inputs}")
    else:
        lines = [f"{served.name}: {status.samples} rows from {args.inputs} against the attested training profile"]
        lines += [f"  PSI {name:<24} {value:8.4f}{'  ALERT' if name in status.drifting else ''}"
                  for name, value in status.psi.items()]
        lines.append(f"  score KS {'n/a' if status.ks is None else f'{status.ks:.4f}'}")
        lines += [f"ALERT: {a}" for a in status.alerts]
        lines.append(f"{'DRIFT' if status.alerts else 'OK'}: {len(status.alerts)} alert(s)")
        text = "\n".join(lines) + "\n"
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text)
        print(f"report written to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 1 if status.alerts else 0


def _add_source(p: Any) -> None:
    p.add_argument("ref", help="local://NAME@VERSION, vertex://projects/P/locations/L/models/ID@VERSION, or a bundle folder")
    p.add_argument("--registry", default="chainproof-work/registry",
                   help="the local registry folder for local:// (default: ./chainproof-work/registry)")
    p.add_argument("--owner-key", action="append", help="trusted owner public key PEM (repeatable); default: the trust store")
    p.add_argument("--model", help="with a bundle folder: the model folder (default: the location bundle.json records)")
    p.add_argument("--psi-threshold", type=float, default=0.2, help="a feature's PSI above this is drift (default 0.2)")
    p.add_argument("--ks-threshold", type=float, default=0.2, help="the scores' KS above this is drift (default 0.2)")


def add_parsers(sub: Any) -> None:
    """Add ``serve``, ``monitor`` and ``k8s`` (and its subcommands) to the top-level subparsers."""
    srv = sub.add_parser("serve", help="serve a model over KServe's V1/V2 REST only after its chain verifies "
                                       "(needs the serve extra)")
    _add_source(srv)
    srv.add_argument("--model-source", metavar="URI",
                     help="with a bundle folder: fetch the model first from s3://, gs:// or https:// (each file pinned "
                          "by the digest the verified chain attests; CHAINPROOF_S3_ENDPOINT, CHAINPROOF_CA_FILE)")
    srv.add_argument("--model-sha256", metavar="HEX", help="with --model-source: the model's pinned manifest SHA-256")
    from chainproof._cli_ingest import add_publisher_arguments

    # A publisher's OpenSSF Model Signing signature over the fetched files, checked offline, as chainproof ingest does.
    add_publisher_arguments(srv, signature_help="with --model-source and a publisher: the model.sig "
                                                "(default: model.sig inside the --model-source folder)")
    srv.add_argument("--host", default="0.0.0.0", help="listening address (default 0.0.0.0, as KServe)")
    srv.add_argument("--port", type=int, default=8080)
    srv.add_argument("--recheck", type=float, default=60.0, metavar="SECONDS",
                     help="hash the model files on disk against the chain every SECONDS; a change makes the model "
                          "unready (503) until they verify again (default 60; 0: only on reload)")
    srv.add_argument("--window", type=int, default=1000, help="rows in the drift window (default 1000)")
    srv.add_argument("--every", type=int, default=50, help="recompute drift every N rows (default 50)")
    srv.add_argument("--min-samples", type=int, default=100, help="rows before drift is judged (default 100)")
    srv.add_argument("--no-monitor", action="store_true", help="serve without drift monitoring")
    srv.set_defaults(func=_cmd_serve)
    mon = sub.add_parser("monitor", help="drift of logged inputs against the model's attested training profile")
    _add_source(mon)
    mon.add_argument("--inputs", required=True, help="CSV of inputs, a column per feature (other columns ignored)")
    mon.add_argument("--min-samples", type=int, default=1, help="rows before drift is judged (default 1)")
    mon.add_argument("--format", choices=["text", "json", "html"], default="text")
    mon.add_argument("-o", "--output", help="write the report to this file")
    mon.set_defaults(func=_cmd_monitor)
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
    chk.add_argument("--schemas", metavar="K8S_VERSION", default="",
                     help="also validate every document against the Kubernetes schemas of this version (strict, "
                          "kubernetes-validate; the serve extra), e.g. 1.32.0")
    chk.add_argument("--format", choices=["text", "json"], default="text")
    chk.set_defaults(func=_cmd_k8s_check)



