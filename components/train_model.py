"""KFP component: verify the dataset against the chain, train, attest the model."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from chainproof.components._image import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def train_model(
    dataset: Input[Dataset],
    chain: Input[Artifact],
    layout_sha256: str,
    signer: str,
    target_column: str,
    model: Output[Model],
    metrics: Output[Metrics],
    chain_out: Output[Artifact],
    estimator: str = "random_forest",
    hyperparameters: str = "{}",
    test_size: float = 0.25,
    random_state: int = 0,
    identity: str = "local",
    allow_service_account_key: bool = False,
) -> None:
    """Verify the ingested dataset against its attested digest, train a scikit-learn classifier, attest the model.

    Before training, the step verifies the chain so far against the pinned layout
    and refuses a dataset whose files differ from the products of secure_ingest.

    Args:
        dataset: The dataset folder from secure_ingest.
        chain: The chain folder from secure_ingest.
        layout_sha256: The pinned SHA-256 of the layout.
        signer: This step's signer reference.
        target_column: The label column of the CSV.
        model: The trained model folder (model/model.joblib).
        metrics: Held-out metrics of the model.
        chain_out: The chain extended with this step's link and metrics.
        estimator: random_forest, logistic_regression, gradient_boosting or decision_tree.
        hyperparameters: A JSON object of estimator parameters.
        test_size: Fraction of rows held out for the metrics.
        random_state: Seed of the train/test split.
        identity: Who the step runs as: local (the local user, recorded as such; no metadata server) or gcp
            (Application Default Credentials: the metadata server or workload identity federation).
        allow_service_account_key: Accept a service-account key file (refused by default); the override
            is recorded in the link and reported by chainproof verify unless the layout allows it.
    """
    from chainproof import steps

    outcome = steps.train_model(
        dataset_dir=dataset.path,
        chain_in=chain.path,
        layout_sha256=layout_sha256,
        signer=signer,
        target_column=target_column,
        model_dir=model.path,
        chain_out=chain_out.path,
        estimator=estimator,
        hyperparameters=hyperparameters,
        test_size=test_size,
        random_state=random_state,
        identity=identity,
        allow_service_account_key=allow_service_account_key,
    )
    for key, value in outcome.metadata["metrics"].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics.log_metric(key, value)
    model.metadata.update({"framework": "scikit-learn", "model_sha256": outcome.metadata["model_sha256"]})
