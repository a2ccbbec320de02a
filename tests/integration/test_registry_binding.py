"""Registry binding: a registration verifies only from the registry, and the locations, it was written to.

The chains are built with the steps themselves (no KFP); Vertex AI is the in-process
gRPC fake over TLS with the GCS emulator, through the real clients.
"""

from __future__ import annotations

import json
import shutil

import pytest

from chainproof.cli import main
from chainproof.errors import VerificationError
from chainproof.registry import LocalModelRegistry
from chainproof.verify import verify_registered
from chainproof.signing import load_public_key
from chainproof.storage import FetchOptions

from .test_vertex_registry import BUCKET, _chain, _gcs, _register, _registry, emulator, env, keys, vertex  # noqa: F401


@pytest.fixture(scope="module")
def chains(keys, tmp_path_factory):  # noqa: F811
    # One chain is enough here: a second registry's registration of the same model is the attack.
    chain = _chain(keys, tmp_path_factory.mktemp("binding-chain"), 5)
    return chain, chain


def _owner(chain) -> dict:
    key = load_public_key(chain.owner_pub)
    return {key.keyid: key}


def test_local_registration_attests_the_registry_identity_and_locations(tmp_path, chains):  # noqa: F811
    reg = LocalModelRegistry(tmp_path / "a")
    outcome = _register(chains[0], reg)
    identity = json.loads((tmp_path / "a" / "registry.json").read_text())
    entry = json.loads((tmp_path / "a" / "models" / "fraud" / "1" / "bundle" / "registry" / "entry.json").read_text())
    assert entry["registry"] == {"kind": "local", "registry_id": identity["registry_id"]}
    assert len(identity["registry_id"]) == 32
    result = verify_registered(outcome.metadata["reference"], registry=reg, trusted_owner_keys=_owner(chains[0]))
    assert any(c.startswith("(17)") and identity["registry_id"] in c for c in result.checks)


def test_rejects_another_registrys_registration_of_the_same_name_and_version(tmp_path, chains):  # noqa: F811
    ours, theirs = LocalModelRegistry(tmp_path / "ours"), LocalModelRegistry(tmp_path / "theirs")
    _register(chains[0], ours)
    _register(chains[1], theirs)
    # Their local://fraud@1 (signed by the same owner, verifies on its own) put in place of ours.
    shutil.rmtree(tmp_path / "ours" / "models" / "fraud" / "1")
    shutil.copytree(tmp_path / "theirs" / "models" / "fraud" / "1", tmp_path / "ours" / "models" / "fraud" / "1")
    with pytest.raises(VerificationError) as err:
        verify_registered("local://fraud@1", registry=ours, trusted_owner_keys=_owner(chains[0]))
    ours_id, theirs_id = ours.identity()["registry_id"], theirs.identity()["registry_id"]
    assert f"registered into local registry {theirs_id}" in str(err.value)
    assert f"read from local registry {ours_id}" in str(err.value)
    assert err.value.failed_check == "17"
    assert any(c.startswith("(16)") for c in err.value.passed_checks)


def test_rejects_an_entry_that_points_at_a_copy_elsewhere(tmp_path, chains):  # noqa: F811
    reg = LocalModelRegistry(tmp_path / "a")
    _register(chains[0], reg)
    version = tmp_path / "a" / "models" / "fraud" / "1"
    copy = tmp_path / "elsewhere"
    shutil.copytree(version / "model", copy / "model")
    record = json.loads((version / "version.json").read_text())
    record["model"]["location"] = str(copy / "model")
    (version / "version.json").write_text(json.dumps(record))
    with pytest.raises(VerificationError, match=r"registered the model at .*/a/models/fraud/1/model, but local://fraud@1 "
                                                r"read it from .*/elsewhere/model"):
        verify_registered("local://fraud@1", registry=reg, trusted_owner_keys=_owner(chains[0]))


