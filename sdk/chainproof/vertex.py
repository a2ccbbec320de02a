"""Vertex AI Pipelines: compile the reference pipeline on a pinned image, submit it safely.

Example:
    >>> from chainproof.vertex import check_service_account
    >>> check_service_account("trainer@my-proj.iam.gserviceaccount.com", project="my-proj")
    'trainer@my-proj.iam.gserviceaccount.com'

Compilation binds every component to one digest-pinned image and writes KFP IR YAML
that installs nothing at run time. Submission happens outside the pipeline, where
the owner key is: the owner signs the run's layout, it is staged in Cloud Storage
and enters the pipeline only as a URI plus its pinned SHA-256. The job runs as a
dedicated service account and carries the compiled template's SHA-256 as labels;
the same digest goes to ``sign_and_attest`` as a runtime parameter (a template
cannot hold its own digest) and so into the model's SLSA provenance.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chainproof._version import __version__
from chainproof.errors import InputError

__all__ = [
    "TEMPLATE_DIGEST_LABELS",
    "SubmittedRun",
    "check_service_account",
    "compile_pipeline",
    "pipeline_parameters",
    "submit_pipeline",
]

#: Job labels carrying the compiled template's SHA-256 (hex characters 0-31 and 32-63:
#: a label value holds at most 63 characters).
TEMPLATE_DIGEST_LABELS = ("chainproof-template-sha256-0", "chainproof-template-sha256-1")

_DEFAULT_COMPUTE = re.compile(r"[0-9]+-compute@developer\.gserviceaccount\.com")
_APPSPOT = re.compile(r"[a-z0-9:.-]+@appspot\.gserviceaccount\.com")
_EMAIL = re.compile(r"[a-z0-9][a-z0-9._-]*@[a-z0-9.-]+\.[a-z]+")


def check_service_account(email: str, *, project: str) -> str:
    """Refuse to run as anything but a dedicated service account.

    The default compute and App Engine service accounts are shared by every workload
    of the project and usually hold Editor: a pipeline run as them can do anything.

    Args:
        email: the service account the job would run as.
        project: the project (for the message only).

    Returns:
        The email.

    Raises:
        InputError: empty, not an email, or a default service account.
    """
    sa = email.strip().lower()
    if not sa:
        raise InputError("--service-account is mandatory: name a dedicated service account for the pipeline")
    if _DEFAULT_COMPUTE.fullmatch(sa):
        raise InputError(f"{email}: the default compute service account is shared and over-privileged; use a dedicated one")
    if _APPSPOT.fullmatch(sa):
        raise InputError(f"{email}: the App Engine default service account is shared and over-privileged; use a dedicated one")
    if not _EMAIL.fullmatch(sa):
        raise InputError(f"{email}: not a service account email (NAME@{project}.iam.gserviceaccount.com)")
    return sa


def compile_pipeline(*, image: str, output: Path, target: str = "vertex") -> str:
    """Compile the reference pipeline with every component on ``image``.

    Args:
        image: ``REGISTRY/PATH@sha256:DIGEST`` (a tag-only image is refused).
        output: the YAML file to write.
        target: ``vertex`` (builder id of Vertex AI Pipelines) or ``local`` (kfp.local).

    Returns:
        The SHA-256 of the written template.

    Raises:
        InputError: an unpinned image or an unknown target.
    """
    from kfp import compiler

    from chainproof.components import components_for_image
    from chainproof.pipelines import LOCAL_BUILDER_ID, VERTEX_BUILDER_ID, build_zero_trust_training

    builders = {"vertex": VERTEX_BUILDER_ID, "local": LOCAL_BUILDER_ID}
    if target not in builders:
        raise InputError(f"--target {target!r}: expected one of {sorted(builders)}")
    pipeline = build_zero_trust_training(components_for_image(image), builder_id=builders[target])
    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(pipeline, str(output))
    return hashlib.sha256(output.read_bytes()).hexdigest()


def pipeline_parameters(template: Path) -> dict[str, tuple[bool, str]]:
    """Return the template's parameters: name to (optional, KFP parameter type).

    Raises:
        InputError: the file is not a compiled KFP pipeline.
    """
    import yaml

    try:
        doc = yaml.safe_load(template.read_text())
        params = doc["root"]["inputDefinitions"]["parameters"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{template}: not a compiled KFP pipeline ({type(exc).__name__})") from exc
    return {str(k): (bool(v.get("isOptional", False)), str(v.get("parameterType", "STRING"))) for k, v in params.items()}


def _typed(name: str, value: Any, kind: str) -> Any:
    if not isinstance(value, str):
        return value
    try:
        if kind == "NUMBER_INTEGER":
            return int(value)
        if kind == "NUMBER_DOUBLE":
            return float(value)
    except ValueError as exc:
        raise InputError(f"--param {name}={value}: expected a {kind.split('_')[-1].lower()}") from exc
    return value


@dataclass(frozen=True)
class SubmittedRun:
    """A pipeline job submitted to Vertex AI.

    Attributes:
        resource_name: ``projects/P/locations/L/pipelineJobs/ID``.
        template_sha256: SHA-256 of the compiled template.
        layout_uri: where the owner-signed layout was staged (with its generation).
        layout_sha256: the layout's pinned SHA-256.
        parameters: the parameter values sent.
        service_account: the service account the job runs as.
    """

    resource_name: str
    template_sha256: str
    layout_uri: str
    layout_sha256: str
    parameters: dict[str, Any]
    service_account: str

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form ``chainproof submit --format json`` prints."""
        return {
            "job": self.resource_name,
            "template_sha256": self.template_sha256,
            "layout_uri": self.layout_uri,
            "layout_sha256": self.layout_sha256,
            "service_account": self.service_account,
            "parameters": self.parameters,
        }


