"""The ``chainproof`` command: a thin layer over the public API.

Example:
    $ chainproof run --format json
    $ chainproof verify chainproof-work/registry/models/chainproof-model/1/bundle
    $ chainproof inspect chainproof-work/registry/models/chainproof-model/1/bundle
    $ chainproof scan chainproof-work/registry/models/chainproof-model/1/model
    $ chainproof card local://chainproof-model@1 --format md
    $ chainproof compile --image europe-docker.pkg.dev/P/R/chainproof@sha256:DIGEST -o pipeline.yaml
    $ chainproof submit --project P --region europe-west4 --pipeline-root gs://B/runs \\
          --service-account trainer@P.iam.gserviceaccount.com --owner-signer file:keys/owner.pem \\
          --param source_uri=gs://B/data/train.csv --param expected_sha256=... --param target_column=label ...
    $ chainproof verify vertex://projects/P/locations/europe-west4/models/chainproof-model@1

Exit codes: 0 verified / done, 1 verification failed or an artifact was refused,
2 usage or input error, 3 an unreachable or failing cloud service. A traceback
only with ``--verbose`` (anywhere on the line). This is the only
module that reads environment variables.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from chainproof._version import __version__
from chainproof.errors import ChainproofError, InputError

logger = logging.getLogger("chainproof")

#: Environment variable naming the trust store of owner keys.
TRUST_DIR_ENV = "CHAINPROOF_TRUST_DIR"

#: google-auth's variable naming an Application Default Credentials file.
ADC_ENV = "GOOGLE_APPLICATION_CREDENTIALS"


def default_trust_dir() -> Path:
    """Return the trust store folder: ``$CHAINPROOF_TRUST_DIR`` or the user's config folder."""
    if os.environ.get(TRUST_DIR_ENV):
        return Path(os.environ[TRUST_DIR_ENV])
    return chainproof_home() / "trusted-owners"


#: Names the folder of chainproof's writable state (trust store); an image sets it to a tmpfs.
HOME_ENV = "CHAINPROOF_HOME"


