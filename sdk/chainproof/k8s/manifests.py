"""Hardened Kubernetes manifests for ``chainproof serve`` and the checks that keep them hardened.

``render_manifests`` writes a Namespace labelled for Pod Security Admission ``restricted`` (enforce, audit and
warn, pinned version), a ServiceAccount without token automount, a Deployment, a Service and NetworkPolicies
(default deny of ingress and egress, ingress only to the serving port, and egress only to the given CIDRs when
the model is fetched at startup). A NetworkPolicy selects pods, not containers: the egress allowed for the
fetching init container is allowed for the whole pod.

``check_documents`` runs the Pod Security Standards check (``chainproof.k8s.pss``) on every pod-bearing
document and, with ``hardening=True``, the project's further rules: image by digest, read-only root
filesystem, no service account token, a default-deny NetworkPolicy for ingress and egress.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml

from chainproof.errors import InputError
from chainproof.k8s.pss import LATEST, Version, Violation, check_pod, pod_spec_of

__all__ = ["ManifestOptions", "Finding", "render_manifests", "check_documents", "load_documents",
           "model_name_from_ref", "PSA_VERSION"]

PSA_VERSION = f"v{LATEST[0]}.{LATEST[1]}"
_DIGEST_RE = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")
UID = 10001


@dataclass(frozen=True)
class ManifestOptions:
    """What the manifests describe."""

    ref: str
    image: str
    namespace: str = "chainproof-serving"
    model_source: str | None = None
    model_sha256: str | None = None
    egress_cidrs: tuple[str, ...] = ()
    port: int = 8080
    replicas: int = 2
    cpu: str = "500m"
    memory: str = "1Gi"


@dataclass(frozen=True)
class Finding:
    """A violation located in one document of a manifest set."""

    document: str
    violation: Violation

    def __str__(self) -> str:
        return f"{self.document}: {self.violation}"


def model_name_from_ref(ref: str) -> str:
    """A DNS-1123 name for the served model from its registry reference or bundle path."""
    m = re.fullmatch(r"local://([^@/]+)@[0-9]+", ref)
    base = m.group(1) if m else ref.rstrip("/").rsplit("/", 1)[-1].split("@")[0]
    name = re.sub(r"[^a-z0-9-]+", "-", base.lower()).strip("-")[:50].strip("-")
    if not name:
        raise InputError(f"{ref}: expected a model reference with a name, found none")
    return name


def _security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def render_manifests(opts: ManifestOptions) -> list[dict[str, Any]]:
    """The manifest documents, in apply order.

    Raises:
        InputError: the image is not pinned by digest, or egress CIDRs are given without a model source.
    """
    if not _DIGEST_RE.match(opts.image):
        raise InputError(f"--image: expected IMAGE@sha256:<64 hex>, found {opts.image!r}")
    if opts.egress_cidrs and not opts.model_source:
        raise InputError("--egress-cidr: expected --model-source (egress is only opened to fetch the model)")
    if opts.model_source and not opts.egress_cidrs:
        raise InputError("--model-source: expected at least one --egress-cidr for the fetch, found none")
    if opts.model_source and not re.fullmatch(r"[0-9a-f]{64}", opts.model_sha256 or ""):
        raise InputError(f"--model-sha256: expected the pinned 64-hex SHA-256 of the fetched model, "
                         f"found {opts.model_sha256!r}")
    name = model_name_from_ref(opts.ref)
    ns = opts.namespace
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "chainproof"}
    psa = {}
    for mode in ("enforce", "audit", "warn"):
        psa[f"pod-security.kubernetes.io/{mode}"] = "restricted"
        psa[f"pod-security.kubernetes.io/{mode}-version"] = PSA_VERSION
    docs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": psa}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns},
         "automountServiceAccountToken": False},
    ]
    volumes = [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
               {"name": "trust", "emptyDir": {"sizeLimit": "16Mi"}},
               {"name": "model", "emptyDir": {"sizeLimit": "4Gi"}}]
    mounts = [{"name": "tmp", "mountPath": "/tmp"}, {"name": "trust", "mountPath": "/var/run/chainproof/trust"},
              {"name": "model", "mountPath": "/var/run/chainproof/model"}]
    resources = {"requests": {"cpu": opts.cpu, "memory": opts.memory},
                 "limits": {"cpu": opts.cpu, "memory": opts.memory, "ephemeral-storage": "5Gi"}}
    args = ["serve", opts.ref, "--port", str(opts.port)]
    init: list[dict[str, Any]] = []
    if opts.model_source:
        init.append({
            "name": "fetch-model", "image": opts.image,
            "args": ["ingest", opts.model_source, "-o", "/var/run/chainproof/model/",
                     "--sha256", str(opts.model_sha256)],
            "securityContext": _security_context(), "volumeMounts": mounts, "resources": resources,
        })
        args = ["serve", opts.ref, "--model", "/var/run/chainproof/model", "--port", str(opts.port)]
    probe = {"httpGet": {"path": f"/v2/models/{name}/ready", "port": opts.port}}
    container = {
        "name": "server", "image": opts.image, "args": args,
        "ports": [{"name": "http", "containerPort": opts.port, "protocol": "TCP"}],
        "securityContext": _security_context(), "volumeMounts": mounts, "resources": resources,
        "readinessProbe": {**probe, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": opts.port}, "periodSeconds": 10},
        "startupProbe": {**probe, "periodSeconds": 5, "failureThreshold": 60},
    }
    pod_spec: dict[str, Any] = {
        "serviceAccountName": name, "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container], "volumes": volumes,
    }
    if init:
        pod_spec["initContainers"] = init
    docs.append({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"replicas": opts.replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": pod_spec}},
    })
    docs.append({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"selector": labels, "ports": [{"name": "http", "port": opts.port, "targetPort": "http",
                                                "protocol": "TCP"}]},
    })
    docs.append({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "default-deny", "namespace": ns},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
    })
    docs.append({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": f"{name}-ingress", "namespace": ns},
        "spec": {"podSelector": {"matchLabels": labels}, "policyTypes": ["Ingress"],
                 "ingress": [{"ports": [{"protocol": "TCP", "port": opts.port}]}]},
    })
    if opts.model_source:
        docs.append({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": f"{name}-fetch-egress", "namespace": ns,
                         "annotations": {"chainproof.dev/note": "applies to the whole pod, not only the init container"}},
            "spec": {"podSelector": {"matchLabels": labels}, "policyTypes": ["Egress"],
                     "egress": [{"to": [{"ipBlock": {"cidr": c}} for c in opts.egress_cidrs],
                                 "ports": [{"protocol": "TCP", "port": 443}]}]},
        })
    return docs


def dump(docs: Iterable[dict[str, Any]]) -> str:
    """One multi-document YAML."""
    return str(yaml.safe_dump_all(list(docs), sort_keys=False))


def load_documents(path: str) -> list[dict[str, Any]]:
    """Every non-empty YAML document of a file.

    Raises:
        InputError: the file is unreadable or not YAML mappings.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            docs = [d for d in yaml.safe_load_all(fh) if d is not None]
    except (OSError, yaml.YAMLError) as exc:
        detail = (str(exc).splitlines() or [""])[0]
        raise InputError(f"{path}: expected Kubernetes YAML, found an unreadable file ({detail})") from exc
    for i, d in enumerate(docs):
        if not isinstance(d, dict):
            raise InputError(f"{path}: document {i}: expected a mapping, found {type(d).__name__}")
    return docs


