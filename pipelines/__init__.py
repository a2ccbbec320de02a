"""Pipelines composed from chainproof components.

Example:
    >>> from chainproof.pipelines import zero_trust_training
    >>> zero_trust_training.name
    'chainproof-zero-trust-training'
"""

from chainproof.pipelines.zero_trust_training import (
    LOCAL_BUILDER_ID,
    PIPELINE_NAME,
    VERTEX_BUILDER_ID,
    build_zero_trust_training,
    zero_trust_training,
)

__all__ = ["LOCAL_BUILDER_ID", "PIPELINE_NAME", "VERTEX_BUILDER_ID", "build_zero_trust_training", "zero_trust_training"]
