"""An image of your own on top of chainproof's (image/Dockerfile.own), and a pipeline compiled against it.

The user's library is a wheel made here and locked by its hash, installed from a local folder, so the
build needs no network. Skipped only where podman is missing.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.e2e.test_image_run import PODMAN, RUN, image  # noqa: F401  (the module fixture)

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ROOT / "tests" / "assets" / "churn_pipeline.py"

pytestmark = pytest.mark.skipif(PODMAN is None, reason="podman is not installed (scripts/build_image.sh installs it as root)")


def _wheel(folder: Path) -> Path:
    """A minimal pure-Python wheel, userlib 1.0."""
    path = folder / "userlib-1.0-py3-none-any.whl"
    files = {
        "userlib/__init__.py": b"VALUE = 42\n",
        "userlib-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: userlib\nVersion: 1.0\n",
        "userlib-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{name},sha256={digest},{len(data)}")
        record.append("userlib-1.0.dist-info/RECORD,,")
        zf.writestr("userlib-1.0.dist-info/RECORD", "\n".join(record) + "\n")
    return path


def test_image_of_your_own_keeps_the_user_and_compiles(image, tmp_path):  # noqa: F811
    ctx = tmp_path / "ctx"
    (ctx / "wheels").mkdir(parents=True)
    wheel = _wheel(ctx / "wheels")
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    (ctx / "requirements.lock").write_text(f"userlib==1.0 \\\n    --hash=sha256:{sha}\n")
    tag = "localhost/chainproof-own:test"
    build = subprocess.run(
        [PODMAN, "build", "--runtime", "runc", "--ulimit", "nofile=1024:4096", "--ulimit", "nproc=1024:4096",
         "--network", "none", "--build-arg", f"CHAINPROOF_IMAGE={image}",
         "--build-arg", "PIP_NO_INDEX=1", "--build-arg", "PIP_FIND_LINKS=/ctx/wheels",
         "-f", str(ROOT / "image" / "Dockerfile.own"), "-t", tag, str(ctx)],
        capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    # A lock whose hash does not match is refused at build time.
    (ctx / "requirements.lock").write_text(f"userlib==1.0 \\\n    --hash=sha256:{'b' * 64}\n")
    bad = subprocess.run(
        [PODMAN, "build", "--runtime", "runc", "--ulimit", "nofile=1024:4096", "--ulimit", "nproc=1024:4096",
         "--network", "none", "--build-arg", f"CHAINPROOF_IMAGE={image}",
         "--build-arg", "PIP_NO_INDEX=1", "--build-arg", "PIP_FIND_LINKS=/ctx/wheels",
         "-f", str(ROOT / "image" / "Dockerfile.own"), "-t", tag + "-bad", str(ctx)],
        capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0 and "hash" in (bad.stdout + bad.stderr).lower()

    probe = subprocess.run(RUN + ["--network", "none", "--read-only", tag, "python3", "-c",
                                  "import os, userlib, chainproof; print(os.getuid(), userlib.VALUE)"],
                           capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split() == ["10001", "42"]

    digest = subprocess.run([PODMAN, "image", "inspect", "--format", "{{.Digest}}", tag],
                            capture_output=True, text=True, check=True).stdout.strip()
    assert digest.startswith("sha256:")
    pinned = f"localhost/chainproof-own@{digest}"
    out = tmp_path / "churn.yaml"
    cli = str(Path(sys.executable).parent / "chainproof")
    proc = subprocess.run([cli, "compile", "--pipeline", f"{PIPELINE}:churn", "--image", pinned, "-o", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    executors = yaml.safe_load(out.read_text())["deploymentSpec"]["executors"]
    assert executors and all(e["container"]["image"] == pinned for e in executors.values())
    shutil.rmtree(ctx, ignore_errors=True)
