"""Pod Security Standards (baseline, restricted) evaluated offline, version by version.

Each check follows the upstream ``k8s.io/pod-security-admission/policy`` checks and is introduced at the
Kubernetes minor version upstream introduced it; a later version of a check replaces the earlier one. The
upstream admission fixtures (every version, pass and fail) are the test of this module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["Violation", "Version", "LEVELS", "LATEST", "check_pod", "pod_spec_of", "parse_version"]

LEVELS = ("baseline", "restricted")
LATEST = (1, 37)

Version = tuple[int, int]


@dataclass(frozen=True)
class Violation:
    """One failed control: the check's name, the field path and what was found there."""

    check: str
    field: str
    found: str

    def __str__(self) -> str:
        return f"{self.check}: {self.field} = {self.found}"


def parse_version(text: str) -> Version:
    """``latest``, ``v1.30`` or ``1.30`` to (1, 30)."""
    if text == "latest":
        return LATEST
    major, _, minor = text.lstrip("v").partition(".")
    try:
        return (int(major), int(minor))
    except ValueError as exc:
        raise ValueError(f"Pod Security version: expected latest or v1.N, found {text!r}") from exc


def _containers(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for kind in ("initContainers", "containers", "ephemeralContainers"):
        for i, c in enumerate(spec.get(kind) or []):
            yield f"spec.{kind}[{i}]", c or {}


def _sc(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("securityContext") or {}


def _is_windows(spec: dict[str, Any]) -> bool:
    return ((spec.get("os") or {}).get("name")) == "windows"


Check = Callable[[dict[str, Any], dict[str, Any], Version], Iterable[Violation]]


# ---------------------------------------------------------------- baseline

def _host_namespaces(meta: dict[str, Any], spec: dict[str, Any], v: Version) -> Iterator[Violation]:
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key) is True:
            yield Violation("hostNamespaces", f"spec.{key}", "true")


def _privileged(meta: dict[str, Any], spec: dict[str, Any], v: Version) -> Iterator[Violation]:
    for path, c in _containers(spec):
        if _sc(c).get("privileged") is True:
            yield Violation("privileged", f"{path}.securityContext.privileged", "true")


_BASELINE_CAPS = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                  "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}


def _capabilities_baseline(meta: dict[str, Any], spec: dict[str, Any], v: Version) -> Iterator[Violation]:
    for path, c in _containers(spec):
        for cap in (_sc(c).get("capabilities") or {}).get("add") or []:
            if cap not in _BASELINE_CAPS:
                yield Violation("capabilities", f"{path}.securityContext.capabilities.add", str(cap))


def _host_path_volumes(meta: dict[str, Any], spec: dict[str, Any], v: Version) -> Iterator[Violation]:
    for i, vol in enumerate(spec.get("volumes") or []):
        if vol.get("hostPath") is not None:
            yield Violation("hostPathVolumes", f"spec.volumes[{i}].hostPath", str(vol.get("name")))


def _host_ports(meta: dict[str, Any], spec: dict[str, Any], v: Version) -> Iterator[Violation]:
    for path, c in _containers(spec):
        for j, port in enumerate(c.get("ports") or []):
            if port.get("hostPort"):
                yield Violation("hostPorts", f"{path}.ports[{j}].hostPort", str(port["hostPort"]))


_APPARMOR_ANN = "container.apparmor.security.beta.kubernetes.io/"


def _apparmor(meta: dict[str, Any], spec: dict[str, Any], v: Version) -> Iterator[Violation]:
    for key, value in (meta.get("annotations") or {}).items():
        if key.startswith(_APPARMOR_ANN):
            if value != "runtime/default" and not str(value).startswith("localhost/"):
                yield Violation("appArmorProfile", f"metadata.annotations[{key}]", str(value))
    if v < (1, 30):
        return
    targets = [("spec", spec)] + list(_containers(spec))
    for path, obj in targets:
        prof = _sc(obj).get("appArmorProfile")
        if prof and prof.get("type") not in ("RuntimeDefault", "Localhost"):
            yield Violation("appArmorProfile", f"{path}.securityContext.appArmorProfile.type",
                            str(prof.get("type")))


def _selinux(meta: dict[str, Any], spec: dict[str, Any], v: Version) -> Iterator[Violation]:
    allowed = {"", "container_t", "container_init_t", "container_kvm_t"}
    if v >= (1, 31):
        allowed.add("container_engine_t")
    targets = [("spec", spec)] + list(_containers(spec))
    for path, obj in targets:
        opts = _sc(obj).get("seLinuxOptions")
        if not opts:
            continue
        base = f"{path}.securityContext.seLinuxOptions"
        if (opts.get("type") or "") not in allowed:
            yield Violation("seLinuxOptions", f"{base}.type", str(opts.get("type")))
        for key in ("user", "role"):
            if opts.get(key):
                yield Violation("seLinuxOptions", f"{base}.{key}", str(opts[key]))


def _proc_mount(meta: dict[str, Any], spec: dict[str, Any], v: Version) -> Iterator[Violation]:
    if v >= (1, 35) and spec.get("hostUsers") is False:
        return
    for path, c in _containers(spec):
        pm = _sc(c).get("procMount")
        if pm not in (None, "", "Default"):
            yield Violation("procMount", f"{path}.securityContext.procMount", str(pm))


def _seccomp_baseline(meta: dict[str, Any], spec: dict[str, Any], v: Version) -> Iterator[Violation]:
    if v < (1, 19):
        for key, value in (meta.get("annotations") or {}).items():
            if (key == "seccomp.security.alpha.kubernetes.io/pod"
                    or key.startswith("container.seccomp.security.alpha.kubernetes.io/")) \
                    and value == "unconfined":
                yield Violation("seccompProfile", f"metadata.annotations[{key}]", str(value))
        return
    targets = [("spec", spec)] + list(_containers(spec))
    for path, obj in targets:
        prof = _sc(obj).get("seccompProfile")
        if prof and prof.get("type") == "Unconfined":
            yield Violation("seccompProfile", f"{path}.securityContext.seccompProfile.type", "Unconfined")


def _safe_sysctls(v: Version) -> set[str]:
    safe = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
            "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start"}
    if v >= (1, 27):
        safe.add("net.ipv4.ip_local_reserved_ports")
    if v >= (1, 29):
        safe |= {"net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
                 "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"}
    if v >= (1, 32):
        safe |= {"net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"}
    if v >= (1, 37):
        safe |= {"net.ipv4.tcp_slow_start_after_idle", "net.ipv4.tcp_notsent_lowat"}
    return safe


