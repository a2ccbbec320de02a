"""The local registry: versions in a folder (``local://NAME@VERSION``)."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path

from chainproof.attest import utc_now, write_atomic
from chainproof.digests import check_artifacts, digest_tree, manifest_digest
from chainproof.errors import InputError, RegistryError
from chainproof.registry._protocol import PendingVersion, RegisteredModel, VerifiedChain

__all__ = ["LocalModelRegistry", "parse_local_reference"]

_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
_VERSION_FILE = "version.json"
#: The local registry's identity record (a random id made when the registry is created).
_IDENTITY_FILE = "registry.json"


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

    def identity(self, *, create: bool = False) -> dict[str, str]:
        """Return this registry's identity: a random id recorded when the registry was created.

        Args:
            create: create the identity record if the registry has none yet (registration does).

        Returns:
            ``{"kind": "local", "registry_id": HEX}``; ``registry_id`` is empty for a folder
            that was never a registry.

        Side effects:
            With ``create``, writes ``registry.json`` in the registry folder once.
        """
        path = self.root / _IDENTITY_FILE
        if not path.is_file() and create:
            self.root.mkdir(parents=True, exist_ok=True)
            doc = {"kind": "local", "registry_id": uuid.uuid4().hex, "created": utc_now()}
            tmp = self.root / f".{_IDENTITY_FILE}.{uuid.uuid4().hex[:8]}"
            tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
            try:
                # Never replace an identity that appeared meanwhile.
                os.link(tmp, path)
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        try:
            doc = json.loads(path.read_text()) if path.is_file() else {}
        except (OSError, ValueError) as exc:
            raise RegistryError(f"{path}: unreadable registry identity") from exc
        return {"kind": "local", "registry_id": str(doc.get("registry_id", "")) if isinstance(doc, dict) else ""}

    def identity_for(self, reference: str) -> dict[str, str]:
        """Return the identity a registration of ``reference`` in this registry attests."""
        return self.identity()

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

    def prepare(self, name: str, *, model_sha256: str = "") -> PendingVersion:
        """Reserve the next version of ``name``.

        Args:
            name: the model name.
            model_sha256: the model's manifest digest (unused: local versions are numbered folders).

        Returns:
            The reserved version and its future locations.
        """
        self.identity(create=True)
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
        self, pending: PendingVersion, *, model_dir: Path, bundle_dir: Path, verified: VerifiedChain
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
                if (base / pending.version).exists():
                    raise RegistryError(f"{pending.reference}: version already exists") from exc
                raise RegistryError(f"{pending.reference}: cannot publish the version ({exc.strerror})") from exc
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
