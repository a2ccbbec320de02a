"""Secrets by reference, resolved inside the step with the step's own workload identity.

Example:
    >>> from chainproof.secrets import Secret, parse_secret_ref
    >>> ref = parse_secret_ref("secret://gsm/projects/p/secrets/db-password/versions/3")
    >>> (ref.backend, ref.name, ref.version)
    ('gsm', 'projects/p/secrets/db-password', '3')
    >>> s = Secret(ref=ref, version="3", values={"value": "hunter2"}, field="value")
    >>> "hunter2" in repr(s) or "hunter2" in str(s) or "hunter2" in f"{s}"
    False
    >>> s.reveal()
    'hunter2'
    >>> s.record()
    {'ref': 'secret://gsm/projects/p/secrets/db-password/versions/3', 'backend': 'gsm', 'version': '3', 'dynamic': False}

A pipeline passes *references*, never values:

- ``secret://gsm/projects/P/secrets/S/versions/N`` (Google Secret Manager, read with
  ``google-cloud-secret-manager`` as the step's Application Default Credentials; a
  service-account key file is refused as everywhere in chainproof). ``latest`` is
  accepted and the version it resolved to is recorded.
- ``secret://vault/MOUNT/PATH#FIELD`` (HashiCorp Vault through ``hvac``): a KV v2 secret
  (``?version=N`` pins a version), or, when ``PATH`` starts with ``creds/``, dynamic
  database credentials (a new lease; ``#FIELD`` picks ``username`` or ``password``, and
  :meth:`Secret.reveal` gives the other field of the same lease). The step logs in with the
  Kubernetes auth method (its service-account JWT file) or the GCP auth method (an identity
  token from the metadata server, via google-auth); a static Vault token is never read
  (not even ``VAULT_TOKEN`` or ``~/.vault-token``).
- ``secret://k8s/NAME#KEY``: a Kubernetes secret that the platform mounted
  (:func:`mount_kubernetes_secret`, ``kfp-kubernetes``); resolved from the mounted file.

Resolve inside :func:`secret_scope`: leases and the Vault login token are revoked when the
scope ends, whatever happens in it. :meth:`SecretScope.records` (and :meth:`Secret.record`)
return what a link may hold: the reference, the backend, the version, whether it was a
dynamic credential. No value, lease id or token is ever recorded, logged or put in an error.

:func:`refuse_credential_defaults` is the compile-time check: it refuses a pipeline parameter
whose default looks like a credential, naming the parameter and the kind of credential
(detected with Yelp's ``detect-secrets`` plugins), never the value.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from chainproof.errors import ChainproofError, InputError

__all__ = [
    "KUBERNETES_SECRETS_ROOT",
    "CredentialDefault",
    "Secret",
    "SecretRef",
    "SecretScope",
    "SecretUnavailable",
    "VaultAuth",
    "mount_kubernetes_secret",
    "parse_secret_ref",
    "refuse_credential_defaults",
    "refuse_credential_defaults_in_template",
    "resolve_secret",
    "secret_scope",
]

#: What ``pip install`` brings the Secret Manager and Vault clients.
EXTRA_HINT = "pip install 'chainproof[secrets]'"

#: Where :func:`mount_kubernetes_secret` mounts Kubernetes secrets, one folder per secret.
KUBERNETES_SECRETS_ROOT = "/var/run/chainproof/secrets"

#: The service-account token file Kubernetes projects into every pod.
KUBERNETES_JWT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token"

_GSM = re.compile(r"projects/([a-z0-9-]+|[0-9]+)/secrets/([A-Za-z0-9_-]{1,255})/versions/([0-9]+|latest)")
_K8S_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_SEGMENT = re.compile(r"[A-Za-z0-9_.@-]+")


class SecretUnavailable(ChainproofError):
    """A secret could not be resolved, or its lease not revoked. Exit code 1.

    Attributes:
        ref: the reference (never the value).
        reason: what failed, secret-free.
    """

    exit_code = 1

    def __init__(self, ref: str, reason: str) -> None:
        super().__init__(f"{ref}: {reason}")
        self.ref, self.reason = ref, reason


class CredentialDefault(InputError):
    """A pipeline parameter's default value looks like a credential.

    Attributes:
        parameter: the parameter's name.
        kinds: what it looks like (``AWS Access Key``, ``Private Key``, ...).
    """

    def __init__(self, parameter: str, kinds: list[str]) -> None:
        super().__init__(
            f"pipeline parameter {parameter}: expected no credential in a default value, found what looks like "
            f"{', '.join(kinds)} (value not shown); pass a secret:// reference and resolve it inside the step"
        )
        self.parameter, self.kinds = parameter, kinds


@dataclass(frozen=True)
class SecretRef:
    """A parsed ``secret://`` reference.

    Attributes:
        backend: ``gsm``, ``vault`` or ``k8s``.
        name: the backend's name of the secret (``projects/P/secrets/S``, ``MOUNT/PATH``, ``NAME``).
        version: the requested version (``3``, ``latest``), or ``""`` for the newest / a lease.
        field: the field to reveal (``#FIELD``), or ``""``.
        uri: the reference as given (it holds no secret).
    """

    backend: str
    name: str
    version: str
    field: str
    uri: str

    @property
    def mount(self) -> str:
        """The Vault mount (first segment of ``name``)."""
        return self.name.split("/", 1)[0]

    @property
    def path(self) -> str:
        """The Vault path under the mount."""
        return self.name.split("/", 1)[1] if "/" in self.name else ""

    @property
    def dynamic(self) -> bool:
        """True for a leased, dynamic credential (Vault ``MOUNT/creds/ROLE``)."""
        return self.backend == "vault" and self.path.startswith("creds/")


def parse_secret_ref(uri: str) -> SecretRef:
    """Parse a ``secret://`` reference.

    Args:
        uri: ``secret://gsm/projects/P/secrets/S/versions/N``, ``secret://vault/MOUNT/PATH#FIELD``
            (``?version=N`` for KV v2) or ``secret://k8s/NAME#KEY``.

    Returns:
        The reference.

    Raises:
        InputError: not a reference of a supported form.
    """
    if not isinstance(uri, str) or not uri.startswith("secret://"):
        raise InputError(f"{_shown(uri)}: expected a secret:// reference (gsm, vault or k8s)")
    parsed = urlparse(uri)
    backend, rest = parsed.netloc, unquote(parsed.path.lstrip("/"))
    fld = unquote(parsed.fragment)
    query = parse_qs(parsed.query)
    if parsed.username or parsed.password:
        raise InputError("secret://...: a reference holds no credentials (userinfo refused)")
    if backend == "gsm":
        match = _GSM.fullmatch(rest)
        if not match or parsed.query or fld:
            raise InputError(f"{uri}: expected secret://gsm/projects/P/secrets/S/versions/N (N a number or latest)")
        return SecretRef("gsm", f"projects/{match[1]}/secrets/{match[2]}", match[3], "", uri)
    if backend == "vault":
        parts = rest.split("/")
        if len(parts) < 2 or not all(_SEGMENT.fullmatch(p) for p in parts) or ".." in parts:
            raise InputError(f"{uri}: expected secret://vault/MOUNT/PATH#FIELD")
        version = query.get("version", [""])[0]
        if set(query) - {"version"} or (version and not version.isdigit()):
            raise InputError(f"{uri}: the only query is ?version=N (a number)")
        ref = SecretRef("vault", rest, version, fld, uri)
        if ref.dynamic and version:
            raise InputError(f"{uri}: dynamic credentials have no version")
        if not ref.dynamic and not fld:
            raise InputError(f"{uri}: a KV secret needs #FIELD")
        return ref
    if backend == "k8s":
        if not _K8S_NAME.fullmatch(rest) or not fld or parsed.query or not _SEGMENT.fullmatch(fld):
            raise InputError(f"{uri}: expected secret://k8s/NAME#KEY")
        return SecretRef("k8s", rest, "", fld, uri)
    raise InputError(f"{uri}: unknown secret backend {backend!r}; expected gsm, vault or k8s")


def _shown(value: object) -> str:
    # A malformed reference may be a pasted value: show only its shape.
    text = value if isinstance(value, str) else type(value).__name__
    return text if text.startswith("secret://") and len(text) < 300 else "<not a secret:// reference>"


class Secret:
    """A resolved secret. Its ``repr``, ``str`` and format never show the value.

    It cannot be pickled or compared, so it does not end up in a cache, a KFP output or a log
    by accident. Read it with :meth:`reveal` where it is used, and nowhere else.
    """

    __slots__ = ("_field", "_lease_duration", "_lease_id", "_values", "ref", "version")

    def __init__(
        self,
        *,
        ref: SecretRef,
        version: str,
        values: Mapping[str, str],
        field: str,
        lease_id: str = "",
        lease_duration: int = 0,
    ) -> None:
        """Hold a resolved value (built by :func:`resolve_secret`).

        Args:
            ref: the reference it was resolved from.
            version: the version it resolved to (``""`` for a lease).
            values: field name to value.
            field: the field :meth:`reveal` returns by default.
            lease_id: the Vault lease (kept private; revoked by the scope).
            lease_duration: the lease's duration in seconds.
        """
        self.ref, self.version = ref, version
        self._values, self._field = dict(values), field
        self._lease_id, self._lease_duration = lease_id, lease_duration

    def reveal(self, field: str | None = None) -> str:
        """Return the value (or one named field of it, e.g. the ``username`` of the same lease).

        Raises:
            SecretUnavailable: no such field.
        """
        name = self._field if field is None else field
        if name not in self._values:
            raise SecretUnavailable(
                self.ref.uri, f"expected field {name!r}, found fields {sorted(self._values)}"
            )
        return self._values[name]

    @property
    def fields(self) -> list[str]:
        """The field names (not secret)."""
        return sorted(self._values)

    def record(self) -> dict[str, Any]:
        """Return what a link may record: reference, backend, version, dynamic; never the value or lease."""
        doc: dict[str, Any] = {
            "ref": self.ref.uri,
            "backend": self.ref.backend,
            "version": self.version,
            "dynamic": self.ref.dynamic,
        }
        if self._lease_duration:
            doc["lease_duration"] = self._lease_duration
        return doc

    def __repr__(self) -> str:
        return f"Secret(ref={self.ref.uri!r}, version={self.version!r}, value=<redacted>)"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        raise TypeError("secrets are not compared")

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> Any:
        raise TypeError("a Secret cannot be pickled")


@dataclass(frozen=True)
class VaultAuth:
    """How a step logs in to Vault: with its own workload identity, never a static token.

    Attributes:
        address: the Vault URL (``https://vault.example:8200``).
        method: ``kubernetes`` (the pod's service-account JWT) or ``gcp`` (a metadata-server
            identity token for the audience ``http://vault/ROLE``).
        role: the Vault role to log in as.
        mount: the auth method's mount (default: the method's name).
        jwt_path: the Kubernetes service-account token file (``kubernetes`` only).
        ca_cert: a CA bundle to verify Vault's TLS certificate (default: the system's).
        namespace: a Vault Enterprise namespace, or ``""``.
    """

    address: str
    method: str
    role: str
    mount: str = ""
    jwt_path: str = KUBERNETES_JWT_PATH
    ca_cert: str = ""
    namespace: str = ""

    def __post_init__(self) -> None:
        if self.method not in ("kubernetes", "gcp"):
            raise InputError(f"vault auth method {self.method!r}: expected kubernetes or gcp (static tokens are refused)")
        if not self.role:
            raise InputError("vault auth: a role is mandatory")
        if not self.address.startswith(("https://", "http://127.0.0.1", "http://localhost")):
            raise InputError(f"vault address {self.address}: expected https:// (plain http only on loopback)")

    @property
    def mount_point(self) -> str:
        """The auth mount."""
        return self.mount or self.method

    def to_dict(self) -> dict[str, str]:
        """The non-secret facts a link may record about the login."""
        return {"address": self.address, "method": self.method, "role": self.role, "mount": self.mount_point}


def _require_extra(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise InputError(f"{module} is not installed: {EXTRA_HINT}") from exc


class _VaultSession:
    """One logged-in hvac client for a scope; the login token is revoked at the end."""

    def __init__(self, auth: VaultAuth, *, request: Any = None) -> None:
        self.auth = auth
        self._request = request
        self._client: Any = None

    def client(self, ref: str) -> Any:
        if self._client is not None:
            return self._client
        hvac = _require_extra("hvac")
        verify: Any = self.auth.ca_cert or True
        # token="" (not None): hvac would otherwise read VAULT_TOKEN or ~/.vault-token.
        client = hvac.Client(url=self.auth.address, token="", verify=verify, namespace=self.auth.namespace or None)
        jwt = self._jwt(ref)
        try:
            if self.auth.method == "kubernetes":
                client.auth.kubernetes.login(self.auth.role, jwt, mount_point=self.auth.mount_point)
            else:
                client.auth.gcp.login(self.auth.role, jwt, mount_point=self.auth.mount_point)
        except Exception as exc:  # noqa: BLE001 - hvac raises one class per HTTP status, requests its own
            raise SecretUnavailable(
                ref, f"vault login ({self.auth.method}, role {self.auth.role}) refused: {_vault_reason(exc)}"
            ) from None
        if not client.token:
            raise SecretUnavailable(ref, f"vault login ({self.auth.method}) returned no client token")
        self._client = client
        return client

    def _jwt(self, ref: str) -> str:
        if self.auth.method == "kubernetes":
            try:
                jwt = Path(self.auth.jwt_path).read_text().strip()
            except OSError as exc:
                raise SecretUnavailable(
                    ref, f"cannot read the service-account token {self.auth.jwt_path} ({exc.strerror})"
                ) from None
            if not jwt:
                raise SecretUnavailable(ref, f"the service-account token {self.auth.jwt_path} is empty")
            return jwt
        return _metadata_identity_token(f"http://vault/{self.auth.role}", ref=ref, request=self._request)

    def close(self) -> list[str]:
        if self._client is None:
            return []
        try:
            self._client.auth.token.revoke_self()
        except Exception as exc:  # noqa: BLE001 - revocation failures are reported, not raised over the step's own error
            return [f"vault login token not revoked: {_vault_reason(exc)}"]
        finally:
            self._client.token = ""
            self._client = None
        return []


def _vault_reason(exc: BaseException) -> str:
    # hvac's messages hold Vault's error strings, the method and the URL: none of them secret.
    errors = getattr(exc, "errors", None)
    if errors:
        first = str(errors[0] if isinstance(errors, list) else errors)
        return f"{type(exc).__name__}: {first.splitlines()[0][:200]}"
    return type(exc).__name__


def _metadata_identity_token(audience: str, *, ref: str, request: Any) -> str:
    """An identity token for ``audience`` from the metadata server (the step's own service account)."""
    from google.auth import exceptions as auth_exceptions
    from google.auth.compute_engine import IDTokenCredentials
    from google.auth.transport.requests import Request

    req = request or Request()
    try:
        creds = IDTokenCredentials(  # type: ignore[no-untyped-call]
            req, target_audience=audience, use_metadata_identity_endpoint=True
        )
        creds.refresh(req)  # type: ignore[no-untyped-call]
    except (auth_exceptions.GoogleAuthError, ValueError) as exc:
        raise SecretUnavailable(
            ref, f"no identity token from the metadata server for {audience} ({type(exc).__name__})"
        ) from None
    return str(creds.token)


class SecretScope:
    """The secrets a step resolved; revokes every lease and login when it closes.

    Use :func:`secret_scope` rather than building one.
    """

    def __init__(
        self,
        *,
        vault: VaultAuth | None = None,
        gsm_credentials: Any = None,
        gsm_endpoint: str = "",
        kubernetes_root: str = KUBERNETES_SECRETS_ROOT,
        request: Any = None,
    ) -> None:
        """Configure the backends (see :func:`secret_scope`)."""
        self.vault = vault
        self.gsm_credentials = gsm_credentials
        self.gsm_endpoint = gsm_endpoint
        self.kubernetes_root = kubernetes_root
        self._request = request
        self._vault = _VaultSession(vault, request=request) if vault else None
        self._gsm_client: Any = None
        self._secrets: list[Secret] = []
        self.revocation_failures: list[str] = []

    def resolve(self, ref: str | SecretRef) -> Secret:
        """Resolve a reference in this scope (see :func:`resolve_secret`)."""
        parsed = ref if isinstance(ref, SecretRef) else parse_secret_ref(ref)
        if parsed.backend == "gsm":
            secret = self._resolve_gsm(parsed)
        elif parsed.backend == "vault":
            secret = self._resolve_vault(parsed)
        else:
            secret = self._resolve_k8s(parsed)
        self._secrets.append(secret)
        return secret

    def records(self) -> list[dict[str, Any]]:
        """What the step's link may record about the secrets it used, in resolution order, deduplicated."""
        seen: list[dict[str, Any]] = []
        for secret in self._secrets:
            doc = secret.record()
            if doc not in seen:
                seen.append(doc)
        return seen

    # -- backends

    def _gsm(self, ref: str) -> Any:
        if self._gsm_client is not None:
            return self._gsm_client
        _require_extra("google.cloud.secretmanager")
        from google.cloud import secretmanager

        credentials = self.gsm_credentials
        if credentials is None:
            credentials = _workload_credentials(ref, request=self._request)
        options = {"api_endpoint": self.gsm_endpoint} if self.gsm_endpoint else None
        self._gsm_client = secretmanager.SecretManagerServiceClient(credentials=credentials, client_options=options)
        return self._gsm_client

    def _resolve_gsm(self, ref: SecretRef) -> Secret:
        import google_crc32c
        from google.api_core import exceptions as api_exceptions

        name = f"{ref.name}/versions/{ref.version}"
        try:
            response = self._gsm(ref.uri).access_secret_version(request={"name": name}, timeout=30)
        except api_exceptions.GoogleAPICallError as exc:
            status = getattr(exc, "grpc_status_code", None)
            raise SecretUnavailable(
                ref.uri, f"Secret Manager refused AccessSecretVersion: {status.name if status else type(exc).__name__}"
            ) from None
        except Exception as exc:  # noqa: BLE001 - transport or credential errors: their text may hold request details
            raise SecretUnavailable(ref.uri, f"Secret Manager unreachable ({type(exc).__name__})") from None
        data = bytes(response.payload.data)
        if "data_crc32c" in response.payload and int(response.payload.data_crc32c) != int(google_crc32c.value(data)):
            raise SecretUnavailable(ref.uri, "payload corrupted in transit: data_crc32c does not match")
        resolved = str(response.name).rsplit("/", 1)[-1]
        if not response.name.startswith(f"{ref.name}/versions/") or not resolved.isdigit():
            raise SecretUnavailable(ref.uri, f"expected a version of {ref.name}, got {response.name!r}")
        if ref.version != "latest" and resolved != ref.version:
            raise SecretUnavailable(ref.uri, f"expected version {ref.version}, got {resolved}")
        try:
            value = data.decode("utf-8")
        except UnicodeDecodeError:
            raise SecretUnavailable(ref.uri, "expected a UTF-8 payload, got binary data") from None
        return Secret(ref=ref, version=resolved, values={"value": value}, field="value")

    def _resolve_vault(self, ref: SecretRef) -> Secret:
        if self._vault is None:
            raise InputError(f"{ref.uri}: a vault reference needs VaultAuth (address, method, role) in secret_scope()")
        client = self._vault.client(ref.uri)
        try:
            if ref.dynamic:
                response = client.read(ref.name)
            else:
                response = client.secrets.kv.v2.read_secret_version(
                    path=ref.path,
                    mount_point=ref.mount,
                    version=int(ref.version) if ref.version else None,
                    raise_on_deleted_version=True,
                )
        except Exception as exc:  # noqa: BLE001 - hvac: Forbidden, InvalidPath, ...; requests: connection errors
            raise SecretUnavailable(ref.uri, f"vault read refused: {_vault_reason(exc)}") from None
        if not isinstance(response, Mapping) or not isinstance(response.get("data"), Mapping):
            raise SecretUnavailable(ref.uri, "vault returned no data (no such secret?)")
        if ref.dynamic:
            lease_id = str(response.get("lease_id") or "")
            values = response["data"]
            if not lease_id:
                raise SecretUnavailable(ref.uri, "expected a leased dynamic credential, got no lease")
            secret = Secret(
                ref=ref, version="", values=_strings(values, ref), field=ref.field or "password",
                lease_id=lease_id, lease_duration=int(response.get("lease_duration") or 0),
            )
        else:
            data = response["data"]
            values, meta = data.get("data"), data.get("metadata") or {}
            if not isinstance(values, Mapping):
                raise SecretUnavailable(ref.uri, "expected a KV v2 secret (data.data)")
            secret = Secret(ref=ref, version=str(meta.get("version", "")), values=_strings(values, ref), field=ref.field)
        if secret._field not in secret._values:
            fields = secret.fields
            self._revoke(secret)
            raise SecretUnavailable(ref.uri, f"expected field {secret._field!r}, found fields {fields}")
        return secret

    def _resolve_k8s(self, ref: SecretRef) -> Secret:
        path = Path(self.kubernetes_root) / ref.name / ref.field
        try:
            value = path.read_text()
        except OSError as exc:
            raise SecretUnavailable(
                ref.uri, f"expected the mounted key {path} (mount_kubernetes_secret), {exc.strerror}"
            ) from None
        return Secret(ref=ref, version="", values={ref.field: value}, field=ref.field)

    # -- teardown

    def _revoke(self, secret: Secret) -> None:
        if not secret._lease_id or self._vault is None or self._vault._client is None:
            return
        try:
            self._vault._client.sys.revoke_lease(secret._lease_id)
        except Exception as exc:  # noqa: BLE001 - report, keep revoking the others
            self.revocation_failures.append(f"{secret.ref.uri}: lease not revoked: {_vault_reason(exc)}")
        secret._lease_id = ""

    def close(self) -> None:
        """Revoke every lease, then the Vault login token; forget the values."""
        for secret in self._secrets:
            self._revoke(secret)
        if self._vault is not None:
            self.revocation_failures += self._vault.close()
        for secret in self._secrets:
            secret._values = {}


def _strings(values: Mapping[str, Any], ref: SecretRef) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in values.items():
        if not isinstance(value, str):
            raise SecretUnavailable(ref.uri, f"field {key!r}: expected a string, got {type(value).__name__}")
        out[str(key)] = value
    return out


def _workload_credentials(ref: str, *, request: Any) -> Any:
    """The step's Application Default Credentials, under chainproof's identity policy."""
    import google.auth
    from google.auth import exceptions as auth_exceptions

    from chainproof.identity import classify_credentials

    try:
        credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"], request=request)
    except auth_exceptions.DefaultCredentialsError:
        raise SecretUnavailable(ref, "no Application Default Credentials (the step needs a workload identity)") from None
    classify_credentials(credentials, mode="gcp", allow_service_account_key=False, request=request)
    return credentials


_CURRENT: contextvars.ContextVar[SecretScope | None] = contextvars.ContextVar("chainproof_secret_scope", default=None)


@contextmanager
def secret_scope(
    *,
    vault: VaultAuth | None = None,
    gsm_credentials: Any = None,
    gsm_endpoint: str = "",
    kubernetes_root: str = KUBERNETES_SECRETS_ROOT,
    request: Any = None,
) -> Iterator[SecretScope]:
    """Open the scope a step resolves its secrets in; leases and logins are revoked at its end.

    Args:
        vault: how to log in to Vault (needed for ``secret://vault/...``).
        gsm_credentials: credentials for Secret Manager (default: the step's Application
            Default Credentials; a service-account key file is refused).
        gsm_endpoint: a non-default Secret Manager endpoint (``HOST:PORT``).
        kubernetes_root: where Kubernetes secrets are mounted.
        request: a google-auth transport request (metadata server).

    Yields:
        The scope (:meth:`SecretScope.resolve`, :meth:`SecretScope.records`).

    Raises:
        SecretUnavailable: a lease or the login could not be revoked (only when the body
            itself succeeded; otherwise the body's error wins and the failure is on
            ``scope.revocation_failures``).
    """
    scope = SecretScope(
        vault=vault, gsm_credentials=gsm_credentials, gsm_endpoint=gsm_endpoint,
        kubernetes_root=kubernetes_root, request=request,
    )
    token = _CURRENT.set(scope)
    failed = False
    try:
        yield scope
    except BaseException:
        failed = True
        raise
    finally:
        _CURRENT.reset(token)
        scope.close()
        if scope.revocation_failures and not failed:
            raise SecretUnavailable("secret_scope", "; ".join(scope.revocation_failures))


def resolve_secret(ref: str | SecretRef, *, scope: SecretScope | None = None) -> Secret:
    """Resolve a ``secret://`` reference in the current :func:`secret_scope` (or ``scope``).

    Args:
        ref: the reference.
        scope: the scope (default: the innermost open :func:`secret_scope`).

    Returns:
        The secret; :meth:`Secret.record` is what may be recorded.

    Raises:
        InputError: a malformed reference, or no open scope.
        SecretUnavailable: the backend refused or failed (the message holds no value).
    """
    scope = scope or _CURRENT.get()
    if scope is None:
        raise InputError(
            f"{_shown(ref if isinstance(ref, str) else ref.uri)}: resolve secrets inside "
            "`with secret_scope(...)`, so leases are revoked when the step ends"
        )
    return scope.resolve(ref)


# -- Kubernetes secrets mounted by KFP on GKE (kfp-kubernetes)


def mount_kubernetes_secret(task: Any, *, secret_name: str, keys: list[str] | None = None, env: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Mount a Kubernetes secret into a KFP task (``kfp-kubernetes``), and return its records.

    As a volume under ``KUBERNETES_SECRETS_ROOT/NAME`` (read with ``secret://k8s/NAME#KEY``), or,
    with ``env``, as environment variables (``use_secret_as_env``). The compiled pipeline holds
    only the secret's name and keys, never a value.

    Args:
        task: a ``kfp.dsl.PipelineTask``.
        secret_name: the Kubernetes secret.
        keys: the keys the step reads (recorded; default: none named).
        env: secret key to environment variable (use_secret_as_env) instead of a volume.

    Returns:
        One record per key, in the form :meth:`Secret.record` gives.

    Raises:
        InputError: a malformed name, or kfp-kubernetes is not installed.
    """
    if not _K8S_NAME.fullmatch(secret_name):
        raise InputError(f"kubernetes secret {secret_name!r}: expected a DNS-1123 name")
    try:
        from kfp import kubernetes
    except ImportError as exc:
        raise InputError("kfp-kubernetes is not installed: pip install 'chainproof[gke]'") from exc
    if env:
        kubernetes.use_secret_as_env(task, secret_name=secret_name, secret_key_to_env=dict(env))
        names = sorted(env)
    else:
        kubernetes.use_secret_as_volume(
            task, secret_name=secret_name, mount_path=f"{KUBERNETES_SECRETS_ROOT}/{secret_name}", optional=False
        )
        names = sorted(keys or [])
    return [
        {"ref": f"secret://k8s/{secret_name}#{key}", "backend": "k8s", "version": "", "dynamic": False}
        for key in names
    ]


# -- compile-time check: no credential in a default value


def _detectors() -> list[Any]:
    try:
        from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
        from detect_secrets.plugins.high_entropy_strings import (
            Base64HighEntropyString,
            HexHighEntropyString,
        )
    except ImportError as exc:  # a core dependency: only a broken install gets here
        raise InputError("detect-secrets is not installed (a chainproof dependency): pip install detect-secrets") from exc
    skip = {"Public IP (ipv4)", "Base64 High Entropy String", "Hex High Entropy String"}
    mapping: dict[str, Any] = dict(get_mapping_from_secret_type_to_class())
    plugins: list[Any] = [cls() for kind, cls in mapping.items() if kind not in skip]
    # detect-secrets' own default limits.
    return [*plugins, Base64HighEntropyString(limit=4.5), HexHighEntropyString(limit=3.0)]


_PIN_NAME = re.compile(r"(sha256|sha512|digest|hash|checksum|generation|commit)", re.IGNORECASE)
_HEX_PIN = re.compile(r"(sha256:)?([0-9a-f]{40}|[0-9a-f]{64}|[0-9a-f]{128})")


def _is_public_key(value: str) -> bool:
    if "PUBLIC KEY-----" not in value:
        return False
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        load_pem_public_key(value.encode())
    except (ValueError, TypeError):
        return False
    return True


def _credential_kinds(name: str, value: str, detectors: list[Any]) -> list[str]:
    if not value or value.startswith("secret://"):
        return []
    if _is_public_key(value):
        return []
    kinds: set[str] = set()
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    lines = [f'{name} = "{escaped}"', *value.splitlines()]
    for plugin in detectors:
        for line in lines:
            for found in plugin.analyze_line(filename="pipeline-parameters", line=line, line_number=1):
                kinds.add(str(found.type))
    if not kinds and _looks_like_random_token(value.strip()):
        kinds.add("High Entropy Token")
    if "Hex High Entropy String" in kinds and _PIN_NAME.search(name) and _HEX_PIN.fullmatch(value.strip()):
        kinds.discard("Hex High Entropy String")  # a digest pin is public by design
    return sorted(kinds)


_TOKEN = re.compile(r"[A-Za-z0-9+/_-]{20,}={0,2}")


def _looks_like_random_token(value: str) -> bool:
    """A short random key that detect-secrets' fixed entropy limit misses.

    The Shannon entropy of a random string is bounded by the log of its length, so a
    32-character base64 key often stays under detect-secrets' fixed 4.5 bits. Here the
    limit scales with the length (at least 0.75 of log2(length); random base64 keys of
    24 to 48 bytes measure 0.80 or more), and the value must mix upper case, lower case
    and digits, which names, identifiers and hex digests do not.
    """
    import math
    from collections import Counter

    if not _TOKEN.fullmatch(value):
        return False
    body = value.rstrip("=")
    classes = sum(any(test(c) for c in body) for test in (str.isupper, str.islower, str.isdigit))
    if classes < 3:
        return False
    n = len(body)
    entropy = -sum(k / n * math.log2(k / n) for k in Counter(body).values())
    return entropy >= 0.75 * math.log2(n)


def refuse_credential_defaults(pipeline_parameters: Mapping[str, Any]) -> None:
    """Refuse pipeline parameters whose default value looks like a credential.

    A default lands in the compiled pipeline, the run's metadata and the UI: a credential
    there is published. Detected with ``detect-secrets`` (AWS, GitHub, GitLab, Slack, Stripe,
    OpenAI, PyPI, npm ... tokens, private keys, JWTs, passwords in URIs, ``password = ...``
    keywords, and high-entropy strings at its default limits); a public key PEM, a digest pin
    in a ``*sha256*``/``*digest*`` parameter and a ``secret://`` reference are not credentials.

    Args:
        pipeline_parameters: parameter name to default value (non-strings are rendered as JSON).

    Raises:
        CredentialDefault: the first offending parameter, named; the value is never shown.
    """
    import json

    detectors = _detectors()
    for name in sorted(pipeline_parameters):
        default = pipeline_parameters[name]
        if default is None or isinstance(default, (bool, int, float)):
            continue
        text = default if isinstance(default, str) else json.dumps(default, sort_keys=True)
        kinds = _credential_kinds(str(name), text, detectors)
        if kinds:
            raise CredentialDefault(str(name), kinds)


def refuse_credential_defaults_in_template(template: Path) -> None:
    """Run :func:`refuse_credential_defaults` on a compiled KFP pipeline's root parameters.

    Args:
        template: the compiled pipeline YAML.

    Raises:
        CredentialDefault: a parameter's default looks like a credential.
        InputError: the file is not a compiled KFP pipeline.
    """
    import yaml

    try:
        doc = yaml.safe_load(template.read_text())
        params = doc["root"].get("inputDefinitions", {}).get("parameters", {})
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"{template}: not a compiled KFP pipeline ({type(exc).__name__})") from exc
    refuse_credential_defaults({k: v.get("defaultValue") for k, v in params.items() if isinstance(v, Mapping)})
