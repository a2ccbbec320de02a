"""The auditor's chain: standard attestations checked by other people's tools, attacks each
caught with its own reason (insiders holding a step's key included), the auditor policy,
and reports."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from in_toto.models.metadata import Envelope

from chainproof.attest import load_link, sign_statement, write_link
from chainproof.auditor import AuditorPolicy
from chainproof.errors import ArtifactRefused, ChainError, DigestMismatch, InputError, LayoutError, PolicyViolation
from chainproof.policy import REFERENCE_PIPELINE_STEPS, sign_layout
from chainproof.report import build_report, render_html, render_text
from chainproof.signing import load_public_key, load_signer
from chainproof.verify import SLSA_PROVENANCE, SLSA_VSA, load_layout, verify_bundle


def _signer(registered, step):
    return load_signer(f"file:{registered.keys_dir / (step + '.pem')}")


def _link_file(bundle: Path, step: str) -> Path:
    (found,) = sorted((bundle / "links").glob(f"{step}.*.link"))
    return found


def _rerecord(registered, step: str, mutate) -> None:
    """An insider holding ``step``'s key re-records its link after ``mutate(link)``."""
    path = _link_file(registered.bundle, step)
    _, link = load_link(path)
    mutate(link)
    envelope = Envelope.from_signable(link)
    envelope.create_signature(_signer(registered, step).signer)
    path.unlink()
    write_link(envelope, registered.bundle / "links")


def _statement(path: Path) -> dict:
    return json.loads(base64.b64decode(json.loads(path.read_text())["payload"]))


def _verify(registered, **kw):
    return verify_bundle(registered.bundle, trusted_owner_keys=registered.owner_keys, **kw)


# --- standard formats, verified by other people's code --------------------------------


def test_slsa_provenance_verifies_with_standard_dsse_and_parses_as_in_toto_statement(registered):
    from in_toto_attestation.v1.statement import Statement
    from securesystemslib.dsse import Envelope as DSSE

    path = registered.bundle / "attestations" / "provenance.json"
    envelope = DSSE.from_dict(json.loads(path.read_text()))
    key = load_public_key(registered.keys_dir / "sign_and_attest.pub")
    envelope.verify([key], 1)  # raises on a bad signature
    doc = json.loads(envelope.payload)
    from google.protobuf import json_format
    from in_toto_attestation.v1 import statement_pb2

    pb = json_format.ParseDict(doc, statement_pb2.Statement())
    Statement.copy_from_pb(pb).validate()
    assert doc["predicateType"] == SLSA_PROVENANCE
    build = doc["predicate"]["buildDefinition"]
    assert {"buildType", "externalParameters", "resolvedDependencies"} <= set(build)
    names = {d["name"] for d in build["resolvedDependencies"]}
    assert {"chainproof", "layout", "dataset/breast_cancer.csv"} <= names
    assert doc["predicate"]["runDetails"]["metadata"]["invocationId"]
    # The subject is exactly the model files: the joblib Pipeline and its feature contract.
    assert sorted(item["name"] for item in doc["subject"]) == ["model/features.json", "model/model.joblib"]
    assert all(len(item["digest"]["sha256"]) == 64 for item in doc["subject"])
    # Integers stay integers (the attestation bindings turn them into floats; we emit JSON).
    assert isinstance(build["externalParameters"]["train.random_state"], int)


def test_vsa_is_a_signed_slsa_verification_summary(registered):
    doc = _statement(registered.bundle / "attestations" / "vsa.json")
    assert doc["predicateType"] == SLSA_VSA
    assert doc["predicate"]["verificationResult"] == "PASSED"
    assert doc["predicate"]["policy"]["digest"]["sha256"]
    assert doc["predicate"]["inputAttestations"]


# --- attacks, each with its own reason ------------------------------------------------


def test_rejects_steps_reordered(registered):
    # The signing step's link claims it ran before training finished.
    def backdate(link):
        link.environment["chainproof"]["recorded"] = "2000-01-01T00:00:00Z"

    _rerecord(registered, "sign_and_attest", backdate)
    with pytest.raises(ChainError, match=r"step sign_and_attest: recorded at 2000-01-01T00:00:00Z, before (train_model|evaluate_robustness) .* steps out of order"):
        _verify(registered)


def test_rejects_link_presented_as_another_step(registered):
    train = _link_file(registered.bundle, "train_model")
    sign = _link_file(registered.bundle, "sign_and_attest")
    sign.unlink()
    keyid8 = sign.name.split(".")[1]
    (registered.bundle / "links" / f"sign_and_attest.{keyid8}.link").write_bytes(train.read_bytes())
    with pytest.raises(ChainError) as err:
        _verify(registered)
    assert err.value.step == "sign_and_attest"


