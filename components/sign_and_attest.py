"""KFP component: sign the model (OpenSSF Model Signing) and write SLSA provenance."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Model, Output

from chainproof.components._image import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def sign_and_attest(
    model: Input[Model],
    chain: Input[Artifact],
    layout_sha256: str,
    signer: str,
    chain_out: Output[Artifact],
    builder_id: str = "https://chainproof.dev/builders/kfp-local",
    pipeline_template_sha256: str = "",
    component_image: str = "",
    identity: str = "local",
    allow_service_account_key: bool = False,
) -> None:
    """Verify the model against the chain, sign it with OpenSSF Model Signing, and write its SLSA v1 provenance.

    Args:
        model: The model folder from train_model.
        chain: The chain folder from train_model.
        layout_sha256: The pinned SHA-256 of the layout.
        signer: This step's signer reference (an EC P-256 key).
        chain_out: The chain extended with attestations/model.sig, attestations/provenance.json and this step's link.
        builder_id: The SLSA builder id recorded in the provenance.
        pipeline_template_sha256: SHA-256 of the compiled pipeline template, when known.
        component_image: The component image reference with its digest, when known.
        identity: Who the step runs as: local (the local user, recorded as such; no metadata server) or gcp
            (Application Default Credentials: the metadata server or workload identity federation).
        allow_service_account_key: Accept a service-account key file (refused by default); the override
            is recorded in the link and reported by chainproof verify unless the layout allows it.
    """
    from chainproof import steps

    steps.sign_and_attest(
        model_dir=model.path,
        chain_in=chain.path,
        layout_sha256=layout_sha256,
        signer=signer,
        chain_out=chain_out.path,
        builder_id=builder_id,
        pipeline_template_sha256=pipeline_template_sha256,
        component_image=component_image,
        identity=identity,
        allow_service_account_key=allow_service_account_key,
    )
