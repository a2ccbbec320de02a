"""A data scientist's own pipeline: chainproof components with their own preprocessing step
between ingest and train, run with kfp.local, verified by chainproof and in-toto-verify."""


import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
from kfp import dsl, local
from kfp.dsl import Artifact, Dataset, Input, Output

from chainproof.components import register_model, secure_ingest, sign_and_attest, train_model, verify_chain
from chainproof.errors import ChainError
from chainproof.policy import REFERENCE_STEPS, generate_layout, insert_transform, sign_layout
from chainproof.registry import LocalModelRegistry
from chainproof.runner import SAMPLE, kfp_safe, local_file_uri
from chainproof.signing import init_keys, load_public_key, load_signer, public_key_pem
from chainproof.verify import verify_bundle


@dsl.component(base_image="python:3.11-slim", install_kfp_package=False)
def drop_texture_features(
    dataset: Input[Dataset], chain: Input[Artifact], layout_sha256: str, signer: str,
    features: Output[Dataset], chain_out: Output[Artifact],
) -> None:
    """The data scientist's own preprocessing: drop the texture columns, inside the chain."""
    import csv
    from pathlib import Path

    from chainproof.steps import attested_transform

    def transform(src: Path, dst: Path) -> dict:
        for path in src.glob("*.csv"):
            with open(path, newline="") as f_in, open(dst / path.name, "w", newline="") as f_out:
                rows = csv.reader(f_in)
                header = next(rows)
                keep = [i for i, name in enumerate(header) if "texture" not in name]
                out = csv.writer(f_out, lineterminator="\n")
                out.writerow([header[i] for i in keep])
                for row in rows:
                    out.writerow([row[i] for i in keep])
        return {"dropped": "texture columns"}

    attested_transform(step="preprocess", input_dir=dataset.path, chain_in=chain.path, layout_sha256=layout_sha256,
                       signer=signer, output_dir=features.path, chain_out=chain_out.path, transform=transform)


@dsl.pipeline(name="my-pipeline")
def my_pipeline(source_uri: str, expected_sha256: str, layout_uri: str, layout_sha256: str, registry_uri: str,
                ingest_key: str, prep_key: str, train_key: str, attest_key: str, gate_key: str, register_key: str) -> str:
    ingest = secure_ingest(source_uri=source_uri, expected_sha256=expected_sha256, layout_uri=layout_uri,
                           layout_sha256=layout_sha256, signer=ingest_key)
    prep = drop_texture_features(dataset=ingest.outputs["dataset"], chain=ingest.outputs["chain"],
                                 layout_sha256=layout_sha256, signer=prep_key)
    train = train_model(dataset=prep.outputs["features"], chain=prep.outputs["chain_out"], layout_sha256=layout_sha256,
                        signer=train_key, target_column="malignant", hyperparameters='{"n_estimators": 25}')
    attest = sign_and_attest(model=train.outputs["model"], chain=train.outputs["chain_out"],
                             layout_sha256=layout_sha256, signer=attest_key)
    gate = verify_chain(model=train.outputs["model"], chain=attest.outputs["chain_out"], layout_sha256=layout_sha256,
                        signer=gate_key)
    reg = register_model(model=train.outputs["model"], chain=gate.outputs["chain_out"], layout_sha256=layout_sha256,
                         signer=register_key, model_name="my-model", registry_uri=registry_uri)
    return reg.outputs["Output"]


@pytest.fixture
def layout(tmp_path):
    steps = insert_transform(REFERENCE_STEPS, "preprocess", after="secure_ingest")
    ring = init_keys(tmp_path / "keys", roles=["owner", *(s.name for s in steps)], development=True)
    keys = {s.name: load_public_key(ring.public_key_path(s.name)) for s in steps}
    owner = load_signer(ring.signer_reference("owner"))
    data = sign_layout(generate_layout(steps, keys), owner)
    (tmp_path / "root.layout").write_bytes(data)
    return ring, owner, hashlib.sha256(data).hexdigest()


def test_own_preprocessing_step_runs_inside_the_chain(layout, tmp_path):
    ring, owner, layout_sha = layout
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    # kfp.local rewrites "python3" inside parameter values: pass local paths through kfp_safe.
    task = my_pipeline(source_uri=local_file_uri(SAMPLE.path()), expected_sha256=SAMPLE.sha256,
                       layout_uri=local_file_uri(tmp_path / "root.layout"), layout_sha256=layout_sha,
                       registry_uri=local_file_uri(tmp_path / "registry"),
                       **{f"{k}_key": kfp_safe(ring.signer_reference(step)) for k, step in (
                           ("ingest", "secure_ingest"), ("prep", "preprocess"), ("train", "train_model"),
                           ("attest", "sign_and_attest"), ("gate", "verify_chain"), ("register", "register_model"))})
    entry = LocalModelRegistry(tmp_path / "registry").resolve(task.output)
    result = verify_bundle(entry.bundle_location, trusted_owner_keys={owner.keyid: owner.public_key})
    assert [s.name for s in result.steps][:3] == ["secure_ingest", "preprocess", "train_model"]
    prep = result.step("preprocess")
    assert prep.materials["dataset/breast_cancer.csv"] == SAMPLE.sha256
    assert prep.products["dataset/breast_cancer.csv"] != SAMPLE.sha256
    assert result.step("train_model").materials["dataset/breast_cancer.csv"] == prep.products["dataset/breast_cancer.csv"]
    (Path(entry.bundle_location) / "owner.pub").write_text(public_key_pem(owner.public_key))
    proc = subprocess.run([str(Path(sys.executable).parent / "in-toto-verify"), "--layout", "root.layout",
                           "--verification-keys", "owner.pub", "--link-dir", "links"],
                          cwd=entry.bundle_location, capture_output=True, text=True, timeout=120)
    (Path(entry.bundle_location) / "owner.pub").unlink()
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_training_on_the_unprocessed_dataset_is_refused(layout, tmp_path):
    # Skip the preprocessing step: hand ingest's chain straight to training.
    from chainproof import steps

    ring, owner, layout_sha = layout
    ingest = steps.secure_ingest(source_uri=str(SAMPLE.path()), expected_sha256=SAMPLE.sha256,
                                 layout_uri=str(tmp_path / "root.layout"), layout_sha256=layout_sha,
                                 signer=ring.signer_reference("secure_ingest"), dataset_dir=tmp_path / "ds",
                                 chain_dir=tmp_path / "chain")
    with pytest.raises(ChainError, match=r"step preprocess: no link found"):
        steps.train_model(dataset_dir=tmp_path / "ds", chain_in=tmp_path / "chain", layout_sha256=layout_sha,
                          signer=ring.signer_reference("train_model"), target_column="malignant",
                          model_dir=tmp_path / "model", chain_out=tmp_path / "chain2")
    assert ingest.link.is_file() and not (tmp_path / "model").exists()
