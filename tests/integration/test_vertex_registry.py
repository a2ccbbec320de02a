"""Registration to the Vertex AI Model Registry and audit from it, through the real clients.

google-cloud-aiplatform talks gRPC over TLS to in-process ModelService / Operations
services on 127.0.0.1 (``vertex_fake``); google-cloud-storage talks to the GCS
emulator. Nothing is mocked: the assertions read the requests as the server decoded them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from chainproof import steps
from chainproof.cli import main
from chainproof.errors import ChainError, DigestMismatch
from chainproof.policy import REFERENCE_STEPS, generate_layout, sign_layout
from chainproof.registry import MODEL_DIGEST_LABELS, VertexModelRegistry
from chainproof.verify import verify_registered
from chainproof.runner import SAMPLE
from chainproof.signing import init_keys, load_public_key, load_signer
from chainproof.storage import FetchOptions

from chainproof.testing.servers import gcs_emulator
from chainproof.testing.vertex import vertex_server

PROJECT, LOCATION, BUCKET = "proj", "europe-west4", "models-bucket"


@pytest.fixture(scope="module")
def emulator():
    with gcs_emulator() as address:
        yield f"{address[0]}:{address[1]}"


@pytest.fixture(scope="module")
def vertex(loopback_tls):
    with vertex_server(*loopback_tls) as (fake, address):
        yield fake, address


def _gcs(emulator: str):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(project="test", credentials=AnonymousCredentials(),
                          client_options={"api_endpoint": f"http://{emulator}"})


@pytest.fixture
def env(emulator, vertex, monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://{emulator}")
    monkeypatch.setenv("CHAINPROOF_VERTEX_ENDPOINT", vertex[1])
    vertex[0].models.clear()
    vertex[0].requests.clear()
    client = _gcs(emulator)
    bucket = client.bucket(BUCKET)
    if not bucket.exists():
        client.create_bucket(BUCKET)
    for blob in client.list_blobs(BUCKET):
        blob.delete()
    return client


def _sklearn_minor() -> str:
    from importlib.metadata import version

    return "-".join(version("scikit-learn").split(".")[:2])


#: Vertex AI's prebuilt image for the scikit-learn version of this environment, pinned by a digest.
SERVING = f"us-docker.pkg.dev/vertex-ai/prediction/sklearn-cpu.{_sklearn_minor()}@sha256:{'5e' * 32}"


def _registry(emulator: str, vertex, **serving) -> VertexModelRegistry:
    from google.auth.credentials import AnonymousCredentials

    return VertexModelRegistry(project=PROJECT, location=LOCATION, artifact_root=f"gs://{BUCKET}/registry",
                               api_endpoint=vertex[1], credentials=AnonymousCredentials(),
                               gcs_client_factory=lambda: _gcs(emulator), **(serving or {"serving_image": SERVING}))


@dataclass
class Chain:
    ring: object
    layout_sha256: str
    owner_pub: Path
    model: Path
    gated: Path
    attested: Path


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    base = tmp_path_factory.mktemp("vertex-keys")
    ring = init_keys(base / "keys", roles=["owner", *(s.name for s in REFERENCE_STEPS)], development=True)
    owner = load_signer(ring.signer_reference("owner"))
    layout = sign_layout(generate_layout(REFERENCE_STEPS, {s.name: load_public_key(ring.public_key_path(s.name))
                                                           for s in REFERENCE_STEPS}), owner)
    (base / "root.layout").write_bytes(layout)
    return ring, base / "root.layout", hashlib.sha256(layout).hexdigest()


def _chain(keys, out: Path, n_estimators: int) -> Chain:
    """Run the steps up to the gate on the sample data (seconds, no KFP)."""
    ring, layout_path, layout_sha = keys
    sig = ring.signer_reference
    steps.secure_ingest(source_uri=SAMPLE.path().as_uri(), expected_sha256=SAMPLE.sha256, layout_uri=layout_path.as_uri(),
                        layout_sha256=layout_sha, signer=sig("secure_ingest"), dataset_dir=out / "dataset",
                        chain_dir=out / "c1")
    steps.train_model(dataset_dir=out / "dataset", chain_in=out / "c1", layout_sha256=layout_sha, signer=sig("train_model"),
                      target_column=SAMPLE.target, model_dir=out / "model", chain_out=out / "c2",
                      hyperparameters=json.dumps({"n_estimators": n_estimators}))
    steps.sign_and_attest(model_dir=out / "model", chain_in=out / "c2", layout_sha256=layout_sha,
                          signer=sig("sign_and_attest"), chain_out=out / "c3")
    steps.verify_chain(model_dir=out / "model", chain_in=out / "c3", layout_sha256=layout_sha,
                       signer=sig("verify_chain"), chain_out=out / "c4")
    return Chain(ring=ring, layout_sha256=layout_sha, owner_pub=ring.public_key_path("owner"), model=out / "model",
                 gated=out / "c4", attested=out / "c3")


@pytest.fixture(scope="module")
def chains(keys, tmp_path_factory):
    base = tmp_path_factory.mktemp("vertex-chains")
    return _chain(keys, base / "a", 5), _chain(keys, base / "b", 6)


def _register(chain: Chain, registry, name: str = "fraud"):
    return steps.register_model(model_dir=chain.model, chain_in=chain.gated, layout_sha256=chain.layout_sha256,
                                signer=chain.ring.signer_reference("register_model"), model_name=name, registry=registry)


def test_upload_request_carries_digest_labels_bundle_pointer_and_parent_model(env, emulator, vertex, chains):
    fake, _ = vertex
    registry = _registry(emulator, vertex)
    first = _register(chains[0], registry)
    sha = first.metadata["model_sha256"]
    [req] = fake.calls("UploadModel")
    # The exact request the SDK sent: digest split over two labels, the bundle pointer in the version description.
    assert req.parent == f"projects/{PROJECT}/locations/{LOCATION}"
    assert req.model_id == "fraud" and req.parent_model == ""
    assert {k: req.model.labels[k] for k in MODEL_DIGEST_LABELS} == {MODEL_DIGEST_LABELS[0]: sha[:32],
                                                                    MODEL_DIGEST_LABELS[1]: sha[32:]}
    assert req.model.labels["chainproof-version"] == "0-1-0"
    base = f"gs://{BUCKET}/registry/models/fraud/{sha}"
    assert req.model.artifact_uri == f"{base}/model/"
    assert req.model.container_spec.image_uri == SERVING
    pointer = json.loads(req.model.version_description)["chainproof"]
    assert pointer["bundle"]["uri"] == f"{base}/bundle" and len(pointer["bundle"]["sha256"]) == 64
    assert pointer["model"]["sha256"] == sha
    from chainproof import __version__

    assert pointer["version"] == __version__ and pointer["registered"].endswith("Z")
    assert set(req.model.version_aliases) == {"default", f"sha256-{sha[:16]}"}
    # The LRO was polled, then the version fetched by its versioned name.
    assert fake.calls("GetOperation")
    assert any(r.name.endswith("/models/fraud@1") for r in fake.calls("GetModel"))
    assert first.metadata["reference"] == f"vertex://projects/{PROJECT}/locations/{LOCATION}/models/fraud@1"
    assert first.metadata["resourceName"] == f"projects/{PROJECT}/locations/{LOCATION}/models/fraud@1"
    names = sorted(b.name for b in env.list_blobs(BUCKET))
    assert f"registry/models/fraud/{sha}/model/model.joblib" in names
    assert f"registry/models/fraud/{sha}/bundle/registry/entry.json" in names

    # The same model digest again: found by its labels, nothing uploaded.
    again = _register(chains[0], registry)
    assert again.metadata["created"] is False and again.metadata["reference"] == first.metadata["reference"]
    assert len(fake.calls("UploadModel")) == 1

    # Another model: a new version under the first as parent_model.
    second = _register(chains[1], registry)
    assert len(fake.calls("UploadModel")) == 2
    req2 = fake.calls("UploadModel")[1]
    assert req2.parent_model == f"projects/{PROJECT}/locations/{LOCATION}/models/fraud" and req2.model_id == ""
    assert second.metadata["reference"].endswith("/models/fraud@2")
    assert req2.model.labels[MODEL_DIGEST_LABELS[0]] == second.metadata["model_sha256"][:32]


def test_refuses_to_register_a_chain_that_skipped_the_gate(env, emulator, vertex, chains):
    fake, _ = vertex
    chain = chains[0]
    with pytest.raises(ChainError, match="verify_chain"):
        steps.register_model(model_dir=chain.model, chain_in=chain.attested, layout_sha256=chain.layout_sha256,
                             signer=chain.ring.signer_reference("register_model"), model_name="fraud",
                             registry=_registry(emulator, vertex))
    assert fake.calls("UploadModel") == [] and list(env.list_blobs(BUCKET)) == []


def test_rejects_model_replaced_in_bucket_after_registration(env, emulator, vertex, chains, capsys):
    registry = _registry(emulator, vertex)
    outcome = _register(chains[0], registry)
    reference = outcome.metadata["reference"]
    owner = load_public_key(chains[0].owner_pub)

    verified = verify_registered(reference, registry=registry, trusted_owner_keys={owner.keyid: owner},
                                 fetch_options=FetchOptions(gcs_client_factory=lambda: _gcs(emulator)))
    assert verified.model_sha256 == outcome.metadata["model_sha256"]
    assert any(c.startswith("(13)") for c in verified.checks)
    # The auditor's command, as a person runs it.
    assert main(["verify", reference, "--owner-key", str(chains[0].owner_pub)]) == 0
    assert f"OK: {reference}" in capsys.readouterr().out

    # Someone overwrites the model object in the bucket with other (still valid) bytes.
    blob = env.bucket(BUCKET).blob(f"registry/models/fraud/{outcome.metadata['model_sha256']}/model/model.joblib")
    blob.upload_from_filename(str(chains[1].model / "model.joblib"))
    with pytest.raises(DigestMismatch, match=r"model/model\.joblib"):
        verify_registered(reference, registry=registry, trusted_owner_keys={owner.keyid: owner},
                          fetch_options=FetchOptions(gcs_client_factory=lambda: _gcs(emulator)))
    assert main(["verify", reference, "--owner-key", str(chains[0].owner_pub)]) == 1
    err = capsys.readouterr().err
    assert "FAIL: model/model.joblib" in err


def test_rejects_bundle_edited_in_bucket_after_registration(env, emulator, vertex, chains):
    registry = _registry(emulator, vertex)
    outcome = _register(chains[0], registry)
    owner = load_public_key(chains[0].owner_pub)
    blob = env.bucket(BUCKET).blob(f"registry/models/fraud/{outcome.metadata['model_sha256']}/bundle/reports/extra.txt")
    blob.upload_from_string(b"added later")
    with pytest.raises(DigestMismatch, match="manifest of the folder"):
        verify_registered(outcome.metadata["reference"], registry=registry, trusted_owner_keys={owner.keyid: owner},
                          fetch_options=FetchOptions(gcs_client_factory=lambda: _gcs(emulator)))


def test_verify_local_reference_from_the_registry_folder(tmp_path, chains, capsys):
    from chainproof.registry import LocalModelRegistry

    reg = tmp_path / "registry"
    outcome = _register(chains[0], LocalModelRegistry(reg))
    assert main(["verify", outcome.metadata["reference"], "--registry", str(reg),
                 "--owner-key", str(chains[0].owner_pub)]) == 0
    model = reg / "models" / "fraud" / "1" / "model" / "model.joblib"
    shutil.copyfile(chains[1].model / "model.joblib", model)
    assert main(["verify", outcome.metadata["reference"], "--registry", str(reg),
                 "--owner-key", str(chains[0].owner_pub)]) == 1
    assert "model/model.joblib" in capsys.readouterr().err


def test_refuses_a_serving_image_for_another_scikit_learn_version_before_uploading_anything(env, emulator, vertex,
                                                                                           chains):
    from importlib.metadata import version

    from chainproof.errors import ArtifactRefused

    fake, _ = vertex
    old = f"us-docker.pkg.dev/vertex-ai/prediction/sklearn-cpu.1-6@sha256:{'16' * 32}"
    with pytest.raises(ArtifactRefused) as err:
        _register(chains[0], _registry(emulator, vertex, serving_image=old))
    # Both versions, in one line: what the image serves and what the signed train link recorded.
    assert f"serves scikit-learn 1.6, but the model was trained with scikit-learn {version('scikit-learn')}" in str(err.value)
    assert fake.calls("UploadModel") == [] and list(env.list_blobs(BUCKET)) == []


def test_the_trained_version_is_the_one_the_signed_train_link_records(chains):
    from importlib.metadata import version

    from chainproof.attest import load_link

    [link] = [load_link(p)[1] for p in (chains[0].gated).rglob("train_model.*.link")]
    assert link.environment["chainproof"]["frameworks"] == {"scikit-learn": version("scikit-learn")}


@pytest.mark.parametrize("kwargs, expected", [
    ({"serving_image": "us-docker.pkg.dev/vertex-ai/prediction/sklearn-cpu.1-6:latest"}, "not pinned by digest"),
    ({"serving_image": f"europe-docker.pkg.dev/p/r/my-server@sha256:{'ab' * 32}"}, "not a Vertex AI prebuilt scikit-learn"),
    ({"chainproof_serving_image": "europe-docker.pkg.dev/p/r/chainproof-serving:0.1.0"}, "not pinned by digest"),
])
def test_refuses_a_serving_image_by_tag_or_of_unknown_kind_when_the_registry_is_opened(emulator, vertex, kwargs, expected):
    from chainproof.errors import InputError

    with pytest.raises(InputError, match=expected):
        _registry(emulator, vertex, **kwargs)


def test_chainproof_own_serving_image_by_digest_is_registered(env, emulator, vertex, chains):
    fake, _ = vertex
    own = f"europe-docker.pkg.dev/p/r/chainproof-serving@sha256:{'c0' * 32}"
    uri = (f"vertex://projects/{PROJECT}/locations/{LOCATION}?artifacts=gs://{BUCKET}/registry"
           f"&endpoint={vertex[1]}&chainproof_serving_image={own}")
    from google.auth.credentials import AnonymousCredentials

    registry = VertexModelRegistry.from_uri(uri, credentials=AnonymousCredentials(), gcs_client_factory=lambda: _gcs(emulator))
    _register(chains[0], registry)
    [req] = fake.calls("UploadModel")
    assert req.model.container_spec.image_uri == own


def test_no_serving_image_is_refused_naming_the_one_to_use(env, emulator, vertex, chains):
    from chainproof.errors import RegistryError

    from google.auth.credentials import AnonymousCredentials

    fake, _ = vertex
    registry = VertexModelRegistry(project=PROJECT, location=LOCATION, artifact_root=f"gs://{BUCKET}/registry",
                                   api_endpoint=vertex[1], credentials=AnonymousCredentials(),
                                   gcs_client_factory=lambda: _gcs(emulator))
    with pytest.raises(RegistryError, match=f"sklearn-cpu.{_sklearn_minor()}@sha256:... or chainproof_serving_image"):
        _register(chains[0], registry)
    assert fake.calls("UploadModel") == []


# -- the registry's own rules, driven directly (scripts/mutation.sh registry-vertex sample)


@dataclass
class _Step:
    products: dict
    environment: dict


@dataclass
class _Verified:
    model_files: dict
    steps: list


def _trained_by(*versions: str) -> _Verified:
    files = {"model/model.joblib": "a" * 64}
    steps_ = [_Step(products=dict(files), environment={"frameworks": {"scikit-learn": v}} if v else {}) for v in versions]
    steps_.append(_Step(products={"reports/x.json": "b" * 64}, environment={"frameworks": {"scikit-learn": "0.1.0"}}))
    return _Verified(model_files=files, steps=steps_)


def test_the_serving_image_check_names_both_versions_and_the_way_out(emulator, vertex):
    from importlib.metadata import version

    from chainproof.errors import ArtifactRefused

    old = f"us-docker.pkg.dev/vertex-ai/prediction/sklearn-cpu.1-6@sha256:{'16' * 32}"
    trained = version("scikit-learn")
    minor = ".".join(trained.split(".")[:2])
    with pytest.raises(ArtifactRefused) as err:
        _registry(emulator, vertex, serving_image=old).check_serving_image(_trained_by(trained))
    assert str(err.value) == (f"serving image {old}: serves scikit-learn 1.6, but the model was trained with scikit-learn "
                              f"{trained}; use a serving image for {minor} or chainproof's own serving image "
                              "(chainproof_serving_image)")
    # Only the steps that produced the model's files count (the other step recorded 0.1.0).
    assert _registry(emulator, vertex).check_serving_image(_trained_by(trained)) == trained


def test_a_chain_that_recorded_no_or_two_scikit_learn_versions_is_refused(emulator, vertex):
    from chainproof.errors import ArtifactRefused

    registry = _registry(emulator, vertex)
    with pytest.raises(ArtifactRefused) as err:
        registry.check_serving_image(_trained_by(""))
    assert str(err.value) == (f"serving image {SERVING}: serves scikit-learn {_sklearn_minor().replace('-', '.')}, "
                              "but no step of the chain recorded the scikit-learn version the model was trained with")
    with pytest.raises(ArtifactRefused) as err:
        registry.check_serving_image(_trained_by("1.5.2", "1.6.1"))
    assert str(err.value) == "model: its files were produced with scikit-learn 1.5.2, 1.6.1"


def test_an_upload_replaces_leftovers_under_its_prefix_only(env, emulator, vertex, tmp_path):
    registry = _registry(emulator, vertex)
    bucket = env.bucket(BUCKET)
    bucket.blob("registry/x/model/stale.bin").upload_from_string(b"left by an interrupted attempt")
    bucket.blob("registry/x/model-other/keep.bin").upload_from_string(b"another prefix")
    local = tmp_path / "model"
    (local / "sub").mkdir(parents=True)
    (local / "model.joblib").write_bytes(b"m")
    (local / "sub" / "f.json").write_bytes(b"{}")
    registry._upload_tree(local, f"gs://{BUCKET}/registry/x/model")
    names = sorted(b.name for b in env.list_blobs(BUCKET))
    assert names == ["registry/x/model-other/keep.bin", "registry/x/model/model.joblib", "registry/x/model/sub/f.json"]


def test_the_artifact_root_loses_its_trailing_slash_and_bad_arguments_are_named(emulator, vertex):
    from google.auth.credentials import AnonymousCredentials

    from chainproof.errors import InputError

    registry = VertexModelRegistry(project=PROJECT, location=LOCATION, artifact_root=f"gs://{BUCKET}/registry/",
                                   credentials=AnonymousCredentials(), serving_image=SERVING)
    assert registry.artifact_root == f"gs://{BUCKET}/registry"
    for root in ("s3://b/x", "gs://", "gs:///"):
        with pytest.raises(InputError) as err:
            VertexModelRegistry(project=PROJECT, location=LOCATION, artifact_root=root, serving_image=SERVING)
        assert str(err.value) == f"artifact root {root!r}: expected gs://BUCKET[/PREFIX]"
    own = f"europe-docker.pkg.dev/p/r/chainproof-serving@sha256:{'c0' * 32}"
    with pytest.raises(InputError) as err:
        VertexModelRegistry(project=PROJECT, location=LOCATION, serving_image=SERVING, chainproof_serving_image=own)
    assert str(err.value) == "give serving_image (a prebuilt scikit-learn image) or chainproof_serving_image, not both"
    with pytest.raises(InputError) as err:
        VertexModelRegistry(project=PROJECT, location=LOCATION, serving_image=own)
    assert str(err.value).endswith("for chainproof's own serving image use chainproof_serving_image")


def test_the_identity_of_a_registration_is_its_project_location_and_model():
    registry = VertexModelRegistry(project=PROJECT, location=LOCATION, serving_image=SERVING)
    assert registry.identity_for(f"vertex://projects/{PROJECT}/locations/{LOCATION}/models/fraud@3") == {
        "kind": "vertex", "project": PROJECT, "location": LOCATION, "model_id": "fraud"}
