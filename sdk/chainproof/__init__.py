"""chainproof: zero-trust training pipelines for Kubeflow Pipelines and Vertex AI.

Example:
    >>> import chainproof
    >>> chainproof.__version__ >= "0.1"
    True

The library verifies what every pipeline step receives, records an in-toto link
for each step, and refuses to register a model whose chain does not verify. The
modules, one concern each: :mod:`~chainproof.digests`, :mod:`~chainproof.storage`,
:mod:`~chainproof.scan`, :mod:`~chainproof.identity`, :mod:`~chainproof.signing`,
:mod:`~chainproof.attest`, :mod:`~chainproof.policy`, :mod:`~chainproof.verify`,
:mod:`~chainproof.registry`, :mod:`~chainproof.steps` and :mod:`~chainproof.cli`.
"""

from typing import Any

from chainproof._version import __version__
from chainproof.errors import ChainproofError, VerificationError

__all__ = ["ChainproofError", "VerificationError", "VerificationResult", "__version__", "verify_bundle"]


def __getattr__(name: str) -> Any:
    # The verifier pulls in in-toto, securesystemslib and the cloud clients: import it
    # when it is used, so `chainproof scan` and the components start fast.
    if name in ("VerificationResult", "verify_bundle"):
        from chainproof import verify

        return getattr(verify, name)
    raise AttributeError(f"module 'chainproof' has no attribute {name!r}")
