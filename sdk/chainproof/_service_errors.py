"""Turn a cloud client library's failure into one line: the service, the operation, what to check.

Example:
    >>> from google.auth.exceptions import DefaultCredentialsError
    >>> from chainproof._service_errors import classify_service_error
    >>> classify_service_error(DefaultCredentialsError("none"), command="verify").exit_code
    3

The CLI's backstop calls this for exceptions that are not chainproof's own: an
unreachable or failing cloud service exits 3 with one line, never
``internal error: DefaultCredentialsError``.
"""

from __future__ import annotations

from chainproof.errors import ServiceError

__all__ = ["classify_service_error"]

_ADC_HINT = (
    "Application Default Credentials: on a workstation `gcloud auth application-default login`; "
    "on Google Cloud the attached service account (workload identity); service-account key files are refused"
)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def classify_service_error(exc: BaseException, *, command: str) -> ServiceError | None:
    """Return the :class:`ServiceError` for a cloud client failure, or ``None`` if it is not one.

    Args:
        exc: the exception a client library raised.
        command: the chainproof subcommand that was running (names the operation).

    Returns:
        The service error (exit code 3), or ``None``.
    """
    # google-auth and google-api-core are core dependencies.
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as gauth

    if isinstance(exc, gauth.DefaultCredentialsError):
        return ServiceError("Google authentication", f"{command}: find credentials",
                            "no Application Default Credentials", _ADC_HINT)
    if isinstance(exc, gauth.RefreshError):
        return ServiceError("Google authentication", f"{command}: refresh the access token",
                            type(exc).__name__, _ADC_HINT + "; and that the token endpoint is reachable")
    if isinstance(exc, gauth.TransportError):
        return ServiceError("Google authentication", f"{command}: reach the token endpoint",
                            type(exc).__name__, "network access to oauth2.googleapis.com or the metadata server")
    if isinstance(exc, gexc.RetryError):
        return ServiceError("Google Cloud API", f"{command}: call the service",
                            "gave up retrying (deadline exceeded)", "that the endpoint is reachable and the region is right")
    if isinstance(exc, gexc.GoogleAPICallError):
        code = getattr(exc, "code", None)
        name = getattr(code, "name", None) or str(code or type(exc).__name__)
        hint = {
            "PERMISSION_DENIED": "the caller's IAM roles on the project/resource",
            "UNAUTHENTICATED": _ADC_HINT,
            "FORBIDDEN": "the caller's IAM roles on the project/resource",
            "UNAUTHORIZED": _ADC_HINT,
            "UNAVAILABLE": "that the endpoint is reachable (network, region, CHAINPROOF_VERTEX_ENDPOINT)",
            "SERVICE_UNAVAILABLE": "that the endpoint is reachable (network, region, CHAINPROOF_VERTEX_ENDPOINT)",
            "DEADLINE_EXCEEDED": "that the endpoint is reachable and responsive",
        }.get(str(name).upper(), "the service status and the request's project, region and resource names")
        return ServiceError("Google Cloud API", f"{command}: {type(exc).__name__}", f"{name}: {_first_line(exc)}", hint)
    try:
        import grpc
    except ImportError:  # pragma: no cover
        grpc = None
    if grpc is not None and isinstance(exc, grpc.RpcError):
        code = exc.code() if hasattr(exc, "code") else None
        return ServiceError("gRPC service", f"{command}: call", str(getattr(code, "name", code)),
                            "that the endpoint is reachable and its TLS certificate is trusted")
    import requests

    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return ServiceError("HTTP service", f"{command}: connect", type(exc).__name__, "network access to the URI's host")
    return None
