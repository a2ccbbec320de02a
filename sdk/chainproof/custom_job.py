"""Each step under its own service account on Vertex AI: the task runs as a Vertex custom job.

Example:
    >>> from chainproof.custom_job import step_service_accounts
    >>> step_service_accounts({"root": {"dag": {"tasks": {}}}})
    {}

On Vertex AI Pipelines every task runs as the pipeline job's one service account. A
step runs as an account of its own only as a Vertex AI *custom job*: the task's
executor becomes a launcher that creates a ``CustomJob`` whose ``job_spec`` names the
step's account and whose one worker runs the step's original container. This is the
shape Google Cloud Pipeline Components' ``create_custom_training_job_from_component``
compiles (``--type CustomJob --payload JSON --project --location --gcp_resources``,
the executor input JSON-escaped into the payload with ``{{$.json_escape[1]}}``),
written directly into the compiled IR, with one difference: GCPC's launcher image
is published by tag only, so the launcher here is chainproof's own image, the same
digest-pinned image the step runs (``python3 -m chainproof.custom_job``). Every
image of the template stays pinned by digest.

The pipeline job's service account (the launcher's identity) then needs
``aiplatform.customJobs.create``/``get`` and ``iam.serviceAccounts.actAs`` on each
step's account; the step account itself needs only its own signing key and bucket
rights. Which account a step runs as is also pinned in the owner-signed layout
(``chainproof submit`` reads it from the template): a step that finds itself
running as anyone else refuses to run.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from chainproof.errors import ChainproofError, InputError, ServiceError

__all__ = [
    "LAUNCHER_MODULE",
    "launch_custom_job",
    "run_steps_as_custom_jobs",
    "step_service_accounts",
    "template_images",
]

#: The module the launcher task runs (from chainproof's own, digest-pinned image).
LAUNCHER_MODULE = "chainproof.custom_job"

# GCPC's placeholders: the job's project and region, and the executor input as a JSON string.
_PROJECT = "{{$.pipeline_google_cloud_project_id}}"
_LOCATION = "{{$.pipeline_google_cloud_location}}"
_EXECUTOR_INPUT = "{{$}}"
_EXECUTOR_INPUT_ESCAPED = "{{$.json_escape[1]}}"
_GCP_RESOURCES = "gcp_resources"

_EMAIL = re.compile(r"[a-z0-9][a-z0-9._-]*@[a-z0-9][a-z0-9.-]*\.[a-z]+")

_TERMINAL_OK = "JOB_STATE_SUCCEEDED"
_TERMINAL_BAD = ("JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED")


def _check_email(step: str, email: str) -> str:
    from chainproof.vertex import check_service_account

    if not _EMAIL.fullmatch(email.strip().lower()):
        raise InputError(f"--step-service-account {step}={email}: expected a service account email "
                         "(NAME@PROJECT.iam.gserviceaccount.com)")
    try:
        return check_service_account(email, project="PROJECT")
    except InputError as exc:
        raise InputError(f"--step-service-account {step}={email}: {str(exc).split(': ', 1)[-1]}") from None


def _steps(doc: Mapping[str, Any]) -> dict[str, str]:
    """Step name to task name."""
    from chainproof.dsl import step_name

    return {step_name(t): t for t in doc.get("root", {}).get("dag", {}).get("tasks", {})}


def run_steps_as_custom_jobs(
    doc: dict[str, Any],
    accounts: Mapping[str, str],
    *,
    image: str,
    machine_type: str = "n1-standard-4",
    timeout: str = "604800s",
) -> dict[str, str]:
    """Rewrite a compiled pipeline (in place) so each named step runs as a custom job under its account.

    Args:
        doc: the compiled KFP IR (a mapping, as loaded from its YAML).
        accounts: step name to the service account email it runs as.
        image: the digest-pinned chainproof image; the launcher runs it.
        machine_type: the custom job's machine type.
        timeout: the custom job's maximum run time.

    Returns:
        Step name to the (normalised) account, for what was rewritten.

    Raises:
        InputError: an unknown step, an account that is not a dedicated service account email,
            or an image not pinned by digest.
    """
    from chainproof.images import check_image_reference

    pinned = check_image_reference(image).reference
    steps = _steps(doc)
    unknown = sorted(set(accounts) - set(steps))
    if unknown:
        raise InputError(f"--step-service-account {unknown[0]}: the pipeline has no such step "
                         f"(steps: {', '.join(sorted(steps))})")
    checked = {step: _check_email(step, email) for step, email in accounts.items()}
    components = doc["components"]
    executors = doc["deploymentSpec"]["executors"]
    tasks = doc["root"]["dag"]["tasks"]
    users: dict[str, int] = {}
    for task in tasks.values():
        ref = task["componentRef"]["name"]
        users[ref] = users.get(ref, 0) + 1
    pipeline = str(doc.get("pipelineInfo", {}).get("name", "pipeline"))
    for step, email in sorted(checked.items()):
        task = tasks[steps[step]]
        ref = task["componentRef"]["name"]
        comp = components[ref]
        label = comp["executorLabel"]
        if users[ref] > 1:
            # Another task shares this component: give this task its own copy (its own account).
            users[ref] -= 1
            old_label = label
            ref, label = f"{ref}-as-{steps[step]}", f"{label}-as-{steps[step]}"
            comp = copy.deepcopy(comp)
            comp["executorLabel"] = label
            components[ref] = comp
            executors[label] = copy.deepcopy(executors[old_label])
            task["componentRef"]["name"] = ref
        container = executors[label]["container"]
        if container.get("command", [])[3:4] == [LAUNCHER_MODULE]:
            raise InputError(f"step {step}: already runs as a custom job")
        worker = {
            "machine_spec": {"machine_type": machine_type},
            "replica_count": 1,
            "container_spec": {
                "image_uri": pinned,
                "command": [_EXECUTOR_INPUT_ESCAPED if c == _EXECUTOR_INPUT else c for c in container.get("command", [])],
                "args": [_EXECUTOR_INPUT_ESCAPED if a == _EXECUTOR_INPUT else a for a in container.get("args", [])],
                "env": [{"name": e["name"], "value": e["value"]} for e in container.get("env", [])],
            },
            "disk_spec": {"boot_disk_type": "pd-ssd", "boot_disk_size_gb": 100},
        }
        payload = {
            "display_name": f"{pipeline}-{steps[step]}"[:128],
            "job_spec": {
                "worker_pool_specs": [worker],
                "service_account": email,
                "scheduling": {"timeout": timeout, "restart_job_on_worker_restart": False},
            },
            "labels": {"chainproof-step": steps[step][:63]},
        }
        executors[label] = {"container": {
            "image": pinned,
            "command": ["python3", "-u", "-m", LAUNCHER_MODULE],
            "args": ["--type", "CustomJob", "--payload", json.dumps(payload, sort_keys=True),
                     "--project", _PROJECT, "--location", _LOCATION,
                     "--gcp_resources", f"{{{{$.outputs.parameters['{_GCP_RESOURCES}'].output_file}}}}"],
        }}
        comp.setdefault("outputDefinitions", {}).setdefault("parameters", {})[_GCP_RESOURCES] = {"parameterType": "STRING"}
    return checked


def _payloads(doc: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Executor label to the custom job payload its launcher creates."""
    found: dict[str, dict[str, Any]] = {}
    for label, executor in doc.get("deploymentSpec", {}).get("executors", {}).items():
        container = executor.get("container") or {}
        args = list(container.get("args", []))
        if LAUNCHER_MODULE not in container.get("command", []) or "--payload" not in args:
            continue
        try:
            found[label] = json.loads(args[args.index("--payload") + 1])
        except (IndexError, ValueError) as exc:
            raise InputError(f"executor {label}: the custom job payload is not JSON") from exc
    return found


