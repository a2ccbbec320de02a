"""KFP component: the fail-closed chain gate."""

from kfp.dsl import Artifact, Input, Model, Output

from chainproof.components._image import COMPONENT_IMAGE
from chainproof.dsl import component


@component(role="gate", base_image=COMPONENT_IMAGE)
def verify_chain(
    model: Input[Model],
    attestations: Input[Artifact],
    evidence: Output[Artifact],
    allowlist_extra: str = "",
    min_metrics: str = "",
    max_metrics: str = "",
) -> None:
    """Verify every link, rule and evidence file so far, the model and its signatures; fail the pipeline otherwise.

    It also scans the model files by content (pickle/joblib opcodes against an
    allowlist of exact globals, never loading them), refuses an unsafe model, and
    enforces the metric thresholds of the layout and of this task. On success it
    writes the scan report and a signed SLSA verification summary that
    register_model requires.

    Args:
        model: The model folder from the training step.
        attestations: The evidence of sign_and_attest.
        evidence: attestations/vsa.json and reports/scan-model.json.
        allowlist_extra: A JSON list of extra exact globals (module:qualname) the model scan accepts; recorded in the link.
        min_metrics: Minimum metric values, e.g. roc_auc>=0.8,accuracy>=0.7 (or a JSON object).
        max_metrics: Maximum metric values, e.g. rmse<=3.5 (or a JSON object).
    """
    from pathlib import Path

    from chainproof import steps
    from chainproof.step import current_step

    steps.gate_work(current_step(), model=Path(model.path), allowlist_extra=allowlist_extra,
                    min_metrics=min_metrics, max_metrics=max_metrics)
