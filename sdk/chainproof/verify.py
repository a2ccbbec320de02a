"""The chain verifier: the owner's layout, every link and rule, and the delivered files.

Example:
    >>> from chainproof.verify import verify_bundle  # doctest: +SKIP
    >>> result = verify_bundle("chainproof-work/registry/models/m/1/bundle",
    ...                        trusted_owner_keys=TrustStore(path).keys())
    >>> result.model_sha256

in-toto verifies the layout signature, the links, their signatures and the
artifact rules; it does not check the files that are finally delivered. The
verifier adds that, and it never trusts a key because the bundle carries it: the
owner key comes from the caller (a ``--owner-key`` or the local trust store).

The steps are numbered as in ``docs/verification.md``. The same code verifies a
*prefix* of the chain inside the pipeline (each step checks everything before it,
with the layout pinned by digest instead of the owner signature).
"""

from __future__ import annotations

import ast
import hashlib
import fnmatch
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from in_toto import exceptions as itx
from in_toto import verifylib
from in_toto.models.layout import Layout
from in_toto.models.link import FILENAME_FORMAT, Link
from in_toto.models.metadata import Envelope, Metadata
from securesystemslib.signer import Key, SSlibKey

from chainproof import sigstore_backend  # noqa: F401 - registers the keyless (sigstore-oidc) key type
from chainproof.digests import digest_tree, manifest_digest
from chainproof.errors import (
    ArtifactRefused,
    ChainError,
    DigestMismatch,
    InputError,
    VerificationError,
    LayoutError,
    PolicyViolation,
    SignatureError,
    UntrustedKey,
)

__all__ = [
    "BUNDLE_INDEX",
    "BUNDLED_PREFIXES",
    "LAYOUT_FILE",
    "LINKS_DIR",
    "KEYS_DIR",
    "StepRecord",
    "VerificationResult",
    "VerifyOptions",
    "check_artifacts",
    "check_identity_policy",
    "load_layout",
    "products_with_prefix",
    "verify_bundle",
    "verify_chain_links",
    "verify_model_evidence",
    "verify_pinned_chain",
    "verify_layout_signature",
]

LAYOUT_FILE = "root.layout"
LINKS_DIR = "links"
KEYS_DIR = "keys"
BUNDLE_INDEX = "bundle.json"

#: Products that travel inside the evidence bundle (the rest, the dataset and
#: the model, live at their own location and are checked there).
BUNDLED_PREFIXES = ("run/", "attestations/", "reports/", "metrics/", "registry/")

_NOT_EVIDENCE = {LAYOUT_FILE, BUNDLE_INDEX}

SLSA_PROVENANCE = "https://slsa.dev/provenance/v1"
#: The gate's signed model card (chainproof.card), when the chain carries one.
CARD_PRODUCT = "attestations/model-card.json"
SLSA_VSA = "https://slsa.dev/verification_summary/v1"


@dataclass(frozen=True)
class VerifyOptions:
    """Limits the verifier enforces before it parses anything.

    Attributes:
        max_links: the most link files a bundle may hold.
        max_metadata_bytes: the largest layout or link file accepted.
    """

    max_links: int = 64
    max_metadata_bytes: int = 4_000_000


@dataclass(frozen=True)
class StepRecord:
    """One verified step, as its link records it.

    Attributes:
        name: the step name.
        keyid: the functionary key that signed the link.
        materials: logical name to SHA-256.
        products: logical name to SHA-256.
        environment: the chainproof section of the link's environment (principal,
            signer, version, parameters).
    """

    name: str
    keyid: str
    materials: dict[str, str]
    products: dict[str, str]
    environment: dict[str, Any]

    @property
    def principal(self) -> str:
        """The principal name the step ran as, or ``unknown``."""
        p = self.environment.get("principal") or {}
        return str(p.get("name", "unknown")) if isinstance(p, dict) else "unknown"


