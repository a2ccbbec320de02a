"""The auditor's own constraints, on top of the owner's layout.

Example:
    >>> from chainproof.auditor import AuditorPolicy
    >>> policy = AuditorPolicy.from_dict({"version": 1, "required_attestations": ["oms", "slsa", "vsa"]})
    >>> [type(c).__name__ for c in policy.constraints]
    ['RequiredAttestations']

The owner's layout says how the pipeline must run; the auditor may demand more:
which principals ran which step, which signing keys, which component images, how
old the evidence may be, which scan verdicts, which attestations. A policy file is
YAML or JSON; unknown fields are an error (a typo must not silently skip a check),
and an empty policy checks nothing, so it is refused. Each constraint raises
:class:`~chainproof.errors.PolicyViolation` naming the step and expected vs found,
and returns the line that ``verify`` lists among its checks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol

from chainproof.errors import InputError, PolicyViolation, PolicyViolations
from chainproof.verify import VerificationResult

__all__ = [
    "AllowedImages",
    "AllowedSignerKeys",
    "AuditorPolicy",
    "Constraint",
    "ExpectedPrincipals",
    "MaxAge",
    "NoDevelopmentKeys",
    "POLICY_SCHEMA",
    "RequiredAttestations",
    "RequiredScanVerdicts",
]


class Constraint(Protocol):
    """One auditor constraint."""

    def verify(self, result: VerificationResult, bundle: Path) -> str:
        """Raise ``PolicyViolation`` unless the verified chain satisfies the constraint.

        Returns:
            The description of what was checked.
        """
        ...


def _step_names(result: VerificationResult) -> set[str]:
    return {s.name for s in result.steps}


def _check_steps_exist(result: VerificationResult, steps: Mapping[str, Any], what: str) -> None:
    unknown = sorted(set(steps) - _step_names(result) - {"*"})
    if unknown:
        raise PolicyViolation(f"auditor policy {what}: the chain has no step {', '.join(unknown)}")


@dataclass(frozen=True)
class ExpectedPrincipals:
    """Each named step must have run as this principal (service-account email, subject)."""

    principals: Mapping[str, str]

    def verify(self, result: VerificationResult, bundle: Path) -> str:
        """Compare each step's recorded principal with the expected one."""
        _check_steps_exist(result, self.principals, "expected_principals")
        for step in result.steps:
            expected = self.principals.get(step.name, self.principals.get("*"))
            if expected is not None and step.principal != expected:
                raise PolicyViolation(f"step {step.name}: ran as {step.principal}, expected {expected}", step=step.name)
        return f"(14) principals as expected for {', '.join(sorted(self.principals))}"


@dataclass(frozen=True)
class AllowedSignerKeys:
    """Each named step's link must be signed by one of these key ids."""

    keys: Mapping[str, Sequence[str]]

    def verify(self, result: VerificationResult, bundle: Path) -> str:
        """Compare each step's signing key id with the allowed ones (full ids or 16+ character prefixes)."""
        _check_steps_exist(result, self.keys, "allowed_signer_keys")
        for step in result.steps:
            allowed = self.keys.get(step.name, self.keys.get("*"))
            if allowed is None:
                continue
            if not any(step.keyid.startswith(k) for k in allowed):
                raise PolicyViolation(
                    f"step {step.name}: signed by key {step.keyid[:16]}, which the auditor policy does not allow "
                    f"(allowed: {', '.join(k[:16] for k in allowed)})"
                )
        return f"(14) signer keys allowed for {', '.join(sorted(self.keys))}"


