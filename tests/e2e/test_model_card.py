"""The model card: filled from a verified chain, signed over the model, and refused when it lies.

Two chains: the reference pipeline's (run once per session by tests/conftest.py), and a small
chain built here whose second step attests a real robustness report, as the robustness step will.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest

from chainproof.attest import record_link, write_link
from chainproof.card import (
    CARD_PREDICATE,
    CardRejected,
    build_card,
    card_schema,
    layout_card_keys,
    render_card_html,
    render_card_markdown,
    sign_card,
    validate_card,
    verify_card,
)
from chainproof.identity import local_principal
from chainproof.policy import StepSpec, generate_layout, sign_layout
from chainproof.robustness import AttackSettings, evaluate_robustness, write_report
from chainproof.signing import init_keys, load_public_key, load_signer
from chainproof.verify import VerificationResult, verify_bundle

STEPS = (
    StepSpec("train_model", (("DISALLOW", "*"),),
             (("CREATE", "model/*"), ("CREATE", "metrics/*"), ("DISALLOW", "*")), "Train."),
    StepSpec("evaluate_robustness",
             (("MATCH", "model/*", "WITH", "PRODUCTS", "FROM", "train_model"), ("DISALLOW", "*")),
             (("CREATE", "reports/robustness.json"), ("DISALLOW", "*")), "Attack and perturb the model."),
)


@dataclass
class Chain:
    bundle: Path
    model: Path
    result: VerificationResult
    signer: object  # the robustness step's signer: it signs the card here
    owner_keys: dict

    @property
    def trusted(self) -> dict:
        return {self.signer.public_key.keyid: self.signer.public_key}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _build_chain(root: Path, *, max_depth: int | None) -> Chain:
    import joblib
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split
    from sklearn.tree import DecisionTreeClassifier

    ring = init_keys(root / "keys", roles=["owner", *(s.name for s in STEPS)], development=True)
    owner = load_signer(ring.signer_reference("owner"))
    keys = {s.name: load_public_key(ring.public_key_path(s.name)) for s in STEPS}
    bundle, model_dir = root / "bundle", root / "model"
    (bundle / "metrics").mkdir(parents=True)
    model_dir.mkdir()
    (bundle / "root.layout").write_bytes(sign_layout(generate_layout(STEPS, keys), owner))

    x, y = load_breast_cancer(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0)
    model = DecisionTreeClassifier(max_depth=max_depth, random_state=0).fit(x_train, y_train)
    joblib.dump(model, model_dir / "model.joblib")
    metrics = {"accuracy": round(float(model.score(x_test, y_test)), 6), "estimator": "decision_tree",
               "rows": len(x), "train_rows": len(x_train), "test_rows": len(x_test)}
    (bundle / "metrics" / "metrics.json").write_text(json.dumps(metrics, sort_keys=True))
    report = evaluate_robustness(model, x_test, y_test, sample_size=60, seed=0,
                                 settings=AttackSettings(max_attack_rows=8))
    write_report(report, bundle / "reports")

    model_digest = _sha256(model_dir / "model.joblib")
    params = {"estimator": "decision_tree", "model_name": f"tree-depth-{max_depth}", "target_column": "malignant",
              "intended_use": "Second reader for screening mammography triage, never the only reader",
              "intended_users": ["radiology QA team"], "limitations": "Not validated outside the WDBC cohort"}
    for step, materials, products in (
        ("train_model", {}, {"model/model.joblib": model_digest,
                             "metrics/metrics.json": _sha256(bundle / "metrics" / "metrics.json")}),
        ("evaluate_robustness", {"model/model.joblib": model_digest},
         {"reports/robustness.json": _sha256(bundle / "reports" / "robustness.json")}),
    ):
        signer = load_signer(ring.signer_reference(step))
        env = record_link(step, materials=materials, products=products, signer=signer,
                          principal=local_principal(), parameters=params if step == "train_model" else {})
        write_link(env, bundle / "links")
    owner_keys = {owner.keyid: owner.public_key}
    result = verify_bundle(bundle, trusted_owner_keys=owner_keys, model_dir=model_dir)
    return Chain(bundle, model_dir, result, load_signer(ring.signer_reference("evaluate_robustness")), owner_keys)


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> Chain:
    return _build_chain(tmp_path_factory.mktemp("card-chain"), max_depth=None)


@pytest.fixture(scope="module")
def other_chain(tmp_path_factory) -> Chain:
    return _build_chain(tmp_path_factory.mktemp("other-chain"), max_depth=2)


@pytest.fixture(scope="module")
def card(chain) -> dict:
    return build_card(chain.result, chain.bundle)


def _resign(envelope: bytes, chain: Chain, edit) -> bytes:
    """Edit a card's statement and sign it again with the trusted key (a lie, properly signed)."""
    from securesystemslib.dsse import Envelope

    statement = json.loads(Envelope.from_dict(json.loads(envelope)).payload)
    edit(statement)
    new = Envelope(payload=json.dumps(statement, sort_keys=True).encode(), payload_type="application/vnd.in-toto+json",
                   signatures={})
    new.sign(chain.signer.signer)
    return json.dumps(new.to_dict()).encode()


