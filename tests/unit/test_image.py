"""The component image's Dockerfile and lock file, checked statically (no Docker daemon here)."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "image" / "Dockerfile"
LOCK = ROOT / "image" / "requirements.lock"


def _stages() -> tuple[dict[str, str], list[list[str]]]:
    args: dict[str, str] = {}
    stages: list[list[str]] = []
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("ARG ") and not stages:
            key, _, value = line[4:].partition("=")
            args[key] = value
        elif line.startswith("FROM "):
            stages.append([line])
        elif stages:
            stages[-1].append(line)
    return args, stages


def test_every_base_image_is_pinned_by_digest():
    args, stages = _stages()
    assert len(stages) >= 2, "multi-stage: build and runtime"
    names: list[str] = []
    for stage in stages:
        words = stage[0].split()
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], words[1])
        # A stage starts from the pinned base, or from an earlier stage of this file (which did).
        assert image in names or re.fullmatch(r"python:3\.11-slim@sha256:[0-9a-f]{64}", image), image
        if len(words) == 4 and words[2].upper() == "AS":
            names.append(words[3])


def test_the_serving_lock_extends_the_component_lock_with_the_same_pins():
    root = Path(__file__).resolve().parents[2] / "image"
    assert "-r requirements.in" in (root / "serving-requirements.in").read_text().splitlines()

    def pins(name: str) -> dict[str, str]:
        return dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (root / name).read_text(), re.M))

    component, serving = pins("requirements.lock"), pins("serving-requirements.lock")
    assert "kserve" in serving and "kserve" not in component
    assert set(component) <= set(serving)
    # Where pip-compile chose differently for the larger set, only these may move.
    moved = {name for name in component if component[name] != serving[name]}
    assert moved <= {"httpx", "platformdirs", "setuptools"}, moved
    assert serving["scikit-learn"] == component["scikit-learn"]  # the served model loads with its training version


def test_runtime_stage_runs_as_non_root_and_has_no_compilers_or_installs():
    _, stages = _stages()
    final = stages[-1]
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("0", "root"), users
    body = " ".join(final[1:])
    for tool in ("gcc", "g++", "clang", "build-essential", "make ", "apt-get install", "pip install"):
        assert tool not in body, tool
    assert any(line.startswith("COPY --from=build") for line in final)


def test_dependencies_come_only_from_the_hash_locked_file():
    _, stages = _stages()
    installs = [line for stage in stages for line in stage if "pip install" in line]
    locked = [line for line in installs if "-r " in line]
    assert locked and all("--require-hashes" in line and "requirements.lock" in line for line in locked)
    # The only other install is chainproof itself, with no dependency resolution.
    assert all("--no-deps" in line for line in installs)


def test_lock_pins_every_runtime_dependency_with_hashes():
    text = LOCK.read_text()
    entries = re.findall(r"^([A-Za-z0-9_.-]+)==([^\s\\]+)((?:\s*\\\s*\n\s*--hash=sha256:[0-9a-f]{64})+)", text, re.M)
    pinned = {name.lower().replace("_", "-") for name, _, _ in entries}
    blocks = [b for b in re.split(r"\n(?=[A-Za-z])", text) if re.match(r"[A-Za-z]", b)]
    assert all("--hash=sha256:" in b for b in blocks), [b.split()[0] for b in blocks if "--hash" not in b]
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    for req in cfg["options"]["install_requires"].split("\n"):
        req = req.split("#")[0].strip()
        if req:
            name = re.match(r"[A-Za-z0-9_.-]+", req).group(0).lower().replace("_", "-")
            assert name in pinned, f"{name} is a runtime dependency but not in the lock"
