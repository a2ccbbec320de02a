"""Who a step runs as: the credential policy and the principal recorded in its link.

Example:
    >>> from chainproof.identity import local_principal, resolve_principal
    >>> p = local_principal()
    >>> p.kind
    'local-user'
    >>> resolve_principal(mode="local").kind  # never probes a metadata server
    'local-user'

Two modes:

- ``local`` (``chainproof run`` on one machine) records the local user and host and
  never probes a metadata server. Where Application Default Credentials (ADC) point
  at a service-account key file, local mode refuses it too.
- ``gcp`` resolves ADC with google-auth and classifies the credentials with
  ``isinstance`` against google-auth's concrete classes: the metadata server (GCE,
  GKE workload identity, Vertex AI custom jobs), workload identity federation,
  impersonation, a service-account key file, user credentials, or none.

The policy: a service-account key file is refused unless the caller passes
``allow_service_account_key=True``; the override is recorded in the principal, and
``chainproof verify`` reports it as a policy violation unless the layout allows it.
User credentials are refused outside local mode. No token ever leaves this module:
a principal holds names and non-secret facts only.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

from chainproof.errors import CredentialRefused, InputError

__all__ = [
    "IDENTITY_MODES",
    "KIND_SERVICE_ACCOUNT_KEY",
    "IdentityMode",
    "Principal",
    "check_adc_file",
    "classify_credentials",
    "local_principal",
    "resolve_principal",
    "uses_service_account_key",
]

IdentityMode = Literal["local", "gcp"]

#: The identity modes a step accepts.
IDENTITY_MODES: tuple[str, ...] = ("local", "gcp")

#: The principal kind of a service-account key file.
KIND_SERVICE_ACCOUNT_KEY = "service-account-key"

_CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"

_HOW_TO_FIX = (
    "run with workload identity instead: on Vertex AI Pipelines submit with a dedicated service "
    "account (PipelineJob.submit(service_account=...)), on GKE bind the Kubernetes service account "
    "to it (Workload Identity), elsewhere use workload identity federation "
    "(gcloud iam workload-identity-pools create-cred-config); then unset "
    "GOOGLE_APPLICATION_CREDENTIALS and delete the key. To accept the key anyway, pass "
    "allow_service_account_key=True (chainproof run --allow-service-account-key): the override is "
    "recorded in the link and chainproof verify reports it unless the layout allows it"
)


@dataclass(frozen=True)
class Principal:
    """The identity a step ran as.

    Attributes:
        kind: ``local-user``, ``metadata-server``, ``external-account``,
            ``impersonated``, ``service-account-key`` or ``user``.
        name: the principal (a service-account email, a federated subject, ``user@host``).
        details: non-secret facts about how it was resolved (never a token or a key).
    """

    kind: str
    name: str
    details: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form recorded in links."""
        return {"kind": self.kind, "name": self.name, "details": dict(self.details)}


def uses_service_account_key(principal: dict[str, Any] | Principal) -> bool:
    """Tell whether a principal (or its recorded JSON form) rests on a service-account key file.

    An impersonated principal whose source credentials are a key file counts too:
    the long-lived key is still what an attacker would steal.

    Args:
        principal: a :class:`Principal` or its ``to_dict()`` form from a link.

    Returns:
        True when a key file is involved.
    """
    doc = principal.to_dict() if isinstance(principal, Principal) else principal
    raw = doc.get("details")
    details: dict[str, Any] = raw if isinstance(raw, dict) else {}
    return KIND_SERVICE_ACCOUNT_KEY in (doc.get("kind"), details.get("source_kind"), details.get("adc"))


def local_principal() -> Principal:
    """Return the local user and host, without touching any network.

    Returns:
        A ``local-user`` principal named ``user@host``.
    """
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        # No passwd entry (some containers run as an anonymous uid).
        user = "unknown"
    host = socket.gethostname() or "localhost"
    details: dict[str, Any] = {"mode": "local"}
    if hasattr(os, "getuid"):
        details["uid"] = os.getuid()  # a container's user may have no name; its uid is a fact
    return Principal(kind="local-user", name=f"{user}@{host}", details=details)


def _cred_source(credentials: Any) -> str:
    # get_cred_info() is None for credentials built in code; the file path, when
    # there is one, is not secret and tells the operator which key to remove.
    try:
        info = credentials.get_cred_info()
    except Exception:  # noqa: BLE001 - older google-auth or exotic credentials
        info = None
    if isinstance(info, dict) and info.get("credential_source"):
        return str(info["credential_source"])
    path = getattr(credentials, "_cred_file_path", None)
    return str(path) if path else "credentials built in code"


