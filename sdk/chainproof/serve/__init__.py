"""Serve a model only after its chain verifies: ``chainproof serve`` on KServe's model server.

Example:
    >>> from chainproof.serve import load_verified  # doctest: +SKIP
    >>> served = load_verified("local://chainproof-model@1", registry=LocalModelRegistry("reg"),
    ...                        trusted_owner_keys=TrustStore(path).keys())
    >>> from chainproof.serve.server import serve  # needs the serve extra (kserve)
    >>> serve(served, port=8080)

:mod:`chainproof.serve.loader` verifies, copies, scans and loads (no KServe needed);
:mod:`chainproof.serve.server` puts the result behind KServe's V1 and V2 REST endpoints.
"""

from __future__ import annotations

from chainproof.serve.loader import ServedModel, load_verified, served_name

__all__ = ["ServedModel", "load_verified", "served_name"]
