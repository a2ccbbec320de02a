"""The reference chain carries its robustness report and a signed model card; verify checks both."""

import base64
import json
import shutil

import pytest

from chainproof.errors import DigestMismatch
from chainproof.runner import StepFailed, run_reference_pipeline
from chainproof.signing import load_signer
from chainproof.verify import verify_bundle


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    work = tmp_path_factory.mktemp("risk")
    return run_reference_pipeline(workdir=work / "cw", trust_dir=work / "trust")


def _verify(bundle, run):
    owner = load_signer(f"file:{run.owner_key.with_suffix('.pem')}")
    return verify_bundle(bundle, trusted_owner_keys={owner.keyid: owner.public_key}, model_dir=run.model)


def test_robustness_report_and_model_card_are_in_the_verified_chain(run):
    result = _verify(run.bundle, run)
    robustness = json.loads((run.bundle / "reports" / "robustness.json").read_text())
    assert "accuracy_under_attack" in robustness["metrics"]
    assert result.step("evaluate_robustness").products["reports/robustness.json"]
    assert "card" in result.attestations
    assert any(c.startswith("(19) attestations/model-card.json by verify_chain") for c in result.checks)


def test_a_card_whose_text_was_edited_fails_verification(run, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(run.bundle, bundle)
    path = bundle / "attestations" / "model-card.json"
    envelope = json.loads(path.read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["modelCard"]["model_details"]["overview"] = "Certified fair and robust."
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    path.write_text(json.dumps(envelope))
    # The bundle's evidence check (8) sees the changed file against the gate's link.
    with pytest.raises(DigestMismatch, match=r"attestations/model-card.json \(produced by verify_chain\)"):
        _verify(bundle, run)


def test_a_robustness_threshold_the_model_misses_fails_the_run_closed(tmp_path):
    with pytest.raises(StepFailed) as err:
        run_reference_pipeline(workdir=tmp_path / "cw", trust_dir=tmp_path / "trust",
                               robustness_min_metrics="accuracy_under_attack>=1.01")
    assert err.value.step == "evaluate_robustness"
    assert "accuracy_under_attack" in str(err.value) and "1.01" in str(err.value)
    assert not (tmp_path / "cw" / "registry" / "models").exists()


