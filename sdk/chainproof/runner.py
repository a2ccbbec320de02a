"""Run the reference pipeline on one machine with ``kfp.local``.

Example:
    >>> from chainproof.runner import SAMPLE  # doctest: +SKIP
    >>> result = run_reference_pipeline(workdir=Path("chainproof-work"), trust_dir=Path("trust"))
    >>> result.verification.model_sha256 == result.model_sha256
    True

This is what ``chainproof run`` does: create development keys on the first run,
generate the layout from the pipeline and sign it with the owner key *outside*
the pipeline, pin it by digest, run every step with kfp's SubprocessRunner, and
verify the registered model's bundle against the trusted owner key at the end.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

from chainproof._exec import CONFIG_INPUT, escape_for_kfp_local
from chainproof.containers import ContainerRun
from chainproof.digests import check_sha256_hex
from chainproof.errors import ChainproofError, InputError, PolicyViolation, StepFailed
from chainproof.identity import IDENTITY_MODES, check_adc_file
from chainproof.policy import EXT_EXPECTED_PRINCIPALS, generate_layout, sign_layout
from chainproof.redaction import Redactor, redact_text
from chainproof.registry import LocalModelRegistry
from chainproof.signing import (
    KeyRing,
    TrustStore,
    add_roles,
    init_keys,
    load_public_key,
    load_signer,
    public_key_pem,
)
from chainproof.step import FAILURE_MARKER, IdentityPolicy, RunConfig
from chainproof.trust import trust_run_owner_key
from chainproof.verify import LAYOUT_FILE, VerificationResult, verify_bundle

__all__ = [
    "SAMPLE", "RunResult", "Sample", "StepFailed", "kfp_safe", "local_file_uri", "run_pipeline", "run_reference_pipeline",
]


@dataclass(frozen=True)
class Sample:
    """A dataset shipped with chainproof, pinned by digest.

    Attributes:
        file: the file name inside ``chainproof/data``.
        sha256: its pinned SHA-256.
        target: its label column.
        description: where it comes from and under which license.
    """

    file: str
    sha256: str
    target: str
    description: str

    def path(self) -> Path:
        """Return the installed file's path."""
        return Path(str(resources.files("chainproof") / "data" / self.file))


#: The built-in sample: the Wisconsin Diagnostic Breast Cancer data (569 rows,
#: 30 numeric features, label ``malignant``), as bundled with scikit-learn
#: (BSD-3-Clause); originally from the UCI Machine Learning Repository (CC BY 4.0).
SAMPLE = Sample(
    file="breast_cancer.csv",
    sha256="4a3c7b25bbe23b3746f1be7136452435d2d3eb921124d31aa194c2c19d69f376",
    target="malignant",
    description="Wisconsin Diagnostic Breast Cancer (UCI, CC BY 4.0) via scikit-learn (BSD-3-Clause)",
)

_SIGNER_PARAM = {
    "secure_ingest": "ingest_signer",
    "train_model": "train_signer",
    "sign_and_attest": "attest_signer",
    "verify_chain": "gate_signer",
    "register_model": "register_signer",
}


