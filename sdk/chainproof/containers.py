"""Run every step of a local pipeline in its container: ``chainproof run --runner docker``.

kfp.local's ``DockerRunner`` starts each task in the component image through the Docker
API (Docker, or podman's Docker-compatible service: ``DOCKER_HOST``). chainproof adds what a
zero-trust run needs around it:

- every component runs the one image given, **pinned by digest** (any other image in the
  pipeline must be pinned too); nothing is installed at run time;
- the container runs as a **non-root** user (the image's uid 10001 when chainproof runs as
  root, else the caller's uid), with **no network**, a **read-only** root filesystem and a
  tmpfs for temporary files, all capabilities dropped and ``no-new-privileges``;
- only what the steps need is mounted: the run's pipeline root (read-write, by kfp), the
  signed layout, each step's own signing key (read-only; the **owner key is never mounted**),
  the local registry (read-write) and the local files the pipeline's parameters name
  (read-only), each at the same path as on the host.

Example:
    >>> from chainproof.containers import ContainerRun  # doctest: +SKIP
    >>> run_pipeline(pipeline, params, workdir=w, trust_dir=t,
    ...              container=ContainerRun(image="localhost/chainproof@sha256:..."))
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from chainproof.errors import InputError, ServiceError

__all__ = ["CONTAINER_UID", "ContainerRun", "docker_runner", "images_bound"]

# The image's own non-root user (image/Dockerfile).
CONTAINER_UID = 10001
# Paths of the image an input mounted at its host path must not cover.
_SYSTEM = ("/usr", "/etc", "/opt/venv", "/proc", "/sys", "/dev", "/bin", "/lib", "/sbin")


@dataclass(frozen=True)
class ContainerRun:
    """Run each step in a container.

    Attributes:
        image: the component image, ``REGISTRY/PATH@sha256:DIGEST``.
        tmpfs_size: the size of the container's ``/tmp``.
        ulimits: resource limits as ``docker run --ulimit`` takes them (``nofile=1024:4096``),
            for hosts that cannot grant the engine's defaults.
    """

    image: str
    tmpfs_size: str = "1g"
    ulimits: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        from chainproof.images import check_image_reference

        check_image_reference(self.image)  # a tag is refused before anything runs
        for text in self.ulimits:
            _parse_ulimit(text)


def _parse_ulimit(text: str) -> tuple[str, int, int]:
    name, _, limits = text.partition("=")
    soft, _, hard = limits.partition(":")
    try:
        low = int(soft)
        high = int(hard) if hard else low
    except ValueError:
        raise InputError(f"--ulimit {text!r}: expected NAME=SOFT[:HARD] with integers (e.g. nofile=1024:4096)") from None
    if not name.isalpha() or low < 0 or high < low:
        raise InputError(f"--ulimit {text!r}: expected NAME=SOFT[:HARD] with 0 <= SOFT <= HARD")
    return name, low, high


@contextlib.contextmanager
def images_bound(pipeline_func: Any, image: str) -> Iterator[str]:
    """Bind every executor of a pipeline that runs chainproof's placeholder image to ``image``.

    The pipeline's IR is changed in place for the run and put back afterwards.

    Args:
        pipeline_func: a compiled kfp pipeline (``@chainproof.dsl.pipeline``).
        image: the pinned component image.

    Yields:
        The pinned image reference.

    Raises:
        InputError: ``image`` or another image of the pipeline is not pinned by digest.
    """
    from chainproof.components import COMPONENT_IMAGE
    from chainproof.images import check_image_reference

    pinned = check_image_reference(image).reference
    spec = pipeline_func.pipeline_spec
    executors = spec.deployment_spec["executors"]
    original: dict[str, str] = {}
    for name in list(executors.keys()):
        container = executors[name]["container"]
        current = str(container["image"])
        if current == COMPONENT_IMAGE:
            original[name] = current
            container["image"] = pinned
        else:
            check_image_reference(current)
    try:
        yield pinned
    finally:
        for name, current in original.items():
            executors[name]["container"]["image"] = current


def _engine() -> Any:
    try:
        import docker
    except ImportError:
        raise InputError("--runner docker needs the docker package: pip install 'chainproof[containers]'") from None
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # noqa: BLE001 - docker.errors.DockerException and connection errors
        where = os.environ.get("DOCKER_HOST", "the default socket")
        raise ServiceError("container engine", f"connect to {where}", type(exc).__name__,
                           "that Docker (or `podman system service`) is running and DOCKER_HOST names its socket") from None
    return client


def _run_container(client: Any, image: str, command: list[str], volumes: dict[str, Any], **run_args: Any) -> int:
    """Run one task's container and return its real exit code.

    Stands in for kfp.local's ``run_docker_container``, which starts containers with
    ``auto_remove``: a container that exits before kfp inspects it is gone, and kfp either
    reports it as a success (exit 0) or fails on podman's 500 for the missing container. Here
    the container is created, started, followed to its end, waited on and only then removed.
    """
    import docker
    from kfp.local.docker_task_handler import add_latest_tag_if_not_present

    image = add_latest_tag_if_not_present(image=image)
    if not any(image in (found.tags + found.attrs.get("RepoDigests", [])) for found in client.images.list()):
        print(f"Pulling image {image!r}")
        client.images.pull(image)
    container = client.containers.create(image=image, command=command, volumes=volumes, **run_args)
    try:
        container.start()
        for line in container.logs(stream=True, follow=True):
            print(line.decode(errors="replace"), end="")
        return int(container.wait()["StatusCode"])
    finally:
        with contextlib.suppress(docker.errors.APIError):
            container.remove(force=True)


def _exact_exit_codes() -> None:
    """Make kfp.local's DockerRunner report each container's real exit code (:func:`_run_container`)."""
    from kfp.local import docker_task_handler

    docker_task_handler.run_docker_container = _run_container


def _local_paths(values: Mapping[str, Any]) -> list[Path]:
    """The existing local files and folders a run's parameters name (``file://`` URIs or absolute paths)."""
    found = []
    for value in values.values():
        if not isinstance(value, str) or not value:
            continue
        if value.startswith("file://"):
            path = Path(unquote(urlparse(value).path))
        elif value.startswith("/"):
            path = Path(value)
        else:
            continue
        if path.exists():
            found.append(path.absolute())
    return found