@dataclass(frozen=True)
class NoDevelopmentKeys:
    """No step may be signed by a key marked as a development key.

    The mark is the signer's own description in the link (from the key ring that made
    the key), which a careless or hostile operator can drop: it catches mistakes, not
    attacks. To *prove* which keys signed, pin them with :class:`AllowedSignerKeys`.
    """

    development_owner_keys: frozenset[str] = frozenset()

    def verify(self, result: VerificationResult, bundle: Path) -> str:
        """Refuse links whose signer says ``development: true``, and a development owner key."""
        if result.owner_keyid and result.owner_keyid in self.development_owner_keys:
            raise PolicyViolation(
                f"{'root.layout'}: signed by owner key {result.owner_keyid[:16]}, which the trust store records "
                "as a development key"
            )
        for step in result.steps:
            signer = step.environment.get("signer") or {}
            if isinstance(signer, dict) and signer.get("development"):
                raise PolicyViolation(f"step {step.name}: signed with a development key ({str(signer.get('keyid', ''))[:16]})",
                                      step=step.name)
        return "(14) no development keys"


def _recorded_images(result: VerificationResult, bundle: Path) -> dict[str, str]:
    images: dict[str, str] = {}
    for step in result.steps:
        image = (step.environment.get("parameters") or {}).get("component_image")
        if image:
            images[step.name] = str(image)
    provenance = bundle / "attestations" / "provenance.json"
    if "slsa" in result.attestations and provenance.is_file():
        import base64

        statement = json.loads(base64.b64decode(json.loads(provenance.read_text())["payload"]))
        for dep in statement["predicate"]["buildDefinition"].get("resolvedDependencies", []):
            if dep.get("name") == "component-image":
                images["provenance"] = str(dep.get("uri", ""))
    return images


@dataclass(frozen=True)
class AllowedImages:
    """Every recorded component image must be pinned to one of these digests."""

    digests: Sequence[str]

    def verify(self, result: VerificationResult, bundle: Path) -> str:
        """Compare the image digests the links and provenance record with the allowed ones."""
        images = _recorded_images(result, bundle)
        if not images:
            raise PolicyViolation("component images: the chain records no image; the auditor policy requires pinned images")
        allowed = {d if d.startswith("sha256:") else f"sha256:{d}" for d in self.digests}
        for where, image in sorted(images.items()):
            digest = "sha256:" + image.rsplit("@sha256:", 1)[1] if "@sha256:" in image else ""
            if digest not in allowed:
                raise PolicyViolation(f"{where}: image {image} is not an allowed digest ({', '.join(sorted(allowed))})")
        return f"(14) {len(images)} recorded component images are allowed digests"


_DURATION = re.compile(r"(\d+)\s*([smhd])")


def parse_duration(text: str | int) -> timedelta:
    """Parse ``90d``, ``12h``, ``30m``, ``45s`` (or a number of seconds).

    Raises:
        InputError: not a duration.
    """
    if isinstance(text, int):
        return timedelta(seconds=text)
    m = _DURATION.fullmatch(str(text).strip())
    if not m:
        raise InputError(f"auditor policy max_age: expected e.g. 90d, 12h or 30m, got {text!r}")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
    try:
        return timedelta(**{unit: int(m.group(1))})
    except OverflowError as exc:
        raise InputError(f"auditor policy max_age: {text!r} is too large") from exc