@dataclass(frozen=True)
class RunResult:
    """The outcome of one local run.

    Attributes:
        run_dir: this run's folder (layout, kfp outputs, log).
        bundle: the registered evidence bundle.
        model: the registered model folder.
        model_sha256: manifest digest of the model files.
        registered: the registry reference.
        owner_key: the owner public key file.
        verification: the final verification of the registered bundle.
        log: the pipeline log file.
        owner_trust: what happened to the owner key's trust (trusted now, already, or not).
    """

    run_dir: Path
    bundle: Path
    model: Path
    model_sha256: str
    registered: str
    owner_key: Path
    verification: VerificationResult
    log: Path
    owner_trust: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON summary ``chainproof run --format json`` prints."""
        return {
            "bundle": str(self.bundle),
            "model": str(self.model),
            "model_sha256": self.model_sha256,
            "registered": self.registered,
            "owner_key": str(self.owner_key),
            # A run that does not verify raises; this says the verified model is the registered one.
            "verified": self.verification.model_sha256 == self.model_sha256,
            "run_dir": str(self.run_dir),
            "log": str(self.log),
            "steps": [s.name for s in self.verification.steps],
            "metrics": self.metrics(),
            "owner_trust": self.owner_trust,
        }

    def metrics(self) -> dict[str, Any]:
        """Return the attested metrics of the run (every ``metrics/*.json`` of the bundle)."""
        found: dict[str, Any] = {}
        for path in sorted((self.bundle / "metrics").glob("*.json")):
            doc = json.loads(path.read_text())
            if isinstance(doc, dict):
                found.update(doc)
        return found


class _LogTap(io.TextIOBase):
    """Receives kfp.local's log output: keeps all of it, reports step transitions."""

    _START = re.compile(r"Executing task '?([A-Za-z0-9_-]+)'?")
    _END = re.compile(r"Task '?([A-Za-z0-9_-]+)'? finished with status (\w+)")
    _ANSI = re.compile(r"\x1b\[[0-9;]*m")

    def __init__(
        self, sink: io.TextIOBase, progress: Callable[[str, str], None] | None, redact: Callable[[str], str] = redact_text
    ) -> None:
        self._sink, self._progress, self._buffer, self._redact = sink, progress, "", redact
        self.failures: list[str] = []

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        clean = self._ANSI.sub("", text)
        self._buffer += clean
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            # Whole lines only, redacted: a URI split over two writes is still found.
            line = self._redact(line)
            self._sink.write(line + "\n")
            self._line(line)
        return len(text)

    def finish(self) -> None:
        """Write what remains of an unterminated last line (redacted)."""
        if self._buffer:
            self._sink.write(self._redact(self._buffer))
            self._buffer = ""

    def _line(self, line: str) -> None:
        if FAILURE_MARKER in line:
            self.failures.append(line.split(FAILURE_MARKER, 1)[1].strip())
        if self._progress is None:
            return
        if m := self._START.search(line):
            self._progress(m.group(1), "running")
        elif m := self._END.search(line):
            self._progress(m.group(1), m.group(2).lower())


def kfp_safe(text: str) -> str:
    """Return a URI or signer reference that survives ``kfp.local``'s command rewriting.

    kfp.local rewrites every ``python3`` in a task's command line, parameter values
    included (kfp 2.17, ``subprocess_task_handler.replace_python_executable``), which
    corrupts paths such as ``.venv/lib/python3.11/...``. Percent-encoding one character
    keeps the URI equal to the path (chainproof decodes ``file:`` URIs and references)
    and out of kfp's way. Pass parameters through this when you run your own pipeline
    with kfp.local.

    Args:
        text: a ``file://`` URI or ``file:`` signer reference (already percent-encoded).

    Returns:
        The same reference, with ``python3`` written ``python%33``.
    """
    return text.replace("python3", "python%33")


def local_file_uri(path: Path) -> str:
    """Return a ``file://`` URI for a local path (percent-encoded).

    Args:
        path: a local file or folder.

    Returns:
        The URI. :func:`run_pipeline` passes every parameter through kfp.local's
        rewriting of ``python3`` intact (see :func:`chainproof._exec.escape_for_kfp_local`).
    """
    return "file://" + quote(str(Path(path).absolute()))


def _ensure_keys(keys_dir: Path, roles: list[str]) -> KeyRing:
    if not (keys_dir / "keyring.json").exists():
        return init_keys(keys_dir, roles=roles, development=True)
    ring = KeyRing.load(keys_dir)
    missing = [r for r in roles if r not in ring.roles]
    if missing:
        # A pipeline of your own has its own steps: development keys are added for them.
        ring = add_roles(ring, missing)
    return ring


def _failure(tap: _LogTap, exc: BaseException, log: Path) -> ChainproofError:
    for line in tap.failures:
        m = re.match(r"([A-Za-z0-9_]+) exit=(\d): (.*)", line)
        if m:
            return StepFailed(m.group(1), m.group(3), int(m.group(2)))
    task = re.search(r"Inner task failed: '?([A-Za-z0-9_-]+)", re.sub(r"\x1b\[[0-9;]*m", "", str(exc)))
    name = task.group(1) if task else "pipeline"
    return StepFailed(name, f"failed without a chainproof diagnosis; see {log}", 1)


def _registered_reference(pipeline_dir: Path, tasks: list[str]) -> str:
    """Find what the registration tasks of a kfp.local run returned."""
    for task in tasks:
        for output in sorted(pipeline_dir.glob(f"*/{task}/executor_output.json")):
            doc = json.loads(output.read_text())
            value = (doc.get("parameterValues") or {}).get("Output")
            if value:
                return str(value)
    return ""


def run_pipeline(
    pipeline_func: Any,
    params: Mapping[str, Any],
    *,
    workdir: Path,
    trust_dir: Path,
    progress: Callable[[str, str], None] | None = None,
    identity: str = "local",
    allow_service_account_key: bool = False,
    adc_credentials_file: str | None = None,
    signers: Mapping[str, str] | None = None,
    owner_signer: str | None = None,
    expected_principals: Mapping[str, str] | None = None,
    layout_extensions: Mapping[str, Any] | None = None,
    advisories: str = "",
    container: ContainerRun | None = None,
) -> RunResult:
    """Run a pipeline built with :mod:`chainproof.dsl` locally and verify what it registered.

    Development keys are created for every task on the first run; the layout is
    derived from the pipeline's task graph, signed with the owner key here (outside the
    pipeline) and pinned by digest; kfp's SubprocessRunner runs every task; and the
    registered bundle is verified against the owner key at the end.

    Args:
        pipeline_func: the pipeline (``@chainproof.dsl.pipeline``).
        params: the pipeline's own parameters.
        workdir: keys, runs and the local registry live here.
        trust_dir: the trust store the owner key is added to.
        progress: called with (step, state) as steps start and finish.
        identity: ``local`` or ``gcp`` for every step.
        allow_service_account_key: accept a service-account key file (recorded in every link).
        adc_credentials_file: the file ``GOOGLE_APPLICATION_CREDENTIALS`` names; a
            service-account key there is refused before any step runs.
        signers: step name to signer reference; other steps use the development key ring.
        owner_signer: the layout owner's signer reference (default: the key ring's owner key).
        expected_principals: step name to the principal it must run as.
        layout_extensions: further chainproof layout extensions.
        advisories: an OSV advisory folder; the signing step records a vulnerability scan of
            the environment against it (beside the SBOM it always records).
        container: run every step in this digest-pinned image (kfp.local's DockerRunner,
            hardened: see :mod:`chainproof.containers`) instead of in subprocesses.

    Returns:
        The verified run.

    Raises:
        StepFailed: a step refused its input or failed (the message is the step's).
        InputError: the pipeline cannot be made into a sound layout, or bad arguments.
        VerificationError: the registered bundle does not verify.
        ServiceError: ``container`` is given and the container engine is unreachable.

    Side effects:
        Creates development keys, writes under ``workdir``, adds the owner key to
        ``trust_dir``, and runs each task in a subprocess.
    """
    import kfp.local

    from chainproof.dsl import derive_graph

    if identity not in IDENTITY_MODES:
        raise InputError(f"--identity {identity!r}: expected one of {', '.join(IDENTITY_MODES)}")
    graph = derive_graph(pipeline_func)
    step_names = graph.step_names
    chosen = dict(signers or {})
    for what, given in (("--signer", chosen), ("--expect-principal", dict(expected_principals or {}))):
        unknown = sorted(set(given) - set(step_names))
        if unknown:
            raise InputError(f"{what}: unknown step(s) {', '.join(unknown)} (steps: {', '.join(step_names)})")
    missing = sorted(k for k, v in graph.parameters.items() if k not in params and v is not None and k in _required(pipeline_func))
    if missing:
        raise InputError(f"pipeline {graph.name}: missing parameter(s) {', '.join(missing)} (give them with --param NAME=VALUE)")
    # Before any step runs: ADC pointing at a service-account key file is refused here too.
    if adc_credentials_file:
        check_adc_file(adc_credentials_file, allow_service_account_key=allow_service_account_key)

    workdir = workdir.absolute()
    if "python3" in str(workdir):
        # kfp.local rewrites "python3" everywhere in a task's command line, its output paths too.
        raise InputError(f"--workdir {workdir}: kfp.local cannot run under a path that contains 'python3'; choose another")
    workdir.mkdir(parents=True, exist_ok=True)
    ring_roles = [r for r in ["owner", *step_names] if r not in chosen and not (r == "owner" and owner_signer)]
    # Only a key this invocation creates is trusted: a keys/ folder that came with a clone is not.
    owner_created_now = "owner" in ring_roles and not (workdir / "keys" / "keyring.json").exists()
    ring = _ensure_keys(workdir / "keys", ring_roles) if ring_roles else None
    references = {step: chosen.get(step) or ring.signer_reference(step) for step in step_names}  # type: ignore[union-attr]
    owner = load_signer(owner_signer or ring.signer_reference("owner"))  # type: ignore[union-attr]
    # Each functionary's public key is fetched once, here, and pinned in the layout.
    functionaries = {
        step: load_public_key(ring.public_key_path(step)) if step not in chosen else load_signer(ref).public_key  # type: ignore[union-attr]
        for step, ref in references.items()
    }
    extensions: dict[str, Any] = {**graph.extensions(), **dict(layout_extensions or {})}
    if expected_principals:
        extensions[EXT_EXPECTED_PRINCIPALS] = dict(expected_principals)

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    run_dir = workdir / "runs" / f"{stamp}-{uuid.uuid4().hex[:6]}"
    run_dir.mkdir(parents=True)
    # The owner signs the layout here, outside the pipeline; steps only see its digest.
    layout_bytes = sign_layout(generate_layout(graph.steps, functionaries, extensions=extensions), owner)
    layout_path = run_dir / LAYOUT_FILE
    layout_path.write_bytes(layout_bytes)
    owner_trust = trust_run_owner_key(TrustStore(trust_dir), owner.public_key, created_now=owner_created_now,
                                      keys_dir=workdir / "keys" if not owner_signer else None)
    if owner_signer:
        owner_key_path = run_dir / "owner.pub"
        owner_key_path.write_text(public_key_pem(owner.public_key))
    else:
        owner_key_path = ring.public_key_path("owner")  # type: ignore[union-attr]

    config = RunConfig(
        layout_uri=local_file_uri(layout_path),
        layout_sha256=hashlib.sha256(layout_bytes).hexdigest(),
        signers=dict(references),
        run=uuid.uuid4().hex,
        identity=IdentityPolicy(mode=identity, allow_service_account_key=allow_service_account_key),
        owner_public_key=public_key_pem(owner.public_key),
        registry_uri=local_file_uri(workdir / "registry"),
        advisories=str(Path(advisories).absolute()) if advisories else "",
    )
    log_path = run_dir / "pipeline.log"
    pipeline_dir = run_dir / "pipeline"
    with open(log_path, "w", encoding="utf-8") as log:
        # Credentials in any parameter (a pre-signed URI, a password) never reach the log.
        secrets = [v for v in params.values() if isinstance(v, str) and v]
        tap = _LogTap(log, progress, Redactor(secrets, encodings=[escape_for_kfp_local]))
        with contextlib.redirect_stdout(tap):
            if container is None:
                kfp_runner: Any = kfp.local.SubprocessRunner(use_venv=False)
                images: Any = contextlib.nullcontext()
            else:
                from chainproof.containers import docker_runner, images_bound

                images = images_bound(pipeline_func, container.image)
                kfp_runner = docker_runner(
                    container, run_dir=run_dir, pipeline_root=pipeline_dir, registry_dir=workdir / "registry",
                    layout_path=layout_path, signers=references, params=params,
                    extra_paths=[Path(advisories)] if advisories else [],
                )
            kfp.local.init(runner=kfp_runner, pipeline_root=str(pipeline_dir), raise_on_error=True)
            # kfp.local rewrites "python3" in parameter values (venv paths!): escape them for it.
            values = {k: escape_for_kfp_local(v) if isinstance(v, str) else v for k, v in params.items()}
            values[CONFIG_INPUT] = escape_for_kfp_local(config.to_json())
            try:
                with images:
                    pipeline_func(**values)
            except RuntimeError as exc:
                raise _failure(tap, exc, log_path) from None
            except ValueError as exc:
                # kfp's DockerRunner reports a container that was removed before it could be
                # waited on as a success; the next task then finds no outputs (kfp's only signal).
                vanished = re.search(r"but task '([A-Za-z0-9_-]+)' not found", str(exc))
                if container is None or vanished is None:
                    raise
                raise StepFailed(vanished.group(1).replace("-", "_"),
                                 f"its container exited without its outputs; see {log_path}", 1) from None
            finally:
                tap.finish()
    roles = graph.graph["roles"]
    registers = [step.replace("_", "-") for step in step_names if roles.get(step) == "register"]
    reference = _registered_reference(pipeline_dir, registers)
    if not reference:
        raise InputError(f"pipeline {graph.name}: no task registered a model (add chainproof's register_model)")
    registered = LocalModelRegistry(workdir / "registry").resolve(reference)
    try:
        verification = verify_bundle(registered.bundle_location, trusted_owner_keys={owner.keyid: owner.public_key})
    except PolicyViolation as exc:
        raise PolicyViolation(
            f"{registered.bundle_location}: registered {reference}, but its chain breaks the layout's "
            f"identity policy: {exc}"
        ) from exc
    return RunResult(
        run_dir=run_dir,
        bundle=Path(registered.bundle_location),
        model=Path(registered.model_location),
        model_sha256=registered.model_sha256,
        registered=reference,
        owner_key=owner_key_path,
        verification=verification,
        log=log_path,
        owner_trust=owner_trust,
    )


def _required(pipeline_func: Any) -> set[str]:
    spec = pipeline_func.component_spec.inputs or {}
    return {name for name, item in spec.items() if not item.optional and name != CONFIG_INPUT}


def run_reference_pipeline(
    *,
    workdir: Path,
    trust_dir: Path,
    data: Path | str | None = None,
    sha256: str | None = None,
    target: str | None = None,
    model_name: str = "chainproof-model",
    estimator: str = "random_forest",
    hyperparameters: str = "{}",
    progress: Callable[[str, str], None] | None = None,
    identity: str = "local",
    allow_service_account_key: bool = False,
    adc_credentials_file: str | None = None,
    signers: Mapping[str, str] | None = None,
    owner_signer: str | None = None,
    expected_principals: Mapping[str, str] | None = None,
    layout_extensions: Mapping[str, Any] | None = None,
    tabular_schema: str = "",
    drop: str = "",
    task: str = "classification",
    min_metrics: str = "",
    max_metrics: str = "",
    advisories: str = "",
    robustness_min_metrics: str = "",
    robustness_max_metrics: str = "",
    container: ContainerRun | None = None,
) -> RunResult:
    """Run the reference pipeline locally and verify what it registered.

    Args:
        workdir: keys, runs and the local registry live here.
        trust_dir: the trust store the owner key is added to.
        data: the user's CSV: a path or a ``gs://``, ``https://``, ``s3://`` or ``file://`` URI
            (default: the built-in sample).
        sha256: the pinned SHA-256 of ``data`` (mandatory with ``data``).
        target: the label column of ``data``.
        model_name: the registry model name.
        estimator: the scikit-learn estimator name.
        hyperparameters: estimator parameters as a JSON object.
        tabular_schema: a JSON schema the CSV must match (columns, types, ranges).
        progress: called with (step, state) as steps start and finish.
        identity: ``local`` (every step records the local user) or ``gcp`` (every step
            resolves Application Default Credentials; key files refused).
        allow_service_account_key: accept a service-account key file (recorded in every
            link; the final verification reports it unless the layout allows it).
        adc_credentials_file: the file ``GOOGLE_APPLICATION_CREDENTIALS`` names (the CLI
            reads the variable); a service-account key there is refused before any step runs.
        signers: step name to signer reference (``file:``, ``gcpkms://``, ``sigstore:``);
            steps not named use the development key ring under ``workdir/keys``.
        owner_signer: the layout owner's signer reference (default: the key ring's owner key).
        expected_principals: step name to the principal it must run as (a layout extension).
        layout_extensions: further chainproof layout extensions (``allow_service_account_keys``).
        drop: columns that are not features (comma-separated).
        task: ``classification``, ``regression`` or ``auto``.
        min_metrics: metric minimums the gate enforces (``roc_auc>=0.8``), signed into the layout.
        max_metrics: metric maximums (``rmse<=3``), signed into the layout.
        advisories: an OSV advisory folder the environment is scanned against.
        robustness_min_metrics: robustness minimums (``accuracy_under_attack>=0.6``).
        robustness_max_metrics: robustness maximums (``flip_rate_noise<=0.1``).
        container: run every step in this digest-pinned image (see :func:`run_pipeline`).

    Returns:
        The verified run.

    Raises:
        StepFailed: a step refused its input or its credentials (the message is the step's).
        CredentialRefused: ``adc_credentials_file`` is a service-account key (no step ran).
        PolicyViolation: the run registered a model whose chain breaks the layout's identity
            policy (for example a recorded key-file override); the message names the bundle.
        VerificationError: the registered bundle does not verify.
        InputError: bad arguments.

    Side effects:
        Creates development keys on the first run, writes under ``workdir``, adds the
        owner key to ``trust_dir`` only when this invocation created it, and runs each
        step in a subprocess.
    """
    from chainproof.pipelines import zero_trust_training

    if data is None:
        if sha256 or target:
            raise InputError("--sha256 and --target go with --data")
        source_uri, pinned, target_column = local_file_uri(SAMPLE.path()), SAMPLE.sha256, SAMPLE.target
    else:
        if not sha256 or not target:
            raise InputError("--data needs --sha256 (the pinned digest) and --target (the label column)")
        pinned = check_sha256_hex(sha256, what="--sha256")
        target_column = target
        text = str(data)
        if urlparse(text).scheme in ("gs", "https", "s3", "http"):
            source_uri = text
        else:
            local = Path(urlparse(text).path if text.startswith("file://") else text).absolute()
            if not local.exists():
                raise InputError(f"{text}: no such file")
            source_uri = local_file_uri(local)

    params = {
        "source_uri": source_uri,
        "expected_sha256": pinned,
        "target_column": target_column,
        "model_name": model_name,
        "estimator": estimator,
        "hyperparameters": hyperparameters,
        "tabular_schema": tabular_schema,
        "drop": drop,
        "task": task,
        "robustness_min_metrics": robustness_min_metrics,
        "robustness_max_metrics": robustness_max_metrics,
    }
    extensions = dict(layout_extensions or {})
    if min_metrics.strip() or max_metrics.strip():
        from chainproof.steps import EXT_METRIC_THRESHOLDS
        from chainproof.thresholds import format_thresholds, parse_thresholds

        # The owner's thresholds are signed into the layout: no task parameter can lower them.
        extensions[EXT_METRIC_THRESHOLDS] = {
            "min": format_thresholds(parse_thresholds(min_metrics, kind="min", what="--min-metric")),
            "max": format_thresholds(parse_thresholds(max_metrics, kind="max", what="--max-metric")),
        }
    return run_pipeline(
        zero_trust_training, params, workdir=workdir, trust_dir=trust_dir, progress=progress, identity=identity,
        allow_service_account_key=allow_service_account_key, adc_credentials_file=adc_credentials_file,
        signers=signers, owner_signer=owner_signer, expected_principals=expected_principals,
        layout_extensions=extensions, advisories=advisories, container=container,
    )
