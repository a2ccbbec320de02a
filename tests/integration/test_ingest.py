"""secure_ingest with remote sources and publisher-signed models, and a full run from gs://."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import pytest

from chainproof import steps
from chainproof.errors import ArtifactRefused, DigestMismatch, InputError, SignatureError
from chainproof.signing import init_keys, load_public_key, load_signer, public_key_pem
from chainproof.attest import load_link, sign_model
from chainproof.storage import FetchOptions, RetryPolicy

from chainproof.testing.servers import gcs_emulator


@pytest.fixture(scope="module")
def emulator():
    with gcs_emulator() as address:
        yield address


def _client(emulator):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(project="test", credentials=AnonymousCredentials(),
                          client_options={"api_endpoint": f"http://{emulator[0]}:{emulator[1]}"})


@pytest.fixture
def publisher(tmp_path):
    ring = init_keys(tmp_path / "publisher", roles=["publisher"])
    return ring, load_signer(ring.signer_reference("publisher"))


def _pretrained(tmp_path: Path, publisher) -> Path:
    from sklearn.linear_model import LogisticRegression

    model_dir = tmp_path / "pretrained"
    model_dir.mkdir()
    model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    (model_dir / "model.pkl").write_bytes(pickle.dumps(model, protocol=4))
    (model_dir / "README.txt").write_text("a pretrained classifier\n")
    sign_model(model_dir, tmp_path / "model.sig", publisher[1])
    return model_dir


def _ingest(pipeline_keys, tmp_path, **kw):
    args = dict(
        layout_uri=pipeline_keys.layout_path.as_uri(),
        layout_sha256=pipeline_keys.layout_sha256,
        signer=pipeline_keys.signer("secure_ingest"),
        dataset_dir=tmp_path / "out" / "model",
        chain_dir=tmp_path / "out" / "chain",
        output_prefix="model",
        expected_sha256="",
    )
    args.update(kw)
    return steps.secure_ingest(**args)


def test_pretrained_model_accepted_by_publisher_signature_instead_of_digest(pipeline_keys, publisher, tmp_path):
    model_dir = _pretrained(tmp_path, publisher)
    outcome = _ingest(pipeline_keys, tmp_path, source_uri=str(model_dir),
                      publisher_public_key=public_key_pem(publisher[1].public_key),
                      signature_uri=str(tmp_path / "model.sig"))
    assert sorted(p.name for p in (tmp_path / "out" / "model").iterdir()) == ["README.txt", "model.pkl"]
    _, link = load_link(outcome.link)
    assert set(link.products) >= {"model/model.pkl", "model/README.txt", "run/id"}
    assert link.environment["chainproof"]["parameters"]["publisher_keyid"] == publisher[1].keyid
    assert outcome.metadata["files"] == 2


def test_pretrained_model_tampered_after_publishing_is_refused_and_nothing_released(pipeline_keys, publisher, tmp_path):
    model_dir = _pretrained(tmp_path, publisher)
    with open(model_dir / "model.pkl", "ab") as f:
        f.write(b"\x00")
    with pytest.raises(SignatureError, match="model signature does not verify"):
        _ingest(pipeline_keys, tmp_path, source_uri=str(model_dir),
                publisher_public_key=public_key_pem(publisher[1].public_key), signature_uri=str(tmp_path / "model.sig"))
    assert not (tmp_path / "out" / "model").exists() and not (tmp_path / "out" / "chain").exists()
    assert [p.name for p in (tmp_path / "out").iterdir()] == []


def test_pretrained_model_signed_by_another_publisher_is_refused(pipeline_keys, publisher, tmp_path):
    model_dir = _pretrained(tmp_path, publisher)
    other = init_keys(tmp_path / "other", roles=["publisher"])
    with pytest.raises(SignatureError):
        _ingest(pipeline_keys, tmp_path, source_uri=str(model_dir),
                publisher_public_key=other.public_key_path("publisher").read_text(), signature_uri=str(tmp_path / "model.sig"))


def test_ingest_without_digest_or_publisher_key_is_refused(pipeline_keys, tmp_path):
    with pytest.raises(InputError, match="expected sha256 .* is mandatory"):
        _ingest(pipeline_keys, tmp_path, source_uri=str(pipeline_keys.data), output_prefix="dataset")


def test_gcs_folder_with_publisher_signature_inside(pipeline_keys, publisher, emulator, tmp_path):
    model_dir = _pretrained(tmp_path, publisher)
    bucket = _client(emulator).create_bucket("publisher-models")
    for path in model_dir.iterdir():
        bucket.blob(f"clf/v1/{path.name}").upload_from_filename(str(path))
    bucket.blob("clf/v1/model.sig").upload_from_filename(str(tmp_path / "model.sig"))
    options = FetchOptions(retry=RetryPolicy(attempts=2, initial_delay=0.01, deadline=3), gcs_client_factory=lambda: _client(emulator))
    outcome = _ingest(pipeline_keys, tmp_path, source_uri="gs://publisher-models/clf/v1/",
                      publisher_public_key=public_key_pem(publisher[1].public_key), fetch_options=options)
    _, link = load_link(outcome.link)
    objects = link.environment["chainproof"]["parameters"]["source_objects"]
    assert set(objects) == {"model.pkl", "README.txt"}
    assert link.environment["chainproof"]["parameters"]["publisher_signature_sha256"] == hashlib.sha256(
        (tmp_path / "model.sig").read_bytes()).hexdigest()
    assert all("#" in uri for uri in objects.values())  # every object pinned to its generation


def test_gcs_dataset_swapped_in_bucket_is_refused_by_digest(pipeline_keys, emulator, tmp_path):
    bucket = _client(emulator).create_bucket("datasets-swap")
    bucket.blob("train.csv").upload_from_filename(str(pipeline_keys.data))
    bucket.blob("train.csv").upload_from_string(b"mean_radius,malignant\n1,0\n")
    options = FetchOptions(retry=RetryPolicy(attempts=2, initial_delay=0.01, deadline=3), gcs_client_factory=lambda: _client(emulator))
    with pytest.raises(DigestMismatch) as err:
        _ingest(pipeline_keys, tmp_path, source_uri="gs://datasets-swap/train.csv", expected_sha256=pipeline_keys.data_sha256,
                output_prefix="dataset", fetch_options=options)
    assert "gs://datasets-swap/train.csv (generation " in str(err.value)
    assert err.value.expected == pipeline_keys.data_sha256


def test_malformed_csv_is_refused_by_the_scan(pipeline_keys, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"a,b\n1,2,3\n")
    with pytest.raises(ArtifactRefused, match=r"dataset/bad.csv@2: scan refused it: row: 3 fields, expected 2"):
        _ingest(pipeline_keys, tmp_path, source_uri=str(bad), expected_sha256=hashlib.sha256(bad.read_bytes()).hexdigest(),
                output_prefix="dataset")
    assert not (tmp_path / "out" / "model").exists()


def test_reference_pipeline_from_a_gcs_source(emulator, tmp_path, monkeypatch, pipeline_keys):
    # kfp.local runs each step in a subprocess: the real storage.Client() there finds the
    # emulator through STORAGE_EMULATOR_HOST, as it would find GCS on Vertex AI.
    from chainproof.runner import SAMPLE, run_reference_pipeline
    from chainproof.verify import verify_bundle

    bucket = _client(emulator).create_bucket("training-data")
    # "python3" in the object's path: kfp.local rewrites that word in every task argument, and
    # chainproof's escaping must give the step the very URI (the decoy is what a naive
    # percent-encoding workaround would fetch).
    blob = bucket.blob("python3/wdbc/train.csv")
    blob.upload_from_filename(str(SAMPLE.path()))
    blob.reload()
    bucket.blob("python%33/wdbc/train.csv").upload_from_string(b"decoy,malignant\n1,0\n")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://{emulator[0]}:{emulator[1]}")
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "test")
    result = run_reference_pipeline(workdir=tmp_path / "work", trust_dir=tmp_path / "trust",
                                    data="gs://training-data/python3/wdbc/train.csv", sha256=SAMPLE.sha256, target=SAMPLE.target)
    ingest = result.verification.step("secure_ingest")
    assert ingest.environment["parameters"]["source_uri"] == f"gs://training-data/python3/wdbc/train.csv#{blob.generation}"
    owner = load_public_key(result.owner_key)
    assert verify_bundle(result.bundle, trusted_owner_keys={owner.keyid: owner}).model_sha256 == result.model_sha256
    scan = json.loads((result.bundle / "reports" / "scan-ingest.json").read_text())
    assert scan["verdict"] == "safe"


def test_dataset_not_matching_the_tabular_schema_is_refused(pipeline_keys, tmp_path):
    schema = json.dumps({"columns": [{"name": "mean_radius", "type": "float", "minimum": 0, "maximum": 20}],
                         "allow_extra_columns": True})
    with pytest.raises(ArtifactRefused, match=r"dataset/breast_cancer.csv@\d+: scan refused it: mean_radius: .*maximum"):
        _ingest(pipeline_keys, tmp_path, source_uri=str(pipeline_keys.data), expected_sha256=pipeline_keys.data_sha256,
                output_prefix="dataset", tabular_schema=schema)
    ok = json.dumps({"columns": [{"name": "mean_radius", "type": "float", "minimum": 0, "maximum": 100}],
                     "allow_extra_columns": True})
    outcome = _ingest(pipeline_keys, tmp_path / "ok", source_uri=str(pipeline_keys.data),
                      expected_sha256=pipeline_keys.data_sha256, output_prefix="dataset", tabular_schema=ok)
    _, link = load_link(outcome.link)
    assert link.environment["chainproof"]["parameters"]["tabular_schema_sha256"] == hashlib.sha256(ok.encode()).hexdigest()


def test_malformed_tabular_schema_is_an_input_error(pipeline_keys, tmp_path):
    with pytest.raises(InputError, match="tabular schema: column 'x': type must be"):
        _ingest(pipeline_keys, tmp_path, source_uri=str(pipeline_keys.data), expected_sha256=pipeline_keys.data_sha256,
                output_prefix="dataset", tabular_schema=json.dumps({"columns": [{"name": "x", "type": "decimal"}]}))


def test_publisher_verified_folder_refuses_files_the_signature_does_not_cover(pipeline_keys, publisher, tmp_path):
    # model-signing ignores .git* paths: such files must not be released as publisher-verified (found in review).
    model_dir = _pretrained(tmp_path, publisher)
    (model_dir / ".github").mkdir()
    (model_dir / ".github" / "serving_config.json").write_text('{"handler": "evil"}')
    with pytest.raises(ArtifactRefused, match=r"model/.github/serving_config.json: not covered by the publisher's signature"):
        _ingest(pipeline_keys, tmp_path, source_uri=str(model_dir),
                publisher_public_key=public_key_pem(publisher[1].public_key), signature_uri=str(tmp_path / "model.sig"))
    assert [p.name for p in (tmp_path / "out").iterdir()] == []
