"""Publisher signatures the way models are published: a key, a certificate chain, or Sigstore keyless.

Example:
    >>> from chainproof.publisher import PublisherPolicy
    >>> policy = PublisherPolicy.sigstore(identity="stefanb@us.ibm.com",
    ...                                   issuer="https://sigstore.verify.ibm.com/oauth2")
    >>> policy.kind
    'sigstore'
    >>> record = ingest("models/bert/", Path("released"), publisher=policy)  # doctest: +SKIP
    >>> record["publisher"]["identity"]  # doctest: +SKIP
    'stefanb@us.ibm.com'

An OpenSSF Model Signing signature (``model.sig``, a Sigstore bundle) is verified with
the ``model-signing`` library, **offline**:

- ``PublisherPolicy.key(PEM)``: signed with an EC private key (``model_signing sign key``);
- ``PublisherPolicy.certificate(leaf PEM, [CA PEM, ...])``: signed with a certificate
  (``model_signing sign certificate``); the chain in the signature must lead to one of the
  given CAs (never the operating system's store), and its leaf must be the given certificate;
- ``PublisherPolicy.sigstore(identity, issuer)``: keyless Sigstore; the certificate's
  identity and OIDC issuer must be the expected ones, against the trust root shipped in
  sigstore-python (``ClientTrustConfig.production(offline=True)``: no TUF refresh).

Files the signature does not cover are never released as "publisher-verified": unsigned
files must be named (``ignore``), and are then left out and recorded. :func:`ingest` is
``chainproof ingest``: fetch into quarantine, verify the pin or the signature, scan (read,
never loaded), and only then release into the destination folder.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chainproof.errors import ArtifactRefused, InputError, SignatureError

__all__ = ["PUBLISHER_KINDS", "PublisherPolicy", "ingest", "verify_publisher_signature"]

#: The kinds of publisher signature chainproof verifies.
PUBLISHER_KINDS = ("key", "certificate", "sigstore")

#: The signature file name model-signing writes inside (or beside) the model folder.
SIGNATURE_FILE = "model.sig"


def _pem_text(value: str, what: str) -> str:
    text = value.strip()
    if "-----BEGIN " not in text:
        raise InputError(f"{what}: expected PEM text (-----BEGIN ...), got {len(text)} characters without a PEM header")
    return text + "\n"


@dataclass(frozen=True)
class PublisherPolicy:
    """Who must have signed a model, and how.

    Build it with :meth:`key`, :meth:`certificate` or :meth:`sigstore`; ``steps.secure_ingest``
    and ``chainproof ingest`` take it.

    Attributes:
        kind: ``key``, ``certificate`` or ``sigstore``.
        public_key_pem: the publisher's EC public key (``key``).
        certificate_pem: the publisher's signing certificate (``certificate``).
        ca_pems: the CA certificates trusted to have issued it (``certificate``).
        identity: the expected certificate identity, e.g. an email (``sigstore``).
        issuer: the expected OIDC issuer URL (``sigstore``).
        ignore: relative file names in the source that the signature does not cover and
            that are left out (recorded, never released).
    """

    kind: str
    public_key_pem: str = ""
    certificate_pem: str = ""
    ca_pems: tuple[str, ...] = ()
    identity: str = ""
    issuer: str = ""
    ignore: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        """Validate the fields for the kind.

        Raises:
            InputError: a field the kind needs is missing or malformed.
        """
        if self.kind not in PUBLISHER_KINDS:
            raise InputError(f"publisher kind {self.kind!r}: expected one of {', '.join(PUBLISHER_KINDS)}")
        if self.kind == "key" and not self.public_key_pem.strip():
            raise InputError("publisher key: a public key PEM is required")
        if self.kind == "certificate":
            if not self.certificate_pem.strip():
                raise InputError("publisher certificate: the signing certificate PEM is required")
            if not self.ca_pems:
                # model-signing would fall back to the operating system's trust store.
                raise InputError("publisher certificate: at least one trusted CA certificate (--publisher-ca) is required")
        if self.kind == "sigstore":
            if not self.identity.strip():
                raise InputError("publisher sigstore: the expected identity (--publisher-identity) is required")
            if not self.issuer.startswith("https://"):
                raise InputError(f"publisher sigstore: the OIDC issuer must be an https:// URL, got {self.issuer!r}")
        for name in self.ignore:
            if not name or name.startswith("/") or ".." in name.split("/"):
                raise InputError(f"--ignore {name!r}: expected a relative file name inside the source")

    @classmethod
    def key(cls, public_key_pem: str, *, ignore: tuple[str, ...] = ()) -> PublisherPolicy:
        """A signature made with the private half of this EC public key."""
        return cls(kind="key", public_key_pem=_pem_text(public_key_pem, "publisher public key"), ignore=tuple(ignore))

    @classmethod
    def certificate(
        cls, certificate_pem: str, ca_pems: list[str] | tuple[str, ...], *, ignore: tuple[str, ...] = ()
    ) -> PublisherPolicy:
        """A signature made with this certificate, issued under one of these CAs."""
        return cls(
            kind="certificate",
            certificate_pem=_pem_text(certificate_pem, "publisher certificate"),
            ca_pems=tuple(_pem_text(p, "publisher CA") for p in ca_pems),
            ignore=tuple(ignore),
        )

    @classmethod
    def sigstore(cls, *, identity: str, issuer: str, ignore: tuple[str, ...] = ()) -> PublisherPolicy:
        """A keyless Sigstore signature by this identity, as vouched for by this OIDC issuer."""
        return cls(kind="sigstore", identity=identity, issuer=issuer, ignore=tuple(ignore))

    def describe(self) -> dict[str, Any]:
        """What the policy expects (no key material beyond fingerprints)."""
        doc: dict[str, Any] = {"kind": self.kind, "ignore": list(self.ignore)}
        if self.kind == "key":
            doc["public_key_sha256"] = _spki_sha256(self.public_key_pem)
        elif self.kind == "certificate":
            doc["certificate_sha256"] = _cert_sha256_pem(self.certificate_pem)
            doc["ca_sha256"] = [_cert_sha256_pem(p) for p in self.ca_pems]
        else:
            doc.update(identity=self.identity, issuer=self.issuer)
        return doc


def _spki_sha256(pem: str) -> str:
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError) as exc:
        raise InputError(f"publisher public key: not a PEM public key ({exc})") from exc
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def _cert_sha256_pem(pem: str) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
    except ValueError as exc:
        raise InputError(f"publisher certificate: not a PEM certificate ({exc})") from exc
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _leaf_certificate(bundle: dict[str, Any]) -> Any:
    """The signing certificate a (verified) Sigstore bundle carries, or ``None``."""
    from cryptography import x509

    material = bundle.get("verificationMaterial") or {}
    raw = (material.get("certificate") or {}).get("rawBytes")
    if raw is None:
        chain = (material.get("x509CertificateChain") or {}).get("certificates") or []
        raw = chain[0].get("rawBytes") if chain else None
    return x509.load_der_x509_certificate(base64.b64decode(raw)) if raw else None


def _signed_names(bundle: dict[str, Any]) -> list[str]:
    payload = json.loads(base64.b64decode((bundle.get("dsseEnvelope") or {}).get("payload", "")))
    return sorted(str(r.get("name")) for r in (payload.get("predicate") or {}).get("resources") or [])


def verify_publisher_signature(model_path: Path, signature_path: Path, policy: PublisherPolicy) -> dict[str, Any]:
    """Verify an OpenSSF Model Signing signature over a model folder (or file), offline.

    Args:
        model_path: the quarantined model folder or file, holding exactly the files to release
            (the signature file and ignored files already left out).
        signature_path: the ``model.sig`` file.
        policy: who must have signed it.

    Returns:
        What the link records about the publisher: kind, identity (key fingerprint,
        certificate subject and fingerprint, or Sigstore identity and issuer), the signature's
        SHA-256, and the signed file names.

    Raises:
        SignatureError: the signature does not verify, is not by the expected publisher, or
            does not cover exactly the files (names what differs).
    """
    from cryptography.hazmat.primitives import serialization
    from model_signing import verifying

    sig_bytes = signature_path.read_bytes()
    what = f"{signature_path.name} (publisher signature)"
    try:
        bundle = json.loads(sig_bytes)
    except ValueError as exc:
        raise SignatureError(f"{what}: not a Sigstore bundle (JSON)") from exc
    with tempfile.TemporaryDirectory(prefix="chainproof-publisher-") as tmp:
        config = verifying.Config()  # type: ignore[no-untyped-call]
        if policy.kind == "key":
            pub = Path(tmp, "publisher.pub")
            pub.write_text(policy.public_key_pem)
            config.use_elliptic_key_verifier(public_key=pub)
        elif policy.kind == "certificate":
            chain = []
            for i, pem in enumerate(policy.ca_pems):
                path = Path(tmp, f"ca-{i}.pem")
                path.write_text(pem)
                chain.append(path)
            config.use_certificate_verifier(certificate_chain=chain)
        else:
            from sigstore.models import ClientTrustConfig

            trust = Path(tmp, "trust_config.json")
            # The trust root shipped with sigstore-python, without a TUF refresh: offline.
            trust.write_text(ClientTrustConfig.production(offline=True)._inner.to_json())
            config.use_sigstore_verifier(identity=policy.identity, oidc_issuer=policy.issuer, trust_config=trust)
        try:
            config.verify(model_path, signature_path)
        except Exception as exc:  # model-signing raises ValueError, OpenSSL and sigstore errors
            detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise SignatureError(f"{what}: does not verify as {policy.kind} signature by the expected publisher: {detail}") from exc
    record: dict[str, Any] = {
        "kind": policy.kind,
        "signature_sha256": hashlib.sha256(sig_bytes).hexdigest(),
        "signed_files": _signed_names(bundle),
        "ignored": sorted(policy.ignore),
        "verified_offline": True,
    }
    if policy.kind == "key":
        record["public_key_sha256"] = _spki_sha256(policy.public_key_pem)
        return record
    leaf = _leaf_certificate(bundle)
    if leaf is None:
        raise SignatureError(f"{what}: carries no signing certificate")
    leaf_sha256 = hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest()
    record.update(certificate_sha256=leaf_sha256, certificate_subject=leaf.subject.rfc4514_string())
    if policy.kind == "certificate":
        expected = _cert_sha256_pem(policy.certificate_pem)
        if leaf_sha256 != expected:
            raise SignatureError(
                f"{what}: signed with certificate sha256:{leaf_sha256[:16]} ({leaf.subject.rfc4514_string()}), "
                f"expected the publisher certificate sha256:{expected[:16]}"
            )
        record.update(certificate_issuer=leaf.issuer.rfc4514_string(), ca_sha256=[_cert_sha256_pem(p) for p in policy.ca_pems])
    else:
        import sigstore

        record.update(identity=policy.identity, issuer=policy.issuer,
                      trust_root=f"sigstore-python {sigstore.__version__} shipped production trust root (offline)")
    return record


def _refuse_unsigned(root: Path, names: list[str]) -> None:
    # model-signing skips .git* paths: such files would be released unsigned.
    for name in names:
        if any(part.startswith(".git") for part in name.split("/")):
            raise ArtifactRefused(name, "not covered by the publisher's signature (model-signing ignores .git* paths)")


def _scan_or_refuse(path: Path, label: str) -> dict[str, Any]:
    from chainproof.scan import Allowlist, scan_path, summarize

    reports = scan_path(path, allowlist=Allowlist.default())
    summary = summarize(reports)
    if summary["verdict"] != "safe":
        findings = [f for r in reports for f in r.to_dict().get("findings", [])]
        if not findings:
            raise ArtifactRefused(label, "the scan found nothing it could prove safe")
        first = findings[0]
        raise ArtifactRefused(f"{label}/{first['file']}", f"scan refused it: {first['what']}: {first['reason']}")
    return {"verdict": summary["verdict"], "files": len(reports)}


def ingest(
    source: str,
    dest: Path,
    *,
    sha256: str | None = None,
    publisher: PublisherPolicy | None = None,
    signature: str = "",
    options: Any = None,
) -> dict[str, Any]:
    """Fetch a model or dataset into quarantine, verify its pin or publisher signature, scan it, release it.

    Args:
        source: a local file or folder, ``file://``, ``gs://``, ``https://`` or ``s3://`` URI
            (a URI ending in ``/`` is a folder).
        dest: the folder to release into (must not exist, or be empty).
        sha256: the pinned SHA-256 (of the file, or of a folder's manifest).
        publisher: who must have signed it (instead of, or with, ``sha256``).
        signature: where ``model.sig`` is (default: ``model.sig`` inside a folder source).
        options: :class:`chainproof.storage.FetchOptions`.

    Returns:
        The record of what was released: source (redacted), digest, files, publisher, scan.

    Raises:
        InputError: neither a pin nor a publisher, a bad destination, or a bad source.
        DigestMismatch: not the pinned bytes.
        SignatureError: the publisher signature does not verify.
        ArtifactRefused: the scan refused a file, or a file is not covered by the signature.

    Side effects:
        Reads the source; writes ``dest`` only if everything verified (nothing otherwise).
    """
    from chainproof.digests import check_sha256_hex
    from chainproof.storage import FetchOptions, fetch, fetch_tree, is_folder_uri, redact_uri

    opts = options or FetchOptions()
    if sha256 is None and publisher is None:
        raise InputError(f"{redact_uri(source)}: a pinned --sha256 or a publisher (--publisher-key, "
                         "--publisher-certificate, --publisher-identity) is mandatory")
    pinned = check_sha256_hex(sha256, what="--sha256") if sha256 else None
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise InputError(f"{dest}: already exists and is not empty; refusing to overwrite it")
    folder = is_folder_uri(source)
    ignore = frozenset(publisher.ignore if publisher else ())
    sig_uri = signature or (source.rstrip("/") + "/" + SIGNATURE_FILE if folder and publisher else "")
    if publisher is not None and not sig_uri:
        raise InputError(f"{redact_uri(source)}: a single-file source needs --signature PATH")
    work = Path(tempfile.mkdtemp(prefix=".chainproof-ingest-", dir=dest.parent if dest.parent.is_dir() else None))
    released: dict[str, Any] = {}
    try:
        sig_path = None
        if publisher is not None:
            got = fetch(sig_uri, dest_dir=work / "sig", expected_sha256=None, name=SIGNATURE_FILE, options=opts)
            sig_path = got.path

        def check(quarantined: Path) -> None:
            names = [quarantined.name] if quarantined.is_file() else sorted(
                str(p.relative_to(quarantined)) for p in quarantined.rglob("*") if p.is_file())
            _refuse_unsigned(quarantined, names)
            if publisher is not None and sig_path is not None:
                released["publisher"] = verify_publisher_signature(quarantined, sig_path, publisher)
            released["scan"] = _scan_or_refuse(quarantined, dest.name)

        if folder:
            exclude = frozenset({SIGNATURE_FILE} if not signature else set()) | ignore
            staged = work / "tree"
            tree = fetch_tree(source if source.endswith("/") or "://" not in source else source + "/",
                              dest_dir=staged, expected_manifest_sha256=pinned, verify=check, exclude=exclude, options=opts)
            files = {f.name: f.sha256 for f in tree.files}
            digest = tree.manifest_sha256
        else:
            one = fetch(source, dest_dir=work / "file", expected_sha256=pinned, options=opts)
            check(one.path)
            staged = work / "file"
            files, digest = {one.name: one.sha256}, one.sha256
        # Release: everything verified; a rename, so DIR holds all of it or nothing.
        if dest.exists():
            dest.rmdir()
        try:
            os.rename(staged, dest)
        except OSError:
            tmp_dest = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}")
            shutil.copytree(staged, tmp_dest)
            os.rename(tmp_dest, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "source": redact_uri(source),
        "released": str(dest),
        "sha256": digest,
        "pinned_sha256": pinned or "",
        "files": files,
        "publisher": released.get("publisher"),
        "scan": released.get("scan"),
    }
