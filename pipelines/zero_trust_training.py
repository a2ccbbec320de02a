"""The reference zero-trust training pipeline.

ingest (digest-pinned) → train → sign and attest → verify the chain (gate) →
register. Every step records an in-toto link in the chain it hands on.

``zero_trust_training`` uses the module-level components (for ``kfp.local``);
:func:`build_zero_trust_training` builds the same pipeline on a
:class:`~chainproof.components.ComponentSet` bound to a digest-pinned image, which
is what ``chainproof compile`` compiles for Vertex AI Pipelines.
"""


from typing import Any

from kfp import dsl

from chainproof.components import COMPONENT_IMAGE, ComponentSet, default_components

PIPELINE_NAME = "chainproof-zero-trust-training"

#: The SLSA builder id of runs on Vertex AI Pipelines.
VERTEX_BUILDER_ID = "https://chainproof.dev/builders/vertex-ai-pipelines"
#: The SLSA builder id of runs with ``kfp.local``.
LOCAL_BUILDER_ID = "https://chainproof.dev/builders/kfp-local"


def build_zero_trust_training(components: ComponentSet, *, builder_id: str = LOCAL_BUILDER_ID) -> Any:
    """Build the reference pipeline on a set of components.

    Args:
        components: the components (and the image they run).
        builder_id: the default of the ``builder_id`` parameter.

    Returns:
        The KFP pipeline.
    """
    c = components
    # The placeholder image names no real bytes: record no image rather than a fake digest.
    image = "" if c.image == COMPONENT_IMAGE else c.image

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
        publisher_public_key: str = "",
        model_name: str = "chainproof-model",
        estimator: str = "random_forest",
        hyperparameters: str = "{}",
        test_size: float = 0.25,
        random_state: int = 0,
        builder_id: str = builder_id,
        pipeline_template_sha256: str = "",
        identity: str = "local",
        allow_service_account_key: bool = False,
        allowlist_extra: str = "",
        tabular_schema: str = "",
    ) -> str:
        """Ingest, train, sign, verify and register a model with an in-toto attestation at every step.

        Args:
            source_uri: URI of the training data.
            expected_sha256: The pinned SHA-256 of the training data (may be empty with publisher_public_key).
            target_column: The label column.
            layout_uri: URI of the owner-signed layout.
            layout_sha256: The pinned SHA-256 of the layout.
            registry_uri: Where the model is registered (file:// or vertex://projects/P/locations/L?artifacts=gs://...).
            ingest_signer: Signer reference of secure_ingest.
            train_signer: Signer reference of train_model.
            attest_signer: Signer reference of sign_and_attest.
            gate_signer: Signer reference of verify_chain.
            register_signer: Signer reference of register_model.
            owner_public_key: The layout owner's public key PEM (checked, never trusted on its own).
            publisher_public_key: A publisher's EC public key PEM whose model.sig must verify over the source.
            model_name: The registry model name (the Vertex AI model ID and display name).
            estimator: The scikit-learn estimator.
            hyperparameters: Estimator parameters as a JSON object.
            test_size: Fraction of rows held out for the metrics.
            random_state: Seed of the train/test split.
            builder_id: The SLSA builder id.
            pipeline_template_sha256: SHA-256 of this compiled template, passed at submission (a template cannot hold its own digest).
            identity: Who every step runs as: local (the local user) or gcp (workload identity via
                Application Default Credentials; service-account key files refused).
            allow_service_account_key: Accept a service-account key file in every step (recorded in each
                link; chainproof verify reports it unless the layout allows it).
            allowlist_extra: Extra exact globals (a JSON list of module:qualname) the ingest and model scans accept.
            tabular_schema: A JSON schema the training CSV must match (columns, types, ranges); empty for none.

        Returns:
            The registered model reference.
        """
        ingest = c.secure_ingest(
            source_uri=source_uri,
            expected_sha256=expected_sha256,
            layout_uri=layout_uri,
            layout_sha256=layout_sha256,
            signer=ingest_signer,
            owner_public_key=owner_public_key,
            publisher_public_key=publisher_public_key,
            identity=identity,
            allow_service_account_key=allow_service_account_key,
            allowlist_extra=allowlist_extra,
            tabular_schema=tabular_schema,
        )
        train = c.train_model(
            dataset=ingest.outputs["dataset"],
            chain=ingest.outputs["chain"],
            layout_sha256=layout_sha256,
            signer=train_signer,
            target_column=target_column,
            estimator=estimator,
            hyperparameters=hyperparameters,
            test_size=test_size,
            random_state=random_state,
            identity=identity,
            allow_service_account_key=allow_service_account_key,
        )
        attest = c.sign_and_attest(
            model=train.outputs["model"],
            chain=train.outputs["chain_out"],
            layout_sha256=layout_sha256,
            signer=attest_signer,
            builder_id=builder_id,
            pipeline_template_sha256=pipeline_template_sha256,
            component_image=image,
            identity=identity,
            allow_service_account_key=allow_service_account_key,
        )
        gate = c.verify_chain(
            model=train.outputs["model"],
            chain=attest.outputs["chain_out"],
            layout_sha256=layout_sha256,
            signer=gate_signer,
            identity=identity,
            allow_service_account_key=allow_service_account_key,
            allowlist_extra=allowlist_extra,
        )
        register = c.register_model(
            model=train.outputs["model"],
            chain=gate.outputs["chain_out"],
            layout_sha256=layout_sha256,
            signer=register_signer,
            model_name=model_name,
            registry_uri=registry_uri,
            identity=identity,
            allow_service_account_key=allow_service_account_key,
        )
        return register.outputs["Output"]

    return zero_trust_training


zero_trust_training = build_zero_trust_training(default_components())
