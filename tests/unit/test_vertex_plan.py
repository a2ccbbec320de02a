"""`chainproof vertex plan`: the gcloud commands grant only the documented roles, each step only its own key."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

from chainproof.vertex_plan import DOCUMENTED_ROLES, PLAN_STEPS, plan_commands, step_account

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "chainproof")


def _opt(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def _grants(cmds: list[str]) -> list[tuple[str, str, str]]:
    """(resource, member, role) of every add-iam-policy-binding."""
    out = []
    for cmd in cmds:
        argv = shlex.split(cmd)
        if "add-iam-policy-binding" in argv:
            resource = argv[argv.index("add-iam-policy-binding") + 1]
            out.append((resource, _opt(argv, "--member"), _opt(argv, "--role")))
    return out


def test_plan_grants_no_role_beyond_the_documented_ones():
    grants = _grants(plan_commands(project="my-proj", region="europe-west4", bucket="my-bucket"))
    assert grants
    roles = {role for _, _, role in grants}
    assert roles <= DOCUMENTED_ROLES, roles - DOCUMENTED_ROLES
    doc = (ROOT / "docs" / "operations-vertex.md").read_text()
    for role in roles:
        assert role in doc, f"{role} is granted by the plan but not documented"
    assert not roles & {"roles/owner", "roles/editor", "roles/cloudkms.admin", "roles/storage.admin"}


def test_each_step_account_holds_only_its_own_key_and_the_job_can_act_as_it():
    grants = _grants(plan_commands(project="my-proj", region="europe-west4", bucket="my-bucket"))
    job = "serviceAccount:cp-pipeline@my-proj.iam.gserviceaccount.com"
    for step in PLAN_STEPS:
        member = f"serviceAccount:{step_account(step, 'my-proj')}"
        keys = [res for res, m, role in grants if m == member and role == "roles/cloudkms.signerVerifier"]
        assert keys == [step.replace("_", "-")], (step, keys)
        assert (step_account(step, "my-proj"), job, "roles/iam.serviceAccountUser") in grants
    assert not [g for g in grants if g[1] == job and g[2] == "roles/cloudkms.signerVerifier"]


def test_cli_prints_the_plan_and_refuses_a_bad_project_in_one_line():
    ok = subprocess.run([CLI, "vertex", "plan", "--project", "my-proj", "--region", "europe-west4", "--bucket", "b-1"],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert all(line.startswith("gcloud ") for line in ok.stdout.splitlines())
    assert sum(1 for line in ok.stdout.splitlines() if re.match(r"gcloud kms keys create ", line)) == len(PLAN_STEPS) + 1
    bad = subprocess.run([CLI, "vertex", "plan", "--project", "X", "--region", "europe-west4", "--bucket", "b-1"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr
