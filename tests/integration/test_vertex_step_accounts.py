"""Each step under its own service account on Vertex AI: custom jobs in the compiled IR, their launcher,
and the principals the owner-signed layout pins.

The compiled template is checked as Vertex AI reads it (kfp's loader, the SDK's PipelineJob); the
launcher creates the custom job through the real ``google-cloud-aiplatform`` JobServiceClient
against the loopback Vertex AI services.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chainproof.cli import main
from chainproof.custom_job import LAUNCHER_MODULE, step_service_accounts, template_images
from chainproof.images import check_image_reference
from chainproof.policy import layout_extensions
from chainproof.verify import load_layout

from . import test_vertex_pipeline as _vp
from .test_vertex_pipeline import BUCKET, GOLDEN_IMAGE, PROJECT, REGION, STEPS, _submit_args

# The loopback Vertex AI, KMS and Cloud Storage services of the submission tests.
services, kms, submit_env = _vp.services, _vp.kms, _vp.submit_env

ACCOUNTS = {step: f"{step.replace('_', '-')}@{PROJECT}.iam.gserviceaccount.com" for step in STEPS}


def _compile(tmp_path: Path, accounts: dict[str, str], name: str = "p.yaml") -> dict:
    out = tmp_path / name
    args = ["compile", "--image", GOLDEN_IMAGE, "-o", str(out), "--format", "json"]
    for step, email in accounts.items():
        args += ["--step-service-account", f"{step}={email}"]
    assert main(args) == 0
    return yaml.safe_load(out.read_text())


def _payload(doc: dict, step: str) -> dict:
    task = doc["root"]["dag"]["tasks"][step.replace("_", "-")]
    label = doc["components"][task["componentRef"]["name"]]["executorLabel"]
    container = doc["deploymentSpec"]["executors"][label]["container"]
    assert container["command"] == ["python3", "-u", "-m", LAUNCHER_MODULE], step
    assert container["image"] == GOLDEN_IMAGE, step
    args = container["args"]
    assert args[:2] == ["--type", "CustomJob"]
    assert args[args.index("--project") + 1] == "{{$.pipeline_google_cloud_project_id}}"
    assert args[args.index("--gcp_resources") + 1] == "{{$.outputs.parameters['gcp_resources'].output_file}}"
    return json.loads(args[args.index("--payload") + 1])


@pytest.fixture(scope="module")
def per_step_template(tmp_path_factory) -> tuple[Path, dict]:
    tmp = tmp_path_factory.mktemp("per-step")
    doc = _compile(tmp, ACCOUNTS)
    return tmp / "p.yaml", doc


def test_every_step_is_a_custom_job_under_its_own_account_on_the_pinned_image(per_step_template):
    path, doc = per_step_template
    golden = yaml.safe_load((Path(__file__).resolve().parents[2] / "pipelines" / "zero_trust_training.yaml").read_text())
    for step, email in ACCOUNTS.items():
        payload = _payload(doc, step)
        spec = payload["job_spec"]
        assert spec["service_account"] == email, step
        [worker] = spec["worker_pool_specs"]
        container = worker["container_spec"]
        assert container["image_uri"] == GOLDEN_IMAGE, step
        # The worker runs the step's own command, under chainproof's runtime; the executor input is
        # JSON-escaped into the payload (GCPC's placeholder), never the raw one.
        task = golden["root"]["dag"]["tasks"][step.replace("-", "_").replace("_", "-")]
        original = golden["deploymentSpec"]["executors"][golden["components"][task["componentRef"]["name"]]["executorLabel"]]
        assert container["command"] == original["container"]["command"], step
        assert container["args"] == [
            "{{$.json_escape[1]}}" if a == "{{$}}" else a for a in original["container"]["args"]], step
        assert "{{$}}" not in json.dumps(payload)
        comp = doc["components"][task["componentRef"]["name"]]
        assert comp["outputDefinitions"]["parameters"]["gcp_resources"] == {"parameterType": "STRING"}
    assert step_service_accounts(doc) == ACCOUNTS
    # Every image of the template, launchers and their jobs included, is pinned by digest.
    images = template_images(doc)
    assert len(images) == 2 * len(STEPS)
    for where, ref in images.items():
        assert check_image_reference(ref).digest == GOLDEN_IMAGE.rsplit(":", 1)[1], where


def test_per_step_template_loads_in_kfp_and_builds_a_pipeline_job(per_step_template):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform
    from kfp import components

    path, _ = per_step_template
    assert components.load_component_from_file(str(path)).name == "chainproof-zero-trust-training"
    job = aiplatform.PipelineJob(display_name="per-step", template_path=str(path), pipeline_root="gs://b/root",
                                 parameter_values={"source_uri": "gs://b/train.csv"}, project=PROJECT,
                                 location=REGION, credentials=AnonymousCredentials())
    assert set(job.pipeline_spec["deploymentSpec"]["executors"]) == set(yaml.safe_load(path.read_text())
                                                                         ["deploymentSpec"]["executors"])


@settings(max_examples=6, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chosen=st.sets(st.sampled_from(STEPS), min_size=1, max_size=3),
       local=st.from_regex(r"[a-z][a-z0-9-]{4,20}", fullmatch=True))
def test_only_the_named_steps_become_custom_jobs(tmp_path, chosen, local):
    accounts = {step: f"{local}-{n}@{PROJECT}.iam.gserviceaccount.com" for n, step in enumerate(sorted(chosen))}
    doc = _compile(tmp_path, accounts, name=f"p-{len(accounts)}-{local}.yaml")
    assert step_service_accounts(doc) == accounts
    for step in set(STEPS) - chosen:
        task = doc["root"]["dag"]["tasks"][step.replace("_", "-")]
        container = doc["deploymentSpec"]["executors"][doc["components"][task["componentRef"]["name"]]["executorLabel"]]["container"]
        assert LAUNCHER_MODULE not in container["command"], step


@pytest.mark.parametrize("value, expected", [
    ("trainer=x@proj.iam.gserviceaccount.com", "--step-service-account trainer: the pipeline has no such step"),
    ("train_model=not-an-email", "--step-service-account train_model=not-an-email: expected a service account email"),
    ("train_model=123456789012-compute@developer.gserviceaccount.com",
     "--step-service-account train_model=123456789012-compute@developer.gserviceaccount.com: the default compute"),
    ("train_model", "--step-service-account 'train_model': expected STEP=VALUE"),
])
def test_compile_refuses_an_unknown_step_or_a_bad_account_in_one_line(tmp_path, capsys, value, expected):
    out = tmp_path / "p.yaml"
    assert main(["compile", "--image", GOLDEN_IMAGE, "-o", str(out), "--step-service-account", value]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"FAIL: {expected}"), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_submit_pins_each_custom_job_steps_account_in_the_signed_layout(per_step_template, submit_env, capsys):
    client, fake, ring = submit_env
    path, _ = per_step_template
    args = _submit_args(ring, sa="pipeline@proj.iam.gserviceaccount.com")
    args[args.index("--template") + 1] = str(path)
    assert main(args) == 0
    [req] = fake.calls("CreatePipelineJob")
    assert req.pipeline_job.service_account == "pipeline@proj.iam.gserviceaccount.com"
    config = json.loads(dict(req.pipeline_job.runtime_config.parameter_values)["chainproof_config"])
    uri = config["layout_uri"].partition("#")[0]
    _, layout = load_layout(client.bucket(BUCKET).blob(uri.split("/", 3)[3]).download_as_bytes())
    assert layout_extensions(layout)["expected_principals"] == ACCOUNTS


def test_submit_refuses_a_principal_that_contradicts_the_templates_account(per_step_template, submit_env, capsys):
    client, fake, ring = submit_env
    path, _ = per_step_template
    args = _submit_args(ring, sa="pipeline@proj.iam.gserviceaccount.com") + [
        "--expect-principal", "train_model=someone-else@proj.iam.gserviceaccount.com"]
    args[args.index("--template") + 1] = str(path)
    assert main(args) == 2
    assert fake.calls("CreatePipelineJob") == []
    assert "the template runs train_model as train-model@proj.iam.gserviceaccount.com" in capsys.readouterr().err


def _resolved(payload: dict, executor_input: dict) -> dict:
    """What Vertex AI hands the launcher: the placeholders replaced (the executor input JSON-escaped)."""
    text = json.dumps(payload)
    escaped = json.dumps(json.dumps(executor_input))[1:-1]
    return json.loads(text.replace("{{$.json_escape[1]}}", escaped))


def test_launcher_creates_the_custom_job_as_the_steps_account_and_waits_for_it(per_step_template, services,
                                                                                tmp_path, monkeypatch, capsys):
    from chainproof import custom_job

    _, fake, address, _ = services
    monkeypatch.setenv("CHAINPROOF_VERTEX_ENDPOINT", address)
    fake.requests.clear()
    _, doc = per_step_template
    executor_input = {"inputs": {"parameterValues": {"model_name": 'a "quoted" name'}},
                      "outputs": {"outputFile": "/gcs/b/out/executor_output.json"}}
    payload = _resolved(_payload(doc, "train_model"), executor_input)
    resources = tmp_path / "gcp_resources"
    assert custom_job.main(["--type", "CustomJob", "--payload", json.dumps(payload), "--project", PROJECT,
                            "--location", REGION, "--gcp_resources", str(resources), "--poll_seconds", "0.05"]) == 0
    [req] = fake.calls("CreateCustomJob")
    assert req.parent == f"projects/{PROJECT}/locations/{REGION}"
    spec = req.custom_job.job_spec
    assert spec.service_account == ACCOUNTS["train_model"]
    [pool] = spec.worker_pool_specs
    assert pool.container_spec.image_uri == GOLDEN_IMAGE
    args = list(pool.container_spec.args)
    # The step receives the executor input intact, as one argument.
    assert json.loads(args[args.index("--executor_input") + 1]) == executor_input
    # It followed the job to its end, and left the console link GCPC's format gives.
    assert len(fake.calls("GetCustomJob")) == 2
    [resource] = json.loads(resources.read_text())["resources"]
    assert resource == {"resourceType": "CustomJob",
                        "resourceUri": f"https://{REGION}-aiplatform.googleapis.com/v1/{fake.calls('GetCustomJob')[0].name}"}
    err = capsys.readouterr().err
    assert "custom job: JOB_STATE_PENDING" in err and "custom job: JOB_STATE_SUCCEEDED" in err


def test_launcher_fails_the_task_when_the_custom_job_fails(per_step_template, services, tmp_path, monkeypatch, capsys):
    from chainproof import custom_job

    _, fake, address, _ = services
    monkeypatch.setenv("CHAINPROOF_VERTEX_ENDPOINT", address)
    monkeypatch.setattr(fake, "custom_job_states", ["JOB_STATE_RUNNING", "JOB_STATE_FAILED"])
    _, doc = per_step_template
    payload = _resolved(_payload(doc, "register_model"), {"inputs": {}})
    code = custom_job.main(["--type", "CustomJob", "--payload", json.dumps(payload), "--project", PROJECT,
                            "--location", REGION, "--gcp_resources", str(tmp_path / "r"), "--poll_seconds", "0.05"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3
    assert err[-1].startswith("FAIL: Vertex AI custom job: run projects/") and "JOB_STATE_FAILED: The replica" in err[-1]


@pytest.mark.parametrize("change, expected", [
    (lambda p: p["job_spec"].update(service_account=""), "no service_account"),
    (lambda p: p["job_spec"]["worker_pool_specs"][0]["container_spec"].update(
        image_uri="gcr.io/ml-pipeline/google-cloud-pipeline-components:2.22.0"), "not pinned by digest"),
])
def test_launcher_refuses_an_unpinned_image_or_no_account_before_creating_anything(
        per_step_template, services, tmp_path, monkeypatch, capsys, change, expected):
    from chainproof import custom_job

    _, fake, address, _ = services
    monkeypatch.setenv("CHAINPROOF_VERTEX_ENDPOINT", address)
    fake.requests.clear()
    _, doc = per_step_template
    payload = _resolved(_payload(doc, "train_model"), {})
    change(payload)
    assert custom_job.main(["--type", "CustomJob", "--payload", json.dumps(payload), "--project", PROJECT,
                            "--location", REGION, "--gcp_resources", str(tmp_path / "r")]) == 2
    assert expected in capsys.readouterr().err
    assert fake.calls("CreateCustomJob") == []


def test_a_step_running_as_another_account_than_its_custom_job_names_refuses_to_run(per_step_template, on_gce, tmp_path):
    """The accounts submit pins come from the compiled template; a step whose identity is another refuses."""
    from chainproof.runner import StepFailed, run_reference_pipeline

    _, doc = per_step_template
    pinned = {"train_model": step_service_accounts(doc)["train_model"]}
    assert pinned["train_model"] != on_gce.email
    with pytest.raises(StepFailed) as err:
        run_reference_pipeline(workdir=tmp_path / "work", trust_dir=tmp_path / "trust", identity="gcp",
                               expected_principals=pinned)
    assert err.value.step == "train_model"
    assert f"running as {on_gce.email}" in str(err.value) and f"the layout expects {pinned['train_model']}" in str(err.value)
