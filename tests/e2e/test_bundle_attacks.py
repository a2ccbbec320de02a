"""Attacks on a registered model and its evidence bundle, each caught with its reason."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from in_toto.models.metadata import Envelope

from chainproof.attest import link_filename, load_link, write_link
from chainproof.errors import (
    ArtifactRefused,
    ChainError,
    DigestMismatch,
    SignatureError,
    UntrustedKey,
)
from chainproof.policy import sign_layout
from chainproof.signing import init_keys, load_signer
from chainproof.verify import load_layout, verify_bundle


def _flip_byte(path: Path, offset: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _link_path(bundle: Path, step: str) -> Path:
    (found,) = sorted((bundle / "links").glob(f"{step}.*.link"))
    return found


def _resign_link(bundle: Path, step: str, signer_ref: str) -> Path:
    old = _link_path(bundle, step)
    _, link = load_link(old)
    envelope = Envelope.from_signable(link)
    envelope.create_signature(load_signer(signer_ref).signer)
    old.unlink()
    return write_link(envelope, bundle / "links")


def test_accepts_the_untampered_bundle(registered):
    result = verify_bundle(registered.bundle, trusted_owner_keys=registered.owner_keys)
    assert [s.name for s in result.steps] == [
        "secure_ingest", "train_model", "evaluate_robustness", "sign_and_attest", "verify_chain", "register_model"
    ]
    assert set(result.model_files) == {"model/model.joblib", "model/features.json"}
    assert any(c.startswith("(11)") for c in result.checks)


def test_rejects_model_byte_flipped_after_registration(registered):
    _flip_byte(registered.model / "model.joblib")
    with pytest.raises(DigestMismatch) as err:
        verify_bundle(registered.bundle, trusted_owner_keys=registered.owner_keys)
    assert err.value.artifact == "model/model.joblib"
    assert "attested by train_model" in str(err.value)


def test_rejects_file_added_to_model_folder(registered):
    (registered.model / "extra.py").write_text("import os\n")
    with pytest.raises(ArtifactRefused, match=r"model/extra.py: model file not attested"):
        verify_bundle(registered.bundle, trusted_owner_keys=registered.owner_keys)


def test_rejects_bundle_with_deleted_link(registered):
    _link_path(registered.bundle, "train_model").unlink()
    with pytest.raises(ChainError) as err:
        verify_bundle(registered.bundle, trusted_owner_keys=registered.owner_keys)
    assert err.value.step == "train_model"
    assert "no link found" in str(err.value)


def test_rejects_link_resigned_by_key_the_layout_does_not_know(registered, tmp_path):
    rogue = init_keys(tmp_path / "rogue", roles=["train_model"])
    new = _resign_link(registered.bundle, "train_model", rogue.signer_reference("train_model"))
    with pytest.raises(ChainError) as err:
        verify_bundle(registered.bundle, trusted_owner_keys=registered.owner_keys)
    assert err.value.step == "train_model"
    assert new.name in str(err.value)
    assert rogue.roles["train_model"][:16] in str(err.value)


def test_rejects_link_edited_after_signing(registered):
    path = _link_path(registered.bundle, "train_model")
    doc = json.loads(path.read_text())
    import base64

    payload = json.loads(base64.b64decode(doc["payload"]))
    payload["products"]["model/model.joblib"]["sha256"] = "0" * 64
    doc["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    path.write_text(json.dumps(doc))
    with pytest.raises(ChainError, match=r"step train_model: link signature does not verify"):
        verify_bundle(registered.bundle, trusted_owner_keys=registered.owner_keys)


def test_rejects_layout_edited_after_signing(registered):
    path = registered.bundle / "root.layout"
    doc = json.loads(path.read_text())
    import base64

    layout = json.loads(base64.b64decode(doc["payload"]))
    layout["steps"][1]["expected_materials"] = [["ALLOW", "*"]]
    doc["payload"] = base64.b64encode(json.dumps(layout, sort_keys=True).encode()).decode()
    path.write_text(json.dumps(doc))
    with pytest.raises(SignatureError, match=r"root.layout: signature by owner key .* does not verify"):
        verify_bundle(registered.bundle, trusted_owner_keys=registered.owner_keys)


def test_rejects_bundle_resigned_by_attacker_owner_key_with_its_own_owner_pub(registered, tmp_path):
    # The attacker swaps the model, re-records every link and re-signs the layout with
    # a key of their own, shipping its public key as keys/owner.pub.
    attacker = init_keys(tmp_path / "attacker", roles=["owner"])
    _, layout = load_layout((registered.bundle / "root.layout").read_bytes())
    (registered.bundle / "root.layout").write_bytes(sign_layout(layout, load_signer(attacker.signer_reference("owner"))))
    shutil.copy(attacker.public_key_path("owner"), registered.bundle / "keys" / "owner.pub")
    attacker_keyid = attacker.roles["owner"]
    with pytest.raises(UntrustedKey) as err:
        verify_bundle(registered.bundle, trusted_owner_keys=registered.owner_keys)
    assert err.value.keyid == attacker_keyid
    assert attacker_keyid[:16] in str(err.value)


def test_rejects_tampered_evidence_file(registered):
    _flip_byte(registered.bundle / "attestations" / "provenance.json", 40)
    with pytest.raises(DigestMismatch) as err:
        verify_bundle(registered.bundle, trusted_owner_keys=registered.owner_keys)
    assert err.value.artifact == "attestations/provenance.json"


def test_rejects_evidence_file_no_step_produced(registered):
    (registered.bundle / "attestations" / "note.json").write_text("{}")
    with pytest.raises(ArtifactRefused, match=r"attestations/note.json: file in the bundle that no step"):
        verify_bundle(registered.bundle, trusted_owner_keys=registered.owner_keys)


def test_rejects_link_replayed_from_another_run(registered, reference_run, tmp_path):
    # A second run with the same keys and data produces byte-identical models and
    # datasets; only the run identity differs. Its train link must not fit this chain.
    from chainproof.runner import run_reference_pipeline

    shutil.copytree(reference_run.owner_key.parent, tmp_path / "work" / "keys")
    other = run_reference_pipeline(workdir=tmp_path / "work", trust_dir=tmp_path / "trust", model_name="other-run")
    replayed = _link_path(other.bundle, "train_model")
    _link_path(registered.bundle, "train_model").unlink()
    shutil.copy(replayed, registered.bundle / "links" / replayed.name)
    with pytest.raises(ChainError) as err:
        verify_bundle(registered.bundle, trusted_owner_keys=registered.owner_keys)
    assert "run/id" in str(err.value)
    assert err.value.step in {"train_model", "sign_and_attest"}


def test_link_filename_matches_in_toto_convention():
    assert link_filename("train_model", "abcdef0123456789") == "train_model.abcdef01.link"


def test_rejects_decoy_link_beside_the_genuine_one(registered, tmp_path):
    # A decoy signed by a throwaway key, named to sort first, claiming a production principal:
    # it must fail verification, not ride along into reports (found in review).
    rogue = init_keys(tmp_path / "rogue", roles=["train_model"])
    _, link = load_link(_link_path(registered.bundle, "train_model"))
    link.environment["chainproof"]["principal"] = {"kind": "metadata-server", "name": "trainer@prod.iam.gserviceaccount.com", "details": {}}
    envelope = Envelope.from_signable(link)
    envelope.create_signature(load_signer(rogue.signer_reference("train_model")).signer)
    (registered.bundle / "links" / "train_model.00000000.link").write_text(json.dumps(envelope.to_dict()))
    with pytest.raises(ArtifactRefused, match=r"links/train_model.00000000.link: not the link of an authorized functionary"):
        verify_bundle(registered.bundle, trusted_owner_keys=registered.owner_keys)