def chainproof_home() -> Path:
    """Return chainproof's state folder: ``$CHAINPROOF_HOME``, else ``$XDG_CONFIG_HOME/chainproof``
    or ``~/.config/chainproof``; when that cannot be written (a read-only root), a folder under the
    temporary directory."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    home = Path(base) / "chainproof"
    probe = home
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if os.access(probe, os.W_OK):
        return home
    import tempfile

    return Path(tempfile.gettempdir()) / f"chainproof-{os.getuid()}"


def _cmd_vertex_plan(args: argparse.Namespace) -> int:
    from chainproof.vertex_plan import plan_commands

    for line in plan_commands(project=args.project, region=args.region, bucket=args.bucket,
                              keyring=args.keyring, repository=args.repository):
        print(line)
    return 0


def _print_json(doc: Any) -> None:
    # The JSON object is always the last line of stdout.
    sys.stdout.write(json.dumps(doc, sort_keys=True) + "\n")
    sys.stdout.flush()


def _cmd_keys_init(args: argparse.Namespace) -> int:
    from chainproof.policy import REFERENCE_PIPELINE_STEPS
    from chainproof.signing import TrustStore, init_keys, load_public_key

    roles = ["owner", *REFERENCE_PIPELINE_STEPS]
    ring = init_keys(Path(args.directory), roles=roles, development=args.development)
    # keys init created this owner key just now: trusting it is the explicit act it asks for.
    TrustStore(default_trust_dir()).add(
        load_public_key(ring.public_key_path("owner")),
        source=f"chainproof keys init {ring.directory}: owner key created now",
        development=args.development,
    )
    if args.format == "json":
        _print_json({"directory": str(ring.directory), "keys": ring.roles, "development": ring.development})
    else:
        for role, keyid in ring.roles.items():
            print(f"OK: {role}: {ring.private_key_path(role)} (key {keyid[:16]})")
        print(f"owner key trusted in {default_trust_dir()}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console(stderr=True, highlight=False)
    started: dict[str, float] = {}

    def progress(step: str, state: str) -> None:
        name = step.replace("-", "_")
        if state == "running":
            started[name] = time.monotonic()
            console.print(f"[bold]▶[/] {name} ...")
        else:
            took = time.monotonic() - started.get(name, time.monotonic())
            mark = "[green]✓[/]" if state == "success" else "[red]✗[/]"
            console.print(f"{mark} {name} {state} ({took:.1f} s)")

    _check_json_object(args.hyperparameters, "--hyperparameters")
    layout_ext: dict[str, Any] = {}
    if args.layout_allow_service_account_key:
        allowed = list(dict.fromkeys(args.layout_allow_service_account_key))
        layout_ext["allow_service_account_keys"] = True if "all" in allowed else allowed
    if args.pipeline:
        from chainproof.local import coerce_parameters, load_pipeline
        from chainproof.runner import run_pipeline

        clash = [flag for flag, value in (("--data", args.data), ("--sha256", args.sha256), ("--target", args.target),
                                          ("--schema", args.schema)) if value]
        if clash:
            raise InputError(f"{clash[0]} is for the reference pipeline; with --pipeline give --param NAME=VALUE")
        pipeline_func = load_pipeline(args.pipeline)
        result = run_pipeline(
            pipeline_func,
            coerce_parameters(pipeline_func, _pairs(args.param, "--param")),
            workdir=Path(args.workdir),
            trust_dir=default_trust_dir(),
            progress=progress,
            identity=args.identity,
            allow_service_account_key=args.allow_service_account_key,
            adc_credentials_file=os.environ.get(ADC_ENV) or None,
            signers=_pairs(args.signer, "--signer"),
            owner_signer=args.owner_signer,
            expected_principals=_pairs(args.expect_principal, "--expect-principal"),
            layout_extensions=layout_ext,
            advisories=args.advisories or "",
            container=_container(args),
        )
    else:
        if args.param:
            raise InputError("--param goes with --pipeline FILE.py:NAME")
        result = _run_reference(args, progress, layout_ext)
    if args.format == "json":
        _print_json(result.to_dict())
        return 0
    print(f"OK: registered {result.registered}")
    print(f"  model        {result.model}")
    print(f"  model sha256 {result.model_sha256}")
    print(f"  bundle       {result.bundle}")
    print(f"  owner key    {result.owner_key}")
    print(f"  trust        {result.owner_trust}")
    metrics = {k: v for k, v in result.metrics().items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if metrics:
        print("  metrics      " + ", ".join(f"{k}={v:g}" for k, v in sorted(metrics.items())))
    print(f"verify it:     chainproof verify {result.bundle} --owner-key {result.owner_key}")
    return 0


def _container(args: argparse.Namespace) -> Any:
    """The container run ``--runner docker --image IMAGE@sha256:...`` asks for (``None``: subprocesses)."""
    from chainproof.containers import ContainerRun

    if args.runner == "subprocess":
        if args.image or args.ulimit:
            raise InputError("--image and --ulimit go with --runner docker")
        return None
    if not args.image:
        raise InputError("--runner docker needs --image REGISTRY/PATH@sha256:DIGEST (the component image, pinned)")
    return ContainerRun(image=args.image, ulimits=tuple(args.ulimit or ()))


def _run_reference(args: argparse.Namespace, progress: Any, layout_ext: dict[str, Any]) -> Any:
    from chainproof.runner import run_reference_pipeline

    return run_reference_pipeline(
        workdir=Path(args.workdir),
        trust_dir=default_trust_dir(),
        data=args.data or None,
        sha256=args.sha256,
        target=args.target,
        model_name=args.model_name,
        estimator=args.estimator,
        hyperparameters=args.hyperparameters,
        tabular_schema=_read_schema(args.schema),
        drop=",".join(args.drop or []),
        task=args.task,
        min_metrics=",".join(args.min_metric or []),
        max_metrics=",".join(args.max_metric or []),
        advisories=args.advisories or "",
        progress=progress,
        identity=args.identity,
        allow_service_account_key=args.allow_service_account_key,
        # google-auth reads this variable itself; chainproof passes it down so the
        # run refuses a key file before any step runs.
        adc_credentials_file=os.environ.get(ADC_ENV) or None,
        signers=_pairs(args.signer, "--signer"),
        owner_signer=args.owner_signer,
        expected_principals=_pairs(args.expect_principal, "--expect-principal"),
        layout_extensions=layout_ext,
        container=_container(args),
    )


def _check_json_object(text: str, flag: str) -> None:
    """Refuse a parameter that is not a JSON object, before any step runs (exit 2)."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{flag} {text[:80]!r}: not JSON ({exc.msg} at character {exc.pos})") from exc
    if not isinstance(doc, dict):
        raise InputError(f"{flag} {text[:80]!r}: expected a JSON object, got {type(doc).__name__}")