def _refuse_key(credentials: Any, *, via: str = "") -> CredentialRefused:
    email = getattr(credentials, "service_account_email", "") or "unknown"
    what = f" (the source of impersonated {via})" if via else ""
    return CredentialRefused(
        f"refusing service-account key file {_cred_source(credentials)} for {email}{what}: "
        f"long-lived keys can be stolen and replayed from anywhere; {_HOW_TO_FIX}"
    )


def classify_credentials(
    credentials: Any,
    *,
    mode: IdentityMode = "gcp",
    allow_service_account_key: bool = False,
    request: Any = None,
) -> Principal:
    """Classify google-auth credentials into a principal, applying the credential policy.

    Args:
        credentials: credentials from ``google.auth.default()`` (or built in code).
        mode: ``gcp`` or ``local`` (user credentials are accepted only in ``local``).
        allow_service_account_key: accept a service-account key file (recorded as an override).
        request: a google-auth transport request, used to ask the metadata server for
            the service-account email (default: a new ``requests`` transport).

    Returns:
        The principal. ``details["override"]`` is ``allow_service_account_key`` when the
        key-file refusal was overridden.

    Raises:
        CredentialRefused: a key file without the override, user credentials outside
            local mode, or credentials of an unknown kind.

    Side effects:
        For metadata-server credentials, refreshes them once against the metadata
        server to learn the service-account email (the token stays in memory).
    """
    from google.auth import compute_engine, external_account, impersonated_credentials
    from google.oauth2 import credentials as user_credentials
    from google.oauth2 import service_account

    if isinstance(credentials, service_account.Credentials):
        if not allow_service_account_key:
            raise _refuse_key(credentials)
        details = {
            "source": _cred_source(credentials),
            "override": "allow_service_account_key",
            # The key id is public (it names the key to revoke); the key is not recorded.
            "private_key_id": str(getattr(credentials, "_private_key_id", "") or ""),
        }
        return Principal(KIND_SERVICE_ACCOUNT_KEY, str(credentials.service_account_email), details)

    if isinstance(credentials, impersonated_credentials.Credentials):
        target = str(getattr(credentials, "_target_principal", "") or credentials.service_account_email)
        source_creds = getattr(credentials, "_source_credentials", None)
        if isinstance(source_creds, service_account.Credentials) and not allow_service_account_key:
            raise _refuse_key(source_creds, via=target)
        source = classify_credentials(
            source_creds, mode=mode, allow_service_account_key=allow_service_account_key, request=request
        )
        details = {"target": target, "source_kind": source.kind, "source_name": source.name}
        if "override" in source.details:
            details["override"] = source.details["override"]
        return Principal("impersonated", target, details)

    if isinstance(credentials, compute_engine.Credentials):
        email = str(credentials.service_account_email)
        if email == "default":
            if request is None:
                from google.auth.transport.requests import Request

                request = Request()
            try:
                credentials.refresh(request)  # type: ignore[no-untyped-call]
            except Exception as exc:  # noqa: BLE001 - google.auth.exceptions.RefreshError and transport errors
                # The exception text can echo the response; report its type only.
                raise CredentialRefused(
                    f"metadata server credentials did not resolve a service account ({type(exc).__name__})"
                ) from None
            email = str(credentials.service_account_email)
        return Principal("metadata-server", email, {"source": "metadata server"})

    if isinstance(credentials, external_account.Credentials):
        from google.auth import aws, identity_pool

        if isinstance(credentials, aws.Credentials):
            provider = "aws"
        elif isinstance(credentials, identity_pool.Credentials):
            provider = "identity_pool"
        else:
            provider = type(credentials).__module__.rsplit(".", 1)[-1]
        audience = str(getattr(credentials, "_audience", "") or "")
        impersonated = credentials.service_account_email
        details = {"provider": provider, "audience": audience}
        if impersonated:
            details["impersonates"] = str(impersonated)
            return Principal("external-account", str(impersonated), details)
        # Without impersonation the STS token is the principal: name the pool and provider.
        return Principal("external-account", f"federated:{audience}", details)

    if isinstance(credentials, user_credentials.Credentials):
        if mode != "local":
            account = str(getattr(credentials, "account", "") or "") or "a user account"
            raise CredentialRefused(
                f"refusing user credentials ({account}, {_cred_source(credentials)}) in {mode} mode: "
                "a pipeline step runs as a workload identity, never as a person; user credentials "
                "are accepted only in local mode"
            )
        account = str(getattr(credentials, "account", "") or "") or "user"
        return Principal("user", account, {"source": _cred_source(credentials)})

    raise CredentialRefused(
        f"refusing credentials of unknown kind {type(credentials).__module__}.{type(credentials).__name__}"
    )


