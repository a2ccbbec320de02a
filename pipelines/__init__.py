"""Pipelines composed from chainproof components.

Example:
    >>> from chainproof.pipelines import zero_trust_training
    >>> zero_trust_training.name
    'chainproof-zero-trust-training'
"""

from chainproof.pipelines.zero_trust_training import PIPELINE_NAME, zero_trust_training

__all__ = ["PIPELINE_NAME", "zero_trust_training"]