def _sysctls(meta: dict[str, Any], spec: dict[str, Any], v: Version) -> Iterator[Violation]:
    safe = _safe_sysctls(v)
    for j, s in enumerate(_sc(spec).get("sysctls") or []):
        if s.get("name") not in safe:
            yield Violation("sysctls", f"spec.securityContext.sysctls[{j}].name", str(s.get("name")))


def _windows_host_process(meta: dict[str, Any], spec: dict[str, Any], v: Version) -> Iterator[Violation]:
    targets = [("spec", spec)] + list(_containers(spec))
    for path, obj in targets:
        if (_sc(obj).get("windowsOptions") or {}).get("hostProcess") is True:
            yield Violation("windowsHostProcess",
                            f"{path}.securityContext.windowsOptions.hostProcess", "true")


def _host_probes(meta: dict[str, Any], spec: dict[str, Any], v: Version) -> Iterator[Violation]:
    for path, c in _containers(spec):
        handlers: list[tuple[str, Any]] = []
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            handlers.append((f"{path}.{probe}", c.get(probe)))
        for hook in ("postStart", "preStop"):
            handlers.append((f"{path}.lifecycle.{hook}", (c.get("lifecycle") or {}).get(hook)))
        for hpath, h in handlers:
            if not h:
                continue
            for kind in ("httpGet", "tcpSocket"):
                host = (h.get(kind) or {}).get("host")
                if host:
                    yield Violation("hostProbesAndHostLifecycle", f"{hpath}.{kind}.host", str(host))


# ---------------------------------------------------------------- restricted

_RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                       "persistentVolumeClaim", "projected", "secret"}


def _restricted_volumes(meta: dict[str, Any], spec: dict[str, Any], v: Version) -> Iterator[Violation]:
    for i, vol in enumerate(spec.get("volumes") or []):
        for key, value in vol.items():
            if key != "name" and value is not None and key not in _RESTRICTED_VOLUMES:
                yield Violation("restrictedVolumes", f"spec.volumes[{i}].{key}", str(vol.get("name")))


def _allow_priv_esc(meta: dict[str, Any], spec: dict[str, Any], v: Version) -> Iterator[Violation]:
    if v >= (1, 25) and _is_windows(spec):
        return
    for path, c in _containers(spec):
        if _sc(c).get("allowPrivilegeEscalation") is not False:
            yield Violation("allowPrivilegeEscalation",
                            f"{path}.securityContext.allowPrivilegeEscalation",
                            str(_sc(c).get("allowPrivilegeEscalation", "unset")).lower())


