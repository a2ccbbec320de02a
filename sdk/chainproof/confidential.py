"""Confidential nodes: require them for KFP on GKE, refuse the requirement where it cannot hold,
and record what confidentiality evidence a step can see.

Example:
    >>> from chainproof.confidential import CONFIDENTIAL_NODE_LABEL, read_confidential_evidence
    >>> CONFIDENTIAL_NODE_LABEL
    'cloud.google.com/gke-confidential-nodes'
    >>> read_confidential_evidence(root="/nonexistent", metadata_host=None)["technology"]
    'none'

- :func:`confidential` wraps a pipeline function so that every container task it creates gets
  the node selector ``cloud.google.com/gke-confidential-nodes: "true"`` and the matching
  toleration, through ``kfp-kubernetes`` (``add_node_selector``, ``add_toleration``);
  :func:`require_confidential_nodes` does it for one task.
- :func:`compile_confidential` compiles for a target: for ``gke`` it checks that *every*
  executor of the compiled pipeline carries the selector and the toleration (a sub-pipeline
  that was not wrapped is refused, not silently left on ordinary nodes); for ``vertex`` it
  refuses with one line, because Vertex AI Pipelines does not apply Kubernetes node selectors
  or tolerations, so the requirement could not be enforced there. Nothing is left at the
  output path when it refuses.
- :func:`read_confidential_evidence` returns a record of what the step itself can observe:
  CPU flags of memory encryption (``sev``, ``sev_es``, ``sev_snp``, ``tdx_guest``), the guest
  devices (``/dev/sev-guest``, ``/dev/tdx_guest``, ``/dev/tpm0``) and, when asked, the machine
  type from the metadata server. It is self-reported by the guest, **not** a remote
  attestation: it is recorded as such (``attested: false``).
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from chainproof.errors import InputError, PolicyViolation

__all__ = [
    "CONFIDENTIAL_NODE_LABEL",
    "ConfidentialUnsupported",
    "NotConfidential",
    "check_confidential_template",
    "compile_confidential",
    "confidential",
    "read_confidential_evidence",
    "require_confidential_nodes",
]

#: The node label (and taint key) of Confidential GKE Nodes.
CONFIDENTIAL_NODE_LABEL = "cloud.google.com/gke-confidential-nodes"

_ENCRYPTION_FLAGS = ("sev", "sev_es", "sev_snp", "tdx_guest")
_DEVICES = {"sev-guest": "/dev/sev-guest", "tdx-guest": "/dev/tdx_guest", "tpm": "/dev/tpm0"}

_VERTEX_REFUSAL = (
    "{pipeline}: confidential nodes are required, but Vertex AI Pipelines does not apply Kubernetes node "
    "selectors or tolerations (kfp-kubernetes platform config), so it cannot enforce them; compile with "
    "target gke for KFP on GKE with Confidential GKE Nodes, or drop the requirement"
)


class ConfidentialUnsupported(InputError):
    """The target cannot enforce confidential nodes.

    Attributes:
        pipeline: the pipeline's name.
        target: the refused target.
    """

    def __init__(self, pipeline: str, target: str) -> None:
        super().__init__(_VERTEX_REFUSAL.format(pipeline=pipeline))
        self.pipeline, self.target = pipeline, target


class NotConfidential(PolicyViolation):
    """A compiled pipeline has tasks that are not pinned to confidential nodes.

    Attributes:
        template: the compiled pipeline.
        executors: the executors without the selector and toleration.
    """

    def __init__(self, template: str, executors: list[str]) -> None:
        super().__init__(
            f"{template}: expected every task on confidential nodes ({CONFIDENTIAL_NODE_LABEL}=true selector "
            f"and toleration), found {len(executors)} without: {', '.join(executors[:5])}"
        )
        self.template, self.executors = template, executors


def _kubernetes() -> Any:
    try:
        from kfp import kubernetes
    except ImportError as exc:
        raise InputError("kfp-kubernetes is not installed: pip install 'chainproof[gke]'") from exc
    return kubernetes


def require_confidential_nodes(task: Any) -> Any:
    """Pin one KFP task to Confidential GKE Nodes (selector and toleration, via kfp-kubernetes).

    Args:
        task: a ``kfp.dsl.PipelineTask`` of a container component.

    Returns:
        The task.
    """
    kubernetes = _kubernetes()
    kubernetes.add_node_selector(task, label_key=CONFIDENTIAL_NODE_LABEL, label_value="true")
    kubernetes.add_toleration(task, key=CONFIDENTIAL_NODE_LABEL, operator="Equal", value="true", effect="NoSchedule")
    return task


def confidential(pipeline_func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a pipeline function: every container task it creates runs on confidential nodes.

    Put it under ``@dsl.pipeline``::

        @dsl.pipeline(name="training")
        @confidential
        def training(...): ...

    Tasks of a nested pipeline are that pipeline's own: wrap it too
    (:func:`compile_confidential` refuses a pipeline with any unpinned executor).
    """

    @functools.wraps(pipeline_func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from kfp.dsl import pipeline_context

        result = pipeline_func(*args, **kwargs)
        for task in list(pipeline_context.Pipeline.get_default_pipeline().tasks.values()):
            if getattr(task, "container_spec", None) is not None:
                require_confidential_nodes(task)
        return result

    wrapper.__chainproof_confidential__ = True  # type: ignore[attr-defined]
    return wrapper


def _documents(template: Path) -> list[Any]:
    import yaml

    try:
        return list(yaml.safe_load_all(template.read_text()))
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"{template}: not a compiled KFP pipeline ({type(exc).__name__})") from exc