def step_service_accounts(doc: Mapping[str, Any]) -> dict[str, str]:
    """Return the account each custom-job step of a compiled pipeline runs as.

    Args:
        doc: the compiled KFP IR.

    Returns:
        Step name to service account email (steps that are not custom jobs are absent).
    """
    payloads = _payloads(doc)
    components = doc.get("components", {})
    found: dict[str, str] = {}
    for step, task_name in _steps(doc).items():
        task = doc["root"]["dag"]["tasks"][task_name]
        label = components.get(task.get("componentRef", {}).get("name", ""), {}).get("executorLabel", "")
        if label in payloads:
            found[step] = str(payloads[label].get("job_spec", {}).get("service_account", ""))
    return found


def template_images(doc: Mapping[str, Any]) -> dict[str, str]:
    """Every container image a compiled pipeline names, launchers' jobs included.

    Args:
        doc: the compiled KFP IR.

    Returns:
        Where (``executor E`` or ``executor E custom job worker N``) to the image reference.
    """
    images: dict[str, str] = {}
    payloads = _payloads(doc)
    for label, executor in doc.get("deploymentSpec", {}).get("executors", {}).items():
        container = executor.get("container")
        if container is None:
            continue
        images[f"executor {label}"] = str(container.get("image", ""))
        for n, worker in enumerate(payloads.get(label, {}).get("job_spec", {}).get("worker_pool_specs", [])):
            images[f"executor {label} custom job worker {n}"] = str(worker.get("container_spec", {}).get("image_uri", ""))
    return images


def _state_name(state: Any) -> str:
    return str(getattr(state, "name", state))


