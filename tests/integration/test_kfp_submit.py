"""`chainproof submit --kfp-host`: the real ``kfp.Client`` against a loopback Kubeflow Pipelines v2beta1 API.

The run's tasks execute for real (kfp.local, each task a process with a metadata-server workload
identity and its Cloud KMS key), register into the loopback Vertex AI Model Registry with their
artifacts in the pipeline root (the Cloud Storage emulator), and the submitter verifies what was
registered from the evidence it reads there.
"""

from __future__ import annotations

import json
import os

import pytest

from chainproof.cli import main
from chainproof.runner import SAMPLE

from . import test_vertex_pipeline as _vp
from chainproof.testing.kfp import kfp_server
from .test_vertex_pipeline import BUCKET, KMS, PROJECT, REGION, SERVING_IMAGE, STEPS, _submit_args
from .test_vertex_registry import SERVING
from .test_vertex_submit import _kfp_values

services, kms, submit_env = _vp.services, _vp.kms, _vp.submit_env


@pytest.fixture
def kfp():
    with kfp_server() as (state, url):
        yield state, url


def _kfp_args(ring, url: str, registry_uri: str) -> list[str]:
    args = _submit_args(ring, sa="pipeline@proj.iam.gserviceaccount.com")
    # Vertex AI's flags go; the KFP host and the registry (its artifacts under the pipeline root) come.
    for flag in ("--project", "--region", "--service-account", "--chainproof-serving-image"):
        i = args.index(flag)
        del args[i:i + 2]
    return args + ["--kfp-host", url, "--registry-uri", registry_uri, "--display-name", "churn-nightly"]


def test_submit_kfp_host_creates_the_run_with_kfp_client_follows_it_and_verifies_the_registered_model(
        on_gce, submit_env, services, kfp, tmp_path, capsys):
    client, fake, ring = submit_env
    _, _, address, _ = services
    state, url = kfp
    client.bucket(BUCKET).blob("data/train.csv").upload_from_filename(str(SAMPLE.path()))
    registry_uri = (f"vertex://projects/{PROJECT}/locations/{REGION}?artifacts=gs://{BUCKET}/runs/registry"
                    f"&endpoint={address}&serving_image={SERVING}")

    def run_tasks(run):
        """What the KFP backend does with the run: every task, with the run's parameters, as the pods' identity."""
        import kfp.local

        from chainproof.pipelines import zero_trust_training

        os.environ.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
        KMS["fake"].expected_token = on_gce.token
        job = type("Job", (), {"runtime_config": type("RC", (), {"parameter_values": run["runtime_config"]["parameters"]})})
        kfp.local.init(runner=kfp.local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp-tasks"),
                       raise_on_error=True)
        zero_trust_training(**_kfp_values(job))

    state.runner = run_tasks
    args = _kfp_args(ring, url, registry_uri)
    args[args.index("source_uri=gs://data/train.csv")] = f"source_uri=gs://{BUCKET}/data/train.csv"
    args[args.index("expected_sha256=" + "ab" * 32)] = f"expected_sha256={SAMPLE.sha256}"
    args[args.index("target_column=label")] = f"target_column={SAMPLE.target}"
    code = main(args + ["--wait", "--poll-seconds", "0.5"])
    out, err = capsys.readouterr()
    assert code == 0, err[-3000:]

    # What kfp.Client sent: the experiment, then the run with the compiled spec and every value.
    [experiment] = state.calls("POST", "/apis/v2beta1/experiments")
    assert experiment["display_name"] == "chainproof"
    [created] = state.calls("POST", "/apis/v2beta1/runs")
    assert created["display_name"] == "churn-nightly"
    assert created["pipeline_spec"]["pipelineInfo"]["name"] == "chainproof-zero-trust-training"
    assert created["runtime_config"]["pipeline_root"] == f"gs://{BUCKET}/runs"
    config = json.loads(created["runtime_config"]["parameters"]["chainproof_config"])
    assert config["builder_id"] == "https://chainproof.dev/builders/kubeflow-pipelines"
    assert config["identity"]["mode"] == "gcp" and set(config["signers"]) == set(STEPS)
    assert config["outcome_uri"] == f"gs://{BUCKET}/runs/chainproof/runs/{config['run']}/registered.json"
    assert state.calls("GET", "/apis/v2beta1/runs/")

    states = [line.split()[-1] for line in err.splitlines() if line.strip().startswith("state ")]
    assert states[-1] == "SUCCEEDED" and "RUNNING" in states and len(states) == len(set(states))
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["verified"] is True and summary["console"] == f"{url}/#/runs/details/{summary['run_id']}"
    [registered] = summary["registered"]
    assert registered["steps"] == STEPS and registered["run"] == config["run"]
    # The pointer and the evidence came from the pipeline root in Cloud Storage.
    names = {b.name for b in client.list_blobs(BUCKET)}
    assert f"runs/chainproof/runs/{config['run']}/registered.json" in names
    assert any(n.startswith("runs/registry/models/chainproof-model/") and n.endswith("/bundle/root.layout") for n in names)


def test_submit_kfp_host_refuses_vertex_flags_and_an_unreachable_api_in_one_line(submit_env, kfp, capsys):
    client, fake, ring = submit_env
    state, url = kfp
    args = _kfp_args(ring, url, "vertex://projects/proj/locations/europe-west4?artifacts=gs://b/r"
                                f"&chainproof_serving_image={SERVING_IMAGE}")
    assert main(args + ["--project", PROJECT]) == 2
    assert "--project is for Vertex AI" in capsys.readouterr().err
    # Nothing listens there: exit 3, one line, and no run was created anywhere.
    dead = args[:]
    dead[dead.index("--kfp-host") + 1] = "http://127.0.0.1:9"
    assert main(dead) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("FAIL: Kubeflow Pipelines API: "), err
    assert state.calls("POST", "/apis/v2beta1/runs") == []


def test_submit_kfp_host_reports_a_failed_run_with_its_error(submit_env, kfp, capsys):
    client, fake, ring = submit_env
    state, url = kfp

    def failing(run):
        raise RuntimeError("secure_ingest exit=1: gs://data/train.csv: expected sha256:abab..., got sha256:4a3c...")

    state.runner = failing
    args = _kfp_args(ring, url, f"vertex://projects/proj/locations/europe-west4?artifacts=gs://{BUCKET}/runs/registry"
                                f"&chainproof_serving_image={SERVING_IMAGE}")
    assert main(args + ["--wait", "--poll-seconds", "0.2"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("FAIL: run ") and "FAILED: secure_ingest exit=1" in err[-1]
