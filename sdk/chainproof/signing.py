"""Signers for links, layouts and models, chosen by a reference per step.

Example:
    >>> import tempfile
    >>> from chainproof.signing import init_keys, load_signer
    >>> ring = init_keys(tempfile.mkdtemp(), roles=["owner", "train_model"], development=True)
    >>> signer = load_signer(f"file:{ring.private_key_path('train_model')}")
    >>> signer.backend, signer.development, len(signer.keyid)
    ('file', True, 64)

The seam is :class:`StepSigner`: a securesystemslib ``Signer`` plus what an auditor
needs to know about it (backend, key id, whether it is a development key). The
first backend is a local PEM key file (``file:PATH``). The default key type is
ECDSA P-256, the one type that both in-toto and OpenSSF Model Signing accept.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlparse

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from securesystemslib.signer import CryptoSigner, Signer, SSlibKey

from chainproof.errors import InputError, KeyExists

__all__ = [
    "KEYRING_FILE",
    "KeyRing",
    "StepSigner",
    "TrustStore",
    "init_keys",
    "load_public_key",
    "load_signer",
    "public_key_pem",
]

#: The manifest ``keys init`` writes beside the keys it creates.
KEYRING_FILE = "keyring.json"


@dataclass(frozen=True)
class StepSigner:
    """A signer and the facts about it that go into attestations.

    Attributes:
        signer: the securesystemslib signer that makes signatures.
        reference: the non-secret reference it was loaded from (``file:keys/train.pem``).
        backend: ``file`` (more backends plug in here).
        development: true for keys ``chainproof run`` made for a local trial.
        private_key_path: the PEM file for file-backed signers (model-signing needs a path).
    """

    signer: Signer
    reference: str
    backend: str
    development: bool = False
    private_key_path: Path | None = None

    @property
    def public_key(self) -> SSlibKey:
        """The public half as an in-toto/securesystemslib key."""
        key = self.signer.public_key
        assert isinstance(key, SSlibKey)
        return key

    @property
    def keyid(self) -> str:
        """The securesystemslib key id (sha256 of the canonical public key)."""
        return str(self.public_key.keyid)

    def describe(self) -> dict[str, Any]:
        """Return what an attestation records about this signer (never key material)."""
        return {
            "backend": self.backend,
            "keyid": self.keyid,
            "reference": self.reference,
            "development": self.development,
        }


def public_key_pem(key: SSlibKey) -> str:
    """Return the SubjectPublicKeyInfo PEM of a securesystemslib key.

    Args:
        key: an ECDSA, RSA or Ed25519 key.

    Returns:
        PEM text.
    """
    crypto_key = key._crypto_key()
    return crypto_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def load_public_key(path: str | os.PathLike[str]) -> SSlibKey:
    """Load a PEM public key file as a securesystemslib key.

    Args:
        path: a SubjectPublicKeyInfo PEM file.

    Returns:
        The key, with its securesystemslib key id.

    Raises:
        InputError: the file is missing or holds no usable public key.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read public key ({exc.strerror})") from exc
    return public_key_from_pem(data, what=str(path))


def public_key_from_pem(data: bytes | str, *, what: str) -> SSlibKey:
    """Parse PEM public key bytes as a securesystemslib key.

    Args:
        data: PEM text.
        what: the name the error reports.

    Returns:
        The key.

    Raises:
        InputError: not a PEM public key of a supported type.
    """
    raw = data.encode() if isinstance(data, str) else data
    try:
        crypto_key = serialization.load_pem_public_key(raw)
        return SSlibKey.from_crypto(crypto_key)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{what}: not a supported PEM public key ({exc})") from exc


def _parse_reference(reference: str) -> tuple[str, str]:
    if reference.startswith("file://"):
        parsed = urlparse(reference)
        if parsed.netloc not in ("", "localhost"):
            raise InputError(f"signer reference {reference!r}: file:// must name a local path")
        return "file", unquote(parsed.path)
    if reference.startswith("file:"):
        # file:PATH is read like a URI path: percent-escapes are decoded.
        return "file", unquote(reference[len("file:") :])
    scheme = reference.split(":", 1)[0] if ":" in reference else ""
    if scheme and len(scheme) > 1:
        raise InputError(
            f"signer reference {reference!r}: unknown backend {scheme!r} (supported: file:PATH)"
        )
    return "file", reference


def load_signer(reference: str) -> StepSigner:
    """Load the signer a reference names.

    Args:
        reference: ``file:PATH`` (percent-escapes decoded), ``file:///PATH``, or a plain
            path, naming an unencrypted PKCS#8 PEM key.

    Returns:
        The signer. ``development`` is read from the ``keyring.json`` that
        ``keys init`` wrote beside the key, when there is one.

    Raises:
        InputError: the reference is malformed, or the key cannot be read or used.
    """
    backend, location = _parse_reference(reference)
    path = Path(location)
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise InputError(f"signer {reference}: cannot read key file ({exc.strerror})") from exc
    try:
        private_key = serialization.load_pem_private_key(pem, password=None)
        signer = CryptoSigner(private_key)  # type: ignore[arg-type]
    except (ValueError, TypeError) as exc:
        # Never echo the key file's content: only say what kind of problem it is.
        raise InputError(
            f"signer {reference}: not an unencrypted PEM private key of a supported type"
        ) from exc
    development = False
    ring_file = path.parent / KEYRING_FILE
    if ring_file.is_file():
        try:
            development = bool(json.loads(ring_file.read_text()).get("development", False))
        except (ValueError, AttributeError) as exc:
            raise InputError(f"{ring_file}: malformed key ring manifest") from exc
    return StepSigner(
        signer=signer,
        reference=reference,
        backend=backend,
        development=development,
        private_key_path=path,
    )


