"""The reference zero-trust training pipeline.

ingest (digest-pinned) → train → sign and attest → verify the chain (gate) →
register. Every step records an in-toto link in the chain it hands on.
"""

from kfp import dsl

from chainproof.components import register_model, secure_ingest, sign_and_attest, train_model, verify_chain

PIPELINE_NAME = "chainproof-zero-trust-training"


@dsl.pipeline(name=PIPELINE_NAME, description="Zero-trust training: every step verifies what it receives and attests what it makes.")
def zero_trust_training(
    source_uri: str,
    expected_sha256: str,
    target_column: str,
    layout_uri: str,
    layout_sha256: str,
    registry_uri: str,
    ingest_signer: str,
    train_signer: str,
    attest_signer: str,
    gate_signer: str,
    register_signer: str,
    owner_public_key: str = "",
    model_name: str = "chainproof-model",
    estimator: str = "random_forest",
    hyperparameters: str = "{}",
    builder_id: str = "https://chainproof.dev/builders/kfp-local",
    identity: str = "local",
    allow_service_account_key: bool = False,
    allowlist_extra: str = "",
) -> str:
    """Ingest, train, sign, verify and register a model with an in-toto attestation at every step.

    Args:
        source_uri: URI of the training data.
        expected_sha256: The pinned SHA-256 of the training data.
        target_column: The label column.
        layout_uri: URI of the owner-signed layout.
        layout_sha256: The pinned SHA-256 of the layout.
        registry_uri: Where the model is registered.
        ingest_signer: Signer reference of secure_ingest.
        train_signer: Signer reference of train_model.
        attest_signer: Signer reference of sign_and_attest.
        gate_signer: Signer reference of verify_chain.
        register_signer: Signer reference of register_model.
        owner_public_key: The layout owner's public key PEM (checked, never trusted on its own).
        model_name: The registry model name.
        estimator: The scikit-learn estimator.
        hyperparameters: Estimator parameters as a JSON object.
        builder_id: The SLSA builder id.
        identity: Who every step runs as: local (the local user) or gcp (workload identity via
            Application Default Credentials; service-account key files refused).
        allow_service_account_key: Accept a service-account key file in every step (recorded in each
            link; chainproof verify reports it unless the layout allows it).
        allowlist_extra: Extra exact globals (a JSON list of module:qualname) the ingest and model scans accept.

    Returns:
        The registered model reference.
    """
    ingest = secure_ingest(
        source_uri=source_uri,
        expected_sha256=expected_sha256,
        layout_uri=layout_uri,
        layout_sha256=layout_sha256,
        signer=ingest_signer,
        owner_public_key=owner_public_key,
        identity=identity,
        allow_service_account_key=allow_service_account_key,
        allowlist_extra=allowlist_extra,
    )
    train = train_model(
        dataset=ingest.outputs["dataset"],
        chain=ingest.outputs["chain"],
        layout_sha256=layout_sha256,
        signer=train_signer,
        target_column=target_column,
        estimator=estimator,
        hyperparameters=hyperparameters,
        identity=identity,
        allow_service_account_key=allow_service_account_key,
    )
    attest = sign_and_attest(
        model=train.outputs["model"],
        chain=train.outputs["chain_out"],
        layout_sha256=layout_sha256,
        signer=attest_signer,
        builder_id=builder_id,
        identity=identity,
        allow_service_account_key=allow_service_account_key,
    )
    gate = verify_chain(
        model=train.outputs["model"],
        chain=attest.outputs["chain_out"],
        layout_sha256=layout_sha256,
        signer=gate_signer,
        identity=identity,
        allow_service_account_key=allow_service_account_key,
        allowlist_extra=allowlist_extra,
    )
    register = register_model(
        model=train.outputs["model"],
        chain=gate.outputs["chain_out"],
        layout_sha256=layout_sha256,
        signer=register_signer,
        model_name=model_name,
        registry_uri=registry_uri,
        identity=identity,
        allow_service_account_key=allow_service_account_key,
    )
    return register.output
