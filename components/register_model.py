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
    )
    return str(outcome.metadata["reference"])