def _run_as_non_root(meta: dict[str, Any], spec: dict[str, Any], v: Version) -> Iterator[Violation]:
    pod = _sc(spec).get("runAsNonRoot")
    if pod is False:
        yield Violation("runAsNonRoot", "spec.securityContext.runAsNonRoot", "false")
    for path, c in _containers(spec):
        value = _sc(c).get("runAsNonRoot")
        if value is False:
            yield Violation("runAsNonRoot", f"{path}.securityContext.runAsNonRoot", "false")
        elif value is None and pod is not True:
            yield Violation("runAsNonRoot", f"{path}.securityContext.runAsNonRoot", "unset")


def _run_as_user(meta: dict[str, Any], spec: dict[str, Any], v: Version) -> Iterator[Violation]:
    targets = [("spec", spec)] + list(_containers(spec))
    for path, obj in targets:
        if _sc(obj).get("runAsUser") == 0:
            yield Violation("runAsUser", f"{path}.securityContext.runAsUser", "0")


def _seccomp_restricted(meta: dict[str, Any], spec: dict[str, Any], v: Version) -> Iterator[Violation]:
    if v >= (1, 25) and _is_windows(spec):
        return
    ok = ("RuntimeDefault", "Localhost")
    pod = (_sc(spec).get("seccompProfile") or {}).get("type")
    if pod is not None and pod not in ok:
        yield Violation("seccompProfile", "spec.securityContext.seccompProfile.type", str(pod))
    for path, c in _containers(spec):
        t = (_sc(c).get("seccompProfile") or {}).get("type")
        if t is not None and t not in ok:
            yield Violation("seccompProfile", f"{path}.securityContext.seccompProfile.type", str(t))
        elif t is None and pod is None:
            yield Violation("seccompProfile", f"{path}.securityContext.seccompProfile.type", "unset")


def _capabilities_restricted(meta: dict[str, Any], spec: dict[str, Any], v: Version) -> Iterator[Violation]:
    if v >= (1, 25) and _is_windows(spec):
        return
    for path, c in _containers(spec):
        caps = _sc(c).get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            yield Violation("capabilities", f"{path}.securityContext.capabilities.drop", "ALL not dropped")
        for cap in caps.get("add") or []:
            if cap != "NET_BIND_SERVICE":
                yield Violation("capabilities", f"{path}.securityContext.capabilities.add", str(cap))


def _proc_mount_restricted(meta: dict[str, Any], spec: dict[str, Any], v: Version) -> Iterator[Violation]:
    for path, c in _containers(spec):
        pm = _sc(c).get("procMount")
        if pm not in (None, "", "Default"):
            yield Violation("procMount", f"{path}.securityContext.procMount", str(pm))


# (introduced at, check)
_BASELINE: list[tuple[Version, Check]] = [
    ((1, 0), _host_namespaces), ((1, 0), _privileged), ((1, 0), _capabilities_baseline),
    ((1, 0), _host_path_volumes), ((1, 0), _host_ports), ((1, 0), _apparmor), ((1, 0), _selinux),
    ((1, 0), _proc_mount), ((1, 0), _seccomp_baseline), ((1, 0), _sysctls),
    ((1, 0), _windows_host_process), ((1, 34), _host_probes),
]
_RESTRICTED: list[tuple[Version, Check]] = [
    ((1, 0), _restricted_volumes), ((1, 8), _allow_priv_esc), ((1, 0), _run_as_non_root),
    ((1, 23), _run_as_user), ((1, 19), _seccomp_restricted), ((1, 22), _capabilities_restricted),
    ((1, 35), _proc_mount_restricted),
]


def check_pod(meta: dict[str, Any], spec: dict[str, Any], *, level: str = "restricted",
              version: Version = LATEST) -> list[Violation]:
    """Every violation of ``level`` at Kubernetes ``version`` by a pod's metadata and spec."""
    if level not in LEVELS:
        raise ValueError(f"Pod Security level: expected one of {LEVELS}, found {level!r}")
    checks = list(_BASELINE) + (list(_RESTRICTED) if level == "restricted" else [])
    out: list[Violation] = []
    for since, check in checks:
        if version >= since:
            out.extend(check(meta or {}, spec or {}, version))
    return out


_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "ReplicationController"}


def pod_spec_of(doc: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]] | None:
    """(path prefix, pod metadata, pod spec) of a Pod or a workload's pod template; None for other kinds."""
    kind = doc.get("kind")
    if kind == "Pod":
        return "", doc.get("metadata") or {}, doc.get("spec") or {}
    if kind in _TEMPLATE_KINDS:
        tmpl = (doc.get("spec") or {}).get("template") or {}
        return "spec.template.", tmpl.get("metadata") or {}, tmpl.get("spec") or {}
    if kind == "CronJob":
        tmpl = ((((doc.get("spec") or {}).get("jobTemplate") or {}).get("spec") or {})
                .get("template") or {})
        return "spec.jobTemplate.spec.template.", tmpl.get("metadata") or {}, tmpl.get("spec") or {}
    return None