def launch_custom_job(
    payload: Mapping[str, Any],
    *,
    project: str,
    location: str,
    gcp_resources: Path,
    client: Any = None,
    api_endpoint: str | None = None,
    credentials: Any = None,
    poll_seconds: float = 10.0,
    max_wait_seconds: float = 7 * 24 * 3600.0,
    on_state: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Create the custom job of one step, record it for the console, and wait for its end.

    The payload is checked again here, at run time, before anything is created: one
    worker, its image pinned by digest, and a named service account.

    Args:
        payload: the ``CustomJob`` (snake_case field names), placeholders already resolved.
        project: the project the job runs in.
        location: the region.
        gcp_resources: the file to write GCPC's ``gcp_resources`` JSON to.
        client: a ``JobServiceClient`` (default: one for ``location``).
        api_endpoint: a non-default endpoint for the default client.
        credentials: google-auth credentials for the default client (default: ADC).
        poll_seconds: the pause between two ``GetCustomJob`` calls.
        max_wait_seconds: give up (and cancel nothing) after this long.
        on_state: called with each new state name.
        sleep: the pause function (tests pass a fast one).

    Returns:
        The custom job's resource name.

    Raises:
        InputError: a payload without a service account or with an unpinned image.
        ServiceError: the job failed, was cancelled, or did not end in time.

    Side effects:
        Calls ``JobService/CreateCustomJob`` and ``GetCustomJob``; writes ``gcp_resources``.
    """
    from google.cloud import aiplatform_v1
    from google.protobuf import json_format

    from chainproof.images import check_image_reference

    spec = payload.get("job_spec", {})
    if not str(spec.get("service_account", "")).strip():
        raise InputError("custom job payload: no service_account (the step would run as the Vertex AI service agent)")
    for worker in spec.get("worker_pool_specs", []):
        check_image_reference(str(worker.get("container_spec", {}).get("image_uri", "")))
    job = aiplatform_v1.CustomJob.pb(aiplatform_v1.CustomJob())
    try:
        json_format.ParseDict(dict(payload), job)
    except json_format.ParseError as exc:
        raise InputError(f"custom job payload: {str(exc).splitlines()[0][:200]}") from exc
    if client is None:
        endpoint = api_endpoint or f"{location}-aiplatform.googleapis.com"
        client = aiplatform_v1.JobServiceClient(credentials=credentials, client_options={"api_endpoint": endpoint})
    created = client.create_custom_job(parent=f"projects/{project}/locations/{location}",
                                       custom_job=aiplatform_v1.CustomJob.wrap(job))
    name = created.name
    gcp_resources.parent.mkdir(parents=True, exist_ok=True)
    # GCPC's format: the Vertex AI console links the task to its custom job through it.
    gcp_resources.write_text(json.dumps({"resources": [{
        "resourceType": "CustomJob", "resourceUri": f"https://{location}-aiplatform.googleapis.com/v1/{name}"}]}))
    waited, last = 0.0, ""
    current = created
    while True:
        state = _state_name(current.state)
        if state != last and on_state is not None:
            on_state(state)
        last = state
        if state == _TERMINAL_OK:
            return str(name)
        if state in _TERMINAL_BAD:
            detail = current.error.message if current.error and current.error.message else "no error message"
            raise ServiceError("Vertex AI custom job", f"run {name}", f"{state}: {detail}",
                               "the job's logs in the Vertex AI console")
        if waited >= max_wait_seconds:
            raise ServiceError("Vertex AI custom job", f"wait for {name}", f"still {state} after {waited:.0f} s",
                               "the job in the Vertex AI console")
        sleep(poll_seconds)
        waited += poll_seconds
        current = client.get_custom_job(name=name)


def main(argv: list[str] | None = None) -> int:
    """The launcher task's entry point (``python3 -m chainproof.custom_job``, GCPC's arguments)."""
    import os

    parser = argparse.ArgumentParser(prog=LAUNCHER_MODULE)
    parser.add_argument("--type", required=True, choices=["CustomJob"])
    parser.add_argument("--payload", required=True)
    parser.add_argument("--project", required=True)
    parser.add_argument("--location", required=True)
    parser.add_argument("--gcp_resources", required=True)
    parser.add_argument("--poll_seconds", type=float, default=10.0, help="pause between two GetCustomJob calls")
    args = parser.parse_args(argv)
    try:
        payload = json.loads(args.payload)
        endpoint = os.environ.get("CHAINPROOF_VERTEX_ENDPOINT") or None
        credentials = None
        if endpoint and endpoint.split(":", 1)[0] in ("127.0.0.1", "localhost"):
            from google.auth.credentials import AnonymousCredentials

            credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
        name = launch_custom_job(payload, project=args.project, location=args.location,
                                 gcp_resources=Path(args.gcp_resources), api_endpoint=endpoint, credentials=credentials,
                                 poll_seconds=args.poll_seconds, on_state=lambda s: print(f"custom job: {s}", file=sys.stderr, flush=True))
    except ValueError as exc:
        print(f"FAIL: custom job payload: not JSON ({exc})", file=sys.stderr)
        return 2
    except ChainproofError as exc:
        print(f"FAIL: {exc.diagnostics()}", file=sys.stderr)
        return exc.exit_code
    print(f"OK: custom job {name} succeeded", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
