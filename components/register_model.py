"""KFP component: register a verified model with a pointer to its evidence."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Model

from chainproof.components._image import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def register_model(
    model: Input[Model],
    chain: Input[Artifact],
    layout_sha256: str,
    signer: str,
    model_name: str,
    registry_uri: str,
    identity: str = "local",
    allow_service_account_key: bool = False,
) -> str:
    """Re-verify the chain and the gate's verification summary, then register the model and its evidence bundle.

    Registration is refused unless the chain verifies and the verification summary
    says PASSED for this exact model. The same model digest is never registered twice.

    Args:
        model: The model folder from train_model.
        chain: The chain folder from verify_chain.
        layout_sha256: The pinned SHA-256 of the layout.
        signer: This step's signer reference.
        model_name: The registry model name (lowercase letters, digits, '-', '_', '.').
        registry_uri: The local registry folder (file://).
        identity: Who the step runs as: local (the local user, recorded as such; no metadata server) or gcp
            (Application Default Credentials: the metadata server or workload identity federation).
        allow_service_account_key: Accept a service-account key file (refused by default); the override
            is recorded in the link and reported by chainproof verify unless the layout allows it.

    Returns:
        The registered version, e.g. local://NAME@VERSION.
    """
    from chainproof import steps

    outcome = steps.register_model(
        model_dir=model.path,
        chain_in=chain.path,
        layout_sha256=layout_sha256,
        signer=signer,
        model_name=model_name,
        registry_uri=registry_uri,
        identity=identity,
        allow_service_account_key=allow_service_account_key,
    )
    return str(outcome.metadata["reference"])
