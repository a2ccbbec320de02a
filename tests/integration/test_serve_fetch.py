"""chainproof serve --model-source: the model fetched over HTTPS (a loopback object server), pinned by
the digests of the verified chain, verified again and scanned before it is loaded."""

from __future__ import annotations

import pytest

from chainproof.errors import DigestMismatch, SignatureError, VerificationError
from chainproof.serve.loader import load_verified
from chainproof.signing import init_keys, load_public_key
from chainproof.storage import FetchOptions, RetryPolicy
from chainproof.testing.servers import make_self_signed_cert, object_server


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return make_self_signed_cert(tmp_path_factory.mktemp("tls"))


def _objects(copy) -> dict[str, bytes]:
    return {f"/models/m1/{p.name}": p.read_bytes() for p in copy.model.iterdir() if p.is_file()}


def _options(tls) -> FetchOptions:
    return FetchOptions(ca_file=str(tls[0]), retry=RetryPolicy(attempts=1))


def test_serves_the_model_fetched_over_https_after_verifying_it(registered, tls, tmp_path):
    import shutil

    objects = _objects(registered)
    shutil.rmtree(registered.model)  # nothing local: the model comes from the object store
    with object_server(objects, tls=tls) as srv:
        uri = f"https://127.0.0.1:{srv.server_address[1]}/models/m1/"
        served = load_verified(str(registered.bundle), trusted_owner_keys=registered.owner_keys, model_source=uri,
                               fetch_options=_options(tls), workdir=tmp_path)
    try:
        assert served.name == "chainproof-model"
        assert served.source.is_relative_to(tmp_path) and (served.source / "model.joblib").is_file()
        assert sorted(served.result.model_files) == ["model/features.json", "model/model.joblib"]
        assert hasattr(served.estimator, "predict")
        assert any(c.startswith("(9) 2 model files match") for c in served.checks)
        assert any(c.startswith("serve: model/model.joblib loaded") for c in served.checks)
    finally:
        served.close()


def test_refuses_a_model_swapped_in_the_object_store(registered, tls, tmp_path):
    objects = _objects(registered)
    swapped = dict(objects)
    body = bytearray(swapped["/models/m1/model.joblib"])
    body[300] ^= 1
    swapped["/models/m1/model.joblib"] = bytes(body)
    with object_server(swapped, tls=tls) as srv:
        uri = f"https://127.0.0.1:{srv.server_address[1]}/models/m1/"
        with pytest.raises(DigestMismatch) as err:
            load_verified(str(registered.bundle), trusted_owner_keys=registered.owner_keys, model_source=uri,
                          fetch_options=_options(tls), workdir=tmp_path / "w")
    assert "model.joblib" in str(err.value) and "expected sha256:" in str(err.value)
    assert not list((tmp_path / "w").rglob("model.joblib"))  # nothing released from quarantine


def test_fetches_nothing_for_a_bundle_from_an_untrusted_owner(registered, tls, tmp_path):
    other = init_keys(tmp_path / "other", roles=["owner"], development=True)
    key = load_public_key(other.public_key_path("owner"))
    with object_server(_objects(registered), tls=tls) as srv:
        uri = f"https://127.0.0.1:{srv.server_address[1]}/models/m1/"
        with pytest.raises((SignatureError, VerificationError)):
            load_verified(str(registered.bundle), trusted_owner_keys={key.keyid: key}, model_source=uri,
                          fetch_options=_options(tls), workdir=tmp_path / "w")
        assert not [path for _, path, _ in srv.log.entries if path.startswith("/models/m1/")]


def test_model_sha256_pins_the_whole_folder(registered, tls, tmp_path):
    with object_server(_objects(registered), tls=tls) as srv:
        uri = f"https://127.0.0.1:{srv.server_address[1]}/models/m1/"
        with pytest.raises(DigestMismatch, match=r"--model-sha256"):
            load_verified(str(registered.bundle), trusted_owner_keys=registered.owner_keys, model_source=uri,
                          model_sha256="0" * 64, fetch_options=_options(tls), workdir=tmp_path / "w")


def _check_served(served, tmp_path) -> None:
    try:
        assert served.source.is_relative_to(tmp_path) and (served.source / "model.joblib").is_file()
        assert sorted(served.result.model_files) == ["model/features.json", "model/model.joblib"]
        assert any(c.startswith("(9) 2 model files match") for c in served.checks)
    finally:
        served.close()


def test_serves_the_model_fetched_from_s3(registered, tls, tmp_path):
    """s3:// path-style requests to the endpoint, the same digests enforced."""
    import shutil

    objects = {f"/models-bucket/python3/m1/{name.rsplit('/', 1)[1]}": body for name, body in _objects(registered).items()}
    shutil.rmtree(registered.model)
    with object_server(objects, tls=tls) as srv:
        endpoint = f"https://127.0.0.1:{srv.server_address[1]}"
        options = FetchOptions(ca_file=str(tls[0]), s3_endpoint=endpoint, retry=RetryPolicy(attempts=1))
        served = load_verified(str(registered.bundle), trusted_owner_keys=registered.owner_keys,
                               model_source="s3://models-bucket/python3/m1/", fetch_options=options, workdir=tmp_path)
        paths = [path for _, path, _ in srv.log.entries]
    _check_served(served, tmp_path)
    assert any(p.startswith("/models-bucket/python3/m1/model.joblib") for p in paths)


@pytest.fixture(scope="module")
def emulator():
    from chainproof.testing.servers import gcs_emulator

    with gcs_emulator() as address:
        yield address


def _gcs_client(emulator):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(project="test", credentials=AnonymousCredentials(),
                          client_options={"api_endpoint": f"http://{emulator[0]}:{emulator[1]}"})


def test_serves_the_model_fetched_from_cloud_storage_and_refuses_a_swapped_object(registered, emulator, tmp_path):
    """gs:// through google-cloud-storage against the emulator: each object read by generation, verified."""
    import shutil

    client = _gcs_client(emulator)
    bucket = client.create_bucket("serve-models")
    for name, body in _objects(registered).items():
        bucket.blob(f"python3/m1/{name.rsplit('/', 1)[1]}").upload_from_string(body)
    shutil.rmtree(registered.model)
    options = FetchOptions(retry=RetryPolicy(attempts=1), gcs_client_factory=lambda: _gcs_client(emulator))
    served = load_verified(str(registered.bundle), trusted_owner_keys=registered.owner_keys,
                           model_source="gs://serve-models/python3/m1/", fetch_options=options, workdir=tmp_path / "ok")
    _check_served(served, tmp_path / "ok")
    blob = bucket.blob("python3/m1/model.joblib")
    body = bytearray(blob.download_as_bytes())
    body[300] ^= 1
    blob.upload_from_string(bytes(body))
    with pytest.raises(DigestMismatch) as err:
        load_verified(str(registered.bundle), trusted_owner_keys=registered.owner_keys,
                      model_source="gs://serve-models/python3/m1/", fetch_options=options, workdir=tmp_path / "w")
    assert "model.joblib" in str(err.value)
    assert not list((tmp_path / "w").rglob("model.joblib"))
