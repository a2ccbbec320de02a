"""What the verifier reads and returns: file names, limits, the verified steps and the result."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chainproof.digests import manifest_digest
from chainproof.errors import (
    ArtifactRefused,
)

__all__ = ['BUNDLED_PREFIXES', 'BUNDLE_INDEX', 'CARD_PRODUCT', 'KEYS_DIR', 'LAYOUT_FILE', 'LINKS_DIR', 'SLSA_PROVENANCE', 'SLSA_VSA', 'StepRecord', 'VerificationResult', 'VerifyOptions', '_NOT_EVIDENCE', '_first_line', '_read_limited', '_sha256_bytes']


LAYOUT_FILE = "root.layout"


LINKS_DIR = "links"


KEYS_DIR = "keys"


BUNDLE_INDEX = "bundle.json"


#: Products that travel inside the evidence bundle (the rest, the dataset and
#: the model, live at their own location and are checked there).
BUNDLED_PREFIXES = ("run/", "attestations/", "reports/", "metrics/", "registry/")


_NOT_EVIDENCE = {LAYOUT_FILE, BUNDLE_INDEX}


SLSA_PROVENANCE = "https://slsa.dev/provenance/v1"


#: The gate's signed model card (chainproof.card), when the chain carries one.
CARD_PRODUCT = "attestations/model-card.json"


SLSA_VSA = "https://slsa.dev/verification_summary/v1"


@dataclass(frozen=True)
class VerifyOptions:
    """Limits the verifier enforces before it parses anything.

    Attributes:
        max_links: the most link files a bundle may hold.
        max_metadata_bytes: the largest layout or link file accepted.
    """

    max_links: int = 64
    max_metadata_bytes: int = 4_000_000


@dataclass(frozen=True)
class StepRecord:
    """One verified step, as its link records it.

    Attributes:
        name: the step name.
        keyid: the functionary key that signed the link.
        materials: logical name to SHA-256.
        products: logical name to SHA-256.
        environment: the chainproof section of the link's environment (principal,
            signer, version, parameters).
    """

    name: str
    keyid: str
    materials: dict[str, str]
    products: dict[str, str]
    environment: dict[str, Any]

    @property
    def principal(self) -> str:
        """The principal name the step ran as, or ``unknown``."""
        p = self.environment.get("principal") or {}
        return str(p.get("name", "unknown")) if isinstance(p, dict) else "unknown"


@dataclass(frozen=True)
class VerificationResult:
    """What was verified, and how.

    Attributes:
        layout_sha256: digest of the verified ``root.layout``.
        owner_keyid: the trusted key that signed the layout (empty for a digest-pinned prefix check).
        steps: the verified steps in layout order.
        model_files: model file names (``model/...``) to SHA-256, as delivered and verified.
        checks: every check that passed, in order, numbered as in ``docs/verification.md``.
        attestations: which model attestations verified (``oms``, ``slsa``, ``vsa``) and their files.
    """

    layout_sha256: str
    owner_keyid: str
    steps: list[StepRecord]
    model_files: dict[str, str] = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)
    attestations: dict[str, str] = field(default_factory=dict)

    @property
    def model_sha256(self) -> str:
        """One digest for the whole model: the manifest digest of its files."""
        return manifest_digest(self.model_files)

    @property
    def development_key_steps(self) -> list[str]:
        """The steps whose link says they were signed with a development key."""
        out = []
        for record in self.steps:
            signer = record.environment.get("signer") or {}
            if isinstance(signer, dict) and signer.get("development"):
                out.append(record.name)
        return out

    def step(self, name: str) -> StepRecord:
        """Return a verified step by name.

        Raises:
            KeyError: no such step.
        """
        for record in self.steps:
            if record.name == name:
                return record
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form (``--format json``)."""
        return {
            "verified": True,
            "layout_sha256": self.layout_sha256,
            "owner_keyid": self.owner_keyid,
            "model_sha256": self.model_sha256 if self.model_files else None,
            "model_files": self.model_files,
            "steps": [
                {
                    "name": s.name,
                    "keyid": s.keyid,
                    "principal": s.environment.get("principal"),
                    "signer": s.environment.get("signer"),
                    "materials": s.materials,
                    "products": s.products,
                }
                for s in self.steps
            ],
            "checks": self.checks,
            "attestations": self.attestations,
            "development_keys": bool(self.development_key_steps),
            "development_key_steps": self.development_key_steps,
        }


def _read_limited(path: Path, limit: int, what: str) -> bytes:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ArtifactRefused(what, f"missing ({exc.strerror})") from exc
    if size > limit:
        raise ArtifactRefused(what, f"{size} bytes is over the {limit}-byte limit")
    return path.read_bytes()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
