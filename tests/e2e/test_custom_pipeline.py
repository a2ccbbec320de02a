"""The explicit-chain SDK API: a step of your own between ingest and train (chain folders passed by
hand, layout from ``insert_transform``). Pipelines built with chainproof.dsl: tests/e2e/test_dsl_pipeline.py."""


import hashlib
from pathlib import Path

import pytest

from chainproof.errors import ChainError, DigestMismatch
from chainproof.policy import REFERENCE_STEPS, generate_layout, insert_transform, sign_layout
from chainproof.runner import SAMPLE
from chainproof.signing import init_keys, load_public_key, load_signer


@pytest.fixture
def layout(tmp_path):
    steps = insert_transform(REFERENCE_STEPS, "preprocess", after="secure_ingest")
    ring = init_keys(tmp_path / "keys", roles=["owner", *(s.name for s in steps)], development=True)
    keys = {s.name: load_public_key(ring.public_key_path(s.name)) for s in steps}
    owner = load_signer(ring.signer_reference("owner"))
    data = sign_layout(generate_layout(steps, keys), owner)
    (tmp_path / "root.layout").write_bytes(data)
    return ring, owner, hashlib.sha256(data).hexdigest()


def test_own_transform_in_an_explicit_chain_is_verified_and_consumed(layout, tmp_path):
    """The SDK's explicit-chain API (no KFP): a transform of your own between ingest and training."""
    import csv

    from chainproof import steps

    ring, owner, layout_sha = layout

    def drop_texture(src: Path, dst: Path) -> dict:
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

    steps.secure_ingest(source_uri=str(SAMPLE.path()), expected_sha256=SAMPLE.sha256,
                        layout_uri=str(tmp_path / "root.layout"), layout_sha256=layout_sha,
                        signer=ring.signer_reference("secure_ingest"), dataset_dir=tmp_path / "ds",
                        chain_dir=tmp_path / "c1")
    prep = steps.attested_transform(step="preprocess", input_dir=tmp_path / "ds", chain_in=tmp_path / "c1",
                                    layout_sha256=layout_sha, signer=ring.signer_reference("preprocess"),
                                    output_dir=tmp_path / "features", chain_out=tmp_path / "c2", transform=drop_texture)
    assert prep.link.is_file()
    steps.train_model(dataset_dir=tmp_path / "features", chain_in=tmp_path / "c2", layout_sha256=layout_sha,
                      signer=ring.signer_reference("train_model"), target_column="malignant",
                      model_dir=tmp_path / "model", chain_out=tmp_path / "c3", hyperparameters='{"n_estimators": 5}')
    # A transformed file swapped after the transform signed it is refused by training.
    (tmp_path / "features" / "breast_cancer.csv").write_text("malignant\n1\n")
    with pytest.raises(DigestMismatch, match=r"dataset/breast_cancer.csv \(attested by preprocess\)"):
        steps.train_model(dataset_dir=tmp_path / "features", chain_in=tmp_path / "c2", layout_sha256=layout_sha,
                          signer=ring.signer_reference("train_model"), target_column="malignant",
                          model_dir=tmp_path / "model2", chain_out=tmp_path / "c4")
    assert not (tmp_path / "model2").exists() and not (tmp_path / "c4").exists()


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