def _pairs(values: list[str] | None, flag: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for value in values or []:
        name, sep, rest = value.partition("=")
        if not sep or not name or not rest:
            raise InputError(f"{flag} {value!r}: expected STEP=VALUE")
        if name in found:
            raise InputError(f"{flag}: step {name} given twice")
        found[name] = rest
    return found


def _read_schema(path: str | None) -> str:
    """Read a tabular schema file (YAML or JSON) into the JSON text the pipeline takes."""
    if not path:
        return ""
    import yaml

    from chainproof.scan import TabularSchema

    try:
        doc = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise InputError(f"{path}: cannot read schema ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not YAML or JSON ({type(exc).__name__})") from exc
    TabularSchema.from_dict(doc)  # fail here, before any step runs
    return json.dumps(doc, sort_keys=True)


def _trusted_keys(owner_keys: list[str] | None) -> dict[str, Any]:
    from chainproof.signing import TrustStore, load_public_key

    if owner_keys:
        keys = [load_public_key(p) for p in owner_keys]
        return {str(k.keyid): k for k in keys}
    trusted = TrustStore(default_trust_dir()).keys()
    if not trusted:
        raise InputError(
            f"no trusted owner key: pass --owner-key PEM or trust one with chainproof trust add PEM "
            f"(trust store {default_trust_dir()})"
        )
    return trusted


def _owner_trust(args: argparse.Namespace, keyid: str) -> dict[str, Any]:
    """Which trusted key verified, and where its trust came from."""
    from chainproof.signing import TrustStore, load_public_key
    from chainproof.trust import describe_owner_trust

    if args.owner_key:
        files = {str(load_public_key(p).keyid): p for p in args.owner_key}
        return describe_owner_trust(keyid, store=None, owner_key_files=files)
    return describe_owner_trust(keyid, store=TrustStore(default_trust_dir()))


def _development_owner_keys(args: argparse.Namespace) -> frozenset[str]:
    from chainproof.signing import TrustStore

    if args.owner_key:
        return frozenset()
    return frozenset(e.keyid for e in TrustStore(default_trust_dir()).entries() if e.development)


def _write_output(output: str, text: str) -> None:
    try:
        Path(output).write_text(text)
    except OSError as exc:
        raise InputError(f"{output}: cannot write the report ({exc.strerror})") from exc


def _emit(doc: dict[str, Any], fmt: str, output: str | None) -> None:
    from chainproof.report import render_html, render_text

    if fmt == "json":
        if output:
            _write_output(output, json.dumps(doc, indent=2, sort_keys=True) + "\n")
        _print_json(doc)
        return
    if fmt == "html":
        page = render_html(doc)
        if output:
            _write_output(output, page)
            print(f"report written to {output}", file=sys.stderr)
        else:
            sys.stdout.write(page)
        return
    text = render_text(doc)
    if output:
        _write_output(output, text)
        print(f"report written to {output}", file=sys.stderr)
    # The verdict line stays on stdout: scripts read the last line.
    sys.stdout.write(text if not output else text.rstrip("\n").splitlines()[-1] + "\n")


#: Environment variable naming a non-default Vertex AI endpoint (HOST:PORT).
VERTEX_ENDPOINT_ENV = "CHAINPROOF_VERTEX_ENDPOINT"


def _vertex_access() -> dict[str, Any]:
    """Endpoint and credentials for the Vertex AI SDK, from the environment."""
    endpoint = os.environ.get(VERTEX_ENDPOINT_ENV) or None
    if endpoint and endpoint.split(":", 1)[0] in ("127.0.0.1", "localhost", "[::1]"):
        # A loopback emulator gets anonymous credentials, as google-cloud-storage does
        # under STORAGE_EMULATOR_HOST; real endpoints use Application Default Credentials.
        from google.auth.credentials import AnonymousCredentials

        return {"api_endpoint": endpoint, "credentials": AnonymousCredentials()}  # type: ignore[no-untyped-call]
    return {"api_endpoint": endpoint, "credentials": None}


def _verify_registered(args: argparse.Namespace, workdir: Path, policy: Any, located: list[Path]) -> tuple[Any, Path]:
    """Verify a registry reference; return the result and where its bundle was read (also put in ``located``)."""
    from chainproof.registry import LocalModelRegistry, VertexModelRegistry, parse_vertex_reference
    from chainproof.verify import verify_registered

    if args.model:
        raise InputError("--model goes with a bundle folder; a registry reference names its own model")
    registry: Any
    if args.bundle.startswith("vertex://"):
        project, location, _, _ = parse_vertex_reference(args.bundle)
        try:
            registry = VertexModelRegistry(project=project, location=location, **_vertex_access())
        except ValueError as exc:  # the Vertex SDK's own checks (an unknown region, ...)
            raise InputError(f"{args.bundle}: {str(exc).splitlines()[0][:200]}") from exc
    else:
        registry = LocalModelRegistry(args.registry)
    def where(entry: Any) -> None:
        # Known before verification starts, so that a failure is reported on this bundle.
        located.append(workdir / "bundle" if "://" in entry.bundle_location else Path(entry.bundle_location))

    result = verify_registered(
        args.bundle, registry=registry, trusted_owner_keys=_trusted_keys(args.owner_key), workdir=workdir, policy=policy,
        on_bundle=where,
    )
    return result, located[-1]


def _cmd_verify(args: argparse.Namespace) -> int:
    import tempfile

    from chainproof.auditor import AuditorPolicy, NoDevelopmentKeys
    from chainproof.report import build_report
    from chainproof.verify import verify_bundle

    dev_owners = _development_owner_keys(args)
    policy = AuditorPolicy.from_file(args.policy, development_owner_keys=dev_owners) if args.policy else None
    policy_source = args.policy or ""
    if args.require_production_keys:
        # A verdict "verified with development keys" becomes a failure (exit 1).
        extra = NoDevelopmentKeys(development_owner_keys=dev_owners)
        constraints = [*(policy.constraints if policy else []), extra]
        policy = AuditorPolicy(constraints=constraints, source=policy_source or "--require-production-keys")
        policy_source = policy_source + (" + " if policy_source else "") + "--require-production-keys"
    located: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="chainproof-audit-") as tmp:
        bundle = Path(args.bundle)
        try:
            if args.bundle.startswith(("vertex://", "local://")):
                result, bundle = _verify_registered(args, Path(tmp), policy, located)
            else:
                result = verify_bundle(
                    args.bundle, trusted_owner_keys=_trusted_keys(args.owner_key), model_dir=args.model, policy=policy
                )
        except ChainproofError as exc:
            bundle = located[-1] if located else bundle
            if exc.exit_code == 1 and (bundle / "root.layout").is_file():
                # A complete report of a failure: what passed, which check failed, every violation.
                _emit(build_report(bundle, error=exc, policy_source=policy_source, subject=args.bundle), args.format, args.output)
                print(f"FAIL: {exc.diagnostics()}", file=sys.stderr)
                return exc.exit_code
            raise
        dev_owner = result.owner_keyid in dev_owners
        doc = build_report(bundle, result=result, policy_source=policy_source, subject=args.bundle,
                           owner_trust=_owner_trust(args, result.owner_keyid), development_owner_key=dev_owner)
        _emit(doc, args.format, args.output)
    return 0


