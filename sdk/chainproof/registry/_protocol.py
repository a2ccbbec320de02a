"""The registry seam: what every backend stores and returns, and what it is given.

A registry never imports the verifier: it is handed the verified chain (anything shaped like
:class:`VerifiedChain`, in practice :class:`chainproof.verify.VerificationResult`) and re-hashes
the model it stores against the chain's model files.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from chainproof._version import __version__
from chainproof.errors import RegistryError

__all__ = ["ModelRegistry", "PendingVersion", "RegisteredModel", "VerifiedChain", "VerifiedStep"]


class VerifiedStep(Protocol):
    """One verified step, as a registry reads it."""

    @property
    def products(self) -> Mapping[str, str]: ...

    @property
    def environment(self) -> Mapping[str, Any]: ...


class VerifiedChain(Protocol):
    """What a registry needs of a verified chain (:class:`chainproof.verify.VerificationResult`)."""

    @property
    def model_files(self) -> Mapping[str, str]: ...

    @property
    def steps(self) -> Iterable[VerifiedStep]: ...


@dataclass(frozen=True)
class PendingVersion:
    """A version number reserved for a registration that is being prepared.

    Attributes:
        name: the model name.
        version: the version number (as text).
        reference: ``local://NAME@VERSION`` (or the backend's equivalent).
        model_location: where the model will be stored.
        bundle_location: where the evidence bundle will be stored.
    """

    name: str
    version: str
    reference: str
    model_location: str
    bundle_location: str


@dataclass(frozen=True)
class RegisteredModel:
    """One registered model version.

    Attributes:
        reference: ``local://NAME@VERSION``.
        name: the model name.
        version: the version.
        model_location: the model folder.
        model_sha256: manifest digest of the model files.
        model_files: logical name to SHA-256 of each model file.
        bundle_location: the evidence bundle folder.
        bundle_sha256: manifest digest of the bundle files.
        created: registration time (UTC).
    """

    reference: str
    name: str
    version: str
    model_location: str
    model_sha256: str
    model_files: dict[str, str]
    bundle_location: str
    bundle_sha256: str
    created: str

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form stored as ``version.json``."""
        return {
            "reference": self.reference,
            "name": self.name,
            "version": self.version,
            "created": self.created,
            "chainproof_version": __version__,
            "model": {"location": self.model_location, "sha256": self.model_sha256, "files": self.model_files},
            "bundle": {"location": self.bundle_location, "sha256": self.bundle_sha256},
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> RegisteredModel:
        """Build from the stored JSON form.

        Raises:
            RegistryError: a field is missing.
        """
        try:
            return cls(
                reference=str(doc["reference"]),
                name=str(doc["name"]),
                version=str(doc["version"]),
                model_location=str(doc["model"]["location"]),
                model_sha256=str(doc["model"]["sha256"]),
                model_files={str(k): str(v) for k, v in doc["model"]["files"].items()},
                bundle_location=str(doc["bundle"]["location"]),
                bundle_sha256=str(doc["bundle"]["sha256"]),
                created=str(doc["created"]),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise RegistryError(f"registry entry: malformed ({exc!r} missing or wrong type)") from exc


class ModelRegistry(Protocol):
    """Where verified models are registered."""

    def find(self, name: str, *, model_sha256: str) -> RegisteredModel | None:
        """Return the version of ``name`` that holds this model digest, if any."""
        ...

    def prepare(self, name: str, *, model_sha256: str = "") -> PendingVersion:
        """Reserve the next version of ``name`` (for the model with this digest)."""
        ...

    def commit(
        self, pending: PendingVersion, *, model_dir: Path, bundle_dir: Path, verified: VerifiedChain
    ) -> RegisteredModel:
        """Store the verified model and its bundle under the reserved version."""
        ...

    def resolve(self, reference: str) -> RegisteredModel:
        """Return a registered version by reference."""
        ...
