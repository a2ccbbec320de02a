"""KFP components: fetch a pinned source (a dataset, or a pretrained model) and start the chain."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Model, Output

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
    publisher_public_key: str = "",
    signature_uri: str = "",
    s3_endpoint: str = "",
    identity: str = "local",
    allow_service_account_key: bool = False,
    allowlist_extra: str = "",
    tabular_schema: str = "",
) -> None:
    """Fetch a pinned source into quarantine, verify and scan it, and start the attestation chain.

    The source is streamed into quarantine while it is hashed, and released only if
    its SHA-256 equals ``expected_sha256`` (for a folder URI ending in '/', the
    manifest digest of its files) or its publisher's OpenSSF Model Signing signature
    verifies, and the scanner finds it safe. The signed layout is fetched and checked
    against ``layout_sha256`` the same way. The step creates the run identity
    (run/id) that binds every later link to this run, and signs its in-toto link.

    Args:
        source_uri: gs://bucket/object[#generation], https://..., s3://bucket/key[#version], file://... or a path.
        expected_sha256: The pinned SHA-256 of the source (64 hex characters). Mandatory unless publisher_public_key is given.
        layout_uri: URI of the owner-signed in-toto layout (root.layout).
        layout_sha256: The pinned SHA-256 of the layout.
        signer: This step's signer reference, e.g. file:/keys/secure_ingest.pem.
        dataset: The verified files (dataset/<name> in the chain), with uri, generation, sha256, size and scan verdict as metadata.
        chain: The chain so far: root.layout, run/id, the scan report, keys/ and this step's link.
        owner_public_key: The layout owner's public key PEM; when given, the layout signature is checked too.
        publisher_public_key: A publisher's EC public key PEM whose model.sig must verify over the source.
        signature_uri: Where the publisher's model.sig is (default: model.sig inside a folder source).
        s3_endpoint: The S3 endpoint for s3:// sources (default: AWS).
        identity: Who the step runs as: local (the local user, recorded as such; no metadata server) or gcp
            (Application Default Credentials: the metadata server or workload identity federation).
        allow_service_account_key: Accept a service-account key file (refused by default); the override
            is recorded in the link and reported by chainproof verify unless the layout allows it.
        allowlist_extra: A JSON list of extra exact globals (module:qualname) the scanner accepts; recorded in the link.
        tabular_schema: A JSON schema for CSV sources: {"columns": [{"name", "type", "minimum", "maximum", "nullable"}]}.
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
        publisher_public_key=publisher_public_key,
        signature_uri=signature_uri,
        s3_endpoint=s3_endpoint,
        identity=identity,
        allow_service_account_key=allow_service_account_key,
        allowlist_extra=allowlist_extra,
        tabular_schema=tabular_schema,
    )
    dataset.metadata.update(outcome.metadata)


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def secure_ingest_model(
    source_uri: str,
    expected_sha256: str,
    layout_uri: str,
    layout_sha256: str,
    signer: str,
    model: Output[Model],
    chain: Output[Artifact],
    owner_public_key: str = "",
    publisher_public_key: str = "",
    signature_uri: str = "",
    s3_endpoint: str = "",
    identity: str = "local",
    allow_service_account_key: bool = False,
    allowlist_extra: str = "",
) -> None:
    """Fetch a pretrained model by digest or by its publisher's signature, scan it, and start the chain.

    Same checks as secure_ingest; the products are named model/<name>, so the
    layout's step for this component must expect model/* products.

    Args:
        source_uri: The model file or folder (a URI ending in '/').
        expected_sha256: The pinned SHA-256 (manifest digest for a folder); may be empty with publisher_public_key.
        layout_uri: URI of the owner-signed in-toto layout (root.layout).
        layout_sha256: The pinned SHA-256 of the layout.
        signer: This step's signer reference (the layout step must be named secure_ingest).
        model: The verified model files, with uri, generation, sha256, size and scan verdict as metadata.
        chain: The chain so far, with this step's link.
        owner_public_key: The layout owner's public key PEM; when given, the layout signature is checked too.
        publisher_public_key: The publisher's EC public key PEM whose model.sig must verify over the model.
        signature_uri: Where the publisher's model.sig is (default: model.sig inside a folder source).
        s3_endpoint: The S3 endpoint for s3:// sources (default: AWS).
        identity: Who the step runs as: local or gcp (Application Default Credentials).
        allow_service_account_key: Accept a service-account key file (refused by default; recorded).
        allowlist_extra: A JSON list of extra exact globals (module:qualname) the scanner accepts; recorded in the link.
    """
    from chainproof import steps

    outcome = steps.secure_ingest(
        source_uri=source_uri,
        expected_sha256=expected_sha256,
        layout_uri=layout_uri,
        layout_sha256=layout_sha256,
        signer=signer,
        dataset_dir=model.path,
        chain_dir=chain.path,
        owner_public_key=owner_public_key,
        publisher_public_key=publisher_public_key,
        signature_uri=signature_uri,
        s3_endpoint=s3_endpoint,
        output_prefix="model",
        identity=identity,
        allow_service_account_key=allow_service_account_key,
        allowlist_extra=allowlist_extra,
    )
    model.metadata.update(outcome.metadata)
