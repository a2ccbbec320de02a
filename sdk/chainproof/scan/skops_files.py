"""Check skops files with skops' own audit, against chainproof's allowlist.

Example:
    >>> from chainproof.scan.skops_files import skops_available
    >>> isinstance(skops_available(), bool)
    True

A skops file is a zip with a ``schema.json``. ``skops.io.get_untrusted_types``
lists every type the file would construct (it reads the schema, it does not
load); each must be an exact entry of the allowlist. skops is optional
(``pip install chainproof[skops]``): without it a skops file is unsafe.
"""

from __future__ import annotations

from typing import Any

from chainproof.scan.allowlist import Allowlist
from chainproof.scan.report import Finding

__all__ = ["check_skops", "skops_available"]


def skops_available() -> bool:
    """Return whether ``skops`` can be imported."""
    try:
        import skops.io  # noqa: F401
    except ImportError:
        return False
    return True


def check_skops(data: bytes, *, label: str, allowlist: Allowlist, findings: list[Finding], facts: dict[str, Any]) -> None:
    """Check every type a skops file names against the allowlist.

    Args:
        data: the file's bytes.
        label: the name findings use.
        allowlist: the exact globals accepted.
        findings: where findings go.
        facts: where facts go (the types skops reported).
    """
    try:
        from skops.io import get_untrusted_types
    except ImportError:
        findings.append(Finding(label, None, "skops", "skops is not installed (pip install chainproof[skops]): cannot audit"))
        return
    try:
        types = get_untrusted_types(data=data)
    except Exception as exc:  # noqa: BLE001 - any failure to audit is a refusal
        findings.append(Finding(label, None, "skops", f"skops cannot audit the file ({type(exc).__name__}: {exc})"))
        return
    allowed = allowlist.dotted_names()
    facts["skops_untrusted_types"] = sorted(types)
    for name in sorted(types):
        if name not in allowed:
            findings.append(Finding(label, None, name, "skops type not in the allowlist"))