def test_card_validates_against_the_model_card_toolkit_schema(card):
    jsonschema.validate(card["modelCard"], card_schema())  # the upstream schema, used directly
    validate_card(card["modelCard"])
    assert card["modelCard"]["schema_version"] == "0.0.2"
    bad = copy.deepcopy(card["modelCard"])
    bad["robustness"] = {}  # the schema closes its top level
    with pytest.raises(CardRejected) as refused:
        validate_card(bad)
    assert refused.value.reason == "schema"
    bad = copy.deepcopy(card["modelCard"])
    bad["model_details"]["ownr"] = []  # a misspelt field the schema leaves open is refused too
    with pytest.raises(CardRejected, match="model_details.ownr is not in the Model Card Toolkit"):
        validate_card(bad)


def test_card_is_filled_from_the_chain(card, chain):
    mc = card["modelCard"]
    figures = {(m["type"], m["slice"]): m["value"] for m in mc["quantitative_analysis"]["performance_metrics"]}
    metrics = json.loads((chain.bundle / "metrics" / "metrics.json").read_text())
    robustness = json.loads((chain.bundle / "reports" / "robustness.json").read_text())
    assert figures[("accuracy", "held-out test split (metrics/metrics.json)")] == repr(metrics["accuracy"])
    for name, value in robustness["metrics"].items():
        assert figures[(name, "robustness sample (reports/robustness.json)")] == repr(value)
    assert mc["considerations"]["use_cases"] == [
        {"description": "Second reader for screening mammography triage, never the only reader"}]
    assert {"description": "radiology QA team"} in mc["considerations"]["users"]
    assert any("WDBC" in item["description"] for item in mc["considerations"]["limitations"])
    assert card["chain"]["layout_sha256"] == chain.result.layout_sha256
    assert card["evidence"]["reports/robustness.json"]["producer"] == "evaluate_robustness"
    security = " ".join(r["mitigation_strategy"] for r in mc["considerations"]["ethical_considerations"])
    assert "file development key" in security and local_principal().name in security


def test_signed_card_verifies_against_the_chain(card, chain):
    envelope = sign_card(card, result=chain.result, signer=chain.signer)
    verified = verify_card(envelope, chain.result, chain.bundle, chain.trusted)
    assert verified["modelCard"] == card["modelCard"]
    # The layout's own functionary keys are a valid trust set for a card signed by a step.
    assert verify_card(envelope, chain.result, chain.bundle, layout_card_keys(chain.bundle)) == verified


def test_rejects_card_text_edited_after_signing(card, chain):
    envelope = json.loads(sign_card(card, result=chain.result, signer=chain.signer))
    import base64

    payload = base64.b64decode(envelope["payload"]).replace(b"Second reader", b"Sole reader!!")
    envelope["payload"] = base64.b64encode(payload).decode()
    with pytest.raises(CardRejected) as refused:
        verify_card(json.dumps(envelope).encode(), chain.result, chain.bundle, chain.trusted)
    assert refused.value.reason == "edited"
    assert "changed after it was signed" in str(refused.value)


