"""Remote sources through the real clients: google-cloud-storage against the GCS emulator,
requests against a local HTTPS server, behind a proxy that logs and injects faults."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from chainproof.digests import manifest_digest
from chainproof.errors import ArtifactRefused, DigestMismatch, InputError
from chainproof.storage import FetchLimits, FetchOptions, RetryPolicy, fetch, fetch_tree

from chainproof.testing.servers import gcs_emulator, make_self_signed_cert, object_server, proxy

FAST_RETRY = RetryPolicy(attempts=4, initial_delay=0.01, max_delay=0.02, deadline=3.0)
PAYLOAD = os.urandom(3 * (1 << 20) + 17)  # several chunks, odd length
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


def _no_sleep(_: float) -> None:
    pass


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*")) if directory.exists() else []


@pytest.fixture(scope="module")
def emulator():
    with gcs_emulator() as address:
        yield address


def _client(endpoint: str):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(project="test", credentials=AnonymousCredentials(), client_options={"api_endpoint": endpoint})


@pytest.fixture
def bucket(emulator, request):
    client = _client(f"http://{emulator[0]}:{emulator[1]}")
    name = f"b-{request.node.name[:40].lower().replace('_', '-')}"
    bucket = client.create_bucket(name)
    yield bucket
    for blob in client.list_blobs(name):
        blob.delete()
    bucket.delete()


@pytest.fixture
def gcs_proxy(emulator):
    with proxy(emulator) as srv:
        yield srv


def _gcs_options(gcs_proxy) -> FetchOptions:
    endpoint = f"http://127.0.0.1:{gcs_proxy.server_address[1]}"
    return FetchOptions(retry=FAST_RETRY, gcs_client_factory=lambda: _client(endpoint))


def test_gcs_object_is_pinned_to_its_generation_for_the_download(bucket, gcs_proxy, tmp_path):
    blob = bucket.blob("data/train.bin")
    blob.upload_from_string(PAYLOAD)
    blob.reload()
    got = fetch(f"gs://{bucket.name}/data/train.bin", dest_dir=tmp_path / "out", expected_sha256=PAYLOAD_SHA,
                options=_gcs_options(gcs_proxy), sleep=_no_sleep)
    assert got.sha256 == PAYLOAD_SHA and got.size == len(PAYLOAD)
    assert got.generation == str(blob.generation)
    assert got.pinned_uri == f"gs://{bucket.name}/data/train.bin#{blob.generation}"
    # The emulator ignores ?generation=, so prove the pin at the protocol level.
    media = [path for method, path, _ in gcs_proxy.log.entries if "alt=media" in path]
    assert media and all(f"generation={blob.generation}" in path for path in media)
    assert (tmp_path / "out" / "train.bin").read_bytes() == PAYLOAD


def test_gcs_explicit_generation_in_uri_is_sent(bucket, gcs_proxy, tmp_path):
    blob = bucket.blob("m.bin")
    blob.upload_from_string(b"abc")
    blob.reload()
    fetch(f"gs://{bucket.name}/m.bin#{blob.generation}", dest_dir=tmp_path, expected_sha256=hashlib.sha256(b"abc").hexdigest(),
          options=_gcs_options(gcs_proxy), sleep=_no_sleep)
    assert any(f"generation={blob.generation}" in path for _, path, _ in gcs_proxy.log.entries if "alt=media" in path)


def test_gcs_object_overwritten_under_same_name_is_refused_by_digest(bucket, gcs_proxy, tmp_path):
    bucket.blob("train.csv").upload_from_string(b"a,b\n1,2\n")
    pinned = hashlib.sha256(b"a,b\n1,2\n").hexdigest()
    bucket.blob("train.csv").upload_from_string(b"a,b\n1,666\n")  # poisoned in place
    with pytest.raises(DigestMismatch) as err:
        fetch(f"gs://{bucket.name}/train.csv", dest_dir=tmp_path / "out", expected_sha256=pinned,
              options=_gcs_options(gcs_proxy), sleep=_no_sleep)
    message = str(err.value)
    assert f"gs://{bucket.name}/train.csv" in message and "generation " in message
    assert f"expected sha256:{pinned}" in message
    poisoned = hashlib.sha256(b"a,b\n1,666\n").hexdigest()
    assert f"got sha256:{poisoned}" in message
    assert _leftovers(tmp_path / "out") == []


@pytest.mark.parametrize("fault", ["503", "drop", "truncate"])
def test_gcs_download_recovers_from_transient_faults(bucket, gcs_proxy, tmp_path, fault):
    bucket.blob("big.bin").upload_from_string(PAYLOAD)
    gcs_proxy.faults.match, gcs_proxy.faults.plan = "alt=media", [fault]
    got = fetch(f"gs://{bucket.name}/big.bin", dest_dir=tmp_path / "out", expected_sha256=PAYLOAD_SHA,
                options=_gcs_options(gcs_proxy), sleep=_no_sleep)
    assert got.sha256 == PAYLOAD_SHA
    assert (tmp_path / "out" / "big.bin").read_bytes() == PAYLOAD
    assert _leftovers(tmp_path / "out") == ["big.bin"]


def test_gcs_persistent_failure_fails_cleanly_and_leaves_nothing(bucket, gcs_proxy, tmp_path):
    bucket.blob("big.bin").upload_from_string(PAYLOAD)
    gcs_proxy.faults.match, gcs_proxy.faults.plan = "alt=media", ["503"] * 200
    with pytest.raises(ArtifactRefused, match=r"download failed after 4 attempts"):
        fetch(f"gs://{bucket.name}/big.bin", dest_dir=tmp_path / "out", expected_sha256=PAYLOAD_SHA,
              options=FetchOptions(retry=RetryPolicy(attempts=4, initial_delay=0.01, max_delay=0.01, deadline=0.3),
                                   gcs_client_factory=_gcs_options(gcs_proxy).gcs_client_factory),
              sleep=_no_sleep)
    assert _leftovers(tmp_path / "out") == []


def test_gcs_missing_object_is_an_input_error(bucket, gcs_proxy, tmp_path):
    with pytest.raises(InputError, match="no such object"):
        fetch(f"gs://{bucket.name}/nope.csv", dest_dir=tmp_path, expected_sha256="a" * 64,
              options=_gcs_options(gcs_proxy), sleep=_no_sleep)


def test_gcs_folder_is_pinned_by_manifest_and_bounded_by_max_objects(bucket, gcs_proxy, tmp_path):
    files = {"model/model.joblib": b"m" * 100, "model/config/params.json": b"{}"}
    for name, data in files.items():
        bucket.blob(name).upload_from_string(data)
    manifest = {name.split("/", 1)[1]: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    tree = fetch_tree(f"gs://{bucket.name}/model/", dest_dir=tmp_path / "model",
                      expected_manifest_sha256=manifest_digest(manifest), options=_gcs_options(gcs_proxy), sleep=_no_sleep)
    assert {f.name for f in tree.files} == {"model.joblib", "config/params.json"}
    assert all(f.generation for f in tree.files)
    assert (tmp_path / "model" / "config" / "params.json").read_bytes() == b"{}"
    with pytest.raises(ArtifactRefused, match="more than 1 objects"):
        fetch_tree(f"gs://{bucket.name}/model/", dest_dir=tmp_path / "again", expected_manifest_sha256=manifest_digest(manifest),
                   limits=FetchLimits(max_objects=1), options=_gcs_options(gcs_proxy), sleep=_no_sleep)
    with pytest.raises(DigestMismatch, match="manifest of the folder"):
        fetch_tree(f"gs://{bucket.name}/model/", dest_dir=tmp_path / "third", expected_manifest_sha256="0" * 64,
                   options=_gcs_options(gcs_proxy), sleep=_no_sleep)
    assert not (tmp_path / "third").exists() and not list(tmp_path.glob(".quarantine-*"))


# --- HTTPS and S3 --------------------------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return make_self_signed_cert(tmp_path_factory.mktemp("tls"))


def _https_options(tls, **kw) -> FetchOptions:
    return FetchOptions(ca_file=str(tls[0]), retry=FAST_RETRY, **kw)


def test_https_fetch_verifies_over_tls(tls, tmp_path):
    with object_server({"/data/train.bin": PAYLOAD}, tls=tls) as srv:
        url = f"https://127.0.0.1:{srv.server_address[1]}/data/train.bin"
        got = fetch(url, dest_dir=tmp_path, expected_sha256=PAYLOAD_SHA, options=_https_options(tls), sleep=_no_sleep)
    assert got.sha256 == PAYLOAD_SHA and got.name == "train.bin"


def test_https_untrusted_certificate_is_refused(tls, tmp_path):
    with object_server({"/x": b"x"}, tls=tls) as srv:
        with pytest.raises(InputError, match="TLS verification failed"):
            fetch(f"https://127.0.0.1:{srv.server_address[1]}/x", dest_dir=tmp_path,
                  expected_sha256=hashlib.sha256(b"x").hexdigest(), options=FetchOptions(retry=FAST_RETRY), sleep=_no_sleep)
    assert _leftovers(tmp_path) == []


def test_plain_http_is_refused(tmp_path):
    with object_server({"/x": b"x"}, tls=None) as srv:
        with pytest.raises(InputError, match="only https"):
            fetch(f"http://127.0.0.1:{srv.server_address[1]}/x", dest_dir=tmp_path,
                  expected_sha256=hashlib.sha256(b"x").hexdigest(), sleep=_no_sleep)
        assert srv.log.entries == []  # refused before any byte moved


def test_redirect_to_plain_http_is_refused(tls, tmp_path):
    with object_server({"/x": b"x"}, tls=tls, redirects={"/moved": "http://127.0.0.1:9/x"}) as srv:
        with pytest.raises(ArtifactRefused, match="redirect to non-https URL refused"):
            fetch(f"https://127.0.0.1:{srv.server_address[1]}/moved", dest_dir=tmp_path,
                  expected_sha256=hashlib.sha256(b"x").hexdigest(), name="x", options=_https_options(tls), sleep=_no_sleep)
    assert _leftovers(tmp_path) == []


def test_https_redirect_to_https_is_followed(tls, tmp_path):
    with object_server({"/x": b"x"}, tls=tls) as srv:
        port = srv.server_address[1]
        srv.redirects["/moved"] = f"https://127.0.0.1:{port}/x"
        got = fetch(f"https://127.0.0.1:{port}/moved", dest_dir=tmp_path, expected_sha256=hashlib.sha256(b"x").hexdigest(),
                    name="x", options=_https_options(tls), sleep=_no_sleep)
    assert got.path.read_bytes() == b"x"


@pytest.mark.parametrize("fault", ["503", "drop", "truncate"])
def test_https_recovers_and_resumes_with_a_range(tls, tmp_path, fault):
    with object_server({"/big": PAYLOAD}, tls=tls) as srv:
        srv.faults.match, srv.faults.plan = "/big", [fault]
        got = fetch(f"https://127.0.0.1:{srv.server_address[1]}/big", dest_dir=tmp_path, expected_sha256=PAYLOAD_SHA,
                    options=_https_options(tls), sleep=_no_sleep)
        ranges = [r for _, _, r in srv.log.entries if r]
    assert got.sha256 == PAYLOAD_SHA
    if fault in ("drop", "truncate"):
        assert ranges and ranges[0].startswith("bytes=") and ranges[0] != "bytes=0-"


def test_https_server_ignoring_ranges_restarts_from_zero(tls, tmp_path):
    with object_server({"/big": PAYLOAD}, tls=tls, honour_ranges=False) as srv:
        srv.faults.match, srv.faults.plan = "/big", ["truncate"]
        got = fetch(f"https://127.0.0.1:{srv.server_address[1]}/big", dest_dir=tmp_path, expected_sha256=PAYLOAD_SHA,
                    options=_https_options(tls), sleep=_no_sleep)
    assert got.size == len(PAYLOAD) and got.path.read_bytes() == PAYLOAD


def test_https_persistent_truncation_fails_cleanly(tls, tmp_path):
    with object_server({"/big": PAYLOAD}, tls=tls) as srv:
        srv.faults.match, srv.faults.plan = "/big", ["503"] * 50
        with pytest.raises(ArtifactRefused, match="download failed after 4 attempts"):
            fetch(f"https://127.0.0.1:{srv.server_address[1]}/big", dest_dir=tmp_path, expected_sha256=PAYLOAD_SHA,
                  options=_https_options(tls), sleep=_no_sleep)
    assert _leftovers(tmp_path) == []


def test_https_size_limit_stops_the_download(tls, tmp_path):
    with object_server({"/big": PAYLOAD}, tls=tls) as srv:
        with pytest.raises(ArtifactRefused, match="larger than the 1048576-byte limit"):
            fetch(f"https://127.0.0.1:{srv.server_address[1]}/big", dest_dir=tmp_path, expected_sha256=PAYLOAD_SHA,
                  limits=FetchLimits(max_bytes=1 << 20), options=_https_options(tls), sleep=_no_sleep)
    assert _leftovers(tmp_path) == []


def test_s3_public_object_over_anonymous_https_with_version(tls, tmp_path):
    with object_server({"/public-bucket/datasets/train.bin": PAYLOAD}, tls=tls) as srv:
        endpoint = f"https://127.0.0.1:{srv.server_address[1]}"
        got = fetch("s3://public-bucket/datasets/train.bin#v123", dest_dir=tmp_path, expected_sha256=PAYLOAD_SHA,
                    options=_https_options(tls, s3_endpoint=endpoint), sleep=_no_sleep)
        (method, path, _), *_ = srv.log.entries
    assert path == "/public-bucket/datasets/train.bin?versionId=v123"
    assert got.pinned_uri == "s3://public-bucket/datasets/train.bin#v123"
    assert got.sha256 == PAYLOAD_SHA


def test_gcs_source_whose_path_holds_the_interpreter_name_fetches_the_right_object(bucket, emulator, tmp_path,
                                                                                   monkeypatch):
    # kfp.local rewrites "python3" in every parameter value; the object name must arrive intact.
    from chainproof.runner import SAMPLE, run_reference_pipeline

    bucket.blob("python3/data/breast_cancer.csv").upload_from_filename(str(SAMPLE.path()))
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://{emulator[0]}:{emulator[1]}")
    result = run_reference_pipeline(workdir=tmp_path / "work", trust_dir=tmp_path / "trust",
                                    data=f"gs://{bucket.name}/python3/data/breast_cancer.csv",
                                    sha256=SAMPLE.sha256, target="malignant")
    ingest = result.verification.step("secure_ingest")
    assert ingest.products["dataset/breast_cancer.csv"] == SAMPLE.sha256
    assert ingest.environment["parameters"]["source_uri"].startswith(f"gs://{bucket.name}/python3/data/breast_cancer.csv")