@dataclass(frozen=True)
class MaxAge:
    """The chain's first link must be younger than this."""

    age: timedelta
    now: datetime | None = None

    def verify(self, result: VerificationResult, bundle: Path) -> str:
        """Compare the first step's recorded time with now."""
        first = result.steps[0]
        recorded = str(first.environment.get("recorded", ""))
        try:
            when = datetime.strptime(recorded, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        except ValueError as exc:
            raise PolicyViolation(f"step {first.name}: no valid recorded time ({recorded!r})", step=first.name) from exc
        now = self.now or datetime.now(timezone.utc)
        if now - when > self.age:
            raise PolicyViolation(
                f"step {first.name}: recorded {recorded}, older than the maximum age {self.age} allowed by the auditor policy"
            )
        return f"(14) evidence recorded {recorded}, within {self.age}"


@dataclass(frozen=True)
class RequiredScanVerdicts:
    """Each named scan report in the bundle must carry this verdict."""

    verdicts: Mapping[str, str]

    def verify(self, result: VerificationResult, bundle: Path) -> str:
        """Read each (already digest-verified) report and compare its verdict."""
        for name, expected in sorted(self.verdicts.items()):
            path = bundle / name
            if not path.is_file():
                raise PolicyViolation(f"{name}: required scan report is not in the bundle")
            verdict = json.loads(path.read_text()).get("verdict")
            if verdict != expected:
                raise PolicyViolation(f"{name}: scan verdict {verdict!r}, the auditor policy requires {expected!r}")
        return f"(14) scan verdicts as required: {', '.join(f'{k}={v}' for k, v in sorted(self.verdicts.items()))}"


@dataclass(frozen=True)
class RequiredAttestations:
    """These model attestations must have verified: ``oms``, ``slsa``, ``vsa``."""

    kinds: Sequence[str]

    def verify(self, result: VerificationResult, bundle: Path) -> str:
        """Compare the attestations that verified with the required ones."""
        missing = [k for k in self.kinds if k not in result.attestations]
        if missing:
            raise PolicyViolation(f"required attestation(s) {', '.join(missing)} missing from the chain")
        return f"(14) required attestations present and verified: {', '.join(self.kinds)}"


@dataclass(frozen=True)
class VulnerabilityPolicy:
    """The recorded vulnerability scan meets the auditor's severity and database-age limits."""

    max_severity: str | None
    max_database_age_days: int | None

    def verify(self, result: VerificationResult, bundle: Path) -> str:
        """Apply the limits to the verified ``attestations/vulns.json`` (check (18) verified it)."""
        from chainproof.attest import load_statement
        from chainproof.supply import VULNS_PRODUCT, check_vulns_policy
        from chainproof.verify import LAYOUT_FILE, load_layout

        producer = next((s for s in result.steps if VULNS_PRODUCT in s.products), None)
        if producer is None or "vulns" not in result.attestations:
            raise PolicyViolation(f"{VULNS_PRODUCT}: the policy limits vulnerabilities, but the chain records no scan")
        _, layout = load_layout((bundle / LAYOUT_FILE).read_bytes())
        from securesystemslib.signer import Key

        key = Key.from_dict(producer.keyid, dict(layout.keys[producer.keyid]))
        statement = load_statement((bundle / VULNS_PRODUCT).read_bytes(), key=key, what=VULNS_PRODUCT)
        check_vulns_policy(statement, max_severity=self.max_severity, max_database_age_days=self.max_database_age_days)
        limits = ", ".join(f"{k} {v}" for k, v in (("max_severity", self.max_severity),
                                                   ("max_database_age_days", self.max_database_age_days)) if v is not None)
        return f"(14) recorded vulnerability scan within {limits}"


_KEY_PREFIX = "^[0-9a-f]{16,64}$"

#: The auditor policy's JSON Schema (draft 2020-12). Every node says, in
#: ``description``, what a valid value is: an error quotes it.
POLICY_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "description": "a mapping of policy fields",
    "additionalProperties": False,
    "required": ["version"],
    "properties": {
        "version": {"const": 1, "description": "1"},
        "expected_principals": {
            "type": "object",
            "minProperties": 1,
            "description": "a non-empty mapping of step name (or *) to principal",
            "propertyNames": {"minLength": 1, "description": "a step name or *"},
            "additionalProperties": {"type": "string", "minLength": 1, "description": "a non-empty principal string"},
        },
        "allowed_signer_keys": {
            "type": "object",
            "minProperties": 1,
            "description": "a non-empty mapping of step name (or *) to a list of key ids",
            "propertyNames": {"minLength": 1, "description": "a step name or *"},
            "additionalProperties": {
                "type": "array",
                "minItems": 1,
                "description": "a non-empty list of key ids",
                "items": {
                    "type": "string",
                    "pattern": _KEY_PREFIX,
                    "description": "a key id: 16 to 64 lowercase hex characters",
                },
            },
        },
        "allow_development_keys": {"type": "boolean", "description": "a boolean (true or false, unquoted)"},
        "allowed_image_digests": {
            "type": "array",
            "minItems": 1,
            "description": "a non-empty list of image digests",
            "items": {
                "type": "string",
                "pattern": "^(sha256:)?[0-9a-f]{64}$",
                "description": "an image digest: sha256: and 64 lowercase hex characters",
            },
        },
        "max_age": {
            "type": ["string", "integer"],
            "minimum": 1,
            "minLength": 1,
            "description": "a duration such as 90d, 12h, 30m or a positive number of seconds",
        },
        "required_scan_verdicts": {
            "type": "object",
            "minProperties": 1,
            "description": "a non-empty mapping of scan report path to verdict",
            "propertyNames": {"pattern": "^reports/[^/]+[.]json$", "description": "a report path such as reports/scan-model.json"},
            "additionalProperties": {"enum": ["safe", "unsafe"], "description": "a verdict: safe or unsafe"},
        },
        "required_attestations": {
            "type": "array",
            "minItems": 1,
            "uniqueItems": True,
            "description": "a non-empty list of attestation kinds (oms, slsa, vsa, sbom, vulns, card)",
            "items": {"enum": ["oms", "slsa", "vsa", "sbom", "vulns", "card"],
                      "description": "an attestation kind: oms, slsa, vsa, sbom, vulns or card"},
        },
        "max_severity": {
            "enum": ["none", "low", "medium", "high", "critical"],
            "description": "a severity: none, low, medium, high or critical",
        },
        "max_database_age_days": {
            "type": "integer",
            "minimum": 0,
            "description": "a whole number of days (0 or more)",
        },
    },
}

