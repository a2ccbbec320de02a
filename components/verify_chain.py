"""KFP component: the fail-closed chain gate."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Model, Output

from chainproof.components._image import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def verify_chain(
    model: Input[Model],
    chain: Input[Artifact],
    layout_sha256: str,
    signer: str,
    chain_out: Output[Artifact],
    identity: str = "local",
    allow_service_account_key: bool = False,
    allowlist_extra: str = "",
) -> None:
    """Verify every link, rule and evidence file so far, the model and its signatures; fail the pipeline otherwise.

    It also scans the model files by content (pickle/joblib opcodes against an
    allowlist of exact globals, never loading them) and refuses an unsafe model.
    On success the step writes the scan report (reports/scan-model.json) and a
    signed SLSA verification summary (attestations/vsa.json) that register_model requires.

    Args:
        model: The model folder from train_model.
        chain: The chain folder from sign_and_attest.
        layout_sha256: The pinned SHA-256 of the layout.
        signer: This step's signer reference.
        chain_out: The chain extended with the verification summary and this step's link.
        identity: Who the step runs as: local (the local user, recorded as such; no metadata server) or gcp
            (Application Default Credentials: the metadata server or workload identity federation).
        allow_service_account_key: Accept a service-account key file (refused by default); the override
            is recorded in the link and reported by chainproof verify unless the layout allows it.
        allowlist_extra: A JSON list of extra exact globals (module:qualname) the model scan accepts; recorded in the link.
    """
    from chainproof import steps

    steps.verify_chain(
        model_dir=model.path,
        chain_in=chain.path,
        layout_sha256=layout_sha256,
        signer=signer,
        chain_out=chain_out.path,
        identity=identity,
        allow_service_account_key=allow_service_account_key,
        allowlist_extra=allowlist_extra,
    )
