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
from chainproof.errors import ChainproofError, InputError

__all__ = [
    "TEMPLATE_DIGEST_LABELS",
    "PipelineJobFailed",
    "PreparedRun",
    "SubmittedRun",
    "check_service_account",
    "compile_pipeline",
    "console_url",
    "functionary_keys",
    "pipeline_parameters",
    "prepare_run",
    "registered_references",
    "submit_pipeline",
    "wait_for_pipeline_job",
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


def compile_pipeline(
    *,
    image: str,
    output: Path,
    target: str = "vertex",
    pipeline_func: Any = None,
    step_service_accounts: Mapping[str, str] | None = None,
    machine_type: str = "n1-standard-4",
) -> str:
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
        step_service_accounts: step name to the service account it runs as: each named step
            becomes a Vertex AI custom job under that account (see :mod:`chainproof.custom_job`),
            launched from ``image`` itself; ``submit`` pins these principals in the layout.
        machine_type: the machine type of those custom jobs.

    Returns:
        The SHA-256 of the written template.

    Raises:
        InputError: an unpinned image, an unknown target, an unsound pipeline, an unknown
            step or a non-email in ``step_service_accounts``.
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
        if step_service_accounts:
            from chainproof.custom_job import run_steps_as_custom_jobs

            run_steps_as_custom_jobs(doc, step_service_accounts, image=pinned, machine_type=machine_type)
        _check_images(doc)
        staging.write_text(yaml.safe_dump(doc, sort_keys=True))
        from chainproof.secrets import refuse_credential_defaults_in_template

        # A credential as a parameter default would sit in the template, the job and its logs.
        refuse_credential_defaults_in_template(staging)
        staging.replace(output)
    finally:
        staging.unlink(missing_ok=True)
    return hashlib.sha256(output.read_bytes()).hexdigest()


def _pin_images(doc: dict[str, Any], image: str, *, placeholder: str) -> None:
    for executor in doc.get("deploymentSpec", {}).get("executors", {}).values():
        container = executor.get("container")
        if container and container.get("image") == placeholder:
            container["image"] = image


def _check_images(doc: dict[str, Any]) -> None:
    """Every image of the template, custom jobs' and launchers' included, is pinned by digest."""
    from chainproof.custom_job import template_images
    from chainproof.images import check_image_reference

    for where, reference in template_images(doc).items():
        try:
            check_image_reference(reference)
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None


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
        owner_public_key: the PEM of the owner key that signed the layout.
        register_tasks: the KFP task names of the pipeline's registration steps.
        run: the run nonce.
        outcome_uri: where the registration step writes what it registered.
    """

    resource_name: str
    template_sha256: str
    layout_uri: str
    layout_sha256: str
    parameters: dict[str, Any]
    service_account: str
    owner_public_key: str = ""
    register_tasks: tuple[str, ...] = ()
    run: str = ""
    outcome_uri: str = ""

    def console_url(self) -> str:
        """Return the job's page in the Google Cloud console."""
        return console_url(self.resource_name)

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


class _ClassifiedKms:
    """A KMS client whose refused credentials surface as a :class:`ServiceError` (exit 3)."""

    def __init__(self, client: Any, reference: str) -> None:
        self._client, self._reference = client, reference

    def get_public_key(self, **kwargs: Any) -> Any:
        from google.api_core import exceptions as gexc

        from chainproof.errors import ServiceError

        try:
            return self._client.get_public_key(**kwargs)
        except (gexc.Unauthenticated, gexc.PermissionDenied, gexc.ServiceUnavailable, gexc.DeadlineExceeded) as exc:
            raise ServiceError("Cloud KMS", f"GetPublicKey {self._reference.split('?', 1)[0]}",
                               f"{getattr(exc.grpc_status_code, 'name', None) or getattr(exc.code, 'name', exc.code)}: "
                               f"{str(exc.message).rstrip('.')}",
                               "the submitter's Application Default Credentials and its "
                               "roles/cloudkms.publicKeyViewer on the key") from None


def functionary_keys(
    steps: list[str],
    signers: Mapping[str, str],
    given: Mapping[str, Any] | None = None,
    *,
    kms_client_factory: Any = None,
) -> dict[str, Any]:
    """Each step's functionary public key for the layout, checked against its signer.

    A ``gcpkms://`` signer's key is fetched from Cloud KMS (``GetPublicKey``), so the
    layout names exactly the key the step will sign with; a key given as well (a
    ``.pub`` file) must be that key. Other signers need a given key.

    Args:
        steps: the pipeline's step names.
        signers: step name to signer reference.
        given: step name to a public key the caller supplies.
        kms_client_factory: builds a ``KeyManagementServiceClient`` for an endpoint (or ``None``).

    Returns:
        Step name to public key.

    Raises:
        InputError: a malformed reference, or no key for a step whose signer is not KMS.
        SignatureError: a given key that is not the key the signer holds.
        ServiceError: KMS refused the credentials.

    Side effects:
        One ``GetPublicKey`` call per KMS signer.
    """
    from urllib.parse import parse_qs

    from chainproof.errors import SignatureError
    from chainproof.signing import KMS_SCHEME, kms_client, kms_public_key

    given = dict(given or {})
    keys: dict[str, Any] = {}
    clients: dict[str | None, Any] = {}
    for step in steps:
        ref = signers[step]
        if not ref.startswith(f"{KMS_SCHEME}://"):
            if step not in given:
                raise InputError(f"step {step}: signer {ref} is not a Cloud KMS key; give its public key "
                                 f"(--keys DIR with {step}.pub)")
            keys[step] = given[step]
            continue
        from chainproof.signing import _KMS_NAME

        path, _, query = ref[len(KMS_SCHEME) + 3:].partition("?")
        params = parse_qs(query) if query else {}
        if not _KMS_NAME.fullmatch(path) or set(params) - {"endpoint"}:
            raise InputError(f"--signer {step}={ref}: expected gcpkms://projects/P/locations/L/keyRings/R/"
                             "cryptoKeys/K/cryptoKeyVersions/N[?endpoint=HOST:PORT]")
        endpoint = params.get("endpoint", [""])[-1] or None
        if endpoint not in clients:
            clients[endpoint] = (kms_client_factory or kms_client)(endpoint)
        fetched = kms_public_key(_ClassifiedKms(clients[endpoint], ref), path)
        if step in given and given[step].keyid != fetched.keyid:
            raise SignatureError(f"step {step}: signer {ref.split('?', 1)[0]} holds key {fetched.keyid[:16]}, "
                                 f"but the public key given for it is {given[step].keyid[:16]}; nothing was submitted")
        keys[step] = fetched
    return keys


def _registry_uri(registry_uri: str, *, project: str, region: str, pipeline_root: str, serving_image: str,
                  chainproof_serving_image: str) -> str:
    """The registry ``register_model`` uses; a Vertex AI one is checked here, before submission."""
    from urllib.parse import quote

    from chainproof.registry import VertexModelRegistry

    uri = registry_uri
    if not uri:
        uri = f"vertex://projects/{project}/locations/{region}?artifacts={pipeline_root.rstrip('/')}/registry"
        for key, value in (("serving_image", serving_image), ("chainproof_serving_image", chainproof_serving_image)):
            if value:
                uri += f"&{key}={quote(value, safe='/:@')}"
    elif serving_image or chainproof_serving_image:
        raise InputError("--registry-uri is given: put the serving image in it (&serving_image=REF or "
                         "&chainproof_serving_image=REF)")
    if uri.startswith("vertex://"):
        # The same checks registration makes, minutes later in the job: pinned by digest, of a known kind.
        if not VertexModelRegistry.from_uri(uri).serving_image:
            raise InputError(
                "the Vertex AI model needs a serving image pinned by digest: --serving-image "
                "REGION-docker.pkg.dev/vertex-ai/prediction/sklearn-cpu.X-Y@sha256:... (X.Y: the scikit-learn "
                "version of the component image) or --chainproof-serving-image REGISTRY/PATH@sha256:... "
                "(image/Dockerfile target serving)"
            )
    return uri


def _principals(ir: Mapping[str, Any], expected: Mapping[str, str]) -> dict[str, str]:
    """The principals the layout pins: each custom-job step's account, and those given explicitly."""
    from chainproof.custom_job import step_service_accounts

    accounts = step_service_accounts(ir)
    for step, principal in expected.items():
        if step in accounts and accounts[step] != principal.strip().lower():
            raise InputError(f"--expect-principal {step}={principal}: the template runs {step} as {accounts[step]}")
    return {**accounts, **{k: v for k, v in expected.items() if k not in accounts}}


@dataclass(frozen=True)
class PreparedRun:
    """A run ready to be submitted to any backend: its layout signed and staged, its values set.

    Attributes:
        template_sha256: SHA-256 of the compiled template.
        layout_uri: where the owner-signed layout was staged (with its generation).
        layout_sha256: the layout's pinned SHA-256.
        values: every parameter value, the run configuration included.
        owner_public_key: the PEM of the owner key that signed the layout.
        register_tasks: the KFP task names of the registration steps.
        run: the run nonce (every link of the run carries it in ``run/id``).
        outcome_uri: where the registration step writes what it registered.
    """

    template_sha256: str
    layout_uri: str
    layout_sha256: str
    values: dict[str, Any]
    owner_public_key: str
    register_tasks: tuple[str, ...]
    run: str
    outcome_uri: str


def prepare_run(
    *,
    template: Path,
    pipeline_root: str,
    owner_signer: str,
    signers: Mapping[str, str],
    step_keys: Mapping[str, Any] | None,
    parameters: Mapping[str, Any],
    expected_principals: Mapping[str, str] | None,
    registry_uri: str,
    kms_client_factory: Any,
    gcs: Any,
    builder_id: str,
) -> PreparedRun:
    """Check the template, parameters and signers; sign the layout as the owner and stage it.

    Everything a backend (Vertex AI, Kubeflow Pipelines) submits is decided here, and
    nothing is submitted when any check fails.

    Raises:
        InputError: unknown, missing or reserved parameters; missing signers; unknown steps.
        SignatureError: a given public key that is not its KMS signer's key.
        ServiceError: KMS refused the credentials.

    Side effects:
        ``GetPublicKey`` per KMS signer; uploads the signed layout under ``pipeline_root``.
    """
    import yaml

    from chainproof._exec import CONFIG_INPUT
    from chainproof.dsl import derive_graph
    from chainproof.policy import EXT_EXPECTED_PRINCIPALS, generate_layout, sign_layout
    from chainproof.signing import load_signer, public_key_pem
    from chainproof.step import IdentityPolicy, RunConfig

    if not pipeline_root.startswith("gs://"):
        raise InputError(f"--pipeline-root {pipeline_root!r}: expected gs://BUCKET/PREFIX")
    run = uuid.uuid4().hex
    outcome_uri = f"{pipeline_root.rstrip('/')}/chainproof/runs/{run}/registered.json"
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
    unsigned = sorted(set(names) - set(signers))
    if unsigned:
        raise InputError(f"no --signer for step {', '.join(unsigned)} (steps: {', '.join(names)})")
    unknown = sorted((set(expected_principals or {}) | set(signers)) - set(names))
    if unknown:
        raise InputError(f"the pipeline has no step {', '.join(unknown)} (steps: {', '.join(names)})")
    # Before anything is staged or submitted: every step's key, as its signer holds it.
    functionaries = functionary_keys(names, signers, step_keys, kms_client_factory=kms_client_factory)

    principals = _principals(yaml.safe_load(data), expected_principals or {})

    # The owner signs here, outside the pipeline: the job only ever sees the digest.
    owner = load_signer(owner_signer)
    extensions: dict[str, Any] = graph.extensions()
    if principals:
        extensions[EXT_EXPECTED_PRINCIPALS] = principals
    layout = sign_layout(generate_layout(graph.steps, functionaries, extensions=extensions), owner)
    layout_sha256 = hashlib.sha256(layout).hexdigest()
    layout_uri = _stage(layout, f"{pipeline_root.rstrip('/')}/chainproof/layouts/{layout_sha256}/root.layout", gcs)
    config = RunConfig(
        layout_uri=layout_uri,
        layout_sha256=layout_sha256,
        signers=dict(signers),
        run=run,
        # On Vertex AI (and KFP on GKE) every step resolves its workload identity (a local user means nothing there).
        identity=IdentityPolicy(mode="gcp"),
        owner_public_key=public_key_pem(owner.public_key),
        registry_uri=registry_uri,
        builder_id=builder_id,
        outcome_uri=outcome_uri,
        component_image=_template_image(yaml.safe_load(data)),
        pipeline_template_sha256=template_sha256,
    )
    values: dict[str, Any] = {
        **{k: _typed(k, v, declared[k][1]) for k, v in parameters.items()},
        CONFIG_INPUT: config.to_json(),
    }
    roles = graph.graph["roles"]
    return PreparedRun(
        template_sha256=template_sha256, layout_uri=layout_uri, layout_sha256=layout_sha256, values=values,
        owner_public_key=public_key_pem(owner.public_key),
        register_tasks=tuple(step.replace("_", "-") for step in names if roles.get(step) == "register"),
        run=run, outcome_uri=outcome_uri,
    )


def submit_pipeline(
    *,
    template: Path,
    project: str,
    region: str,
    pipeline_root: str,
    service_account: str,
    owner_signer: str,
    step_keys: Mapping[str, Any] | None = None,
    parameters: Mapping[str, Any],
    display_name: str | None = None,
    credentials: Any = None,
    api_endpoint: str | None = None,
    gcs_client_factory: Any = None,
    signers: Mapping[str, str],
    expected_principals: Mapping[str, str] | None = None,
    registry_uri: str = "",
    kms_client_factory: Any = None,
    serving_image: str = "",
    chainproof_serving_image: str = "",
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
        step_keys: functionary public keys (securesystemslib keys) by step name: needed for
            steps whose signer is not ``gcpkms://``; for a KMS signer the key is fetched from
            Cloud KMS, and a key given here as well must be the same key.
        parameters: the pipeline's own parameter values (data, model name, ...).
        display_name: the job display name.
        credentials: google-auth credentials (default: Application Default Credentials).
        api_endpoint: a non-default Vertex AI endpoint.
        gcs_client_factory: builds the ``storage.Client``.
        signers: step name to signer reference (``gcpkms://...``, ``sigstore:...``), one per task.
        expected_principals: step name to the service account it must run as, pinned in
            the owner-signed layout: a step that runs as anyone else refuses to run, and
            verification fails. A step compiled as a custom job (``compile
            --step-service-account``) is pinned to its account without being named here.
        registry_uri: where ``register_model`` registers (default: the Vertex AI Model
            Registry of ``project``/``region``, artifacts under the pipeline root).
        kms_client_factory: builds the ``KeyManagementServiceClient`` for an endpoint
            (``None`` for Google's); default: Application Default Credentials.
        serving_image: for the default registry: the Vertex AI prebuilt scikit-learn serving
            image the model is registered with, pinned by digest (its version is checked at
            registration against the version training recorded).
        chainproof_serving_image: or chainproof's own serving image, pinned by digest.

    Returns:
        The submitted run.

    Raises:
        InputError: a default or missing service account, an unknown or missing
            parameter, a parameter that submission sets itself, or a bad pipeline root.
        SignatureError: a step's signer does not hold the key given for it (nothing is submitted).
        ServiceError: Cloud KMS refused the credentials (nothing is submitted).

    Side effects:
        Calls ``KeyManagementService/GetPublicKey`` once per KMS signer; uploads the signed
        layout to Cloud Storage; calls ``PipelineService/CreatePipelineJob``.
    """
    from google.cloud import aiplatform

    from chainproof.pipelines import VERTEX_BUILDER_ID
    from chainproof.registry import digest_labels
    from chainproof.registry.vertex import init_vertex_sdk

    sa = check_service_account(service_account, project=project)
    if not pipeline_root.startswith("gs://"):
        raise InputError(f"--pipeline-root {pipeline_root!r}: expected gs://BUCKET/PREFIX")
    registry = _registry_uri(registry_uri, project=project, region=region, pipeline_root=pipeline_root,
                             serving_image=serving_image, chainproof_serving_image=chainproof_serving_image)
    if gcs_client_factory is not None:
        gcs = gcs_client_factory()
    else:
        from google.cloud import storage

        gcs = storage.Client(project=project, credentials=credentials)
    prepared = prepare_run(template=template, pipeline_root=pipeline_root, owner_signer=owner_signer, signers=signers,
                           step_keys=step_keys, parameters=parameters, expected_principals=expected_principals,
                           registry_uri=registry, kms_client_factory=kms_client_factory, gcs=gcs,
                           builder_id=VERTEX_BUILDER_ID)
    template_sha256, values = prepared.template_sha256, prepared.values
    labels = {
        **digest_labels(template_sha256, TEMPLATE_DIGEST_LABELS),
        "chainproof-version": re.sub(r"[^a-z0-9_-]", "-", __version__.lower()),
    }
    init_vertex_sdk(project=project, location=region, credentials=credentials, api_endpoint=api_endpoint)
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
        layout_uri=prepared.layout_uri,
        layout_sha256=prepared.layout_sha256,
        parameters=values,
        service_account=sa,
        owner_public_key=prepared.owner_public_key,
        register_tasks=prepared.register_tasks,
        run=prepared.run,
        outcome_uri=prepared.outcome_uri,
    )


_JOB = re.compile(r"projects/([^/]+)/locations/([^/]+)/pipelineJobs/([^/]+)")


def console_url(resource_name: str) -> str:
    """Return the Google Cloud console page of a pipeline job (``projects/P/locations/L/pipelineJobs/ID``)."""
    m = _JOB.fullmatch(resource_name)
    if m is None:
        raise InputError(f"{resource_name}: not a pipeline job name (projects/P/locations/L/pipelineJobs/ID)")
    project, location, job_id = m.groups()
    return f"https://console.cloud.google.com/vertex-ai/locations/{location}/pipelines/runs/{job_id}?project={project}"


class PipelineJobFailed(ChainproofError):
    """The pipeline job ended without success (a step refused its input, failed, or the job was cancelled)."""

    exit_code = 1


_DONE = {"PIPELINE_STATE_SUCCEEDED"}
_ENDED = {"PIPELINE_STATE_FAILED", "PIPELINE_STATE_CANCELLED"}


def wait_for_pipeline_job(
    resource_name: str,
    *,
    region: str,
    credentials: Any = None,
    api_endpoint: str | None = None,
    poll_seconds: float = 20.0,
    timeout_seconds: float = 24 * 3600.0,
    on_state: Any = None,
    sleep: Any = None,
) -> Any:
    """Follow a pipeline job until it ends; report each state change.

    Args:
        resource_name: ``projects/P/locations/L/pipelineJobs/ID``.
        region: the Vertex AI region (the default endpoint's).
        credentials: google-auth credentials (default: Application Default Credentials).
        api_endpoint: a non-default endpoint.
        poll_seconds: the pause between two ``GetPipelineJob`` calls.
        timeout_seconds: give up after this long (the job keeps running).
        on_state: called with each new state name.
        sleep: the pause function (default: :func:`time.sleep`).

    Returns:
        The succeeded job (``aiplatform_v1.PipelineJob``).

    Raises:
        PipelineJobFailed: the job failed or was cancelled (its error message is given).
        ServiceError: still not done after ``timeout_seconds``.

    Side effects:
        Calls ``PipelineService/GetPipelineJob`` every ``poll_seconds``.
    """
    import time

    from google.cloud import aiplatform_v1

    from chainproof.errors import ServiceError

    client = aiplatform_v1.PipelineServiceClient(
        credentials=credentials, client_options={"api_endpoint": api_endpoint or f"{region}-aiplatform.googleapis.com"})
    pause = sleep or time.sleep
    waited, last = 0.0, ""
    while True:
        job = client.get_pipeline_job(name=resource_name)
        state = job.state.name
        if state != last and on_state is not None:
            on_state(state)
        last = state
        if state in _DONE:
            return job
        if state in _ENDED:
            detail = job.error.message if job.error and job.error.message else "no error message"
            raise PipelineJobFailed(f"{resource_name}: {state}: {detail[:300]} (see {console_url(resource_name)})")
        if waited >= timeout_seconds:
            raise ServiceError("Vertex AI Pipelines", f"wait for {resource_name}", f"still {state} after {waited:.0f} s",
                               f"the job in the console, {console_url(resource_name)}")
        pause(poll_seconds)
        waited += poll_seconds


def registered_references(job: Any, register_tasks: tuple[str, ...]) -> list[str]:
    """Return what the registration tasks of a succeeded job registered (their ``reference`` metadata).

    Raises:
        PipelineJobFailed: the job succeeded but no registration task reports a registered model.
    """
    found: list[str] = []
    for task in job.job_detail.task_details:
        if task.task_name not in register_tasks:
            continue
        for output in task.outputs.values():
            for artifact in output.artifacts:
                reference = artifact.metadata.get("reference") if artifact.metadata else None
                if reference:
                    found.append(str(reference))
    if not found:
        raise PipelineJobFailed(f"{job.name}: succeeded, but no task of {', '.join(register_tasks) or '(none)'} "
                                "reports a registered model; nothing to verify")
    return found