def _cmd_compile(args: argparse.Namespace) -> int:
    from chainproof.vertex import compile_pipeline

    output = Path(args.output)
    pipeline_func = None
    if args.pipeline:
        from chainproof.local import load_pipeline

        pipeline_func = load_pipeline(args.pipeline)
    accounts = _pairs(args.step_service_account, "--step-service-account")
    digest = compile_pipeline(image=args.image, output=output, target=args.target, pipeline_func=pipeline_func,
                              step_service_accounts=accounts, machine_type=args.machine_type)
    if args.format == "json":
        _print_json({"template": str(output), "template_sha256": digest, "image": args.image, "target": args.target,
                     "step_service_accounts": accounts})
        return 0
    print(f"OK: {output} (sha256 {digest}); every component runs {args.image}")
    for step, email in sorted(accounts.items()):
        print(f"  {step} runs as a Vertex AI custom job under {email}")
    return 0


def _parse_params(items: list[str] | None) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--param {item!r}: expected NAME=VALUE")
        params[key] = value
    return params


#: The reference pipeline's parameters without a default (what ``submit --help`` lists).
SUBMIT_REQUIRED_PARAMS = ("source_uri", "expected_sha256", "target_column")


def _kms_client_factory(endpoint: str | None) -> Any:
    from chainproof.signing import kms_client

    # Application Default Credentials, also for a loopback KMS: the submitter's own token is what KMS checks.
    return kms_client(endpoint)


def _cmd_submit(args: argparse.Namespace) -> int:
    from chainproof.vertex import submit_pipeline

    if args.kfp_host:
        return _cmd_submit_kfp(args)
    for flag in ("project", "region"):
        if not getattr(args, flag):
            raise InputError(f"--{flag} is required for Vertex AI (or give --kfp-host URL for Kubeflow Pipelines)")
    template, step_keys = _submit_template(args, "Vertex AI")
    params = _parse_params(args.param)
    access = _vertex_access()
    run = submit_pipeline(
        template=template,
        project=args.project,
        region=args.region,
        pipeline_root=args.pipeline_root,
        service_account=args.service_account or "",
        owner_signer=args.owner_signer,
        step_keys=step_keys,
        signers=_pairs(args.signer, "--signer"),
        parameters=params,
        display_name=args.display_name,
        expected_principals=_pairs(args.expect_principal, "--expect-principal"),
        registry_uri=args.registry_uri or "",
        serving_image=args.serving_image or "",
        chainproof_serving_image=args.chainproof_serving_image or "",
        kms_client_factory=_kms_client_factory,
        **access,
    )
    console = run.console_url()
    if args.format != "json":
        print(f"OK: submitted {run.resource_name}")
        print(f"  runs as          {run.service_account}")
        print(f"  template sha256  {run.template_sha256}")
        print(f"  layout           {run.layout_uri} (sha256 {run.layout_sha256})")
        print(f"  console          {console}")
        sys.stdout.flush()
    if not args.wait:
        if args.format == "json":
            _print_json({**run.to_dict(), "console": console})
        return 0
    return _wait_and_verify(args, run, access)


def _submit_template(args: argparse.Namespace, target: str) -> tuple[Path, dict[str, Any]]:
    """The template to submit (compiled here with --pipeline) and the step public keys given with --keys."""
    import yaml

    from chainproof.dsl import derive_graph
    from chainproof.signing import load_public_key

    template = Path(args.template)
    if args.pipeline:
        from chainproof.local import load_pipeline
        from chainproof.vertex import compile_pipeline

        if not args.image:
            raise InputError(f"--pipeline needs --image REGISTRY/PATH@sha256:DIGEST to compile it for {target}")
        compile_pipeline(image=args.image, output=template, pipeline_func=load_pipeline(args.pipeline),
                         step_service_accounts=_pairs(args.step_service_account, "--step-service-account"))
    elif args.step_service_account:
        raise InputError("--step-service-account goes with --pipeline (or with chainproof compile)")
    if not template.is_file():
        raise InputError(f"{template}: no compiled pipeline (run chainproof compile, or give --pipeline and --image)")
    try:
        steps = derive_graph(yaml.safe_load(template.read_text())).step_names
    except yaml.YAMLError as exc:
        raise InputError(f"{template}: not a compiled KFP pipeline (YAML error)") from exc
    keys: dict[str, Any] = {}
    if args.keys:
        folder = Path(args.keys)
        keys = {step: load_public_key(folder / f"{step}.pub") for step in steps if (folder / f"{step}.pub").is_file()}
    return template, keys