@dataclass(frozen=True)
class KeyRing:
    """The keys ``keys init`` made: one owner key and one key per pipeline step.

    Attributes:
        directory: where the keys are.
        roles: role name (``owner`` or a step name) to key id.
        development: whether these are development keys.
    """

    directory: Path
    roles: dict[str, str]
    development: bool

    def private_key_path(self, role: str) -> Path:
        """Return the private key file of a role."""
        return self.directory / f"{role}.pem"

    def public_key_path(self, role: str) -> Path:
        """Return the public key file of a role."""
        return self.directory / f"{role}.pub"

    def signer_reference(self, role: str) -> str:
        """Return the ``file:`` signer reference of a role (its path percent-encoded)."""
        return "file:" + quote(str(self.private_key_path(role).absolute()))

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> KeyRing:
        """Load the manifest of a key folder.

        Args:
            directory: a folder ``init_keys`` wrote.

        Returns:
            The key ring.

        Raises:
            InputError: no manifest, or a malformed one.
        """
        base = Path(directory)
        try:
            doc = json.loads((base / KEYRING_FILE).read_text())
            roles = {str(k): str(v["keyid"]) for k, v in doc["keys"].items()}
            return cls(directory=base, roles=roles, development=bool(doc["development"]))
        except OSError as exc:
            raise InputError(f"{base / KEYRING_FILE}: cannot read key ring ({exc.strerror})") from exc
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InputError(f"{base / KEYRING_FILE}: malformed key ring manifest") from exc


def _write_new(path: Path, data: bytes, mode: int) -> None:
    # O_EXCL: never replace a key that appeared since we checked.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def init_keys(
    directory: str | os.PathLike[str], *, roles: Iterable[str], development: bool = False
) -> KeyRing:
    """Create an ECDSA P-256 key pair per role (``owner`` plus one per step).

    Private keys are PKCS#8 PEM files with mode 0600; public keys are
    SubjectPublicKeyInfo PEM files. A ``keyring.json`` records each role's key id
    and whether the keys are development keys.

    Args:
        directory: the folder to create keys in (created if missing).
        roles: role names; ``owner`` signs layouts, the others sign links.
        development: mark the keys as development keys (recorded in every link).

    Returns:
        The new key ring.

    Raises:
        KeyExists: any of the files already exists; nothing is written then.
    """
    base = Path(directory)
    role_list = list(dict.fromkeys(roles))
    targets = [base / KEYRING_FILE]
    for role in role_list:
        targets += [base / f"{role}.pem", base / f"{role}.pub"]
    for target in targets:
        if target.exists():
            raise KeyExists(str(target))
    base.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o700)
    manifest: dict[str, Any] = {
        "version": 1,
        "development": development,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "keys": {},
    }
    roles_out: dict[str, str] = {}
    for role in role_list:
        private_key = ec.generate_private_key(ec.SECP256R1())
        _write_new(
            base / f"{role}.pem",
            private_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            0o600,
        )
        public_pem = private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        _write_new(base / f"{role}.pub", public_pem, 0o644)
        keyid = str(SSlibKey.from_crypto(private_key.public_key()).keyid)
        roles_out[role] = keyid
        manifest["keys"][role] = {"keyid": keyid, "private": f"{role}.pem", "public": f"{role}.pub"}
    _write_new(base / KEYRING_FILE, (json.dumps(manifest, indent=2) + "\n").encode(), 0o644)
    return KeyRing(directory=base, roles=roles_out, development=development)


class TrustStore:
    """A folder of trusted layout-owner public keys, one ``KEYID.pub`` file each.

    The owner key is the root of trust: it comes from here (or from the caller),
    never from the bundle being verified.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        """Open (not create) a trust store folder.

        Args:
            directory: the folder; it may not exist yet.
        """
        self.directory = Path(directory)

    def add(self, key: SSlibKey) -> Path:
        """Trust an owner key.

        Args:
            key: the owner's public key.

        Returns:
            The file it was stored in.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{key.keyid}.pub"
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_text(public_key_pem(key))
            os.replace(tmp, path)
        return path

    def keys(self) -> dict[str, SSlibKey]:
        """Return the trusted keys by key id (keys whose file name lies are skipped)."""
        found: dict[str, SSlibKey] = {}
        if not self.directory.is_dir():
            return found
        for path in sorted(self.directory.glob("*.pub")):
            key = load_public_key(path)
            # The file name is a hint; the key id is recomputed from the key itself.
            if path.stem == key.keyid:
                found[str(key.keyid)] = key
        return found