def _stage(data: bytes, uri: str, gcs: Any) -> str:
    bucket_name, _, name = uri[len("gs://") :].partition("/")
    blob = gcs.bucket(bucket_name).blob(name)
    blob.upload_from_string(data, content_type="application/json", checksum="crc32c")
    return f"gs://{bucket_name}/{name}#{blob.generation}" if blob.generation else f"gs://{bucket_name}/{name}"


def submit_pipeline(
    *,
    template: Path,
    project: str,
    region: str,
    pipeline_root: str,
    service_account: str,
    owner_signer: str,
    step_keys: Mapping[str, Any],
    parameters: Mapping[str, Any],
    display_name: str | None = None,
    credentials: Any = None,
    api_endpoint: str | None = None,
    gcs_client_factory: Any = None,
    steps: Any = None,
    expected_principals: Mapping[str, str] | None = None,
) -> SubmittedRun:
    """Sign the run's layout as the owner, stage it, and submit the compiled pipeline.

    Args:
        template: the compiled pipeline YAML (``chainproof compile``).
        project: the Google Cloud project.
        region: the Vertex AI region.
        pipeline_root: ``gs://BUCKET/PREFIX`` for pipeline outputs; the layout goes
            under ``PIPELINE_ROOT/chainproof/layouts/``.
        service_account: the dedicated service account the job runs as.
        owner_signer: the owner's signer reference (``file:PATH`` now; any reference
            :func:`chainproof.signing.load_signer` accepts).
        step_keys: each step's functionary public key (securesystemslib keys), by step name.
        parameters: pipeline parameter values (signer references, data, model name, ...).
        display_name: the job display name.
        credentials: google-auth credentials (default: Application Default Credentials).
        api_endpoint: a non-default Vertex AI endpoint.
        gcs_client_factory: builds the ``storage.Client``.
        steps: the pipeline's steps for the layout (default: the reference pipeline's;
            pass ``policy.insert_transform(...)``'s result for a pipeline with your own step).
        expected_principals: step name to the service account it must run as, pinned in
            the owner-signed layout: a step that runs as anyone else refuses to run, and
            verification fails.

    Returns:
        The submitted run.

    Raises:
        InputError: a default or missing service account, an unknown or missing
            parameter, a parameter that submission sets itself, or a bad pipeline root.

    Side effects:
        Uploads the signed layout to Cloud Storage; calls ``PipelineService/CreatePipelineJob``.
    """
    from google.cloud import aiplatform

    from chainproof.policy import EXT_EXPECTED_PRINCIPALS, REFERENCE_STEPS, generate_layout, sign_layout
    from chainproof.registry import digest_labels
    from chainproof.signing import load_signer, public_key_pem

    sa = check_service_account(service_account, project=project)
    if not pipeline_root.startswith("gs://"):
        raise InputError(f"--pipeline-root {pipeline_root!r}: expected gs://BUCKET/PREFIX")
    data = template.read_bytes()
    template_sha256 = hashlib.sha256(data).hexdigest()
    declared = pipeline_parameters(template)
    owned = {"layout_uri", "layout_sha256", "owner_public_key", "pipeline_template_sha256"}
    for name in parameters:
        if name in owned:
            raise InputError(f"--param {name}: set by submit itself (the owner signs the layout outside the pipeline)")
        if name not in declared:
            raise InputError(f"--param {name}: the pipeline has no such parameter (it has: {', '.join(sorted(declared))})")
    missing = sorted(k for k, (optional, _) in declared.items() if not optional and k not in parameters and k not in owned)
    if missing:
        raise InputError(f"missing --param {', '.join(missing)}")
    layout_steps = list(steps) if steps is not None else list(REFERENCE_STEPS)
    absent = sorted({s.name for s in layout_steps} - set(step_keys))
    if absent:
        raise InputError(f"no functionary public key for step {', '.join(absent)}")

    # The owner signs here, outside the pipeline: the job only ever sees the digest.
    owner = load_signer(owner_signer)
    unknown = sorted(set(expected_principals or {}) - {s.name for s in layout_steps})
    if unknown:
        raise InputError(f"--expect-principal: the pipeline has no step {', '.join(unknown)}")
    extensions = {EXT_EXPECTED_PRINCIPALS: dict(expected_principals)} if expected_principals else None
    layout = sign_layout(generate_layout(layout_steps, dict(step_keys), extensions=extensions), owner)
    layout_sha256 = hashlib.sha256(layout).hexdigest()
    if gcs_client_factory is not None:
        gcs = gcs_client_factory()
    else:
        from google.cloud import storage

        gcs = storage.Client(project=project, credentials=credentials)
    layout_uri = _stage(layout, f"{pipeline_root.rstrip('/')}/chainproof/layouts/{layout_sha256}/root.layout", gcs)

    values: dict[str, Any] = {
        **{k: _typed(k, v, declared[k][1]) for k, v in parameters.items()},
        "layout_uri": layout_uri,
        "layout_sha256": layout_sha256,
    }
    # Your own pipeline may not declare these two; the reference pipeline does.
    if "owner_public_key" in declared:
        values["owner_public_key"] = public_key_pem(owner.public_key)
    if "pipeline_template_sha256" in declared:
        values["pipeline_template_sha256"] = template_sha256
    labels = {
        **digest_labels(template_sha256, TEMPLATE_DIGEST_LABELS),
        "chainproof-version": re.sub(r"[^a-z0-9_-]", "-", __version__.lower()),
    }
    aiplatform.init(project=project, location=region, credentials=credentials, api_endpoint=api_endpoint)
    job = aiplatform.PipelineJob(
        display_name=display_name or f"chainproof-{uuid.uuid4().hex[:8]}",
        template_path=str(template),
        pipeline_root=pipeline_root,
        parameter_values=values,
        labels=labels,
        enable_caching=False,  # a cached step would skip its verification and its link
        project=project,
        location=region,
        credentials=credentials,
    )
    job.submit(service_account=sa)
    return SubmittedRun(
        resource_name=job.resource_name,
        template_sha256=template_sha256,
        layout_uri=layout_uri,
        layout_sha256=layout_sha256,
        parameters=values,
        service_account=sa,
    )