def _pinned(executor: Mapping[str, Any]) -> bool:
    labels = (executor.get("nodeSelector") or {}).get("labels") or {}
    tolerations = executor.get("tolerations") or []
    tolerated = any(
        t.get("key") == CONFIDENTIAL_NODE_LABEL and t.get("value", "true") == "true"
        and t.get("operator", "Equal") in ("Equal", "Exists")
        for t in tolerations
    )
    return labels.get(CONFIDENTIAL_NODE_LABEL) == "true" and tolerated


def _executors(docs: list[Any]) -> tuple[list[str], dict[str, Any]]:
    spec = docs[0] if docs and isinstance(docs[0], Mapping) else {}
    names = sorted(((spec.get("deploymentSpec") or {}).get("executors") or {}).keys())
    platform: dict[str, Any] = {}
    for doc in docs[1:]:
        if isinstance(doc, Mapping):
            platform.update(
                ((doc.get("platforms") or {}).get("kubernetes") or {}).get("deploymentSpec", {}).get("executors") or {}
            )
    return names, platform


def check_confidential_template(template: Path) -> list[str]:
    """Check that every executor of a compiled pipeline is pinned to confidential nodes.

    Returns:
        The executor names.

    Raises:
        NotConfidential: an executor lacks the selector or the toleration.
        InputError: not a compiled pipeline.
    """
    names, platform = _executors(_documents(template))
    if not names:
        raise InputError(f"{template}: not a compiled KFP pipeline (no executors)")
    missing = [n for n in names if not _pinned(platform.get(n) or {})]
    if missing:
        raise NotConfidential(str(template), missing)
    return names


def _requests_confidential(docs: list[Any]) -> bool:
    _, platform = _executors(docs)
    return any(((e.get("nodeSelector") or {}).get("labels") or {}).get(CONFIDENTIAL_NODE_LABEL) for e in platform.values())


def compile_confidential(pipeline: Any, output: Path, *, target: str, require: bool = True) -> Path:
    """Compile a pipeline for ``gke`` or ``vertex``, enforcing the confidential-node requirement.

    Args:
        pipeline: a ``@dsl.pipeline`` (wrap its function with :func:`confidential`).
        output: the YAML to write.
        target: ``gke`` (KFP on GKE) or ``vertex`` (Vertex AI Pipelines).
        require: confidential nodes are required (default). With ``require=False`` a pipeline
            that nevertheless asks for them is still refused for ``vertex``.

    Returns:
        The written template.

    Raises:
        ConfidentialUnsupported: confidential nodes for ``vertex``.
        NotConfidential: a ``gke`` compile with an unpinned executor.
        InputError: an unknown target.
    """
    from kfp import compiler

    if target not in ("gke", "vertex"):
        raise InputError(f"target {target!r}: expected gke or vertex")
    name = getattr(pipeline, "name", None) or getattr(pipeline, "__name__", "pipeline")
    if target == "vertex" and require:
        raise ConfidentialUnsupported(str(name), target)
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".part.yaml")
    os.close(fd)
    try:
        compiler.Compiler().compile(pipeline, tmp)
        docs = _documents(Path(tmp))
        if target == "vertex" and _requests_confidential(docs):
            raise ConfidentialUnsupported(str(name), target)
        if target == "gke" and require:
            try:
                check_confidential_template(Path(tmp))
            except NotConfidential as exc:
                raise NotConfidential(str(output), exc.executors) from None
        os.replace(tmp, output)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return output


def _cpu_flags(root: Path) -> list[str]:
    try:
        text = (root / "proc" / "cpuinfo").read_text(errors="replace")
    except OSError:
        return []
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            flags.update(value.split())
    return sorted(flags & set(_ENCRYPTION_FLAGS))


def _metadata(host: str, *, timeout: float) -> dict[str, str]:
    import requests

    out: dict[str, str] = {}
    for key, path in (("machine_type", "instance/machine-type"), ("zone", "instance/zone")):
        try:
            response = requests.get(
                f"http://{host}/computeMetadata/v1/{path}", headers={"Metadata-Flavor": "Google"}, timeout=timeout
            )
        except requests.RequestException:
            return {"error": "metadata server unreachable"}
        if response.status_code == 200:
            out[key] = response.text.strip().rsplit("/", 1)[-1][:100]
    return out


def read_confidential_evidence(
    *, root: str | os.PathLike[str] = "/", metadata_host: str | None = "metadata.google.internal", timeout: float = 2.0
) -> dict[str, Any]:
    """Return the confidentiality evidence a step can read (self-reported, not attested).

    Args:
        root: the filesystem root to read ``proc/cpuinfo`` and ``dev/`` under (tests use a folder).
        metadata_host: the metadata server (``HOST[:PORT]``) to ask for the machine type and
            zone, or None not to ask.
        timeout: seconds per metadata request.

    Returns:
        ``{"technology": "sev-snp" | "sev-es" | "sev" | "tdx" | "none", "cpu_flags": [...],
        "devices": [...], "metadata": {...}, "attested": False}``.
    """
    base = Path(root)
    flags = _cpu_flags(base)
    devices = sorted(name for name, path in _DEVICES.items() if (base / path.lstrip("/")).exists())
    if "tdx_guest" in flags or "tdx-guest" in devices:
        technology = "tdx"
    elif "sev_snp" in flags or "sev-guest" in devices:
        technology = "sev-snp"
    elif "sev_es" in flags:
        technology = "sev-es"
    elif "sev" in flags:
        technology = "sev"
    else:
        technology = "none"
    record: dict[str, Any] = {
        "technology": technology,
        "cpu_flags": flags,
        "devices": devices,
        "attested": False,
        "note": "read by the guest itself; a remote attestation report is not part of this record",
    }
    if metadata_host:
        record["metadata"] = _metadata(metadata_host, timeout=timeout)
    return record
