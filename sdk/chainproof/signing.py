"""Signers for links, layouts and models, chosen by a reference per step.

Example:
    >>> import tempfile
    >>> from chainproof.signing import init_keys, load_signer
    >>> ring = init_keys(tempfile.mkdtemp(), roles=["owner", "train_model"], development=True)
    >>> signer = load_signer(f"file:{ring.private_key_path('train_model')}")
    >>> signer.backend, signer.development, len(signer.keyid)
    ('file', True, 64)

The seam is :class:`StepSigner`: a securesystemslib ``Signer`` plus what an auditor
needs to know about it (backend, key id, whether it is a development key). Backends,
chosen by the reference:

- ``file:PATH`` (or a plain path): a local PEM key file;
- ``gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K/cryptoKeyVersions/N``: a
  Cloud KMS asymmetric signing key (EC P-256 / SHA-256); the private key never leaves
  KMS. An ``?endpoint=HOST:PORT`` query points the client elsewhere (tests);
- ``sigstore:?identity=EMAIL[&issuer=URL]``: Sigstore keyless signing with the step's
  own identity token (see :mod:`chainproof.sigstore_backend`).

The key type is ECDSA P-256, the one type that both in-toto and OpenSSF Model
Signing accept.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlparse

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from securesystemslib.signer import CryptoSigner, Key, Signature, Signer, SSlibKey

from chainproof.errors import InputError, KeyExists, SignatureError

__all__ = [
    "KEYRING_FILE",
    "KMS_SCHEME",
    "KeyRing",
    "KmsSigner",
    "StepSigner",
    "TrustStore",
    "add_roles",
    "TrustedKey",
    "init_keys",
    "kms_client",
    "kms_public_key",
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
        backend: ``file``, ``gcpkms`` or ``sigstore``.
        development: true for keys ``chainproof run`` made for a local trial.
        private_key_path: the PEM file for file-backed signers (model-signing needs a path).
    """

    signer: Signer
    reference: str
    backend: str
    development: bool = False
    private_key_path: Path | None = None

    @property
    def public_key(self) -> Any:
        """The public half as an in-toto/securesystemslib key (``SSlibKey``, or ``SigstoreKey``)."""
        return self.signer.public_key

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


#: The reference scheme of Cloud KMS signers.
KMS_SCHEME = "gcpkms"

_KMS_NAME = re.compile(
    r"projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/locations/[a-z0-9-]+/keyRings/[A-Za-z0-9_-]{1,63}"
    r"/cryptoKeys/[A-Za-z0-9_-]{1,63}/cryptoKeyVersions/[0-9]+"
)


def _parse_reference(reference: str) -> tuple[str, str]:
    if reference.startswith(f"{KMS_SCHEME}:"):
        return KMS_SCHEME, reference[len(KMS_SCHEME) + 1 :].lstrip("/")
    if reference.startswith("sigstore:"):
        return "sigstore", reference[len("sigstore:") :]
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
            f"signer reference {reference!r}: unknown backend {scheme!r} "
            "(supported: file:PATH, gcpkms://projects/.../cryptoKeyVersions/N, sigstore:?identity=EMAIL)"
        )
    return "file", reference


def load_signer(reference: str, *, public_key: Key | None = None, kms_client: Any = None) -> StepSigner:
    """Load the signer a reference names.

    Args:
        reference: ``file:PATH`` (percent-escapes decoded), ``file:///PATH``, or a plain
            path, naming an unencrypted PKCS#8 PEM key; ``gcpkms://KEY_VERSION_NAME[?endpoint=HOST:PORT]``;
            or ``sigstore:?identity=EMAIL[&issuer=URL]``.
        public_key: the public key pinned for this signer (the layout's), when known:
            a KMS signer then makes no ``GetPublicKey`` call and checks each signature
            against it; a Sigstore signer needs it to know the expected identity.
        kms_client: a ``KeyManagementServiceClient`` to use (default: one built from the
            reference, with Application Default Credentials).

    Returns:
        The signer. ``development`` is read from the ``keyring.json`` that
        ``keys init`` wrote beside the key, when there is one.

    Raises:
        InputError: the reference is malformed, or the key cannot be read or used.
        SignatureError: KMS refused to give the public key.

    Side effects:
        A KMS reference without ``public_key`` calls ``GetPublicKey`` once.
    """
    backend, location = _parse_reference(reference)
    if backend == KMS_SCHEME:
        return _load_kms_signer(reference, location, public_key=public_key, client=kms_client)
    if backend == "sigstore":
        from chainproof.sigstore_backend import load_sigstore_signer

        keyless: StepSigner = load_sigstore_signer(reference, location, public_key=public_key)
        return keyless
    path = Path(location)
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise InputError(f"signer {reference}: cannot read key file ({exc.strerror})") from exc
    try:
        private_key = serialization.load_pem_private_key(pem, password=None)
        signer = CryptoSigner(private_key)
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


