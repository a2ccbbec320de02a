"""Secrets by reference: the real Secret Manager client and hvac against loopback servers.

Secret Manager runs in-process over TLS gRPC (``fake_secret_manager.py``); Vault is
``fake_vault.py``, which checks every login and token. The workload-identity paths
(Secret Manager with the metadata server's token, Vault's GCP auth method with its
identity token) run in a subprocess, because google-auth reads the metadata server's
address when it is first imported.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap

import pytest
from chainproof.errors import InputError
from chainproof.secrets import SecretUnavailable, VaultAuth, resolve_secret, secret_scope
from chainproof.testing.secret_manager import secret_manager_server
from chainproof.testing.vault import Role, vault_server
from google.oauth2.credentials import Credentials

PLANTED = "pl4nted-S3CRET-" + base64.b32encode(os.urandom(10)).decode()
TOKEN = "ya29.test-access-token-for-secret-manager"


@pytest.fixture
def gsm(loopback_tls):
    cert, key = loopback_tls
    with secret_manager_server(cert, key, expected_token=TOKEN) as (fake, address):
        fake.add_version("projects/p1/secrets/db-password", b"old-value")
        fake.add_version("projects/p1/secrets/db-password", PLANTED.encode())
        fake.add_version("projects/p1/secrets/db-password", b"disabled-value", state="DISABLED")
        yield fake, address


def test_secret_manager_version_is_resolved_recorded_and_never_shown(gsm):
    fake, address = gsm
    with secret_scope(gsm_credentials=Credentials(token=TOKEN), gsm_endpoint=address) as scope:
        pinned = resolve_secret("secret://gsm/projects/p1/secrets/db-password/versions/2")
        latest = scope.resolve("secret://gsm/projects/p1/secrets/db-password/versions/latest")
        assert pinned.reveal() == PLANTED
        # latest skips the disabled version 3 and records the version it resolved to.
        assert latest.reveal() == PLANTED and latest.version == "2"
        for text in (repr(pinned), str(pinned), f"{pinned}", json.dumps(scope.records())):
            assert PLANTED not in text
        assert scope.records() == [
            {"ref": "secret://gsm/projects/p1/secrets/db-password/versions/2", "backend": "gsm", "version": "2", "dynamic": False},
            {"ref": "secret://gsm/projects/p1/secrets/db-password/versions/latest", "backend": "gsm", "version": "2", "dynamic": False},
        ]
    assert fake.requests == ["projects/p1/secrets/db-password/versions/2", "projects/p1/secrets/db-password/versions/latest"]
    assert fake.unauthenticated == []
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(pinned)


@pytest.mark.parametrize(
    ("ref", "token", "corrupt", "reason"),
    [
        ("secret://gsm/projects/p1/secrets/db-password/versions/2", "ya29.someone-else", False, "UNAUTHENTICATED"),
        ("secret://gsm/projects/p1/secrets/db-password/versions/3", TOKEN, False, "FAILED_PRECONDITION"),
        ("secret://gsm/projects/p1/secrets/missing/versions/1", TOKEN, False, "NOT_FOUND"),
        ("secret://gsm/projects/p1/secrets/db-password/versions/2", TOKEN, True, "data_crc32c does not match"),
    ],
)
def test_secret_manager_refusals_are_one_line_and_secret_free(gsm, ref, token, corrupt, reason):
    fake, address = gsm
    fake.corrupt = corrupt
    with pytest.raises(SecretUnavailable) as err:
        with secret_scope(gsm_credentials=Credentials(token=token), gsm_endpoint=address):
            resolve_secret(ref)
    text = err.value.diagnostics()
    assert text.startswith(ref) and reason in text and "\n" not in text
    assert PLANTED not in text and "disabled-value" not in text and token not in text
    assert err.value.ref == ref


# -- Vault


@pytest.fixture
def vault(tmp_path):
    with vault_server() as (fake, address):
        fake.roles["trainer"] = Role(paths=["secret/data/app/", "database/creds/readonly"],
                                     service_accounts=["ml/trainer", "trainer@chainproof-test.iam.gserviceaccount.com"])
        fake.roles["other"] = Role(paths=["secret/data/other/"], service_accounts=["ml/other"])
        fake.add_kv("secret/app/db", {"password": "first-password", "user": "app"})
        fake.add_kv("secret/app/db", {"password": PLANTED, "user": "app"})
        jwt = tmp_path / "sa-token"
        jwt.write_text(fake.kubernetes_jwt("ml/trainer") + "\n")
        yield fake, address, jwt


def test_vault_kubernetes_login_kv_and_dynamic_credentials_revoked_at_scope_end(vault, monkeypatch):
    fake, address, jwt = vault
    # A static token in the environment is never used (hvac would read it by default).
    monkeypatch.setenv("VAULT_TOKEN", "hvs.STATIC-TOKEN-MUST-NOT-BE-SENT")
    auth = VaultAuth(address=address, method="kubernetes", role="trainer", jwt_path=str(jwt))
    with secret_scope(vault=auth) as scope:
        kv = resolve_secret("secret://vault/secret/app/db#password")
        pinned = resolve_secret("secret://vault/secret/app/db?version=1#password")
        creds = resolve_secret("secret://vault/database/creds/readonly#password")
        assert kv.reveal() == PLANTED and kv.version == "2"
        assert pinned.reveal() == "first-password" and pinned.version == "1"
        assert kv.reveal("user") == "app"
        issued = fake.issued_credentials[-1]
        # username and password come from the same lease.
        assert creds.reveal() == issued["password"] and creds.reveal("username") == issued["username"]
        assert len(fake.leases) == 1 and len(fake.tokens) == 1
        records = scope.records()
    assert records == [
        {"ref": "secret://vault/secret/app/db#password", "backend": "vault", "version": "2", "dynamic": False},
        {"ref": "secret://vault/secret/app/db?version=1#password", "backend": "vault", "version": "1", "dynamic": False},
        {"ref": "secret://vault/database/creds/readonly#password", "backend": "vault", "version": "",
         "dynamic": True, "lease_duration": 3600},
    ]
    lease = next(iter(fake.revoked_leases))
    assert lease.startswith("database/creds/readonly/")
    # The lease and the login token were revoked when the scope ended; no lease id is recorded.
    assert fake.leases == {} and fake.tokens == {} and len(fake.revoked_tokens) == 1
    assert lease not in json.dumps(records)
    assert all("STATIC" not in headers.get("x-vault-token", "") for _, _, headers, _ in fake.log)
    assert fake.refused == []
    # After the scope, the values are gone.
    with pytest.raises(SecretUnavailable):
        creds.reveal()


def test_vault_leases_are_revoked_when_the_step_fails(vault):
    fake, address, jwt = vault
    auth = VaultAuth(address=address, method="kubernetes", role="trainer", jwt_path=str(jwt))
    with pytest.raises(RuntimeError):
        with secret_scope(vault=auth):
            resolve_secret("secret://vault/database/creds/readonly#username")
            raise RuntimeError("the step's own work failed")
    assert fake.leases == {} and len(fake.revoked_leases) == 1 and fake.tokens == {}


@pytest.mark.parametrize(
    ("role", "token_for", "ref", "reason"),
    [
        ("trainer", "ml/other", "secret://vault/secret/app/db#password", "vault login (kubernetes, role trainer) refused"),
        ("trainer", None, "secret://vault/secret/app/db#password", "vault login (kubernetes, role trainer) refused"),
        ("other", "ml/other", "secret://vault/secret/app/db#password", "vault read refused: Forbidden"),
        ("trainer", "ml/trainer", "secret://vault/secret/app/db#api_key", "expected field 'api_key', found fields ['password', 'user']"),
        ("trainer", "ml/trainer", "secret://vault/database/creds/readonly#token", "expected field 'token'"),
    ],
)
def test_vault_refusals_name_the_reference_and_hold_no_value(vault, tmp_path, role, token_for, ref, reason):
    fake, address, _ = vault
    jwt = tmp_path / "token"
    jwt.write_text(fake.kubernetes_jwt(token_for) if token_for else "eyJhbGciOiJub25lIn0.e30.forged")
    with pytest.raises(SecretUnavailable) as err:
        with secret_scope(vault=VaultAuth(address=address, method="kubernetes", role=role, jwt_path=str(jwt))):
            resolve_secret(ref)
    text = err.value.diagnostics()
    assert text.startswith(ref) and reason in text and "\n" not in text, text
    assert PLANTED not in text and jwt.read_text() not in text
    # Even a refused dynamic credential leaves no lease behind.
    assert fake.leases == {} and fake.tokens == {}


def test_resolving_outside_a_scope_or_without_vault_auth_is_an_input_error(vault):
    with pytest.raises(InputError, match="inside `with secret_scope"):
        resolve_secret("secret://vault/secret/app/db#password")
    with pytest.raises(InputError, match="needs VaultAuth"):
        with secret_scope():
            resolve_secret("secret://vault/secret/app/db#password")
    with pytest.raises(InputError, match="static tokens are refused"):
        VaultAuth(address="https://vault.example", method="token", role="trainer")


# -- workload identity: the metadata server's token and identity token (subprocess)

_STEP = textwrap.dedent(
    """
    import json, logging, sys
    from pathlib import Path
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    from chainproof.attest import record_link, write_link
    from chainproof.identity import resolve_principal
    from chainproof.secrets import SecretUnavailable, VaultAuth, resolve_secret, secret_scope
    from chainproof.signing import init_keys, load_signer

    vault, gsm, work = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    auth = VaultAuth(address=vault, method="gcp", role="trainer")
    with secret_scope(vault=auth, gsm_endpoint=gsm) as scope:
        a = resolve_secret("secret://gsm/projects/p1/secrets/db-password/versions/2")
        b = resolve_secret("secret://vault/database/creds/readonly#password")
        c = resolve_secret("secret://vault/secret/app/db#password")
        (work / "used.txt").write_text(str(len(a.reveal()) + len(b.reveal()) + len(c.reveal())))
        print("repr", a, b, c)
        logging.getLogger("step").info("resolved %s %r", a, c)
        records = scope.records()
    try:
        with secret_scope(vault=auth, gsm_endpoint=gsm):
            resolve_secret("secret://vault/secret/other/x#password")
    except SecretUnavailable as exc:
        print("FAIL:", exc.diagnostics(), file=sys.stderr)
    ring = init_keys(work / "keys", roles=["train_model"])
    env = record_link("train_model", materials={}, products={}, signer=load_signer(ring.signer_reference("train_model")),
                      principal=resolve_principal(mode="gcp"), parameters={"secrets": records})
    write_link(env, work / "links")
    print(json.dumps(records))
    """
)


def test_workload_identity_resolves_gsm_and_vault_gcp_and_nothing_leaks(on_gce, loopback_tls, vault, tmp_path):
    fake_vault, vault_address, _ = vault
    cert, key = loopback_tls
    metadata = on_gce

    def signed_by_metadata_server(jwt: str) -> bool:
        # The fake metadata server signs identity tokens with a value derived from its token.
        sig = jwt.rsplit(".", 1)[-1]
        return base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)) == b"FAKE-ID-TOKEN-SIGNATURE-" + metadata.token.encode()

    fake_vault.gcp_verifier = signed_by_metadata_server
    work = tmp_path / "work"
    work.mkdir()
    with secret_manager_server(cert, key, expected_token=metadata.token) as (gsm_fake, gsm_address):
        gsm_fake.add_version("projects/p1/secrets/db-password", b"v1")
        gsm_fake.add_version("projects/p1/secrets/db-password", PLANTED.encode())
        env = dict(os.environ, GRPC_DEFAULT_SSL_ROOTS_FILE_PATH=str(cert))
        env.pop("VAULT_TOKEN", None)
        proc = subprocess.run([sys.executable, "-c", _STEP, vault_address, gsm_address, str(work)],
                              env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [r["ref"] for r in records] == ["secret://gsm/projects/p1/secrets/db-password/versions/2",
                                           "secret://vault/database/creds/readonly#password",
                                           "secret://vault/secret/app/db#password"]
    # Secret Manager was called with the metadata server's token; Vault's GCP login with its identity token.
    assert gsm_fake.unauthenticated == [] and gsm_fake.requests
    logins = [(p, json.loads(b)) for m, p, _, b in fake_vault.log if p.endswith("/login")]
    assert [p for p, _ in logins] == ["/v1/auth/gcp/login", "/v1/auth/gcp/login"]
    assert all(json.loads(json.dumps(jwt_aud(b["jwt"]))).endswith("vault/trainer") for _, b in logins)
    assert fake_vault.leases == {} and fake_vault.tokens == {}
    assert "FAIL: secret://vault/secret/other/x#password: vault read refused: Forbidden" in proc.stderr

    # The planted values (and the issued database password, tokens, lease ids) are nowhere.
    planted = [PLANTED, fake_vault.issued_credentials[-1]["password"], metadata.token,
               *fake_vault.revoked_tokens, *fake_vault.revoked_leases]
    written = proc.stdout + proc.stderr + "".join(
        p.read_text(errors="replace") for p in work.rglob("*") if p.is_file() and p.suffix != ".pem"
    )
    assert (work / "links").is_dir() and list((work / "links").glob("train_model.*.link"))
    for value in planted:
        assert value not in written


def jwt_aud(jwt: str) -> str:
    from chainproof.testing.vault import jwt_claims

    return str(jwt_claims(jwt)["aud"])


def test_a_lease_that_cannot_be_revoked_fails_the_scope_naming_the_reference(vault):
    fake, address, jwt = vault
    auth = VaultAuth(address=address, method="kubernetes", role="trainer", jwt_path=str(jwt))
    with pytest.raises(SecretUnavailable) as err:
        with secret_scope(vault=auth):
            resolve_secret("secret://vault/database/creds/readonly#password")
            fake.leases.clear()  # the lease vanished server-side: revoking it fails
    text = err.value.diagnostics()
    assert "secret://vault/database/creds/readonly#password: lease not revoked: InvalidRequest: invalid lease" in text
    assert "database/creds/readonly/" not in text  # the lease id itself is not shown
    assert fake.tokens == {}  # the login token was still revoked
