"""Zero trust for a data scientist's own pipeline (chainproof.dsl): run, verify, tamper, compile."""


import csv
import hashlib
import json
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kfp.dsl import Dataset, Input, Output

from chainproof import dsl
from chainproof.components import secure_ingest
from chainproof.errors import ChainError, InputError
from chainproof.runner import StepFailed, run_pipeline
from chainproof.verify import verify_bundle

ASSETS = Path(__file__).parents[1] / "assets"
PIPELINE = ASSETS / "churn_pipeline.py"
CLI = str(Path(sys.executable).parent / "chainproof")
IMAGE = "europe-docker.pkg.dev/p/r/chainproof@sha256:" + "a" * 64


def make_churn_table(path: Path, rows: int = 2000, seed: int = 7) -> str:
    """An ID column, two categorical string columns, numeric columns with empty cells, a 0/1 label."""
    rng = random.Random(seed)
    with open(path, "w", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(["customer_id", "plan", "region", "tenure", "charges", "churned"])
        for i in range(rows):
            plan = rng.choice(["basic", "pro", "max", ""])
            region = rng.choice(["north", "south", "east", "west"])
            tenure = rng.randint(1, 72)
            charges = round(rng.uniform(10, 120), 2)
            risk = 0.5 * (plan == "basic") + 0.4 * (tenure < 12) + 0.5 * rng.random()
            out.writerow([f"c{i:05d}", plan, region, tenure if rng.random() > 0.05 else "",
                          charges if rng.random() > 0.05 else "", int(risk > 0.6)])
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _load(name: str):
    from chainproof.local import load_pipeline

    return load_pipeline(f"{PIPELINE}:{name}")


@pytest.fixture(scope="module")
def churn_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "churn.csv"
    return path, make_churn_table(path)


def run_user_pipeline(name: str, csv_path: Path, digest: str, work: Path) -> tuple[dict, dict[str, str]]:
    """Run a pipeline of tests/assets/churn_pipeline.py with `chainproof run --pipeline`, as a user would;
    return its JSON result and the environment (its own trust store) to run more commands in."""
    env = {"CHAINPROOF_TRUST_DIR": str(work / "trust"), "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    proc = subprocess.run(
        [CLI, "run", "--pipeline", f"{PIPELINE}:{name}", "--param", f"source_uri={csv_path}",
         "--param", f"expected_sha256={digest}", "--workdir", str(work / "cw"), "--format", "json"],
        capture_output=True, text=True, timeout=600, env=env, cwd=work,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), env


@pytest.fixture(scope="module")
def churn_run(churn_csv, tmp_path_factory):
    """The user's pipeline run once with `chainproof run --pipeline`, as a user would."""
    work = tmp_path_factory.mktemp("work")
    result, _ = run_user_pipeline("churn", *churn_csv, work)
    return result, work


def test_own_pipeline_runs_with_chainproof_run_and_verifies(churn_run):
    result, work = churn_run
    assert result["verified"] is True and result["registered"] == "local://churn@1"
    # chainproof placed signing and the gate before the user's registration.
    assert result["steps"] == ["secure_ingest", "preprocess", "train", "sign_and_attest", "verify_chain", "register_model"]
    bundle = Path(result["bundle"])
    for evidence in ("attestations/model.sig", "attestations/provenance.json", "attestations/vsa.json",
                     "reports/scan-model.json", "metrics/metrics.json", "registry/entry.json"):
        assert (bundle / evidence).is_file(), evidence
    proc = subprocess.run([CLI, "verify", str(bundle), "--owner-key", result["owner_key"]],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The user's steps are in the chain: materials are the verified inputs, by logical name.
    from chainproof.signing import load_public_key

    owner = load_public_key(result["owner_key"])
    verified = verify_bundle(bundle, trusted_owner_keys={owner.keyid: owner})
    prep, train = verified.step("preprocess"), verified.step("train")
    ingest = verified.step("secure_ingest")
    assert prep.materials["dataset/churn.csv"] == ingest.products["dataset/churn.csv"]
    assert train.materials["features/features"] == prep.products["features/features"]
    assert set(train.products) == {"model/model.joblib", "metrics/metrics.json"}
    assert json.loads((bundle / "metrics" / "metrics.json").read_text())["accuracy"] > 0.6


def test_own_pipeline_bundle_verifies_with_in_toto_verify(churn_run):
    result, work = churn_run
    bundle = Path(result["bundle"])
    check = work / "in-toto"
    shutil.copytree(bundle, check)
    shutil.copy(result["owner_key"], check / "owner.pub")
    proc = subprocess.run([str(Path(sys.executable).parent / "in-toto-verify"), "--layout", "root.layout",
                           "--verification-keys", "owner.pub", "--link-dir", "links"],
                          cwd=check, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_deleted_link_of_users_step_fails_verify(churn_run, tmp_path):
    result, _ = churn_run
    bundle = tmp_path / "bundle"
    shutil.copytree(result["bundle"], bundle)
    (bundle / "bundle.json").unlink()
    next((bundle / "links").glob("preprocess.*.link")).unlink()
    from chainproof.signing import load_public_key

    owner = load_public_key(result["owner_key"])
    with pytest.raises(ChainError, match=r"step preprocess: no link found"):
        verify_bundle(bundle, trusted_owner_keys={owner.keyid: owner}, model_dir=result["model"])


def test_preprocessing_output_swapped_after_it_signed_is_refused_by_the_next_step(churn_csv, tmp_path):
    path, digest = churn_csv
    pipeline = _load("churn")
    swapped: list[Path] = []

    def swap_after(step: str, state: str) -> None:
        # The test hook: between preprocess's signed link and train's start, replace its output.
        if step == "preprocess" and state == "success":
            target = next((tmp_path / "cw" / "runs").glob("*/pipeline/*/preprocess/features"))
            target.write_text(target.read_text().replace("basic", "pro"))
            swapped.append(target)

    with pytest.raises(StepFailed) as err:
        run_pipeline(pipeline, {"source_uri": str(path), "expected_sha256": digest}, workdir=tmp_path / "cw",
                     trust_dir=tmp_path / "trust", progress=swap_after)
    assert swapped, "the hook never ran"
    assert err.value.step == "train"
    message = str(err.value)
    assert re.search(r"features/features \(attested by preprocess\): expected sha256:[0-9a-f]{64}, got sha256:[0-9a-f]{64}", message), message
    assert "\x1b[" not in message
    # Nothing was trained or registered from the swapped file.
    assert not list((tmp_path / "cw" / "runs").glob("*/pipeline/*/train/model*"))
    assert not (tmp_path / "cw" / "registry" / "models").exists()


def test_failing_user_step_says_why_in_one_line(churn_csv, tmp_path):
    path, digest = churn_csv
    env = {"CHAINPROOF_TRUST_DIR": str(tmp_path / "trust"), "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    proc = subprocess.run(
        [CLI, "run", "--pipeline", f"{PIPELINE}:churn_broken", "--param", f"source_uri={path}",
         "--param", f"expected_sha256={digest}", "--workdir", str(tmp_path / "cw")],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    fail = [line for line in proc.stderr.splitlines() if line.startswith("FAIL:")]
    assert fail == ["FAIL: broken_train: step broken_train: the component failed: ValueError: column 'tenure' has no values"], proc.stderr
    assert "\x1b[" not in proc.stderr and "Traceback" not in proc.stderr


def test_wrong_ingest_digest_names_the_source_and_both_digests(churn_csv, tmp_path):
    path, digest = churn_csv
    with pytest.raises(StepFailed) as err:
        run_pipeline(_load("churn"), {"source_uri": str(path), "expected_sha256": "0" * 64},
                     workdir=tmp_path / "cw", trust_dir=tmp_path / "trust")
    assert err.value.step == "secure_ingest"
    assert "0" * 64 in str(err.value) and digest in str(err.value) and "churn.csv" in str(err.value)


def test_unpinned_outside_artifact_fails_at_compile_time_naming_the_task():
    @dsl.component
    def use(raw: Input[Dataset], out: Output[Dataset]):
        open(out.path, "w").write(open(raw.path).read())

    @dsl.pipeline(name="outside")
    def outside():
        imported = dsl.importer(artifact_uri="gs://bucket/data.csv", artifact_class=Dataset)
        use(raw=imported.output)

    from chainproof.dsl import derive_graph

    with pytest.raises(InputError, match=r"task importer.*outside the pipeline.*secure_ingest"):
        derive_graph(outside)

    @dsl.pipeline(name="pipeline-input")
    def from_input(raw: Input[Dataset]):
        use(raw=raw)

    with pytest.raises(InputError, match=r"task use: input raw is an artifact from outside the pipeline"):
        derive_graph(from_input)


def test_plain_kfp_component_in_a_chainproof_pipeline_fails_at_compile_time():
    from kfp import dsl as kfp_dsl

    @kfp_dsl.component
    def plain(raw: Input[Dataset], out: Output[Dataset]):
        pass

    @dsl.pipeline(name="mixed")
    def mixed(source_uri: str, expected_sha256: str):
        raw = secure_ingest(source_uri=source_uri, expected_sha256=expected_sha256)
        plain(raw=raw.outputs["dataset"])

    from chainproof.dsl import derive_graph

    with pytest.raises(InputError, match=r"task plain: not a chainproof component"):
        derive_graph(mixed)


def test_chainproof_component_outside_a_chainproof_pipeline_is_refused():
    from kfp import dsl as kfp_dsl

    with pytest.raises(InputError, match=r"runs only inside a pipeline decorated with @chainproof.dsl.pipeline"):
        @kfp_dsl.pipeline(name="plain")
        def plain_pipeline(source_uri: str, expected_sha256: str):
            secure_ingest(source_uri=source_uri, expected_sha256=expected_sha256)


def test_own_pipeline_compiles_for_vertex_on_the_pinned_image_without_pip(tmp_path):
    out = tmp_path / "churn.yaml"
    proc = subprocess.run([CLI, "compile", "--pipeline", f"{PIPELINE}:churn", "--image", IMAGE, "-o", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert "pip install" not in text
    ir = yaml.safe_load(text)
    executors = ir["deploymentSpec"]["executors"]
    assert len(executors) == 6  # ingest, preprocess, train, and the signing, gate and registration placed for you
    for name, executor in executors.items():
        command = " ".join(executor["container"]["command"])
        assert "python3 -m chainproof._exec kfp.dsl.executor_main" in command, name
        assert executor["container"]["image"] == IMAGE, name
    assert set(ir["root"]["inputDefinitions"]["parameters"]) == {"source_uri", "expected_sha256", "chainproof_config"}
    # The layout derived from the compiled template is the one derived from the pipeline itself.
    from chainproof.dsl import derive_graph

    assert derive_graph(ir).steps == derive_graph(_load("churn")).steps


def test_compile_refuses_a_user_component_on_an_unpinned_image(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from kfp.dsl import Dataset, Input, Output\n"
        "from chainproof import dsl\n"
        "from chainproof.components import secure_ingest\n"
        "@dsl.component(base_image='python:3.11')\n"
        "def use(raw: Input[Dataset], out: Output[Dataset]):\n"
        "    pass\n"
        "@dsl.pipeline(name='bad')\n"
        "def bad(source_uri: str, expected_sha256: str):\n"
        "    use(raw=secure_ingest(source_uri=source_uri, expected_sha256=expected_sha256).outputs['dataset'])\n"
    )
    proc = subprocess.run([CLI, "compile", "--pipeline", f"{bad}:bad", "--image", IMAGE, "-o", str(tmp_path / "o.yaml")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "FAIL: executor exec-use: image 'python:3.11': not pinned by digest" in proc.stderr, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.py"]  # nothing half-written


def _inputs_log(source: Path, dest: Path, shift: bool) -> Path:
    with open(source, newline="") as f_in, open(dest, "w", newline="") as f_out:
        rows = list(csv.DictReader(f_in))[:400]
        out = csv.writer(f_out, lineterminator="\n")
        out.writerow(["plan", "region", "tenure", "charges"])
        for r in rows:
            tenure = str(float(r["tenure"] or 1) * 4) if shift else r["tenure"]
            out.writerow(["max" if shift else r["plan"], r["region"], tenure, r["charges"]])
    return dest


def test_own_training_step_records_its_drift_profile_and_monitor_watches_it(churn_csv, tmp_path):
    """role="train" plus chainproof.drift.record_profile: the profile is attested by the user's step,
    the feature contract travels with the model, and `chainproof monitor` reads both."""
    path, _ = churn_csv
    result, env = run_user_pipeline("churn_profiled", *churn_csv, tmp_path)
    from chainproof.signing import load_public_key

    owner = load_public_key(result["owner_key"])
    verified = verify_bundle(Path(result["bundle"]), trusted_owner_keys={owner.keyid: owner})
    train = verified.step("train_profiled")
    assert {"reports/profile.json", "model/model.joblib", "model/features.json"} <= set(train.products)
    contract = json.loads((Path(result["model"]) / "features.json").read_text())
    assert [(f["name"], f["type"]) for f in contract["features"]] == [
        ("plan", "categorical"), ("region", "categorical"), ("tenure", "numeric"), ("charges", "numeric")]
    assert contract["task"] == "classification" and contract["target"] == "churned"
    monitor = [CLI, "monitor", result["bundle"], "--owner-key", result["owner_key"], "--inputs"]
    clean = subprocess.run([*monitor, str(_inputs_log(path, tmp_path / "clean.csv", False))],
                           capture_output=True, text=True, timeout=300, env=env)
    assert clean.returncode == 0 and "OK: 0 alert(s)" in clean.stdout, clean.stdout + clean.stderr
    shifted = subprocess.run([*monitor, str(_inputs_log(path, tmp_path / "shifted.csv", True))],
                             capture_output=True, text=True, timeout=300, env=env)
    assert shifted.returncode == 1, shifted.stdout + shifted.stderr
    assert "ALERT: feature plan PSI" in shifted.stdout and "ALERT: feature tenure PSI" in shifted.stdout
