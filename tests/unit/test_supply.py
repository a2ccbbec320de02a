"""SBOM and vulnerability statements: cyclonedx-py's SBOMs, the shared OSV advisory database
(pypa/advisory-database snapshot), signed in-toto statements and the policy."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest
from chainproof.attest import load_statement
from chainproof.errors import InputError, PolicyViolation, SignatureError, VerificationError
from chainproof.signing import init_keys, load_signer
from chainproof.supply import (
    CYCLONEDX_PREDICATE,
    VULNS_PREDICATE,
    SeverityViolation,
    StaleDatabase,
    UncheckedPackages,
    affected_by,
    check_vulns_policy,
    environment_digest,
    environment_sbom,
    load_advisories,
    lock_sbom,
    sbom_packages,
    sbom_statement,
    scan_sbom,
    severity_rating,
    verify_sbom,
    vulns_statement,
)
from hypothesis import assume, given
from hypothesis import strategies as st
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
ADVISORIES = ROOT.parent / "shared" / "data" / "pypa-advisory-database" / "vulns"
if not ADVISORIES.is_dir():  # CI lays shared/ beside the clone
    ADVISORIES = Path("/work/shared/data/pypa-advisory-database/vulns")
IMAGE = "europe-docker.pkg.dev/p/r/chainproof@sha256:" + "ab" * 32


@pytest.fixture(scope="module")
def db():
    return load_advisories(ADVISORIES)


@pytest.fixture(scope="module")
def signer(tmp_path_factory):
    ring = init_keys(tmp_path_factory.mktemp("keys"), roles=["supply"])
    return load_signer(ring.signer_reference("supply"))


@pytest.fixture(scope="module")
def env_bom():
    return environment_sbom()


def test_the_advisory_database_is_dated_by_its_newest_advisory(db):
    assert db.count > 2000 and db.last_update == "2024-10-10T17:22:00Z"
    assert "jinja2" in db.advisories and len(db.digest) == 64


def test_environment_sbom_statement_verifies_and_its_subject_is_the_environment(env_bom, signer):
    # Differential: the digest from cyclonedx-py's SBOM equals the digest of what
    # importlib.metadata sees in this interpreter.
    installed = {(canonicalize_name(d.metadata["Name"]), d.version) for d in metadata.distributions()}
    expected = environment_digest(installed)
    assert environment_digest(sbom_packages(env_bom)) == expected
    envelope = sbom_statement(env_bom, signer=signer)
    statement = load_statement(envelope, key=signer.public_key, what="sbom")
    assert statement["predicateType"] == CYCLONEDX_PREDICATE
    assert statement["subject"] == [{"name": "environment", "digest": {"sha256": expected}}]
    assert statement["predicate"]["bomFormat"] == "CycloneDX"
    verify_sbom(envelope, expected, key=signer.public_key)

    with pytest.raises(VerificationError, match=r"expected subject sha256:0{64}, got sha256:"):
        verify_sbom(statement, "0" * 64)
    # An SBOM edited after signing (here: a package removed) no longer hashes to its subject.
    edited = json.loads(json.dumps(statement))
    edited["predicate"]["components"] = [c for c in edited["predicate"]["components"] if c["name"] != "numpy"]
    with pytest.raises(VerificationError, match="expected the SBOM's packages to hash to its subject"):
        verify_sbom(edited, expected)
    # A forged envelope fails on its signature.
    forged = json.loads(envelope)
    forged["signatures"][0]["sig"] = "00" * 64
    with pytest.raises(SignatureError):
        verify_sbom(json.dumps(forged).encode(), expected, key=signer.public_key)


def test_environment_vulns_statement_records_database_and_scanner(env_bom, db, signer):
    scan = scan_sbom(env_bom, db)
    # Everything is checked, except chainproof itself when it was installed from this tree
    # (first party: cyclonedx-py gives a local install no pkg:pypi purl).
    assert scan.unchecked == () and all(p["name"] == "chainproof" for p in scan.first_party)
    assert scan.checked + len(scan.first_party) == len(sbom_packages(env_bom))
    subject = ("environment", environment_digest(sbom_packages(env_bom)))
    statement = load_statement(vulns_statement(scan, signer=signer, subject=subject), key=signer.public_key, what="vulns")
    predicate = statement["predicate"]
    assert statement["predicateType"] == VULNS_PREDICATE
    assert predicate["scanner"]["db"]["lastUpdate"] == "2024-10-10T17:22:00Z"
    assert predicate["scanner"]["db"]["version"] == f"sha256:{db.digest}"
    assert predicate["scanner"]["uri"].startswith("pkg:pypi/chainproof@")
    assert predicate["metadata"]["scanStartedOn"] <= predicate["metadata"]["scanFinishedOn"]
    found = {(r["annotations"][0]["package"], r["id"]) for r in predicate["scanner"]["result"]}
    assert found == {(f.package, f.advisory) for f in scan.findings}
    check_vulns_policy(statement, expected_subject_digest=subject[1])  # no constraint: passes
    with pytest.raises(VerificationError, match="expected subject"):
        check_vulns_policy(statement, expected_subject_digest="1" * 64)


def _lock(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "requirements.lock"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_locked_version_with_a_known_advisory_is_flagged_and_fails_max_severity(tmp_path, db, signer):
    bom = lock_sbom(_lock(tmp_path, ["gitpython==3.1.30", "jinja2==3.1.4", "requests==2.32.3"]), validate=True)
    scan = scan_sbom(bom, db)
    ids = {f.advisory for f in scan.findings if f.package == "gitpython"}
    # GitPython < 3.1.33 runs a git executable from the working directory (CVE-2023-40590).
    assert "PYSEC-2023-161" in ids
    assert all(f.package == "gitpython" for f in scan.findings), scan.findings
    finding = next(f for f in scan.findings if f.advisory == "PYSEC-2023-161")
    assert finding.severity == "high" and ("cvss_v3", "7.8") in finding.scores and "CVE-2023-40590" in finding.aliases
    statement = load_statement(vulns_statement(scan, signer=signer, subject=("image", "ab" * 32)),
                               key=signer.public_key, what="vulns")
    with pytest.raises(SeverityViolation) as err:
        check_vulns_policy(statement, max_severity="medium")
    message = str(err.value)
    assert "gitpython==3.1.30 has PYSEC-" in message and "expected nothing above medium" in message
    assert err.value.advisory in ids and isinstance(err.value, PolicyViolation)
    check_vulns_policy(statement, max_severity="critical", unknown_severity="low")
    # The image SBOM's subject is the image digest.
    sbom = load_statement(sbom_statement(bom, signer=signer, image=IMAGE), key=signer.public_key, what="sbom")
    assert sbom["subject"] == [{"name": IMAGE.split("@")[0], "digest": {"sha256": "ab" * 32}}]
    verify_sbom(sbom, "ab" * 32)


def test_a_stale_database_fails_max_database_age_days(tmp_path, db, signer):
    scan = scan_sbom(lock_sbom(_lock(tmp_path, ["requests==2.32.3"])), db)
    stale = load_statement(vulns_statement(scan, signer=signer, subject=("image", "ab" * 32)), key=signer.public_key, what="v")
    with pytest.raises(StaleDatabase, match=r"advisory database last updated 2024-10-10T17:22:00Z \(\d+ days before the scan\); expected at most 30 days"):
        check_vulns_policy(stale, max_database_age_days=30)
    # A database known to be fresher (e.g. synced today) is recorded with that date and passes.
    fresh = load_statement(vulns_statement(scan, signer=signer, subject=("image", "ab" * 32),
                                           database_date=scan.finished), key=signer.public_key, what="v")
    assert fresh["predicate"]["scanner"]["db"]["lastUpdate"] == scan.finished
    check_vulns_policy(fresh, max_database_age_days=30, max_severity="none")


def test_a_package_that_cannot_be_checked_is_a_failure(db, signer):
    bom = {"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1, "components": [
        {"type": "library", "name": "requests", "version": "2.32.3", "purl": "pkg:pypi/requests@2.32.3"},
        {"type": "library", "name": "weird", "version": "not a version!", "purl": "pkg:pypi/weird@x"},
        {"type": "library", "name": "libssl", "version": "3.0.2", "purl": "pkg:deb/debian/libssl@3.0.2"},
        {"type": "library", "name": "noversion", "purl": "pkg:pypi/noversion"},
    ]}
    scan = scan_sbom(bom, db)
    assert scan.checked == 1 and sorted(u["name"] for u in scan.unchecked) == ["libssl", "noversion", "weird"]
    statement = load_statement(vulns_statement(scan, signer=signer, subject=("image", "ab" * 32)), key=signer.public_key, what="v")
    with pytest.raises(UncheckedPackages, match=r"expected every package checked, 3 could not be: "):
        check_vulns_policy(statement)
    with pytest.raises(InputError, match="expected one of none, low"):
        check_vulns_policy(statement, max_severity="severe")


def test_the_real_image_lock_is_scanned_completely(db):
    lock = ROOT / "image" / "requirements.lock"
    scan = scan_sbom(lock_sbom(lock), db)
    assert scan.unchecked == () and scan.checked >= 50


# Known upstream inconsistencies: a listed version the ranges exclude (pre-releases below an
# "introduced" release, and a version equal to "fixed"). The listed versions still flag them.
UPSTREAM_INCONSISTENT = {
    ("PYSEC-2023-61", v) for v in ("3.2a1", "3.2b1", "3.2rc1", "4.2a1", "4.2b1", "4.2rc1")
} | {("PYSEC-2023-177", "23.9.0"), ("PYSEC-2023-177", "23.9.0.post1")}


def test_range_evaluation_agrees_with_every_listed_version_in_the_database(db):
    # Differential oracle: pypa/advisory-database enumerates affected versions next to the ranges.
    agree, disagree = 0, set()
    for advisories in db.advisories.values():
        for advisory in advisories:
            for affected in advisory.get("affected") or []:
                ranges = [r for r in affected.get("ranges") or [] if r.get("type") == "ECOSYSTEM"]
                if not ranges:
                    continue
                for version in affected.get("versions") or []:
                    try:
                        Version(str(version))
                    except ValueError:
                        continue
                    if affected_by(str(version), {"ranges": ranges}):
                        agree += 1
                    else:
                        disagree.add((advisory["id"], str(version)))
    assert agree > 100_000
    assert disagree <= UPSTREAM_INCONSISTENT


versions = st.tuples(st.integers(0, 20), st.integers(0, 20), st.integers(0, 20)).map(lambda t: Version(".".join(map(str, t))))


@given(a=versions, b=versions, v=versions, last=st.booleans())
def test_one_interval_is_evaluated_as_osv_specifies(a, b, v, last):
    lo, hi = min(a, b), max(a, b)
    assume(lo < hi or last)  # introduced X, fixed X is degenerate: flagged (fail closed)
    closing = {"last_affected": str(hi)} if last else {"fixed": str(hi)}
    entry = {"ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": str(lo)}, closing]}]}
    expected = lo <= v <= hi if last else lo <= v < hi
    assert affected_by(str(v), entry) is expected
    zero = {"ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, closing]}]}
    assert affected_by(str(v), zero) is (v <= hi if last else v < hi)


@pytest.mark.parametrize(("score", "rating"), [(0.0, "none"), (0.1, "low"), (3.9, "low"), (4.0, "medium"),
                                               (6.9, "medium"), (7.0, "high"), (8.9, "high"), (9.0, "critical"), (10.0, "critical")])
def test_cvss_ratings(score, rating):
    assert severity_rating(score) == rating


def test_missing_inputs_are_one_line_input_errors(tmp_path):
    with pytest.raises(InputError, match="no such advisory folder"):
        load_advisories(tmp_path / "nope")
    with pytest.raises(InputError, match="found none"):
        load_advisories(tmp_path)
    (tmp_path / "x.yaml").write_text("just: text\n")
    with pytest.raises(InputError, match="not an OSV advisory"):
        load_advisories(tmp_path)
    with pytest.raises(InputError, match="no such lock file"):
        lock_sbom(tmp_path / "missing.lock")
    with pytest.raises(InputError, match="expected REGISTRY/PATH@sha256"):
        sbom_statement({"components": []}, signer=None, image="registry/x:latest")


def test_a_step_writes_its_evidence_in_one_call_and_the_bundle_verifies(tmp_path, signer):
    import hashlib

    from chainproof.supply import (
        SBOM_PRODUCT,
        VULNS_PRODUCT,
        verify_supply_evidence,
        write_supply_evidence,
    )

    lock = _lock(tmp_path, ["requests==2.32.3", "jinja2==3.1.4"])
    bundle = tmp_path / "bundle"
    products = write_supply_evidence(bundle, signer=signer, advisories=ADVISORIES, lock=lock, image=IMAGE)
    assert sorted(products) == [SBOM_PRODUCT, VULNS_PRODUCT]
    for name, digest in products.items():
        assert hashlib.sha256((bundle / name).read_bytes()).hexdigest() == digest
    summary = verify_supply_evidence(bundle, key=signer.public_key, expected_subject_digest="ab" * 32,
                                     max_severity="none")
    assert summary == {"subject": IMAGE.split("@")[0], "sha256": "ab" * 32, "database": "2024-10-10T17:22:00Z",
                       "findings": 0, "worst": "none"}
    with pytest.raises(StaleDatabase):
        verify_supply_evidence(bundle, key=signer.public_key, expected_subject_digest="ab" * 32, max_database_age_days=7)
    with pytest.raises(VerificationError, match="expected subject"):
        verify_supply_evidence(bundle, key=signer.public_key, expected_subject_digest="cd" * 32)
    other = load_signer(init_keys(tmp_path / "other", roles=["x"]).signer_reference("x"))
    with pytest.raises(SignatureError):
        verify_supply_evidence(bundle, key=other.public_key, expected_subject_digest="ab" * 32)
    (bundle / VULNS_PRODUCT).unlink()
    with pytest.raises(Exception, match=r"^attestations/vulns.json: expected the statement"):
        verify_supply_evidence(bundle, key=signer.public_key, expected_subject_digest="ab" * 32)
    with pytest.raises(InputError, match="go together"):
        write_supply_evidence(bundle, signer=signer, advisories=ADVISORIES, lock=lock)