def _crc32c(data: bytes) -> int:
    import google_crc32c

    return int(google_crc32c.value(data))


class KmsSigner(Signer):
    """A securesystemslib signer whose private key stays in Cloud KMS.

    The payload is hashed here (SHA-256) and KMS signs the digest
    (``AsymmetricSign``); the CRC32C integrity fields of the request and response
    are checked, and every signature is verified against the pinned public key
    before it is used, so a wrong key version fails here, not at the next step.
    """

    def __init__(self, key_name: str, public_key: SSlibKey, *, client: Any) -> None:
        """Wrap a KMS key version.

        Args:
            key_name: ``projects/.../cryptoKeyVersions/N``.
            public_key: its pinned public key (ECDSA P-256).
            client: a ``google.cloud.kms.KeyManagementServiceClient``.
        """
        self.key_name = key_name
        self._public_key = public_key
        self._client = client

    @property
    def public_key(self) -> SSlibKey:
        """The pinned public key."""
        return self._public_key

    @classmethod
    def from_priv_key_uri(cls, priv_key_uri: str, public_key: Key, secrets_handler: Any = None) -> KmsSigner:
        """Not used: chainproof loads KMS signers with :func:`load_signer`."""
        raise NotImplementedError("use chainproof.signing.load_signer")

    def sign_digest(self, digest: bytes) -> bytes:
        """Have KMS sign a SHA-256 digest; return the DER-encoded ECDSA signature.

        Args:
            digest: 32 bytes.

        Returns:
            The signature as KMS returned it (DER).

        Raises:
            SignatureError: KMS refused, or the response failed an integrity check.

        Side effects:
            One ``AsymmetricSign`` call.
        """
        from google.api_core import exceptions as api_exceptions
        from google.cloud import kms

        request = kms.AsymmetricSignRequest(
            name=self.key_name, digest={"sha256": digest}, digest_crc32c=_crc32c(digest)
        )
        try:
            response = self._client.asymmetric_sign(request=request)
        except api_exceptions.GoogleAPICallError as exc:
            # The status message names the key and the reason, never a credential.
            raise SignatureError(f"{KMS_SCHEME}://{self.key_name}: AsymmetricSign failed: {exc.message}") from None
        if not response.verified_digest_crc32c or response.name != self.key_name:
            raise SignatureError(f"{KMS_SCHEME}://{self.key_name}: the request was corrupted in transit")
        if response.signature_crc32c != _crc32c(response.signature):
            raise SignatureError(f"{KMS_SCHEME}://{self.key_name}: the response was corrupted in transit")
        return bytes(response.signature)

    def sign(self, payload: bytes) -> Signature:
        """Sign a payload (hash here, sign in KMS) and check the signature against the pinned key.

        Raises:
            SignatureError: KMS failed, or the key version is not the pinned key.
        """
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes

        der = self.sign_digest(hashlib.sha256(payload).digest())
        pinned = self._public_key._crypto_key()
        try:
            if not isinstance(pinned, ec.EllipticCurvePublicKey):  # KMS signers are EC P-256 keys
                raise InvalidSignature
            pinned.verify(der, payload, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise SignatureError(
                f"{KMS_SCHEME}://{self.key_name}: signature does not verify with the pinned key "
                f"{str(self._public_key.keyid)[:16]}: the key version is not the one the layout pins"
            ) from None
        return Signature(self._public_key.keyid, der.hex())


def kms_client(endpoint: str | None = None, *, credentials: Any = None) -> Any:
    """Build a Cloud KMS client.

    Args:
        endpoint: ``HOST:PORT`` of the KMS API (default: Google's).
        credentials: google-auth credentials (default: Application Default Credentials).

    Returns:
        A ``google.cloud.kms.KeyManagementServiceClient`` (gRPC over TLS).
    """
    from google.cloud import kms

    options = {"api_endpoint": endpoint} if endpoint else None
    return kms.KeyManagementServiceClient(credentials=credentials, client_options=options)


def kms_public_key(client: Any, key_name: str) -> SSlibKey:
    """Fetch a KMS key version's public key (``GetPublicKey``) as a securesystemslib key.

    Args:
        client: a ``KeyManagementServiceClient``.
        key_name: ``projects/.../cryptoKeyVersions/N``.

    Returns:
        The ECDSA P-256 public key.

    Raises:
        InputError: the key is not an EC P-256 / SHA-256 signing key.
        SignatureError: KMS refused the call, or the response failed its integrity check.

    Side effects:
        One ``GetPublicKey`` call.
    """
    from google.api_core import exceptions as api_exceptions
    from google.cloud import kms

    try:
        response = client.get_public_key(request=kms.GetPublicKeyRequest(name=key_name))
    except api_exceptions.GoogleAPICallError as exc:
        raise SignatureError(f"{KMS_SCHEME}://{key_name}: GetPublicKey failed: {exc.message}") from None
    algorithm = kms.CryptoKeyVersion.CryptoKeyVersionAlgorithm.EC_SIGN_P256_SHA256
    if response.algorithm != algorithm:
        raise InputError(
            f"{KMS_SCHEME}://{key_name}: algorithm {response.algorithm.name}; chainproof needs "
            "EC_SIGN_P256_SHA256 (the one type in-toto and OpenSSF Model Signing both accept)"
        )
    if response.pem_crc32c != _crc32c(response.pem.encode()):
        raise SignatureError(f"{KMS_SCHEME}://{key_name}: public key corrupted in transit")
    return public_key_from_pem(response.pem, what=f"{KMS_SCHEME}://{key_name}")


def _load_kms_signer(reference: str, location: str, *, public_key: Key | None, client: Any) -> StepSigner:
    path, _, query = location.partition("?")
    params = parse_qs(query, keep_blank_values=True) if query else {}
    unknown = sorted(set(params) - {"endpoint"})
    if not _KMS_NAME.fullmatch(path) or unknown:
        raise InputError(
            f"signer reference {reference!r}: expected gcpkms://projects/P/locations/L/keyRings/R/"
            "cryptoKeys/K/cryptoKeyVersions/N[?endpoint=HOST:PORT]"
        )
    endpoint = params.get("endpoint", [""])[-1] or None
    if client is None:
        client = kms_client(endpoint)
    if public_key is None:
        public_key = kms_public_key(client, path)
    if not isinstance(public_key, SSlibKey) or public_key.scheme != "ecdsa-sha2-nistp256":
        raise InputError(f"signer {reference}: the pinned key is not an ECDSA P-256 key")
    return StepSigner(signer=KmsSigner(path, public_key, client=client), reference=reference, backend=KMS_SCHEME)


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
    try:
        base.mkdir(parents=True, exist_ok=True)
        os.chmod(base, 0o700)
    except OSError as exc:
        raise InputError(f"{base}: cannot create the key folder ({exc.strerror})") from exc
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


def add_roles(ring: KeyRing, roles: Iterable[str]) -> KeyRing:
    """Add keys for new roles (the steps of another pipeline) to an existing key ring.

    Existing keys are never replaced; the manifest is rewritten atomically.

    Args:
        ring: the key ring.
        roles: the roles that have no key yet.

    Returns:
        The extended key ring.

    Raises:
        KeyExists: a key file for one of the roles exists already; nothing is written then.
    """
    new = [r for r in dict.fromkeys(roles) if r not in ring.roles]
    if not new:
        return ring
    extra = init_keys(ring.directory / f".new-{os.getpid()}", roles=new, development=ring.development)
    try:
        for role in new:
            for suffix in (".pem", ".pub"):
                if (ring.directory / f"{role}{suffix}").exists():
                    raise KeyExists(str(ring.directory / f"{role}{suffix}"))
        for role in new:
            for suffix in (".pem", ".pub"):
                os.replace(extra.directory / f"{role}{suffix}", ring.directory / f"{role}{suffix}")
        manifest = json.loads((ring.directory / KEYRING_FILE).read_text())
        for role in new:
            manifest["keys"][role] = {"keyid": extra.roles[role], "private": f"{role}.pem", "public": f"{role}.pub"}
        tmp = ring.directory / f".{KEYRING_FILE}.part"
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
        os.replace(tmp, ring.directory / KEYRING_FILE)
    finally:
        import shutil

        shutil.rmtree(extra.directory, ignore_errors=True)
    return KeyRing(directory=ring.directory, roles={**ring.roles, **extra.roles}, development=ring.development)
@dataclass(frozen=True)
class TrustedKey:
    """One trusted owner key and where its trust came from.

    Attributes:
        keyid: the securesystemslib key id (recomputed from the key itself).
        key: the public key.
        path: the ``KEYID.pub`` file.
        source: what added it (``chainproof trust add owner.pub``, ``chainproof run: key created now``);
            ``unrecorded`` for a key file that was put there by hand.
        added_by: who added it (``user@host``), or empty when unrecorded.
        added_at: when (UTC, ``YYYY-MM-DDTHH:MM:SSZ``), or empty when unrecorded.
        development: whether the key is a development key (made by ``chainproof run``).
    """

    keyid: str
    key: SSlibKey
    path: Path
    source: str
    added_by: str = ""
    added_at: str = ""
    development: bool = False

    def describe(self) -> str:
        """Return one line saying where this key's trust came from."""
        if self.source == "unrecorded":
            return f"key {self.keyid[:16]} trusted by a file in the trust store ({self.path}), with no record of who added it"
        dev = ", development key" if self.development else ""
        return f"key {self.keyid[:16]} trusted since {self.added_at} by {self.added_by} ({self.source}{dev})"

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form (``trust list --format json``, reports)."""
        return {
            "keyid": self.keyid,
            "path": str(self.path),
            "source": self.source,
            "added_by": self.added_by,
            "added_at": self.added_at,
            "development": self.development,
        }


class TrustStore:
    """A folder of trusted layout-owner public keys, one ``KEYID.pub`` file each.

    The owner key is the root of trust: it comes from here (or from the caller),
    never from the bundle being verified. Nothing is added as a side effect: each
    key is added by an explicit act (``chainproof trust add``, ``keys init``, or a
    ``chainproof run`` that created the key in that invocation), and a
    ``KEYID.json`` record beside the key says which act, by whom and when.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        """Open (not create) a trust store folder.

        Args:
            directory: the folder; it may not exist yet.
        """
        self.directory = Path(directory)

    def add(
        self, key: SSlibKey, *, source: str = "unspecified", added_by: str = "", development: bool = False
    ) -> Path:
        """Trust an owner key, recording where the trust came from.

        Args:
            key: the owner's public key.
            source: what adds it (a command line, "chainproof run: key created now").
            added_by: who adds it (``user@host``; default: the local user).
            development: the key is a development key.

        Returns:
            The file it was stored in.

        Side effects:
            Writes ``KEYID.pub`` and ``KEYID.json`` in the folder (an existing record is kept).
        """
        from chainproof.identity import local_principal

        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{key.keyid}.pub"
        record = self.directory / f"{key.keyid}.json"
        if not record.exists():
            doc = {
                "keyid": str(key.keyid),
                "source": source,
                "added_by": added_by or local_principal().name,
                "added_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "development": development,
            }
            tmp = record.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
            os.replace(tmp, record)
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_text(public_key_pem(key))
            os.replace(tmp, path)
        return path

    def remove(self, keyid: str) -> TrustedKey:
        """Stop trusting a key.

        Args:
            keyid: the full key id, or a unique prefix of at least 8 hex characters.

        Returns:
            The key that was removed.

        Raises:
            InputError: no trusted key has that id, or the prefix is ambiguous or too short.
        """
        entry = self.find(keyid)
        entry.path.unlink()
        (self.directory / f"{entry.keyid}.json").unlink(missing_ok=True)
        return entry

    def find(self, keyid: str) -> TrustedKey:
        """Return the trusted key with this id (or unique prefix of 8+ hex characters).

        Raises:
            InputError: no such key, an ambiguous prefix, or a prefix under 8 characters.
        """
        if not re.fullmatch(r"[0-9a-f]{8,64}", keyid):
            raise InputError(f"key id {keyid!r}: expected 8 to 64 lowercase hex characters")
        matches = [e for e in self.entries() if e.keyid.startswith(keyid)]
        if not matches:
            raise InputError(f"key id {keyid}: not in the trust store {self.directory}")
        if len(matches) > 1:
            raise InputError(f"key id {keyid}: ambiguous, matches {', '.join(m.keyid[:16] for m in matches)}")
        return matches[0]

    def entries(self) -> list[TrustedKey]:
        """Return every trusted key with its trust record (keys whose file name lies are skipped)."""
        found: list[TrustedKey] = []
        if not self.directory.is_dir():
            return found
        for path in sorted(self.directory.glob("*.pub")):
            key = load_public_key(path)
            # The file name is a hint; the key id is recomputed from the key itself.
            if path.stem != key.keyid:
                continue
            doc: dict[str, Any] = {}
            record = self.directory / f"{key.keyid}.json"
            if record.is_file():
                try:
                    loaded = json.loads(record.read_text())
                    doc = loaded if isinstance(loaded, dict) and loaded.get("keyid") == key.keyid else {}
                except ValueError:
                    doc = {}
            found.append(
                TrustedKey(
                    keyid=str(key.keyid),
                    key=key,
                    path=path,
                    source=str(doc.get("source") or "unrecorded"),
                    added_by=str(doc.get("added_by", "")),
                    added_at=str(doc.get("added_at", "")),
                    development=bool(doc.get("development", False)),
                )
            )
        return found

    def keys(self) -> dict[str, SSlibKey]:
        """Return the trusted keys by key id (keys whose file name lies are skipped)."""
        return {e.keyid: e.key for e in self.entries()}
