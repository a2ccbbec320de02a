"""The whole verification, in the order of docs/verification.md (with (19) and (14))."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from in_toto.models.layout import Layout
from securesystemslib.signer import SSlibKey

from chainproof.errors import (
    ArtifactRefused,
    ChainError,
    DigestMismatch,
    InputError,
    LayoutError,
    VerificationError,
)
from chainproof.verify._evidence import read_bundle_index, verify_bundled_evidence
from chainproof.verify._identity import check_identity_policy
from chainproof.verify._layout import load_layout, verify_layout_signature
from chainproof.verify._links import verify_chain_links
from chainproof.verify._model import _layout_key, verify_model_evidence
from chainproof.verify._types import (
    CARD_PRODUCT,
    LAYOUT_FILE,
    LINKS_DIR,
    StepRecord,
    VerificationResult,
    VerifyOptions,
    _read_limited,
    _sha256_bytes,
)

__all__ = ['annotate_failure', 'verify_bundle', 'verify_pinned_chain']


def verify_pinned_chain(
    chain_dir: str | Path,
    *,
    layout_sha256: str,
    upto: str | None,
    steps: Sequence[str] | None = None,
    options: VerifyOptions = VerifyOptions(),
) -> tuple[Layout, dict[str, StepRecord], list[str]]:
    """Verify a chain in progress inside the pipeline, with the layout pinned by digest.

    Inside the pipeline no step holds the owner key: the layout is trusted because
    its SHA-256 equals the one the owner's submission pinned as a parameter.

    Args:
        chain_dir: the chain folder handed from step to step.
        layout_sha256: the pinned digest of ``root.layout``.
        upto: verify the steps before this one.
        steps: with ``upto``, only these earlier steps (the running step's ancestors).
        options: size limits.

    Returns:
        The layout, the verified steps, and the checks that passed.

    Raises:
        LayoutError: the layout is not the pinned one.
        VerificationError: any link, rule or evidence file fails.
    """
    chain = Path(chain_dir)
    layout_bytes = _read_limited(chain / LAYOUT_FILE, options.max_metadata_bytes, LAYOUT_FILE)
    actual = _sha256_bytes(layout_bytes)
    if actual != layout_sha256:
        raise DigestMismatch(LAYOUT_FILE, layout_sha256, actual, context="pinned layout")
    _, layout = load_layout(layout_bytes)
    checks = [f"(1)-(2) {LAYOUT_FILE} matches the pinned sha256:{layout_sha256[:16]}"]
    records = verify_chain_links(layout, chain / LINKS_DIR, upto=upto, steps=steps, options=options)
    checks.append(f"(3)-(7) {len(records)} earlier links verified against the layout")
    # Inside the pipeline only the principal pins are enforced: a key-file override is
    # the operator's explicit choice, recorded in the link and judged by the auditor.
    checks += check_identity_policy(layout, records, key_files=False)
    evidence = verify_bundled_evidence(chain, records)
    checks.append(f"(8) {len(evidence)} evidence files match their attested digests")
    return layout, records, checks


class _Policy(Protocol):
    def verify(self, result: VerificationResult, bundle: Path) -> list[str]: ...


def verify_bundle(
    bundle_dir: str | Path,
    *,
    trusted_owner_keys: Mapping[str, SSlibKey],
    model_dir: str | Path | None = None,
    policy: _Policy | None = None,
    options: VerifyOptions = VerifyOptions(),
) -> VerificationResult:
    """Verify an evidence bundle end to end, against a trusted owner key.

    Args:
        bundle_dir: the bundle folder (``root.layout``, ``links/``, ``keys/``, ...).
        trusted_owner_keys: the owner keys to trust, by key id; never taken from the bundle.
        model_dir: the delivered model folder; default: the location ``bundle.json`` records.
        policy: the auditor's own constraints (:class:`chainproof.auditor.AuditorPolicy`),
            checked last as step (14).
        options: size limits.

    Returns:
        What was verified.

    Raises:
        VerificationError: any check failed (the subclass names which, and where).
        InputError: the bundle or model folder is missing or malformed.
    """
    bundle = Path(bundle_dir)
    if not bundle.is_dir():
        raise InputError(f"{bundle}: not a bundle folder")
    if not (bundle / LAYOUT_FILE).is_file():
        raise InputError(f"{bundle}: no {LAYOUT_FILE}; not an evidence bundle")
    checks: list[str] = []
    progress = _Progress(checks)
    try:
        return _verify_bundle(bundle, trusted_owner_keys, model_dir, policy, options, checks, progress)
    except VerificationError as exc:
        annotate_failure(exc, passed=checks, number=progress.number)
        raise


class _Progress:
    """The number of the check being run, for the report of a failure."""

    def __init__(self, checks: list[str]) -> None:
        self.checks, self.number = checks, "1"


def annotate_failure(exc: BaseException, *, passed: list[str], number: str) -> None:
    """Record on a verification error which checks passed before it and which check failed.

    Reports read ``passed_checks`` and ``failed_check``; a policy failure also lists the
    policy's own passed constraints. An error annotated by an inner verification keeps
    the inner check number.

    Args:
        exc: the error.
        passed: the checks that passed, in order.
        number: the failed check's number as in ``docs/verification.md``.
    """
    if not hasattr(exc, "failed_check"):
        exc.failed_check = number  # type: ignore[attr-defined]
    extra = list(getattr(exc, "passed", []) or [])
    exc.passed_checks = [*passed, *[c for c in extra if c not in passed]]  # type: ignore[attr-defined]


def _verify_bundle(
    bundle: Path,
    trusted_owner_keys: Mapping[str, SSlibKey],
    model_dir: str | Path | None,
    policy: _Policy | None,
    options: VerifyOptions,
    checks: list[str],
    progress: _Progress,
) -> VerificationResult:
    # (1) The layout parses and is within limits.
    layout_bytes = _read_limited(bundle / LAYOUT_FILE, options.max_metadata_bytes, LAYOUT_FILE)
    envelope, layout = load_layout(layout_bytes)
    checks.append(f"(1) {LAYOUT_FILE} is a DSSE-signed in-toto layout with {len(layout.steps)} steps")

    # (2) A trusted owner key signed it. keys/owner.pub in the bundle is never consulted.
    progress.number = "2"
    owner_keyid = verify_layout_signature(envelope, trusted_owner_keys)
    checks.append(f"(2) layout signed by trusted owner key {owner_keyid[:16]}")

    # (3)-(7) in-toto: expiry, links, signatures, rules; and the steps' order.
    progress.number = "3-7"
    try:
        records = verify_chain_links(layout, bundle / LINKS_DIR, options=options)
    except LayoutError as exc:
        progress.number = "3"
        raise exc
    except ChainError as exc:
        progress.number = exc.check
        raise exc
    except ArtifactRefused as exc:
        progress.number = "4"
        raise exc
    checks.append(f"(3) layout valid until {layout.expires}")
    checks.append(f"(4) {len(records)} links signed by their steps' functionary keys")
    checks.append("(5) every material matches the product of the step that made it")
    checks.append("(6) every product is allowed by the layout; nothing else appears")
    checks.append("(7) the steps' links were recorded in the layout's order")

    # (8) The evidence the bundle carries is the evidence the links attest.
    progress.number = "8"
    evidence = verify_bundled_evidence(bundle, records)
    checks.append(f"(8) {len(evidence)} evidence files match their attested digests")

    # (9)-(12) The delivered model, its signature, provenance and verification summary.
    progress.number = "9"
    if model_dir is None:
        index = read_bundle_index(bundle)
        model = index.get("model")
        recorded = model.get("location") if isinstance(model, dict) else None
        if not recorded:
            raise InputError(f"{bundle}: bundle.json records no model location; pass --model")
        model_path = Path(str(recorded))
        if not model_path.is_absolute():
            model_path = (bundle / model_path).resolve()
    else:
        model_path = Path(model_dir)
    from chainproof.policy import layout_extensions

    prefix = str(layout_extensions(layout).get("model_prefix") or "model")
    delivered, _, attestations = verify_model_evidence(
        bundle, layout, records, model_path, prefix=prefix, progress=progress, checks=checks
    )

    # (13) Each step ran as the principal the layout pins, and without a key file.
    progress.number = "13"
    checks += check_identity_policy(layout, records)

    result = VerificationResult(
        layout_sha256=_sha256_bytes(layout_bytes),
        owner_keyid=owner_keyid,
        steps=list(records.values()),
        model_files=delivered,
        checks=checks,
        attestations=attestations,
    )
    # (19) The model card, when the chain carries one: signed by the step that made it, about
    # this very model and chain, its figures equal to the attested reports.
    card_step = next((r for r in records.values() if CARD_PRODUCT in r.products), None)
    if card_step is not None:
        progress.number = "19"
        from chainproof.card import verify_card

        verify_card((bundle / CARD_PRODUCT).read_bytes(), result, bundle,
                    {card_step.keyid: _layout_key(layout, card_step.keyid)})
        result.checks.append(f"(19) {CARD_PRODUCT} by {card_step.name}: about this model, its figures the attested ones")
        result.attestations["card"] = CARD_PRODUCT
    # (14) The auditor's own constraints, beyond the owner's layout.
    progress.number = "14"
    if policy is not None:
        result.checks.extend(policy.verify(result, bundle))
    return result
