"""KFP v2 components of the zero-trust training pipeline.

Example:
    >>> from chainproof.components import secure_ingest, train_model
    >>> secure_ingest.name
    'secure-ingest'
    >>> bound = components_for_image("europe-docker.pkg.dev/p/r/chainproof@sha256:" + "a" * 64)
    >>> bound.train_model.component_spec.implementation.container.image.endswith("a" * 64)
    True

Each component is a :func:`chainproof.dsl.component`: typed inputs and outputs, a
docstring KFP copies into the compiled spec, and one call into :mod:`chainproof.steps`.
Like a data scientist's own components, every step verifies the links and digests of
what it receives before use and signs its own in-toto link; they mix freely in one
pipeline built with :func:`chainproof.dsl.pipeline`.

The module-level components run the placeholder :data:`COMPONENT_IMAGE` (fine for
``kfp.local``, which runs them in-process); :func:`components_for_image` rebuilds
all of them on a real, digest-pinned image for Vertex AI Pipelines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chainproof.artifact_types import VertexModel
from chainproof.components._image import COMPONENT_IMAGE
from chainproof.components.evaluate_robustness import evaluate_robustness
from chainproof.components.register_model import register_model
from chainproof.components.secure_ingest import secure_ingest, secure_ingest_model
from chainproof.components.sign_and_attest import sign_and_attest
from chainproof.components.train_model import train_model
from chainproof.components.verify_chain import verify_chain

__all__ = [
    "COMPONENT_IMAGE",
    "ComponentSet",
    "VertexModel",
    "components_for_image",
    "default_components",
    "evaluate_robustness",
    "register_model",
    "secure_ingest",
    "secure_ingest_model",
    "sign_and_attest",
    "train_model",
    "verify_chain",
]


@dataclass(frozen=True)
class ComponentSet:
    """The chainproof components, all bound to one container image.

    Attributes:
        image: the image every component runs.
    """

    image: str
    secure_ingest: Any
    secure_ingest_model: Any
    train_model: Any
    evaluate_robustness: Any
    sign_and_attest: Any
    verify_chain: Any
    register_model: Any


_DEFAULTS = {
    "secure_ingest": secure_ingest,
    "secure_ingest_model": secure_ingest_model,
    "train_model": train_model,
    "evaluate_robustness": evaluate_robustness,
    "sign_and_attest": sign_and_attest,
    "verify_chain": verify_chain,
    "register_model": register_model,
}


def default_components() -> ComponentSet:
    """Return the module-level components (placeholder image; for kfp.local)."""
    return ComponentSet(image=COMPONENT_IMAGE, **_DEFAULTS)


def components_for_image(image: str) -> ComponentSet:
    """Rebuild every component on a digest-pinned image.

    The components keep ``install_kfp_package=False`` and no ``packages_to_install``:
    nothing is pip-installed at run time, so the image must already hold chainproof.

    Args:
        image: ``REGISTRY/PATH@sha256:DIGEST``.

    Returns:
        The components bound to ``image``.

    Raises:
        InputError: the image is not pinned by a digest.
    """
    from chainproof.dsl import component
    from chainproof.images import check_image_reference

    pinned = check_image_reference(image).reference
    rebuilt = {
        name: component(comp.python_func, role=comp.chainproof_role, base_image=pinned)
        for name, comp in _DEFAULTS.items()
    }
    _companions(rebuilt)
    return ComponentSet(image=pinned, **rebuilt)


def _companions(components: dict[str, Any]) -> None:
    # register_model called without a gate places these two before itself.
    components["register_model"].companions = {
        "sign_and_attest": components["sign_and_attest"], "verify_chain": components["verify_chain"],
    }


_companions(_DEFAULTS)
