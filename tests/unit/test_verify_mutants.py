"""Tests that kill mutants of the verifier which test_verify_checks.py let survive (tests/README.md).

``scripts/mutation.sh verify`` mutates ``chainproof.verify`` and runs test_verify_checks.py and
this file on every mutant. Each test here pins what a check reports, or a branch the attack
tests did not reach, so that changing it fails a test: the fields of the refusals (step,
artifact, both digests), the checks that passed before a failure, and the small helpers the
checks rely on, called directly.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from in_toto.models.layout import Layout
from tests.simulated_chain import built_chain

from chainproof.auditor import AuditorPolicy
from chainproof.digests import digest_tree, manifest_digest
from chainproof.errors import ChainError, DigestMismatch, PolicyViolation, VerificationError
from chainproof.identity import KIND_SERVICE_ACCOUNT_KEY
from chainproof.policy import EXT_ALLOW_SERVICE_ACCOUNT_KEYS, EXT_EXPECTED_PRINCIPALS
from chainproof.registry import LocalModelRegistry
from chainproof.signing import init_keys, load_signer
from chainproof.testing.chain import SimulatedChain
from chainproof.verify import StepRecord, annotate_failure, check_identity_policy, check_registry_binding
from chainproof.verify._evidence import products_with_prefix
from chainproof.verify._registry import _describe_identity


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatedChain]:
    yield from built_chain(tmp_path_factory)


@pytest.fixture
def chain(built: SimulatedChain) -> Iterator[SimulatedChain]:
    yield built
    built.restore()


def _refused(run, check: str, kind: type[BaseException] = VerificationError):
    with pytest.raises(kind) as err:
        run()
    assert getattr(err.value, "failed_check", None) == check, err.value
    return err.value


# -- (0), (15)-(17): verify_registered ------------------------------------------------


def test_registered_result_is_the_bundle_result_with_the_registry_checks_around_it(chain):
    bundle = chain.verify()
    seen = []
    registered = chain.verify_registered(on_bundle=seen.append)
    assert [e.reference for e in seen] == [chain.reference]
    assert (registered.layout_sha256, registered.owner_keyid) == (bundle.layout_sha256, bundle.owner_keyid)
    assert [s.name for s in registered.steps] == [s.name for s in bundle.steps]
    assert registered.model_files == bundle.model_files and registered.model_files
    assert registered.attestations == bundle.attestations and registered.attestations
    assert registered.checks[0].startswith(f"(0) {chain.reference}: bundle ")
    assert registered.checks[1:1 + len(bundle.checks)] == bundle.checks
    assert [c[:4] for c in registered.checks[1 + len(bundle.checks):]] == ["(15)", "(16)", "(17)"]


def test_check_0_names_the_bundle_and_both_digests(chain):
    entry = LocalModelRegistry(chain.registry_dir).resolve(chain.reference)
    report = chain.bundle / "reports" / "scan-ingest.json"
    report.write_bytes(report.read_bytes() + b" ")
    err = _refused(chain.verify_registered, "0", DigestMismatch)
    assert err.artifact == str(chain.bundle)
    assert err.expected == entry.bundle_sha256
    assert err.actual == manifest_digest(digest_tree(chain.bundle)) != entry.bundle_sha256
    assert "registered bundle" in str(err)


def test_a_bundle_check_failing_after_check_0_keeps_check_0_and_the_policy_among_the_passed(chain):
    policy = AuditorPolicy.from_dict({"version": 1, "allow_development_keys": False})
    err = _refused(lambda: chain.verify_registered(policy=policy), "14", PolicyViolation)
    passed = err.passed_checks
    assert passed[0].startswith("(0) ") and passed[1].startswith("(1) ")
    assert any(c.startswith("(13) ") for c in passed)


def test_check_15_names_the_reference_and_both_model_digests(chain):
    verified = chain.verify().model_sha256
    version = chain.version_dir / "version.json"
    doc = json.loads(version.read_text())
    doc["model"]["sha256"] = "4" * 64
    version.write_text(json.dumps(doc))
    err = _refused(chain.verify_registered, "15", DigestMismatch)
    assert err.artifact == f"{chain.reference} model digest labels"
    assert (err.expected, err.actual) == ("4" * 64, verified)
    assert "registry entry vs. the verified chain" in str(err)


def test_check_16_names_the_reference_the_chain_attests(chain):
    import shutil

    second = chain.version_dir.with_name("2")
    shutil.copytree(chain.version_dir, second)
    version = second / "version.json"
    doc = json.loads(version.read_text().replace(str(chain.version_dir), str(second)))
    other = f"local://{chain.model_name}@2"
    doc.update(reference=other, version="2")
    version.write_text(json.dumps(doc))
    err = _refused(lambda: chain.verify_registered(other), "16")
    assert f"registered {chain.reference!r}, not {other!r}" in str(err)


# -- (17) check_registry_binding and how it describes a registry ---------------------

LOCAL = {"kind": "local", "registry_id": "r" * 32}
ATTESTED = {"registry": LOCAL, "model": {"location": "/m"}, "evidence": {"location": "/b"}}


def _bind(attested=ATTESTED, identity=LOCAL, model="/m", bundle="/b") -> str:
    return check_registry_binding("local://x@1", attested, identity=identity, model_location=model,
                                  bundle_location=bundle)


def test_check_17_passes_the_registry_and_locations_it_was_read_from():
    assert _bind() == f"(17) registry/entry.json attests local registry {'r' * 32} and the locations the entry was read from"
    # A trailing slash on either side is the same location.
    assert _bind(model="/m/", bundle="/b/").startswith("(17) ")
    assert _bind({**ATTESTED, "model": {"location": "/m/"}, "evidence": {"location": "/b/"}}).startswith("(17) ")


def test_check_17_refuses_a_chain_that_attests_no_registry():
    with pytest.raises(VerificationError, match=f"does not attest which registry.*read from local registry {'r' * 32}"):
        _bind({**ATTESTED, "registry": None})


def test_check_17_refuses_another_registry_naming_both():
    other = {"kind": "local", "registry_id": "s" * 32}
    with pytest.raises(VerificationError) as err:
        _bind({**ATTESTED, "registry": other})
    assert f"registered into local registry {'s' * 32}, but local://x@1 was read from local registry {'r' * 32}" in str(err.value)


def test_check_17_refuses_an_identity_with_nothing_but_its_kind():
    empty = {"kind": "local", "registry_id": ""}
    with pytest.raises(VerificationError, match="registered into local registry \\(no identity\\)"):
        _bind({**ATTESTED, "registry": empty}, identity=empty)


@pytest.mark.parametrize(("what", "field", "kwargs"), [
    ("model", "model", {"model": "/elsewhere"}),
    ("evidence bundle", "evidence", {"bundle": "/elsewhere"}),
])
def test_check_17_refuses_another_location_naming_it(what, field, kwargs):
    with pytest.raises(VerificationError) as err:
        _bind(**kwargs)
    attested = ATTESTED[field]["location"]
    assert f"the chain registered the {what} at {attested}, but local://x@1 read it from /elsewhere" in str(err.value)


def test_a_registry_identity_is_described_by_its_kind():
    assert _describe_identity("r1") == "'r1'"
    assert _describe_identity(LOCAL) == f"local registry {'r' * 32}"
    assert _describe_identity({"kind": "local"}) == "local registry (no identity)"
    vertex = {"kind": "vertex", "project": "p", "location": "europe-west4", "model_id": "42"}
    assert _describe_identity(vertex) == "Vertex AI projects/p/locations/europe-west4/models/42"
    assert _describe_identity({"z": 1, "kind": "other"}) == '{"kind": "other", "z": 1}'


# -- (13) check_identity_policy, called directly ---------------------------------------

SA = "trainer@p.iam.gserviceaccount.com"


def _layout(**extensions) -> Layout:
    return Layout(readme=json.dumps({"chainproof": extensions}))


def _record(principal) -> StepRecord:
    return StepRecord(name="train_model", keyid="k", materials={}, products={}, environment={"principal": principal})


def test_check_13_counts_the_pinned_principals_that_match():
    layout = _layout(**{EXT_EXPECTED_PRINCIPALS: {"train_model": SA}})
    checks = check_identity_policy(layout, {"train_model": _record({"kind": "workload-identity", "name": SA})})
    assert checks == ["(13) 1 pinned step principals match the layout",
                      "(13) no step used a service-account key file the layout does not allow"]
    assert check_identity_policy(_layout(), {"train_model": _record({"name": SA})}, key_files=False) == [
        "(13) 0 pinned step principals match the layout"]


@pytest.mark.parametrize("principal", [None, "sa@p.iam.gserviceaccount.com", {"kind": "workload-identity"}])
def test_check_13_refuses_an_unnamed_principal_as_unknown(principal):
    layout = _layout(**{EXT_EXPECTED_PRINCIPALS: {"train_model": SA}})
    with pytest.raises(PolicyViolation) as err:
        check_identity_policy(layout, {"train_model": _record(principal)})
    kind = "workload-identity" if isinstance(principal, dict) else "unknown"
    assert str(err.value).startswith(f"step train_model: ran as unknown ({kind}), but the layout expects {SA}")


def test_check_13_names_the_key_file_override_it_refuses():
    principal = {"kind": KIND_SERVICE_ACCOUNT_KEY, "name": SA, "details": {"override": "--allow-key-file"}}
    with pytest.raises(PolicyViolation) as err:
        check_identity_policy(_layout(), {"train_model": _record(principal)})
    assert err.value.step == "train_model"
    assert str(err.value).startswith(
        f"step train_model: ran as {SA} with a service-account key file (override --allow-key-file recorded in its link), "
        "and the layout does not allow service-account keys for this step")
    bare = {"kind": KIND_SERVICE_ACCOUNT_KEY, "name": SA}
    with pytest.raises(PolicyViolation, match="override none recorded"):
        check_identity_policy(_layout(), {"train_model": _record(bare)})


def test_check_13_allows_a_key_file_only_for_the_steps_the_layout_names():
    principal = {"kind": KIND_SERVICE_ACCOUNT_KEY, "name": SA}
    allowed = _layout(**{EXT_ALLOW_SERVICE_ACCOUNT_KEYS: ["train_model"]})
    assert check_identity_policy(allowed, {"train_model": _record(principal)})[-1].startswith("(13) no step used")
    with pytest.raises(PolicyViolation):
        check_identity_policy(_layout(**{EXT_ALLOW_SERVICE_ACCOUNT_KEYS: ["other"]}), {"train_model": _record(principal)})


# -- (4)-(6): what a refused link or rule reports ---------------------------------------


def test_check_4_says_a_missing_link_was_not_found(chain):
    chain.link_path("sign_and_attest").unlink()
    err = _refused(chain.verify, "4", ChainError)
    assert err.reason == "no link found (the step did not run, or its link was removed)"


def test_check_4_names_the_unauthorized_link_and_its_key(chain, tmp_path):
    stranger = init_keys(tmp_path / "stranger", roles=["step"], development=True)
    genuine = chain.link_path("train_model")
    chain.edit_link("train_model", lambda link: None, signer=load_signer(stranger.signer_reference("step")))
    forged = sorted((chain.bundle / "links").glob("train_model.*.link"))
    assert genuine not in forged and len(forged) == 1
    err = _refused(chain.verify, "4", ChainError)
    keyid = stranger.roles["step"]
    assert f"found {forged[0].name} signed by key {keyid[:16]}, which the layout does not authorize" in err.reason


def test_check_5_names_each_material_no_producer_made_or_that_differs(chain):
    genuine = chain.verify().step("train_model").materials["dataset/breast_cancer.csv"]

    def swap(link):
        link.materials["dataset/breast_cancer.csv"] = {"sha256": "0" * 64}
        link.materials["dataset/extra.csv"] = {"sha256": "1" * 64}

    chain.edit_link("train_model", swap)
    err = _refused(chain.verify, "5", ChainError)
    facts = err.reason.removeprefix("materials: ").split("; ")
    assert sorted(facts) == sorted([
        f"dataset/breast_cancer.csv: expected sha256:{genuine} (product of secure_ingest), got sha256:{'0' * 64}",
        "dataset/extra.csv: not a product of secure_ingest",
    ])


def test_check_6_says_an_extra_product_is_not_allowed_by_the_layout(chain):
    def add(link):
        link.products["reports/backdoor.json"] = {"sha256": "1" * 64}

    chain.edit_link("train_model", add)
    err = _refused(chain.verify, "6", ChainError)
    assert err.reason == "products: reports/backdoor.json: not allowed by the layout"


# -- small helpers the checks rely on ----------------------------------------------------


def test_no_step_producing_the_model_is_a_chain_error():
    with pytest.raises(ChainError) as err:
        products_with_prefix({}, "model/")
    assert err.value.step == "?" and err.value.reason == "no step of the chain produced any model/* artifact"


def test_a_failure_keeps_an_inner_check_number_and_merges_the_inner_passed_checks():
    exc = VerificationError("x")
    exc.failed_check = "5"  # type: ignore[attr-defined]
    exc.passed = ["(b)", "(p1)"]  # type: ignore[attr-defined]
    annotate_failure(exc, passed=["(a)", "(b)"], number="3-7")
    assert exc.failed_check == "5"  # type: ignore[attr-defined]
    assert exc.passed_checks == ["(a)", "(b)", "(p1)"]  # type: ignore[attr-defined]
    fresh = VerificationError("y")
    annotate_failure(fresh, passed=[], number="9")
    assert (fresh.failed_check, fresh.passed_checks) == ("9", [])  # type: ignore[attr-defined]


# -- (2)-(12): what the passing chain reports, and the limits at their boundary ------------


def test_the_untouched_chain_reports_its_owner_key_and_every_attestation(chain):
    result = chain.verify()
    assert result.owner_keyid == next(iter(chain.owner_keys()))
    assert f"(2) layout signed by trusted owner key {result.owner_keyid[:16]}" in result.checks
    assert {k: v for k, v in result.attestations.items() if k != "card"} == {
        "sbom": "attestations/sbom.json", "oms": "attestations/model.sig",
        "slsa": "attestations/provenance.json", "vsa": "attestations/vsa.json",
    }


def test_check_2_with_no_trusted_key_names_the_signing_key(chain):
    err = _refused(lambda: chain.verify(trusted_owner_keys={}), "2")
    owner = next(iter(chain.owner_keys()))
    assert (err.what, err.keyid, err.trusted) == ("root.layout", owner, [])


def test_check_4_allows_exactly_max_links_link_files(chain):
    from chainproof.verify import VerifyOptions

    count = len(list((chain.bundle / "links").glob("*.link")))
    chain.verify(options=VerifyOptions(max_links=count))
    err = _refused(lambda: chain.verify(options=VerifyOptions(max_links=count - 1)), "4")
    assert err.artifact == str(chain.bundle / "links")
    assert err.reason == f"{count} links is over the limit of {count - 1}"


def test_check_7_accepts_a_step_recorded_at_the_same_instant_as_the_one_before(chain):
    before = chain.verify().step("train_model").environment["recorded"]

    def same_instant(link):
        link.environment["chainproof"]["recorded"] = before

    chain.edit_link("sign_and_attest", same_instant)
    chain.verify()


def test_check_8_names_missing_evidence_and_both_digests_of_changed_evidence(chain):
    from chainproof.errors import ArtifactRefused

    report = chain.bundle / "reports" / "scan-ingest.json"
    attested = chain.verify().step("secure_ingest").products["reports/scan-ingest.json"]
    report.write_bytes(report.read_bytes() + b" ")
    err = _refused(chain.verify, "8", DigestMismatch)
    assert err.expected == attested
    assert err.actual == digest_tree(chain.bundle)["reports/scan-ingest.json"] != attested
    assert "produced by secure_ingest" in str(err)
    report.unlink()
    err = _refused(chain.verify, "8", ArtifactRefused)
    assert (err.artifact, err.reason) == ("reports/scan-ingest.json", "evidence produced by secure_ingest is missing from the bundle")
    chain.restore()
    (chain.bundle / "reports" / "extra.json").write_text("{}")
    err = _refused(chain.verify, "8", ArtifactRefused)
    assert (err.artifact, err.reason) == ("reports/extra.json", "file in the bundle that no step of the chain produced")


def test_check_8_never_counts_files_under_keys_as_evidence(chain):
    nested = chain.bundle / "keys" / "old" / "owner.pub"
    nested.parent.mkdir(parents=True)
    nested.write_text("not consulted")
    chain.verify()


def test_check_9_refuses_a_missing_model_folder_by_name(chain, tmp_path):
    from chainproof.errors import ArtifactRefused

    missing = tmp_path / "nowhere"
    from chainproof.verify import verify_bundle

    err = _refused(lambda: verify_bundle(chain.bundle, trusted_owner_keys=chain.owner_keys(), model_dir=missing),
                   "9", ArtifactRefused)
    assert (err.artifact, err.reason) == (str(missing), "model folder does not exist")


# -- the in-pipeline prefix: verify_chain_links(upto=, steps=) ------------------------------


def test_a_prefix_verifies_the_steps_before_upto_or_the_named_ones(chain):
    from chainproof.errors import LayoutError
    from chainproof.verify import load_layout, verify_chain_links

    _, layout = load_layout((chain.bundle / "root.layout").read_bytes())
    links = chain.bundle / "links"
    # The bundle holds the later links too: a prefix refuses them as not its own.
    only = chain.root / "prefix-links"
    only.mkdir(exist_ok=True)
    for step in ("secure_ingest", "train_model"):
        (only / chain.link_path(step).name).write_bytes(chain.link_path(step).read_bytes())
    assert list(verify_chain_links(layout, only, upto="sign_and_attest")) == ["secure_ingest", "train_model"]
    assert list(verify_chain_links(layout, only, upto="sign_and_attest", steps=["train_model", "secure_ingest"])) == [
        "secure_ingest", "train_model"]
    with pytest.raises(LayoutError, match="the layout has no step 'nope'"):
        verify_chain_links(layout, only, upto="nope")
    with pytest.raises(LayoutError, match="root.layout: register_model are not steps before sign_and_attest"):
        verify_chain_links(layout, only, upto="sign_and_attest", steps=["register_model"])
    err = None
    try:
        verify_chain_links(layout, links, upto="sign_and_attest")
    except VerificationError as exc:
        err = exc
    assert err is not None and "before sign_and_attest" in str(err)
    import shutil

    shutil.rmtree(only)
