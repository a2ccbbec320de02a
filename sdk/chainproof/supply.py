"""Supply-chain evidence: CycloneDX SBOMs and OSV vulnerability scans, as signed in-toto statements.

Example:
    >>> from chainproof.supply import environment_digest, severity_rating
    >>> environment_digest([("Requests", "2.32.3"), ("numpy", "2.1.0")])[:16]
    '30b37e357897aa13'
    >>> severity_rating(9.8), severity_rating(5.0), severity_rating(0.0)
    ('critical', 'medium', 'none')

What runs, and what it is bound to:

- :func:`environment_sbom` asks ``cyclonedx-py environment`` (the ``cyclonedx-bom`` package)
  for the SBOM of a Python environment (the running one by default); :func:`lock_sbom` asks
  ``cyclonedx-py requirements`` for the SBOM of an image's lock file (``image/requirements.lock``).
- The **environment digest** names an environment: the SHA-256 of its packages as
  ``name==version`` lines (names normalised as PEP 503 does, sorted, each line ending in
  ``\\n``). It is computed from the SBOM's own components, so an edited SBOM no longer matches
  the digest its statement names. An image SBOM's subject is the image digest instead.
- :func:`sbom_statement` signs the SBOM as an in-toto Statement v1 (predicate type
  ``https://cyclonedx.org/bom``) with the step's signer; :func:`verify_sbom` checks the subject.
- :func:`scan_sbom` matches every PyPI component against an OSV advisory folder (for example
  pypa/advisory-database's ``vulns``; PyPI's own service is not needed), version ranges with
  ``packaging`` as OSV specifies them (``introduced`` / ``fixed`` / ``last_affected`` /
  ``limit`` events, and the explicit ``versions`` list). A component that cannot be checked
  (no version, a version ``packaging`` cannot order, not a PyPI package, an advisory range that
  cannot be read) is listed as **unchecked**, and an unchecked package fails every policy: it is
  never a pass. :func:`vulns_statement` records it as ``https://in-toto.io/attestation/vulns/v0.2``
  with the scanner, the database's digest and date (its newest ``modified``, or a given date).
- :func:`check_vulns_policy` applies ``max_severity`` and ``max_database_age_days`` to a
  recorded scan, failing with one line (a :class:`~chainproof.errors.PolicyViolation`).

Severity (the mapping the policy uses, documented in ``docs/verification.md`` terms):

1. each CVSS vector of an advisory (``CVSS_V2``, ``CVSS_V3``, ``CVSS_V4``) is scored with the
   ``cvss`` package (base score) and the highest score counts;
2. without a vector, the advisory's ``database_specific.severity`` (GitHub's ``LOW``,
   ``MODERATE``, ``HIGH``, ``CRITICAL``) counts;
3. a score maps to CVSS v3.x's qualitative ratings: 0.0 ``none``, 0.1-3.9 ``low``, 4.0-6.9
   ``medium``, 7.0-8.9 ``high``, 9.0-10.0 ``critical``;
4. an advisory with neither is ``unknown``, which the policy ranks as ``critical`` unless told
   otherwise (``unknown_severity``): no severity is not a low severity.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

from chainproof._version import __version__
from chainproof.errors import ArtifactRefused, InputError, PolicyViolation, VerificationError

__all__ = [
    "CYCLONEDX_PREDICATE",
    "SBOM_PRODUCT",
    "SEVERITIES",
    "VULNS_PREDICATE",
    "VULNS_PRODUCT",
    "AdvisoryDatabase",
    "Finding",
    "SeverityViolation",
    "StaleDatabase",
    "UncheckedPackages",
    "VulnScan",
    "check_vulns_policy",
    "environment_digest",
    "environment_sbom",
    "load_advisories",
    "lock_sbom",
    "sbom_packages",
    "sbom_statement",
    "scan_sbom",
    "severity_rating",
    "verify_sbom",
    "verify_supply_evidence",
    "vulns_statement",
    "write_supply_evidence",
]

CYCLONEDX_PREDICATE = "https://cyclonedx.org/bom"
VULNS_PREDICATE = "https://in-toto.io/attestation/vulns/v0.2"

#: Qualitative ratings, lowest first (CVSS v3.x specification, section 5).
SEVERITIES = ("none", "low", "medium", "high", "critical")

#: GitHub advisory severities (``database_specific.severity``) to ratings.
_GHSA = {"LOW": "low", "MODERATE": "medium", "MEDIUM": "medium", "HIGH": "high", "CRITICAL": "critical"}

SCANNER_URI = f"pkg:pypi/chainproof@{__version__}#chainproof.supply"


class SeverityViolation(PolicyViolation):
    """A package has an advisory above the policy's ``max_severity``."""

    def __init__(self, subject: str, package: str, version: str, advisory: str, severity: str, maximum: str) -> None:
        super().__init__(
            f"{subject}: {package}=={version} has {advisory} ({severity}); expected nothing above {maximum}"
        )
        self.subject, self.package, self.version = subject, package, version
        self.advisory, self.severity, self.maximum = advisory, severity, maximum


