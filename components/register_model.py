"""KFP component: register a verified model with a pointer to its evidence."""

from kfp.dsl import Artifact, Input, Model, Output

from chainproof.artifact_types import VertexModel
from chainproof.components._image import COMPONENT_IMAGE
from chainproof.dsl import component


@component(role="register", base_image=COMPONENT_IMAGE)
def register_model(
    model: Input[Model],
    verification: Input[Artifact],
    model_name: str,
    registered_model: Output[VertexModel],
    registry_uri: str = "",
) -> str:
    """Re-verify the chain and the gate's verification summary, then register the model and its evidence bundle.

    Registration is refused unless the chain verifies and the verification summary
    says PASSED for this exact model. The same model digest is never registered twice.
    Called without ``verification``, chainproof places sign_and_attest and verify_chain before it.

    Args:
        model: The model folder from the training step.
        verification: The evidence of verify_chain (the gate).
        model_name: The registry model name (lowercase letters, digits, '-', '_', '.').
        registered_model: The registered version as a google.VertexModel artifact (metadata resourceName), for Google Cloud Pipeline Components downstream.
        registry_uri: file:///REGISTRY/FOLDER or vertex://projects/P/locations/L?artifacts=gs://BUCKET/PREFIX (default: the run's registry).

    Returns:
        The registered version, e.g. local://NAME@VERSION.
    """
    from pathlib import Path

    from chainproof import steps
    from chainproof.errors import InputError
    from chainproof.registry import registry_for
    from chainproof.step import current_step

    ctx = current_step()
    uri = registry_uri or (ctx.settings.registry_uri if ctx.settings else "")
    if not uri:
        raise InputError("register_model: no registry_uri (neither the task's nor the run's)")
    files = {k: v for k, v in ctx.materials.items() if k.startswith(steps.model_prefix(ctx) + "/")}
    outcome = steps.register_work(ctx, model=Path(model.path), model_files=files, model_name=model_name,
                                  registry=registry_for(uri))
    registered_model.metadata.update(
        {k: outcome[k] for k in ("reference", "model_sha256", "bundle", "model") if k in outcome}
    )
    if outcome.get("resourceName"):
        # What GCPC components read (ModelDeployOp, ModelBatchPredictOp, ...).
        registered_model.metadata["resourceName"] = outcome["resourceName"]
        registered_model.uri = outcome["resourceUri"]
    return str(outcome["reference"])
