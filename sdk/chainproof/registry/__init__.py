"""Model registries: where verified models and their evidence are recorded.

Example:
    >>> import tempfile
    >>> from chainproof.registry import LocalModelRegistry
    >>> reg = LocalModelRegistry(tempfile.mkdtemp())
    >>> pending = reg.prepare("fraud")
    >>> pending.reference
    'local://fraud@1'

The seam is :class:`ModelRegistry`. A registry only accepts a model together with
the :class:`~chainproof.verify.VerificationResult` of its chain, and re-hashes the
model it is about to store: what it registers is what was verified, not what was
there when verification started. Each version records the model's location and
digest and the evidence bundle's location and digest.
"""

from __future__ import annotations

from typing import Any

from chainproof.errors import InputError
from chainproof.registry._protocol import (
    ModelRegistry,
    PendingVersion,
    RegisteredModel,
    VerifiedChain,
    VerifiedStep,
)
from chainproof.registry.local import LocalModelRegistry, parse_local_reference
from chainproof.registry.vertex import (
    MODEL_DIGEST_LABELS,
    PREBUILT_SKLEARN_SERVING,
    VERSION_LABEL,
    VertexModelRegistry,
    digest_from_labels,
    digest_labels,
    parse_vertex_reference,
)

__all__ = [
    "MODEL_DIGEST_LABELS",
    "PREBUILT_SKLEARN_SERVING",
    "VERSION_LABEL",
    "LocalModelRegistry",
    "ModelRegistry",
    "PendingVersion",
    "RegisteredModel",
    "VerifiedChain",
    "VerifiedStep",
    "VertexModelRegistry",
    "digest_from_labels",
    "digest_labels",
    "parse_local_reference",
    "parse_vertex_reference",
    "registry_for",
    "registry_identity",
]


def registry_identity(registry: Any, pending: PendingVersion) -> dict[str, str]:
    """Return the registry identity ``register_model`` attests in ``registry/entry.json``.

    Local registries have a random id made at creation; Vertex AI registrations are
    named by project, location and model ID. ``verify`` compares it with the registry
    it actually read the entry from (check 17).

    Args:
        registry: the registry being written to.
        pending: the reserved version.

    Returns:
        The identity (``kind`` plus its fields); ``{"kind": "unknown"}`` for a backend
        without one, which verification refuses.
    """
    if isinstance(registry, LocalModelRegistry):
        return registry.identity(create=True)
    identity_for = getattr(registry, "identity_for", None)
    return dict(identity_for(pending.reference)) if identity_for is not None else {"kind": "unknown"}


def registry_for(uri: str, **kwargs: Any) -> LocalModelRegistry | VertexModelRegistry:
    """Choose the registry backend by URI.

    Args:
        uri: ``file:///FOLDER`` (or a path) for the local registry;
            ``vertex://projects/P/locations/L?artifacts=gs://BUCKET/PREFIX`` for Vertex AI.
        **kwargs: passed to :class:`VertexModelRegistry` (credentials, ...).

    Returns:
        The backend.

    Raises:
        InputError: an unknown scheme.
    """
    if uri.startswith("vertex://"):
        return VertexModelRegistry.from_uri(uri, **kwargs)
    if uri.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return LocalModelRegistry(unquote(urlparse(uri).path))
    if not uri or "://" in uri:
        raise InputError(f"registry_uri {uri!r}: expected file:///FOLDER or vertex://projects/P/locations/L?artifacts=gs://...")
    return LocalModelRegistry(uri)
