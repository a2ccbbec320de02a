"""Check (13): who each step ran as, against the layout's identity policy."""

from __future__ import annotations

from collections.abc import Mapping

from in_toto.models.layout import Layout

from chainproof.errors import (
    PolicyViolation,
)
from chainproof.verify._types import StepRecord

__all__ = ['check_identity_policy']


def check_identity_policy(
    layout: Layout,
    records: Mapping[str, StepRecord],
    *,
    key_files: bool = True,
) -> list[str]:
    """(13) Check who each step ran as against the layout's identity policy.

    Args:
        layout: the trusted layout (its ``expected_principals`` and
            ``allow_service_account_keys`` extensions).
        records: the verified steps.
        key_files: also refuse steps that ran with a service-account key file the
            layout does not allow (an operator's override is not the owner's consent).

    Returns:
        The checks that passed.

    Raises:
        PolicyViolation: a step ran as another principal than the layout pins, or with a
            service-account key file the layout does not allow (names the step and principals).
    """
    from chainproof.identity import uses_service_account_key
    from chainproof.policy import allows_service_account_key, expected_principal

    checks: list[str] = []
    pinned = 0
    for name, record in records.items():
        principal = record.environment.get("principal")
        doc = principal if isinstance(principal, dict) else {}
        actual = str(doc.get("name", "unknown"))
        expected = expected_principal(layout, name)
        if expected is not None:
            if actual != expected:
                raise PolicyViolation(
                    f"step {name}: ran as {actual} ({doc.get('kind', 'unknown')}), "
                    f"but the layout expects {expected}", step=name
                )
            pinned += 1
        if key_files and uses_service_account_key(doc) and not allows_service_account_key(layout, name):
            raise PolicyViolation(
                f"step {name}: ran as {actual} with a service-account key file "
                f"(override {doc.get('details', {}).get('override', 'none')!s} recorded in its link), "
                "and the layout does not allow service-account keys for this step", step=name,
            )
    checks.append(f"(13) {pinned} pinned step principals match the layout")
    if key_files:
        checks.append("(13) no step used a service-account key file the layout does not allow")
    return checks