def _doc_name(d: dict[str, Any]) -> str:
    return f"{d.get('kind')}/{(d.get('metadata') or {}).get('name')}"


def _hardening(docs: list[dict[str, Any]]) -> list[Finding]:
    out: list[Finding] = []
    workloads = []
    for d in docs:
        found = pod_spec_of(d)
        if found is None:
            continue
        prefix, meta, spec = found
        workloads.append(d)
        where = _doc_name(d)
        if spec.get("automountServiceAccountToken") is not False:
            out.append(Finding(where, Violation("serviceAccountToken", f"{prefix}spec.automountServiceAccountToken",
                                                str(spec.get("automountServiceAccountToken", "unset")).lower())))
        for kind in ("initContainers", "containers"):
            for i, c in enumerate(spec.get(kind) or []):
                path = f"{prefix}spec.{kind}[{i}]"
                if not _DIGEST_RE.match(str(c.get("image", ""))):
                    out.append(Finding(where, Violation("imageDigest", f"{path}.image", str(c.get("image")))))
                if (c.get("securityContext") or {}).get("readOnlyRootFilesystem") is not True:
                    out.append(Finding(where, Violation(
                        "readOnlyRootFilesystem", f"{path}.securityContext.readOnlyRootFilesystem",
                        str((c.get("securityContext") or {}).get("readOnlyRootFilesystem", "unset")).lower())))
    if workloads:
        for direction in ("Ingress", "Egress"):
            deny = [d for d in docs if d.get("kind") == "NetworkPolicy"
                    and ((d.get("spec") or {}).get("podSelector") or {}) == {}
                    and direction in ((d.get("spec") or {}).get("policyTypes") or [])
                    and not (d.get("spec") or {}).get(direction.lower())]
            if not deny:
                out.append(Finding("NetworkPolicy/*", Violation(
                    "defaultDeny", f"NetworkPolicy.spec.policyTypes[{direction}]", "no default deny")))
    for d in docs:
        if d.get("kind") == "ServiceAccount" and d.get("automountServiceAccountToken") is not False:
            out.append(Finding(_doc_name(d), Violation("serviceAccountToken", "automountServiceAccountToken",
                                                       str(d.get("automountServiceAccountToken", "unset")).lower())))
        if d.get("kind") == "Namespace":
            labels = (d.get("metadata") or {}).get("labels") or {}
            for mode in ("enforce", "audit", "warn"):
                key = f"pod-security.kubernetes.io/{mode}"
                if labels.get(key) != "restricted":
                    out.append(Finding(_doc_name(d), Violation("podSecurityAdmission", f"metadata.labels[{key}]",
                                                               str(labels.get(key, "unset")))))
                if not labels.get(f"{key}-version") or labels.get(f"{key}-version") == "latest":
                    out.append(Finding(_doc_name(d), Violation(
                        "podSecurityAdmission", f"metadata.labels[{key}-version]",
                        str(labels.get(f"{key}-version", "unset")))))
    return out


def check_documents(docs: list[dict[str, Any]], *, level: str = "restricted", version: Version = LATEST,
                    hardening: bool = False) -> list[Finding]:
    """Every Pod Security Standards violation (and, with ``hardening``, every weakening) in the documents."""
    out: list[Finding] = []
    for d in docs:
        found = pod_spec_of(d)
        if found is None:
            continue
        prefix, meta, spec = found
        for v in check_pod(meta, spec, level=level, version=version):
            out.append(Finding(_doc_name(d), Violation(v.check, prefix + v.field, v.found)))
    if hardening:
        out.extend(_hardening(docs))
    return out