def _cmd_submit_kfp(args: argparse.Namespace) -> int:
    """``submit --kfp-host URL``: the same signed layout and run configuration, created with kfp.Client."""
    import tempfile
    from urllib.parse import parse_qs

    from chainproof.errors import VerificationError
    from chainproof.kfp_backend import read_outcome, submit_kfp_pipeline, wait_for_kfp_run
    from chainproof.registry import registry_for
    from chainproof.signing import public_key_from_pem
    from chainproof.verify import verify_registered

    clash = [flag for flag, value in (("--project", args.project), ("--region", args.region),
                                      ("--serving-image", args.serving_image),
                                      ("--chainproof-serving-image", args.chainproof_serving_image)) if value]
    if clash:
        raise InputError(f"{clash[0]} is for Vertex AI; with --kfp-host give --registry-uri (serving image in it)")
    template, step_keys = _submit_template(args, "Kubeflow Pipelines")
    run = submit_kfp_pipeline(
        host=args.kfp_host, template=template, pipeline_root=args.pipeline_root, owner_signer=args.owner_signer,
        signers=_pairs(args.signer, "--signer"), parameters=_parse_params(args.param),
        registry_uri=args.registry_uri or "", step_keys=step_keys,
        expected_principals=_pairs(args.expect_principal, "--expect-principal"),
        kms_client_factory=_kms_client_factory, run_name=args.display_name,
        service_account=args.service_account or "",
    )
    if args.format != "json":
        print(f"OK: submitted run {run.run_id} to {run.host}")
        print(f"  template sha256  {run.prepared.template_sha256}")
        print(f"  layout           {run.prepared.layout_uri} (sha256 {run.prepared.layout_sha256})")
        print(f"  console          {run.console_url()}")
        sys.stdout.flush()
    if not args.wait:
        if args.format == "json":
            _print_json(run.to_dict())
        return 0

    def show(state: str) -> None:
        print(f"  state            {state}", file=sys.stderr, flush=True)

    wait_for_kfp_run(run, poll_seconds=args.poll_seconds, timeout_seconds=args.timeout, on_state=show)
    from google.cloud import storage

    # The evidence is read from the run's pipeline root: the pointer, then the registered bundle.
    outcome = read_outcome(run.prepared.outcome_uri, gcs=storage.Client(), run=run.prepared.run)
    owner = public_key_from_pem(run.prepared.owner_public_key, what="the owner key")
    registry_uri = json.loads(run.prepared.values["chainproof_config"])["registry_uri"]
    endpoint = parse_qs(registry_uri.partition("?")[2]).get("endpoint", [""])[-1]
    access: dict[str, Any] = {}
    if endpoint.split(":", 1)[0] in ("127.0.0.1", "localhost"):
        from google.auth.credentials import AnonymousCredentials

        access["credentials"] = AnonymousCredentials()  # type: ignore[no-untyped-call]  # a loopback emulator, as for CHAINPROOF_VERTEX_ENDPOINT
    registry = registry_for(registry_uri, **access)
    with tempfile.TemporaryDirectory(prefix="chainproof-submit-") as tmp:
        result = verify_registered(outcome["reference"], registry=registry, trusted_owner_keys={owner.keyid: owner},
                                   workdir=Path(tmp))
        entry = Path(tmp) / "bundle" / "registry" / "entry.json"
        recorded = json.loads(entry.read_text()).get("run") if entry.is_file() else None
    if outcome.get("created") and recorded != run.prepared.run:
        raise VerificationError(f"{outcome['reference']}: its signed registry entry names run {recorded!r}, not this run "
                         f"{run.prepared.run}")
    if args.format == "json":
        _print_json({**run.to_dict(), "state": "SUCCEEDED", "verified": True,
                     "registered": [{"registered": outcome["reference"], "model_sha256": result.model_sha256,
                                     "steps": [s.name for s in result.steps], "run": recorded}]})
        return 0
    print(f"OK: verified {outcome['reference']} (model sha256 {result.model_sha256}, {len(result.steps)} steps, "
          f"owner key {owner.keyid[:16]})")
    return 0


