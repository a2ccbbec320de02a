"""Kubeflow Pipelines backends: submit a chainproof pipeline with ``kfp.Client``, follow it, verify its model.

Example:
    >>> from chainproof.kfp_backend import KFP_BUILDER_ID
    >>> KFP_BUILDER_ID
    'https://chainproof.dev/builders/kubeflow-pipelines'

The same compiled template as for Vertex AI, the same owner-signed layout staged in the
pipeline root and pinned by digest, the same run configuration: what differs is the API
(KFP's v2beta1 REST API through ``kfp.Client``), who the steps run as (the run's Kubernetes
service account, on GKE mapped to a Google service account by Workload Identity; there is no
per-step account unless each step's pod gets its own), and where the registration step says
what it registered: a small JSON pointer under the pipeline root
(``PIPELINE_ROOT/chainproof/runs/RUN/registered.json``), because KFP's run API returns
artifact IDs, not their metadata. The pointer is not trusted: the registered version is
verified against the owner key, and its signed ``registry/entry.json`` must name this run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chainproof.errors import ChainproofError, InputError, ServiceError

__all__ = ["KFP_BUILDER_ID", "KfpRun", "KfpRunFailed", "read_outcome", "submit_kfp_pipeline", "wait_for_kfp_run"]

#: The SLSA builder id of runs on a Kubeflow Pipelines backend.
KFP_BUILDER_ID = "https://chainproof.dev/builders/kubeflow-pipelines"

_DONE = {"SUCCEEDED"}
_ENDED = {"FAILED", "CANCELED", "SKIPPED"}


class KfpRunFailed(ChainproofError):
    """The run ended without success."""

    exit_code = 1


@dataclass(frozen=True)
class KfpRun:
    """A run created on a Kubeflow Pipelines backend.

    Attributes:
        host: the KFP API URL.
        run_id: the run's id.
        experiment_id: its experiment.
        prepared: what was signed, staged and submitted (:class:`chainproof.vertex.PreparedRun`).
    """

    host: str
    run_id: str
    experiment_id: str
    prepared: Any

    def console_url(self) -> str:
        """The run's page in the KFP UI (served by the same host on most installations)."""
        return f"{self.host.rstrip('/')}/#/runs/details/{self.run_id}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form ``chainproof submit --kfp-host`` prints."""
        return {"host": self.host, "run_id": self.run_id, "experiment_id": self.experiment_id,
                "template_sha256": self.prepared.template_sha256, "layout_uri": self.prepared.layout_uri,
                "layout_sha256": self.prepared.layout_sha256, "run": self.prepared.run,
                "outcome_uri": self.prepared.outcome_uri, "console": self.console_url()}


def _service_error(exc: BaseException, host: str, operation: str) -> ServiceError | None:
    import kfp_server_api
    import urllib3

    if isinstance(exc, kfp_server_api.ApiException):
        status = int(getattr(exc, "status", 0) or 0)
        hint = ("the credentials kfp.Client sends (KF_PIPELINES_* variables, a token, or the cluster's auth proxy)"
                if status in (401, 403) else f"that {host} serves the Kubeflow Pipelines v2beta1 API")
        return ServiceError("Kubeflow Pipelines API", operation, f"HTTP {status} {getattr(exc, 'reason', '')}".strip(), hint)
    if isinstance(exc, (urllib3.exceptions.HTTPError, OSError, TimeoutError)):
        return ServiceError("Kubeflow Pipelines API", operation, type(exc).__name__, f"that {host} is reachable")
    return None


def _client(host: str) -> Any:
    import kfp

    try:
        return kfp.Client(host=host)
    except Exception as exc:  # classified below, re-raised otherwise
        error = _service_error(exc, host, "connect (healthz)")
        if error is None:
            raise
        raise error from None


