"""Runtime of a :mod:`chainproof.dsl` component: zero trust around kfp's own executor.

Example (what a compiled component's command runs)::

    python3 -m chainproof._exec kfp.dsl.executor_main --executor_input '{...}' --function_to_execute f

Before the user's function runs, every input artifact is verified against the signed
link of the step that produced it (layout pinned by digest; see
:func:`chainproof.step.open_step`) and handed to the function as a private verified copy.
Afterwards the outputs are digested and the step's link is signed; the evidence chain
travels beside every output artifact (``<artifact path>.chainproof/``), so it is stored,
cached and handed on with the artifact by kfp.local and Vertex AI alike. Nothing here
touches kfp's build-time API (``_KFP_RUNTIME`` is set while components run).
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chainproof.errors import (
    ArtifactRefused,
    ChainError,
    ChainproofError,
    DigestMismatch,
    InputError,
)

if TYPE_CHECKING:
    from chainproof.step import StepContext

#: Hidden component inputs (added by :mod:`chainproof.dsl`, removed before kfp's executor sees them).
CONFIG_INPUT = "chainproof_config"
STEP_INPUT = "chainproof_step"
ROLE_INPUT = "chainproof_role"
HIDDEN_INPUTS = (CONFIG_INPUT, STEP_INPUT, ROLE_INPUT)

#: The folder beside an artifact that holds the evidence chain it came with.
SIDECAR_SUFFIX = ".chainproof"

_EVIDENCE_PREFIXES = ("attestations/", "reports/")
#: Output names whose files are evidence the bundle carries (see chainproof.verify.BUNDLED_PREFIXES).
_BUNDLED = ("attestations/", "reports/")

#: kfp.local rewrites every ``python3`` in a task's command line, parameter values
#: included (kfp 2.17, ``replace_python_executable``). Its runner hex-encodes string
#: values that hold it (hex digits cannot spell it) behind this prefix; decoded here.
LOCAL_ESCAPE = "chainproof-hex:"


def escape_for_kfp_local(value: str) -> str:
    """Return a string parameter that survives kfp.local's rewriting of ``python3``.

    Args:
        value: the parameter value.

    Returns:
        The value itself, or its hex encoding behind :data:`LOCAL_ESCAPE` when it holds
        ``python3`` (or starts with the prefix itself, so that no value is mistaken for an escape).
    """
    if "python3" in value or value.startswith(LOCAL_ESCAPE):
        return LOCAL_ESCAPE + value.encode("utf-8").hex()
    return value


def unescape(value: Any) -> Any:
    """Undo :func:`escape_for_kfp_local` (other values are returned as they are)."""
    if isinstance(value, str) and value.startswith(LOCAL_ESCAPE):
        try:
            return bytes.fromhex(value[len(LOCAL_ESCAPE):]).decode("utf-8")
        except ValueError as exc:
            raise InputError(f"a parameter value starts with {LOCAL_ESCAPE} but is not hex text") from exc
    return value


class ComponentFailed(ChainproofError):
    """The user's component raised or exited non-zero (its own failure, not a refused input)."""

    exit_code = 1

    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"step {step}: the component failed: {reason}")
        self.step, self.reason = step, reason


def artifact_path(uri: str) -> Path:
    """Return the local path of an artifact URI as kfp's executor computes it.

    Args:
        uri: the artifact URI (``gs://``, ``s3://``, ``minio://`` or a local path).

    Returns:
        The mounted path (``/gcs/...`` on Vertex AI) or the local path.
    """
    for scheme, mount in (("gs://", "/gcs/"), ("s3://", "/s3/"), ("minio://", "/minio/")):
        if uri.startswith(scheme):
            return Path(mount + uri[len(scheme):])
    return Path(uri[len("file://"):] if uri.startswith("file://") else uri)


def sidecar(path: Path) -> Path:
    """Return the evidence folder beside an artifact."""
    return path.with_name(path.name + SIDECAR_SUFFIX)


