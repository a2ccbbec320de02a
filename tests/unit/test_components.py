"""Each step on real temp files, through the explicit-chain API (chain folders passed by hand):
each refuses what it must. (The same work runs inside the chainproof.dsl components.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from chainproof import steps
from chainproof.errors import ArtifactRefused, ChainError, DigestMismatch


class _Artifact:
    """A folder with metadata, as a component sees an artifact."""

    def __init__(self, path: Path) -> None:
        self.path, self.metadata = str(path), {}


def _artifact(_cls, path: Path) -> _Artifact:
    return _Artifact(path)


class dsl:  # noqa: N801 - the artifact kinds, for readability below
    Dataset = Model = Metrics = Artifact = object


VertexModel = object


def _ingest_fn(*, dataset, chain, **kw):
    out = steps.secure_ingest(dataset_dir=dataset.path, chain_dir=chain.path, **kw)
    dataset.metadata.update(out.metadata)


def _ingest_model_fn(*, model, chain, **kw):
    steps.secure_ingest(dataset_dir=model.path, chain_dir=chain.path, output_prefix="model", **kw)


def _train_fn(*, dataset, chain, model, metrics, chain_out, **kw):
    steps.train_model(dataset_dir=dataset.path, chain_in=chain.path, model_dir=model.path, chain_out=chain_out.path, **kw)


def _sign_fn(*, model, chain, chain_out, **kw):
    steps.sign_and_attest(model_dir=model.path, chain_in=chain.path, chain_out=chain_out.path, **kw)


def _gate_fn(*, model, chain, chain_out, **kw):
    steps.verify_chain(model_dir=model.path, chain_in=chain.path, chain_out=chain_out.path, **kw)


def _register_fn(*, model, chain, registered_model, **kw) -> str:
    return str(steps.register_model(model_dir=model.path, chain_in=chain.path, **kw).metadata["reference"])


def _ingest(pk, out: Path, **overrides):
    dataset = _artifact(dsl.Dataset, out / "dataset")
    chain = _artifact(dsl.Artifact, out / "chain")
    kwargs = dict(
        source_uri=pk.data.as_uri(),
        expected_sha256=pk.data_sha256,
        layout_uri=pk.layout_path.as_uri(),
        layout_sha256=pk.layout_sha256,
        signer=pk.signer("secure_ingest"),
        dataset=dataset,
        chain=chain,
        owner_public_key=pk.owner_pem,
    )
    kwargs.update(overrides)
    _ingest_fn(**kwargs)
    return dataset, chain


def _train(pk, dataset, chain, out: Path):
    model = _artifact(dsl.Model, out / "model")
    metrics = _artifact(dsl.Metrics, out / "metrics")
    chain_out = _artifact(dsl.Artifact, out / "chain-train")
    _train_fn(
        dataset=dataset, chain=chain, layout_sha256=pk.layout_sha256, signer=pk.signer("train_model"),
        target_column="malignant", model=model, metrics=metrics, chain_out=chain_out,
        hyperparameters='{"n_estimators": 20}',
    )
    return model, chain_out


def test_ingest_records_dataset_metadata_and_link(pipeline_keys, tmp_path):
    dataset, chain = _ingest(pipeline_keys, tmp_path)
    assert dataset.metadata["sha256"] == pipeline_keys.data_sha256
    assert dataset.metadata["scan_verdict"] == "safe"
    assert (Path(dataset.path) / "breast_cancer.csv").is_file()
    assert len(list((Path(chain.path) / "links").glob("secure_ingest.*.link"))) == 1


def test_ingest_refuses_wrong_expected_sha256_and_leaves_nothing(pipeline_keys, tmp_path):
    wrong = "0" * 64
    with pytest.raises(DigestMismatch) as err:
        _ingest(pipeline_keys, tmp_path, expected_sha256=wrong)
    assert err.value.expected == wrong and err.value.actual == pipeline_keys.data_sha256
    assert pipeline_keys.data.as_uri() in str(err.value)
    # Nothing a later step could pick up: no dataset, no chain, no quarantine leftovers.
    assert sorted(p.name for p in tmp_path.iterdir() if p.name not in {"keys", "root.layout"}) == []


def test_ingest_refuses_layout_not_matching_pinned_digest(pipeline_keys, tmp_path):
    with pytest.raises(DigestMismatch, match=r"root.layout|file://"):
        _ingest(pipeline_keys, tmp_path, layout_sha256="1" * 64)


def test_ingest_refuses_signer_the_layout_does_not_authorize(pipeline_keys, tmp_path):
    with pytest.raises(ChainError, match=r"step secure_ingest: signer .* but the layout authorizes"):
        _ingest(pipeline_keys, tmp_path, signer=pipeline_keys.signer("train_model"))


def test_train_refuses_dataset_swapped_between_ingest_and_train(pipeline_keys, tmp_path):
    dataset, chain = _ingest(pipeline_keys, tmp_path)
    csv = Path(dataset.path) / "breast_cancer.csv"
    rows = csv.read_text().splitlines()
    # Poison: flip every label, keep the file well-formed.
    poisoned = [rows[0]] + [r[:-1] + ("0" if r.endswith("1") else "1") for r in rows[1:]]
    csv.write_text("\n".join(poisoned) + "\n")
    with pytest.raises(DigestMismatch) as err:
        _train(pipeline_keys, dataset, chain, tmp_path)
    assert err.value.artifact == "dataset/breast_cancer.csv"
    assert err.value.expected == pipeline_keys.data_sha256
    assert not (tmp_path / "model").exists()


def test_train_refuses_chain_whose_layout_was_swapped(pipeline_keys, tmp_path):
    dataset, chain = _ingest(pipeline_keys, tmp_path)
    (Path(chain.path) / "root.layout").write_text("{}")
    with pytest.raises(DigestMismatch, match=r"root.layout \(pinned layout\)"):
        _train(pipeline_keys, dataset, chain, tmp_path)


def test_train_refuses_chain_without_ingest_link(pipeline_keys, tmp_path):
    dataset, chain = _ingest(pipeline_keys, tmp_path)
    for link in (Path(chain.path) / "links").glob("*.link"):
        link.unlink()
    with pytest.raises(ChainError, match=r"step secure_ingest: no link found"):
        _train(pipeline_keys, dataset, chain, tmp_path)


def test_gate_refuses_model_swapped_after_signing(pipeline_keys, tmp_path):
    dataset, chain = _ingest(pipeline_keys, tmp_path)
    model, chain_t = _train(pipeline_keys, dataset, chain, tmp_path)
    chain_s = _artifact(dsl.Artifact, tmp_path / "chain-sign")
    _sign_fn(model=model, chain=chain_t, layout_sha256=pipeline_keys.layout_sha256,
                                signer=pipeline_keys.signer("sign_and_attest"), chain_out=chain_s)
    with open(Path(model.path) / "model.joblib", "ab") as f:
        f.write(b"\x00")
    chain_g = _artifact(dsl.Artifact, tmp_path / "chain-gate")
    with pytest.raises(DigestMismatch) as err:
        _gate_fn(model=model, chain=chain_s, layout_sha256=pipeline_keys.layout_sha256,
                                 signer=pipeline_keys.signer("verify_chain"), chain_out=chain_g)
    assert err.value.artifact == "model/model.joblib"
    assert not Path(chain_g.path).exists()


def test_register_refuses_without_the_gate(pipeline_keys, tmp_path):
    dataset, chain = _ingest(pipeline_keys, tmp_path)
    model, chain_t = _train(pipeline_keys, dataset, chain, tmp_path)
    chain_s = _artifact(dsl.Artifact, tmp_path / "chain-sign")
    _sign_fn(model=model, chain=chain_t, layout_sha256=pipeline_keys.layout_sha256,
                                signer=pipeline_keys.signer("sign_and_attest"), chain_out=chain_s)
    # Skip the gate: hand the signed chain straight to registration.
    with pytest.raises(ChainError, match=r"step verify_chain: no link found"):
        _register_fn(model=model, chain=chain_s, layout_sha256=pipeline_keys.layout_sha256,
                                   signer=pipeline_keys.signer("register_model"), model_name="m",
                                   registry_uri=(tmp_path / "registry").as_uri(),
                                   registered_model=_artifact(VertexModel, tmp_path / "registered"))
    assert not (tmp_path / "registry" / "models" / "m").exists()


def test_full_chain_through_components_registers_once(pipeline_keys, tmp_path):
    dataset, chain = _ingest(pipeline_keys, tmp_path)
    model, chain_t = _train(pipeline_keys, dataset, chain, tmp_path)
    chain_s = _artifact(dsl.Artifact, tmp_path / "chain-sign")
    _sign_fn(model=model, chain=chain_t, layout_sha256=pipeline_keys.layout_sha256,
                                signer=pipeline_keys.signer("sign_and_attest"), chain_out=chain_s)
    chain_g = _artifact(dsl.Artifact, tmp_path / "chain-gate")
    _gate_fn(model=model, chain=chain_s, layout_sha256=pipeline_keys.layout_sha256,
                             signer=pipeline_keys.signer("verify_chain"), chain_out=chain_g)
    kwargs = dict(model=model, chain=chain_g, layout_sha256=pipeline_keys.layout_sha256,
                  signer=pipeline_keys.signer("register_model"), model_name="m",
                  registry_uri=(tmp_path / "registry").as_uri(),
                  registered_model=_artifact(VertexModel, tmp_path / "registered"))
    first = _register_fn(**kwargs)
    second = _register_fn(**kwargs)
    assert first == second == "local://m@1"
    assert sorted(p.name for p in (tmp_path / "registry" / "models" / "m").iterdir()) == ["1"]


class _Payload:
    """A harmless code-execution payload: pickling records os.system('true')."""

    def __reduce__(self):
        import os

        return (os.system, ("true",))


def test_ingest_refuses_pretrained_pickle_with_code_execution_and_names_offset(pipeline_keys, tmp_path):
    import hashlib
    import pickle

    bad = tmp_path / "model.bin"  # a misleading name: scanned by content
    bad.write_bytes(pickle.dumps({"weights": [1.0], "hook": _Payload()}, protocol=4))
    model = _artifact(dsl.Model, tmp_path / "out-model")
    chain = _artifact(dsl.Artifact, tmp_path / "out-chain")
    with pytest.raises(ArtifactRefused) as err:
        _ingest_model_fn(
            source_uri=str(bad), expected_sha256=hashlib.sha256(bad.read_bytes()).hexdigest(),
            layout_uri=pipeline_keys.layout_path.as_uri(), layout_sha256=pipeline_keys.layout_sha256,
            signer=pipeline_keys.signer("secure_ingest"), model=model, chain=chain,
        )
    message = str(err.value)
    assert message.startswith("model/model.bin@"), message
    assert "posix.system" in message or "os.system" in message, message
    assert not Path(model.path).exists() and not Path(chain.path).exists()


def test_gate_refuses_unsafe_model_even_when_training_attested_it(pipeline_keys, tmp_path):
    # An insider with the training key replaces the model with a payload and re-records
    # the train link: every digest then matches, the model signature too. The scan does not.
    import pickle

    from in_toto.models.metadata import Envelope

    from chainproof.attest import load_link, write_link
    from chainproof.digests import digest_tree
    from chainproof.signing import load_signer

    dataset, chain = _ingest(pipeline_keys, tmp_path)
    model, chain_t = _train(pipeline_keys, dataset, chain, tmp_path)
    (Path(model.path) / "model.joblib").write_bytes(pickle.dumps(_Payload(), protocol=4))
    (link_file,) = (Path(chain_t.path) / "links").glob("train_model.*.link")
    _, link = load_link(link_file)
    for name, digest in digest_tree(model.path, prefix="model").items():
        link.products[name] = {"sha256": digest}
    envelope = Envelope.from_signable(link)
    envelope.create_signature(load_signer(pipeline_keys.signer("train_model")).signer)
    link_file.unlink()
    write_link(envelope, Path(chain_t.path) / "links")

    chain_s = _artifact(dsl.Artifact, tmp_path / "chain-sign")
    _sign_fn(model=model, chain=chain_t, layout_sha256=pipeline_keys.layout_sha256,
                                signer=pipeline_keys.signer("sign_and_attest"), chain_out=chain_s)
    chain_g = _artifact(dsl.Artifact, tmp_path / "chain-gate")
    with pytest.raises(ArtifactRefused, match=r"model/model.joblib@\d+: scan refused it: .*system"):
        _gate_fn(model=model, chain=chain_s, layout_sha256=pipeline_keys.layout_sha256,
                                 signer=pipeline_keys.signer("verify_chain"), chain_out=chain_g)
    assert not Path(chain_g.path).exists()


def test_outputs_are_published_where_folders_cannot_be_renamed(pipeline_keys, tmp_path, monkeypatch):
    # Cloud Storage FUSE (Vertex AI's /gcs mount) refuses to rename non-empty folders.
    import errno

    def refuse(src, dst):
        raise OSError(errno.EXDEV, "rename not supported")

    monkeypatch.setattr(steps.os, "rename", refuse)
    dataset, chain = _ingest(pipeline_keys, tmp_path)
    assert (Path(dataset.path) / "breast_cancer.csv").is_file()
    assert len(list((Path(chain.path) / "links").glob("secure_ingest.*.link"))) == 1
    assert not [p for p in tmp_path.iterdir() if ".staging-" in p.name]
