"""Every numbered check of docs/verification.md, one by one, on the chain simulator.

One chain is built in-process (chainproof.testing.chain: the five reference steps as library
calls, no kfp), then each test breaks exactly one thing, the way an attacker with the stated
keys could, and asserts that the check with that number, and no earlier one, refuses it: so a
check removed or weakened fails its test here. The chain is restored after every test.
"""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.simulated_chain import built_chain

from chainproof.auditor import AuditorPolicy
from chainproof.errors import (
    ArtifactRefused,
    ChainError,
    DigestMismatch,
    LayoutError,
    PolicyViolation,
    SignatureError,
    UntrustedKey,
    VerificationError,
)
from chainproof.identity import KIND_SERVICE_ACCOUNT_KEY
from chainproof.policy import EXT_EXPECTED_PRINCIPALS
from chainproof.signing import init_keys, load_public_key, load_signer
from chainproof.testing.chain import SimulatedChain
from chainproof.verify import VerifyOptions

DOCS = Path(__file__).resolve().parents[2] / "docs" / "verification.md"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatedChain]:
    # Built here, or prebuilt once for a mutation run (tests/simulated_chain.py).
    yield from built_chain(tmp_path_factory)


@pytest.fixture
def chain(built: SimulatedChain):
    yield built
    built.restore()


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory):
    ring = init_keys(tmp_path_factory.mktemp("stranger"), roles=["owner", "step"], development=True)
    return ring


def refused(run, check: str, kind: type[BaseException] = VerificationError) -> VerificationError:
    with pytest.raises(kind) as err:
        run()
    assert getattr(err.value, "failed_check", None) == check, (
        f"expected check ({check}) to refuse, got ({getattr(err.value, 'failed_check', None)}): {err.value}"
    )
    return err.value


