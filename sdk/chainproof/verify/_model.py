"""Checks (9)-(12) and (18): the delivered model, its signature, provenance, summary and SBOM."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from in_toto.models.layout import Layout
from securesystemslib.signer import Key

from chainproof.digests import digest_tree
from chainproof.errors import (
    ArtifactRefused,
)
from chainproof.verify._evidence import check_artifacts, products_with_prefix
from chainproof.verify._types import SLSA_PROVENANCE, SLSA_VSA, StepRecord

__all__ = ['verify_model_evidence']


def _layout_key(layout: Layout, keyid: str) -> Key:
    return Key.from_dict(keyid, dict(layout.keys[keyid]))


def _statement_subjects(statement: Mapping[str, Any], what: str) -> dict[str, str]:
    subjects: dict[str, str] = {}
    for item in statement.get("subject") or []:
        if not isinstance(item, dict) or not isinstance(item.get("digest"), dict):
            raise ArtifactRefused(what, "malformed subject")
        subjects[str(item.get("name"))] = str(item["digest"].get("sha256"))
    return subjects


def _verify_supply(bundle: Path, layout: Layout, record: StepRecord) -> str:
    from chainproof.attest import load_statement
    from chainproof.supply import VULNS_PRODUCT, check_vulns_policy, verify_sbom

    params = record.environment.get("parameters", {}) if isinstance(record.environment, dict) else {}
    subject = str(params.get("environment_sha256", ""))
    if not subject:
        raise ArtifactRefused("attestations/sbom.json", f"the link of {record.name} names no environment digest for it")
    key = _layout_key(layout, record.keyid)
    verify_sbom((bundle / "attestations" / "sbom.json").read_bytes(), subject, key=key)
    line = f"(18) attestations/sbom.json by {record.name} describes the environment sha256:{subject[:16]} its link names"
    if VULNS_PRODUCT in record.products:
        statement = load_statement((bundle / VULNS_PRODUCT).read_bytes(), key=key, what=VULNS_PRODUCT)
        check_vulns_policy(statement, expected_subject_digest=subject)
        line += "; attestations/vulns.json checked every package"
    return line


def verify_model_evidence(
    bundle: Path,
    layout: Layout,
    records: Mapping[str, StepRecord],
    model_path: Path,
    *,
    prefix: str = "model",
    progress: Any = None,
    checks: list[str] | None = None,
) -> tuple[dict[str, str], list[str], dict[str, str]]:
    """(9)-(12) Check the delivered model against the chain and its attestations.

    Args:
        bundle: the bundle (or in-pipeline chain) folder.
        layout: the verified layout.
        records: the verified steps.
        model_path: the delivered model folder.
        prefix: the model files' logical prefix (the training step's output name).
        progress: an object whose ``number`` is set to the check being run (for reports).
        checks: a list to append each passed check to as it passes (default: a new one).

    Returns:
        The model files (logical name to SHA-256), the checks that passed, and the
        attestations that verified (kind to file).

    Raises:
        VerificationError: the model, its signature, its provenance or its
            verification summary does not match the chain.
    """
    from chainproof.attest import load_statement, verify_model_signature

    checks = [] if checks is None else checks

    def at(number: str) -> None:
        if progress is not None:
            progress.number = number

    attestations: dict[str, str] = {}
    at("9")
    if not model_path.is_dir():
        raise ArtifactRefused(str(model_path), "model folder does not exist")
    # (9) The delivered model is exactly the model the chain attests.
    producer, attested_model = products_with_prefix(records, f"{prefix}/")
    delivered = digest_tree(model_path, prefix=prefix)
    check_artifacts(attested_model, delivered, producer=producer, what="model")
    checks.append(f"(9) {len(delivered)} model files match the products of {producer}")

    for record in records.values():
        if "attestations/sbom.json" in record.products:
            # (18) The SBOM (and the vulnerability scan) describe the environment the step's
            # link names, are signed by that step, and no package went unchecked.
            at("18")
            checks.append(_verify_supply(bundle, layout, record))
            attestations["sbom"] = "attestations/sbom.json"
            if "attestations/vulns.json" in record.products:
                attestations["vulns"] = "attestations/vulns.json"
        if "attestations/model.sig" in record.products:
            # (10) The OpenSSF Model Signing signature verifies with its step's key.
            at("10")
            verify_model_signature(model_path, bundle / "attestations" / "model.sig", _layout_key(layout, record.keyid))
            checks.append(f"(10) attestations/model.sig verifies over the model with {record.name}'s key")
            attestations["oms"] = "attestations/model.sig"
        if "attestations/provenance.json" in record.products:
            # (11) The SLSA provenance is signed by its step and its subject is the model.
            at("11")
            what = "attestations/provenance.json"
            statement = load_statement(
                (bundle / what).read_bytes(), key=_layout_key(layout, record.keyid), what=what
            )
            if statement.get("predicateType") != SLSA_PROVENANCE:
                raise ArtifactRefused(what, f"expected predicate {SLSA_PROVENANCE}, got {statement.get('predicateType')!r}")
            check_artifacts(_statement_subjects(statement, what), delivered, producer=what, what="model")
            checks.append(f"(11) {what} (SLSA v1) signed by {record.name}; its subject is the model")
            attestations["slsa"] = what
        if "attestations/vsa.json" in record.products:
            # (12) The verification summary says PASSED, for this model and this layout.
            at("12")
            what = "attestations/vsa.json"
            statement = load_statement(
                (bundle / what).read_bytes(), key=_layout_key(layout, record.keyid), what=what
            )
            if statement.get("predicateType") != SLSA_VSA:
                raise ArtifactRefused(what, f"expected predicate {SLSA_VSA}, got {statement.get('predicateType')!r}")
            result = (statement.get("predicate") or {}).get("verificationResult")
            if result != "PASSED":
                raise ArtifactRefused(what, f"expected verificationResult PASSED, got {result!r}")
            check_artifacts(_statement_subjects(statement, what), delivered, producer=what, what="model")
            checks.append(f"(12) {what} by {record.name}: PASSED for this model")
            attestations["vsa"] = what
    return delivered, checks, attestations