def test_rejects_expired_layout(registered, tmp_path):
    _, layout = load_layout((registered.bundle / "root.layout").read_bytes())
    layout.expires = (datetime.now(timezone.utc) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    owner = load_signer(f"file:{registered.keys_dir / 'owner.pem'}")
    (registered.bundle / "root.layout").write_bytes(sign_layout(layout, owner))
    with pytest.raises(LayoutError, match=r"root.layout: layout expired on"):
        _verify(registered)


def test_rejects_provenance_whose_subject_is_not_the_model(registered):
    # An insider with the signing key re-signs provenance for another model and re-records the link.
    path = registered.bundle / "attestations" / "provenance.json"
    doc = _statement(path)
    signer = _signer(registered, "sign_and_attest")
    path.write_bytes(sign_statement(subjects={"model/model.joblib": "ab" * 32}, predicate_type=SLSA_PROVENANCE,
                                    predicate=doc["predicate"], signer=signer))
    from chainproof.digests import sha256_file

    digest = sha256_file(path)

    def update(link):
        link.products["attestations/provenance.json"] = {"sha256": digest}

    _rerecord(registered, "sign_and_attest", update)
    # The later steps attested the original provenance: their MATCH rules catch it first.
    with pytest.raises(ChainError, match=r"attestations/provenance.json: expected sha256:.* \(product of sign_and_attest\)"):
        _verify(registered)


def test_rejects_provenance_subject_mismatch_even_when_every_link_agrees(registered):
    # Insiders holding every step key rewrite the provenance and every link that names it.
    from chainproof.digests import sha256_file

    path = registered.bundle / "attestations" / "provenance.json"
    doc = _statement(path)
    path.write_bytes(sign_statement(subjects={"model/model.joblib": "ab" * 32}, predicate_type=SLSA_PROVENANCE,
                                    predicate=doc["predicate"], signer=_signer(registered, "sign_and_attest")))
    digest = sha256_file(path)
    # Every link that names the provenance (the producer and the gate, which consumed it) is rewritten.
    for step, kind in (("sign_and_attest", "products"), ("verify_chain", "materials")):
        _rerecord(registered, step, lambda link, kind=kind: getattr(link, kind).__setitem__(
            "attestations/provenance.json", {"sha256": digest}))
    with pytest.raises(DigestMismatch) as err:
        _verify(registered)
    assert err.value.artifact == "model/model.joblib" and "provenance.json" in str(err.value)


def test_rejects_missing_vsa(registered):
    (registered.bundle / "attestations" / "vsa.json").unlink()
    with pytest.raises(ArtifactRefused, match=r"attestations/vsa.json: evidence produced by verify_chain is missing"):
        _verify(registered)


def test_rejects_failed_vsa_even_when_every_link_agrees(registered):
    from chainproof.digests import sha256_file

    path = registered.bundle / "attestations" / "vsa.json"
    doc = _statement(path)
    doc["predicate"]["verificationResult"] = "FAILED"
    path.write_bytes(sign_statement(subjects={s["name"]: s["digest"]["sha256"] for s in doc["subject"]},
                                    predicate_type=SLSA_VSA, predicate=doc["predicate"], signer=_signer(registered, "verify_chain")))
    digest = sha256_file(path)
    _rerecord(registered, "verify_chain", lambda link: link.products.__setitem__("attestations/vsa.json", {"sha256": digest}))
    _rerecord(registered, "register_model", lambda link: link.materials.__setitem__("attestations/vsa.json", {"sha256": digest}))
    with pytest.raises(ArtifactRefused, match=r"attestations/vsa.json: expected verificationResult PASSED, got 'FAILED'"):
        _verify(registered)


def test_rejects_unexpected_extra_product(registered):
    _rerecord(registered, "train_model", lambda link: link.products.__setitem__("secrets/exfiltrated.txt", {"sha256": "cd" * 32}))
    with pytest.raises(ChainError, match=r"step train_model: products: secrets/exfiltrated.txt: not allowed by the layout"):
        _verify(registered)


def test_rejects_extra_model_file_attested_by_an_insider(registered):
    (registered.model / "backdoor.py").write_text("import os\n")
    from chainproof.digests import sha256_file

    digest = sha256_file(registered.model / "backdoor.py")
    _rerecord(registered, "train_model", lambda link: link.products.__setitem__("model/backdoor.py", {"sha256": digest}))
    # The layout allows model/*, and the delivered files match the re-recorded link; but the
    # model signature made by sign_and_attest does not cover the added file.
    from chainproof.errors import SignatureError

    with pytest.raises(SignatureError, match=r"attestations/model.sig: model signature does not verify: .*backdoor.py"):
        _verify(registered)


# --- auditor policy -------------------------------------------------------------------


def _policy(tmp_path, doc) -> AuditorPolicy:
    path = tmp_path / "policy.yaml"
    import yaml

    path.write_text(yaml.safe_dump(doc))
    return AuditorPolicy.from_file(path)


def test_auditor_policy_lists_what_it_checked(registered, tmp_path):
    result = _verify(registered)
    steps = {s.name: s for s in result.steps}
    policy = _policy(tmp_path, {
        "version": 1,
        "expected_principals": {"*": steps["train_model"].principal},
        "allowed_signer_keys": {name: [s.keyid] for name, s in steps.items()},
        "max_age": "1d",
        "required_scan_verdicts": {"reports/scan-ingest.json": "safe", "reports/scan-model.json": "safe"},
        "required_attestations": ["oms", "slsa", "vsa"],
    })
    result = _verify(registered, policy=policy)
    policy_checks = [c for c in result.checks if c.startswith("(14)")]
    assert len(policy_checks) == 5, result.checks


def test_rejects_signer_key_not_in_the_auditor_policy(registered, tmp_path):
    policy = _policy(tmp_path, {"version": 1, "allowed_signer_keys": {"train_model": ["0123456789abcdef0123"]}})
    with pytest.raises(PolicyViolation, match=r"step train_model: signed by key [0-9a-f]{16}, which the auditor policy does not allow"):
        _verify(registered, policy=policy)


def test_rejects_unexpected_principal_in_the_auditor_policy(registered, tmp_path):
    policy = _policy(tmp_path, {"version": 1, "expected_principals": {"register_model": "registrar@prod.iam.gserviceaccount.com"}})
    with pytest.raises(PolicyViolation, match=r"step register_model: ran as .*, expected registrar@prod.iam.gserviceaccount.com"):
        _verify(registered, policy=policy)


def test_rejects_development_keys_when_the_auditor_forbids_them(registered, tmp_path):
    policy = _policy(tmp_path, {"version": 1, "allow_development_keys": False})
    with pytest.raises(PolicyViolation, match=r"step secure_ingest: signed with a development key"):
        _verify(registered, policy=policy)


def test_rejects_evidence_older_than_max_age(registered):
    from chainproof.auditor import MaxAge

    policy = AuditorPolicy(constraints=[MaxAge(timedelta(hours=1), now=datetime.now(timezone.utc) + timedelta(days=2))])
    with pytest.raises(PolicyViolation, match=r"older than the maximum age"):
        _verify(registered, policy=policy)


def test_rejects_chain_without_pinned_images_when_policy_requires_them(registered, tmp_path):
    policy = _policy(tmp_path, {"version": 1, "allowed_image_digests": ["sha256:" + "1" * 64]})
    with pytest.raises(PolicyViolation, match=r"records no image"):
        _verify(registered, policy=policy)


@pytest.mark.parametrize("doc, message", [
    ({"version": 1}, "no constraint"),
    ({"version": 2, "max_age": "1d"}, "version must be 1"),
    ({"version": 1, "max_age": "soon"}, "expected e.g. 90d"),
    ({"version": 1, "expected_principal": {"a": "b"}}, "unknown field"),
    ({"version": 1, "required_attestations": ["gpg"]}, "unknown attestation kind"),
])
def test_malformed_auditor_policy_is_an_input_error(tmp_path, doc, message):
    with pytest.raises(InputError, match=message):
        _policy(tmp_path, doc)


# --- reports ----------------------------------------------------------------------------


def test_reports_for_people_and_machines(registered):
    result = _verify(registered)
    doc = build_report(registered.bundle, result=result)
    assert doc["verified"] is True and doc["attestations"] == {
        "oms": "attestations/model.sig", "slsa": "attestations/provenance.json", "vsa": "attestations/vsa.json",
        "sbom": "attestations/sbom.json", "card": "attestations/model-card.json"}
    assert [s["name"] for s in doc["steps"]] == list(REFERENCE_PIPELINE_STEPS)
    assert all(s["principal"] and s["keyid"] for s in doc["steps"])
    assert doc["steps"][0]["scan_verdicts"] == {"reports/scan-ingest.json": "safe"}
    text = render_text(doc)
    assert text.strip().splitlines()[-1].startswith("OK: ")
    page = render_html(doc)
    assert 'id="banner"' in page and "VERIFIED" in page and "<svg" in page
    # The signed model card, verified again, is in both reports: the same model digest, its robustness figures.
    card = doc["model_card"]["modelCard"]
    assert result.model_sha256 in json.dumps(doc["model_card"]) and "accuracy_under_attack" in json.dumps(card)
    assert '<section id="model-card"' in page and 'class="card-robustness"' in page
    json.dumps(doc)  # the machine report stays plain JSON
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "") and "https://" not in page.split("<main>")[0]


def test_failure_report_highlights_the_failing_step_and_artifact(registered):
    model = registered.model / "model.joblib"
    data = bytearray(model.read_bytes())
    data[50] ^= 1
    model.write_bytes(bytes(data))
    with pytest.raises(DigestMismatch) as err:
        _verify(registered)
    doc = build_report(registered.bundle, error=err.value)
    assert doc["verified"] is False and doc["failure"]["artifact"] == "model/model.joblib"
    page = render_html(doc)
    assert "VERIFICATION FAILED" in page and 'id="failure"' in page and "model/model.joblib" in page