class StaleDatabase(PolicyViolation):
    """The advisory database is older than the policy's ``max_database_age_days``."""

    def __init__(self, subject: str, last_update: str, age_days: int, maximum: int) -> None:
        super().__init__(
            f"{subject}: advisory database last updated {last_update} ({age_days} days before the scan); "
            f"expected at most {maximum} days"
        )
        self.subject, self.last_update, self.age_days, self.maximum = subject, last_update, age_days, maximum


class UncheckedPackages(PolicyViolation):
    """Packages that could not be checked: a failure, never a pass."""

    def __init__(self, subject: str, unchecked: list[dict[str, str]]) -> None:
        shown = ", ".join(f"{u['name']}=={u['version'] or '?'} ({u['reason']})" for u in unchecked[:5])
        more = f" and {len(unchecked) - 5} more" if len(unchecked) > 5 else ""
        super().__init__(f"{subject}: expected every package checked, {len(unchecked)} could not be: {shown}{more}")
        self.subject, self.unchecked = subject, unchecked


# -- SBOMs


def _cyclonedx(args: list[str], *, what: str, validate: bool) -> dict[str, Any]:
    command = [sys.executable, "-m", "cyclonedx_py", *args, "--validate" if validate else "--no-validate",
               "--output-reproducible", "--of", "JSON", "-o", "-"]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InputError(f"{what}: cyclonedx-py did not run ({type(exc).__name__})") from exc
    if proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]
        raise InputError(f"{what}: cyclonedx-py failed: {detail}")
    try:
        bom = json.loads(proc.stdout)
    except ValueError as exc:
        raise InputError(f"{what}: cyclonedx-py printed no JSON BOM") from exc
    if not isinstance(bom, dict) or bom.get("bomFormat") != "CycloneDX":
        raise InputError(f"{what}: expected a CycloneDX BOM from cyclonedx-py")
    return bom


def environment_sbom(*, python: str | os.PathLike[str] | None = None, validate: bool = False) -> dict[str, Any]:
    """Return the CycloneDX SBOM (JSON, spec 1.6) of a Python environment.

    Args:
        python: the environment's interpreter or venv folder (default: the running one).
        validate: let cyclonedx-py validate the BOM against the CycloneDX schema (its strict
            JSON validator takes about 20 s of CPU for 170 components: off by default).

    Returns:
        The BOM as a dictionary (reproducible: no timestamp, no serial number).

    Raises:
        InputError: cyclonedx-py failed.
    """
    return _cyclonedx(["environment", str(python or sys.executable)], what=f"environment {python or sys.executable}",
                      validate=validate)


def lock_sbom(lock: str | os.PathLike[str], *, validate: bool = False) -> dict[str, Any]:
    """Return the CycloneDX SBOM of a pip requirements / lock file (``image/requirements.lock``).

    Args:
        lock: the lock file.
        validate: let cyclonedx-py validate the BOM (see :func:`environment_sbom`).

    Raises:
        InputError: the file is missing or cyclonedx-py failed.
    """
    if not Path(lock).is_file():
        raise InputError(f"{lock}: no such lock file")
    return _cyclonedx(["requirements", str(lock)], what=str(lock), validate=validate)


def _canonical(name: str) -> str:
    from packaging.utils import canonicalize_name

    return str(canonicalize_name(name))


def _purl_type(component: Mapping[str, Any]) -> str:
    purl = str(component.get("purl") or "")
    return purl[4:].split("/", 1)[0] if purl.startswith("pkg:") else ""


