"""From an empty project to a first run: the exact ``gcloud`` commands of the reference setup.

``chainproof vertex plan --project P --region R --bucket B`` prints them; nothing is executed. One service
account per step plus the pipeline job's and the submitter's grants, a KMS key ring with one signing key per
step and the owner's, the pipeline bucket, an Artifact Registry repository for the image. Every role granted
is one of :data:`DOCUMENTED_ROLES` (docs/operations-vertex.md, "Service accounts, one per step").

    >>> cmds = plan_commands(project="my-proj", region="europe-west4", bucket="my-bucket")
    >>> any("cloudkms.signerVerifier" in c for c in cmds)
    True
"""

from __future__ import annotations

import re
import shlex

from chainproof.errors import InputError

__all__ = ["DOCUMENTED_ROLES", "PLAN_STEPS", "plan_commands", "step_account"]

#: The steps of the reference pipeline, each under its own service account.
PLAN_STEPS: tuple[str, ...] = (
    "secure_ingest", "train_model", "evaluate_robustness", "sign_and_attest", "verify_chain", "register_model",
)

#: Every role the plan grants (and the operations guide documents).
DOCUMENTED_ROLES: frozenset[str] = frozenset({
    "roles/aiplatform.user",
    "roles/iam.serviceAccountUser",
    "roles/storage.objectAdmin",
    "roles/storage.objectViewer",
    "roles/storage.objectCreator",
    "roles/cloudkms.signerVerifier",
    "roles/artifactregistry.reader",
})

_PROJECT = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]")
_REGION = re.compile(r"[a-z]+-[a-z]+[0-9]")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]")


def step_account(step: str, project: str) -> str:
    """The service account email of ``step`` in ``project`` (``cp-STEP-WITH-DASHES@P.iam...``)."""
    return f"cp-{step.replace('_', '-')}@{project}.iam.gserviceaccount.com"


def plan_commands(*, project: str, region: str, bucket: str, keyring: str = "chainproof",
                  repository: str = "chainproof") -> list[str]:
    """Return the gcloud commands of the reference setup, in order.

    Raises:
        InputError: a malformed project id, region or bucket name.
    """
    if not _PROJECT.fullmatch(project):
        raise InputError(f"--project {project!r}: not a Google Cloud project id")
    if not _REGION.fullmatch(region):
        raise InputError(f"--region {region!r}: not a region (e.g. europe-west4)")
    bucket = bucket.removeprefix("gs://").rstrip("/")
    if not _BUCKET.fullmatch(bucket):
        raise InputError(f"--bucket {bucket!r}: not a Cloud Storage bucket name")
    q = shlex.quote
    p = q(project)
    job = f"cp-pipeline@{project}.iam.gserviceaccount.com"
    cmds = [
        f"gcloud services enable aiplatform.googleapis.com cloudkms.googleapis.com storage.googleapis.com "
        f"artifactregistry.googleapis.com iam.googleapis.com --project {p}",
        f"gcloud storage buckets create gs://{q(bucket)} --project {p} --location {q(region)} "
        "--uniform-bucket-level-access --public-access-prevention",
        f"gcloud artifacts repositories create {q(repository)} --project {p} --location {q(region)} "
        "--repository-format docker",
        f"gcloud kms keyrings create {q(keyring)} --project {p} --location {q(region)}",
        f"gcloud iam service-accounts create cp-pipeline --project {p} --display-name 'chainproof pipeline job'",
    ]
    for role in ("roles/aiplatform.user",):
        cmds.append(f"gcloud projects add-iam-policy-binding {p} --member serviceAccount:{job} --role {role} --condition None")
    cmds.append(f"gcloud storage buckets add-iam-policy-binding gs://{q(bucket)} --member serviceAccount:{job} "
                "--role roles/storage.objectAdmin")
    for name in ("owner", *PLAN_STEPS):
        key = name.replace("_", "-")
        cmds.append(f"gcloud kms keys create {q(key)} --project {p} --location {q(region)} --keyring {q(keyring)} "
                    "--purpose asymmetric-signing --default-algorithm ec-sign-p256-sha256 --protection-level hsm")
    for step in PLAN_STEPS:
        sa = step_account(step, project)
        key = step.replace("_", "-")
        cmds.append(f"gcloud iam service-accounts create cp-{key} --project {p} --display-name 'chainproof {step}'")
        # The job's account launches each step's custom job as the step's account (actAs).
        cmds.append(f"gcloud iam service-accounts add-iam-policy-binding {sa} --project {p} "
                    f"--member serviceAccount:{job} --role roles/iam.serviceAccountUser")
        # Only its own signing key.
        cmds.append(f"gcloud kms keys add-iam-policy-binding {q(key)} --project {p} --location {q(region)} "
                    f"--keyring {q(keyring)} --member serviceAccount:{sa} --role roles/cloudkms.signerVerifier")
        # Every step, secure_ingest included, writes its products and its link under the pipeline root
        # as its own account (a custom job writes through Cloud Storage FUSE, /gcs/BUCKET/...).
        bucket_role = "roles/storage.objectAdmin"
        cmds.append(f"gcloud storage buckets add-iam-policy-binding gs://{q(bucket)} --member serviceAccount:{sa} "
                    f"--role {bucket_role}")
        cmds.append(f"gcloud artifacts repositories add-iam-policy-binding {q(repository)} --project {p} "
                    f"--location {q(region)} --member serviceAccount:{sa} --role roles/artifactregistry.reader")
        if step == "register_model":
            cmds.append(f"gcloud projects add-iam-policy-binding {p} --member serviceAccount:{sa} "
                        "--role roles/aiplatform.user --condition None")
    return cmds