def check_adc_file(path: str, *, allow_service_account_key: bool = False) -> None:
    """Refuse an ADC file that holds a service-account key (local mode, before any step runs).

    Args:
        path: the file ``GOOGLE_APPLICATION_CREDENTIALS`` names (the CLI reads the variable).
        allow_service_account_key: accept a key file anyway.

    Raises:
        CredentialRefused: the file is a service-account key and there is no override.
        InputError: the file cannot be read as credentials.
    """
    import google.auth
    from google.auth import exceptions as auth_exceptions

    try:
        with warnings.catch_warnings():
            # google-auth warns that the generic loader accepts any credential type; that is
            # the point here: the result is classified with isinstance and refused or
            # accepted, and never refreshed (nothing it names is executed or contacted).
            warnings.simplefilter("ignore", DeprecationWarning)
            credentials, _ = google.auth.load_credentials_from_file(path)  # type: ignore[no-untyped-call]
    except auth_exceptions.DefaultCredentialsError as exc:
        # google-auth's message names the file and the problem, not the key.
        raise InputError(f"{path}: not a credentials file google-auth can load") from exc
    with contextlib.suppress(AttributeError):
        credentials._cred_file_path = f"{path} (GOOGLE_APPLICATION_CREDENTIALS)"
    classify_credentials(credentials, mode="local", allow_service_account_key=allow_service_account_key)


def _explicit_adc() -> Any:
    # google-auth reads its own GOOGLE_APPLICATION_CREDENTIALS variable here (chainproof
    # reads no environment variable). This private helper is the part of
    # google.auth.default() that loads only the explicit file and never probes the
    # metadata server; if a google-auth release drops it, local mode relies on the
    # runner's check_adc_file() alone.
    from google.auth import _default
    from google.auth import exceptions as auth_exceptions

    loader = getattr(_default, "_get_explicit_environ_credentials", None)
    if loader is None:
        return None
    try:
        credentials, _ = loader()
    except auth_exceptions.DefaultCredentialsError as exc:
        # A missing or unreadable file named by the variable (google-auth's message names the
        # file, never its content).
        raise CredentialRefused(f"GOOGLE_APPLICATION_CREDENTIALS: {exc}") from exc
    return credentials


def resolve_principal(
    *,
    mode: str = "local",
    allow_service_account_key: bool = False,
    request: Any = None,
) -> Principal:
    """Resolve the principal a step runs as, applying the credential policy.

    Args:
        mode: ``local`` (record the local user; never probe a metadata server) or
            ``gcp`` (resolve Application Default Credentials).
        allow_service_account_key: accept a service-account key file (recorded).
        request: a google-auth transport request (default: a ``requests`` transport).

    Returns:
        The principal.

    Raises:
        CredentialRefused: the credentials are refused, or there are none in ``gcp`` mode.
        InputError: an unknown mode.

    Side effects:
        In ``gcp`` mode, google-auth may read its environment variables and files and
        ask the metadata server (seconds when nothing answers).
    """
    if mode not in IDENTITY_MODES:
        raise InputError(f"identity {mode!r}: expected one of {', '.join(IDENTITY_MODES)}")
    if mode == "local":
        explicit = _explicit_adc()
        if explicit is not None:
            classify_credentials(explicit, mode="local", allow_service_account_key=allow_service_account_key)
        principal = local_principal()
        from google.oauth2 import service_account

        if isinstance(explicit, service_account.Credentials):
            principal = Principal(
                principal.kind,
                principal.name,
                {**principal.details, "adc": KIND_SERVICE_ACCOUNT_KEY, "override": "allow_service_account_key"},
            )
        return principal

    import google.auth
    from google.auth import exceptions as auth_exceptions

    try:
        credentials, _ = google.auth.default(scopes=[_CLOUD_PLATFORM], request=request)
    except auth_exceptions.DefaultCredentialsError as exc:
        raise CredentialRefused(
            "no Application Default Credentials: on Google Cloud the step needs a workload identity "
            "(metadata server or workload identity federation); locally, run with identity=local"
        ) from exc
    return classify_credentials(
        credentials, mode="gcp", allow_service_account_key=allow_service_account_key, request=request
    )
