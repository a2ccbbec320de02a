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


def compile_pipeline(*, image: str, output: Path, target: str = "vertex", pipeline_func: Any = None) -> str:
    """Compile a chainproof pipeline with every component on ``image``.

    The pipeline is checked first: one that cannot be made into a sound layout is
    refused here, at compile time (see :func:`chainproof.dsl.derive_graph`). Every
    component that runs chainproof's placeholder image runs ``image``; any other
    image in the template must be pinned by digest too.

    Args:
        image: ``REGISTRY/PATH@sha256:DIGEST`` (a tag-only image is refused).
        output: the YAML file to write.
        target: ``vertex`` or ``local`` (kept for the command line; the builder id is a
            run setting now, chosen by ``submit`` or ``run``).
        pipeline_func: your own pipeline (``@chainproof.dsl.pipeline``); default: the reference pipeline.

    Returns:
        The SHA-256 of the written template.

    Raises:
        InputError: an unpinned image, an unknown target, or an unsound pipeline.
    """
    import yaml
    from kfp import compiler

    from chainproof.components import COMPONENT_IMAGE, components_for_image
    from chainproof.dsl import derive_graph
    from chainproof.images import check_image_reference
    from chainproof.pipelines import build_zero_trust_training

    if target not in ("vertex", "local"):
        raise InputError(f"--target {target!r}: expected one of ['local', 'vertex']")
    pinned = check_image_reference(image).reference
    pipeline = pipeline_func if pipeline_func is not None else build_zero_trust_training(components_for_image(pinned))
    derive_graph(pipeline)
    output.parent.mkdir(parents=True, exist_ok=True)
    # Compiled beside the output and renamed into place only once every image is pinned.
    staging = output.with_name(f".{output.stem}.{uuid.uuid4().hex[:8]}.part.yaml")
    try:
        compiler.Compiler().compile(pipeline, str(staging))
        doc = yaml.safe_load(staging.read_text())
        _pin_images(doc, pinned, placeholder=COMPONENT_IMAGE)
        staging.write_text(yaml.safe_dump(doc, sort_keys=True))
        from chainproof.secrets import refuse_credential_defaults_in_template

        # A credential as a parameter default would sit in the template, the job and its logs.
        refuse_credential_defaults_in_template(staging)
        staging.replace(output)
    finally:
        staging.unlink(missing_ok=True)
    return hashlib.sha256(output.read_bytes()).hexdigest()


def _pin_images(doc: dict[str, Any], image: str, *, placeholder: str) -> None:
    from chainproof.images import check_image_reference


    for name, executor in doc.get("deploymentSpec", {}).get("executors", {}).items():
        container = executor.get("container")
        if not container:
            continue
        if container.get("image") == placeholder:
            container["image"] = image
        try:
            check_image_reference(str(container.get("image", "")))
        except InputError as exc:
            raise InputError(f"executor {name}: {exc}") from None


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


