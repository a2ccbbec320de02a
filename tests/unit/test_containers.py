"""chainproof.containers without a container engine: what is refused before any engine is asked."""

from __future__ import annotations

import pytest

from chainproof.containers import ContainerRun, docker_runner
from chainproof.errors import InputError

PINNED = "localhost/chainproof@sha256:" + "ab" * 32


@pytest.mark.parametrize("folder", ["/", "/usr", "/etc", "/usr/lib"])
def test_an_input_folder_that_would_hide_the_images_files_is_refused(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")  # never reached
    layout = tmp_path / "root.layout"
    layout.write_text("{}")
    with pytest.raises(InputError, match=rf"^{folder}: a parameter names a system folder"):
        docker_runner(ContainerRun(image=PINNED), run_dir=tmp_path, pipeline_root=tmp_path / "p",
                      registry_dir=tmp_path / "r", layout_path=layout, signers={},
                      params={"source_uri": f"file://{folder}"}, extra_paths=[])


@pytest.mark.parametrize("bad", ["nofile", "nofile=x", "nofile=10:5", "nofile=-1", "no file=1"])
def test_a_malformed_ulimit_is_refused_naming_it(bad):
    with pytest.raises(InputError, match="--ulimit"):
        ContainerRun(image=PINNED, ulimits=(bad,))


def test_a_tag_is_refused():
    with pytest.raises(InputError, match="sha256"):
        ContainerRun(image="localhost/chainproof:ci")