def canonical_metrics(metadata: Mapping[str, Any]) -> bytes:
    """Return a Metrics artifact's metadata as canonical JSON.

    Artifact metadata is a protobuf Struct on its way between steps: integers come
    back as floats. Numbers are written as floats so producer and consumer agree.

    Args:
        metadata: the metadata.

    Returns:
        Sorted, compact JSON bytes.
    """

    def norm(value: Any) -> Any:
        if isinstance(value, bool) or value is None or isinstance(value, str):
            return value
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, Mapping):
            return {str(k): norm(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [norm(v) for v in value]
        return str(value)

    return json.dumps(norm(dict(metadata)), sort_keys=True, separators=(",", ":")).encode()


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _receive_inputs(ctx: StepContext, artifacts: Mapping[str, Any], expected: Mapping[str, Any]) -> None:
    for name, entry in sorted(artifacts.items()):
        info = expected[name]
        producer, output, kind = str(info["from"]), str(info["output"]), str(info["kind"])
        if producer not in ctx.records:
            raise ChainError(ctx.step, f"input {name}: its producer {producer} has no verified link in the chain")
        attested = ctx.records[producer].products
        for artifact in entry.get("artifacts", []):
            path = artifact_path(str(artifact.get("uri", "")))
            if kind == "metrics":
                logical = f"metrics/{output}.json"
                actual = _sha256(canonical_metrics(artifact.get("metadata") or {}))
                if logical not in attested:
                    raise ArtifactRefused(logical, f"input {name}: not a product of {producer}")
                if actual != attested[logical]:
                    raise DigestMismatch(logical, attested[logical], actual, context=f"input {name}, attested by {producer}")
                ctx.materials[logical] = actual
            elif kind == "evidence":
                from chainproof.digests import digest_tree
                from chainproof.verify import check_artifacts

                received = digest_tree(path)
                wanted = {k: v for k, v in attested.items() if k.startswith(_EVIDENCE_PREFIXES)}
                check_artifacts(wanted, received, producer=producer, what=f"input {name}")
                ctx.materials.update(received)
            else:
                verified, _ = ctx.receive(output, path, producer=producer)
                # The function reads the verified private copy, never the shared store.
                artifact["uri"] = str(verified)


def _outputs(ctx: StepContext, artifacts: Mapping[str, Any], kinds: Mapping[str, str], output_file: str) -> None:
    written: dict[str, Any] = {}
    if output_file and Path(output_file).is_file():
        try:
            written = json.loads(Path(output_file).read_text()).get("artifacts", {}) or {}
        except ValueError as exc:
            raise ChainError(ctx.step, f"{output_file}: the executor output is not JSON") from exc
    own_evidence = {k for k in ctx.products if k.startswith(_EVIDENCE_PREFIXES)}
    for name, entry in sorted(artifacts.items()):
        kind = kinds.get(name, "files")
        for artifact in entry.get("artifacts", []):
            path = artifact_path(str(artifact.get("uri", "")))
            if kind == "none":
                continue
            if kind == "metrics":
                produced = (written.get(name) or {}).get("artifacts") or [{}]
                ctx.add_evidence(f"metrics/{name}.json", canonical_metrics(produced[0].get("metadata") or {}))
            elif kind == "evidence":
                path.mkdir(parents=True, exist_ok=True)
                for logical in sorted(own_evidence):
                    target = path / logical
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(ctx.chain / logical, target)
            else:
                if not path.exists():
                    raise ArtifactRefused(name, f"step {ctx.step}: the component did not write its output {path}")
                made = ctx.add_products(path, name)
                if f"{name}/" in _BUNDLED:
                    # reports/..., attestations/...: evidence that travels in the bundle too.
                    for logical in made:
                        target = ctx.chain / logical
                        target.parent.mkdir(parents=True, exist_ok=True)
                        source = path if path.is_file() else path / logical.split("/", 1)[1]
                        shutil.copyfile(source, target)


def _clean(artifacts: Mapping[str, Any]) -> None:
    # Nothing a later step could pick up: no output, no evidence beside it.
    for entry in artifacts.values():
        for artifact in entry.get("artifacts", []):
            path = artifact_path(str(artifact.get("uri", "")))
            for target in (path, sidecar(path)):
                if target.is_dir():
                    shutil.rmtree(target, ignore_errors=True)
                elif target.exists():
                    target.unlink()


def _delegate(argv: list[str], executor_input: Mapping[str, Any]) -> None:
    from kfp.dsl import executor_main

    args = list(argv)
    index = args.index("--executor_input")
    args[index + 1] = json.dumps(executor_input)
    saved = sys.argv
    sys.argv = ["kfp.dsl.executor_main", *args]
    try:
        executor_main.executor_main()
    finally:
        sys.argv = saved


@contextmanager
def _without_cloud_kms() -> Iterator[None]:
    # securesystemslib's signer package imports google.cloud.kms when it is installed
    # (~0.4 s of a step's cold start, measured); only gcpkms:// signers need it, and they
    # import it themselves later. Hide it while securesystemslib loads, then restore it.
    hidden = "google.cloud.kms" not in sys.modules
    if hidden:
        sys.modules["google.cloud.kms"] = None  # type: ignore[assignment]
    try:
        import securesystemslib.signer  # noqa: F401
    finally:
        if hidden:
            del sys.modules["google.cloud.kms"]
    yield


def _secrets(config: Any, params: Mapping[str, Any]) -> Any:
    """The secret scope a step with ``secret://`` references runs in (leases revoked at its end)."""
    from contextlib import nullcontext

    wanted = config.vault or any(isinstance(v, str) and v.startswith("secret://") for v in params.values())
    if not wanted:
        return nullcontext(None)
    from chainproof.secrets import VaultAuth, secret_scope

    vault = VaultAuth(**dict(config.vault)) if config.vault else None
    return secret_scope(vault=vault, gsm_endpoint=config.secret_manager_endpoint)


def run(argv: list[str]) -> None:
    """Run one component under zero trust.

    Args:
        argv: kfp's executor arguments (``--executor_input``, ``--function_to_execute``, ...).

    Raises:
        ChainproofError: an input was refused or the component failed; outputs are removed.
    """
    if "--executor_input" not in argv:
        raise InputError("chainproof._exec: no --executor_input argument")
    executor_input = json.loads(argv[argv.index("--executor_input") + 1])
    inputs = executor_input.setdefault("inputs", {})
    params = inputs.setdefault("parameterValues", {})
    for key in list(params):
        params[key] = unescape(params[key])
    text = str(params.pop(CONFIG_INPUT, "") or "")
    task = str(params.pop(STEP_INPUT, "") or "")
    params.pop(ROLE_INPUT, None)
    step = task.replace("-", "_")
    artifacts_in = inputs.get("artifacts", {}) or {}
    outputs = executor_input.get("outputs", {}) or {}
    artifacts_out = outputs.get("artifacts", {}) or {}
    if not step:
        raise InputError("chainproof._exec: the task name was not passed (chainproof_step)")
    try:
        signer = str((json.loads(text).get("signers") or {}).get(step, "")) if text.strip() else ""
    except (ValueError, AttributeError):
        signer = ""
    if not signer.startswith("gcpkms:"):
        with _without_cloud_kms():
            pass
    from chainproof.step import RunConfig, report_step_failure

    try:
        config = RunConfig.from_json(text, step=step)
    except ChainproofError as exc:
        report_step_failure(step, exc)
        raise
    from chainproof.policy import RUN_ID, pipeline_graph
    from chainproof.step import _CURRENT, open_step

    chains = []
    for _name, entry in sorted(artifacts_in.items()):
        for artifact in entry.get("artifacts", []):
            chains.append(sidecar(artifact_path(str(artifact.get("uri", "")))))
    try:
        with open_step(step, layout_sha256=config.layout_sha256, signer=config.signers.get(step, ""),
                       chains=[c for c in chains if c.is_dir()], layout_uri=config.layout_uri,
                       owner_public_key=config.owner_public_key, identity=config.identity) as ctx:
            ctx.settings = config
            missing = [str(c) for c in chains if not c.is_dir()]
            if missing:
                raise ChainError(step, f"input evidence {missing[0]} is missing: was the artifact made by a chainproof step?")
            graph = pipeline_graph(ctx.layout)
            if graph is None or step not in (graph.get("inputs") or {}):
                raise ChainError(step, "the layout was not derived from this pipeline (no such task in its graph)")
            expected = graph["inputs"][step]
            if sorted(expected) != sorted(artifacts_in):
                raise ChainError(step, f"received inputs {sorted(artifacts_in)}, but the layout expects {sorted(expected)}")
            if expected:
                ctx.run_material()
            else:
                ctx.add_evidence(RUN_ID, {"run": config.run, "layout_sha256": ctx.layout_sha256})
            run_doc = json.loads((ctx.chain / RUN_ID).read_text()) if (ctx.chain / RUN_ID).is_file() else {}
            if run_doc.get("run") != config.run:
                raise ChainError(step, f"{RUN_ID}: the chain belongs to run {run_doc.get('run')!r}, not to this run {config.run!r}")
            _receive_inputs(ctx, artifacts_in, expected)
            from chainproof.storage import redact_uri

            ctx.parameters.update({k: redact_uri(v) if isinstance(v, str) else v for k, v in sorted(params.items())})
            _CURRENT.append(ctx)
            scope = _secrets(config, params)
            try:
                with scope as opened:
                    _delegate(argv, executor_input)
                if opened is not None:
                    # The references and versions only: a value never reaches the link.
                    ctx.parameters["secrets"] = opened.records()
            except ChainproofError:
                raise
            except SystemExit as exc:
                if exc.code not in (0, None):
                    raise ComponentFailed(step, f"exited with status {exc.code}") from None
            except Exception as exc:  # the user's own code failed: say how, in one line
                first = (str(exc).strip().splitlines() or [""])[0][:300]
                raise ComponentFailed(step, f"{type(exc).__name__}: {first}") from exc
            finally:
                _CURRENT.pop()
            if ctx.signed is None:
                _outputs(ctx, artifacts_out, (graph.get("outputs") or {}).get(step, {}), str(outputs.get("outputFile", "")))
                ctx.sign()
            for entry in artifacts_out.values():
                for artifact in entry.get("artifacts", []):
                    target = sidecar(artifact_path(str(artifact.get("uri", ""))))
                    if target.exists():
                        shutil.rmtree(target)
                    shutil.copytree(ctx.chain, target)
    except BaseException:
        _clean(artifacts_out)
        raise


def main() -> None:
    """Entry point: ``python -m chainproof._exec kfp.dsl.executor_main ARGS...``."""
    argv = sys.argv[1:]
    if not argv or argv[0] != "kfp.dsl.executor_main":
        print("usage: python -m chainproof._exec kfp.dsl.executor_main --executor_input JSON ...", file=sys.stderr)
        raise SystemExit(2)
    try:
        run(argv[1:])
    except ChainproofError as exc:
        raise SystemExit(exc.exit_code) from None


if __name__ == "__main__":
    main()