def _template_image(ir: Mapping[str, Any]) -> str:
    """The one image every executor of a compiled template runs (empty when they differ)."""
    images = {
        str(e.get("container", {}).get("image", ""))
        for e in ir.get("deploymentSpec", {}).get("executors", {}).values()
    }
    return images.pop() if len(images) == 1 else ""


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
    signers: Mapping[str, str],
    expected_principals: Mapping[str, str] | None = None,
    registry_uri: str = "",
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
        parameters: the pipeline's own parameter values (data, model name, ...).
        display_name: the job display name.
        credentials: google-auth credentials (default: Application Default Credentials).
        api_endpoint: a non-default Vertex AI endpoint.
        gcs_client_factory: builds the ``storage.Client``.
        signers: step name to signer reference (``gcpkms://...``, ``sigstore:...``), one per task.
        expected_principals: step name to the service account it must run as, pinned in
            the owner-signed layout: a step that runs as anyone else refuses to run, and
            verification fails.
        registry_uri: where ``register_model`` registers (default: the Vertex AI Model
            Registry of ``project``/``region``, artifacts under the pipeline root).

    Returns:
        The submitted run.

    Raises:
        InputError: a default or missing service account, an unknown or missing
            parameter, a parameter that submission sets itself, or a bad pipeline root.

    Side effects:
        Uploads the signed layout to Cloud Storage; calls ``PipelineService/CreatePipelineJob``.
    """
    import yaml
    import google.cloud.aiplatform as aiplatform

    from chainproof._exec import CONFIG_INPUT
    from chainproof.dsl import derive_graph
    from chainproof.pipelines import VERTEX_BUILDER_ID
    from chainproof.policy import EXT_EXPECTED_PRINCIPALS, generate_layout, sign_layout
    from chainproof.registry import digest_labels
    from chainproof.signing import load_signer, public_key_pem
    from chainproof.step import IdentityPolicy, RunConfig

    sa = check_service_account(service_account, project=project)
    if not pipeline_root.startswith("gs://"):
        raise InputError(f"--pipeline-root {pipeline_root!r}: expected gs://BUCKET/PREFIX")
    data = template.read_bytes()
    template_sha256 = hashlib.sha256(data).hexdigest()
    declared = pipeline_parameters(template)
    if CONFIG_INPUT not in declared:
        raise InputError(f"{template}: not a pipeline built with chainproof.dsl (no {CONFIG_INPUT} parameter)")
    for name in parameters:
        if name == CONFIG_INPUT:
            raise InputError(f"--param {name}: set by submit itself (the owner signs the layout outside the pipeline)")
        if name not in declared:
            raise InputError(f"--param {name}: the pipeline has no such parameter (it has: {', '.join(sorted(k for k in declared if k != CONFIG_INPUT))})")
    missing = sorted(k for k, (optional, _) in declared.items() if not optional and k not in parameters and k != CONFIG_INPUT)
    if missing:
        raise InputError(f"missing --param {', '.join(missing)}")
    # The layout is derived from the very template that is submitted.
    graph = derive_graph(yaml.safe_load(data))
    names = graph.step_names
    absent = sorted(set(names) - set(step_keys))
    if absent:
        raise InputError(f"no functionary public key for step {', '.join(absent)}")
    unsigned = sorted(set(names) - set(signers))
    if unsigned:
        raise InputError(f"no --signer for step {', '.join(unsigned)} (steps: {', '.join(names)})")
    unknown = sorted((set(expected_principals or {}) | set(signers)) - set(names))
    if unknown:
        raise InputError(f"the pipeline has no step {', '.join(unknown)} (steps: {', '.join(names)})")

    # The owner signs here, outside the pipeline: the job only ever sees the digest.
    owner = load_signer(owner_signer)
    extensions: dict[str, Any] = graph.extensions()
    if expected_principals:
        extensions[EXT_EXPECTED_PRINCIPALS] = dict(expected_principals)
    layout = sign_layout(generate_layout(graph.steps, dict(step_keys), extensions=extensions), owner)
    layout_sha256 = hashlib.sha256(layout).hexdigest()
    if gcs_client_factory is not None:
        gcs = gcs_client_factory()
    else:
        import google.cloud.storage as storage

        gcs = storage.Client(project=project, credentials=credentials)
    layout_uri = _stage(layout, f"{pipeline_root.rstrip('/')}/chainproof/layouts/{layout_sha256}/root.layout", gcs)
    config = RunConfig(
        layout_uri=layout_uri,
        layout_sha256=layout_sha256,
        signers=dict(signers),
        run=uuid.uuid4().hex,
        # On Vertex AI every step resolves its workload identity (a local user means nothing there).
        identity=IdentityPolicy(mode="gcp"),
        owner_public_key=public_key_pem(owner.public_key),
        registry_uri=registry_uri or f"vertex://projects/{project}/locations/{region}?artifacts={pipeline_root.rstrip('/')}/registry",
        builder_id=VERTEX_BUILDER_ID,
        component_image=_template_image(yaml.safe_load(data)),
        pipeline_template_sha256=template_sha256,
    )
    values: dict[str, Any] = {
        **{k: _typed(k, v, declared[k][1]) for k, v in parameters.items()},
        CONFIG_INPUT: config.to_json(),
    }
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
