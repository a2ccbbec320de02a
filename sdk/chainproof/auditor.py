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

from chainproof.errors import InputError, PolicyViolation
from chainproof.verify import VerificationResult

__all__ = [
    "AllowedImages",
    "AllowedSignerKeys",
    "AuditorPolicy",
    "Constraint",
    "ExpectedPrincipals",
    "MaxAge",
    "NoDevelopmentKeys",
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
                raise PolicyViolation(f"step {step.name}: ran as {step.principal}, expected {expected}")
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

    def verify(self, result: VerificationResult, bundle: Path) -> str:
        """Refuse links whose signer says ``development: true``."""
        for step in result.steps:
            signer = step.environment.get("signer") or {}
            if isinstance(signer, dict) and signer.get("development"):
                raise PolicyViolation(f"step {step.name}: signed with a development key ({str(signer.get('keyid', ''))[:16]})")
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
            raise PolicyViolation(f"step {first.name}: no valid recorded time ({recorded!r})") from exc
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


_KNOWN = {
    "version",
    "expected_principals",
    "allowed_signer_keys",
    "allow_development_keys",
    "allowed_image_digests",
    "max_age",
    "required_scan_verdicts",
    "required_attestations",
}


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
    def from_dict(cls, doc: Mapping[str, Any], *, source: str = "") -> AuditorPolicy:
        """Build a policy from its document.

        Raises:
            InputError: unknown fields, a wrong version, malformed values, or no constraint at all.
        """
        where = source or "auditor policy"
        if not isinstance(doc, Mapping):
            raise InputError(f"{where}: expected a mapping")
        unknown = sorted(set(doc) - _KNOWN)
        if unknown:
            raise InputError(f"{where}: unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(_KNOWN))})")
        if doc.get("version") != 1:
            raise InputError(f"{where}: version must be 1, got {doc.get('version')!r}")
        c: list[Constraint] = []
        try:
            if "expected_principals" in doc:
                c.append(ExpectedPrincipals({str(k): str(v) for k, v in dict(doc["expected_principals"]).items()}))
            if "allowed_signer_keys" in doc:
                c.append(AllowedSignerKeys({str(k): [str(x) for x in v] for k, v in dict(doc["allowed_signer_keys"]).items()}))
            if doc.get("allow_development_keys") is False:
                c.append(NoDevelopmentKeys())
            if "allowed_image_digests" in doc:
                c.append(AllowedImages([str(d) for d in doc["allowed_image_digests"]]))
            if "max_age" in doc:
                c.append(MaxAge(parse_duration(doc["max_age"])))
            if "required_scan_verdicts" in doc:
                c.append(RequiredScanVerdicts({str(k): str(v) for k, v in dict(doc["required_scan_verdicts"]).items()}))
            if "required_attestations" in doc:
                kinds = [str(k) for k in doc["required_attestations"]]
                bad = sorted(set(kinds) - {"oms", "slsa", "vsa"})
                if bad:
                    raise InputError(f"{where}: unknown attestation kind(s) {', '.join(bad)} (known: oms, slsa, vsa)")
                c.append(RequiredAttestations(kinds))
        except (TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"{where}: malformed value ({exc})") from exc
        if not c:
            raise InputError(f"{where}: the policy has no constraint; an empty policy checks nothing")
        return cls(constraints=c, source=source)

    @classmethod
    def from_file(cls, path: str | Path) -> AuditorPolicy:
        """Load a YAML or JSON policy file.

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
        return cls.from_dict(doc, source=str(path))

    def verify(self, result: VerificationResult, bundle: Path) -> list[str]:
        """Check every constraint; return the check lines.

        Raises:
            PolicyViolation: the first constraint that does not hold.
        """
        if not self.constraints:
            raise PolicyViolation("auditor policy: no constraint to check")
        return [constraint.verify(result, bundle) for constraint in self.constraints]
