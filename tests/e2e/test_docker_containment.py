"""What a step's container gets under ``--runner docker``, seen from inside it.

A probe component runs in the pinned image through the very runner ``chainproof run --runner docker``
builds (:func:`chainproof.containers.docker_runner`) and reports its uid, its network interfaces and
which paths it can write. No traffic is attempted: the interfaces tell.
"""

# No `from __future__ import annotations`: kfp reads the component's annotations as types.
import json
import os
import uuid
from pathlib import Path

import pytest

from tests.e2e.test_docker_runner import ULIMITS, engine, pinned  # noqa: F401  (module fixtures)
from tests.e2e.test_image_run import PODMAN, image  # noqa: F401

pytestmark = pytest.mark.skipif(PODMAN is None, reason="podman is not installed (scripts/build_image.sh installs it as root)")


def containment() -> str:
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
                       "root_writable": writable("/"), "tmp_writable": writable("/tmp"),
                       "home": os.environ.get("HOME", "")})


def test_a_step_runs_non_root_with_loopback_only_and_a_read_only_root(engine, pinned, tmp_path, monkeypatch):  # noqa: F811
    import kfp.local
    from kfp import dsl

    from chainproof.containers import ContainerRun, docker_runner

    monkeypatch.setenv("DOCKER_HOST", engine)
    layout = tmp_path / "root.layout"
    layout.write_text("{}")
    runner = docker_runner(
        ContainerRun(image=pinned, ulimits=tuple(ULIMITS[1::2])), run_dir=tmp_path, pipeline_root=tmp_path / "pipeline",
        registry_dir=tmp_path / "registry", layout_path=layout, signers={}, params={}, extra_paths=[],
    )
    probe = dsl.component(base_image=pinned, install_kfp_package=False)(containment)
    kfp.local.init(runner=runner, pipeline_root=str(tmp_path / "pipeline"))
    seen = json.loads(probe().output)
    uid = 10001 if os.getuid() == 0 else os.getuid()
    assert seen == {"uid": uid, "interfaces": ["lo"], "root_writable": False, "tmp_writable": True, "home": "/tmp"}
    # The registry and the pipeline root are the only writable mounts, and the container's user owns them.
    assert Path(tmp_path / "registry").stat().st_uid == uid


@pytest.mark.parametrize("code", [0, 7])
def test_a_container_that_exits_at_once_reports_its_real_exit_code_and_is_removed(engine, pinned, code):  # noqa: F811
    """kfp's own runner auto-removes containers: one that exits before it is inspected was lost (exit 0 or a 500)."""
    import docker
    from docker.types import Ulimit

    from chainproof.containers import _run_container

    client = docker.DockerClient(base_url=engine)
    # Other workers share podman's storage and run containers of their own meanwhile: only this
    # test's containers, found by a label of their own, are counted.
    label = f"chainproof-test={uuid.uuid4().hex}"
    try:
        for _ in range(3):  # the race needs no luck: each run exits within milliseconds of its start
            got = _run_container(client, pinned, ["python3", "-c", f"import os; os._exit({code})"], {},
                                 network_mode="none", read_only=True, labels=dict([label.split("=")]),
                                 ulimits=[Ulimit(name="nofile", soft=1024, hard=4096),
                                          Ulimit(name="nproc", soft=1024, hard=4096)])
            assert got == code
        assert client.containers.list(all=True, filters={"label": label}) == []
    finally:
        client.close()
