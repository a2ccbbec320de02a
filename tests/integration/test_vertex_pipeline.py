"""Compile for Vertex AI with a pinned image, validate the YAML offline, submit through the real SDK.

The golden template is ``pipelines/zero_trust_training.yaml``. Regenerate it on purpose with:

    chainproof compile --image example.invalid/chainproof/components@sha256:f203ef9866a16948acde7527dfdac567a3e4164cdd702eab6639435a1d8d37e7 \\
        -o pipelines/zero_trust_training.yaml

(the image is an example reference on a reserved .invalid host: the golden file pins
the shape, not a real image).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from chainproof.cli import main
from chainproof.errors import InputError
from chainproof.signing import init_keys, load_public_key
from chainproof.verify import load_layout, verify_layout_signature
from chainproof.vertex import TEMPLATE_DIGEST_LABELS, check_service_account

from chainproof.testing.servers import ProxyHandler, gcs_emulator, serve
from chainproof.testing.vertex import vertex_server

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "pipelines" / "zero_trust_training.yaml"
GOLDEN_IMAGE = "example.invalid/chainproof/components@sha256:f203ef9866a16948acde7527dfdac567a3e4164cdd702eab6639435a1d8d37e7"
# The steps of the compiled reference pipeline (the robustness step included).
STEPS = list(__import__("chainproof.dsl", fromlist=["derive_graph"]).derive_graph(yaml.safe_load(GOLDEN.read_text())).step_names)
REGENERATE = f"chainproof compile --image {GOLDEN_IMAGE} -o pipelines/zero_trust_training.yaml"
PROJECT, REGION, BUCKET = "proj", "europe-west4", "pipeline-bucket"
# chainproof's own serving image (image/Dockerfile target serving), an example reference like GOLDEN_IMAGE.
SERVING_IMAGE = "example.invalid/chainproof/serving@sha256:" + "5e" * 32


def _executors(doc: dict) -> dict:
    return doc["deploymentSpec"]["executors"]


@pytest.mark.parametrize("image", [
    "europe-docker.pkg.dev/p/r/chainproof:1.0",
    "europe-docker.pkg.dev/p/r/chainproof",
    "europe-docker.pkg.dev/p/r/chainproof@sha256:abc",
    "chainproof@sha256:" + "a" * 64,
])
def test_compile_refuses_an_image_not_pinned_by_digest(tmp_path, image, capsys):
    out = tmp_path / "p.yaml"
    assert main(["compile", "--image", image, "-o", str(out)]) == 2
    assert not out.exists()
    assert "FAIL: image" in capsys.readouterr().err


def test_golden_template_is_what_compile_writes(tmp_path):
    out = tmp_path / "p.yaml"
    assert main(["compile", "--image", GOLDEN_IMAGE, "-o", str(out), "--format", "json"]) == 0
    assert out.read_bytes() == GOLDEN.read_bytes(), f"the compiled pipeline changed; if on purpose, run: {REGENERATE}"


def test_golden_template_pins_every_component_image_and_installs_nothing():
    text = GOLDEN.read_text()
    doc = yaml.safe_load(text)
    executors = _executors(doc)
    assert len(executors) == 6  # ingest, train, robustness, sign, verify, register
    for name, spec in executors.items():
        container = spec["container"]
        assert container["image"] == GOLDEN_IMAGE, name
        assert "pip install" not in " ".join(container.get("command", []) + container.get("args", [])), name
    assert "pip install" not in text and "pip3 install" not in text
    # What the submitter provides; the run configuration (layout, digest, signers) is one hidden parameter.
    params = doc["root"]["inputDefinitions"]["parameters"]
    for name in ("source_uri", "expected_sha256", "target_column", "publisher_public_key", "estimator", "hyperparameters",
                 "test_size", "random_state", "model_name", "min_metrics", "max_metrics", "chainproof_config"):
        assert name in params, name
    for name in ("layout_uri", "layout_sha256", "ingest_signer", "owner_public_key", "registry_uri"):
        assert name not in params, name
    # Every component runs under chainproof's zero-trust runtime around kfp's executor.
    for name, spec in executors.items():
        assert "python3 -m chainproof._exec kfp.dsl.executor_main" in " ".join(spec["container"]["command"]), name
    outputs = doc["components"]["comp-register-model"]["outputDefinitions"]["artifacts"]
    assert outputs["registered_model"]["artifactType"]["schemaTitle"] == "google.VertexModel"


def test_golden_template_loads_in_kfp_and_builds_a_pipeline_job():
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform
    from kfp import components

    loaded = components.load_component_from_file(str(GOLDEN))
    assert loaded.name == "chainproof-zero-trust-training"
    job = aiplatform.PipelineJob(
        display_name="golden", template_path=str(GOLDEN), pipeline_root="gs://bucket/root",
        parameter_values={"source_uri": "gs://b/train.csv", "test_size": 0.3}, project=PROJECT, location=REGION,
        credentials=AnonymousCredentials(),
    )
    assert job.pipeline_spec["pipelineInfo"]["name"] == "chainproof-zero-trust-training"


@pytest.mark.parametrize("sa", ["", "123456789012-compute@developer.gserviceaccount.com", "proj@appspot.gserviceaccount.com",
                                "not an email"])
def test_refuses_default_or_missing_service_account(sa):
    with pytest.raises(InputError):
        check_service_account(sa, project=PROJECT)


class _ObjectsOnlyProxy(ProxyHandler):
    """The submitter's storage rights: objects only, no bucket metadata (storage.buckets.get is refused).

    The SDK's bucket-ownership probe then stops at once instead of calling the real
    Resource Manager API (which this machine cannot reach) for a minute.
    """

    def _forward(self, method: str) -> None:
        if method == "GET" and re.fullmatch(rf"/storage/v1/b/{BUCKET}(\?.*)?", self.path):
            self.send_response(403)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super()._forward(method)


@pytest.fixture(scope="module")
def services(loopback_tls):
    with gcs_emulator() as gcs, serve(_ObjectsOnlyProxy, upstream=gcs) as front, \
            vertex_server(*loopback_tls) as (fake, address):
        yield f"127.0.0.1:{front.server_address[1]}", fake, address, f"{gcs[0]}:{gcs[1]}"


#: Cloud KMS on 127.0.0.1: the fake (its key versions) and its endpoint, set by the ``kms`` fixture.
KMS: dict = {}
KMS_KEY = "projects/chainproof-test/locations/europe-west4/keyRings/pipeline/cryptoKeys/{step}/cryptoKeyVersions/1"


@pytest.fixture(scope="module")
def kms(loopback_tls):
    """One KMS key version per step, behind the real google-cloud-kms client's TLS and bearer token."""
    from chainproof.testing.kms import FakeKms
    from chainproof.testing.oauth import token_endpoint

    cert, key = loopback_tls
    with token_endpoint() as oauth:
        server = FakeKms(expected_token=oauth.token)
        for step in [*STEPS, "preprocess", "train"]:  # the reference pipeline's steps and tests/assets/churn_pipeline.py's
            server.add_key(KMS_KEY.format(step=step))
        KMS.update(fake=server, endpoint=server.start(key.read_bytes(), cert.read_bytes()), oauth=oauth)
        try:
            yield server
        finally:
            server.stop()
            KMS.clear()