def test_rejects_card_for_another_model(chain, other_chain):
    other_card = build_card(other_chain.result, other_chain.bundle)
    # Signed by a key the verifier trusts, about a real model: just not this one.
    envelope = sign_card(other_card, result=other_chain.result, signer=chain.signer)
    with pytest.raises(CardRejected) as refused:
        verify_card(envelope, chain.result, chain.bundle, chain.trusted)
    assert refused.value.reason == "other_model"
    assert chain.result.model_sha256 in str(refused.value)
    assert other_chain.result.model_sha256 in str(refused.value)


def test_rejects_card_whose_metrics_differ_from_the_attested_ones(card, chain):
    envelope = sign_card(card, result=chain.result, signer=chain.signer)

    def better_accuracy(statement):
        for m in statement["predicate"]["modelCard"]["quantitative_analysis"]["performance_metrics"]:
            if m["type"] == "accuracy":
                m["value"] = "0.999"

    with pytest.raises(CardRejected) as refused:
        verify_card(_resign(envelope, chain, better_accuracy), chain.result, chain.bundle, chain.trusted)
    assert refused.value.reason == "metrics_differ"
    assert "accuracy: the card says 0.999, the attested metrics/metrics.json says" in str(refused.value)


def test_rejects_card_whose_robustness_figures_differ(card, chain):
    envelope = sign_card(card, result=chain.result, signer=chain.signer)

    def hide_evasion(statement):
        figures = statement["predicate"]["modelCard"]["quantitative_analysis"]["performance_metrics"]
        statement["predicate"]["modelCard"]["quantitative_analysis"]["performance_metrics"] = [
            m for m in figures if m["type"] != "accuracy_under_attack"]

    with pytest.raises(CardRejected) as refused:
        verify_card(_resign(envelope, chain, hide_evasion), chain.result, chain.bundle, chain.trusted)
    assert refused.value.reason == "robustness_differs"
    assert "accuracy_under_attack: the card says nothing" in str(refused.value)


def test_rejects_card_signed_by_an_untrusted_key(card, chain, other_chain):
    envelope = sign_card(card, result=chain.result, signer=other_chain.signer)
    with pytest.raises(CardRejected) as refused:
        verify_card(envelope, chain.result, chain.bundle, chain.trusted)
    assert refused.value.reason == "untrusted_key"


def test_rejects_card_built_from_another_chain_of_the_same_model(card, chain):
    envelope = sign_card(card, result=chain.result, signer=chain.signer)

    def other_layout(statement):
        statement["predicate"]["chain"]["layout_sha256"] = "0" * 64

    with pytest.raises(CardRejected) as refused:
        verify_card(_resign(envelope, chain, other_layout), chain.result, chain.bundle, chain.trusted)
    assert refused.value.reason == "other_chain"


def test_card_of_the_reference_pipeline(reference_run):
    result, bundle = reference_run.verification, reference_run.bundle
    card = build_card(result, bundle)
    jsonschema.validate(card["modelCard"], card_schema())
    keys_dir = reference_run.owner_key.parent
    signer = load_signer(f"file:{keys_dir / 'sign_and_attest.pem'}")
    envelope = sign_card(card, result=result, signer=signer)
    statement = json.loads(__import__("base64").b64decode(json.loads(envelope)["payload"]))
    assert statement["predicateType"] == CARD_PREDICATE
    assert {s["name"]: s["digest"]["sha256"] for s in statement["subject"]} == result.model_files
    verified = verify_card(envelope, result, bundle, layout_card_keys(bundle))
    mc = verified["modelCard"]
    assert mc["model_details"]["name"] == "chainproof-model"
    data = mc["model_parameters"]["data"][0]
    assert data["link"].startswith("file://") and result.step("secure_ingest").products[data["name"]] in data["description"]
    verdicts = [r for r in mc["considerations"]["ethical_considerations"] if "scan-model.json" in r["name"]]
    assert verdicts and "scan verdict safe" in verdicts[0]["mitigation_strategy"]
    # The reference pipeline evaluates robustness: the card carries its figures, not the limitation.
    assert not any("No robustness evaluation" in i["description"] for i in mc["considerations"]["limitations"])
    assert "accuracy_under_attack" in json.dumps(mc)


