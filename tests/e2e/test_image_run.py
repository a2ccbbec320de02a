"""The component image runs the reference pipeline: non-root, no network, read-only root.

Uses podman (``--runtime runc`` and the lower ulimits this sandbox needs). The image is
``$CHAINPROOF_TEST_IMAGE`` (default ``localhost/chainproof:ci``, what ``scripts/build_image.sh``
and ``.ci/run`` build); it is built here when missing. The bundle is verified from outside the
container with the host's ``chainproof verify``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("CHAINPROOF_TEST_IMAGE", "localhost/chainproof:ci")
PODMAN = shutil.which("podman")
RUN = [PODMAN or "podman", "run", "--rm", "--runtime", "runc",
       "--ulimit", "nofile=1024:4096", "--ulimit", "nproc=1024:4096"]

pytestmark = pytest.mark.skipif(PODMAN is None, reason="podman is not installed (scripts/build_image.sh installs it as root)")


@pytest.fixture(scope="module")
def image() -> str:
    if subprocess.run([PODMAN, "image", "exists", IMAGE]).returncode != 0:
        proc = subprocess.run([str(ROOT / "scripts" / "build_image.sh"), IMAGE], capture_output=True, text=True, timeout=1500)
        assert proc.returncode == 0, proc.stderr[-4000:]
    return IMAGE


@pytest.fixture(scope="module")
def in_image_run(image, tmp_path_factory):
    out = tmp_path_factory.mktemp("image-run")
    out.chmod(0o777)  # written by uid 10001 inside the container
    started = time.monotonic()
    proc = subprocess.run(
        RUN + ["--network", "none", "--read-only", "--user", "10001:10001",
               "--tmpfs", "/tmp:rw,size=512m,mode=1777", "-v", f"{out}:/out:rw,Z", "-w", "/out",
               image, "chainproof", "run", "--workdir", "/out/work", "--format", "json"],
        capture_output=True, text=True, timeout=900)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"reference pipeline inside {image}: {elapsed:.1f}s", file=sys.stderr)
    return out, summary


def _host(out: Path, inside: str) -> Path:
    return out / Path(inside).relative_to("/out")


def test_reference_pipeline_verifies_inside_the_image(in_image_run):
    out, summary = in_image_run
    assert summary["verified"] is True
    assert summary["registered"] == "local://chainproof-model@1"
    assert _host(out, summary["bundle"]).is_dir()


def test_bundle_from_the_image_verifies_outside(in_image_run, tmp_path):
    out, summary = in_image_run
    env = dict(os.environ, CHAINPROOF_TRUST_DIR=str(tmp_path / "trust"))
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "chainproof"), "verify", str(_host(out, summary["bundle"])),
         "--owner-key", str(_host(out, summary["owner_key"])), "--format", "json"],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    assert doc["verified"] is True and doc["model_sha256"] == summary["model_sha256"]


def test_image_runs_as_non_root_without_compilers(image):
    proc = subprocess.run(RUN + ["--network", "none", "--read-only", image, "python3", "-c",
                                 "import os, shutil; print(os.getuid(), os.getgid(), shutil.which('gcc'), shutil.which('cc'))"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["10001", "10001", "None", "None"]


def test_chainproof_version_in_the_image(image):
    proc = subprocess.run(RUN + ["--network", "none", "--read-only", image, "chainproof", "--version"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().split()[-1][0].isdigit(), proc.stdout


SERVING = os.environ.get("CHAINPROOF_TEST_SERVING_IMAGE", "localhost/chainproof-serving:ci")


@pytest.fixture(scope="module")
def serving_image() -> str:
    if subprocess.run([PODMAN, "image", "exists", SERVING]).returncode != 0:
        proc = subprocess.run([str(ROOT / "scripts" / "build_image.sh"), SERVING], capture_output=True, text=True,
                              timeout=1500, env=dict(os.environ, CHAINPROOF_IMAGE_TARGET="serving"))
        assert proc.returncode == 0, proc.stderr[-4000:]
    return SERVING


def test_serving_target_starts_chainproof_serve_as_non_root(serving_image):
    inspect = subprocess.run([PODMAN, "image", "inspect", "--format", "{{json .Config.Entrypoint}} {{.Config.User}}",
                              serving_image], capture_output=True, text=True, check=True)
    entrypoint, user = inspect.stdout.strip().rsplit(" ", 1)
    assert json.loads(entrypoint) == ["/opt/venv/bin/chainproof", "serve"]
    assert user == "10001:10001"
    proc = subprocess.run(RUN + ["--network", "none", "--read-only", "--entrypoint", "/opt/venv/bin/chainproof",
                                 serving_image, "--version"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("chainproof "), proc.stdout


def test_read_only_home_falls_back_to_a_temp_folder_in_the_image(image):
    # CHAINPROOF_HOME unset (empty): ~/.config is on the read-only root, so state goes under /tmp (the tmpfs).
    proc = subprocess.run(RUN + ["--network", "none", "--read-only", "--tmpfs", "/tmp:rw,mode=1777", "--env", "CHAINPROOF_HOME=",
                                 image, "python3", "-c",
                                 "from chainproof.cli import chainproof_home, default_trust_dir; "
                                 "print(chainproof_home()); print(default_trust_dir())"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["/tmp/chainproof-10001", "/tmp/chainproof-10001/trusted-owners"]


_PROBE = """
import json, sys, time, urllib.request, urllib.error
def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request("http://127.0.0.1:8080" + path, data=data, method=method,
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
end = time.monotonic() + 120
while True:
    try:
        if call("GET", "/v2/health/ready")[0] == 200:
            break
    except OSError:
        pass
    if time.monotonic() > end:
        sys.exit("never ready")
    time.sleep(0.3)
out = {"v1": call("POST", "/v1/models/chainproof-model:predict", {"instances": json.loads(sys.argv[1])}),
       "short": call("POST", "/v1/models/chainproof-model:predict", {"instances": [json.loads(sys.argv[1])[0][:-1]]}),
       "metrics": call("GET", "/metrics")}
print(json.dumps(out))
"""


def _serve_args(summary: dict) -> list[str]:
    registry = Path(summary["bundle"]).parents[3]
    return [summary["registered"], "--registry", str(registry), "--owner-key", summary["owner_key"], "--port", "8080"]


def test_serving_image_serves_the_model_registered_in_the_component_image(serving_image, in_image_run, tmp_path):
    """The serving target carries KServe: it verifies the chain, then serves V1 REST with no network at all."""
    import csv

    import joblib

    from chainproof.runner import SAMPLE
    from chainproof.train import prepare_rows

    out, summary = in_image_run
    model_dir = _host(out, summary["model"])
    features = json.loads((model_dir / "features.json").read_text())["features"]
    with open(SAMPLE.path(), newline="") as fh:
        rows = list(csv.DictReader(fh))[:10]
    instances = [[float(r[f["name"]]) for f in features] for r in rows]
    expected = [str(p) for p in joblib.load(model_dir / "model.joblib").predict(prepare_rows(rows, features=features))]
    name = f"chainproof-serve-{os.getpid()}"
    started = subprocess.run(
        RUN + ["-d", "--name", name, "--network", "none", "--read-only", "--tmpfs", "/tmp:rw,size=256m,mode=1777",
               "-v", f"{out}:/out:ro,Z", serving_image, *_serve_args(summary)],
        capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stderr
    try:
        probe = subprocess.run([PODMAN, "exec", name, "/opt/venv/bin/python3", "-c", _PROBE, json.dumps(instances)],
                               capture_output=True, text=True, timeout=300)
        logs = subprocess.run([PODMAN, "logs", name], capture_output=True, text=True, timeout=60)
    finally:
        subprocess.run([PODMAN, "rm", "-f", name], capture_output=True, timeout=120)
    assert probe.returncode == 0, probe.stderr + logs.stdout + logs.stderr
    got = json.loads(probe.stdout.strip().splitlines()[-1])
    assert got["v1"][0] == 200 and json.loads(got["v1"][1])["predictions"] == expected
    assert got["short"][0] == 400 and f"feature '{features[-1]['name']}' is missing" in got["short"][1]
    assert f'model_sha256="{summary["model_sha256"]}"' in got["metrics"][1]
    assert "OK: (2) layout signed by trusted owner key" in logs.stdout + logs.stderr


def test_serving_image_refuses_a_tampered_model_in_one_line(serving_image, in_image_run, tmp_path):
    out, summary = in_image_run
    copy = tmp_path / "out"
    shutil.copytree(out, copy, symlinks=True)
    owner = (out / "work").stat()
    for path in [copy, *copy.rglob("*")]:  # as the container's user left them (the copy is root's)
        os.chown(path, owner.st_uid, owner.st_gid, follow_symlinks=False)
    model = _host(copy, summary["model"]) / "model.joblib"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    proc = subprocess.run(RUN + ["--network", "none", "--read-only", "--tmpfs", "/tmp:rw,size=256m,mode=1777",
                                 "-v", f"{copy}:/out:ro,Z", serving_image, *_serve_args(summary)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("FAIL: ") and "model.joblib" in lines[0], lines
    assert "Traceback" not in proc.stderr