def kms_signer(step: str) -> str:
    return f"gcpkms://{KMS_KEY.format(step=step)}?endpoint={KMS['endpoint']}"


@pytest.fixture
def submit_env(services, kms, tmp_path, monkeypatch):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    front, fake, address, emulator = services
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://{front}")
    monkeypatch.setenv("CHAINPROOF_VERTEX_ENDPOINT", address)
    # The submitter's Application Default Credentials: a user whose tokens come from the loopback endpoint.
    kms.expected_token = KMS["oauth"].token
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(KMS["oauth"].adc_file(tmp_path)))
    kms.calls.clear()
    kms.unauthenticated.clear()
    fake.requests.clear()
    client = storage.Client(project="test", credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": f"http://{emulator}"})
    if not client.bucket(BUCKET).exists():
        client.create_bucket(BUCKET)
    ring = init_keys(tmp_path / "keys", roles=["owner", *STEPS], development=True)
    return client, fake, ring


def _params(ring) -> list[str]:
    return ["source_uri=gs://data/train.csv", "expected_sha256=" + "ab" * 32, "target_column=label",
            "test_size=0.3", "random_state=7"]


def _submit_args(ring, *, sa: str) -> list[str]:
    args = ["submit", "--project", PROJECT, "--region", REGION, "--pipeline-root", f"gs://{BUCKET}/runs",
            "--service-account", sa, "--owner-signer", ring.signer_reference("owner"),
            "--template", str(GOLDEN), "--format", "json", "--chainproof-serving-image", SERVING_IMAGE]
    for p in _params(ring):
        args += ["--param", p]
    for step in STEPS:
        args += ["--signer", f"{step}={kms_signer(step)}"]
    return args


def test_submit_signs_and_stages_the_layout_and_runs_as_the_dedicated_service_account(submit_env, capsys):
    client, fake, ring = submit_env
    assert main(_submit_args(ring, sa="trainer@proj.iam.gserviceaccount.com")) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    [req] = fake.calls("CreatePipelineJob")
    job = req.pipeline_job
    assert job.service_account == "trainer@proj.iam.gserviceaccount.com"
    template_sha = hashlib.sha256(GOLDEN.read_bytes()).hexdigest()
    assert job.labels[TEMPLATE_DIGEST_LABELS[0]] + job.labels[TEMPLATE_DIGEST_LABELS[1]] == template_sha
    values = dict(job.runtime_config.parameter_values)
    assert values["test_size"] == 0.3 and values["random_state"] == 7
    config = json.loads(values["chainproof_config"])
    # The template cannot hold its own digest: it arrives in the run configuration, for the provenance.
    assert config["pipeline_template_sha256"] == template_sha
    assert config["registry_uri"].startswith(f"vertex://projects/{PROJECT}/locations/{REGION}?artifacts=gs://{BUCKET}/runs")
    assert config["identity"]["mode"] == "gcp"
    assert config["builder_id"] == "https://chainproof.dev/builders/vertex-ai-pipelines"
    assert config["component_image"] == GOLDEN_IMAGE
    assert set(config["signers"]) == set(STEPS)
    # The layout is staged, generation-pinned, owner-signed; the job gets only its URI, digest and public key.
    uri, _, generation = config["layout_uri"].partition("#")
    assert uri == f"gs://{BUCKET}/runs/chainproof/layouts/{config['layout_sha256']}/root.layout" and generation
    data = client.bucket(BUCKET).blob(uri.split("/", 3)[3]).download_as_bytes()
    assert hashlib.sha256(data).hexdigest() == config["layout_sha256"] == summary["layout_sha256"]
    owner = load_public_key(ring.public_key_path("owner"))
    envelope, layout = load_layout(data)
    assert verify_layout_signature(envelope, {owner.keyid: owner}) == owner.keyid
    assert [s.name for s in layout.steps] == STEPS
    # Each step's functionary key is the one its KMS key version holds, fetched once, with the submitter's token.
    from chainproof.signing import public_key_from_pem

    for step in layout.steps:
        kms_key = public_key_from_pem(KMS["fake"].public_pem(KMS_KEY.format(step=step.name)), what=step.name)
        assert step.pubkeys == [kms_key.keyid], step.name
        assert KMS["fake"].calls[("GetPublicKey", KMS_KEY.format(step=step.name))] == 1
    assert KMS["fake"].unauthenticated == []
    assert not any("PRIVATE KEY" in str(v) for v in values.values())
    assert summary["job"] == job.name or summary["job"].startswith(f"projects/{PROJECT}/locations/{REGION}/pipelineJobs/")


def test_submit_pins_step_principals_in_the_signed_layout_and_steps_use_workload_identity(submit_env, capsys):
    from chainproof.policy import layout_extensions

    client, fake, ring = submit_env
    args = _submit_args(ring, sa="trainer@proj.iam.gserviceaccount.com") + [
        "--expect-principal", "train_model=train@proj.iam.gserviceaccount.com",
        "--expect-principal", "register_model=registrar@proj.iam.gserviceaccount.com"]
    assert main(args) == 0
    [req] = fake.calls("CreatePipelineJob")
    config = json.loads(dict(req.pipeline_job.runtime_config.parameter_values)["chainproof_config"])
    assert config["identity"]["mode"] == "gcp"
    uri = config["layout_uri"].partition("#")[0]
    _, layout = load_layout(client.bucket(BUCKET).blob(uri.split("/", 3)[3]).download_as_bytes())
    assert layout_extensions(layout)["expected_principals"] == {
        "train_model": "train@proj.iam.gserviceaccount.com", "register_model": "registrar@proj.iam.gserviceaccount.com"}


def test_submit_refuses_a_principal_for_an_unknown_step(submit_env):
    client, fake, ring = submit_env
    args = _submit_args(ring, sa="trainer@proj.iam.gserviceaccount.com") + ["--expect-principal", "trainer=x@p.iam.gserviceaccount.com"]
    assert main(args) == 2
    assert fake.calls("CreatePipelineJob") == []


@pytest.mark.parametrize("sa", ["", "123456789012-compute@developer.gserviceaccount.com"])
def test_submit_refuses_default_service_account_before_anything_is_sent(submit_env, sa, capsys):
    client, fake, ring = submit_env
    before = {b.name for b in client.list_blobs(BUCKET)}
    assert main(_submit_args(ring, sa=sa)) == 2
    assert fake.calls("CreatePipelineJob") == []
    assert {b.name for b in client.list_blobs(BUCKET)} == before
    assert "service account" in capsys.readouterr().err


def test_submit_refuses_parameters_it_sets_itself(submit_env):
    client, fake, ring = submit_env
    args = _submit_args(ring, sa="trainer@proj.iam.gserviceaccount.com") + ["--param", "chainproof_config={}"]
    assert main(args) == 2
    assert fake.calls("CreatePipelineJob") == []


def test_registered_model_output_feeds_a_google_vertex_model_input(tmp_path):
    """Without GCPC installed: kfp's type check accepts our output where GCPC's schema is expected."""
    from kfp import compiler

    from ._downstream import build_downstream

    compiler.Compiler().compile(build_downstream(GOLDEN_IMAGE), str(tmp_path / "downstream.yaml"))


GCPC_SCRIPT = r"""
from kfp import compiler, dsl
from google_cloud_pipeline_components.v1.endpoint import EndpointCreateOp, ModelDeployOp
from chainproof import dsl as chainproof_dsl
from chainproof.components import register_model

@chainproof_dsl.pipeline(name="register-then-deploy")
def p(registry_uri: str):
    model = dsl.importer(artifact_uri="gs://b/m", artifact_class=dsl.Model)
    verification = dsl.importer(artifact_uri="gs://b/c", artifact_class=dsl.Artifact)
    reg = register_model(model=model.output, verification=verification.output, model_name="m",
                         registry_uri=registry_uri)
    endpoint = EndpointCreateOp(project="proj", location="europe-west4", display_name="e")
    ModelDeployOp(model=reg.outputs["registered_model"], endpoint=endpoint.outputs["endpoint"],
                  dedicated_resources_machine_type="n1-standard-2", dedicated_resources_min_replica_count=1)

import sys
compiler.Compiler().compile(p, sys.argv[1])
print("compiled")
"""


def test_registered_model_output_feeds_gcpc_model_deploy_op(tmp_path):
    """GCPC pins google-cloud-aiplatform<2, so it lives in its own venv (never in chainproof's)."""
    python = os.environ.get("CHAINPROOF_GCPC_PYTHON")
    if not python:
        pytest.skip(
            "google-cloud-pipeline-components pins google-cloud-aiplatform<2 and cannot share this venv; "
            "set CHAINPROOF_GCPC_PYTHON to the python of a venv holding it and chainproof "
            "(pip install google-cloud-pipeline-components . resolves aiplatform 1.x there); .ci/run does"
        )
    out = tmp_path / "deploy.yaml"
    proc = subprocess.run([python, "-c", GCPC_SCRIPT, str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = yaml.safe_load(out.read_text())
    deploy = doc["components"]["comp-model-deploy"]["inputDefinitions"]["artifacts"]["model"]
    assert deploy["artifactType"]["schemaTitle"] == "google.VertexModel"