_KNOWN = set(POLICY_SCHEMA["properties"])

_JSON_TYPES = {dict: "mapping", list: "list", str: "string", bool: "boolean", int: "integer", float: "number", type(None): "null"}


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _field_path(path: Sequence[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _schema_errors(doc: Any, where: str) -> list[str]:
    """Validate against :data:`POLICY_SCHEMA`; one message per wrong field."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(POLICY_SCHEMA)
    messages: list[str] = []
    seen: set[str] = set()
    for error in sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path]):
        path = list(error.absolute_path)
        value = error.instance
        expected = str(error.schema.get("description", error.validator)) if isinstance(error.schema, dict) else str(error.validator)
        if error.validator == "propertyNames":
            # The offending key is in the message, not the path.
            expected = str(POLICY_SCHEMA["properties"].get(str(path[0]) if path else "", {}).get("propertyNames", {}).get("description", "a valid name"))
            value = error.message.split("'")[1] if "'" in error.message else error.message
            path = [*path, "(key)"]
        if error.validator == "enum" and path[:1] == ["required_attestations"]:
            messages.append(f"{where}: {_field_path(path)}: unknown attestation kind {value!r} (known: oms, slsa, vsa)")
            continue
        field = _field_path(path)
        if field in seen:
            continue
        seen.add(field)
        messages.append(f"{where}: {field}: expected {expected}, got {value!r} ({_json_type(value)})")
    return messages


@dataclass(frozen=True)
class AuditorPolicy:
    """All of an auditor's constraints; every one must hold.

    Attributes:
        constraints: the constraints, checked in order.
        source: where the policy came from (for the report).
    """

    constraints: list[Constraint] = field(default_factory=list)
    source: str = ""

    @classmethod
    def from_dict(
        cls, doc: Mapping[str, Any], *, source: str = "", development_owner_keys: frozenset[str] = frozenset()
    ) -> AuditorPolicy:
        """Build a policy from its document, validated against :data:`POLICY_SCHEMA`.

        Args:
            doc: the policy document.
            source: where it came from (errors and reports name it).
            development_owner_keys: owner key ids the trust store records as development
                keys (``allow_development_keys: false`` refuses them too).

        Raises:
            InputError: unknown fields, a wrong version, malformed values, or no constraint at all.
        """
        where = source or "auditor policy"
        if not isinstance(doc, Mapping):
            raise InputError(f"{where}: expected a mapping of policy fields, got {doc!r} ({_json_type(doc)})")
        unknown = sorted(set(doc) - _KNOWN)
        if unknown:
            raise InputError(f"{where}: unknown field(s) {', '.join(map(str, unknown))} (known: {', '.join(sorted(_KNOWN))})")
        if doc.get("version") != 1 or isinstance(doc.get("version"), bool):
            raise InputError(f"{where}: version must be 1, got {doc.get('version')!r}")
        if "max_age" in doc and isinstance(doc["max_age"], str):
            parse_duration(doc["max_age"])  # its own message: expected e.g. 90d
        errors = _schema_errors(dict(doc), where)
        if errors:
            # Every wrong field at once: one line each.
            raise InputError("; ".join(errors))
        c: list[Constraint] = []
        if "expected_principals" in doc:
            c.append(ExpectedPrincipals({str(k): str(v) for k, v in dict(doc["expected_principals"]).items()}))
        if "allowed_signer_keys" in doc:
            c.append(AllowedSignerKeys({str(k): [str(x) for x in v] for k, v in dict(doc["allowed_signer_keys"]).items()}))
        if doc.get("allow_development_keys") is False:
            c.append(NoDevelopmentKeys(development_owner_keys=frozenset(development_owner_keys)))
        if "allowed_image_digests" in doc:
            c.append(AllowedImages([str(d) for d in doc["allowed_image_digests"]]))
        if "max_age" in doc:
            c.append(MaxAge(parse_duration(doc["max_age"])))
        if "required_scan_verdicts" in doc:
            c.append(RequiredScanVerdicts({str(k): str(v) for k, v in dict(doc["required_scan_verdicts"]).items()}))
        if "required_attestations" in doc:
            c.append(RequiredAttestations([str(k) for k in doc["required_attestations"]]))
        if "max_severity" in doc or "max_database_age_days" in doc:
            c.append(VulnerabilityPolicy(
                max_severity=str(doc["max_severity"]) if "max_severity" in doc else None,
                max_database_age_days=int(doc["max_database_age_days"]) if "max_database_age_days" in doc else None,
            ))
        if not c:
            raise InputError(f"{where}: the policy has no constraint; an empty policy checks nothing")
        return cls(constraints=c, source=source)

    @classmethod
    def from_file(cls, path: str | Path, *, development_owner_keys: frozenset[str] = frozenset()) -> AuditorPolicy:
        """Load a YAML or JSON policy file.

        Args:
            path: the file.
            development_owner_keys: see :meth:`from_dict`.

        Raises:
            InputError: unreadable or invalid.
        """
        import yaml

        try:
            doc = yaml.safe_load(Path(path).read_text())
        except OSError as exc:
            raise InputError(f"{path}: cannot read auditor policy ({exc.strerror})") from exc
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: not YAML or JSON ({type(exc).__name__})") from exc
        return cls.from_dict(doc, source=str(path), development_owner_keys=development_owner_keys)

    def verify(self, result: VerificationResult, bundle: Path) -> list[str]:
        """Check every constraint (all of them, even after one fails); return the check lines.

        Raises:
            PolicyViolation: the one constraint that does not hold (``passed`` lists those that held).
            PolicyViolations: several constraints do not hold; it lists every violation
                and the constraints that held.
        """
        if not self.constraints:
            raise PolicyViolation("auditor policy: no constraint to check")
        passed: list[str] = []
        violations: list[PolicyViolation] = []
        for constraint in self.constraints:
            try:
                passed.append(constraint.verify(result, bundle))
            except PolicyViolation as exc:
                violations.append(exc)
        if len(violations) == 1:
            # One violation is raised as itself, carrying the constraints that held.
            violations[0].passed = passed  # type: ignore[attr-defined]
            raise violations[0]
        if violations:
            raise PolicyViolations(violations, passed=passed)
        return passed
