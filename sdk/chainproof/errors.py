"""One error hierarchy for everything chainproof refuses.

Example:
    >>> from chainproof.errors import DigestMismatch
    >>> str(DigestMismatch("dataset/train.csv", "aa" * 32, "bb" * 32))[:29]
    'dataset/train.csv: expected s'

Every error names the artifact (or step) it is about, what was expected and what
was found. A failed check raises; it never returns ``False``. Errors carry an
``exit_code``: 1 for a verification failure or a refused artifact, 2 for a usage
or input error, 3 for an unreachable or failing cloud service, so the CLI can map
them without guessing.
"""

from __future__ import annotations

__all__ = [
    "ArtifactRefused",
    "ChainError",
    "ChainproofError",
    "ColumnError",
    "CredentialRefused",
    "DigestMismatch",
    "InputError",
    "KeyExists",
    "LayoutError",
    "MetricBelowThreshold",
    "PolicyViolation",
    "PolicyViolations",
    "RegistryError",
    "ServiceError",
    "SignatureError",
    "StepFailed",
    "UntrustedKey",
    "VerificationError",
]


class ChainproofError(Exception):
    """Base class of every error chainproof raises on purpose.

    Attributes:
        exit_code: the CLI exit code for this error (1 refused, 2 input error).
    """

    exit_code = 2

    def diagnostics(self) -> str:
        """Return the one-line, secret-free description of the failure."""
        return str(self)


class InputError(ChainproofError):
    """A usage or input error: a missing file, a malformed argument or document."""

    exit_code = 2


class ColumnError(InputError):
    """A column of a table cannot be used as the caller asked (training data, a feature, the target).

    Attributes:
        artifact: the table (a file name).
        column: the column's name.
        reason: what is wrong with it, with what was expected and found.
    """

    def __init__(self, artifact: str, column: str, reason: str) -> None:
        super().__init__(f"{artifact}: column {column!r}: {reason}")
        self.artifact, self.column, self.reason = artifact, column, reason


class KeyExists(InputError):
    """A key file already exists where chainproof was asked to create one."""

    def __init__(self, path: str) -> None:
        super().__init__(f"{path}: key already exists; refusing to overwrite it")
        self.path = path


class VerificationError(ChainproofError):
    """Something that should have verified did not. Exit code 1."""

    exit_code = 1


class DigestMismatch(VerificationError):
    """An artifact's bytes are not the ones that were pinned or attested."""

    def __init__(self, artifact: str, expected: str, actual: str, *, context: str = "") -> None:
        where = f" ({context})" if context else ""
        super().__init__(f"{artifact}{where}: expected sha256:{expected}, got sha256:{actual}")
        self.artifact, self.expected, self.actual = artifact, expected, actual


class ArtifactRefused(VerificationError):
    """An artifact is missing, unexpected, unreadable or unsafe."""

    def __init__(self, artifact: str, reason: str) -> None:
        super().__init__(f"{artifact}: {reason}")
        self.artifact, self.reason = artifact, reason


class SignatureError(VerificationError):
    """A signature does not verify with the key it must verify with."""


class UntrustedKey(VerificationError):
    """Metadata is signed, but not by a key the verifier trusts."""

    def __init__(self, what: str, keyid: str, trusted: list[str]) -> None:
        expected = ", ".join(k[:16] for k in trusted) or "none configured"
        super().__init__(
            f"{what}: signed by key {keyid[:16]}, which is not a trusted key "
            f"(expected one of: {expected})"
        )
        self.what, self.keyid, self.trusted = what, keyid, trusted


class LayoutError(VerificationError):
    """The layout (the owner's policy) is malformed, expired, or not the pinned one."""


class ChainError(VerificationError):
    """A step's link is missing, forged, or breaks a rule of the layout.

    Attributes:
        step: the step whose link failed (``?`` when in-toto does not say).
        reason: what was expected and what was found.
        check: the number of the check that failed, as in ``docs/verification.md`` (4: the
            link and its signature, 5: materials, 6: products, 7: order).
        artifact: the first artifact the failure is about, when there is one.
    """

    def __init__(self, step: str, reason: str, *, check: str = "4", artifact: str = "") -> None:
        super().__init__(f"step {step}: {reason}")
        self.step, self.reason, self.check, self.artifact = step, reason, check, artifact


