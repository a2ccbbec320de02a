"""The pipeline steps: what each KFP component does, callable without KFP.

Example:
    >>> from chainproof import steps
    >>> sorted(n for n in steps.__all__ if not n[0].isupper())[:2]
    ['register_model', 'secure_ingest']

Every step follows the same discipline:

1. load its signer and check the layout authorizes it for this step;
2. verify the chain so far (layout pinned by digest, every earlier link and rule,
   every evidence file) and the digests of the artifacts it receives;
3. do its work in staging folders;
4. record and sign its link (materials: what it verified; products: what it made);
5. publish its outputs by renaming the staging folders into place.

A failure at any point raises a :class:`~chainproof.errors.ChainproofError`, and
nothing is left at the output paths for a later step to pick up.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from in_toto.models.layout import Layout
from securesystemslib.signer import Key, SSlibKey

from chainproof._version import __version__
from chainproof.attest import record_link, sign_model, sign_statement, utc_now, write_atomic, write_link
from chainproof.digests import check_sha256_hex, digest_tree, manifest_digest, sha256_file
from chainproof.errors import ArtifactRefused, ChainError, ChainproofError, InputError, PolicyViolation
from chainproof.identity import Principal, resolve_principal
from chainproof.policy import RUN_ID, expected_principal
from chainproof.registry import ModelRegistry, registry_for, registry_identity
from chainproof.scan import Allowlist, TabularSchema, scan_csv, scan_path, summarize
from chainproof.signing import StepSigner, load_signer, public_key_from_pem, public_key_pem
from chainproof.storage import FetchLimits, FetchOptions, fetch, fetch_tree, is_folder_uri, redact_uri
from chainproof.verify import (
    BUNDLE_INDEX,
    KEYS_DIR,
    LAYOUT_FILE,
    LINKS_DIR,
    SLSA_PROVENANCE,
    SLSA_VSA,
    StepRecord,
    VerificationResult,
    check_artifacts,
    load_layout,
    products_with_prefix,
    verify_layout_signature,
    verify_model_evidence,
    verify_pinned_chain,
)

__all__ = [
    "BUILD_TYPE",
    "attested_transform",
    "StepOutcome",
    "register_model",
    "report_step_failure",
    "secure_ingest",
    "sign_and_attest",
    "train_model",
    "verify_chain",
]

#: The SLSA build type of the reference pipeline's provenance.
BUILD_TYPE = "https://chainproof.dev/slsa/zero-trust-training/v1"

#: Marker that precedes a step's one-line failure in its log, so that
#: ``chainproof run`` (and a person reading Vertex logs) can find the reason.
FAILURE_MARKER = "chainproof-step-failed:"


@dataclass
class StepOutcome:
    """What a step did, for the component to expose as artifact metadata.

    Attributes:
        step: the step name.
        link: the link file written.
        metadata: non-secret facts for the KFP artifact metadata.
    """

    step: str
    link: Path
    metadata: dict[str, Any] = field(default_factory=dict)


def report_step_failure(step: str, error: ChainproofError) -> None:
    """Print a step's one-line failure after :data:`FAILURE_MARKER` on stderr.

    Args:
        step: the failing step.
        error: the error (its diagnostics hold no secrets).
    """
    print(f"{FAILURE_MARKER} {step} exit={error.exit_code}: {error.diagnostics()}", file=sys.stderr, flush=True)


@contextmanager
def _reporting(step: str) -> Iterator[None]:
    try:
        yield
    except ChainproofError as exc:
        report_step_failure(step, exc)
        raise


@contextmanager
def _staged(final: Path) -> Iterator[Path]:
    """Yield a staging folder that becomes ``final`` only if the block succeeds."""
    if final.exists() and (not final.is_dir() or any(final.iterdir())):
        raise InputError(f"{final}: output already exists; refusing to overwrite it")
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.with_name(f".{final.name}.staging-{uuid.uuid4().hex[:8]}")
    staging.mkdir()
    try:
        yield staging
        if final.exists():
            final.rmdir()
        try:
            os.rename(staging, final)
        except OSError:
            # Cloud Storage FUSE (the /gcs mount of Vertex AI Pipelines) refuses to rename
            # non-empty folders by default: publish by copying instead. The step has already
            # verified and signed everything, and a failed task's outputs are never consumed.
            try:
                shutil.copytree(staging, final, dirs_exist_ok=True)
            except BaseException:
                shutil.rmtree(final, ignore_errors=True)
                raise
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _signer_for(step: str, reference: str, layout: Layout) -> StepSigner:
    spec = next((s for s in layout.steps if s.name == step), None)
    if spec is None:
        raise ChainError(step, "the layout has no such step")
    # Remote signers (KMS, Sigstore) take the key the layout pins for this step instead
    # of fetching it again; a KMS signature is checked against it before it is used.
    pinned = Key.from_dict(spec.pubkeys[0], dict(layout.keys[spec.pubkeys[0]])) if spec.pubkeys else None
    signer = load_signer(reference, public_key=pinned)
    if signer.keyid not in spec.pubkeys:
        raise ChainError(
            step,
            f"signer {reference} has key {signer.keyid[:16]}, but the layout authorizes "
            f"{', '.join(k[:16] for k in spec.pubkeys)} for this step",
        )
    return signer


def _copy_chain(chain_in: Path, chain_out: Path) -> None:
    shutil.copytree(chain_in, chain_out, dirs_exist_ok=True)


def _principal(principal: Principal | None, *, identity: str, allow_service_account_key: bool) -> Principal:
    # Resolved first, before the step reads anything: refused credentials stop the step.
    if principal is not None:
        return principal
    return resolve_principal(mode=identity, allow_service_account_key=allow_service_account_key)


def _check_pinned_principal(step: str, principal: Principal, layout: Layout) -> None:
    expected = expected_principal(layout, step)
    if expected is not None and principal.name != expected:
        raise PolicyViolation(
            f"step {step}: running as {principal.name} ({principal.kind}), but the layout expects {expected}"
        )


def _check_received(records: Mapping[str, StepRecord], directory: Path, prefix: str, what: str) -> dict[str, str]:
    producer, attested = products_with_prefix(records, f"{prefix}/")
    received = digest_tree(directory, prefix=prefix)
    check_artifacts(attested, received, producer=producer, what=what)
    return received


def _write_json(path: Path, doc: Mapping[str, Any]) -> None:
    write_atomic(path, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())


def _json_parameter(text: str, name: str) -> Any:
    """Parse a JSON-valued step parameter; ``None`` when it is empty."""
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InputError(f"{name}: not JSON ({exc})") from exc


def _allowlist(extra: str) -> Allowlist:
    """The shipped allowlist, extended by a JSON list of ``module:qualname`` names."""
    names = _json_parameter(extra, "allowlist_extra")
    if names is None:
        return Allowlist.default()
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InputError("allowlist_extra: expected a JSON list of 'module:qualname' strings")
    return Allowlist.default().extend(names)


def _tabular_schema(text: str) -> TabularSchema | None:
    doc = _json_parameter(text, "tabular_schema")
    return None if doc is None else TabularSchema.from_dict(doc)


def _scan_dir(directory: Path, prefix: str, allowlist: Allowlist, schema: TabularSchema | None = None) -> dict[str, Any]:
    """Scan every file (read, never loaded); return the report document with logical names."""
    reports = scan_path(directory, allowlist=allowlist)
    if schema is not None:
        # CSVs are checked against the schema too (columns, types, ranges).
        reports = [
            scan_csv(directory / r.file, name=r.file, schema=schema) if r.kind == "csv" else r for r in reports
        ]
    docs = []
    for report in reports:
        doc = report.to_dict()
        doc["file"] = f"{prefix}/{report.file}"
        for finding in doc.get("findings", []):
            finding["file"] = f"{prefix}/{finding['file']}" if not str(finding["file"]).startswith(f"{prefix}/") else finding["file"]
        docs.append(doc)
    return summarize(reports) | {"allowlist": allowlist.describe(), "reports": docs}


def _refuse_unsafe(report: dict[str, Any], what: str) -> None:
    if report["verdict"] == "safe":
        return
    findings = [f for r in report["reports"] for f in r.get("findings", [])]
    if not findings:
        raise ArtifactRefused(what, "the scan found nothing it could prove safe")
    first = findings[0]
    where = f"@{first['offset']}" if first.get("offset") is not None else ""
    more = f" (+{len(findings) - 1} more findings)" if len(findings) > 1 else ""
    raise ArtifactRefused(f"{first['file']}{where}", f"scan refused it: {first['what']}: {first['reason']}{more}")


def secure_ingest(
    *,
    source_uri: str,
    expected_sha256: str,
    layout_uri: str,
    layout_sha256: str,
    signer: str,
    dataset_dir: str | Path,
    chain_dir: str | Path,
    owner_public_key: str = "",
    publisher_public_key: str = "",
    signature_uri: str = "",
    s3_endpoint: str = "",
    output_prefix: str = "dataset",
    allowlist_extra: str = "",
    tabular_schema: str = "",
    limits: FetchLimits = FetchLimits(),
    fetch_options: FetchOptions | None = None,
    identity: str = "local",
    allow_service_account_key: bool = False,
    principal: Principal | None = None,
    publisher_policy: Any = None,
) -> StepOutcome:
    """Fetch the pinned source into quarantine, verify and scan it, and start the chain.

    Args:
        source_uri: where the data is: ``gs://``, ``https://``, ``s3://``, ``file://`` or a
            path; a URI ending in ``/`` (or a local folder) is fetched as a folder.
        expected_sha256: the pinned SHA-256 of the source (of the manifest, for a folder).
            Mandatory unless ``publisher_public_key`` is given.
        layout_uri: where the signed layout is.
        layout_sha256: the pinned SHA-256 of the layout.
        signer: this step's signer reference.
        dataset_dir: output folder for the verified files.
        chain_dir: output folder for the chain (layout, run id, scan report, link).
        owner_public_key: the owner's public key PEM; when given, the layout's
            signature is checked too, and the key is copied to ``keys/owner.pub``
            (for convenience: verifiers never trust that copy).
        publisher_public_key: a publisher's EC public key PEM: the source is accepted if
            its OpenSSF Model Signing signature verifies with it (instead of, or on top
            of, a hand-copied digest).
        signature_uri: where the publisher's ``model.sig`` is (default: ``model.sig``
            inside a folder source).
        s3_endpoint: the S3 endpoint for ``s3://`` sources (default: AWS).
        output_prefix: the logical name prefix of the products (``dataset`` or ``model``).
        allowlist_extra: a JSON list of extra exact globals (``module:qualname``) the
            scanner accepts in pickles; recorded in the link and the scan report.
        tabular_schema: a JSON schema for CSV sources (columns in order, with type,
            minimum, maximum, nullable); a CSV that does not match is refused.
        limits: bytes per object and objects per folder.
        fetch_options: retry policy and endpoints (overrides ``s3_endpoint``).
        identity: ``local`` (record the local user) or ``gcp`` (resolve Application
            Default Credentials: workload identity; key files refused).
        allow_service_account_key: accept a service-account key file (recorded in the link).
        principal: the resolved identity, when the caller already has it (overrides ``identity``).
        publisher_policy: a :class:`chainproof.publisher.PublisherPolicy` (key, certificate
            chain or keyless Sigstore, verified offline); the publisher's identity is recorded
            in the link (``parameters.publisher``), and its ``ignore`` names are left out.

    Returns:
        The link written and the artifact metadata (uri with generation, sha256, size,
        scan verdict).

    Raises:
        DigestMismatch: the source or the layout is not the pinned one.
        SignatureError: the publisher signature does not verify.
        ArtifactRefused: the scan found something unsafe, or a limit was exceeded.
        InputError: neither a digest nor a publisher key was given.

    Side effects:
        Reads the source, the layout and the signature by URI; writes the two output folders.
    """
    from chainproof.attest import verify_model_signature

    step = "secure_ingest"
    with _reporting(step):
        who = _principal(principal, identity=identity, allow_service_account_key=allow_service_account_key)
        if output_prefix not in ("dataset", "model"):
            raise InputError(f"output_prefix {output_prefix!r}: expected 'dataset' or 'model'")
        expected = check_sha256_hex(expected_sha256, what=f"{step} expected_sha256") if expected_sha256.strip() else None
        publisher = public_key_from_pem(publisher_public_key, what="publisher_public_key") if publisher_public_key.strip() else None
        if expected is None and publisher is None and publisher_policy is None:
            raise InputError(f"{redact_uri(source_uri)}: an expected sha256 (or a publisher public key) is mandatory")
        pinned_layout = check_sha256_hex(layout_sha256, what=f"{step} layout_sha256")
        options = fetch_options or (FetchOptions(s3_endpoint=s3_endpoint) if s3_endpoint else FetchOptions())
        with _staged(Path(chain_dir)) as chain, _staged(Path(dataset_dir)) as dataset:
            layout_file = fetch(layout_uri, dest_dir=chain, expected_sha256=pinned_layout, name=LAYOUT_FILE)
            envelope, layout = load_layout(layout_file.path.read_bytes())
            if owner_public_key.strip():
                owner = public_key_from_pem(owner_public_key, what="owner_public_key")
                verify_layout_signature(envelope, {str(owner.keyid): owner})
                write_atomic(chain / KEYS_DIR / "owner.pub", public_key_pem(owner).encode())
            step_signer = _signer_for(step, signer, layout)
            _check_pinned_principal(step, who, layout)
            for keyid, keydict in sorted(layout.keys.items()):
                write_atomic(chain / KEYS_DIR / f"{keyid[:16]}.pub", public_key_pem(SSlibKey.from_dict(keyid, dict(keydict))).encode())

            run_doc = {"run": uuid.uuid4().hex, "layout_sha256": pinned_layout, "created": utc_now()}
            _write_json(chain / RUN_ID, run_doc)

            check = None
            exclude: frozenset[str] = frozenset()
            signature_sha256 = ""
            publisher_record: dict[str, Any] = {}
            if publisher is not None or publisher_policy is not None:
                if publisher_policy is not None:
                    exclude = frozenset(publisher_policy.ignore)
                if not signature_uri and is_folder_uri(source_uri):
                    # The publisher's signature sits in the folder it signs: it is evidence, not a model file.
                    exclude = exclude | {"model.sig"}
                sig_uri = signature_uri or (source_uri.rstrip("/") + "/model.sig" if is_folder_uri(source_uri) else "")
                if not sig_uri:
                    raise InputError(f"{redact_uri(source_uri)}: a publisher key needs a signature_uri for a single-file source")
                sig = fetch(sig_uri, dest_dir=chain / ".publisher", expected_sha256=None, name="model.sig",
                            limits=limits, options=options)
                signature_sha256 = sig.sha256

                def check(quarantined: Path, _sig: Path = sig.path, _key: SSlibKey | None = publisher) -> None:
                    # Verified while still in quarantine: a bad signature releases nothing.
                    # model-signing skips .git* paths by default, so such files would be
                    # released as "publisher-verified" without being signed: refuse them.
                    names = [quarantined.name] if quarantined.is_file() else list(digest_tree(quarantined))
                    for name in names:
                        if any(part.startswith(".git") for part in name.split("/")):
                            raise ArtifactRefused(f"{output_prefix}/{name}", "not covered by the publisher's signature (model-signing ignores .git* paths)")
                    if publisher_policy is not None:
                        from chainproof.publisher import verify_publisher_signature

                        publisher_record.update(verify_publisher_signature(quarantined, _sig, publisher_policy))
                    if _key is not None:
                        verify_model_signature(quarantined, _sig, _key)

            staging = dataset / ".fetch"
            if is_folder_uri(source_uri):
                tree = fetch_tree(source_uri, dest_dir=staging, expected_manifest_sha256=expected,
                                  limits=limits, options=options, verify=check, exclude=exclude)
                files = tree.files
                source_digest, pinned_uri = tree.manifest_sha256, redact_uri(source_uri)
            else:
                one = fetch(source_uri, dest_dir=staging, expected_sha256=expected, limits=limits, options=options)
                if check is not None:
                    check(one.path)
                files, source_digest, pinned_uri = [one], one.sha256, one.pinned_uri
            for item in files:
                target = dataset / item.name
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging / item.name, target)
            shutil.rmtree(staging)
            shutil.rmtree(chain / ".publisher", ignore_errors=True)

            allowlist = _allowlist(allowlist_extra)
            report = _scan_dir(dataset, output_prefix, allowlist, _tabular_schema(tabular_schema))
            _write_json(chain / "reports" / "scan-ingest.json", report)
            _refuse_unsafe(report, output_prefix)

            products = {RUN_ID: sha256_file(chain / RUN_ID), "reports/scan-ingest.json": sha256_file(chain / "reports" / "scan-ingest.json")}
            products.update({f"{output_prefix}/{f.name}": f.sha256 for f in files})
            envelope_link = record_link(
                step,
                materials={f"source/{f.name}": f.sha256 for f in files},
                products=products,
                signer=step_signer,
                principal=who,
                parameters={
                    "source_uri": pinned_uri,
                    "source_objects": {f.name: f.pinned_uri for f in files} if len(files) > 1 or is_folder_uri(source_uri) else {},
                    "expected_sha256": expected or "",
                    "publisher_keyid": str(publisher.keyid) if publisher is not None else "",
                    "publisher_signature_sha256": signature_sha256,
                    **({"publisher": publisher_record} if publisher_policy is not None else {}),
                    "allowlist_extensions": list(allowlist.extensions),
                    "tabular_schema_sha256": hashlib.sha256(tabular_schema.encode()).hexdigest() if tabular_schema.strip() else "",
                    "layout_uri": redact_uri(layout_uri),
                    "layout_sha256": pinned_layout,
                    "run": run_doc["run"],
                },
            )
            link_path = write_link(envelope_link, chain / LINKS_DIR)
        return StepOutcome(
            step=step,
            link=Path(chain_dir) / LINKS_DIR / link_path.name,
            metadata={
                "uri": pinned_uri,
                "generation": (files[0].generation or "") if len(files) == 1 else "",
                "sha256": source_digest,
                "size": sum(f.size for f in files),
                "files": len(files),
                "scan_verdict": report["verdict"],
                "run": run_doc["run"],
            },
        )


def attested_transform(
    *,
    step: str,
    input_dir: str | Path,
    chain_in: str | Path,
    layout_sha256: str,
    signer: str,
    output_dir: str | Path,
    chain_out: str | Path,
    transform: Callable[[Path, Path], Mapping[str, Any] | None],
    prefix: str = "dataset",
    identity: str = "local",
    allow_service_account_key: bool = False,
    principal: Principal | None = None,
) -> StepOutcome:
    """Run a step of your own (preprocessing, feature engineering) inside the chain.

    The step verifies the chain so far and the ``prefix/*`` files it receives, runs
    ``transform(input_dir, staging_output_dir)``, and records a signed link whose
    materials are the verified inputs and whose products are the files it wrote. Pair
    it with :func:`chainproof.policy.insert_transform` so the layout expects it.

    Args:
        step: the step name in the layout (also its signer role).
        input_dir: the ``prefix`` folder from the previous step.
        chain_in: the chain folder from the previous step.
        layout_sha256: the pinned SHA-256 of the layout.
        signer: this step's signer reference.
        output_dir: the output folder for the transformed files.
        chain_out: the output folder for the extended chain.
        transform: your function; it reads the first folder and writes into the second,
            and may return non-secret parameters to record in the link.
        prefix: the logical prefix transformed (``dataset``).
        identity: ``local`` or ``gcp`` (see :func:`chainproof.identity.resolve_principal`).
        allow_service_account_key: accept a service-account key file (recorded in the link).
        principal: the resolved identity, when the caller already has it.

    Returns:
        The link written.

    Raises:
        VerificationError: the chain or the inputs do not verify.
        InputError: the transform wrote nothing.
    """
    with _reporting(step):
        who = _principal(principal, identity=identity, allow_service_account_key=allow_service_account_key)
        pinned = check_sha256_hex(layout_sha256, what=f"{step} layout_sha256")
        layout, records, _ = verify_pinned_chain(chain_in, layout_sha256=pinned, upto=step)
        step_signer = _signer_for(step, signer, layout)
        _check_pinned_principal(step, who, layout)
        received = _check_received(records, Path(input_dir), prefix, prefix)
        with _staged(Path(chain_out)) as chain, _staged(Path(output_dir)) as out:
            _copy_chain(Path(chain_in), chain)
            recorded = transform(Path(input_dir), out) or {}
            products = digest_tree(out, prefix=prefix)
            if not products:
                raise InputError(f"{step}: the transform wrote no {prefix} files")
            link = record_link(
                step,
                materials={RUN_ID: records[next(iter(records))].products[RUN_ID], **received},
                products=products,
                signer=step_signer,
                principal=who,
                parameters=dict(recorded),
            )
            link_path = write_link(link, chain / LINKS_DIR)
        return StepOutcome(step=step, link=Path(chain_out) / LINKS_DIR / link_path.name,
                           metadata={"files": len(products), "sha256": manifest_digest(products)})


def train_model(
    *,
    dataset_dir: str | Path,
    chain_in: str | Path,
    layout_sha256: str,
    signer: str,
    target_column: str,
    model_dir: str | Path,
    chain_out: str | Path,
    estimator: str = "random_forest",
    hyperparameters: str = "{}",
    test_size: float = 0.25,
    random_state: int = 0,
    identity: str = "local",
    allow_service_account_key: bool = False,
    principal: Principal | None = None,
) -> StepOutcome:
    """Verify the ingested dataset against the chain, then train and attest the model.

    Args:
        dataset_dir: the dataset folder from ``secure_ingest``.
        chain_in: the chain folder from ``secure_ingest``.
        layout_sha256: the pinned SHA-256 of the layout.
        signer: this step's signer reference.
        target_column: the label column.
        model_dir: output folder for ``model.joblib``.
        chain_out: output folder for the extended chain.
        estimator: an estimator name from :data:`chainproof.train.ESTIMATORS`.
        hyperparameters: a JSON object for the estimator.
        test_size: held-out fraction for the metrics.
        random_state: split seed.
        identity: ``local`` (record the local user) or ``gcp`` (resolve Application
            Default Credentials: workload identity; key files refused).
        allow_service_account_key: accept a service-account key file (recorded in the link).
        principal: the resolved identity, when the caller already has it (overrides ``identity``).

    Returns:
        The link written and the metrics.

    Raises:
        VerificationError: the chain or the dataset does not verify (the dataset was swapped).
        InputError: bad training parameters or data.
    """
    from chainproof.train import train_classifier

    step = "train_model"
    with _reporting(step):
        who = _principal(principal, identity=identity, allow_service_account_key=allow_service_account_key)
        pinned = check_sha256_hex(layout_sha256, what=f"{step} layout_sha256")
        layout, records, _ = verify_pinned_chain(chain_in, layout_sha256=pinned, upto=step)
        step_signer = _signer_for(step, signer, layout)
        _check_pinned_principal(step, who, layout)
        with tempfile.TemporaryDirectory(prefix="chainproof-train-") as private, \
                _staged(Path(chain_out)) as chain, _staged(Path(model_dir)) as model:
            # Train on the bytes that were verified: a private copy, hashed after copying,
            # so a file swapped in the shared artifact store meanwhile is never read.
            own = Path(private) / "dataset"
            shutil.copytree(dataset_dir, own, symlinks=True)
            dataset = _check_received(records, own, "dataset", "dataset")
            csv_files = [n for n in dataset if n.lower().endswith(".csv")]
            if len(csv_files) != 1:
                raise InputError(f"dataset: expected one CSV file, found {len(csv_files)} ({', '.join(dataset)})")
            csv_path = own / csv_files[0].split("/", 1)[1]
            _copy_chain(Path(chain_in), chain)
            result = train_classifier(
                csv_path,
                target=target_column,
                model_dir=model,
                estimator=estimator,
                hyperparameters=hyperparameters,
                test_size=test_size,
                random_state=random_state,
            )
            _write_json(chain / "metrics" / "metrics.json", result.metrics)
            products = digest_tree(model, prefix="model")
            products["metrics/metrics.json"] = sha256_file(chain / "metrics" / "metrics.json")
            link = record_link(
                step,
                materials={RUN_ID: records["secure_ingest"].products[RUN_ID], **dataset},
                products=products,
                signer=step_signer,
                principal=who,
                parameters={
                    "target_column": target_column,
                    "estimator": estimator,
                    "hyperparameters": json.loads(hyperparameters) if hyperparameters.strip() else {},
                    "test_size": test_size,
                    "random_state": random_state,
                },
            )
            link_path = write_link(link, chain / LINKS_DIR)
        return StepOutcome(
            step=step,
            link=Path(chain_out) / LINKS_DIR / link_path.name,
            metadata={"metrics": result.metrics, "model_sha256": manifest_digest(digest_tree(model_dir, prefix="model"))},
        )


def _run_id(chain: Path) -> str:
    doc = json.loads((chain / RUN_ID).read_text())
    return str(doc.get("run", ""))


def sign_and_attest(
    *,
    model_dir: str | Path,
    chain_in: str | Path,
    layout_sha256: str,
    signer: str,
    chain_out: str | Path,
    builder_id: str = "https://chainproof.dev/builders/kfp-local",
    pipeline_template_sha256: str = "",
    component_image: str = "",
    identity: str = "local",
    allow_service_account_key: bool = False,
    principal: Principal | None = None,
) -> StepOutcome:
    """Sign the verified model (OpenSSF Model Signing) and write its SLSA provenance.

    Args:
        model_dir: the model folder from ``train_model``.
        chain_in: the chain folder from ``train_model``.
        layout_sha256: the pinned SHA-256 of the layout.
        signer: this step's signer reference (an EC key: model-signing accepts no other).
        chain_out: output folder for the extended chain.
        builder_id: the SLSA builder id (local runner or Vertex AI Pipelines).
        pipeline_template_sha256: SHA-256 of the compiled pipeline, when known.
        component_image: the component image reference (with digest), when known.
        identity: ``local`` (record the local user) or ``gcp`` (resolve Application
            Default Credentials: workload identity; key files refused).
        allow_service_account_key: accept a service-account key file (recorded in the link).
        principal: the resolved identity, when the caller already has it (overrides ``identity``).

    Returns:
        The link written.

    Raises:
        VerificationError: the chain or the model does not verify.
    """
    step = "sign_and_attest"
    with _reporting(step):
        who = _principal(principal, identity=identity, allow_service_account_key=allow_service_account_key)
        pinned = check_sha256_hex(layout_sha256, what=f"{step} layout_sha256")
        layout, records, _ = verify_pinned_chain(chain_in, layout_sha256=pinned, upto=step)
        step_signer = _signer_for(step, signer, layout)
        _check_pinned_principal(step, who, layout)
        model = _check_received(records, Path(model_dir), "model", "model")
        ingest = records["secure_ingest"]
        with _staged(Path(chain_out)) as chain:
            _copy_chain(Path(chain_in), chain)
            (chain / "attestations").mkdir(parents=True, exist_ok=True)
            sign_model(Path(model_dir), chain / "attestations" / "model.sig", step_signer)
            params = ingest.environment.get("parameters", {})
            dataset = {k: v for k, v in ingest.products.items() if k.startswith("dataset/")}
            dependencies: list[dict[str, Any]] = [
                {
                    "name": name,
                    "uri": str(params.get("source_uri", "")),
                    "digest": {"sha256": digest},
                }
                for name, digest in sorted(dataset.items())
            ]
            dependencies.append({"name": "chainproof", "uri": f"pkg:pypi/chainproof@{__version__}"})
            dependencies.append(
                {"name": "layout", "uri": str(params.get("layout_uri", "")), "digest": {"sha256": pinned}}
            )
            if pipeline_template_sha256:
                dependencies.append({"name": "pipeline-template", "digest": {"sha256": pipeline_template_sha256}})
            if component_image:
                image_digest = component_image.rsplit("@sha256:", 1)
                dep: dict[str, Any] = {"name": "component-image", "uri": component_image}
                if len(image_digest) == 2:
                    dep["digest"] = {"sha256": image_digest[1]}
                dependencies.append(dep)
            external = {
                "source_uri": params.get("source_uri", ""),
                "expected_sha256": params.get("expected_sha256", ""),
                **{f"train.{k}": v for k, v in records["train_model"].environment.get("parameters", {}).items()},
            }
            provenance = {
                "buildDefinition": {
                    "buildType": BUILD_TYPE,
                    "externalParameters": external,
                    "internalParameters": {"layout_sha256": pinned},
                    "resolvedDependencies": dependencies,
                },
                "runDetails": {
                    "builder": {"id": builder_id, "version": {"chainproof": __version__}},
                    "metadata": {
                        "invocationId": _run_id(chain),
                        "startedOn": str(ingest.environment.get("recorded", "")),
                        "finishedOn": utc_now(),
                    },
                },
            }
            write_atomic(
                chain / "attestations" / "provenance.json",
                sign_statement(subjects=model, predicate_type=SLSA_PROVENANCE, predicate=provenance, signer=step_signer),
            )
            link = record_link(
                step,
                materials={RUN_ID: ingest.products[RUN_ID], **model},
                products={
                    "attestations/model.sig": sha256_file(chain / "attestations" / "model.sig"),
                    "attestations/provenance.json": sha256_file(chain / "attestations" / "provenance.json"),
                },
                signer=step_signer,
                principal=who,
                parameters={"builder_id": builder_id, "component_image": component_image},
            )
            link_path = write_link(link, chain / LINKS_DIR)
        return StepOutcome(step=step, link=Path(chain_out) / LINKS_DIR / link_path.name)


def verify_chain(
    *,
    model_dir: str | Path,
    chain_in: str | Path,
    layout_sha256: str,
    signer: str,
    chain_out: str | Path,
    identity: str = "local",
    allow_service_account_key: bool = False,
    allowlist_extra: str = "",
    principal: Principal | None = None,
) -> StepOutcome:
    """The gate: verify the whole chain so far and the model, fail closed, write a VSA.

    Args:
        model_dir: the model folder from ``train_model``.
        chain_in: the chain folder from ``sign_and_attest``.
        layout_sha256: the pinned SHA-256 of the layout.
        signer: this step's signer reference.
        chain_out: output folder for the extended chain.
        identity: ``local`` (record the local user) or ``gcp`` (resolve Application
            Default Credentials: workload identity; key files refused).
        allow_service_account_key: accept a service-account key file (recorded in the link).
        allowlist_extra: a JSON list of extra exact globals the model scan accepts
            (recorded in the link and the scan report).
        principal: the resolved identity, when the caller already has it (overrides ``identity``).

    Returns:
        The link written and the checks that passed.

    Raises:
        VerificationError: anything does not verify; the pipeline stops here.
    """
    step = "verify_chain"
    with _reporting(step):
        who = _principal(principal, identity=identity, allow_service_account_key=allow_service_account_key)
        pinned = check_sha256_hex(layout_sha256, what=f"{step} layout_sha256")
        layout, records, checks = verify_pinned_chain(chain_in, layout_sha256=pinned, upto=step)
        step_signer = _signer_for(step, signer, layout)
        _check_pinned_principal(step, who, layout)
        model, model_checks, _ = verify_model_evidence(Path(chain_in), layout, records, Path(model_dir))
        checks += model_checks
        allowlist = _allowlist(allowlist_extra)
        with _staged(Path(chain_out)) as chain:
            _copy_chain(Path(chain_in), chain)
            # Nothing reaches the registry, or a serving container, that was not scanned.
            scan = _scan_dir(Path(model_dir), "model", allowlist)
            _write_json(chain / "reports" / "scan-model.json", scan)
            _refuse_unsafe(scan, "model")
            checks.append(f"model scan: {scan['files']} files {scan['verdict']} (allowlist v{allowlist.describe().get('version')})")
            links = sorted((chain / LINKS_DIR).glob("*.link"))
            predicate = {
                "verifier": {"id": "https://chainproof.dev/verifiers/verify_chain", "version": {"chainproof": __version__}},
                "timeVerified": utc_now(),
                "resourceUri": f"chainproof:run/{_run_id(chain)}#model",
                "policy": {"uri": LAYOUT_FILE, "digest": {"sha256": pinned}},
                "inputAttestations": [
                    {"uri": f"{LINKS_DIR}/{p.name}", "digest": {"sha256": sha256_file(p)}} for p in links
                ],
                "verificationResult": "PASSED",
                "verifiedLevels": ["SLSA_BUILD_LEVEL_1"],
                "checks": checks,
            }
            write_atomic(
                chain / "attestations" / "vsa.json",
                sign_statement(subjects=model, predicate_type=SLSA_VSA, predicate=predicate, signer=step_signer),
            )
            evidence = {
                name: digest
                for record in records.values()
                for name, digest in record.products.items()
                if not name.startswith("dataset/")
            }
            # The dataset as the last step that produced it attested it (ingest, or a transform after it).
            evidence.update(products_with_prefix(records, "dataset/")[1])
            link = record_link(
                step,
                materials=evidence,
                products={
                    "attestations/vsa.json": sha256_file(chain / "attestations" / "vsa.json"),
                    "reports/scan-model.json": sha256_file(chain / "reports" / "scan-model.json"),
                },
                signer=step_signer,
                principal=who,
                parameters={"checks": len(checks), "allowlist_extensions": list(allowlist.extensions)},
            )
            link_path = write_link(link, chain / LINKS_DIR)
        return StepOutcome(step=step, link=Path(chain_out) / LINKS_DIR / link_path.name, metadata={"checks": checks})


def register_model(
    *,
    model_dir: str | Path,
    chain_in: str | Path,
    layout_sha256: str,
    signer: str,
    model_name: str,
    registry: ModelRegistry | None = None,
    registry_uri: str = "",
    identity: str = "local",
    allow_service_account_key: bool = False,
    principal: Principal | None = None,
) -> StepOutcome:
    """Register the model only if its whole chain, including the gate's summary, verifies.

    Args:
        model_dir: the model folder from ``train_model``.
        chain_in: the chain folder from ``verify_chain``.
        layout_sha256: the pinned SHA-256 of the layout.
        signer: this step's signer reference.
        model_name: the registry model name.
        registry: the registry backend (default: a local registry at ``registry_uri``).
        registry_uri: ``file://`` folder of the local registry.
        identity: ``local`` (record the local user) or ``gcp`` (resolve Application
            Default Credentials: workload identity; key files refused).
        allow_service_account_key: accept a service-account key file (recorded in the link).
        principal: the resolved identity, when the caller already has it (overrides ``identity``).

    Returns:
        The link written; ``metadata["reference"]`` is the registered version.

    Raises:
        VerificationError: the chain, the model or the verification summary does not verify.

    Side effects:
        Writes the model and its final evidence bundle into the registry.
    """
    step = "register_model"
    with _reporting(step):
        who = _principal(principal, identity=identity, allow_service_account_key=allow_service_account_key)
        pinned = check_sha256_hex(layout_sha256, what=f"{step} layout_sha256")
        layout, records, checks = verify_pinned_chain(chain_in, layout_sha256=pinned, upto=step)
        step_signer = _signer_for(step, signer, layout)
        _check_pinned_principal(step, who, layout)
        if not any("attestations/vsa.json" in r.products for r in records.values()):
            raise ArtifactRefused("attestations/vsa.json", "no verification summary: the gate did not pass")
        model, model_checks, _ = verify_model_evidence(Path(chain_in), layout, records, Path(model_dir))
        checks += model_checks
        if registry is None:
            registry = registry_for(registry_uri)
        verified = VerificationResult(
            layout_sha256=pinned, owner_keyid="", steps=list(records.values()), model_files=model, checks=checks
        )
        existing = registry.find(model_name, model_sha256=verified.model_sha256)
        if existing is not None:
            # Idempotent: the same model digest is never registered twice.
            links = Path(existing.bundle_location, LINKS_DIR)
            return StepOutcome(
                step=step,
                # A remote bundle (gs://) has no local link file to point at.
                link=next(links.glob(f"{step}.*.link"), links) if links.is_dir() else links,
                metadata={"reference": existing.reference, "model_sha256": existing.model_sha256, "created": False,
                          "bundle": existing.bundle_location, "model": existing.model_location,
                          **_resource_metadata(registry, existing.reference)},
            )
        pending = registry.prepare(model_name, model_sha256=verified.model_sha256)
        staging = Path(chain_in).with_name(f".bundle-{uuid.uuid4().hex[:8]}")
        try:
            _copy_chain(Path(chain_in), staging)
            gate_bundle = manifest_digest(digest_tree(Path(chain_in)))
            entry = {
                "reference": pending.reference,
                "model": {"location": pending.model_location, "sha256": verified.model_sha256, "files": model},
                "evidence": {"location": pending.bundle_location, "verified_bundle_sha256": gate_bundle},
                "run": _run_id(staging),
                "registry": registry_identity(registry, pending),
            }
            _write_json(staging / "registry" / "entry.json", entry)
            materials = {RUN_ID: records["secure_ingest"].products[RUN_ID], **model}
            for record in records.values():
                materials.update({k: v for k, v in record.products.items() if k.startswith("attestations/")})
            link = record_link(
                step,
                materials=materials,
                products={"registry/entry.json": sha256_file(staging / "registry" / "entry.json")},
                signer=step_signer,
                principal=who,
                parameters={"model_name": model_name, "reference": pending.reference},
            )
            link_path = write_link(link, staging / LINKS_DIR)
            _write_json(
                staging / BUNDLE_INDEX,
                {
                    "format": "chainproof-bundle/v1",
                    "run": entry["run"],
                    "steps": [s.name for s in layout.steps],
                    "model": {"location": os.path.relpath(pending.model_location, pending.bundle_location),
                              "sha256": verified.model_sha256},
                    "registered": pending.reference,
                },
            )
            registered = registry.commit(pending, model_dir=Path(model_dir), bundle_dir=staging, verified=verified)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return StepOutcome(
            step=step,
            link=Path(registered.bundle_location) / LINKS_DIR / link_path.name,
            metadata={"reference": registered.reference, "model_sha256": registered.model_sha256, "created": True,
                      "bundle": registered.bundle_location, "model": registered.model_location,
                      **_resource_metadata(registry, registered.reference)},
        )


def _resource_metadata(registry: ModelRegistry, reference: str) -> dict[str, str]:
    """The ``google.VertexModel`` fields (resourceName, API URI) of a Vertex registration."""
    resource_uri = getattr(registry, "resource_uri", None)
    if resource_uri is None:
        return {}
    name, uri = resource_uri(reference)
    return {"resourceName": name, "resourceUri": uri}