def test_rejects_registry_entry_whose_model_digest_is_not_the_verified_model(tmp_path, chains):  # noqa: F811
    # Check (15): the (unsigned) version record's digest must be the verified model's.
    reg = LocalModelRegistry(tmp_path / "a")
    _register(chains[0], reg)
    path = tmp_path / "a" / "models" / "fraud" / "1" / "version.json"
    record = json.loads(path.read_text())
    record["model"]["sha256"] = "0" * 64
    path.write_text(json.dumps(record))
    with pytest.raises(VerificationError, match=r"model digest labels.*expected sha256:0{64}") as err:
        verify_registered("local://fraud@1", registry=reg, trusted_owner_keys=_owner(chains[0]))
    assert err.value.failed_check == "15"


def test_rejects_a_registration_copied_under_another_version(tmp_path, chains):  # noqa: F811
    # Check (16): version 2 holding version 1's evidence (the attested entry names @1).
    reg = LocalModelRegistry(tmp_path / "a")
    _register(chains[0], reg)
    base = tmp_path / "a" / "models" / "fraud"
    shutil.copytree(base / "1", base / "2")
    record = json.loads((base / "2" / "version.json").read_text())
    record.update(reference="local://fraud@2", version="2")
    record["bundle"]["location"] = str(base / "2" / "bundle")
    record["model"]["location"] = str(base / "2" / "model")
    (base / "2" / "version.json").write_text(json.dumps(record))
    with pytest.raises(VerificationError, match=r"the chain registered 'local://fraud@1', not 'local://fraud@2'") as err:
        verify_registered("local://fraud@2", registry=reg, trusted_owner_keys=_owner(chains[0]))
    assert err.value.failed_check == "16"


def test_cli_failure_report_of_a_registry_reference_lists_what_passed(tmp_path, chains, capsys):  # noqa: F811
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    _register(chains[0], LocalModelRegistry(ours))
    _register(chains[1], LocalModelRegistry(theirs))
    shutil.rmtree(ours / "models" / "fraud" / "1")
    shutil.copytree(theirs / "models" / "fraud" / "1", ours / "models" / "fraud" / "1")
    code = main(["verify", "local://fraud@1", "--registry", str(ours), "--owner-key", str(chains[0].owner_pub),
                 "--format", "json"])
    assert code == 1
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert doc["verified"] is False and doc["failure"]["check"] == "17"
    numbers = [c.split(")")[0] + ")" for c in doc["checks"]]
    assert numbers[0] == "(0)" and "(16)" in numbers and "(12)" in numbers


def test_vertex_registration_attests_project_location_and_model_id(env, emulator, vertex, chains):  # noqa: F811
    registry = _registry(emulator, vertex)
    outcome = _register(chains[0], registry)
    reference = outcome.metadata["reference"]
    options = FetchOptions(gcs_client_factory=lambda: _gcs(emulator))
    result = verify_registered(reference, registry=registry, trusted_owner_keys=_owner(chains[0]), fetch_options=options)
    line = next(c for c in result.checks if c.startswith("(17)"))
    assert "Vertex AI projects/proj/locations/europe-west4/models/fraud" in line


def test_rejects_vertex_version_whose_artifact_uri_points_at_a_copy(env, emulator, vertex, chains):  # noqa: F811
    registry = _registry(emulator, vertex)
    outcome = _register(chains[0], registry)
    reference = outcome.metadata["reference"]
    digest = outcome.metadata["model_sha256"]
    bucket = env.bucket(BUCKET)
    # The same (still valid) model bytes, copied to a prefix the registration never wrote.
    for blob in list(env.list_blobs(BUCKET, prefix=f"registry/models/fraud/{digest}/model/")):
        bucket.copy_blob(blob, bucket, blob.name.replace("registry/models", "elsewhere/models"))
    fake = vertex[0]
    stored = fake.models["projects/proj/locations/europe-west4/models/fraud"][0]
    stored.artifact_uri = stored.artifact_uri.replace("/registry/models/", "/elsewhere/models/")
    options = FetchOptions(gcs_client_factory=lambda: _gcs(emulator))
    with pytest.raises(VerificationError, match=rf"registered the model at gs://{BUCKET}/registry/models/fraud/.*/model, "
                                                rf"but {reference} read it from gs://{BUCKET}/elsewhere/models/"):
        verify_registered(reference, registry=registry, trusted_owner_keys=_owner(chains[0]), fetch_options=options)
