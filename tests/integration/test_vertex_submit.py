"""`chainproof submit` a team can trust, against the loopback Vertex AI, Cloud KMS and Cloud Storage services.

The real clients throughout: google-cloud-kms fetches each step's public key with the submitter's
Application Default Credentials (tokens from a loopback OAuth endpoint); google-cloud-aiplatform
creates and follows the pipeline job; the job's tasks run for real (kfp.local, each task a process
with the workload identity of a metadata server and KMS signers), and what they registered is
verified at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from chainproof.cli import SUBMIT_REQUIRED_PARAMS, main
from chainproof.runner import SAMPLE
from chainproof.vertex import pipeline_parameters

from . import test_vertex_pipeline as _vp
from .test_vertex_pipeline import (BUCKET, GOLDEN, GOLDEN_IMAGE, KMS, PROJECT, REGION, SERVING_IMAGE, STEPS, _submit_args,
                                   kms_signer)
from .test_vertex_registry import SERVING

services, kms, submit_env = _vp.services, _vp.kms, _vp.submit_env
ROOT = Path(__file__).resolve().parents[2]
CHURN = ROOT / "tests" / "assets" / "churn_pipeline.py"


def _blobs(client) -> set[str]:
    return {b.name for b in client.list_blobs(BUCKET)}


def test_a_public_key_that_is_not_the_kms_signers_key_is_refused_before_anything_is_submitted(submit_env, capsys):
    client, fake, ring = submit_env
    before = _blobs(client)
    # The development keys of the machine are not the KMS keys the steps will sign with on Vertex AI.
    args = _submit_args(ring, sa="pipeline@proj.iam.gserviceaccount.com") + ["--keys", str(ring.directory)]
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("FAIL: step ")
    assert "holds key" in err[0] and "nothing was submitted" in err[0]
    assert fake.calls("CreatePipelineJob") == []
    assert _blobs(client) == before


def test_a_step_without_a_kms_signer_needs_its_public_key(submit_env, capsys):
    client, fake, ring = submit_env
    args = _submit_args(ring, sa="pipeline@proj.iam.gserviceaccount.com")
    args[args.index(f"train_model={kms_signer('train_model')}")] = "train_model=file:/keys/train_model.pem"
    assert main(args) == 2
    assert "step train_model: signer file:/keys/train_model.pem is not a Cloud KMS key" in capsys.readouterr().err
    assert fake.calls("CreatePipelineJob") == []


def test_refused_kms_credentials_exit_3_in_one_line_and_nothing_is_submitted(submit_env, capsys):
    client, fake, ring = submit_env
    before = _blobs(client)
    KMS["fake"].expected_token = "a-token-the-submitter-does-not-hold"
    assert main(_submit_args(ring, sa="pipeline@proj.iam.gserviceaccount.com")) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("FAIL: Cloud KMS: GetPublicKey gcpkms://projects/chainproof-test/"), err
    assert "UNAUTHENTICATED" in err[0] and KMS["oauth"].token not in err[0]
    assert fake.calls("CreatePipelineJob") == [] and _blobs(client) == before


def test_missing_credentials_exit_3_in_one_line(submit_env, tmp_path, monkeypatch, capsys):
    client, fake, ring = submit_env
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "no-such-adc.json"))
    assert main(_submit_args(ring, sa="pipeline@proj.iam.gserviceaccount.com")) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("FAIL: Google authentication: submit: find credentials"), err
    assert fake.calls("CreatePipelineJob") == []


def test_help_lists_the_required_parameters():
    golden = pipeline_parameters(GOLDEN)
    assert sorted(SUBMIT_REQUIRED_PARAMS) == sorted(k for k, (optional, _) in golden.items() if not optional)
    out = subprocess.run([str(Path(sys.executable).parent / "chainproof"), "submit", "--help"], capture_output=True,
                         text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})
    assert out.returncode == 0
    text = " ".join(out.stdout.split())
    assert "Required --param of the reference pipeline: source_uri, expected_sha256, target_column." in text
    for flag in ("--pipeline FILE.py:NAME", "--wait", "--kfp-host URL", "--signer STEP=REF"):
        assert flag in text, flag


def test_submit_compiles_and_submits_a_pipeline_of_your_own(submit_env, tmp_path, capsys):
    client, fake, ring = submit_env
    template = tmp_path / "churn.yaml"
    base = ["submit", "--project", PROJECT, "--region", REGION, "--pipeline-root", f"gs://{BUCKET}/runs",
            "--service-account", "pipeline@proj.iam.gserviceaccount.com", "--owner-signer", ring.signer_reference("owner"),
            "--pipeline", f"{CHURN}:churn", "--image", GOLDEN_IMAGE, "--template", str(template), "--format", "json",
            "--chainproof-serving-image", SERVING_IMAGE]
    for step in ("secure_ingest", "preprocess", "train", "sign_and_attest", "verify_chain", "register_model"):
        base += ["--signer", f"{step}={kms_signer(step)}"]
    # Its own required parameters are named when missing.
    assert main(base + ["--param", "source_uri=gs://data/churn.csv"]) == 2
    assert "missing --param expected_sha256" in capsys.readouterr().err
    assert main(base + ["--param", "source_uri=gs://data/churn.csv", "--param", "expected_sha256=" + "cd" * 32]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    [req] = fake.calls("CreatePipelineJob")
    assert yaml.safe_load(template.read_text())["pipelineInfo"]["name"] == "churn"
    assert req.pipeline_job.pipeline_spec["pipelineInfo"]["name"] == "churn"
    assert summary["console"] == (f"https://console.cloud.google.com/vertex-ai/locations/{REGION}/pipelines/runs/"
                                  f"{summary['job'].rsplit('/', 1)[1]}?project={PROJECT}")


def _kfp_values(job) -> dict:
    """The submitted parameter values, typed as the template declares them (a Struct holds floats)."""
    kinds = pipeline_parameters(GOLDEN)
    values = {}
    for name, value in dict(job.runtime_config.parameter_values).items():
        values[name] = int(value) if kinds[name][1] == "NUMBER_INTEGER" else value
    return values


def test_submit_wait_follows_the_job_to_its_end_and_verifies_the_registered_model(
        on_gce, submit_env, services, tmp_path, monkeypatch, capsys):
    from google.cloud.aiplatform_v1.types import artifact as artifact_t
    from google.cloud.aiplatform_v1.types import pipeline_job as pj

    client, fake, ring = submit_env
    _, _, address, _ = services
    client.bucket(BUCKET).blob("data/train.csv").upload_from_filename(str(SAMPLE.path()))
    # Registered with Vertex AI's prebuilt image for the scikit-learn version the steps train with, by digest.
    registry_uri = (f"vertex://projects/{PROJECT}/locations/{REGION}?artifacts=gs://{BUCKET}/runs/registry"
                    f"&endpoint={address}&serving_image={SERVING}")

    def run_tasks(job):
        """What Vertex AI does with the job: every task, with the submitted values, as the job's workload identity."""
        import kfp.local

        from chainproof.pipelines import zero_trust_training

        # The tasks see the metadata server (on_gce), not the submitter's ADC file; KMS now checks their token.
        os.environ.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
        KMS["fake"].expected_token = on_gce.token
        root = tmp_path / "vertex-tasks"
        kfp.local.init(runner=kfp.local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
        zero_trust_training(**_kfp_values(job))
        [output] = root.glob("*/register-model/executor_output.json")
        registered = json.loads(output.read_text())["artifacts"]["registered_model"]["artifacts"][0]
        return [pj.PipelineTaskDetail(task_name="register-model", outputs={"registered_model": pj.PipelineTaskDetail.ArtifactList(
            artifacts=[artifact_t.Artifact(uri=registered.get("uri", ""), metadata=registered["metadata"])])})]

    monkeypatch.setattr(fake, "pipeline_runner", run_tasks)
    args = _submit_args(ring, sa="pipeline@proj.iam.gserviceaccount.com")
    args[args.index("source_uri=gs://data/train.csv")] = f"source_uri=gs://{BUCKET}/data/train.csv"
    args[args.index("expected_sha256=" + "ab" * 32)] = f"expected_sha256={SAMPLE.sha256}"
    args[args.index("target_column=label")] = f"target_column={SAMPLE.target}"
    args = [a for a in args if a not in ("--chainproof-serving-image", SERVING_IMAGE)]
    args += ["--wait", "--poll-seconds", "0.5", "--registry-uri", registry_uri]
    code = main(args)
    out, err = capsys.readouterr()
    assert code == 0, err[-3000:]
    states = [line.split()[-1] for line in err.splitlines() if line.strip().startswith("state ")]
    assert states[0] in ("PIPELINE_STATE_PENDING", "PIPELINE_STATE_RUNNING") and states[-1] == "PIPELINE_STATE_SUCCEEDED"
    assert "PIPELINE_STATE_RUNNING" in states and len(states) == len(set(states))  # each change once
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["verified"] is True
    [registered] = summary["registered"]
    assert registered["registered"].startswith(f"vertex://projects/{PROJECT}/locations/{REGION}/models/")
    assert registered["steps"] == STEPS
    # Every step signed with its KMS key, in the job; the submitter only fetched the public keys.
    for step in STEPS:
        assert KMS["fake"].calls[("AsymmetricSign", _vp.KMS_KEY.format(step=step))] >= 1, step
    assert len(fake.calls("GetPipelineJob")) >= 2
    [upload] = fake.calls("UploadModel")
    assert upload.model.container_spec.image_uri == SERVING


def test_submit_wait_reports_a_failed_job_with_its_error(submit_env, monkeypatch, capsys):
    client, fake, ring = submit_env

    def failing(job):
        raise RuntimeError("train_model exit=1: expected sha256:abab..., got sha256:4a3c...")

    monkeypatch.setattr(fake, "pipeline_runner", failing)
    code = main(_submit_args(ring, sa="pipeline@proj.iam.gserviceaccount.com") + ["--wait", "--poll-seconds", "0.2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1].startswith("FAIL: projects/proj/locations/europe-west4/pipelineJobs/")
    assert "PIPELINE_STATE_FAILED: train_model exit=1" in err[-1] and "console.cloud.google.com" in err[-1]


@pytest.mark.parametrize("serving, expected", [
    ([], "the Vertex AI model needs a serving image pinned by digest"),
    (["--serving-image", "us-docker.pkg.dev/vertex-ai/prediction/sklearn-cpu.1-6:latest"], "not pinned by digest"),
    (["--chainproof-serving-image", "example.invalid/chainproof/serving:0.1.0"], "not pinned by digest"),
])
def test_submit_refuses_a_missing_or_unpinned_serving_image_before_submitting(submit_env, capsys, serving, expected):
    client, fake, ring = submit_env
    args = [a for a in _submit_args(ring, sa="pipeline@proj.iam.gserviceaccount.com")
            if a not in ("--chainproof-serving-image", SERVING_IMAGE)] + serving
    assert main(args) == 2
    assert expected in capsys.readouterr().err
    assert fake.calls("CreatePipelineJob") == []