class PolicyViolation(VerificationError):
    """The chain verifies, but breaks a constraint of the verifier's policy.

    Attributes:
        step: the step the constraint is about, when it is about one (else empty).
    """

    step = ""

    def __init__(self, message: str, *, step: str = "") -> None:
        super().__init__(message)
        self.step = step


class MetricBelowThreshold(PolicyViolation):
    """A model's metric fails a threshold the owner or the auditor requires.

    Also raised when a required metric is missing or is not a finite number
    (``value`` is then ``None`` or what was found).

    Attributes:
        metric: the metric's name (``roc_auc``).
        threshold: the required bound.
        value: the metric's value (``None`` when the metric is missing).
        comparison: the comparison that had to hold (``>=``, ``>``, ``<=``, ``<``).
    """

    def __init__(self, metric: str, threshold: float, value: object, comparison: str, *, reason: str = "") -> None:
        strict = "exclusive " if comparison in (">", "<") else ""
        bound = f"{strict}{'minimum' if comparison.startswith('>') else 'maximum'} {_number(threshold)}"
        if reason:
            message = f"metric {metric} {reason} (required {bound})"
        elif comparison.startswith(">"):
            message = f"metric {metric} = {_number(value)} is below the required {bound}"
        else:
            message = f"metric {metric} = {_number(value)} is above the allowed {bound}"
        super().__init__(message)
        self.metric, self.threshold, self.value, self.comparison = metric, threshold, value, comparison


def _number(value: object) -> str:
    """Print a number as a person reads it: two decimals when exact (0.80), else every digit needed."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        x = float(value)
        if abs(x) < 1e6 and float(f"{x:.2f}") == x:
            return f"{x:.2f}"
        return repr(x)
    return repr(value)[:40]
class PolicyViolations(PolicyViolation):
    """Several policy constraints do not hold; all of them are reported at once.

    Attributes:
        violations: the message of each violation, in policy order.
        passed: the check lines of the constraints that held.
    """

    def __init__(self, violations: list[PolicyViolation], *, passed: list[str] | None = None) -> None:
        self.violations = [v.diagnostics() for v in violations]
        self.passed = list(passed or [])
        step = violations[0].step if len(violations) == 1 else ""
        if len(self.violations) == 1:
            super().__init__(self.violations[0], step=step)
        else:
            super().__init__(f"{len(self.violations)} policy violations: " + "; ".join(self.violations))


class ServiceError(ChainproofError):
    """A cloud service is unreachable, refuses the credentials, or fails. Exit code 3.

    Attributes:
        service: the service (``Vertex AI Model Registry``, ``Google authentication``).
        operation: what chainproof was doing (``GetModel``, ``resolve credentials``).
        hint: what to check.
    """

    exit_code = 3

    def __init__(self, service: str, operation: str, reason: str, hint: str) -> None:
        super().__init__(f"{service}: {operation} failed: {reason}; check {hint}")
        self.service, self.operation, self.reason, self.hint = service, operation, reason, hint


class CredentialRefused(ChainproofError):
    """The step's credentials are of a kind the identity policy refuses."""

    exit_code = 1


class RegistryError(ChainproofError):
    """A registry entry is missing, malformed, or cannot be written."""


class StepFailed(ChainproofError):
    """A pipeline step refused its input or failed; the reason is the step's own one line.

    Attributes:
        step: the layout name of the step.
        reason: the step's diagnostic (names the artifact, what was expected and what was found).
        exit_code: the step's exit code (1 refused, 2 input error, 3 service).
    """

    def __init__(self, step: str, reason: str, exit_code: int) -> None:
        super().__init__(f"{step}: {reason}")
        self.step, self.reason = step, reason
        self.exit_code = exit_code
