"""`chainproof run --runner docker`: every step in the pinned image through kfp.local's DockerRunner.

The Docker API is podman's (``podman system service``, Docker-compatible), started here on a socket of
this test's own; docker-py and kfp.local talk to it through ``DOCKER_HOST``. The image is
``$CHAINPROOF_TEST_IMAGE`` (default ``localhost/chainproof:ci``, what ``scripts/build_image.sh`` builds
from this tree in CI), referenced by its digest. Skipped with a reason where podman or the docker
package is missing.
"""

# No `from __future__ import annotations`: kfp reads the component's annotations as types.
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chainproof.attest import load_link
from chainproof.verify import LINKS_DIR

ROOT = Path(__file__).resolve().parents[2]
PODMAN = shutil.which("podman")
IMAGE = os.environ.get("CHAINPROOF_TEST_IMAGE", "localhost/chainproof:ci")
CLI = str(Path(sys.executable).parent / "chainproof")

try:
    import docker  # noqa: F401
except ImportError:
    DOCKER_PY = False
else:
    DOCKER_PY = True

pytestmark = [
    pytest.mark.skipif(PODMAN is None, reason="podman is not installed (scripts/build_image.sh installs it as root)"),
    pytest.mark.skipif(not DOCKER_PY, reason="the docker package is not installed (pip install 'chainproof[docker]')"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the containers' uid 10001 must own the workdir: rootful podman"),
]


@pytest.fixture(scope="module")
def pinned_image() -> str:
    if subprocess.run([PODMAN, "image", "exists", IMAGE]).returncode != 0:
        proc = subprocess.run([str(ROOT / "scripts" / "build_image.sh"), IMAGE], capture_output=True, text=True,
                              timeout=1500)
        assert proc.returncode == 0, proc.stderr[-3000:]
    digest = subprocess.run([PODMAN, "image", "inspect", "--format", "{{.Digest}}", IMAGE], capture_output=True,
                            text=True, check=True).stdout.strip()
    return f"{IMAGE.rsplit(':', 1)[0]}@{digest}"


@pytest.fixture(scope="module")
def docker_host(tmp_path_factory):
    sock = tmp_path_factory.mktemp("podman-api") / "podman.sock"
    service = subprocess.Popen([PODMAN, "--runtime", "runc", "system", "service", "--time=0", f"unix://{sock}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.1)
        assert sock.exists(), "podman system service did not open its socket"
        yield f"unix://{sock}"
    finally:
        service.terminate()
        service.wait(timeout=30)


def containment() -> str:
    """Report, from inside the step's container, what it can do (no traffic is attempted: interfaces tell)."""
    import json
    import os
    import socket

    def writable(path: str) -> bool:
        try:
            with open(os.path.join(path, ".probe"), "w") as f:
                f.write("x")
            return True
        except OSError:
            return False

    return json.dumps({"uid": os.getuid(), "interfaces": sorted(n for _, n in socket.if_nameindex()),
                       "root_writable": writable("/"), "tmp_writable": writable("/tmp")})


def test_the_docker_runner_contains_a_step_non_root_no_network_read_only(pinned_image, docker_host, tmp_path, monkeypatch):
    """What every step's container gets: uid 10001, loopback only, a read-only root, a writable /tmp."""
    import kfp.local
    from kfp import dsl

    from chainproof.runner import _docker_runner

    monkeypatch.setenv("DOCKER_HOST", docker_host)

    probe = dsl.component(base_image=pinned_image, install_kfp_package=False)(containment)

    root = tmp_path / "root"
    root.mkdir()
    os.chmod(root, 0o777)
    kfp.local.init(runner=_docker_runner(), pipeline_root=str(root))
    seen = json.loads(probe().output)
    assert seen == {"uid": 10001, "interfaces": ["lo"], "root_writable": False, "tmp_writable": True}


def test_reference_pipeline_runs_every_step_in_its_own_container_and_verifies_outside(pinned_image, docker_host, tmp_path):
    work = tmp_path / "work"
    env = dict(os.environ, DOCKER_HOST=docker_host, CHAINPROOF_TRUST_DIR=str(tmp_path / "trust"))
    proc = subprocess.run([CLI, "run", "--runner", "docker", "--image", pinned_image, "--workdir", str(work),
                           "--format", "json"], env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    bundle = Path(summary["bundle"])
    # Each step ran in a container of its own: its recorded principal names the container's host.
    hosts = {}
    for path in (bundle / LINKS_DIR).glob("*.link"):
        _, link = load_link(path)
        hosts[link.name] = link.environment["chainproof"]["principal"]["name"].rsplit("@", 1)[-1]
    assert set(hosts) == set(summary["steps"])
    assert len(set(hosts.values())) == len(hosts), hosts
    assert os.uname().nodename not in hosts.values()
    verify = subprocess.run([CLI, "verify", str(bundle), "--owner-key", summary["owner_key"], "--format", "json"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert verify.returncode == 0, verify.stderr
    assert json.loads(verify.stdout.strip().splitlines()[-1])["verified"] is True