def _wait_and_verify(args: argparse.Namespace, run: Any, access: dict[str, Any]) -> int:
    """Follow the job to its end (each state change on stderr), then verify what it registered."""
    import tempfile

    from chainproof.registry import VertexModelRegistry, parse_vertex_reference
    from chainproof.signing import public_key_from_pem
    from chainproof.verify import verify_registered
    from chainproof.vertex import registered_references, wait_for_pipeline_job

    def show(state: str) -> None:
        print(f"  state            {state}", file=sys.stderr, flush=True)

    job = wait_for_pipeline_job(run.resource_name, region=args.region, poll_seconds=args.poll_seconds,
                                timeout_seconds=args.timeout, on_state=show, **access)
    references = registered_references(job, run.register_tasks)
    owner = public_key_from_pem(run.owner_public_key, what="the owner key")
    verified = []
    with tempfile.TemporaryDirectory(prefix="chainproof-submit-") as tmp:
        for n, reference in enumerate(references):
            project, location, _, _ = parse_vertex_reference(reference)
            registry = VertexModelRegistry(project=project, location=location, **access)
            result = verify_registered(reference, registry=registry, trusted_owner_keys={owner.keyid: owner},
                                       workdir=Path(tmp) / str(n))
            verified.append({"registered": reference, "model_sha256": result.model_sha256,
                             "steps": [s.name for s in result.steps]})
    if args.format == "json":
        _print_json({**run.to_dict(), "console": run.console_url(), "state": "PIPELINE_STATE_SUCCEEDED",
                     "verified": True, "registered": verified})
        return 0
    for item in verified:
        print(f"OK: verified {item['registered']} (model sha256 {item['model_sha256']}, "
              f"{len(item['steps'])} steps, owner key {owner.keyid[:16]})")
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from chainproof.report import build_report

    bundle = Path(args.bundle)
    if not (bundle / "root.layout").is_file():
        raise InputError(f"{bundle}: no root.layout; not an evidence bundle")
    _emit(build_report(bundle), args.format, args.output)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(prog="chainproof", description="Zero-trust ML training pipelines: run, verify, inspect.")
    parser.add_argument("--version", action="version", version=f"chainproof {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", required=True)

    keys = sub.add_parser("keys", help="manage signing keys").add_subparsers(dest="keys_command", required=True)
    init = keys.add_parser("init", help="create an owner key and one key per pipeline step (ECDSA P-256)")
    init.add_argument("directory")
    init.add_argument("--development", action="store_true", help="mark the keys as development keys")
    init.add_argument("--format", choices=["text", "json"], default="text")
    init.set_defaults(func=_cmd_keys_init)

    run = sub.add_parser("run", help="run a pipeline locally (kfp.local) and verify what it registered")
    run.add_argument("--pipeline", metavar="FILE.py:NAME",
                     help="your own pipeline (built with chainproof.dsl); default: the reference pipeline")
    run.add_argument("--param", action="append", metavar="NAME=VALUE",
                     help="a parameter of --pipeline (repeatable; local paths become file:// URIs)")
    run.add_argument("--workdir", default="chainproof-work", help="keys, runs and the local registry (default: ./chainproof-work)")
    run.add_argument("--data", help="your own CSV: a path or a gs://, https://, s3:// URI (default: the built-in sample)")
    run.add_argument("--sha256", help="pinned SHA-256 of --data")
    run.add_argument("--target", help="label column of --data")
    run.add_argument("--model-name", default="chainproof-model")
    run.add_argument("--estimator", default="random_forest")
    run.add_argument("--hyperparameters", default="{}", help="estimator parameters as a JSON object")
    run.add_argument("--schema", help="a tabular schema (YAML or JSON) the CSV must match: columns, types, ranges")
    run.add_argument("--drop", action="append", metavar="COLUMN", help="a column that is not a feature, e.g. an ID (repeatable)")
    run.add_argument("--task", choices=["classification", "regression", "auto"], default="classification",
                     help="what to train (a numeric target with many values is refused as classification)")
    run.add_argument("--advisories", metavar="DIR",
                     help="an OSV advisory folder: the run records a vulnerability scan of its environment (vulns/v0.2)")
    run.add_argument("--min-metric", action="append", metavar="NAME>=VALUE",
                     help="a metric the model must reach, signed into the layout (repeatable; e.g. roc_auc>=0.8)")
    run.add_argument("--robustness-min-metric", action="append", metavar="NAME>=VALUE",
                     help="a robustness figure the model must reach (repeatable; e.g. accuracy_under_attack>=0.6)")
    run.add_argument("--robustness-max-metric", action="append", metavar="NAME<=VALUE",
                     help="a robustness figure the model must not exceed (repeatable; e.g. flip_rate_noise<=0.1)")
    run.add_argument("--max-metric", action="append", metavar="NAME<=VALUE",
                     help="a metric the model must not exceed (repeatable; e.g. rmse<=3.5)")
    run.add_argument("--identity", choices=["local", "gcp"], default="local",
                     help="who the steps run as: local (the local user; no metadata server) or gcp "
                          "(Application Default Credentials: workload identity; key files refused)")
    run.add_argument("--allow-service-account-key", action="store_true",
                     help="accept a service-account key file (recorded in every link; verify reports it "
                          "unless the layout allows it)")
    run.add_argument("--signer", action="append", metavar="STEP=REF",
                     help="signer of one step: file:PATH, gcpkms://projects/.../cryptoKeyVersions/N, "
                          "sigstore:?identity=EMAIL (repeatable; default: development keys)")
    run.add_argument("--owner-signer", metavar="REF", help="the layout owner's signer (same references)")
    run.add_argument("--expect-principal", action="append", metavar="STEP=PRINCIPAL",
                     help="pin the principal a step must run as, in the layout (repeatable)")
    run.add_argument("--layout-allow-service-account-key", action="append", metavar="STEP|all",
                     help="the layout allows this step (or all) to use a service-account key file")
    run.add_argument("--runner", choices=["subprocess", "docker"], default="subprocess",
                     help="where each step runs: a subprocess here, or its container (kfp.local's DockerRunner: "
                          "non-root, no network, read-only root; Docker or podman's service at DOCKER_HOST)")
    run.add_argument("--image", metavar="REGISTRY/PATH@sha256:DIGEST",
                     help="with --runner docker: the component image, pinned by digest")
    run.add_argument("--ulimit", action="append", metavar="NAME=SOFT:HARD",
                     help="with --runner docker: a container resource limit, as docker run takes it (repeatable)")
    run.add_argument("--format", choices=["text", "json"], default="text")
    run.set_defaults(func=_cmd_run)

    vertex = sub.add_parser("vertex", help="Vertex AI setup").add_subparsers(dest="vertex_command", required=True)
    plan = vertex.add_parser("plan", help="print the exact gcloud commands of the reference setup (nothing is run)")
    plan.add_argument("--project", required=True)
    plan.add_argument("--region", required=True)
    plan.add_argument("--bucket", required=True, help="the pipeline root bucket (created by the plan)")
    plan.add_argument("--keyring", default="chainproof")
    plan.add_argument("--repository", default="chainproof", help="the Artifact Registry repository for the image")
    plan.set_defaults(func=_cmd_vertex_plan)

    comp = sub.add_parser("compile", help="compile the reference pipeline with every component on one digest-pinned image")
    comp.add_argument("--image", required=True, help="REGISTRY/PATH@sha256:DIGEST (a tag alone is refused)")
    comp.add_argument("--pipeline", metavar="FILE.py:NAME", help="your own pipeline (default: the reference pipeline)")
    comp.add_argument("-o", "--output", default="pipeline.yaml", help="the pipeline YAML to write (default: pipeline.yaml)")
    comp.add_argument("--target", choices=["vertex", "local"], default="vertex", help="where it will run (sets the SLSA builder id)")
    comp.add_argument("--step-service-account", action="append", metavar="STEP=EMAIL",
                      help="run STEP as a Vertex AI custom job under this service account (repeatable); the job's "
                           "own account needs iam.serviceAccounts.actAs on it, and submit pins it in the layout")
    comp.add_argument("--machine-type", default="n1-standard-4", help="machine type of those custom jobs")
    comp.add_argument("--format", choices=["text", "json"], default="text")
    comp.set_defaults(func=_cmd_compile)

    submit = sub.add_parser(
        "submit", help="owner-sign the layout, stage it, and submit a pipeline to Vertex AI (or Kubeflow Pipelines)",
        description="Owner-sign the run's layout outside the pipeline, stage it pinned by digest, and submit. "
                    "Every step's signer is checked against the layout first (gcpkms:// keys are fetched from "
                    "Cloud KMS): a mismatch exits 1 and nothing is submitted. Exit 3: missing or refused "
                    "credentials, or an unreachable service.",
        epilog="Required --param of the reference pipeline: " + ", ".join(SUBMIT_REQUIRED_PARAMS) + ". "
               "With --pipeline FILE.py:NAME: every parameter of NAME without a default (a missing one is named). "
               "Vertex AI needs --project, --region, --pipeline-root gs://..., --service-account, --owner-signer "
               "and one --signer per step; Kubeflow Pipelines needs --kfp-host instead of --project/--region.",
    )
    submit.add_argument("--project", help="the Google Cloud project (Vertex AI)")
    submit.add_argument("--region", help="the Vertex AI region, e.g. europe-west4")
    submit.add_argument("--pipeline-root", required=True, help="gs://BUCKET/PREFIX (Vertex AI; or s3://, gs:// with --kfp-host)")
    submit.add_argument("--service-account", help="the dedicated service account the job runs as (mandatory on Vertex AI)")
    submit.add_argument("--owner-signer", required=True, help="the owner's signer reference, e.g. gcpkms://.../owner/cryptoKeyVersions/1 or file:keys/owner.pem")
    submit.add_argument("--keys", help="folder of step public keys STEP.pub: needed for signers that are not gcpkms:// "
                                       "(a gcpkms:// key is fetched from Cloud KMS; a .pub given too must match it)")
    submit.add_argument("--template", default="pipeline.yaml", help="the compiled pipeline (default: pipeline.yaml)")
    submit.add_argument("--pipeline", metavar="FILE.py:NAME", help="compile and submit your own pipeline (with --image)")
    submit.add_argument("--image", help="with --pipeline: REGISTRY/PATH@sha256:DIGEST every component runs")
    submit.add_argument("--step-service-account", action="append", metavar="STEP=EMAIL",
                        help="with --pipeline: run STEP as a Vertex AI custom job under this account (repeatable)")
    submit.add_argument("--signer", action="append", metavar="STEP=REF",
                        help="signer of one step, e.g. gcpkms://projects/.../cryptoKeyVersions/1 (one per step; repeatable)")
    submit.add_argument("--param", action="append", metavar="NAME=VALUE", help="a pipeline parameter (repeatable)")
    submit.add_argument("--expect-principal", action="append", metavar="STEP=EMAIL",
                        help="pin the service account a step must run as, in the owner-signed layout (repeatable)")
    submit.add_argument("--display-name")
    submit.add_argument("--registry-uri", metavar="URI",
                        help="where register_model registers (default: vertex://projects/P/locations/R?artifacts=PIPELINE_ROOT/registry)")
    submit.add_argument("--serving-image", metavar="REF",
                        help="the registered model's serving image: Vertex AI's prebuilt sklearn-cpu.X-Y image by digest, "
                             "X.Y the scikit-learn version training uses (checked at registration)")
    submit.add_argument("--chainproof-serving-image", metavar="REF",
                        help="or chainproof's own serving image (image/Dockerfile target serving) by digest")
    submit.add_argument("--wait", action="store_true",
                        help="follow the job (each state change), then verify the registered model against the owner key")
    submit.add_argument("--poll-seconds", type=float, default=20.0, help="with --wait: pause between two state checks")
    submit.add_argument("--timeout", type=float, default=24 * 3600.0, help="with --wait: give up after this many seconds")
    submit.add_argument("--kfp-host", metavar="URL", help="submit to this Kubeflow Pipelines API instead of Vertex AI")
    submit.add_argument("--format", choices=["text", "json"], default="text")
    submit.set_defaults(func=_cmd_submit)

    verify = sub.add_parser(
        "verify",
        help="verify an evidence bundle, or a registered version (vertex://projects/P/locations/L/models/ID@V, local://NAME@V), against a trusted owner key",
    )
    verify.add_argument("bundle", help="a bundle folder, vertex://projects/P/locations/L/models/ID@VERSION or local://NAME@VERSION")
    verify.add_argument("--registry", default="chainproof-work/registry", help="the local registry folder for local:// (default: ./chainproof-work/registry)")
    verify.add_argument("--owner-key", action="append", help="trusted owner public key PEM (repeatable); default: the trust store")
    verify.add_argument("--model", help="the model folder to check (default: the location bundle.json records)")
    verify.add_argument("--policy", help="the auditor's policy file (YAML or JSON): principals, keys, images, age, scans, attestations")
    verify.add_argument("--format", choices=["text", "json", "html"], default="text")
    verify.add_argument("-o", "--output", help="write the report to this file (any format)")
    verify.add_argument("--require-production-keys", action="store_true",
                        help="fail (exit 1) when any step or the owner key is a development key")
    verify.set_defaults(func=_cmd_verify)

    inspect = sub.add_parser("inspect", help="show a bundle's chain as a table (does not verify)")
    inspect.add_argument("bundle")
    inspect.add_argument("--format", choices=["text", "json", "html"], default="text")
    inspect.add_argument("-o", "--output", help="write the report to this file (any format)")
    inspect.set_defaults(func=_cmd_inspect)

    from chainproof.scan import cli as scan_cli

    scan_cli.add_parser(sub)
    from chainproof import card as card_cli

    card_cli.add_parser(sub)
    from chainproof import _cli_trust

    _cli_trust.add_parsers(sub, trust_dir=default_trust_dir, common=[])
    from chainproof import _cli_ingest

    _cli_ingest.add_parser(sub)
    from chainproof import supply_cli

    supply_cli.add_parsers(sub)
    from chainproof import serving_cli  # k8s, monitor, serve

    serving_cli.add_parsers(sub)
    _conventions(parser)
    return parser


