"""Checks (0), (15), (16) and (17): a registered version is the verified chain, in the registry it names.

``verify_registered`` fetches a version's entry, evidence bundle and model as they are today (from a
local registry or Vertex AI), checks the bundle against the digest the registry recorded (0), runs
the whole verification on it, and then checks the registry entry against the chain: its model digest
(15), the attested ``registry/entry.json`` naming this reference (16), this registry and these
locations (17).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chainproof.digests import digest_tree, manifest_digest
from chainproof.verify._bundle import annotate_failure, verify_bundle
from chainproof.verify._types import VerificationResult

if TYPE_CHECKING:  # the registries import the verifier's types
    from chainproof.registry import ModelRegistry

__all__ = ["check_registry_binding", "verify_registered"]


def check_registry_binding(
    reference: str, attested: dict[str, Any], *, identity: dict[str, str], model_location: str, bundle_location: str
) -> str:
    """(17) The attested registry identity and locations are where the entry was actually read.

    Args:
        reference: the registry reference being verified.
        attested: the attested ``registry/entry.json``.
        identity: the identity of the registry the entry was read from.
        model_location: where the model was read from.
        bundle_location: where the bundle was read from.

    Returns:
        The check line.

    Raises:
        VerificationError: the chain registered into another registry, or other locations
            (names both).
    """
    from chainproof.errors import VerificationError

    recorded = attested.get("registry")
    if not isinstance(recorded, dict):
        raise VerificationError(
            f"registry/entry.json: the chain does not attest which registry it was written to; "
            f"read from {_describe_identity(identity)}"
        )
    if recorded != identity or not any(v for k, v in identity.items() if k != "kind"):
        raise VerificationError(
            f"registry/entry.json: the chain registered into {_describe_identity(recorded)}, "
            f"but {reference} was read from {_describe_identity(identity)}"
        )
    for what, attested_location, actual in (
        ("model", (attested.get("model") or {}).get("location"), model_location),
        ("evidence bundle", (attested.get("evidence") or {}).get("location"), bundle_location),
    ):
        if str(attested_location).rstrip("/") != str(actual).rstrip("/"):
            raise VerificationError(
                f"registry/entry.json: the chain registered the {what} at {attested_location}, "
                f"but {reference} read it from {actual}"
            )
    return f"(17) registry/entry.json attests {_describe_identity(identity)} and the locations the entry was read from"


def _describe_identity(identity: Any) -> str:
    if not isinstance(identity, dict):
        return repr(identity)
    if identity.get("kind") == "local":
        return f"local registry {identity.get('registry_id') or '(no identity)'}"
    if identity.get("kind") == "vertex":
        return (f"Vertex AI projects/{identity.get('project')}/locations/{identity.get('location')}"
                f"/models/{identity.get('model_id')}")
    return json.dumps(identity, sort_keys=True)


def verify_registered(
    reference: str,
    *,
    registry: ModelRegistry,
    trusted_owner_keys: Any,
    workdir: Path | None = None,
    fetch_options: Any = None,
    policy: Any = None,
    on_bundle: Any = None,
) -> VerificationResult:
    """Audit a registered version: fetch its entry, evidence bundle and model as they are today, verify.

    Args:
        reference: ``vertex://.../models/ID@VERSION`` or ``local://NAME@VERSION``.
        registry: the registry holding it.
        trusted_owner_keys: the owner keys to trust, by key id (never taken from the bundle).
        workdir: where to download to (default: a temporary folder, removed afterwards).
        fetch_options: :class:`chainproof.storage.FetchOptions` for remote locations.
        policy: the auditor's constraints (:class:`chainproof.auditor.AuditorPolicy`), if any.
        on_bundle: called with the resolved entry before anything is fetched (the CLI
            learns where the bundle is, to report a failure).

    Returns:
        The verification result, with the registry checks appended.

    Raises:
        VerificationError: the bundle is not the registered one, the model in storage is
            not the attested one (names the file), or the registry entry disagrees with the chain.

    Side effects:
        Reads the registry and downloads the bundle and model files.
    """
    from chainproof.errors import DigestMismatch, VerificationError
    from chainproof.storage import FetchOptions, fetch_tree

    entry = registry.resolve(reference)
    if on_bundle is not None:
        on_bundle(entry)
    options = fetch_options or FetchOptions()
    own_tmp = workdir is None
    base = Path(tempfile.mkdtemp(prefix="chainproof-audit-")) if workdir is None else Path(workdir)
    checks: list[str] = []
    number = "0"
    try:
        if "://" in entry.bundle_location:
            bundle, model = base / "bundle", base / "model"
            # The bundle is pinned by the digest the registry recorded for it.
            fetch_tree(entry.bundle_location + "/", dest_dir=bundle,
                       expected_manifest_sha256=entry.bundle_sha256, options=options)

            def _checked_below(_: Path) -> None:
                # No digest to pin the folder by here: verify_bundle step (8) checks every
                # model file against the chain before anything uses the download.
                return None

            fetch_tree(entry.model_location + "/", dest_dir=model, expected_manifest_sha256=None,
                       options=options, verify=_checked_below)
        else:
            bundle, model = Path(entry.bundle_location), Path(entry.model_location)
            actual = manifest_digest(digest_tree(bundle))
            if actual != entry.bundle_sha256:
                raise DigestMismatch(str(bundle), entry.bundle_sha256, actual, context="registered bundle")
        checks = [f"(0) {reference}: bundle {entry.bundle_location} matches its registered sha256:{entry.bundle_sha256[:16]}"]
        try:
            result = verify_bundle(bundle, trusted_owner_keys=trusted_owner_keys, model_dir=model, policy=policy)
        except VerificationError as exc:
            # The bundle's own checks passed after (0): report them all, in order.
            exc.passed_checks = [*checks, *getattr(exc, "passed_checks", [])]  # type: ignore[attr-defined]
            raise
        checks += result.checks
        number = "15"
        # (15) The registry entry's model digest is the verified model's.
        if entry.model_sha256 != result.model_sha256:
            raise DigestMismatch(f"{reference} model digest labels", entry.model_sha256, result.model_sha256,
                                 context="registry entry vs. the verified chain")
        checks.append(f"(15) registry entry records model sha256:{entry.model_sha256[:16]}, the verified model")
        number = "16"
        # (16) The attested registry/entry.json names this very version.
        attested = json.loads((bundle / "registry" / "entry.json").read_text())
        if attested.get("reference") != reference:
            raise VerificationError(
                f"registry/entry.json: the chain registered {attested.get('reference')!r}, not {reference!r}"
            )
        checks.append(f"(16) registry/entry.json (attested by register_model) names {reference}")
        number = "17"
        # (17) ... written to this very registry, at the locations it was read from.
        checks.append(check_registry_binding(
            reference, attested, identity=registry.identity_for(reference),  # type: ignore[attr-defined]
            model_location=entry.model_location, bundle_location=entry.bundle_location,
        ))
        return VerificationResult(
            layout_sha256=result.layout_sha256, owner_keyid=result.owner_keyid, steps=result.steps,
            model_files=result.model_files, checks=checks, attestations=result.attestations,
        )
    except VerificationError as exc:
        if not hasattr(exc, "failed_check"):
            annotate_failure(exc, passed=checks, number=number)
        raise
    finally:
        if own_tmp:
            shutil.rmtree(base, ignore_errors=True)
