"""Model registries: where verified models and their evidence are recorded.

Example:
    >>> import tempfile
    >>> from chainproof.registry import LocalModelRegistry
    >>> reg = LocalModelRegistry(tempfile.mkdtemp())
    >>> pending = reg.prepare("fraud")
    >>> pending.reference
    'local://fraud@1'

The seam is :class:`ModelRegistry`. A registry only accepts a model together with
the :class:`~chainproof.verify.VerificationResult` of its chain, and re-hashes the
model it is about to store: what it registers is what was verified, not what was
there when verification started. Each version records the model's location and
digest and the evidence bundle's location and digest.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from chainproof._version import __version__
from chainproof.attest import utc_now, write_atomic
from chainproof.digests import digest_tree, manifest_digest
from chainproof.errors import InputError, RegistryError
from chainproof.verify import VerificationResult, check_artifacts

__all__ = ["LocalModelRegistry", "ModelRegistry", "PendingVersion", "RegisteredModel", "parse_local_reference"]

_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
_VERSION_FILE = "version.json"


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

    def prepare(self, name: str) -> PendingVersion:
        """Reserve the next version of ``name``."""
        ...

    def commit(
        self, pending: PendingVersion, *, model_dir: Path, bundle_dir: Path, verified: VerificationResult
    ) -> RegisteredModel:
        """Store the verified model and its bundle under the reserved version."""
        ...

    def resolve(self, reference: str) -> RegisteredModel:
        """Return a registered version by reference."""
        ...


def parse_local_reference(reference: str) -> tuple[str, str]:
    """Split ``local://NAME@VERSION`` into (name, version).

    Raises:
        InputError: not a local registry reference.
    """
    m = re.fullmatch(r"local://([^@/]+)@([0-9]+)", reference)
    if not m:
        raise InputError(f"{reference}: expected local://NAME@VERSION")
    return m.group(1), m.group(2)


class LocalModelRegistry:
    """A registry in a local folder: ``models/NAME/VERSION/{model,bundle,version.json}``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        """Open a registry folder (created on first registration).

        Args:
            root: the registry folder.
        """
        self.root = Path(root).absolute()

    def _model_root(self, name: str) -> Path:
        if not _NAME.fullmatch(name):
            raise InputError(
                f"model name {name!r}: use 1-63 lowercase letters, digits, '-', '_' or '.', starting with a letter or digit"
            )
        return self.root / "models" / name

    def _versions(self, name: str) -> list[Path]:
        base = self._model_root(name)
        if not base.is_dir():
            return []
        return sorted((p for p in base.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))

    def find(self, name: str, *, model_sha256: str) -> RegisteredModel | None:
        """Return the version of ``name`` that holds this model digest, if any.

        Args:
            name: the model name.
            model_sha256: the manifest digest of the model files.

        Returns:
            The matching version, or ``None``.
        """
        for path in self._versions(name):
            entry = self._load(path / _VERSION_FILE)
            if entry.model_sha256 == model_sha256:
                return entry
        return None

    def prepare(self, name: str) -> PendingVersion:
        """Reserve the next version of ``name``.

        Args:
            name: the model name.

        Returns:
            The reserved version and its future locations.
        """
        versions = self._versions(name)
        number = str(int(versions[-1].name) + 1 if versions else 1)
        target = self._model_root(name) / number
        return PendingVersion(
            name=name,
            version=number,
            reference=f"local://{name}@{number}",
            model_location=str(target / "model"),
            bundle_location=str(target / "bundle"),
        )

    def commit(
        self, pending: PendingVersion, *, model_dir: Path, bundle_dir: Path, verified: VerificationResult
    ) -> RegisteredModel:
        """Copy the verified model and bundle in, and publish the version atomically.

        Args:
            pending: the reserved version.
            model_dir: the model folder that was verified.
            bundle_dir: its evidence bundle.
            verified: the verification result of the chain.

        Returns:
            The registered version.

        Raises:
            VerificationError: the model changed since it was verified.
            RegistryError: the version was taken meanwhile.
        """
        base = self._model_root(pending.name)
        base.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=base, prefix=f".staging-{pending.version}-"))
        try:
            shutil.copytree(model_dir, staging / "model")
            shutil.copytree(bundle_dir, staging / "bundle")
            # Re-hash what is about to be published: time of check == time of use.
            stored = digest_tree(staging / "model", prefix="model")
            check_artifacts(verified.model_files, stored, producer="the verified chain", what="model")
            entry = RegisteredModel(
                reference=pending.reference,
                name=pending.name,
                version=pending.version,
                model_location=pending.model_location,
                model_sha256=manifest_digest(stored),
                model_files=stored,
                bundle_location=pending.bundle_location,
                bundle_sha256=manifest_digest(digest_tree(staging / "bundle")),
                created=utc_now(),
            )
            write_atomic(staging / _VERSION_FILE, (json.dumps(entry.to_dict(), indent=2) + "\n").encode())
            try:
                os.rename(staging, base / pending.version)
            except OSError as exc:
                raise RegistryError(f"{pending.reference}: version already exists") from exc
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return entry

    def resolve(self, reference: str) -> RegisteredModel:
        """Return a registered version by ``local://NAME@VERSION``.

        Raises:
            RegistryError: no such version.
        """
        name, version = parse_local_reference(reference)
        path = self._model_root(name) / version / _VERSION_FILE
        if not path.is_file():
            raise RegistryError(f"{reference}: not found in {self.root}")
        return self._load(path)

    @staticmethod
    def _load(path: Path) -> RegisteredModel:
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise RegistryError(f"{path}: unreadable registry entry") from exc
        if not isinstance(doc, dict):
            raise RegistryError(f"{path}: malformed registry entry")
        return RegisteredModel.from_dict(doc)