def _check_inputs(paths: list[Path]) -> None:
    """Refuse an input folder that, mounted at its host path, would hide the image's own files."""
    for path in paths:
        if path == Path("/") or (path.is_dir() and any(path == Path(t) or Path(t) in path.parents for t in _SYSTEM)):
            raise InputError(f"{path}: a parameter names a system folder; --runner docker mounts inputs at their "
                             "host path, so give a file, or a folder outside /, /usr, /etc, /opt/venv, /proc, /sys, /dev")


def _key_path(reference: str) -> Path | None:
    if not reference.startswith("file:"):
        return None
    return Path(unquote(reference[len("file:"):].split("?", 1)[0])).absolute()


def docker_runner(
    container: ContainerRun,
    *,
    run_dir: Path,
    pipeline_root: Path,
    registry_dir: Path,
    layout_path: Path,
    signers: Mapping[str, str],
    params: Mapping[str, Any],
    extra_paths: list[Path],
) -> Any:
    """Build kfp.local's ``DockerRunner`` for a hardened, least-mount run.

    Args:
        container: the image and limits.
        run_dir: this run's folder (the staged key copies go under it).
        pipeline_root: kfp.local's pipeline root (mounted read-write by kfp).
        registry_dir: the local registry the registration step writes to.
        layout_path: the signed layout.
        signers: step name to signer reference (``file:`` keys are mounted read-only).
        params: the pipeline's parameters (local files they name are mounted read-only).
        extra_paths: further local inputs to mount read-only (an advisory folder).

    Returns:
        The runner to pass to ``kfp.local.init``.

    Raises:
        InputError: the docker package is missing.
        ServiceError: the container engine is unreachable (exit 3).
    """
    import kfp.local
    from docker.types import Mount, Ulimit

    inputs = [*_local_paths(params), *[p.absolute() for p in extra_paths]]
    _check_inputs(inputs)
    client = _engine()
    client.close()
    _exact_exit_codes()
    as_root = os.getuid() == 0
    uid, gid = (CONTAINER_UID, CONTAINER_UID) if as_root else (os.getuid(), os.getgid())
    pipeline_root.mkdir(parents=True, exist_ok=True)
    registry_dir.mkdir(parents=True, exist_ok=True)
    if as_root:
        # The container's user must write its outputs and the registry: hand those over.
        for writable in (pipeline_root, registry_dir):
            for folder, _dirs, files in os.walk(writable):
                os.chown(folder, uid, gid)
                for name in files:
                    os.chown(os.path.join(folder, name), uid, gid, follow_symlinks=False)
    mounts = [
        # Each at the path the steps are given (symlinks resolved on the host side only).
        Mount(target=str(registry_dir.absolute()), source=str(registry_dir.resolve()), type="bind", read_only=False),
        Mount(target=str(layout_path.absolute()), source=str(layout_path.resolve()), type="bind", read_only=True),
    ]
    staged = run_dir / ".step-keys"
    for step, reference in sorted(signers.items()):
        key = _key_path(reference)
        if key is None:
            continue
        source = key
        if as_root:
            # Readable by the container's user only: a copy of this step's key, nothing else.
            staged.mkdir(mode=0o700, exist_ok=True)
            source = staged / f"{step}.pem"
            shutil.copyfile(key, source)
            os.chmod(source, 0o400)
            os.chown(source, uid, gid)
        mounts.append(Mount(target=str(key), source=str(source), type="bind", read_only=True))
    if as_root and staged.exists():
        os.chown(staged, uid, gid)
    covered = {Path(m["Target"]) for m in mounts} | {pipeline_root.absolute()}
    for path in inputs:
        if path in covered or any(parent in covered for parent in path.parents):
            continue
        covered.add(path)
        mounts.append(Mount(target=str(path), source=str(path), type="bind", read_only=True))
    return kfp.local.DockerRunner(
        user=f"{uid}:{gid}",
        network_mode="none",
        read_only=True,
        tmpfs={"/tmp": f"rw,size={container.tmpfs_size}"},
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        environment={"HOME": "/tmp", "CHAINPROOF_HOME": "/tmp/chainproof"},
        mounts=mounts,
        **({"ulimits": [Ulimit(name=n, soft=s, hard=h) for n, s, h in map(_parse_ulimit, container.ulimits)]}
           if container.ulimits else {}),
    )