def test_card_renders_as_markdown_and_as_escaped_html(card, chain):
    text = render_card_markdown(card)
    assert text.startswith("# Model card: tree-depth-None")
    assert "| accuracy_under_attack |" in text and "## Security evaluation" in text
    hostile = copy.deepcopy(card)
    hostile["modelCard"]["model_details"]["name"] = "<script>alert(1)</script>"
    fragment = render_card_html(hostile)
    assert fragment.startswith('<section id="model-card"') and fragment.endswith("</section>")
    assert "<script>" not in fragment and "&lt;script&gt;" in fragment
    assert 'class="card-robustness"' in fragment


@pytest.mark.parametrize("fmt", ["md", "json", "html"])
def test_cli_prints_the_card_of_a_verified_bundle(registered, capsys, fmt, tmp_path):
    from chainproof.cli import main

    owner = str(registered.keys_dir / "owner.pub")
    signed = tmp_path / "card.json"
    code = main(["card", str(registered.bundle), "--owner-key", owner, "--format", fmt,
                 "--sign-with", f"file:{registered.keys_dir / 'sign_and_attest.pem'}", "-o", str(signed)])
    out, err = capsys.readouterr()
    assert code == 0, err
    # The gate signed a card into the bundle: the CLI verifies that one.
    assert "OK: model card of sha256:" in err and "(signed card attestations/model-card.json verified)" in err
    if fmt == "json":
        doc = json.loads(out.strip().splitlines()[-1])
        assert doc["verified"] is True and doc["signed"] is True
        validate_card(doc["card"]["modelCard"])
    elif fmt == "html":
        assert out.startswith("<!doctype html>") and '<section id="model-card"' in out
    else:
        # The gate signs the card before registration: it names the model folder it verified.
        assert out.startswith("# Model card: model\n") and "model sha256:" in out
    result = verify_bundle(registered.bundle, trusted_owner_keys=registered.owner_keys)
    verify_card(signed.read_bytes(), result, registered.bundle, layout_card_keys(registered.bundle))


def test_cli_refuses_the_card_of_a_tampered_bundle(registered, capsys):
    from chainproof.cli import main

    metrics = registered.bundle / "metrics" / "metrics.json"
    doc = json.loads(metrics.read_text())
    doc["accuracy"] = 1.0  # a better figure than the one train_model attested
    metrics.write_text(json.dumps(doc))
    code = main(["card", str(registered.bundle), "--owner-key", str(registered.keys_dir / "owner.pub")])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err.startswith("FAIL: metrics/metrics.json") and "Traceback" not in err


@pytest.mark.parametrize(
    "edit, reason",
    [
        (lambda st: st["predicate"]["evidence"]["reports/robustness.json"].update(sha256="0" * 64), "evidence"),
        (lambda st: st["predicate"]["evidence"].pop("reports/robustness.json"), "robustness_differs"),
        (lambda st: st["predicate"]["modelCard"]["quantitative_analysis"]["performance_metrics"].append(
            {"type": "fairness", "value": "1.0", "slice": "trust me"}), "metrics_differ"),
        (lambda st: st.update(predicateType="https://chainproof.dev/other/v1"), "wrong_predicate"),
        (lambda st: st["predicate"]["modelCard"].update(extra={}), "schema"),
    ],
    ids=["evidence-digest", "omits-robustness", "figure-from-nowhere", "predicate", "schema"],
)
def test_rejects_properly_signed_cards_that_misstate_the_evidence(card, chain, edit, reason):
    envelope = sign_card(card, result=chain.result, signer=chain.signer)
    with pytest.raises(CardRejected) as refused:
        verify_card(_resign(envelope, chain, edit), chain.result, chain.bundle, chain.trusted)
    assert refused.value.reason == reason, str(refused.value)
