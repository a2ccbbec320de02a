"""KFP component: sign the model (OpenSSF Model Signing) and write SLSA provenance."""

from kfp.dsl import Artifact, Input, Model, Output

from chainproof.components._image import COMPONENT_IMAGE
from chainproof.dsl import component


@component(role="sign", base_image=COMPONENT_IMAGE)
def sign_and_attest(
    model: Input[Model],
    evidence: Output[Artifact],
    evaluation: Input[Artifact] = None,
    builder_id: str = "",
    pipeline_template_sha256: str = "",
    component_image: str = "",
) -> None:
    """Verify the model against the chain, sign it with OpenSSF Model Signing, and write its SLSA v1 provenance.

    Args:
        model: The model folder from the training step.
        evidence: attestations/model.sig and attestations/provenance.json.
        evaluation: The reports of an evaluation step (evaluate_robustness), verified and bound into the chain before signing.
        builder_id: The SLSA builder id (default: the runner's).
        pipeline_template_sha256: SHA-256 of the compiled pipeline template, when known.
        component_image: The component image reference with its digest, when known.
    """
    from pathlib import Path

    from chainproof import steps
    from chainproof.step import current_step

    ctx = current_step()
    settings = ctx.settings
    files = {k: v for k, v in ctx.materials.items() if k.startswith(steps.model_prefix(ctx) + "/")}
    steps.sign_work(
        ctx,
        model=Path(model.path),
        model_files=files,
        builder_id=builder_id or (settings.builder_id if settings else ""),
        pipeline_template_sha256=pipeline_template_sha256 or (settings.pipeline_template_sha256 if settings else ""),
        component_image=component_image or (settings.component_image if settings else ""),
    )
