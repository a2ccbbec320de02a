"""KFP component: fetch a digest-pinned source and start the chain."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Output

from chainproof.components._image import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def secure_ingest(
    source_uri: str,
    expected_sha256: str,
    layout_uri: str,
    layout_sha256: str,
    signer: str,
    dataset: Output[Dataset],
    chain: Output[Artifact],
    owner_public_key: str = "",
    identity: str = "local",
    allow_service_account_key: bool = False,
) -> None:
    """Fetch a digest-pinned source into quarantine, verify it, and start the attestation chain.

    The source is streamed into quarantine while it is hashed and released only if
    its SHA-256 equals ``expected_sha256``. The signed layout is fetched and checked
    against ``layout_sha256`` the same way. The step creates the run identity
    (``run/id``) that binds every later link to this run, and signs its in-toto link.

    Args:
        source_uri: URI of the training data (file:// or a path on the local runner).
        expected_sha256: The pinned SHA-256 of the source, 64 hex characters. Mandatory.
        layout_uri: URI of the owner-signed in-toto layout (root.layout).
        layout_sha256: The pinned SHA-256 of the layout.
        signer: This step's signer reference, e.g. file:/keys/secure_ingest.pem.
        dataset: The verified dataset folder (dataset/<file> in the chain).
        chain: The chain so far: root.layout, run/id, keys/ and this step's link.
        owner_public_key: The layout owner's public key PEM; when given, the layout signature is checked too.
        identity: Who the step runs as: local (the local user, recorded as such; no metadata server) or gcp
            (Application Default Credentials: the metadata server or workload identity federation).
        allow_service_account_key: Accept a service-account key file (refused by default); the override
            is recorded in the link and reported by chainproof verify unless the layout allows it.
    """
    from chainproof import steps

    outcome = steps.secure_ingest(
        source_uri=source_uri,
        expected_sha256=expected_sha256,
        layout_uri=layout_uri,
        layout_sha256=layout_sha256,
        signer=signer,
        dataset_dir=dataset.path,
        chain_dir=chain.path,
        owner_public_key=owner_public_key,
        identity=identity,
        allow_service_account_key=allow_service_account_key,
    )
    dataset.metadata.update(outcome.metadata)
