"""KFP component: attack and perturb the trained model on its held-out rows, and gate it (chainproof.robustness)."""

from kfp.dsl import Artifact, Dataset, Input, Model, Output

from chainproof.components._image import COMPONENT_IMAGE
from chainproof.dsl import component


@component(base_image=COMPONENT_IMAGE)
def evaluate_robustness(
    model: Input[Model],
    dataset: Input[Dataset],
    target_column: str,
    reports: Output[Artifact],
    min_metrics: str = "",
    max_metrics: str = "",
    test_size: float = 0.25,
    random_state: int = 0,
    sample_size: int = 200,
    seed: int = 0,
    eps: float = 1.0,
    max_attack_rows: int = 64,
    time_limit_s: float = 60.0,
) -> None:
    """Evaluate the model's robustness (ART HopSkipJump, tree attack, noise, gaps, category flips) and fail closed below the thresholds.

    The model is verified against the training step's link and scanned before it is
    loaded; the held-out rows are the trainer's split of the verified dataset. The
    report reports/robustness.json is this step's signed product (the name the model card reads).

    Args:
        model: The model folder from the training step (model.joblib, features.json).
        dataset: The verified dataset folder (one CSV) the model was trained on.
        target_column: The label column.
        reports: The report folder: robustness.json, attested as reports/robustness.json.
        min_metrics: Minimum values, e.g. accuracy_under_attack>=0.6 (comma-separated).
        max_metrics: Maximum values, e.g. flip_rate_noise<=0.1 (comma-separated).
        test_size: The trainer's held-out fraction.
        random_state: The trainer's split seed.
        sample_size: Held-out rows evaluated.
        seed: Seed of the sample, the attacks and the perturbations.
        eps: Evasion budget: L2 norm in standard deviations of each numeric feature.
        max_attack_rows: Most rows HopSkipJump attacks.
        time_limit_s: Wall-clock budget of the attacks (checked between rows; a cut is recorded).
    """
    import os
    from pathlib import Path

    from chainproof.robustness import AttackSettings, evaluate_model_dir
    from chainproof.thresholds import check_metrics

    data = Path(dataset.path)
    csvs = [data] if data.is_file() else sorted(p for p in data.rglob("*.csv") if p.is_file())
    if len(csvs) != 1:
        from chainproof.errors import InputError

        raise InputError(f"dataset: expected one CSV file, found {len(csvs)}")
    os.makedirs(reports.path, exist_ok=True)
    report = evaluate_model_dir(
        Path(model.path),
        csvs[0],
        target_column=target_column,
        reports_dir=Path(reports.path),
        test_size=test_size,
        random_state=random_state,
        sample_size=sample_size,
        seed=seed,
        settings=AttackSettings(eps=eps, max_attack_rows=max_attack_rows),
        time_limit_s=time_limit_s,
    )
    # The gate, with the pipeline's own threshold syntax: fails closed naming metric, bound and value.
    check_metrics(report["metrics"], min_metrics=min_metrics or None, max_metrics=max_metrics or None)