@dataclass(frozen=True)
class VerificationResult:
    """What was verified, and how.

    Attributes:
        layout_sha256: digest of the verified ``root.layout``.
        owner_keyid: the trusted key that signed the layout (empty for a digest-pinned prefix check).
        steps: the verified steps in layout order.
        model_files: model file names (``model/...``) to SHA-256, as delivered and verified.
        checks: every check that passed, in order, numbered as in ``docs/verification.md``.
        attestations: which model attestations verified (``oms``, ``slsa``, ``vsa``) and their files.
    """

    layout_sha256: str
    owner_keyid: str
    steps: list[StepRecord]
    model_files: dict[str, str] = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)
    attestations: dict[str, str] = field(default_factory=dict)

    @property
    def model_sha256(self) -> str:
        """One digest for the whole model: the manifest digest of its files."""
        return manifest_digest(self.model_files)

    @property
    def development_key_steps(self) -> list[str]:
        """The steps whose link says they were signed with a development key."""
        out = []
        for record in self.steps:
            signer = record.environment.get("signer") or {}
            if isinstance(signer, dict) and signer.get("development"):
                out.append(record.name)
        return out

    def step(self, name: str) -> StepRecord:
        """Return a verified step by name.

        Raises:
            KeyError: no such step.
        """
        for record in self.steps:
            if record.name == name:
                return record
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form (``--format json``)."""
        return {
            "verified": True,
            "layout_sha256": self.layout_sha256,
            "owner_keyid": self.owner_keyid,
            "model_sha256": self.model_sha256 if self.model_files else None,
            "model_files": self.model_files,
            "steps": [
                {
                    "name": s.name,
                    "keyid": s.keyid,
                    "principal": s.environment.get("principal"),
                    "signer": s.environment.get("signer"),
                    "materials": s.materials,
                    "products": s.products,
                }
                for s in self.steps
            ],
            "checks": self.checks,
            "attestations": self.attestations,
            "development_keys": bool(self.development_key_steps),
            "development_key_steps": self.development_key_steps,
        }


def _read_limited(path: Path, limit: int, what: str) -> bytes:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ArtifactRefused(what, f"missing ({exc.strerror})") from exc
    if size > limit:
        raise ArtifactRefused(what, f"{size} bytes is over the {limit}-byte limit")
    return path.read_bytes()


def load_layout(data: bytes, *, what: str = LAYOUT_FILE) -> tuple[Envelope, Layout]:
    """Parse a signed layout without trusting it.

    Args:
        data: the ``root.layout`` bytes.
        what: the name errors report.

    Returns:
        The DSSE envelope and its layout.

    Raises:
        LayoutError: not a DSSE-signed in-toto layout.
    """
    try:
        metadata = Metadata.from_dict(json.loads(data))
        layout = metadata.get_payload()
    except Exception as exc:  # JSON, format and in-toto errors all mean "not a layout"
        raise LayoutError(f"{what}: not a signed in-toto layout ({type(exc).__name__})") from exc
    if not isinstance(metadata, Envelope) or not isinstance(layout, Layout):
        raise LayoutError(f"{what}: expected a DSSE-signed in-toto layout")
    return metadata, layout


def verify_layout_signature(
    envelope: Envelope, trusted_keys: Mapping[str, SSlibKey], *, what: str = LAYOUT_FILE
) -> str:
    """(2) Check that a trusted owner key signed the layout.

    Args:
        envelope: the layout envelope.
        trusted_keys: the trusted owner keys by key id.
        what: the name errors report.

    Returns:
        The key id of the trusted key whose signature verified.

    Raises:
        UntrustedKey: no signature is by a trusted key (names the signing key id).
        SignatureError: a trusted key's signature does not verify (the layout was edited).
    """
    signer_ids = [sig.keyid for sig in envelope.signatures.values()]
    if not trusted_keys:
        raise UntrustedKey(what, signer_ids[0] if signer_ids else "none", [])
    candidates = [k for k in signer_ids if k in trusted_keys]
    if not candidates:
        raise UntrustedKey(what, signer_ids[0] if signer_ids else "none", sorted(trusted_keys))
    for keyid in candidates:
        key = trusted_keys[keyid]
        try:
            envelope.verify_signature(key.to_dict() | {"keyid": keyid})
            return str(keyid)
        except itx.SignatureVerificationError:
            continue
    raise SignatureError(
        f"{what}: signature by owner key {candidates[0][:16]} does not verify: "
        "the layout was changed after it was signed"
    )


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _diagnose_rule_failure(
    step: str,
    kind: str,
    message: str,
    layout: Layout,
    links: Mapping[str, Link],
) -> tuple[str, str]:
    """Turn in-toto's DISALLOW/REQUIRE message into expected-vs-found facts and the first artifact.

    in-toto's rule errors carry only a message; its artifact list is read from it here, once.
    """
    found = re.search(r"matched the following artifacts: (\[.*?\])", message)
    if not found:
        return f"{kind}: {message}", ""
    try:
        artifacts = [str(a) for a in ast.literal_eval(found.group(1))]
    except (ValueError, SyntaxError):
        return f"{kind}: {message}", ""
    spec = next(s for s in layout.steps if s.name == step)
    rules = spec.expected_materials if kind == "materials" else spec.expected_products
    own = getattr(links[step], kind)
    facts = []
    for name in artifacts:
        reason = "not allowed by the layout"
        for rule in rules:
            if rule[0].upper() != "MATCH" or not fnmatch.fnmatch(name, rule[1]):
                continue
            src = rule[-1]
            source = links.get(src)
            if source is None:
                continue
            theirs = source.products.get(name, {}).get("sha256")
            ours = own.get(name, {}).get("sha256")
            if theirs is None:
                reason = f"not a product of {src}"
            elif theirs != ours:
                reason = f"expected sha256:{theirs} (product of {src}), got sha256:{ours}"
            break
        facts.append(f"{name}: {reason}")
    return f"{kind}: " + "; ".join(facts), (artifacts[0] if artifacts else "")


def _describe_unknown_links(step: str, link_dir: Path) -> str:
    others = sorted(p.name for p in link_dir.glob(f"{step}.*.link"))
    if not others:
        return "no link found (the step did not run, or its link was removed)"
    keyids = []
    for name in others:
        try:
            metadata = Metadata.load(str(link_dir / name))
            keyids += [s.keyid[:16] for s in getattr(metadata, "signatures", {}).values()]
        except Exception:  # noqa: BLE001 - an unreadable file is reported by name below
            keyids.append(f"unreadable {name}")
    return (
        f"no link signed by an authorized key; found {', '.join(others)} "
        f"signed by key {', '.join(keyids)}, which the layout does not authorize for this step"
    )


def _scoped_layout(layout: Layout, steps: list[Any]) -> Layout:
    return Layout(steps=steps, inspect=[], keys=layout.keys, expires=layout.expires, readme=layout.readme)


def verify_chain_links(
    layout: Layout,
    link_dir: Path,
    *,
    upto: str | None = None,
    steps: Sequence[str] | None = None,
    options: VerifyOptions = VerifyOptions(),
) -> dict[str, StepRecord]:
    """(3)-(7) Verify the links of the layout's steps (all, or those before ``upto``).

    Uses in-toto's own verification functions on the (possibly truncated) layout:
    expiry, link loading, signature thresholds, command alignment and artifact
    rules. Rules only look back along the chain, so a prefix verifies on its own.

    Args:
        layout: the trusted layout (its signature or digest already checked).
        link_dir: the folder of ``STEP.KEYID8.link`` files.
        upto: verify only the steps before this one (``None``: every step).
        steps: with ``upto``, verify only these earlier steps (a step's ancestors in a
            pipeline whose branches run in parallel).
        options: size limits.

    Returns:
        The verified steps by name.

    Raises:
        LayoutError: the layout expired or names an unknown ``upto`` step.
        ChainError: a link is missing, forged, or breaks a rule (names the step).
    """
    names = [s.name for s in layout.steps]
    if upto is not None and upto not in names:
        raise LayoutError(f"{LAYOUT_FILE}: the layout has no step {upto!r} (steps: {names})")
    selected = layout.steps[: names.index(upto)] if upto is not None else list(layout.steps)
    if upto is not None and steps is not None:
        unknown = sorted(set(steps) - {s.name for s in selected})
        if unknown:
            raise LayoutError(f"{LAYOUT_FILE}: {', '.join(unknown)} are not steps before {upto}")
        selected = [s for s in selected if s.name in set(steps)]
    steps_ = selected
    scoped = _scoped_layout(layout, steps_)

    # (3) The layout has not expired.
    try:
        verifylib.verify_layout_expiration(scoped)
    except itx.LayoutExpiredError as exc:
        raise LayoutError(f"{LAYOUT_FILE}: layout expired on {layout.expires}") from exc

    files = sorted(link_dir.glob("*.link")) if link_dir.is_dir() else []
    if len(files) > options.max_links:
        raise ArtifactRefused(str(link_dir), f"{len(files)} links is over the limit of {options.max_links}")
    for path in files:
        _read_limited(path, options.max_metadata_bytes, str(path))

    # (4) Every step has a link signed by its authorized functionary key.
    for step in steps_:
        try:
            verifylib.load_links_for_layout(_scoped_layout(layout, [step]), str(link_dir))
        except itx.LinkNotFoundError as exc:
            raise ChainError(step.name, _describe_unknown_links(step.name, link_dir)) from exc
        except Exception as exc:  # malformed link files
            raise ChainError(step.name, f"unreadable link ({_first_line(exc)})") from exc
    # Only the links the layout's functionaries could have written may be there: a decoy
    # link signed by anyone else would otherwise ride along (and be shown in reports).
    expected = {FILENAME_FORMAT.format(step_name=step.name, keyid=keyid) for step in steps_ for keyid in step.pubkeys}
    present = sorted(p.name for p in link_dir.iterdir()) if link_dir.is_dir() else []
    for name in present:
        if name not in expected:
            scope = f" before {upto}" if upto else ""
            raise ArtifactRefused(
                f"{LINKS_DIR}/{name}", f"not the link of an authorized functionary of the layout's steps{scope}"
            )
    metadata_by_step = verifylib.load_links_for_layout(scoped, str(link_dir))
    try:
        metadata_by_step = verifylib.verify_link_signature_thresholds(scoped, metadata_by_step)
    except itx.ThresholdVerificationError as exc:
        step = re.search(r"Step '([^']+)'", str(exc))
        name = step.group(1) if step else "?"
        raise ChainError(
            name, "link signature does not verify with the step's functionary key (forged or edited link)"
        ) from exc
    # Sublayouts are not part of a chainproof chain: a layout posing as a link is refused.
    links_by_step: dict[str, dict[str, Link]] = {}
    for name, by_key in metadata_by_step.items():
        links_by_step[name] = {}
        for keyid, metadata in by_key.items():
            payload = metadata.get_payload()
            if not isinstance(payload, Link):
                raise ChainError(name, "the link file holds a layout, not a link")
            links_by_step[name][keyid] = payload
    try:
        verifylib.verify_all_steps_command_alignment(scoped, links_by_step)
        verifylib.verify_threshold_constraints(scoped, links_by_step)
    except itx.ThresholdVerificationError as exc:
        raise ChainError("?", _first_line(exc)) from exc
    reduced: dict[str, Link] = verifylib.reduce_chain_links(links_by_step)
    for name, link in reduced.items():
        if link.name != name:
            raise ChainError(name, f"link is for step {link.name!r}, not {name!r}")

    # (5)-(6) Every step's materials and products satisfy the layout's rules:
    # materials MATCH their producers' products, nothing undeclared appears.
    for step in steps_:
        for kind, rules in (("materials", step.expected_materials), ("products", step.expected_products)):
            try:
                verifylib.verify_item_rules(step.name, kind, rules, reduced)
            except itx.RuleVerificationError as exc:
                reason, artifact = _diagnose_rule_failure(step.name, kind, _first_line(exc), scoped, reduced)
                raise ChainError(
                    step.name, reason, check="5" if kind == "materials" else "6", artifact=artifact
                ) from exc

    records: dict[str, StepRecord] = {}
    # A pipeline's steps may run in parallel branches: the layout then records each
    # step's parents (a signed extension), and a step must come after each of them.
    from chainproof.policy import step_parents

    parents = step_parents(layout)
    recorded_at: dict[str, str] = {}
    previous: str | None = None
    for step in steps_:
        link = reduced[step.name]
        # (7) Steps ran in the layout's order: a link recorded before its predecessor's
        # was made out of order (or replayed), whatever its artifacts say.
        env_all = link.environment.get("chainproof", {}) if isinstance(link.environment, dict) else {}
        recorded = str(env_all.get("recorded", "")) if isinstance(env_all, dict) else ""
        before = parents.get(step.name) if parents is not None else ([previous] if previous else [])
        for earlier in before or []:
            then = recorded_at.get(earlier, "")
            if recorded and then and recorded < then:
                raise ChainError(
                    step.name,
                    f"recorded at {recorded}, before {earlier} (recorded at {then}): steps out of order",
                    check="7",
                )
        recorded_at[step.name] = recorded
        previous = step.name
        keyid = next(iter(metadata_by_step[step.name]))
        env = link.environment.get("chainproof", {}) if isinstance(link.environment, dict) else {}
        records[step.name] = StepRecord(
            name=step.name,
            keyid=keyid,
            materials={k: v.get("sha256", "") for k, v in link.materials.items()},
            products={k: v.get("sha256", "") for k, v in link.products.items()},
            environment=dict(env) if isinstance(env, dict) else {},
        )
    return records


def check_identity_policy(
    layout: Layout,
    records: Mapping[str, StepRecord],
    *,
    key_files: bool = True,
) -> list[str]:
    """(13) Check who each step ran as against the layout's identity policy.

    Args:
        layout: the trusted layout (its ``expected_principals`` and
            ``allow_service_account_keys`` extensions).
        records: the verified steps.
        key_files: also refuse steps that ran with a service-account key file the
            layout does not allow (an operator's override is not the owner's consent).

    Returns:
        The checks that passed.

    Raises:
        PolicyViolation: a step ran as another principal than the layout pins, or with a
            service-account key file the layout does not allow (names the step and principals).
    """
    from chainproof.identity import uses_service_account_key
    from chainproof.policy import allows_service_account_key, expected_principal

    checks: list[str] = []
    pinned = 0
    for name, record in records.items():
        principal = record.environment.get("principal")
        doc = principal if isinstance(principal, dict) else {}
        actual = str(doc.get("name", "unknown"))
        expected = expected_principal(layout, name)
        if expected is not None:
            if actual != expected:
                raise PolicyViolation(
                    f"step {name}: ran as {actual} ({doc.get('kind', 'unknown')}), "
                    f"but the layout expects {expected}", step=name
                )
            pinned += 1
        if key_files and uses_service_account_key(doc) and not allows_service_account_key(layout, name):
            raise PolicyViolation(
                f"step {name}: ran as {actual} with a service-account key file "
                f"(override {doc.get('details', {}).get('override', 'none')!s} recorded in its link), "
                "and the layout does not allow service-account keys for this step", step=name,
            )
    checks.append(f"(13) {pinned} pinned step principals match the layout")
    if key_files:
        checks.append("(13) no step used a service-account key file the layout does not allow")
    return checks


def products_with_prefix(records: Mapping[str, StepRecord], prefix: str) -> tuple[str, dict[str, str]]:
    """Return the last step that produced artifacts under ``prefix`` and those products.

    Args:
        records: verified steps in layout order.
        prefix: a logical prefix such as ``model/``.

    Returns:
        (step name, logical name to SHA-256).

    Raises:
        ChainError: no step produced anything under the prefix.
    """
    last: tuple[str, dict[str, str]] | None = None
    for name, record in records.items():
        found = {k: v for k, v in record.products.items() if k.startswith(prefix)}
        if found:
            last = (name, found)
    if last is None:
        raise ChainError("?", f"no step of the chain produced any {prefix}* artifact")
    return last


def check_artifacts(
    expected: Mapping[str, str], actual: Mapping[str, str], *, producer: str, what: str
) -> None:
    """Check delivered files against attested products: same names, same digests.

    Args:
        expected: logical name to SHA-256, as attested by ``producer``.
        actual: logical name to SHA-256, as delivered.
        producer: the step whose link attests ``expected``.
        what: what the files are (``model``, ``dataset``), for the error.

    Raises:
        DigestMismatch: a file has other bytes than attested.
        ArtifactRefused: a file is missing or was added.
    """
    for name in sorted(expected):
        if name not in actual:
            raise ArtifactRefused(name, f"{what} file attested by {producer} is missing")
        if actual[name] != expected[name]:
            raise DigestMismatch(name, expected[name], actual[name], context=f"attested by {producer}")
    extra = sorted(set(actual) - set(expected))
    if extra:
        raise ArtifactRefused(extra[0], f"{what} file not attested by {producer} (added after it ran)")


def bundled_files(bundle_dir: Path) -> dict[str, str]:
    """Hash the evidence files a bundle carries (``run/``, ``attestations/``, ...).

    Args:
        bundle_dir: the bundle folder.

    Returns:
        Logical name to SHA-256 of every file outside ``root.layout``, ``links/``,
        ``keys/`` and ``bundle.json``.
    """
    files = {}
    for name, digest in digest_tree(bundle_dir).items():
        top = name.split("/", 1)[0]
        if name in _NOT_EVIDENCE or top in (LINKS_DIR, KEYS_DIR):
            continue
        files[name] = digest
    return files


def verify_bundled_evidence(bundle_dir: Path, records: Mapping[str, StepRecord]) -> list[str]:
    """(8) Check every evidence file the bundle carries against the link that produced it.

    Args:
        bundle_dir: the bundle folder.
        records: the verified steps.

    Returns:
        The logical names checked.

    Raises:
        DigestMismatch: an evidence file differs from its attested product.
        ArtifactRefused: an attested evidence file is missing, or an unattested one was added.
    """
    attested: dict[str, tuple[str, str]] = {}
    for name, record in records.items():
        for product, digest in record.products.items():
            if product.startswith(BUNDLED_PREFIXES):
                attested[product] = (name, digest)
    actual = bundled_files(bundle_dir)
    for product, (step, digest) in sorted(attested.items()):
        if product not in actual:
            raise ArtifactRefused(product, f"evidence produced by {step} is missing from the bundle")
        if actual[product] != digest:
            raise DigestMismatch(product, digest, actual[product], context=f"produced by {step}")
    extra = sorted(set(actual) - set(attested))
    if extra:
        raise ArtifactRefused(extra[0], "file in the bundle that no step of the chain produced")
    return sorted(attested)


def read_bundle_index(bundle_dir: Path) -> dict[str, Any]:
    """Read ``bundle.json`` (an unsigned index: used to locate files, never trusted for digests).

    Args:
        bundle_dir: the bundle folder.

    Returns:
        The index, or ``{}`` when there is none.

    Raises:
        InputError: the index is not a JSON object.
    """
    path = bundle_dir / BUNDLE_INDEX
    if not path.is_file():
        return {}
    try:
        doc = json.loads(_read_limited(path, 1_000_000, BUNDLE_INDEX))
    except ValueError as exc:
        raise InputError(f"{path}: not JSON") from exc
    if not isinstance(doc, dict):
        raise InputError(f"{path}: expected a JSON object")
    return doc


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


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
