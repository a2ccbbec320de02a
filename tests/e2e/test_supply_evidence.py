"""Supply-chain evidence in every run: the SBOM of the environment, the vulnerability scan, their checks."""

import base64
import json
import shutil
from pathlib import Path

import pytest

from chainproof.errors import PolicyViolation, VerificationError
from chainproof.runner import run_reference_pipeline
from chainproof.signing import load_signer
from chainproof.verify import verify_bundle

ADVISORIES = Path(__file__).resolve().parents[3] / "shared" / "data" / "pypa-advisory-database" / "vulns"
if not ADVISORIES.is_dir():  # a CI checkout has shared/ beside the repository
    ADVISORIES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "pypa-advisory-database" / "vulns"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    if not ADVISORIES.is_dir():
        pytest.skip(f"the shared PyPI advisory database is not at {ADVISORIES}")
    work = tmp_path_factory.mktemp("supply")
    return run_reference_pipeline(workdir=work / "cw", trust_dir=work / "trust", advisories=str(ADVISORIES))


def _owner(run):
    return load_signer(f"file:{run.owner_key.with_suffix('.pem')}")


def _verify(bundle, run, policy=None):
    owner = _owner(run)
    return verify_bundle(bundle, trusted_owner_keys={owner.keyid: owner.public_key}, model_dir=run.model, policy=policy)


def test_every_run_records_an_sbom_and_a_scan_that_verify(run):
    result = _verify(run.bundle, run)
    assert {"sbom", "vulns"} <= set(result.attestations)
    assert any(c.startswith("(18) attestations/sbom.json by sign_and_attest describes the environment") for c in result.checks)
    statement = json.loads(base64.b64decode(json.loads((run.bundle / "attestations" / "vulns.json").read_text())["payload"]))
    assert statement["predicateType"] == "https://in-toto.io/attestation/vulns/v0.2"
    assert statement["predicate"]["scanner"]["db"]["lastUpdate"].startswith("2024-10")


def test_sbom_of_another_environment_is_refused(run, tmp_path):
    # An insider with the signing key writes an SBOM for a different environment: the link names another digest.
    from chainproof import supply
    from chainproof.signing import load_signer as signer_of

    bundle = tmp_path / "bundle"
    shutil.copytree(run.bundle, bundle)
    bom = supply.environment_sbom()
    bom["components"] = [c for c in bom.get("components", []) if c.get("name") != "numpy"]
    signer = signer_of(f"file:{run.owner_key.parent / 'sign_and_attest.pem'}")
    (bundle / "attestations" / "sbom.json").write_bytes(supply.sbom_statement(bom, signer=signer))
    with pytest.raises(VerificationError, match=r"attestations/sbom.json"):
        _verify(bundle, run)


def test_auditor_policy_limits_severity_and_database_age(run, tmp_path):
    from chainproof.auditor import AuditorPolicy

    stale = AuditorPolicy.from_dict({"version": 1, "max_database_age_days": 30})
    with pytest.raises(PolicyViolation, match=r"attestations/vulns.json.*(days|old)"):
        _verify(run.bundle, run, policy=stale)
    fine = AuditorPolicy.from_dict({"version": 1, "max_severity": "critical", "required_attestations": ["sbom", "vulns"]})
    result = _verify(run.bundle, run, policy=fine)
    assert any("recorded vulnerability scan within max_severity critical" in c for c in result.checks)
