"""KFP v2 components of the zero-trust training pipeline.

Example:
    >>> from chainproof.components import secure_ingest, train_model
    >>> secure_ingest.name
    'secure-ingest'

Each component is a thin wrapper: typed inputs and outputs, a docstring KFP copies
into the compiled spec, and one call into :mod:`chainproof.steps`. Every step
verifies its predecessors' links and the digests of what it receives before use,
and writes its own in-toto link into the chain it hands on.
"""

from chainproof.components._image import COMPONENT_IMAGE
from chainproof.components.register_model import register_model
from chainproof.components.secure_ingest import secure_ingest, secure_ingest_model
from chainproof.components.sign_and_attest import sign_and_attest
from chainproof.components.train_model import train_model
from chainproof.components.verify_chain import verify_chain

__all__ = ["COMPONENT_IMAGE", "register_model", "secure_ingest", "secure_ingest_model", "sign_and_attest", "train_model", "verify_chain"]
