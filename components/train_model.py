"""KFP component: train the built-in scikit-learn estimator on the verified dataset."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output

from chainproof.components._image import COMPONENT_IMAGE
from chainproof.dsl import component


@component(role="train", base_image=COMPONENT_IMAGE)
def train_model(
    dataset: Input[Dataset],
    target_column: str,
    model: Output[Model],
    metrics: Output[Metrics],
    estimator: str = "random_forest",
    hyperparameters: str = "{}",
    test_size: float = 0.25,
    random_state: int = 0,
    drop: str = "",
    task: str = "classification",
) -> None:
    """Train a scikit-learn model on a verified table (categories and gaps handled inside the saved Pipeline).

    Before training, the dataset is verified against the link of the step that
    produced it (ingest, or your own preprocessing), on a private copy. Numeric columns
    are imputed (median), categorical string columns imputed and one-hot encoded, inside
    one scikit-learn Pipeline saved with the model; model/features.json records the
    feature names, types and order.

    Args:
        dataset: The dataset folder (one CSV).
        target_column: The label column of the CSV.
        model: The trained model folder (model/model.joblib).
        metrics: Held-out metrics of the model.
        estimator: random_forest, logistic_regression, gradient_boosting, decision_tree (classification);
            random_forest, linear_regression, ridge, gradient_boosting, decision_tree (regression).
        hyperparameters: A JSON object of estimator parameters.
        test_size: Fraction of rows held out for the metrics.
        random_state: Seed of the train/test split.
        drop: Columns that are not features (identifiers): comma-separated or a JSON list.
        task: classification, regression or auto (a numeric target with many distinct values is refused
            as a classification target unless the task says so).
    """
    import os
    from pathlib import Path

    from chainproof import steps
    from chainproof.step import current_step

    os.makedirs(model.path, exist_ok=True)
    result = steps.train_work(
        current_step(),
        dataset=Path(dataset.path),
        model_out=Path(model.path),
        target_column=target_column,
        estimator=estimator,
        hyperparameters=hyperparameters,
        test_size=test_size,
        random_state=random_state,
        drop=drop,
        task=task,
    )
    for key, value in result.metrics.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics.log_metric(key, value)
    model.metadata.update({"framework": "scikit-learn", "task": result.task,
                           "features": [f["name"] for f in result.features]})
