"""Shared fixtures: one real local pipeline run per session, copied per attack."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from chainproof.runner import RunResult, run_reference_pipeline
from chainproof.signing import load_public_key


@pytest.fixture(autouse=True)
def _isolated_trust_store(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    # No test reads or writes the user's real trust store.
    trust = tmp_path_factory.mktemp("trust")
    monkeypatch.setenv("CHAINPROOF_TRUST_DIR", str(trust))
    return trust


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """The reference pipeline, run once with kfp.local on the built-in sample."""
    workdir = tmp_path_factory.mktemp("reference-run")
    return run_reference_pipeline(workdir=workdir / "work", trust_dir=workdir / "trust")


@dataclass
class RegisteredCopy:
    """A private copy of a registered version (model + bundle) that a test may tamper with."""

    root: Path
    bundle: Path
    model: Path
    owner_keys: dict
    keys_dir: Path


@pytest.fixture
def registered(reference_run: RunResult, tmp_path: Path) -> RegisteredCopy:
    version_dir = reference_run.bundle.parent
    root = tmp_path / "version"
    shutil.copytree(version_dir, root)
    owner = load_public_key(reference_run.owner_key)
    return RegisteredCopy(
        root=root,
        bundle=root / "bundle",
        model=root / "model",
        owner_keys={owner.keyid: owner},
        keys_dir=reference_run.owner_key.parent,
    )


@dataclass
class PipelineKeys:
    """Keys, a signed layout pinned by digest, and the sample data: what a run is given."""

    keys: object
    layout_path: Path
    layout_sha256: str
    data: Path
    data_sha256: str
    owner_pem: str

    def signer(self, step: str) -> str:
        return self.keys.signer_reference(step)


@pytest.fixture
def pipeline_keys(tmp_path: Path) -> PipelineKeys:
    import hashlib

    from chainproof.policy import REFERENCE_STEPS, generate_layout, sign_layout
    from chainproof.runner import SAMPLE
    from chainproof.signing import init_keys, load_signer, public_key_pem

    roles = ["owner", *(s.name for s in REFERENCE_STEPS)]
    ring = init_keys(tmp_path / "keys", roles=roles, development=True)
    owner = load_signer(ring.signer_reference("owner"))
    keys = {s.name: load_public_key(ring.public_key_path(s.name)) for s in REFERENCE_STEPS}
    data = sign_layout(generate_layout(REFERENCE_STEPS, keys), owner)
    layout_path = tmp_path / "root.layout"
    layout_path.write_bytes(data)
    return PipelineKeys(
        keys=ring,
        layout_path=layout_path,
        layout_sha256=hashlib.sha256(data).hexdigest(),
        data=SAMPLE.path(),
        data_sha256=SAMPLE.sha256,
        owner_pem=public_key_pem(owner.public_key),
    )
