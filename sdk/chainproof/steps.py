"""The pipeline steps: what each chainproof component does, callable without KFP.

Example:
    >>> from chainproof import steps
    >>> sorted(n for n in steps.__all__ if not n[0].isupper())[:2]
    ['attested_transform', 'ingest_work']

Each step is its own work and nothing else: the discipline every step shares
(principal, pinned layout, earlier links, signer, staging, link, publish) is
:func:`chainproof.step.open_step`. The public functions here take explicit chain
folders (``chain_in`` / ``chain_out``), for SDK users and tests; the ``*_work``
functions are the same work on a :class:`~chainproof.step.StepContext` that
:mod:`chainproof.dsl` opened around a component.

A failure at any point raises a :class:`~chainproof.errors.ChainproofError`, and
nothing is left at the output paths for a later step to pick up.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from securesystemslib.signer import SSlibKey

from chainproof._version import __version__
from chainproof.attest import sign_model, sign_statement, utc_now, write_atomic
from chainproof.digests import check_sha256_hex, digest_tree, manifest_digest, sha256_file
from chainproof.errors import ArtifactRefused, ChainError, InputError
from chainproof.identity import Principal
from chainproof.policy import RUN_ID, layout_extensions
from chainproof.registry import ModelRegistry, registry_for, registry_identity
from chainproof.scan import Allowlist, TabularSchema, scan_csv, scan_path, summarize
from chainproof.signing import public_key_from_pem
from chainproof.step import (
    FAILURE_MARKER,
    IdentityPolicy,
    StepContext,
    open_step,
    report_step_failure,
)
from chainproof.storage import (
    FetchLimits,
    FetchOptions,
    fetch,
    fetch_tree,
    is_folder_uri,
    redact_uri,
)
from chainproof.verify import (
    BUNDLE_INDEX,
    LINKS_DIR,
    SLSA_PROVENANCE,
    SLSA_VSA,
    VerificationResult,
    products_with_prefix,
    verify_model_evidence,
)

__all__ = [
    "BUILD_TYPE",
    "FAILURE_MARKER",
    "StepOutcome",
    "attested_transform",
    "gate_work",
    "ingest_work",
    "register_model",
    "register_work",
    "report_step_failure",
    "secure_ingest",
    "sign_and_attest",
    "sign_work",
    "train_model",
    "train_work",
    "verify_chain",
]

#: The SLSA build type of the reference pipeline's provenance.
BUILD_TYPE = "https://chainproof.dev/slsa/zero-trust-training/v1"

#: The feature contract written beside the model by the built-in trainer.
FEATURES_FILE = "features.json"


def _column_list(value: str | list[str], what: str) -> list[str]:
    """Column names from a list, a JSON list or comma-separated text."""
    if isinstance(value, list):
        names = value
    else:
        text = value.strip()
        names = _json_parameter(text, what) if text.startswith("[") else [n.strip() for n in text.split(",") if n.strip()]
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise InputError(f"{what}: expected column names (a JSON list or comma-separated), got {value!r}")
    return list(dict.fromkeys(names))


#: Layout extension: metric thresholds the gate enforces, ``{"min": {name: value},
#: "max": {name: value}}``.
EXT_METRIC_THRESHOLDS = "metric_thresholds"


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


def _identity(identity: str, allow_service_account_key: bool) -> IdentityPolicy:
    return IdentityPolicy(mode=identity, allow_service_account_key=allow_service_account_key)


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


def _run_id(chain: Path) -> str:
    doc = json.loads((chain / RUN_ID).read_text())
    return str(doc.get("run", ""))


def _ingest_record(ctx: StepContext) -> Any:
    """The verified ingest step (the one whose materials are the pinned source)."""
    for record in ctx.records.values():
        if any(name.startswith("source/") for name in record.materials):
            return record
    raise ChainError(ctx.step, "no ingest step in the verified chain (nothing pinned the data)")


def model_prefix(ctx: StepContext) -> str:
    """The logical prefix of the model files (``model`` unless the layout says otherwise)."""
    return str(layout_extensions(ctx.layout).get("model_prefix") or "model")


def ingest_work(
    ctx: StepContext,
    *,
    source_uri: str,
    expected_sha256: str,
    dataset: Path,
    output_prefix: str = "dataset",
    publisher_public_key: str = "",
    signature_uri: str = "",
    allowlist_extra: str = "",
    tabular_schema: str = "",
    limits: FetchLimits = FetchLimits(),
    options: FetchOptions = FetchOptions(),
    layout_uri: str = "",
    publisher_policy: Any = None,
) -> dict[str, Any]:
    """Fetch the pinned source into ``dataset``, verify and scan it (the work of :func:`secure_ingest`).

    Args:
        ctx: the open step (a first step: nothing before it).
        source_uri: where the data is (see :func:`secure_ingest`).
        expected_sha256: the pinned SHA-256 (of the manifest, for a folder); may be
            empty when ``publisher_public_key`` is given.
        dataset: the (staging) output folder.
        output_prefix: ``dataset`` or ``model``: the products' logical prefix.
        publisher_public_key: a publisher's EC public key PEM.
        signature_uri: where the publisher's ``model.sig`` is.
        allowlist_extra: extra scanner globals (JSON list).
        tabular_schema: a JSON schema for CSV sources.
        limits: bytes per object and objects per folder.
        options: retry policy and endpoints.
        layout_uri: recorded in the link.
        publisher_policy: a :class:`chainproof.publisher.PublisherPolicy` (key, certificate
            chain or keyless Sigstore, verified offline); the publisher's identity is recorded
            in the link (``parameters.publisher``), and its ``ignore`` names are left out.

    Returns:
        Artifact metadata (uri with generation, sha256, size, scan verdict, run).

    Raises:
        DigestMismatch: the source is not the pinned one.
        SignatureError: the publisher signature does not verify.
        ArtifactRefused: the scan found something unsafe, or a limit was exceeded.
        InputError: neither a digest nor a publisher key was given.

    Side effects:
        Reads the source and the signature by URI.
    """
    from chainproof.attest import verify_model_signature

    if not output_prefix or "/" in output_prefix or output_prefix in ("source", "run"):
        raise InputError(f"output_prefix {output_prefix!r}: expected a plain name such as 'dataset' or 'model'")
    expected = check_sha256_hex(expected_sha256, what=f"{ctx.step} expected_sha256") if expected_sha256.strip() else None
    publisher = public_key_from_pem(publisher_public_key, what="publisher_public_key") if publisher_public_key.strip() else None
    if expected is None and publisher is None and publisher_policy is None:
        raise InputError(f"{redact_uri(source_uri)}: an expected sha256 (or a publisher public key) is mandatory")
    if RUN_ID not in ctx.products:
        ctx.add_evidence(RUN_ID, {"run": uuid.uuid4().hex, "layout_sha256": ctx.layout_sha256, "created": utc_now()})
    run = _run_id(ctx.chain)

    check = None
    exclude: frozenset[str] = frozenset()
    signature_sha256 = ""
    quarantine = ctx.private_dir() / "publisher"
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
        sig = fetch(sig_uri, dest_dir=quarantine, expected_sha256=None, name="model.sig", limits=limits, options=options)
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

    allowlist = _allowlist(allowlist_extra)
    report = _scan_dir(dataset, output_prefix, allowlist, _tabular_schema(tabular_schema))
    ctx.add_evidence("reports/scan-ingest.json", report)
    _refuse_unsafe(report, output_prefix)

    ctx.materials.update({f"source/{f.name}": f.sha256 for f in files})
    ctx.products.update({f"{output_prefix}/{f.name}": f.sha256 for f in files})
    ctx.parameters.update({
        "source_uri": pinned_uri,
        "source_objects": {f.name: f.pinned_uri for f in files} if len(files) > 1 or is_folder_uri(source_uri) else {},
        "expected_sha256": expected or "",
        "publisher_keyid": str(publisher.keyid) if publisher is not None else "",
        "publisher_signature_sha256": signature_sha256,
        **({"publisher": publisher_record} if publisher_policy is not None else {}),
        "allowlist_extensions": list(allowlist.extensions),
        "tabular_schema_sha256": hashlib.sha256(tabular_schema.encode()).hexdigest() if tabular_schema.strip() else "",
        "layout_uri": redact_uri(layout_uri),
        "layout_sha256": ctx.layout_sha256,
        "run": run,
    })
    return {
        "uri": pinned_uri,
        "generation": (files[0].generation or "") if len(files) == 1 else "",
        "sha256": source_digest,
        "size": sum(f.size for f in files),
        "files": len(files),
        "scan_verdict": report["verdict"],
        "run": run,
    }


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
            its OpenSSF Model Signing signature verifies with it.
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
    step = "secure_ingest"
    options = fetch_options or (FetchOptions(s3_endpoint=s3_endpoint) if s3_endpoint else FetchOptions())
    with open_step(step, layout_sha256=layout_sha256, signer=signer, chain_out=Path(chain_dir),
                   layout_uri=layout_uri, owner_public_key=owner_public_key,
                   identity=_identity(identity, allow_service_account_key), principal=principal) as ctx:
        metadata = ingest_work(
            ctx, source_uri=source_uri, expected_sha256=expected_sha256, dataset=ctx.output(Path(dataset_dir)),
            output_prefix=output_prefix, publisher_public_key=publisher_public_key, signature_uri=signature_uri,
            allowlist_extra=allowlist_extra, tabular_schema=tabular_schema, limits=limits, options=options,
            layout_uri=layout_uri, publisher_policy=publisher_policy,
        )
        link = ctx.sign()
    return StepOutcome(step=step, link=Path(chain_dir) / LINKS_DIR / link.name, metadata=metadata)


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
    """Run a step of your own (preprocessing, feature engineering) inside an explicit chain.

    With :mod:`chainproof.dsl` a plain ``@dsl.component`` does this for you; this is the
    same step for code that passes chain folders by hand. The step verifies the chain
    so far and the ``prefix/*`` files it receives, runs ``transform(verified_input_dir,
    staging_output_dir)``, and records a signed link whose materials are the verified
    inputs and whose products are the files it wrote. Pair it with
    :func:`chainproof.policy.insert_transform` so the layout expects it.

    Args:
        step: the step name in the layout (also its signer role).
        input_dir: the ``prefix`` folder from the previous step.
        chain_in: the chain folder from the previous step.
        layout_sha256: the pinned SHA-256 of the layout.
        signer: this step's signer reference.
        output_dir: the output folder for the transformed files.
        chain_out: the output folder for the extended chain.
        transform: your function; it reads the first folder (a verified private copy)
            and writes into the second, and may return non-secret parameters to record.
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
    with open_step(step, layout_sha256=layout_sha256, signer=signer, chains=[Path(chain_in)],
                   chain_out=Path(chain_out), identity=_identity(identity, allow_service_account_key),
                   principal=principal) as ctx:
        ctx.run_material()
        verified, _ = ctx.receive(prefix, Path(input_dir))
        out = ctx.output(Path(output_dir))
        recorded = transform(verified, out) or {}
        products = ctx.add_products(out, prefix)
        if not products:
            raise InputError(f"{step}: the transform wrote no {prefix} files")
        ctx.parameters.update(dict(recorded))
        link = ctx.sign()
    return StepOutcome(step=step, link=Path(chain_out) / LINKS_DIR / link.name,
                       metadata={"files": len(products), "sha256": manifest_digest(products)})


def train_work(
    ctx: StepContext,
    *,
    dataset: Path,
    model_out: Path,
    target_column: str,
    estimator: str = "random_forest",
    hyperparameters: str = "{}",
    test_size: float = 0.25,
    random_state: int = 0,
    dataset_prefix: str = "dataset",
    drop: str | list[str] = "",
    task: str = "classification",
) -> Any:
    """Train the built-in estimator on a verified dataset (the work of :func:`train_model`).

    Args:
        ctx: the open step; ``dataset`` has already been received through it.
        dataset: the verified (private) dataset folder or file.
        model_out: the (staging) model folder.
        target_column: the label column.
        estimator: an estimator name from :data:`chainproof.train.ESTIMATORS`.
        hyperparameters: a JSON object for the estimator.
        test_size: held-out fraction for the metrics.
        random_state: split seed.
        dataset_prefix: the dataset's logical prefix (to name the CSV in errors).
        drop: columns that are not features (a list, ``"id,email"`` or a JSON list).
        task: ``classification``, ``regression`` or ``auto``.

    Returns:
        The :class:`chainproof.train.TrainResult`; ``model/features.json`` records the
        feature names, types and order beside the model.

    Raises:
        InputError: bad training parameters or data.
    """
    from chainproof.train import train_table

    files = [dataset] if dataset.is_file() else sorted(p for p in dataset.rglob("*") if p.is_file())
    csv_files = [p for p in files if p.name.lower().endswith(".csv")]
    if len(csv_files) != 1:
        names = ", ".join(f"{dataset_prefix}/{p.name}" for p in files[:8])
        raise InputError(f"{dataset_prefix}: expected one CSV file, found {len(csv_files)} ({names})")
    params = _json_parameter(hyperparameters, "hyperparameters")
    dropped = _column_list(drop, "drop")
    result = train_table(
        csv_files[0], target=target_column, model_dir=model_out, task=task,  # type: ignore[arg-type]  # train_table refuses an unknown task
        estimator=estimator, drop=dropped,
        hyperparameters=params if params is not None else {}, test_size=test_size, random_state=random_state,
    )
    # The feature contract travels with the model (and under its signature): serving reads
    # instances in this order, by these names and types.
    contract = {"task": result.task, "target": result.target, "features": result.features,
                "classes": list(result.classes)}
    write_atomic(model_out / FEATURES_FILE, (json.dumps(contract, indent=2, sort_keys=True) + "\n").encode())
    # The drift reference profile is evidence of this step (kept in the bundle, attested by its link).
    from chainproof.drift import PROFILE_PRODUCT

    ctx.add_evidence(PROFILE_PRODUCT, result.profile)
    ctx.parameters.update({
        "target_column": target_column,
        "task": result.task,
        "estimator": estimator,
        "hyperparameters": params if params is not None else {},
        "drop": dropped,
        "test_size": test_size,
        "random_state": random_state,
        "features": [{"name": f["name"], "type": f["type"]} for f in result.features],
    })
    return result


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
    drop: str | list[str] = "",
    task: str = "classification",
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
        drop: columns that are not features (identifiers): a list or comma-separated.
        task: ``classification``, ``regression`` or ``auto``.
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
    step = "train_model"
    with open_step(step, layout_sha256=layout_sha256, signer=signer, chains=[Path(chain_in)],
                   chain_out=Path(chain_out), identity=_identity(identity, allow_service_account_key),
                   principal=principal) as ctx:
        ctx.run_material()
        # Train on the bytes that were verified: a private copy, hashed after copying,
        # so a file swapped in the shared artifact store meanwhile is never read.
        dataset, _ = ctx.receive("dataset", Path(dataset_dir))
        model = ctx.output(Path(model_dir))
        result = train_work(ctx, dataset=dataset, model_out=model, target_column=target_column, estimator=estimator,
                            hyperparameters=hyperparameters, test_size=test_size, random_state=random_state,
                            drop=drop, task=task)
        ctx.add_evidence("metrics/metrics.json", result.metrics)
        products = ctx.add_products(model, "model")
        link = ctx.sign()
    return StepOutcome(step=step, link=Path(chain_out) / LINKS_DIR / link.name,
                       metadata={"metrics": result.metrics, "model_sha256": manifest_digest(products)})


def sign_work(
    ctx: StepContext,
    *,
    model: Path,
    model_files: Mapping[str, str],
    builder_id: str,
    pipeline_template_sha256: str = "",
    component_image: str = "",
) -> None:
    """Sign the verified model (OpenSSF Model Signing) and write its SLSA provenance.

    Args:
        ctx: the open step; the model has been received through it.
        model: the verified model folder.
        model_files: its logical names and digests (the provenance subject).
        builder_id: the SLSA builder id.
        pipeline_template_sha256: SHA-256 of the compiled pipeline, when known.
        component_image: the component image reference (with digest), when known.
    """
    sig = ctx.chain / "attestations" / "model.sig"
    sig.parent.mkdir(parents=True, exist_ok=True)
    sign_model(model, sig, ctx.signer)
    ctx.products["attestations/model.sig"] = sha256_file(sig)
    ingest = _ingest_record(ctx)
    params = ingest.environment.get("parameters", {})
    dataset = {k: v for k, v in ingest.products.items() if not k.startswith(("run/", "reports/"))}
    dependencies: list[dict[str, Any]] = [
        {"name": name, "uri": str(params.get("source_uri", "")), "digest": {"sha256": digest}}
        for name, digest in sorted(dataset.items())
    ]
    dependencies.append({"name": "chainproof", "uri": f"pkg:pypi/chainproof@{__version__}"})
    dependencies.append({"name": "layout", "uri": str(params.get("layout_uri", "")), "digest": {"sha256": ctx.layout_sha256}})
    if pipeline_template_sha256:
        dependencies.append({"name": "pipeline-template", "digest": {"sha256": check_sha256_hex(pipeline_template_sha256, what="pipeline_template_sha256")}})
    if component_image:
        image_digest = component_image.rsplit("@sha256:", 1)
        dep: dict[str, Any] = {"name": "component-image", "uri": component_image}
        if len(image_digest) == 2:
            dep["digest"] = {"sha256": image_digest[1]}
        dependencies.append(dep)
    producer = products_with_prefix(ctx.records, next(iter(model_files)).split("/", 1)[0] + "/")[0]
    external = {
        "source_uri": params.get("source_uri", ""),
        "expected_sha256": params.get("expected_sha256", ""),
        **{f"train.{k}": v for k, v in ctx.records[producer].environment.get("parameters", {}).items()},
    }
    provenance = {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": external,
            "internalParameters": {"layout_sha256": ctx.layout_sha256},
            "resolvedDependencies": dependencies,
        },
        "runDetails": {
            "builder": {"id": builder_id, "version": {"chainproof": __version__}},
            "metadata": {
                "invocationId": _run_id(ctx.chain),
                "startedOn": str(ingest.environment.get("recorded", "")),
                "finishedOn": utc_now(),
            },
        },
    }
    ctx.add_evidence(
        "attestations/provenance.json",
        sign_statement(subjects=model_files, predicate_type=SLSA_PROVENANCE, predicate=provenance, signer=ctx.signer),
    )
    ctx.parameters.update({"builder_id": builder_id, "component_image": component_image})
    _supply_evidence(ctx, advisories=ctx.settings.advisories if ctx.settings else "")


def _supply_evidence(ctx: StepContext, *, advisories: str) -> None:
    """Attest what ran: a CycloneDX SBOM of this environment and, given an OSV database, its scan."""
    from chainproof import supply

    bom = supply.environment_sbom()
    subject = supply.environment_digest(supply.sbom_packages(bom))
    ctx.add_evidence(supply.SBOM_PRODUCT, supply.sbom_statement(bom, signer=ctx.signer))
    # The link names the environment the SBOM describes: verify compares the two.
    ctx.parameters["environment_sha256"] = subject
    if advisories:
        scan = supply.scan_sbom(bom, supply.load_advisories(advisories))
        ctx.add_evidence(supply.VULNS_PRODUCT, supply.vulns_statement(
            scan, signer=ctx.signer, subject=("environment", subject), database_uri=redact_uri(advisories)))
        ctx.parameters["advisories"] = redact_uri(advisories)


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
    with open_step(step, layout_sha256=layout_sha256, signer=signer, chains=[Path(chain_in)],
                   chain_out=Path(chain_out), identity=_identity(identity, allow_service_account_key),
                   principal=principal) as ctx:
        ctx.run_material()
        model, files = ctx.receive("model", Path(model_dir))
        sign_work(ctx, model=model, model_files=files, builder_id=builder_id,
                  pipeline_template_sha256=pipeline_template_sha256, component_image=component_image)
        link = ctx.sign()
    return StepOutcome(step=step, link=Path(chain_out) / LINKS_DIR / link.name)


def _check_metric_thresholds(ctx: StepContext, min_metrics: str, max_metrics: str) -> list[str]:
    """Enforce the owner's metric thresholds (a layout extension) and the gate's own parameters."""
    owner = layout_extensions(ctx.layout).get(EXT_METRIC_THRESHOLDS) or {}
    if not (owner or min_metrics.strip() or max_metrics.strip()):
        return []
    from chainproof.thresholds import check_metrics, format_thresholds

    metrics: dict[str, Any] = {}
    for name in sorted(p for p in digest_tree(ctx.chain) if p.startswith("metrics/") and p.endswith(".json")):
        doc = json.loads((ctx.chain / name).read_text())
        if isinstance(doc, dict):
            metrics.update(doc)
    checks = []
    # The owner's thresholds always hold; the gate's parameters can only add to them.
    for who, minimum, maximum in (("layout", owner.get("min"), owner.get("max")),
                                  ("gate", min_metrics, max_metrics)):
        held = check_metrics(metrics, min_metrics=minimum, max_metrics=maximum)
        if held:
            checks.append(f"metric thresholds ({who}): {format_thresholds(held)} hold")
    return checks


def _model_card(ctx: StepContext, files: Mapping[str, str], checks: list[str]) -> None:
    """Fill the model card from the chain the gate verified, and sign it over the model files."""
    from chainproof.card import build_card, sign_card
    from chainproof.verify import CARD_PRODUCT

    verified = VerificationResult(layout_sha256=ctx.layout_sha256, owner_keyid="", steps=list(ctx.records.values()),
                                  model_files=dict(files), checks=list(checks))
    card = build_card(verified, ctx.chain)
    ctx.add_evidence(CARD_PRODUCT, sign_card(card, result=verified, signer=ctx.signer))
    checks.append(f"{CARD_PRODUCT}: a Model Card Toolkit v0.0.2 card filled from this chain, signed over the model")


def gate_work(
    ctx: StepContext,
    *,
    model: Path,
    allowlist_extra: str = "",
    min_metrics: str = "",
    max_metrics: str = "",
) -> list[str]:
    """The gate's work: the model against the chain and its attestations, a scan, thresholds, a VSA.

    Args:
        ctx: the open step (the chain so far verified).
        model: the delivered model folder (a private, verified copy).
        allowlist_extra: extra scanner globals (JSON list).
        min_metrics: metric minimums (``roc_auc>=0.8,...`` or a JSON object).
        max_metrics: metric maximums (``rmse<=3``).

    Returns:
        The checks that passed.

    Raises:
        VerificationError: anything does not verify; the pipeline stops here.
        MetricBelowThreshold: a metric misses its threshold.
    """
    checks = list(ctx.checks)
    files, model_checks, _ = verify_model_evidence(ctx.chain, ctx.layout, ctx.records, model, prefix=model_prefix(ctx))
    checks += model_checks
    allowlist = _allowlist(allowlist_extra)
    # Nothing reaches the registry, or a serving container, that was not scanned.
    scan = _scan_dir(model, model_prefix(ctx), allowlist)
    ctx.add_evidence("reports/scan-model.json", scan)
    _refuse_unsafe(scan, "model")
    checks.append(f"model scan: {scan['files']} files {scan['verdict']} (allowlist v{allowlist.describe().get('version')})")
    checks += _check_metric_thresholds(ctx, min_metrics, max_metrics)
    _model_card(ctx, files, checks)
    links = sorted((ctx.chain / LINKS_DIR).glob("*.link"))
    predicate = {
        "verifier": {"id": "https://chainproof.dev/verifiers/verify_chain", "version": {"chainproof": __version__}},
        "timeVerified": utc_now(),
        "resourceUri": f"chainproof:run/{_run_id(ctx.chain)}#model",
        "policy": {"uri": "root.layout", "digest": {"sha256": ctx.layout_sha256}},
        "inputAttestations": [{"uri": f"{LINKS_DIR}/{p.name}", "digest": {"sha256": sha256_file(p)}} for p in links],
        "verificationResult": "PASSED",
        "verifiedLevels": ["SLSA_BUILD_LEVEL_1"],
        "checks": checks,
    }
    ctx.add_evidence(
        "attestations/vsa.json",
        sign_statement(subjects=files, predicate_type=SLSA_VSA, predicate=predicate, signer=ctx.signer),
    )
    ctx.parameters.update({"checks": len(checks), "allowlist_extensions": list(allowlist.extensions),
                           "min_metrics": min_metrics, "max_metrics": max_metrics})
    return checks


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
    min_metrics: str = "",
    max_metrics: str = "",
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
        min_metrics: metric minimums the model must reach (``roc_auc>=0.8``).
        max_metrics: metric maximums (``rmse<=3``).
        principal: the resolved identity, when the caller already has it (overrides ``identity``).

    Returns:
        The link written and the checks that passed.

    Raises:
        VerificationError: anything does not verify; the pipeline stops here.
    """
    step = "verify_chain"
    with open_step(step, layout_sha256=layout_sha256, signer=signer, chains=[Path(chain_in)],
                   chain_out=Path(chain_out), identity=_identity(identity, allow_service_account_key),
                   principal=principal) as ctx:
        model, _ = ctx.receive("model", Path(model_dir))
        checks = gate_work(ctx, model=model, allowlist_extra=allowlist_extra,
                           min_metrics=min_metrics, max_metrics=max_metrics)
        # The explicit chain's gate attests every earlier product as its material.
        ctx.materials.update({
            name: digest for record in ctx.records.values() for name, digest in record.products.items()
            if not name.startswith("dataset/")
        })
        # The dataset as the last step that produced it attested it (ingest, or a transform after it).
        ctx.materials.update(products_with_prefix(ctx.records, "dataset/")[1])
        link = ctx.sign()
    return StepOutcome(step=step, link=Path(chain_out) / LINKS_DIR / link.name, metadata={"checks": checks})


def register_work(
    ctx: StepContext,
    *,
    model: Path,
    model_files: Mapping[str, str],
    model_name: str,
    registry: ModelRegistry,
) -> dict[str, Any]:
    """Register the verified model and its evidence bundle (the work of :func:`register_model`).

    Args:
        ctx: the open step (the chain so far verified, the model received).
        model: the verified model folder.
        model_files: its logical names and digests.
        model_name: the registry model name.
        registry: the registry backend.

    Returns:
        The registration facts (``reference``, ``model_sha256``, ``created``, ``bundle``, ``model``).

    Raises:
        ArtifactRefused: no passing verification summary of the gate for this model.
        VerificationError: the model or its attestations do not verify.

    Side effects:
        Writes the model and its final evidence bundle into the registry.
    """
    # Registration needs the gate's summary, whatever the layout says: a layout
    # without a gate step still registers nothing unverified.
    if not any("attestations/vsa.json" in r.products for r in ctx.records.values()):
        raise ArtifactRefused("attestations/vsa.json", "no verification summary: the gate did not pass")
    prefix = model_prefix(ctx)
    files, model_checks, _ = verify_model_evidence(ctx.chain, ctx.layout, ctx.records, model, prefix=prefix)
    verified = VerificationResult(
        layout_sha256=ctx.layout_sha256, owner_keyid="", steps=list(ctx.records.values()),
        model_files=files, checks=ctx.checks + model_checks,
    )
    ctx.parameters.update({"model_name": model_name})
    existing = registry.find(model_name, model_sha256=verified.model_sha256)
    if existing is not None:
        # Idempotent: the same model digest is never registered twice.
        return _publish_outcome(ctx, {"reference": existing.reference, "model_sha256": existing.model_sha256,
                                      "created": False, "bundle": existing.bundle_location,
                                      "model": existing.model_location, **_resource_metadata(registry, existing.reference)})
    pending = registry.prepare(model_name, model_sha256=verified.model_sha256)
    ctx.parameters["reference"] = pending.reference
    staging = ctx.private_dir() / "bundle"
    shutil.copytree(ctx.chain, staging)
    gate_bundle = manifest_digest(digest_tree(ctx.chain))
    entry = {
        "reference": pending.reference,
        "model": {"location": pending.model_location, "sha256": verified.model_sha256, "files": dict(files)},
        "evidence": {"location": pending.bundle_location, "verified_bundle_sha256": gate_bundle},
        "run": _run_id(ctx.chain),
        "registry": registry_identity(registry, pending),
    }
    ctx.chain = staging
    ctx.add_evidence("registry/entry.json", entry)
    link = ctx.sign()
    # The unsigned index only helps find files; nothing trusts it for a digest.
    write_atomic(staging / BUNDLE_INDEX, (json.dumps({
        "format": "chainproof-bundle/v1",
        "run": entry["run"],
        "steps": [s.name for s in ctx.layout.steps],
        "model": {"location": os.path.relpath(pending.model_location, pending.bundle_location),
                  "sha256": verified.model_sha256, "prefix": prefix},
        "registered": pending.reference,
    }, indent=2, sort_keys=True) + "\n").encode())
    registered = registry.commit(pending, model_dir=model, bundle_dir=staging, verified=verified)
    return _publish_outcome(ctx, {"reference": registered.reference, "model_sha256": registered.model_sha256,
                                  "created": True, "bundle": registered.bundle_location,
                                  "model": registered.model_location,
                                  "link": str(Path(registered.bundle_location) / LINKS_DIR / link.name),
                                  **_resource_metadata(registry, registered.reference)})


def _publish_outcome(ctx: Any, outcome: dict[str, Any]) -> dict[str, Any]:
    """Write what was registered where the submitter looks for it (``RunConfig.outcome_uri``).

    The file only points: the submitter verifies the registered version against the owner
    key and checks that its signed ``registry/entry.json`` names this run.
    """
    settings = getattr(ctx, "settings", None)
    uri = str(getattr(settings, "outcome_uri", "") or "")
    if not uri or settings is None:
        return outcome
    doc = {"run": settings.run, **{k: outcome[k] for k in ("reference", "model_sha256", "created", "bundle")}}
    data = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()
    if uri.startswith("gs://"):
        from google.cloud import storage

        bucket, _, name = uri[len("gs://"):].partition("/")
        storage.Client().bucket(bucket).blob(name).upload_from_string(data, content_type="application/json")
    elif uri.startswith("file://"):
        from urllib.parse import unquote, urlparse

        path = Path(unquote(urlparse(uri).path))
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data)
    else:
        raise InputError(f"outcome_uri {uri!r}: expected gs:// or file://")
    return outcome


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
    with open_step(step, layout_sha256=layout_sha256, signer=signer, chains=[Path(chain_in)],
                   identity=_identity(identity, allow_service_account_key), principal=principal) as ctx:
        ctx.run_material()
        model, files = ctx.receive("model", Path(model_dir))
        # The explicit chain's registration attests the attestations it relies on.
        for record in ctx.records.values():
            ctx.materials.update({k: v for k, v in record.products.items() if k.startswith("attestations/")})
        metadata = register_work(ctx, model=model, model_files=files, model_name=model_name,
                                 registry=registry if registry is not None else registry_for(registry_uri))
    link = Path(metadata.pop("link")) if "link" in metadata else _existing_link(metadata["bundle"], step)
    return StepOutcome(step=step, link=link, metadata=metadata)


def _existing_link(bundle: str, step: str) -> Path:
    links = Path(bundle, LINKS_DIR)
    # A remote bundle (gs://) has no local link file to point at.
    return next(links.glob(f"{step}.*.link"), links) if links.is_dir() else links


def _resource_metadata(registry: ModelRegistry, reference: str) -> dict[str, str]:
    """The ``google.VertexModel`` fields (resourceName, API URI) of a Vertex registration."""
    resource_uri = getattr(registry, "resource_uri", None)
    if resource_uri is None:
        return {}
    name, uri = resource_uri(reference)
    return {"resourceName": name, "resourceUri": uri}