def test_the_untouched_chain_passes_every_check(chain):
    result = chain.verify()
    numbers = {line.split(")")[0].lstrip("(") for line in result.checks}
    assert {"1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "18", "19"} <= numbers
    registered = chain.verify_registered()
    assert {"0", "15", "16", "17"} <= {line.split(")")[0].lstrip("(") for line in registered.checks}


def test_every_documented_check_is_tested_here():
    documented = set()
    for line in DOCS.read_text().splitlines():
        if line.startswith("| ") and line.split("|")[1].strip().isdigit():
            documented.add(line.split("|")[1].strip())
    source = Path(__file__).read_text()
    untested = sorted((n for n in documented if f"def test_check_{n}_" not in source), key=int)
    assert documented and not untested, f"checks without a test here: {untested}"


# (1) the layout parses, within limits


def test_check_1_refuses_a_layout_that_is_not_a_signed_layout(chain):
    (chain.bundle / "root.layout").write_text(json.dumps({"payloadType": "x", "payload": "", "signatures": []}))
    refused(chain.verify, "1", LayoutError)


def test_check_1_refuses_an_oversized_layout(chain):
    err = refused(lambda: chain.verify(options=VerifyOptions(max_metadata_bytes=64)), "1", ArtifactRefused)
    assert "root.layout" in str(err)


# (2) a trusted owner signed the layout


def test_check_2_refuses_a_layout_signed_by_an_untrusted_key(chain, stranger):
    chain.edit_layout(lambda layout: None, signer=load_signer(stranger.signer_reference("owner")))
    err = refused(chain.verify, "2", UntrustedKey)
    assert stranger.roles["owner"][:16] in str(err)


def test_check_2_refuses_a_layout_edited_after_signing(chain):
    path = chain.bundle / "root.layout"
    envelope = json.loads(path.read_bytes())
    layout = json.loads(base64.b64decode(envelope["payload"]))
    layout["readme"] = "edited"
    envelope["payload"] = base64.b64encode(json.dumps(layout).encode()).decode()
    path.write_text(json.dumps(envelope))
    refused(chain.verify, "2", SignatureError)


def test_check_2_never_trusts_the_bundles_own_owner_key(chain, stranger):
    other = load_public_key(stranger.public_key_path("owner"))
    refused(lambda: chain.verify(trusted_owner_keys={other.keyid: other}), "2", UntrustedKey)


# (3) the layout has not expired


def test_check_3_refuses_an_expired_layout(chain):
    chain.edit_layout(lambda layout: setattr(layout, "expires", "2020-01-01T00:00:00Z"))
    err = refused(chain.verify, "3", LayoutError)
    assert "expired" in str(err)


# (4) every step has a link signed by its functionary


def test_check_4_refuses_a_missing_link(chain):
    chain.link_path("sign_and_attest").unlink()
    err = refused(chain.verify, "4", ChainError)
    assert err.step == "sign_and_attest"


def test_check_4_refuses_a_link_signed_by_another_key(chain, stranger):
    chain.edit_link("train_model", lambda link: None, signer=load_signer(stranger.signer_reference("step")))
    refused(chain.verify, "4", VerificationError)


def test_check_4_refuses_a_link_edited_after_signing(chain):
    path = chain.link_path("train_model")
    envelope = json.loads(path.read_bytes())
    link = json.loads(base64.b64decode(envelope["payload"]))
    link["environment"]["chainproof"]["parameters"]["edited"] = True
    envelope["payload"] = base64.b64encode(json.dumps(link).encode()).decode()
    path.write_text(json.dumps(envelope))
    err = refused(chain.verify, "4", ChainError)
    assert err.step == "train_model"


def test_check_4_refuses_a_decoy_link_beside_the_genuine_one(chain, stranger):
    genuine = chain.link_path("train_model")
    shutil.copy(genuine, genuine.with_name("train_model.deadbeef.link"))
    refused(chain.verify, "4", ArtifactRefused)


# (5) materials match their producers' products


def test_check_5_refuses_a_material_that_is_not_the_product_it_claims(chain):
    def swap(link):
        link.materials["dataset/breast_cancer.csv"] = {"sha256": "0" * 64}

    chain.edit_link("train_model", swap)
    err = refused(chain.verify, "5", ChainError)
    assert err.step == "train_model" and err.artifact == "dataset/breast_cancer.csv"
    assert "0" * 64 in err.reason


# (6) products are allowed by the layout


def test_check_6_refuses_a_product_the_layout_does_not_allow(chain):
    def add(link):
        link.products["reports/backdoor.json"] = {"sha256": "1" * 64}

    chain.edit_link("train_model", add)
    err = refused(chain.verify, "6", ChainError)
    assert err.step == "train_model" and err.artifact == "reports/backdoor.json"


# (7) links were recorded in the layout's order


def test_check_7_refuses_steps_out_of_order(chain):
    def backdate(link):
        link.environment["chainproof"]["recorded"] = "2000-01-01T00:00:00Z"

    chain.edit_link("sign_and_attest", backdate)
    err = refused(chain.verify, "7", ChainError)
    assert err.step == "sign_and_attest" and "out of order" in err.reason


# (8) the bundle's evidence is the attested evidence


def test_check_8_refuses_an_evidence_file_changed_after_attestation(chain):
    report = chain.bundle / "reports" / "scan-ingest.json"
    report.write_bytes(report.read_bytes() + b" ")
    err = refused(chain.verify, "8", DigestMismatch)
    assert err.artifact == "reports/scan-ingest.json"


def test_check_8_refuses_an_evidence_file_no_step_produced(chain):
    (chain.bundle / "reports" / "extra.json").write_text("{}")
    refused(chain.verify, "8", ArtifactRefused)


# (9) the delivered model is the attested model


def test_check_9_refuses_a_model_file_changed_after_the_chain(chain):
    model = chain.model / "model.joblib"
    model.write_bytes(model.read_bytes() + b"\x00")
    err = refused(chain.verify, "9", DigestMismatch)
    assert err.artifact == "model/model.joblib"


def test_check_9_refuses_a_file_added_to_the_model(chain):
    (chain.model / "loader.py").write_text("import os\n")
    refused(chain.verify, "9", VerificationError)


# (10)-(12): every step key stolen, so the links are rewritten consistently: only the content
# signatures are left to catch it.


def test_check_10_refuses_a_model_the_model_signature_is_not_over(chain):
    rewritten = chain.replace_artifact("model/model.joblib", b"not the trained model")
    assert "sign_and_attest" in rewritten
    refused(chain.verify, "10", SignatureError)


def test_check_11_refuses_provenance_about_another_model(chain):
    statement = chain.statement("attestations/provenance.json")
    forged = chain.sign_statement("sign_and_attest", subjects={"model/model.joblib": "2" * 64},
                                  predicate_type=statement["predicateType"], predicate=statement["predicate"])
    chain.replace_artifact("attestations/provenance.json", forged)
    refused(chain.verify, "11", VerificationError)


def test_check_11_refuses_provenance_signed_by_another_step(chain):
    statement = chain.statement("attestations/provenance.json")
    subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    forged = chain.sign_statement("train_model", subjects=subjects,
                                  predicate_type=statement["predicateType"], predicate=statement["predicate"])
    chain.replace_artifact("attestations/provenance.json", forged)
    refused(chain.verify, "11", SignatureError)


def test_check_12_refuses_a_verification_summary_that_did_not_pass(chain):
    statement = chain.statement("attestations/vsa.json")
    subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    predicate = dict(statement["predicate"], verificationResult="FAILED")
    forged = chain.sign_statement("verify_chain", subjects=subjects,
                                  predicate_type=statement["predicateType"], predicate=predicate)
    chain.replace_artifact("attestations/vsa.json", forged)
    err = refused(chain.verify, "12", ArtifactRefused)
    assert "FAILED" in str(err)


# (13) the layout's identity policy


def test_check_13_refuses_a_step_that_ran_with_a_service_account_key_file(chain):
    def key_file(link):
        link.environment["chainproof"]["principal"] = {"kind": KIND_SERVICE_ACCOUNT_KEY, "name": "sa@p.iam.gserviceaccount.com"}

    chain.edit_link("train_model", key_file)
    err = refused(chain.verify, "13", PolicyViolation)
    assert err.step == "train_model"


def test_check_13_refuses_a_step_that_ran_as_another_principal_than_the_layout_pins(chain):
    def pin(layout):
        readme = json.loads(layout.readme) if layout.readme else {}
        pins = readme.setdefault("chainproof", {}).setdefault(EXT_EXPECTED_PRINCIPALS, {})
        pins["train_model"] = "trainer@p.iam.gserviceaccount.com"
        layout.readme = json.dumps(readme)

    chain.edit_layout(pin)
    err = refused(chain.verify, "13", PolicyViolation)
    assert err.step == "train_model" and "trainer@p.iam.gserviceaccount.com" in str(err)


# (18) the SBOM describes the environment the step's link names


def test_check_18_refuses_an_sbom_about_another_environment(chain):
    statement = chain.statement("attestations/sbom.json")
    forged = chain.sign_statement("sign_and_attest", subjects={s["name"]: "3" * 64 for s in statement["subject"]},
                                  predicate_type=statement["predicateType"], predicate=statement["predicate"])
    chain.replace_artifact("attestations/sbom.json", forged)
    refused(chain.verify, "18", VerificationError)


# (19) the model card is about this model and its figures are the attested ones


def test_check_19_refuses_a_model_card_whose_figures_are_not_the_attested_ones(chain):
    statement = chain.statement("attestations/model-card.json")
    predicate = json.loads(json.dumps(statement["predicate"]))
    metrics = predicate["modelCard"]["quantitative_analysis"]["performance_metrics"]
    assert metrics, "the card lists no metrics"
    metrics[0]["value"] = "0.999999"
    subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    forged = chain.sign_statement("verify_chain", subjects=subjects,
                                  predicate_type=statement["predicateType"], predicate=predicate)
    chain.replace_artifact("attestations/model-card.json", forged)
    refused(chain.verify, "19", VerificationError)


# (14) the auditor's own policy


def test_check_14_refuses_development_keys_when_the_auditor_forbids_them(chain):
    policy = AuditorPolicy.from_dict({"version": 1, "allow_development_keys": False})
    refused(lambda: chain.verify(policy=policy), "14", PolicyViolation)


def test_check_14_refuses_a_step_principal_the_auditor_does_not_expect(chain):
    policy = AuditorPolicy.from_dict({"version": 1, "expected_principals": {"train_model": "trainer@p.iam.gserviceaccount.com"}})
    err = refused(lambda: chain.verify(policy=policy), "14", PolicyViolation)
    assert "train_model" in str(err)


# (0), (15)-(17): the registry wraps the chain


def test_check_0_refuses_a_bundle_that_is_not_the_registered_one(chain):
    report = chain.bundle / "reports" / "scan-ingest.json"
    report.write_bytes(report.read_bytes() + b" ")
    refused(chain.verify_registered, "0", DigestMismatch)


def test_check_15_refuses_a_registry_entry_for_another_model(chain):
    version = chain.version_dir / "version.json"
    doc = json.loads(version.read_text())
    doc["model"]["sha256"] = "4" * 64
    version.write_text(json.dumps(doc))
    refused(chain.verify_registered, "15", DigestMismatch)


def test_check_16_refuses_an_entry_registered_under_another_reference(chain):
    second = chain.version_dir.with_name("2")
    shutil.copytree(chain.version_dir, second)
    version = second / "version.json"
    doc = json.loads(version.read_text().replace(str(chain.version_dir), str(second)))
    doc.update(reference=f"local://{chain.model_name}@2", version="2")
    version.write_text(json.dumps(doc))
    refused(lambda: chain.verify_registered(f"local://{chain.model_name}@2"), "16", VerificationError)


def test_check_17_refuses_an_entry_read_from_another_registry(chain):
    registry = chain.registry_dir / "registry.json"
    doc = json.loads(registry.read_text())
    doc["registry_id"] = "f" * 32
    registry.write_text(json.dumps(doc))
    err = refused(chain.verify_registered, "17", VerificationError)
    assert "f" * 32 in str(err)
