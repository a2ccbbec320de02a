"""The auditor policy is validated against its JSON schema: a mistyped value fails, naming field, type and value."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chainproof.auditor import POLICY_SCHEMA, AuditorPolicy
from chainproof.errors import InputError


@pytest.mark.parametrize("doc, message", [
    ({"version": 1, "allow_development_keys": "false"},
     "allow_development_keys: expected a boolean (true or false, unquoted), got 'false' (string)"),
    ({"version": 1, "required_attestations": []},
     "required_attestations: expected a non-empty list of attestation kinds (oms, slsa, vsa, sbom, vulns, card), got [] (list)"),
    ({"version": 1, "allowed_signer_keys": {"train_model": [""]}},
     "allowed_signer_keys.train_model[0]: expected a key id: 16 to 64 lowercase hex characters, got '' (string)"),
    ({"version": 1, "allowed_signer_keys": {"train_model": ["abc"]}},
     "allowed_signer_keys.train_model[0]: expected a key id: 16 to 64 lowercase hex characters, got 'abc' (string)"),
    ({"version": 1, "allowed_signer_keys": {"train_model": []}},
     "allowed_signer_keys.train_model: expected a non-empty list of key ids, got [] (list)"),
    ({"version": 1, "expected_principals": {"train_model": 7}},
     "expected_principals.train_model: expected a non-empty principal string, got 7 (integer)"),
    ({"version": 1, "allowed_image_digests": ["latest"]},
     "allowed_image_digests[0]: expected an image digest: sha256: and 64 lowercase hex characters, got 'latest'"),
    ({"version": 1, "required_scan_verdicts": {"reports/scan-model.json": "ok"}},
     "required_scan_verdicts.reports/scan-model.json: expected a verdict: safe or unsafe, got 'ok' (string)"),
    ({"version": 1, "max_age": 0}, "max_age: expected a duration such as 90d"),
    ({"version": 1, "required_attestations": ["oms", "oms"]}, "required_attestations: expected a non-empty list"),
])
def test_mistyped_policy_values_fail_naming_field_type_and_value(doc, message):
    with pytest.raises(InputError) as err:
        AuditorPolicy.from_dict(doc, source="policy.yaml")
    assert message in str(err.value)
    assert str(err.value).startswith("policy.yaml: ")


def test_every_wrong_field_is_reported_at_once():
    with pytest.raises(InputError) as err:
        AuditorPolicy.from_dict({"version": 1, "allow_development_keys": "no", "required_attestations": []})
    assert "allow_development_keys" in str(err.value) and "required_attestations" in str(err.value)


def test_a_valid_policy_builds_one_constraint_per_field():
    policy = AuditorPolicy.from_dict({
        "version": 1, "allow_development_keys": False, "required_attestations": ["oms", "vsa"],
        "allowed_signer_keys": {"*": ["0123456789abcdef"]}, "max_age": "30d",
    })
    assert [type(c).__name__ for c in policy.constraints] == [
        "AllowedSignerKeys", "NoDevelopmentKeys", "MaxAge", "RequiredAttestations"]


_ANY = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                    max_leaves=6)


@settings(max_examples=150, deadline=None)
@given(field=st.sampled_from(sorted(set(POLICY_SCHEMA["properties"]) - {"version"})), value=_ANY)
def test_any_value_is_either_a_constraint_or_a_named_input_error(field, value):
    # Differential: jsonschema itself decides validity; chainproof must agree and name the field.
    import jsonschema

    doc = {"version": 1, field: value}
    valid = not list(jsonschema.Draft202012Validator(POLICY_SCHEMA).iter_errors(doc))
    try:
        policy = AuditorPolicy.from_dict(doc)
    except InputError as exc:
        assert not valid or "no constraint" in str(exc) or "max_age" in str(exc), (doc, exc)
        assert field in str(exc) or "no constraint" in str(exc), (doc, exc)
        assert "Traceback" not in str(exc)
        json.dumps(str(exc))
        return
    assert valid, doc
    assert policy.constraints
