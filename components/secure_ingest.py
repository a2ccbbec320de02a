"""KFP components: fetch a pinned source (a dataset, or a pretrained model) and start the chain."""

from kfp.dsl import Dataset, Model, Output

from chainproof.components._image import COMPONENT_IMAGE
from chainproof.dsl import component


@component(role="ingest", base_image=COMPONENT_IMAGE)
def secure_ingest(
    source_uri: str,
    expected_sha256: str,
    dataset: Output[Dataset],
    publisher_public_key: str = "",
    signature_uri: str = "",
    s3_endpoint: str = "",
    allowlist_extra: str = "",
    tabular_schema: str = "",
) -> None:
    """Fetch a pinned source into quarantine, verify and scan it, and start the attestation chain.

    The source is streamed into quarantine while it is hashed, and released only if
    its SHA-256 equals ``expected_sha256`` (for a folder URI ending in '/', the
    manifest digest of its files) or its publisher's OpenSSF Model Signing signature
    verifies, and the scanner finds it safe. The step writes the run identity (run/id)
    that binds every later link to this run, and signs its in-toto link.

    Args:
        source_uri: gs://bucket/object[#generation], https://..., s3://bucket/key[#version], file://... or a path.
        expected_sha256: The pinned SHA-256 of the source (64 hex characters). Mandatory unless publisher_public_key is given.
        dataset: The verified files (dataset/<name> in the chain), with uri, generation, sha256, size and scan verdict as metadata.
        publisher_public_key: A publisher's EC public key PEM whose model.sig must verify over the source.
        signature_uri: Where the publisher's model.sig is (default: model.sig inside a folder source).
        s3_endpoint: The S3 endpoint for s3:// sources (default: AWS).
        allowlist_extra: A JSON list of extra exact globals (module:qualname) the scanner accepts; recorded in the link.
        tabular_schema: A JSON schema for CSV sources: {"columns": [{"name", "type", "minimum", "maximum", "nullable"}]}.
    """
    import os
    from pathlib import Path

    from chainproof import steps
    from chainproof.step import current_step
    from chainproof.storage import FetchOptions

    ctx = current_step()
    os.makedirs(dataset.path, exist_ok=True)
    metadata = steps.ingest_work(
        ctx,
        source_uri=source_uri,
        expected_sha256=expected_sha256,
        dataset=Path(dataset.path),
        publisher_public_key=publisher_public_key,
        signature_uri=signature_uri,
        allowlist_extra=allowlist_extra,
        tabular_schema=tabular_schema,
        options=FetchOptions(s3_endpoint=s3_endpoint) if s3_endpoint else FetchOptions(),
        layout_uri=ctx.settings.layout_uri if ctx.settings else "",
    )
    dataset.metadata.update(metadata)


@component(role="ingest", base_image=COMPONENT_IMAGE)
def secure_ingest_model(
    source_uri: str,
    expected_sha256: str,
    model: Output[Model],
    publisher_public_key: str = "",
    signature_uri: str = "",
    s3_endpoint: str = "",
    allowlist_extra: str = "",
) -> None:
    """Fetch a pretrained model by digest or by its publisher's signature, scan it, and start the chain.

    Same checks as secure_ingest; the products are named model/<name>.

    Args:
        source_uri: The model file or folder (a URI ending in '/').
        expected_sha256: The pinned SHA-256 (manifest digest for a folder); may be empty with publisher_public_key.
        model: The verified model files, with uri, generation, sha256, size and scan verdict as metadata.
        publisher_public_key: The publisher's EC public key PEM whose model.sig must verify over the model.
        signature_uri: Where the publisher's model.sig is (default: model.sig inside a folder source).
        s3_endpoint: The S3 endpoint for s3:// sources (default: AWS).
        allowlist_extra: A JSON list of extra exact globals (module:qualname) the scanner accepts; recorded in the link.
    """
    import os
    from pathlib import Path

    from chainproof import steps
    from chainproof.step import current_step
    from chainproof.storage import FetchOptions

    ctx = current_step()
    os.makedirs(model.path, exist_ok=True)
    metadata = steps.ingest_work(
        ctx,
        source_uri=source_uri,
        expected_sha256=expected_sha256,
        dataset=Path(model.path),
        output_prefix="model",
        publisher_public_key=publisher_public_key,
        signature_uri=signature_uri,
        allowlist_extra=allowlist_extra,
        options=FetchOptions(s3_endpoint=s3_endpoint) if s3_endpoint else FetchOptions(),
        layout_uri=ctx.settings.layout_uri if ctx.settings else "",
    )
    model.metadata.update(metadata)
