"""Trust you can rely on, on the reference run: explicit trust, visible development keys, complete reports,
the verifier's limits, and the attacks no test covered before (a link forged under an authorized file name,
a verification summary naming another model)."""

from __future__ import annotations

import json
import shutil

import pytest
from in_toto.models.metadata import Envelope

from chainproof.attest import load_link, sign_statement
from chainproof.auditor import AuditorPolicy
from chainproof.cli import main
from chainproof.errors import ArtifactRefused, ChainError, DigestMismatch, PolicyViolations
from chainproof.policy import REFERENCE_PIPELINE_STEPS
from chainproof.signing import TrustStore, init_keys, load_signer
from chainproof.verify import SLSA_VSA, VerifyOptions, load_layout, verify_bundle, verify_chain_links

from .test_auditor import _link_file, _rerecord, _signer, _statement


def _verify(registered, **kw):
    return verify_bundle(registered.bundle, trusted_owner_keys=registered.owner_keys, **kw)


def _json_out(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _owner_pub(registered) -> str:
    return str(registered.keys_dir / "owner.pub")


# --- explicit trust -------------------------------------------------------------------------------


def test_verify_names_the_trusted_key_and_where_its_trust_came_from(registered, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CHAINPROOF_TRUST_DIR", str(tmp_path / "trust"))
    assert main(["trust", "add", _owner_pub(registered), "--note", "handed over by the ML platform team"]) == 0
    capsys.readouterr()
    assert main(["verify", str(registered.bundle), "--format", "json"]) == 0
    trust = _json_out(capsys)["owner_trust"]
    (keyid,) = registered.owner_keys
    assert trust["keyid"] == keyid and trust["added_at"] and trust["added_by"]
    assert "chainproof trust add" in trust["source"] and "handed over by the ML platform team" in trust["source"]
    assert main(["verify", str(registered.bundle), "--owner-key", _owner_pub(registered)]) == 0
    text = capsys.readouterr().out
    assert f"owner key {keyid[:16]}: --owner-key {_owner_pub(registered)} (given on the command line)" in text


def test_trust_list_add_remove(registered, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CHAINPROOF_TRUST_DIR", str(tmp_path / "trust"))
    other = init_keys(tmp_path / "other", roles=["owner"])
    for pem in (_owner_pub(registered), str(other.public_key_path("owner"))):
        assert main(["trust", "add", pem]) == 0
    capsys.readouterr()
    assert main(["trust", "list", "--format", "json"]) == 0
    listed = _json_out(capsys)["keys"]
    assert {k["keyid"] for k in listed} == {*registered.owner_keys, other.roles["owner"]}
    assert all(k["source"].startswith("chainproof trust add ") and k["added_by"] and k["added_at"] for k in listed)
    assert main(["trust", "remove", other.roles["owner"][:12]]) == 0
    assert set(TrustStore(tmp_path / "trust").keys()) == set(registered.owner_keys)
    assert main(["trust", "remove", "deadbeefdeadbeef"]) == 2
    assert main(["trust", "remove", "ab"]) == 2
    # A removed key no longer verifies anything.
    assert main(["verify", str(registered.bundle), "--format", "json"]) == 0
    (keyid,) = registered.owner_keys
    assert main(["trust", "remove", keyid]) == 0
    assert main(["verify", str(registered.bundle)]) == 2
    assert "no trusted owner key" in capsys.readouterr().err


def test_a_key_file_dropped_into_the_store_is_shown_as_unrecorded(registered, tmp_path):
    store = tmp_path / "trust"
    store.mkdir()
    (keyid,) = registered.owner_keys
    shutil.copy(_owner_pub(registered), store / f"{keyid}.pub")
    (entry,) = TrustStore(store).entries()
    assert entry.source == "unrecorded" and "no record of who added it" in entry.describe()


# --- development keys are visible -------------------------------------------------------------------


def test_development_keys_are_named_in_every_verdict(registered, tmp_path, capsys):
    args = ["verify", str(registered.bundle), "--owner-key", _owner_pub(registered)]
    assert main([*args, "--format", "json"]) == 0
    doc = _json_out(capsys)
    assert doc["verified"] is True and doc["development_keys"] is True
    assert doc["development_key_steps"] == list(REFERENCE_PIPELINE_STEPS)
    assert main(args) == 0
    assert "verified with development keys" in capsys.readouterr().out.strip().splitlines()[-1]
    assert main([*args, "--format", "html", "-o", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert '<header class="dev" id="banner">VERIFIED WITH DEVELOPMENT KEYS' in page and 'id="development-keys"' in page


def test_require_production_keys_turns_development_keys_into_a_failure(registered, capsys):
    code = main(["verify", str(registered.bundle), "--owner-key", _owner_pub(registered), "--require-production-keys",
                 "--format", "json"])
    assert code == 1
    doc = _json_out(capsys)
    assert doc["verified"] is False and doc["failure"]["check"] == "14"
    assert "signed with a development key" in doc["failure"]["message"]
    assert any(c.startswith("(13)") for c in doc["checks"])


# --- complete reports ---------------------------------------------------------------------------------


def test_failure_reports_list_every_check_that_passed_and_the_failed_checks_number(registered, tmp_path, capsys):
    model = registered.model / "model.joblib"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    args = ["verify", str(registered.bundle), "--owner-key", _owner_pub(registered)]
    assert main([*args, "--format", "json"]) == 1
    doc = _json_out(capsys)
    assert doc["failure"]["check"] == "9" and doc["failure"]["artifact"] == "model/model.joblib"
    assert [c.split(")")[0] + ")" for c in doc["checks"]] == ["(1)", "(2)", "(3)", "(4)", "(5)", "(6)", "(7)", "(8)"]
    assert main([*args, "--format", "html", "-o", str(tmp_path / "f.html")]) == 1
    page = (tmp_path / "f.html").read_text()
    assert 'id="failed-check">check (9) failed' in page
    passed = page.split('id="passed-checks">')[1].split("</ul>")[0]
    assert passed.count("<li>") == 8 and "none" not in passed
    assert main([*args, "-o", str(tmp_path / "f.txt")]) == 1
    text = (tmp_path / "f.txt").read_text()
    assert "(8) " in text and text.strip().splitlines()[-1].startswith("FAIL: check (9) failed: model/model.joblib")


def test_every_policy_violation_is_reported_at_once(registered, tmp_path, capsys):
    policy = {
        "version": 1,
        "expected_principals": {"train_model": "trainer@prod.iam.gserviceaccount.com"},
        "allowed_signer_keys": {"register_model": ["0123456789abcdef0123"]},
        "allow_development_keys": False,
        "required_attestations": ["oms", "slsa", "vsa"],
    }
    with pytest.raises(PolicyViolations) as err:
        _verify(registered, policy=AuditorPolicy.from_dict(policy))
    assert len(err.value.violations) == 3
    assert any(c.startswith("(14) required attestations") for c in err.value.passed_checks)
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(policy))
    assert main(["verify", str(registered.bundle), "--owner-key", _owner_pub(registered), "--policy", str(path),
                 "--format", "json"]) == 1
    failure = _json_out(capsys)["failure"]
    assert failure["check"] == "14" and len(failure["violations"]) == 3
    assert any("trainer@prod" in v for v in failure["violations"])
    assert any("register_model: signed by key" in v for v in failure["violations"])
    assert any("development key" in v for v in failure["violations"])


# --- claims no test proved before ------------------------------------------------------------------


def test_rejects_link_forged_under_an_authorized_steps_file_name(registered, tmp_path):
    path = _link_file(registered.bundle, "train_model")
    _, link = load_link(path)
    link.products["model/model.joblib"] = {"sha256": "0" * 64}
    rogue = init_keys(tmp_path / "rogue", roles=["train_model"])
    envelope = Envelope.from_signable(link)
    envelope.create_signature(load_signer(rogue.signer_reference("train_model")).signer)
    # Written under the authorized key's file name (STEP.KEYID8.link), not the rogue key's.
    path.write_text(json.dumps(envelope.to_dict()))
    with pytest.raises(ChainError, match=r"step train_model: link signature does not verify with the step's functionary key"):
        _verify(registered)


def test_rejects_a_verification_summary_that_names_another_model(registered):
    from chainproof.digests import sha256_file

    path = registered.bundle / "attestations" / "vsa.json"
    doc = _statement(path)
    subjects = {s["name"]: "ab" * 32 for s in doc["subject"]}  # PASSED, signed by the gate, for other bytes
    path.write_bytes(sign_statement(subjects=subjects, predicate_type=SLSA_VSA, predicate=doc["predicate"],
                                    signer=_signer(registered, "verify_chain")))
    digest = sha256_file(path)
    _rerecord(registered, "verify_chain", lambda link: link.products.__setitem__("attestations/vsa.json", {"sha256": digest}))
    _rerecord(registered, "register_model", lambda link: link.materials.__setitem__("attestations/vsa.json", {"sha256": digest}))
    with pytest.raises(DigestMismatch, match=r"model/(model\.joblib|features\.json) \(attested by attestations/vsa\.json\)") as err:
        _verify(registered)
    assert err.value.failed_check == "12"


def test_verifier_size_limits(registered):
    _, layout = load_layout((registered.bundle / "root.layout").read_bytes())
    with pytest.raises(ArtifactRefused, match=rf"{len(REFERENCE_PIPELINE_STEPS)} links is over the limit of 4"):
        verify_chain_links(layout, registered.bundle / "links", options=VerifyOptions(max_links=4))
    with pytest.raises(ArtifactRefused, match=r"root.layout: \d+ bytes is over the 1000-byte limit"):
        _verify(registered, options=VerifyOptions(max_metadata_bytes=1000))
    smallest = min(p.stat().st_size for p in (registered.bundle / "links").iterdir())
    with pytest.raises(ArtifactRefused, match=rf"\.link: \d+ bytes is over the {smallest - 1}-byte limit"):
        verify_chain_links(layout, registered.bundle / "links", options=VerifyOptions(max_metadata_bytes=smallest - 1))
    assert _verify(registered, options=VerifyOptions(max_links=len(REFERENCE_PIPELINE_STEPS))).steps


# --- CLI conventions ---------------------------------------------------------------------------------


def test_cli_conventions(registered, tmp_path, monkeypatch, capsys):
    not_a_bundle = tmp_path / "empty"
    not_a_bundle.mkdir()
    assert main(["verify", str(not_a_bundle), "--owner-key", _owner_pub(registered)]) == 2
    assert "not an evidence bundle" in capsys.readouterr().err
    assert main(["run", "--hyperparameters", "{bad", "--workdir", str(tmp_path / "w")]) == 2
    assert "--hyperparameters" in capsys.readouterr().err and not (tmp_path / "w").exists()
    # --verbose after the subcommand; -o for text.
    assert main(["verify", str(registered.bundle), "--owner-key", _owner_pub(registered), "-v", "-o",
                 str(tmp_path / "out.txt")]) == 0
    assert (tmp_path / "out.txt").read_text().strip().splitlines()[-1].startswith("OK: ")
    assert capsys.readouterr().out.strip().startswith("OK: ")  # the verdict line stays on stdout
    with pytest.raises(SystemExit) as typo:
        main(["verify", str(registered.bundle), "--formt", "json"])
    assert typo.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: chainproof verify") and "unrecognized arguments: --formt" in err
    with pytest.raises(SystemExit) as version:
        main(["--version"])
    assert version.value.code == 0 and capsys.readouterr().out.startswith("chainproof ")
    # Missing Google credentials: the service, the operation, what to check; exit 3.
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "no-such-adc.json"))
    monkeypatch.delenv("CHAINPROOF_VERTEX_ENDPOINT", raising=False)
    # The Vertex SDK's configuration is process-wide and its init() ignores None: an earlier
    # caller's credentials and endpoint (here a dead loopback port) must not be inherited.
    import google.cloud.aiplatform as aiplatform
    from google.auth.credentials import AnonymousCredentials

    aiplatform.init(project="proj-a", location="europe-west4", credentials=AnonymousCredentials(),
                    api_endpoint="127.0.0.1:9")
    code = main(["verify", "vertex://projects/proj-a/locations/europe-west4/models/m@1", "--owner-key", _owner_pub(registered)])
    err = capsys.readouterr().err
    assert code == 3, err
    assert err.startswith("FAIL: Google authentication: verify: find credentials failed") and "internal error" not in err
    assert len(err.strip().splitlines()) == 1
