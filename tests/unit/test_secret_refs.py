"""secret:// references, the Secret value type, the compile-time credential check, and
Kubernetes secrets mounted with kfp-kubernetes (compiled offline)."""

from __future__ import annotations

import base64
import random
import json
import string
from pathlib import Path

import pytest
import yaml
from chainproof.errors import InputError
from chainproof.secrets import (
    CredentialDefault,
    Secret,
    mount_kubernetes_secret,
    parse_secret_ref,
    refuse_credential_defaults,
    refuse_credential_defaults_in_template,
    secret_scope,
)
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

UPPER_DIGITS = string.ascii_uppercase + string.digits
ALNUM = string.ascii_letters + string.digits


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _pem(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


# Credential shapes, each generated afresh: the check must catch every instance, not one example.
credentials = st.one_of(
    st.text(UPPER_DIGITS, min_size=16, max_size=16).map(lambda s: "AKIA" + s),
    st.text(ALNUM, min_size=36, max_size=36).map(lambda s: "ghp_" + s),
    st.tuples(st.text(string.digits, min_size=12, max_size=12), st.text(string.digits, min_size=13, max_size=13),
              st.text(ALNUM, min_size=24, max_size=24)).map(lambda t: f"xoxb-{t[0]}-{t[1]}-{t[2]}"),
    st.tuples(st.sampled_from(["postgres", "mysql", "https", "redis"]), st.text(string.ascii_lowercase, min_size=3, max_size=8),
              st.text(ALNUM, min_size=8, max_size=20)).map(lambda t: f"{t[0]}://{t[1]}:{t[2]}@db.internal:5432/app"),
    st.dictionaries(st.sampled_from(["sub", "email", "role"]), st.text(ALNUM, min_size=4, max_size=12), min_size=1).map(
        lambda claims: ".".join([_b64url(b'{"alg":"HS256","typ":"JWT"}'), _b64url(json.dumps(claims).encode()),
                                 _b64url(b"signature-bytes-0123456789abcdef")])),
    # A random API key: random bytes (a run of zero bytes is not a key any detector can tell from padding).
    st.tuples(st.integers(0, 2**64), st.integers(24, 48)).map(
        lambda t: base64.b64encode(random.Random(t[0]).randbytes(t[1])).decode()),
    st.just(None).map(lambda _: _pem(ec.generate_private_key(ec.SECP256R1()))),
)


@settings(max_examples=60, deadline=None)
@given(value=credentials, name=st.sampled_from(["db_uri", "api_key", "x", "connection"]))
def test_a_credential_default_is_refused_by_name_and_never_shown(value, name):
    with pytest.raises(CredentialDefault) as err:
        refuse_credential_defaults({"model_name": "chainproof-model", name: value})
    assert err.value.parameter == name and err.value.kinds
    message = err.value.diagnostics()
    assert message.startswith(f"pipeline parameter {name}: ") and "\n" not in message
    for part in [value, *value.split(":"), *value.split("@"), *value.splitlines()]:
        if len(part) >= 8:
            assert part not in message


def test_the_reference_pipeline_defaults_and_public_values_pass(tmp_path):
    from chainproof.vertex import compile_pipeline

    template = tmp_path / "pipeline.yaml"
    compile_pipeline(image="europe-docker.pkg.dev/p/r/chainproof@sha256:" + "ab" * 32, output=template)
    refuse_credential_defaults_in_template(template)
    public = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    refuse_credential_defaults({
        "owner_public_key": public,
        "expected_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "db_password": "secret://vault/database/creds/readonly#password",
        "source_uri": "gs://bucket/data/train.csv#1712345678901234",
        "builder_id": "https://chainproof.dev/builders/vertex-ai-pipelines",
        "hyperparameters": {"n_estimators": 100, "max_depth": 8},
        "test_size": 0.25, "enabled": True, "nothing": None, "empty": "",
    })


def test_a_compiled_template_with_a_credential_default_is_refused(tmp_path):
    key = _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    doc = {"root": {"inputDefinitions": {"parameters": {
        "signing_key": {"parameterType": "STRING", "defaultValue": key},
        "model_name": {"parameterType": "STRING", "defaultValue": "m"}}}}}
    template = tmp_path / "p.yaml"
    template.write_text(yaml.safe_dump(doc))
    with pytest.raises(CredentialDefault, match=r"^pipeline parameter signing_key: .*Private Key") as err:
        refuse_credential_defaults_in_template(template)
    assert "BEGIN" not in str(err.value)
    (tmp_path / "bad.yaml").write_text("- not a pipeline")
    with pytest.raises(InputError, match="not a compiled KFP pipeline"):
        refuse_credential_defaults_in_template(tmp_path / "bad.yaml")


@pytest.mark.parametrize(
    ("uri", "backend", "name", "version", "field", "dynamic"),
    [
        ("secret://gsm/projects/p-1/secrets/db_pw/versions/7", "gsm", "projects/p-1/secrets/db_pw", "7", "", False),
        ("secret://gsm/projects/123/secrets/x/versions/latest", "gsm", "projects/123/secrets/x", "latest", "", False),
        ("secret://vault/secret/app/db#password", "vault", "secret/app/db", "", "password", False),
        ("secret://vault/kv/team/app?version=3#token", "vault", "kv/team/app", "3", "token", False),
        ("secret://vault/database/creds/readonly", "vault", "database/creds/readonly", "", "", True),
        ("secret://k8s/db-credentials#password", "k8s", "db-credentials", "", "password", False),
    ],
)
def test_references_parse(uri, backend, name, version, field, dynamic):
    ref = parse_secret_ref(uri)
    assert (ref.backend, ref.name, ref.version, ref.field, ref.dynamic, ref.uri) == (backend, name, version, field, dynamic, uri)


@pytest.mark.parametrize(
    "uri",
    [
        "gs://bucket/x", "secret://gsm/projects/p/secrets/s", "secret://gsm/projects/p/secrets/s/versions/one",
        "secret://vault/secret/app/db", "secret://vault/secret/../sys#x", "secret://vault/database/creds/r?version=2",
        "secret://vault/secret/app?ttl=1#x", "secret://k8s/Bad_Name#k", "secret://k8s/name", "secret://aws/x#y",
        "secret://user:hunter2@vault/secret/app#password",
    ],
)
def test_malformed_references_are_input_errors(uri):
    with pytest.raises(InputError) as err:
        parse_secret_ref(uri)
    assert "hunter2" not in str(err.value)


@given(st.text(min_size=1, max_size=60).filter(lambda s: not s.startswith("secret://")))
def test_a_value_passed_where_a_reference_belongs_is_never_echoed(value):
    with pytest.raises(InputError) as err:
        parse_secret_ref(value)
    assert str(err.value).startswith("<not a secret:// reference>")


def test_secret_never_shows_its_value():
    ref = parse_secret_ref("secret://k8s/db#password")
    s = Secret(ref=ref, version="", values={"password": "hunter2-value"}, field="password")
    assert "hunter2" not in repr(s) + str(s) + f"{s}" + "%s" % s + json.dumps(s.record())
    assert s.reveal() == "hunter2-value" and s.fields == ["password"]
    with pytest.raises(TypeError):
        _ = s == s
    with pytest.raises(TypeError):
        hash(s)


def test_mounted_kubernetes_secret_resolves_from_its_file(tmp_path):
    (tmp_path / "db-credentials").mkdir()
    (tmp_path / "db-credentials" / "password").write_text("mounted-value")
    with secret_scope(kubernetes_root=str(tmp_path)) as scope:
        s = scope.resolve("secret://k8s/db-credentials#password")
        assert s.reveal() == "mounted-value"
        with pytest.raises(Exception, match=r"^secret://k8s/db-credentials#user: expected the mounted key"):
            scope.resolve("secret://k8s/db-credentials#user")
    assert scope.records() == [{"ref": "secret://k8s/db-credentials#password", "backend": "k8s", "version": "", "dynamic": False}]


def test_kfp_kubernetes_mounts_are_compiled_by_name_only(tmp_path):
    from kfp import compiler, dsl

    from tests.unit._kfp_tasks import echo as uses_db

    records: list = []

    @dsl.pipeline(name="with-k8s-secrets")
    def pipe():
        t1 = uses_db(x="a")
        records.extend(mount_kubernetes_secret(t1, secret_name="db-credentials", keys=["password"]))
        t2 = uses_db(x="b")
        records.extend(mount_kubernetes_secret(t2, secret_name="api-token", env={"token": "API_TOKEN"}))

    out = tmp_path / "p.yaml"
    compiler.Compiler().compile(pipe, str(out))
    docs = list(yaml.safe_load_all(out.read_text()))
    platform = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    vol = platform["exec-echo"]["secretAsVolume"][0]
    assert vol["secretName"] == "db-credentials" and vol["mountPath"] == "/var/run/chainproof/secrets/db-credentials"
    env = platform["exec-echo-2"]["secretAsEnv"][0]
    assert env["secretName"] == "api-token" and env["keyToEnv"] == [{"secretKey": "token", "envVar": "API_TOKEN"}]
    assert [r["ref"] for r in records] == ["secret://k8s/db-credentials#password", "secret://k8s/api-token#token"]
    with pytest.raises(InputError, match="DNS-1123"):
        mount_kubernetes_secret(object(), secret_name="Bad_Name")
    assert Path(out).read_text().count("db-credentials") >= 1
