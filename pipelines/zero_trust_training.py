"""The reference zero-trust training pipeline, written with :mod:`chainproof.dsl`.

ingest (digest-pinned) → train → robustness (evasion and perturbations) → sign and
attest → verify the chain (gate) → register. Every step verifies what it receives against the link of the step that
made it and signs its own in-toto link; the evidence travels beside the artifacts.

``zero_trust_training`` uses the module-level components (for ``kfp.local``);
:func:`build_zero_trust_training` builds the same pipeline on a
:class:`~chainproof.components.ComponentSet` bound to a digest-pinned image, which
is what ``chainproof compile`` compiles for Vertex AI Pipelines.
"""

from typing import Any

from chainproof import dsl
from chainproof.components import ComponentSet, default_components

PIPELINE_NAME = "chainproof-zero-trust-training"

#: The SLSA builder id of runs on Vertex AI Pipelines.
VERTEX_BUILDER_ID = "https://chainproof.dev/builders/vertex-ai-pipelines"
#: The SLSA builder id of runs with ``kfp.local``.
LOCAL_BUILDER_ID = "https://chainproof.dev/builders/kfp-local"


def build_zero_trust_training(components: ComponentSet) -> Any:
    """Build the reference pipeline on a set of components.

    Args:
        components: the components (and the image they run).

    Returns:
        The KFP pipeline.
    """
    c = components

    @dsl.pipeline(name=PIPELINE_NAME, description="Zero-trust training: every step verifies what it receives and attests what it makes.")
    def zero_trust_training(
        source_uri: str,
        expected_sha256: str,
        target_column: str,
        model_name: str = "chainproof-model",
        estimator: str = "random_forest",
        hyperparameters: str = "{}",
        test_size: float = 0.25,
        random_state: int = 0,
        publisher_public_key: str = "",
        allowlist_extra: str = "",
        tabular_schema: str = "",
        min_metrics: str = "",
        max_metrics: str = "",
        drop: str = "",
        task: str = "classification",
        robustness_min_metrics: str = "",
        robustness_max_metrics: str = "",
        robustness_sample_size: int = 100,
        robustness_attack_rows: int = 8,
    ) -> str:
        """Ingest, train, sign, verify and register a model with an in-toto attestation at every step.

        Args:
            source_uri: URI of the training data.
            expected_sha256: The pinned SHA-256 of the training data (may be empty with publisher_public_key).
            target_column: The label column.
            model_name: The registry model name (the Vertex AI model ID and display name).
            estimator: The scikit-learn estimator.
            hyperparameters: Estimator parameters as a JSON object.
            test_size: Fraction of rows held out for the metrics.
            random_state: Seed of the train/test split.
            publisher_public_key: A publisher's EC public key PEM whose model.sig must verify over the source.
            allowlist_extra: Extra exact globals (a JSON list of module:qualname) the ingest and model scans accept.
            tabular_schema: A JSON schema the training CSV must match (columns, types, ranges); empty for none.
            min_metrics: Minimum metric values the gate enforces (roc_auc>=0.8,...).
            max_metrics: Maximum metric values the gate enforces (rmse<=3.5,...).
            drop: Columns that are not features (identifiers), comma-separated.
            task: classification, regression or auto.
            robustness_min_metrics: Robustness minimums the model must reach (accuracy_under_attack>=0.6,...).
            robustness_max_metrics: Robustness maximums (flip_rate_noise<=0.1,...).
            robustness_sample_size: Held-out rows the robustness step evaluates.
            robustness_attack_rows: Rows the black-box evasion attack (HopSkipJump) attacks.

        Returns:
            The registered model reference.
        """
        ingest = c.secure_ingest(
            source_uri=source_uri,
            expected_sha256=expected_sha256,
            publisher_public_key=publisher_public_key,
            allowlist_extra=allowlist_extra,
            tabular_schema=tabular_schema,
        )
        train = c.train_model(
            dataset=ingest.outputs["dataset"],
            target_column=target_column,
            estimator=estimator,
            hyperparameters=hyperparameters,
            test_size=test_size,
            random_state=random_state,
            drop=drop,
            task=task,
        )
        robustness = c.evaluate_robustness(
            model=train.outputs["model"],
            dataset=ingest.outputs["dataset"],
            target_column=target_column,
            min_metrics=robustness_min_metrics,
            max_metrics=robustness_max_metrics,
            test_size=test_size,
            random_state=random_state,
            sample_size=robustness_sample_size,
            max_attack_rows=robustness_attack_rows,
        )
        attest = c.sign_and_attest(model=train.outputs["model"], evaluation=robustness.outputs["reports"])
        gate = c.verify_chain(
            model=train.outputs["model"],
            attestations=attest.outputs["evidence"],
            allowlist_extra=allowlist_extra,
            min_metrics=min_metrics,
            max_metrics=max_metrics,
        )
        register = c.register_model(
            model=train.outputs["model"],
            verification=gate.outputs["evidence"],
            model_name=model_name,
        )
        registered: str = register.outputs["Output"]
        return registered

    return zero_trust_training


zero_trust_training = build_zero_trust_training(default_components())