def submit_kfp_pipeline(
    *,
    host: str,
    template: Path,
    pipeline_root: str,
    owner_signer: str,
    signers: Mapping[str, str],
    parameters: Mapping[str, Any],
    registry_uri: str,
    step_keys: Mapping[str, Any] | None = None,
    expected_principals: Mapping[str, str] | None = None,
    kms_client_factory: Any = None,
    gcs_client_factory: Any = None,
    experiment: str = "chainproof",
    run_name: str | None = None,
    namespace: str | None = None,
    service_account: str = "",
    client: Any = None,
) -> KfpRun:
    """Sign and stage the layout as the owner, then create the run with ``kfp.Client``.

    Args:
        host: the KFP API URL (``https://HOST`` or ``http://127.0.0.1:PORT``).
        template: the compiled pipeline.
        pipeline_root: ``gs://BUCKET/PREFIX`` (the layout and the outcome pointer go under it).
        owner_signer: the owner's signer reference.
        signers: step name to signer reference.
        parameters: the pipeline's own parameter values.
        registry_uri: where the registration step registers (``vertex://...?artifacts=gs://...``).
        step_keys: public keys for signers that are not Cloud KMS keys.
        expected_principals: step name to the principal it must run as.
        kms_client_factory: builds the KMS client for an endpoint.
        gcs_client_factory: builds the ``storage.Client`` (default: ADC).
        experiment: the KFP experiment (created when missing).
        run_name: the run's display name.
        namespace: the Kubernetes namespace (multi-user installations).
        service_account: the Kubernetes service account the run's pods use.
        client: a ``kfp.Client`` (default: one for ``host``).

    Returns:
        The created run.

    Raises:
        InputError: bad parameters, signers or pipeline root; no registry.
        SignatureError: a given key is not its KMS signer's key (nothing submitted).
        ServiceError: KMS, Cloud Storage or the KFP API refused or is unreachable.

    Side effects:
        ``GetPublicKey`` per KMS signer; uploads the layout; ``POST /apis/v2beta1/experiments``
        (when missing) and ``/apis/v2beta1/runs``.
    """
    from chainproof.vertex import _registry_uri, prepare_run

    if not registry_uri:
        raise InputError("--kfp-host needs --registry-uri (e.g. vertex://projects/P/locations/L?artifacts=gs://...)")
    registry = _registry_uri(registry_uri, project="", region="", pipeline_root=pipeline_root, serving_image="",
                             chainproof_serving_image="")
    if gcs_client_factory is not None:
        gcs = gcs_client_factory()
    else:
        from google.cloud import storage

        gcs = storage.Client()
    prepared = prepare_run(template=template, pipeline_root=pipeline_root, owner_signer=owner_signer, signers=signers,
                           step_keys=step_keys, parameters=parameters, expected_principals=expected_principals,
                           registry_uri=registry, kms_client_factory=kms_client_factory, gcs=gcs,
                           builder_id=KFP_BUILDER_ID)
    kfp_client = client or _client(host)
    try:
        result = kfp_client.create_run_from_pipeline_package(
            str(template), arguments=prepared.values, run_name=run_name, experiment_name=experiment,
            namespace=namespace, pipeline_root=pipeline_root,
            enable_caching=False,  # a cached step would skip its verification and its link
            service_account=service_account or None,
        )
    except Exception as exc:  # classified below, re-raised otherwise
        error = _service_error(exc, host, "create the run")
        if error is None:
            raise
        raise error from None
    return KfpRun(host=host, run_id=str(result.run_id), experiment_id=str(result.run_info.experiment_id),
                  prepared=prepared)


def wait_for_kfp_run(
    run: KfpRun,
    *,
    client: Any = None,
    poll_seconds: float = 20.0,
    timeout_seconds: float = 24 * 3600.0,
    on_state: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """Follow a KFP run (``GET /apis/v2beta1/runs/ID``) until it ends; report each state change.

    Returns:
        The succeeded run (``kfp_server_api.V2beta1Run``).

    Raises:
        KfpRunFailed: the run failed, was canceled or skipped.
        ServiceError: the API is unreachable, or the run did not end within ``timeout_seconds``.
    """
    kfp_client = client or _client(run.host)
    waited, last = 0.0, ""
    while True:
        try:
            current = kfp_client.get_run(run.run_id)
        except Exception as exc:
            error = _service_error(exc, run.host, f"get run {run.run_id}")
            if error is None:
                raise
            raise error from None
        state = str(current.state or "RUNTIME_STATE_UNSPECIFIED")
        if state != last and on_state is not None:
            on_state(state)
        last = state
        if state in _DONE:
            return current
        if state in _ENDED:
            message = getattr(current.error, "message", "") if current.error else ""
            raise KfpRunFailed(f"run {run.run_id}: {state}: {(message or 'no error message')[:300]} "
                               f"(see {run.console_url()})")
        if waited >= timeout_seconds:
            raise ServiceError("Kubeflow Pipelines API", f"wait for run {run.run_id}", f"still {state} after {waited:.0f} s",
                               f"the run in the UI, {run.console_url()}")
        sleep(poll_seconds)
        waited += poll_seconds


def read_outcome(uri: str, *, gcs: Any, run: str) -> dict[str, Any]:
    """Read the registration step's pointer from the pipeline root.

    Args:
        uri: ``gs://BUCKET/.../registered.json``.
        gcs: a ``storage.Client``.
        run: the run nonce it must name.

    Returns:
        The pointer (``reference``, ``model_sha256``, ``created``, ``bundle``).

    Raises:
        KfpRunFailed: no pointer (no registration step ran), or one for another run.
    """
    from google.api_core import exceptions as gexc

    bucket, _, name = uri[len("gs://"):].partition("/")
    try:
        doc = json.loads(gcs.bucket(bucket).blob(name).download_as_bytes())
    except gexc.NotFound:
        raise KfpRunFailed(f"{uri}: no registration outcome; did the pipeline register a model?") from None
    except ValueError as exc:
        raise KfpRunFailed(f"{uri}: not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("run") != run or not doc.get("reference"):
        raise KfpRunFailed(f"{uri}: names run {doc.get('run') if isinstance(doc, dict) else None!r}, not this run {run}")
    return doc