def sbom_packages(bom: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Return the SBOM's packages as sorted ``(normalised name, version)`` pairs.

    Every component with a name and a version counts (a Python environment's SBOM lists its
    distributions, the local ones too); :func:`scan_sbom` decides which can be checked.
    """
    out = set()
    for component in _components(bom):
        if component.get("name") and component.get("version"):
            out.add((_canonical(str(component["name"])), str(component["version"])))
    return sorted(out)


def _components(bom: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    stack = list(bom.get("components") or [])
    while stack:
        component = stack.pop()
        if isinstance(component, Mapping):
            yield component
            stack.extend(component.get("components") or [])


def environment_digest(packages: Iterable[tuple[str, str]]) -> str:
    """Return the environment digest: SHA-256 of sorted ``name==version\\n`` lines (PEP 503 names)."""
    lines = sorted({f"{_canonical(name)}=={version}\n" for name, version in packages})
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()


def _subject(bom: Mapping[str, Any], image: str) -> tuple[str, str]:
    if image:
        name, sep, digest = image.partition("@sha256:")
        if not sep or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise InputError(f"image {image}: expected REGISTRY/PATH@sha256:DIGEST (64 hex)")
        return name, digest
    return "environment", environment_digest(sbom_packages(bom))


def sbom_statement(bom: Mapping[str, Any], *, signer: Any, image: str = "") -> bytes:
    """Sign an SBOM as an in-toto Statement v1 (predicate ``https://cyclonedx.org/bom``).

    Args:
        bom: the CycloneDX BOM (:func:`environment_sbom` or :func:`lock_sbom`).
        signer: the step's :class:`~chainproof.signing.StepSigner`.
        image: ``REGISTRY/PATH@sha256:DIGEST`` when the BOM describes that image (its lock); the
            subject is then the image digest. Without it the subject is the environment digest.

    Returns:
        The DSSE envelope JSON bytes.
    """
    from chainproof.attest import sign_statement

    name, digest = _subject(bom, image)
    return sign_statement(subjects={name: digest}, predicate_type=CYCLONEDX_PREDICATE, predicate=bom, signer=signer)


def _only_subject(statement: Mapping[str, Any], what: str) -> tuple[str, str]:
    subjects = statement.get("subject") or []
    if len(subjects) != 1 or not isinstance(subjects[0], Mapping):
        raise ArtifactRefused(what, f"expected one subject, found {len(subjects)}")
    digest = (subjects[0].get("digest") or {}).get("sha256", "")
    return str(subjects[0].get("name", "")), str(digest)


def verify_sbom(
    statement: Mapping[str, Any] | bytes,
    expected_subject_digest: str,
    *,
    key: Any = None,
    what: str = "attestations/sbom.json",
) -> dict[str, Any]:
    """Check an SBOM statement's subject (and, with ``key``, its signature).

    Args:
        statement: the statement (a dictionary), or the DSSE envelope bytes.
        expected_subject_digest: the image or environment digest the links name.
        key: the signer's public key (needed when ``statement`` is an envelope).
        what: the artifact name errors report.

    Returns:
        The statement.

    Raises:
        VerificationError: wrong predicate type, wrong subject, or an environment SBOM whose
            packages do not hash to its subject.
        SignatureError: the envelope does not verify with ``key``.
    """
    if isinstance(statement, (bytes, bytearray)):
        from chainproof.attest import load_statement

        if key is None:
            raise InputError(f"{what}: a signed statement needs the signer's public key")
        statement = load_statement(bytes(statement), key=key, what=what)
    if statement.get("predicateType") != CYCLONEDX_PREDICATE:
        raise ArtifactRefused(what, f"expected predicate {CYCLONEDX_PREDICATE}, got {statement.get('predicateType')!r}")
    name, digest = _only_subject(statement, what)
    if digest != expected_subject_digest:
        raise VerificationError(f"{what}: expected subject sha256:{expected_subject_digest}, got sha256:{digest} ({name})")
    if name == "environment":
        recomputed = environment_digest(sbom_packages(statement.get("predicate") or {}))
        if recomputed != digest:
            raise VerificationError(
                f"{what}: expected the SBOM's packages to hash to its subject sha256:{digest}, got sha256:{recomputed}"
            )
    return dict(statement)


# -- the advisory database (OSV)


@dataclass(frozen=True)
class AdvisoryDatabase:
    """An OSV advisory folder, loaded.

    Attributes:
        path: the folder.
        advisories: normalised PyPI package name to the advisories that name it.
        digest: SHA-256 over the sorted (relative path, file SHA-256) lines: the database version.
        last_update: the newest ``modified`` of its advisories (RFC 3339).
        count: how many advisories it holds.
    """

    path: str
    advisories: Mapping[str, tuple[Mapping[str, Any], ...]]
    digest: str
    last_update: str
    count: int


def load_advisories(folder: str | os.PathLike[str]) -> AdvisoryDatabase:
    """Load an OSV advisory folder (``*.json``, ``*.yaml``, ``*.yml``, searched recursively).

    Raises:
        InputError: no such folder, no advisory in it, or a file that is not an OSV advisory.
    """
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{folder}: no such advisory folder")
    files = sorted(p for p in root.rglob("*") if p.suffix in (".json", ".yaml", ".yml") and p.is_file())
    if not files:
        raise InputError(f"{folder}: expected OSV advisories (*.json, *.yaml), found none")
    signature = (str(root.resolve()), len(files), max(p.stat().st_mtime_ns for p in files))
    return _load_advisories(signature)


@lru_cache(maxsize=4)
def _load_advisories(signature: tuple[str, int, int]) -> AdvisoryDatabase:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    root = Path(signature[0])
    by_package: dict[str, list[Mapping[str, Any]]] = {}
    manifest = hashlib.sha256()
    newest = ""
    count = 0
    for path in sorted(p for p in root.rglob("*") if p.suffix in (".json", ".yaml", ".yml") and p.is_file()):
        data = path.read_bytes()
        rel = path.relative_to(root).as_posix()
        manifest.update(f"{rel} {hashlib.sha256(data).hexdigest()}\n".encode())
        try:
            doc = json.loads(data) if path.suffix == ".json" else yaml.load(data, Loader=loader)
        except (ValueError, yaml.YAMLError) as exc:
            raise InputError(f"{path}: not an OSV advisory ({type(exc).__name__})") from exc
        if not isinstance(doc, Mapping) or not doc.get("id") or "modified" not in doc:
            raise InputError(f"{path}: not an OSV advisory (expected id and modified)")
        count += 1
        modified = _timestamp(doc["modified"])
        newest = max(newest, modified)
        if doc.get("withdrawn"):
            continue
        for affected in doc.get("affected") or []:
            package = affected.get("package") or {}
            if str(package.get("ecosystem", "")).split(":")[0] == "PyPI" and package.get("name"):
                by_package.setdefault(_canonical(str(package["name"])), []).append(doc)
    return AdvisoryDatabase(
        path=str(root), advisories={k: tuple(v) for k, v in by_package.items()},
        digest=manifest.hexdigest(), last_update=newest, count=count,
    )


def _timestamp(value: Any) -> str:
    if isinstance(value, datetime):
        moment = value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return _parse_time(str(value)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InputError(f"{text!r}: expected an RFC 3339 timestamp") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


# -- matching


class _Unreadable(Exception):
    """An advisory range that cannot be evaluated for this package."""


def _version(text: str) -> Any:
    parsed = _parse_version(text)
    if parsed is None:
        raise _Unreadable(text)
    return parsed


@lru_cache(maxsize=65536)
def _parse_version(text: str) -> Any:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(text)
    except InvalidVersion:
        return None


def affected_by(version: str, affected: Mapping[str, Any]) -> bool:
    """Tell whether ``version`` is affected by one OSV ``affected[]`` entry.

    The explicit ``versions`` list counts first; then every ``ECOSYSTEM`` (or ``SEMVER``) range is
    evaluated as the OSV schema specifies: events sorted by version (``introduced: "0"`` lowest),
    ``introduced`` opens, ``fixed`` and ``limit`` close at that version, ``last_affected`` closes
    after it. ``GIT`` ranges name commits, not versions, and are left to the ``versions`` list.
    Overlapping intervals listed out of order are also read pairwise (each ``introduced`` up to
    the next closing event as listed); a version either reading calls affected is affected, so
    a degenerate range (``introduced: X``, ``fixed: X``) flags ``X`` (fail closed).

    Raises:
        _Unreadable: the package's version or a range event is not a version ``packaging`` orders.
    """
    listed = [str(v) for v in affected.get("versions") or []]
    if version in listed:
        return True
    target = _version(version)
    for listed_version in listed:
        try:
            if _version(listed_version) == target:
                return True
        except _Unreadable:
            continue
    for rng in affected.get("ranges") or []:
        if rng.get("type") not in ("ECOSYSTEM", "SEMVER"):
            continue
        if _in_range(target, rng.get("events") or []):
            return True
    return False


def _in_range(target: Any, raw_events: list[Any]) -> bool:
    # (bound, kind) in the order given; bound None is "0", below every version (even 0.0.0b0).
    events: list[tuple[Any, str]] = []
    for event in raw_events:
        if not isinstance(event, Mapping) or len(event) != 1:
            raise _Unreadable(f"event {event}")
        kind, value = next(iter(event.items()))
        if kind not in ("introduced", "fixed", "last_affected", "limit"):
            raise _Unreadable(f"event {event}")
        events.append((None if kind == "introduced" and str(value) == "0" else _version(str(value)), kind))

    def at_or_above(bound: Any) -> bool:
        return bound is None or target >= bound

    limits = [b for b, k in events if k == "limit"]
    if limits and not all(target < b for b in limits):
        return False
    # The schema's evaluation: events sorted by version ("0" first; at a tie a range that
    # ends there closes before the next one opens), introduced opens, fixed closes at the
    # bound, last_affected closes after it (so at a tie it comes after the introduced it closes).
    order = {"fixed": 0, "limit": 0, "introduced": 1, "last_affected": 2}
    inside = False
    def key(event: tuple[Any, str]) -> tuple[Any, ...]:
        return (0, order[event[1]]) if event[0] is None else (1, event[0], order[event[1]])

    for bound, kind in sorted(events, key=key):
        if kind == "introduced" and at_or_above(bound):
            inside = True
        elif kind == "fixed" and at_or_above(bound) or kind == "last_affected" and target > bound:
            inside = False
    if inside:
        return True
    # Overlapping intervals listed out of order (seen in pypa/advisory-database) defeat the
    # sorted walk: each introduced also opens an interval closed by the next closing event
    # in the order given. Either reading that says "affected" wins (fail closed).
    for i, (bound, kind) in enumerate(events):
        if kind != "introduced" or not at_or_above(bound):
            continue
        closing = next(((b, k) for b, k in events[i + 1:] if k in ("fixed", "last_affected")), None)
        if closing is None or (closing[1] == "fixed" and target < closing[0]) or (
            closing[1] == "last_affected" and target <= closing[0]
        ):
            return True
    return False


def _score(entry: Mapping[str, Any]) -> float | None:
    from cvss import CVSS2, CVSS3, CVSS4
    from cvss.exceptions import CVSSError

    kind, vector = str(entry.get("type", "")), str(entry.get("score", ""))
    try:
        if kind == "CVSS_V3":
            return float(CVSS3(vector).scores()[0])
        if kind == "CVSS_V4":
            return float(CVSS4(vector).base_score)
        if kind == "CVSS_V2":
            return float(CVSS2(vector).scores()[0])
    except (CVSSError, ValueError, KeyError, IndexError):
        return None
    return None


def severity_rating(score: float) -> str:
    """Map a CVSS base score to its qualitative rating (CVSS v3.x: none, low, medium, high, critical)."""
    if score <= 0.0:
        return "none"
    if score < 4.0:
        return "low"
    if score < 7.0:
        return "medium"
    if score < 9.0:
        return "high"
    return "critical"


def advisory_severity(advisory: Mapping[str, Any]) -> tuple[str, list[dict[str, str]]]:
    """Return an advisory's rating (``unknown`` when it has none) and its scores for the record."""
    scores: list[dict[str, str]] = []
    best: float | None = None
    for entry in advisory.get("severity") or []:
        score = _score(entry)
        if score is not None:
            scores.append({"method": str(entry["type"]).lower(), "score": f"{score:.1f}"})
            best = score if best is None else max(best, score)
    if best is not None:
        return severity_rating(best), scores
    text = str((advisory.get("database_specific") or {}).get("severity", "")).upper()
    if text in _GHSA:
        scores.append({"method": "ghsa", "score": text})
        return _GHSA[text], scores
    return "unknown", scores


@dataclass(frozen=True)
class Finding:
    """One advisory that affects one package of the SBOM."""

    package: str
    version: str
    advisory: str
    aliases: tuple[str, ...]
    severity: str
    scores: tuple[tuple[str, str], ...]
    fixed: tuple[str, ...]


@dataclass(frozen=True)
class VulnScan:
    """The result of :func:`scan_sbom`.

    Attributes:
        findings: advisories affecting packages.
        unchecked: packages that could not be checked (name, version, reason): a failure.
        checked: how many packages were checked.
        database: the advisory database.
        started, finished: RFC 3339 times of the scan.
        packages: the (name, version) pairs checked.
        first_party: packages of this source tree, exempt (recorded as such).
    """

    findings: tuple[Finding, ...]
    unchecked: tuple[dict[str, str], ...]
    checked: int
    database: AdvisoryDatabase
    started: str
    finished: str
    packages: tuple[tuple[str, str], ...] = field(default=())
    first_party: tuple[dict[str, str], ...] = field(default=())


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def scan_sbom(
    bom: Mapping[str, Any], database: AdvisoryDatabase, *, first_party: Iterable[str] = ("chainproof",)
) -> VulnScan:
    """Match every component of an SBOM against an OSV advisory database.

    Args:
        bom: a CycloneDX BOM.
        database: :func:`load_advisories` of the advisory folder.
        first_party: packages built from this source tree, not published to PyPI (no public
            advisory can name them): recorded as ``first_party``, not checked. Any other
            component without a ``pkg:pypi`` purl is unchecked, which fails the policy.

    Returns:
        The scan; a component that cannot be checked is in ``unchecked``, never silently passed.
    """
    started = _now()
    findings: list[Finding] = []
    unchecked: list[dict[str, str]] = []
    checked: set[tuple[str, str]] = set()
    own = {_canonical(n) for n in first_party}
    exempt: list[dict[str, str]] = []
    for component in sorted(_components(bom), key=lambda c: (str(c.get("name")), str(c.get("version")))):
        name, version = str(component.get("name") or ""), str(component.get("version") or "")
        if component.get("type") not in (None, "library", "application", "framework"):
            continue
        if _purl_type(component) != "pypi" and _canonical(name) in own:
            exempt.append({"name": _canonical(name), "version": version})
            continue
        if _purl_type(component) != "pypi":
            unchecked.append({"name": name, "version": version, "reason": "not a PyPI package (no pkg:pypi purl)"})
            continue
        if not version:
            unchecked.append({"name": name, "version": "", "reason": "no version"})
            continue
        package = _canonical(name)
        if (package, version) in checked:
            continue
        try:
            _version(version)
            for advisory in database.advisories.get(package, ()):
                for affected in advisory.get("affected") or []:
                    pkg = affected.get("package") or {}
                    if _canonical(str(pkg.get("name", ""))) != package or not affected_by(version, affected):
                        continue
                    rating, scores = advisory_severity(advisory)
                    fixed = sorted({str(e["fixed"]) for r in affected.get("ranges") or []
                                    if r.get("type") in ("ECOSYSTEM", "SEMVER")
                                    for e in r.get("events") or [] if "fixed" in e})
                    findings.append(Finding(package, version, str(advisory["id"]),
                                            tuple(str(a) for a in advisory.get("aliases") or []), rating,
                                            tuple((s["method"], s["score"]) for s in scores), tuple(fixed)))
                    break
        except _Unreadable as exc:
            unchecked.append({"name": package, "version": version, "reason": f"cannot order version {exc.args[0]!s}"[:200]})
            continue
        checked.add((package, version))
    return VulnScan(findings=tuple(findings), unchecked=tuple(unchecked), checked=len(checked),
                    database=database, started=started, finished=_now(), packages=tuple(sorted(checked)),
                    first_party=tuple(exempt))


def vulns_predicate(scan: VulnScan, *, database_uri: str = "", database_date: str = "") -> dict[str, Any]:
    """Return the ``vulns/v0.2`` predicate of a scan (see :func:`vulns_statement`)."""
    db = scan.database
    return {
        "scanner": {
            "uri": SCANNER_URI,
            "version": __version__,
            "db": {
                "uri": database_uri or Path(db.path).resolve().as_uri(),
                "version": f"sha256:{db.digest}",
                "lastUpdate": _timestamp(database_date) if database_date else db.last_update,
            },
            "result": [
                {
                    "id": f.advisory,
                    "severity": [{"method": m, "score": s} for m, s in f.scores] + [{"method": "chainproof", "score": f.severity}],
                    "annotations": [{"package": f.package, "version": f.version, "aliases": list(f.aliases), "fixed": list(f.fixed)}],
                }
                for f in scan.findings
            ],
        },
        "metadata": {"scanStartedOn": scan.started, "scanFinishedOn": scan.finished},
        "chainproof": {
            "checked": scan.checked,
            "unchecked": [dict(u) for u in scan.unchecked],
            "firstParty": [dict(u) for u in scan.first_party],
            "advisories": db.count,
            "severityMapping": "max CVSS base score (cvss package) -> CVSS v3.x rating; else GHSA severity; else unknown",
        },
    }


def vulns_statement(
    scan: VulnScan,
    *,
    signer: Any,
    subject: tuple[str, str],
    database_uri: str = "",
    database_date: str = "",
) -> bytes:
    """Sign a scan as an in-toto Statement v1 with predicate ``https://in-toto.io/attestation/vulns/v0.2``.

    Args:
        scan: :func:`scan_sbom`'s result.
        signer: the step's signer.
        subject: (name, sha256) — the same subject as the SBOM's (environment or image digest).
        database_uri: where the advisory database came from (default: the folder's file URI).
        database_date: the database's date, if known better than its newest ``modified``.

    Returns:
        The DSSE envelope JSON bytes.
    """
    from chainproof.attest import sign_statement

    return sign_statement(
        subjects={subject[0]: subject[1]},
        predicate_type=VULNS_PREDICATE,
        predicate=vulns_predicate(scan, database_uri=database_uri, database_date=database_date),
        signer=signer,
    )


def _rank(severity: str, unknown_severity: str) -> int:
    return SEVERITIES.index(unknown_severity if severity == "unknown" else severity)


def check_vulns_policy(
    statement: Mapping[str, Any],
    *,
    max_severity: str | None = None,
    max_database_age_days: int | None = None,
    unknown_severity: str = "critical",
    expected_subject_digest: str | None = None,
    what: str = "attestations/vulns.json",
) -> None:
    """Apply the policy to a recorded scan (the verified statement).

    Unchecked packages always fail. Then ``max_database_age_days`` (the database's
    ``lastUpdate`` against ``scanFinishedOn``) and ``max_severity`` (the worst finding).

    Args:
        statement: the vulns statement (verified, e.g. with :func:`~chainproof.attest.load_statement`).
        max_severity: the highest rating allowed (``none`` ... ``critical``), or None.
        max_database_age_days: the oldest database allowed, in days, or None.
        unknown_severity: how an advisory without severity ranks (default ``critical``).
        expected_subject_digest: the image or environment digest it must describe.
        what: the artifact name errors report.

    Raises:
        UncheckedPackages, StaleDatabase, SeverityViolation: the policy fails.
        VerificationError: wrong predicate type or subject.
        InputError: an unknown severity name.
    """
    for name in (max_severity, unknown_severity):
        if name is not None and name not in SEVERITIES:
            raise InputError(f"severity {name!r}: expected one of {', '.join(SEVERITIES)}")
    if statement.get("predicateType") != VULNS_PREDICATE:
        raise ArtifactRefused(what, f"expected predicate {VULNS_PREDICATE}, got {statement.get('predicateType')!r}")
    subject_name, digest = _only_subject(statement, what)
    if expected_subject_digest is not None and digest != expected_subject_digest:
        raise VerificationError(f"{what}: expected subject sha256:{expected_subject_digest}, got sha256:{digest}")
    predicate = statement.get("predicate") or {}
    shown = f"{what} ({subject_name})"
    unchecked = list((predicate.get("chainproof") or {}).get("unchecked") or [])
    if unchecked:
        raise UncheckedPackages(shown, unchecked)
    if max_database_age_days is not None:
        scanner = predicate.get("scanner") or {}
        last = str((scanner.get("db") or {}).get("lastUpdate", ""))
        finished = str((predicate.get("metadata") or {}).get("scanFinishedOn", ""))
        if not last or not finished:
            raise ArtifactRefused(what, "expected scanner.db.lastUpdate and metadata.scanFinishedOn")
        age = _parse_time(finished) - _parse_time(last)
        if age > timedelta(days=max_database_age_days):
            raise StaleDatabase(shown, last, age.days, max_database_age_days)
    if max_severity is not None:
        worst: tuple[int, dict[str, Any], str] | None = None
        for result in (predicate.get("scanner") or {}).get("result") or []:
            rating = next((s["score"] for s in result.get("severity") or [] if s.get("method") == "chainproof"), "unknown")
            rank = _rank(str(rating), unknown_severity) if rating in (*SEVERITIES, "unknown") else len(SEVERITIES) - 1
            if worst is None or rank > worst[0]:
                worst = (rank, result, str(rating))
        if worst is not None and worst[0] > SEVERITIES.index(max_severity):
            note = (worst[1].get("annotations") or [{}])[0]
            rating = worst[2] if worst[2] != "unknown" else f"unknown severity, ranked {unknown_severity}"
            raise SeverityViolation(shown, str(note.get("package", "?")), str(note.get("version", "?")),
                                    str(worst[1].get("id")), rating, max_severity)



#: Where a step writes its supply-chain evidence, as logical product names.
SBOM_PRODUCT = "attestations/sbom.json"
VULNS_PRODUCT = "attestations/vulns.json"


def write_supply_evidence(
    directory: str | os.PathLike[str],
    *,
    signer: Any,
    advisories: str | os.PathLike[str],
    lock: str | os.PathLike[str] | None = None,
    image: str = "",
    database_date: str = "",
    database_uri: str = "",
) -> dict[str, str]:
    """Write the signed SBOM and vulnerability statements a step adds to its products.

    One call for a step: the SBOM of the running environment (or, with ``lock`` and ``image``,
    of the image), the OSV scan of it, both signed by the step's signer, written atomically as
    ``DIRECTORY/attestations/sbom.json`` and ``DIRECTORY/attestations/vulns.json``. The policy is
    not applied here: the gate or the auditor applies it (:func:`verify_supply_evidence`).

    Args:
        directory: the step's output root (the logical names are relative to it).
        signer: the step's signer.
        advisories: the OSV advisory folder.
        lock: the image's lock file (with ``image``), or None for the running environment.
        image: ``REGISTRY/PATH@sha256:DIGEST`` of the image the lock describes.
        database_date: the database's date, if known better than its newest ``modified``.
        database_uri: where the database came from (recorded).

    Returns:
        Logical product name to SHA-256, for the step's link.

    Raises:
        InputError: a missing lock or advisory folder, or cyclonedx-py failed.
    """
    from chainproof.attest import write_atomic

    if bool(lock) != bool(image):
        raise InputError("supply evidence: a lock file and its image digest go together")
    bom = lock_sbom(lock) if lock else environment_sbom()
    subject = _subject(bom, image)
    scan = scan_sbom(bom, load_advisories(advisories))
    documents = {
        SBOM_PRODUCT: sbom_statement(bom, signer=signer, image=image),
        VULNS_PRODUCT: vulns_statement(scan, signer=signer, subject=subject, database_uri=database_uri,
                                       database_date=database_date),
    }
    products: dict[str, str] = {}
    for name, data in documents.items():
        write_atomic(Path(directory) / name, data)
        products[name] = hashlib.sha256(data).hexdigest()
    return products


def verify_supply_evidence(
    directory: str | os.PathLike[str],
    *,
    key: Any,
    expected_subject_digest: str,
    max_severity: str | None = None,
    max_database_age_days: int | None = None,
    unknown_severity: str = "critical",
) -> dict[str, Any]:
    """Verify a bundle's SBOM and vulnerability statements and apply the policy.

    Args:
        directory: the bundle (holding ``attestations/sbom.json`` and ``attestations/vulns.json``).
        key: the public key of the step that signed them (from the layout).
        expected_subject_digest: the image digest (or environment digest) the links name.
        max_severity, max_database_age_days, unknown_severity: the policy (:func:`check_vulns_policy`).

    Returns:
        A summary: subject, database date, findings and the worst rating.

    Raises:
        ArtifactRefused: a statement is missing or malformed.
        SignatureError: a statement is not signed by ``key``.
        VerificationError: a subject is not the expected digest.
        PolicyViolation: the policy fails (unchecked packages always do).
    """
    from chainproof.attest import load_statement

    loaded: dict[str, dict[str, Any]] = {}
    for name in (SBOM_PRODUCT, VULNS_PRODUCT):
        path = Path(directory) / name
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ArtifactRefused(name, f"expected the statement, found none ({exc.strerror})") from exc
        loaded[name] = load_statement(data, key=key, what=name)
    verify_sbom(loaded[SBOM_PRODUCT], expected_subject_digest, what=SBOM_PRODUCT)
    vulns = loaded[VULNS_PRODUCT]
    check_vulns_policy(vulns, max_severity=max_severity, max_database_age_days=max_database_age_days,
                       unknown_severity=unknown_severity, expected_subject_digest=expected_subject_digest,
                       what=VULNS_PRODUCT)
    scanner = vulns["predicate"]["scanner"]
    ratings = [next((s["score"] for s in r.get("severity") or [] if s.get("method") == "chainproof"), "unknown")
               for r in scanner.get("result") or []]
    return {
        "subject": _only_subject(vulns, VULNS_PRODUCT)[0],
        "sha256": expected_subject_digest,
        "database": scanner["db"]["lastUpdate"],
        "findings": len(ratings),
        "worst": max(ratings, key=lambda r: _rank(r, unknown_severity)) if ratings else "none",
    }
