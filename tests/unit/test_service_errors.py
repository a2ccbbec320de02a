"""Cloud client failures become one line (service, operation, what to check) and exit 3."""

from __future__ import annotations

import pytest
from google.api_core import exceptions as gexc
from google.auth import exceptions as gauth

from chainproof._service_errors import classify_service_error


@pytest.mark.parametrize("exc, service, hint", [
    (gauth.DefaultCredentialsError("Your default credentials were not found."), "Google authentication",
     "gcloud auth application-default login"),
    (gauth.RefreshError("invalid_grant"), "Google authentication", "token endpoint"),
    (gexc.ServiceUnavailable("connect failed"), "Google Cloud API", "endpoint is reachable"),
    (gexc.PermissionDenied("caller lacks aiplatform.models.get"), "Google Cloud API", "IAM roles"),
    (gexc.RetryError("Deadline of 120.0s exceeded", cause=None), "Google Cloud API", "endpoint is reachable"),
])
def test_service_failures_exit_3_with_one_line(exc, service, hint):
    error = classify_service_error(exc, command="verify")
    assert error is not None and error.exit_code == 3
    line = error.diagnostics()
    assert line.startswith(f"{service}: verify") and hint in line and "\n" not in line
    assert (error.service, error.operation.split(":")[0]) == (service, "verify")


def test_other_exceptions_are_not_service_errors():
    assert classify_service_error(ValueError("x"), command="verify") is None
    assert classify_service_error(KeyError("x"), command="run") is None
