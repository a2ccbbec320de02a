"""``chainproof run --runner docker``: every step of the reference pipeline in the component image.

kfp.local's DockerRunner talks to podman's Docker-compatible service here (``podman system
service`` on a socket in a temporary folder; ``runc`` and the lower ulimits this sandbox needs
come from a ``containers.conf`` of the test's own). The bundle is verified from outside with the
host's ``chainproof verify``; the links say each step ran as the image's non-root user.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.test_image_run import PODMAN, image  # noqa: F401  (the module fixture)

pytestmark = pytest.mark.skipif(PODMAN is None, reason="podman is not installed (scripts/build_image.sh installs it as root)")

CHAINPROOF = str(Path(sys.executable).parent / "chainproof")
# The sandbox cannot grant podman's default RLIMIT_NOFILE to a container (PLATFORM-FACTS.md).
ULIMITS = ["--ulimit", "nofile=1024:4096", "--ulimit", "nproc=1024:4096"]


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """podman's Docker API on a unix socket; yields the DOCKER_HOST value."""
    folder = tmp_path_factory.mktemp("podman")
    conf = folder / "containers.conf"
    conf.write_text('[engine]\nruntime = "runc"\n')  # crun refuses this machine's hybrid cgroups
    socket = folder / "podman.sock"
    env = dict(os.environ, CONTAINERS_CONF=str(conf))
    service = subprocess.Popen([PODMAN, "system", "service", "--time=0", f"unix://{socket}"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not socket.exists():
        assert service.poll() is None, service.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "podman system service did not open its socket"
        time.sleep(0.2)
    try:
        yield f"unix://{socket}"
    finally:
        service.terminate()
        service.wait(timeout=30)


@pytest.fixture(scope="module")
def pinned(image):  # noqa: F811
    """The image by digest, as `--image` needs it (`localhost/chainproof@sha256:...`)."""
    digest = subprocess.run([PODMAN, "image", "inspect", "--format", "{{.Digest}}", image],
                            capture_output=True, text=True, check=True).stdout.strip()
    repository = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
    return f"{repository}@{digest}"


@pytest.fixture(scope="module")
def docker_run(engine, pinned, tmp_path_factory):
    out = tmp_path_factory.mktemp("docker-run")
    env = dict(os.environ, DOCKER_HOST=engine, CHAINPROOF_TRUST_DIR=str(out / "trust"))
    proc = subprocess.run([CHAINPROOF, "run", "--runner", "docker", "--image", pinned, *ULIMITS,
                           "--workdir", str(out / "work"), "--format", "json"], capture_output=True, text=True, env=env, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-6000:]
    return out, json.loads(proc.stdout.strip().splitlines()[-1])


def test_every_step_runs_in_the_pinned_image_and_the_bundle_verifies_outside(docker_run, tmp_path):
    out, summary = docker_run
    assert summary["verified"] is True and summary["registered"] == "local://chainproof-model@1"
    proc = subprocess.run([CHAINPROOF, "verify", summary["bundle"], "--owner-key", summary["owner_key"],
                           "--format", "json"], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, CHAINPROOF_TRUST_DIR=str(tmp_path / "trust")))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    assert doc["model_sha256"] == summary["model_sha256"]


def test_the_links_say_each_step_ran_as_the_images_non_root_user_in_a_container_of_its_own(docker_run):
    out, summary = docker_run
    expected_uid = 10001 if os.getuid() == 0 else os.getuid()
    hosts = {}
    for link in sorted(Path(summary["bundle"], "links").glob("*.link")):
        payload = json.loads(base64.b64decode(json.loads(link.read_text())["payload"]))
        principal = payload["environment"]["chainproof"]["principal"]
        assert principal["kind"] == "local-user" and principal["details"]["uid"] == expected_uid, (link.name, principal)
        hosts[payload["name"]] = principal["name"].rsplit("@", 1)[-1]
    # Each step's container has a host name of its own, none of them this machine's.
    assert len(set(hosts.values())) == len(hosts) == 6, hosts
    assert os.uname().nodename not in hosts.values()


def test_the_owner_key_is_never_mounted_into_a_step(docker_run):
    out, summary = docker_run
    log = next(Path(out, "work", "runs").glob("*/pipeline.log")).read_text()
    staged = sorted(p.name for p in next(Path(out, "work", "runs").glob("*/.step-keys")).iterdir())
    assert "owner.pem" not in staged and len(staged) == 6
    assert "Traceback" not in log


def test_a_tag_instead_of_a_digest_is_refused_before_any_container_runs(engine, image, tmp_path):  # noqa: F811
    env = dict(os.environ, DOCKER_HOST=engine, CHAINPROOF_TRUST_DIR=str(tmp_path / "trust"))
    proc = subprocess.run([CHAINPROOF, "run", "--runner", "docker", "--image", image, "--workdir", str(tmp_path / "w")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "sha256" in proc.stderr and "Traceback" not in proc.stderr
    assert not list((tmp_path / "w").glob("runs/*/pipeline/*"))


def test_an_unreachable_engine_is_one_line_and_exit_3(pinned, tmp_path):
    env = dict(os.environ, DOCKER_HOST=f"unix://{tmp_path}/nothing.sock", CHAINPROOF_TRUST_DIR=str(tmp_path / "trust"))
    proc = subprocess.run([CHAINPROOF, "run", "--runner", "docker", "--image", pinned, "--workdir", str(tmp_path / "w")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 3, proc.stderr
    assert "container engine" in proc.stderr and "Traceback" not in proc.stderr
