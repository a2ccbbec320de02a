"""Who a step runs as: the principal recorded in its link.

Example:
    >>> from chainproof.identity import local_principal
    >>> p = local_principal()
    >>> p.kind
    'local-user'

Local mode (``chainproof run`` on one machine) records the local user and host
and never probes a metadata server. Cloud identities (workload identity, the
metadata server, federation) resolve through google-auth and are classified
before any step trusts them.
"""

from __future__ import annotations

import getpass
import socket
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Principal", "local_principal"]


@dataclass(frozen=True)
class Principal:
    """The identity a step ran as.

    Attributes:
        kind: ``local-user``, ``metadata-server``, ``external-account``,
            ``impersonated``, ``service-account-key`` or ``user``.
        name: the principal (a service-account email, a federated subject, ``user@host``).
        details: non-secret facts about how it was resolved.
    """

    kind: str
    name: str
    details: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form recorded in links."""
        return {"kind": self.kind, "name": self.name, "details": dict(self.details)}


def local_principal() -> Principal:
    """Return the local user and host, without touching any network.

    Returns:
        A ``local-user`` principal named ``user@host``.
    """
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        # No passwd entry (some containers run as an anonymous uid).
        user = "unknown"
    host = socket.gethostname() or "localhost"
    return Principal(kind="local-user", name=f"{user}@{host}", details={"mode": "local"})