def _conventions(parser: argparse.ArgumentParser) -> None:
    """Give every (sub)command ``--verbose`` and its own usage on a flag typo."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for sub in dict.fromkeys(action.choices.values()):
            if not any("--verbose" in a.option_strings for a in sub._actions):
                # SUPPRESS: a -v before the subcommand is not reset by the subcommand's default.
                sub.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                                 help="show tracebacks and debug logs")
            if sub.get_default("_usage_parser") is None:
                sub.set_defaults(_usage_parser=sub)
            _conventions(sub)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI.

    Args:
        argv: arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit code.
    """
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # The subcommand's own usage, not the top-level one (argparse exits 2).
        usage: argparse.ArgumentParser = getattr(args, "_usage_parser", None) or parser
        usage.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose >= 2 else logging.WARNING,
        format="%(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args))
    except ChainproofError as exc:
        fmt = getattr(args, "format", "text")
        if fmt == "json":
            _print_json({"verified": False, "error": exc.diagnostics(), "exit_code": exc.exit_code})
        print(f"FAIL: {exc.diagnostics()}", file=sys.stderr)
        if args.verbose >= 1:
            raise
        return exc.exit_code
    except KeyboardInterrupt:
        print("FAIL: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the backstop: one line, no traceback, unless --verbose
        if args.verbose >= 1:
            raise
        from chainproof._service_errors import classify_service_error

        service = classify_service_error(exc, command=str(getattr(args, "command", "")))
        if service is not None:
            print(f"FAIL: {service.diagnostics()}", file=sys.stderr)
            return service.exit_code
        detail = (str(exc).strip().splitlines() or [""])[0][:300]
        print(f"FAIL: internal error: {type(exc).__name__}: {detail} (rerun with --verbose for details)", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
