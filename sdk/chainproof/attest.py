"""Attestations: in-toto links per step, in-toto Statements, and model signatures.

Example:
    >>> import tempfile
    >>> from chainproof.attest import record_link
    >>> from chainproof.identity import local_principal
    >>> from chainproof.signing import init_keys, load_signer
    >>> ring = init_keys(tempfile.mkdtemp(), roles=["train_model"])
    >>> signer = load_signer(ring.signer_reference("train_model"))
    >>> env = record_link("train_model", materials={}, products={"model/m.joblib": "ab" * 32},
    ...                   signer=signer, principal=local_principal(), parameters={})
    >>> env.get_payload().products
    {'model/m.joblib': {'sha256': 'abababababababababababababababababababababababababababababababab'}}

Links are in-toto 3.x ``Link`` objects in DSSE envelopes, signed by the step's
functionary key. Materials and products are *logical* names (``dataset/...``,
``model/...``) hashed by :mod:`chainproof.digests`, never local paths, so a local
run and a Vertex AI run produce the same chain. The link's ``environment`` records
the step's principal, the signer (never key material), the chainproof version and
the step's non-secret parameters.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from in_toto.models.link import FILENAME_FORMAT, Link
from in_toto.models.metadata import Envelope, Metadata
from securesystemslib.dsse import Envelope as DSSEEnvelope
from securesystemslib.signer import Key

from chainproof._version import __version__
from chainproof.errors import ArtifactRefused, InputError, SignatureError
from chainproof.identity import Principal
from chainproof.signing import StepSigner, public_key_pem

__all__ = [
    "IN_TOTO_PAYLOAD_TYPE",
    "STATEMENT_TYPE",
    "link_filename",
    "load_link",
    "load_statement",
    "record_link",
    "sign_model",
    "sign_statement",
    "utc_now",
    "verify_model_signature",
    "write_atomic",
    "write_link",
]

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"


def utc_now() -> str:
    """Return the current UTC time as RFC 3339 with a ``Z``."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json_safe(value: Any, *, where: str) -> Any:
    # Floats do not survive every JSON round-trip (protobuf Structs, some
    # attestation bindings): record them as their exact decimal text.
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v, where=f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v, where=where) for v in value]
    raise InputError(f"{where}: parameter of type {type(value).__name__} cannot be recorded")


def record_link(
    step: str,
    *,
    materials: Mapping[str, str],
    products: Mapping[str, str],
    signer: StepSigner,
    principal: Principal,
    parameters: Mapping[str, Any],
) -> Envelope:
    """Record and sign the in-toto link of one step.

    Args:
        step: the layout step name.
        materials: logical name to SHA-256 of what the step consumed (verified).
        products: logical name to SHA-256 of what it produced.
        signer: the step's functionary signer.
        principal: the identity the step ran as.
        parameters: the step's non-secret parameters.

    Returns:
        The signed DSSE envelope (``Envelope.get_payload()`` is the ``Link``).
    """
    link = Link(
        name=step,
        materials={k: {"sha256": v} for k, v in sorted(materials.items())},
        products={k: {"sha256": v} for k, v in sorted(products.items())},
        byproducts={},
        command=[],
        environment={
            "chainproof": {
                "version": __version__,
                "recorded": utc_now(),
                "principal": principal.to_dict(),
                "signer": signer.describe(),
                "parameters": _json_safe(dict(parameters), where=f"{step} parameters"),
                # The ML frameworks the step ran with: a model is served by an image of the same version.
                "frameworks": _frameworks(),
            }
        },
    )
    envelope = Envelope.from_signable(link)
    envelope.create_signature(signer.signer)
    return envelope


def _frameworks() -> dict[str, str]:
    """Installed versions of the model frameworks chainproof serves (read from package metadata)."""
    from importlib import metadata

    found: dict[str, str] = {}
    for name in ("scikit-learn",):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def link_filename(step: str, keyid: str) -> str:
    """Return in-toto's file name for a step's link: ``STEP.KEYID8.link``."""
    return str(FILENAME_FORMAT.format(step_name=step, keyid=keyid))


def write_atomic(path: Path, data: bytes) -> None:
    """Write a file so that readers see either nothing or all of it.

    Args:
        path: the destination.
        data: the bytes.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_link(envelope: Envelope, directory: str | os.PathLike[str]) -> Path:
    """Write a signed link as ``STEP.KEYID8.link`` in a folder.

    Args:
        envelope: a link envelope with one signature.
        directory: the links folder.

    Returns:
        The file written.
    """
    link = envelope.get_payload()
    keyid = envelope.signatures[next(iter(envelope.signatures))].keyid
    path = Path(directory) / link_filename(link.name, keyid)
    write_atomic(path, json.dumps(envelope.to_dict(), sort_keys=True).encode("utf-8"))
    return path


def load_link(path: str | os.PathLike[str]) -> tuple[Metadata, Link]:
    """Load a link file (DSSE or classic), without verifying it.

    Args:
        path: the ``.link`` file.

    Returns:
        The metadata wrapper and its ``Link`` payload.

    Raises:
        ArtifactRefused: the file is not a readable in-toto link.
    """
    try:
        metadata = Metadata.load(str(path))
        payload = metadata.get_payload()
    except OSError as exc:
        raise ArtifactRefused(str(path), f"cannot read link ({exc.strerror})") from exc
    except Exception as exc:  # in-toto raises several unrelated types for malformed files
        raise ArtifactRefused(str(path), f"not an in-toto link ({type(exc).__name__})") from exc
    if not isinstance(payload, Link):
        raise ArtifactRefused(str(path), "holds a layout, not a link")
    return metadata, payload


def sign_statement(
    *,
    subjects: Mapping[str, str],
    predicate_type: str,
    predicate: Mapping[str, Any],
    signer: StepSigner,
) -> bytes:
    """Sign an in-toto Statement v1 into a DSSE envelope.

    Args:
        subjects: subject name to SHA-256.
        predicate_type: the predicate's type URI (SLSA provenance, VSA, ...).
        predicate: the predicate body (JSON-safe: no floats).
        signer: the signing step's functionary signer.

    Returns:
        The envelope JSON bytes.
    """
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": n, "digest": {"sha256": d}} for n, d in sorted(subjects.items())],
        "predicateType": predicate_type,
        "predicate": _json_safe(dict(predicate), where=predicate_type),
    }
    payload = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode("utf-8")
    envelope = DSSEEnvelope(payload=payload, payload_type=IN_TOTO_PAYLOAD_TYPE, signatures={})
    envelope.sign(signer.signer)
    return json.dumps(envelope.to_dict(), sort_keys=True).encode("utf-8")


def load_statement(data: bytes, *, key: Key, what: str) -> dict[str, Any]:
    """Verify a DSSE-signed in-toto Statement and return it.

    Args:
        data: the envelope JSON bytes.
        key: the public key that must have signed it.
        what: the artifact name errors report.

    Returns:
        The statement as a dictionary.

    Raises:
        SignatureError: the signature does not verify with ``key``.
        ArtifactRefused: the file is not a DSSE in-toto Statement v1.
    """
    try:
        envelope = DSSEEnvelope.from_dict(json.loads(data))
    except Exception as exc:  # malformed JSON or envelope fields
        raise ArtifactRefused(what, f"not a DSSE envelope ({type(exc).__name__})") from exc
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE:
        raise ArtifactRefused(
            what, f"expected payload type {IN_TOTO_PAYLOAD_TYPE}, got {envelope.payload_type!r}"
        )
    try:
        envelope.verify([key], 1)
    except Exception as exc:  # securesystemslib.exceptions.VerificationError and friends
        raise SignatureError(
            f"{what}: signature does not verify with key {str(key.keyid)[:16]}"
        ) from exc
    try:
        statement = json.loads(envelope.payload)
    except ValueError as exc:
        raise ArtifactRefused(what, "payload is not JSON") from exc
    if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE:
        raise ArtifactRefused(what, f"expected an in-toto Statement ({STATEMENT_TYPE})")
    return statement


def _model_signing_signer(signer: StepSigner) -> Any:
    """Adapt a securesystemslib ECDSA signer (key file or KMS) to OpenSSF Model Signing.

    model-signing's own EC-key signer wants a private key file. This one builds the
    same Sigstore bundle (a DSSE envelope over the in-toto statement, verification
    material = the sha256 hint of the public key PEM) but gets the raw signature from
    the step's signer, so the private key may stay in KMS. securesystemslib's ECDSA
    signatures are DER, which is what model-signing's verifier expects.
    """
    import base64
    import hashlib

    from cryptography.hazmat.primitives import serialization
    from google.protobuf import json_format
    from model_signing._signing import sign_ec_key, sign_sigstore_pb, signing
    from sigstore_models import intoto as intoto_pb
    from sigstore_models.bundle import v1 as bundle_pb
    from sigstore_models.common import v1 as common_pb

    public = signer.public_key._crypto_key()
    sign_ec_key._check_supported_ec_key(public)
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    class _DelegatingSigner(sign_ec_key.Signer):
        def __init__(self) -> None:  # no private key file: the step's signer holds the key
            pass

        def sign(self, payload: signing.Payload) -> sign_sigstore_pb.Signature:
            raw_payload = json_format.MessageToJson(payload.statement.pb).encode("utf-8")
            der = bytes.fromhex(signer.signer.sign(sign_sigstore_pb.pae(raw_payload)).signature)
            envelope = intoto_pb.Envelope(
                payload=base64.b64encode(raw_payload),
                payload_type=signing._IN_TOTO_JSON_PAYLOAD_TYPE,
                signatures=[intoto_pb.Signature(sig=base64.b64encode(der), keyid="")],
            )
            return sign_sigstore_pb.Signature(
                bundle_pb.Bundle(
                    media_type=sign_sigstore_pb._BUNDLE_MEDIA_TYPE,  # type: ignore[arg-type]
                    verification_material=bundle_pb.VerificationMaterial(
                        public_key=common_pb.PublicKeyIdentifier(hint=hashlib.sha256(pem).hexdigest()),
                        tlog_entries=[],
                    ),
                    dsse_envelope=envelope,
                )
            )

    return _DelegatingSigner()


def sign_model(model_dir: Path, signature_path: Path, signer: StepSigner) -> None:
    """Sign a model folder with OpenSSF Model Signing (``model_signing``) into ``model.sig``.

    Works with every backend: an ECDSA key file or KMS key signs through
    :func:`_model_signing_signer` (the result verifies with
    ``model_signing verify key --public_key PUB``); a Sigstore signer signs keyless.

    Args:
        model_dir: the model folder (every file in it is signed).
        signature_path: where the signature (a Sigstore bundle) goes.
        signer: the step's signer (an ECDSA P-256 key: model-signing accepts EC keys only).

    Raises:
        InputError: the signer's key is not an EC key model-signing accepts.

    Side effects:
        A KMS signer calls ``AsymmetricSign``; a Sigstore signer contacts Fulcio and Rekor.
    """
    from model_signing import hashing
    from model_signing._signing import signing as oms_internal

    if signer.backend == "sigstore":
        from chainproof.sigstore_backend import sign_model_keyless

        oms_signer = sign_model_keyless(signer)
    else:
        try:
            oms_signer = _model_signing_signer(signer)
        except (ValueError, AttributeError, TypeError) as exc:
            raise InputError(
                f"signer {signer.reference}: model signing needs an EC key (P-256/384/521): {exc}"
            ) from exc
    tmp = signature_path.with_name(f".{signature_path.name}.part")
    try:
        # What model_signing.signing.Config().sign() does, with the signer above.
        manifest = hashing.Config().hash(model_dir)  # type: ignore[no-untyped-call]
        oms_signer.sign(oms_internal.Payload(manifest)).write(tmp)
        os.replace(tmp, signature_path)
    finally:
        tmp.unlink(missing_ok=True)


def verify_model_signature(model_dir: Path, signature_path: Path, key: Any) -> None:
    """Verify an OpenSSF Model Signing signature of a model folder.

    Args:
        model_dir: the model folder as delivered.
        signature_path: the ``model.sig`` file.
        key: the public key that must have signed it, or a Sigstore identity
            (``sigstore-oidc`` key: identity and issuer, verified with the trust root
            shipped in sigstore-python, offline).

    Raises:
        SignatureError: the signature or any file does not verify.
    """
    from model_signing import verifying as oms_verifying

    with tempfile.TemporaryDirectory() as tmp:
        config = oms_verifying.Config()  # type: ignore[no-untyped-call]
        if key.keytype == "sigstore-oidc":
            from sigstore.models import ClientTrustConfig

            trust = Path(tmp, "trust_config.json")
            # The trust root shipped with sigstore-python, without a TUF refresh (offline).
            trust.write_text(ClientTrustConfig.production(offline=True)._inner.to_json())
            config.use_sigstore_verifier(
                identity=key.keyval["identity"], oidc_issuer=key.keyval["issuer"], trust_config=trust
            )
        else:
            pub = Path(tmp, "key.pub")
            pub.write_text(public_key_pem(key))
            config.use_elliptic_key_verifier(public_key=pub)
        try:
            config.verify(model_dir, signature_path)
        except Exception as exc:  # model_signing raises ValueError and library errors
            detail = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            raise SignatureError(f"attestations/model.sig: model signature does not verify: {detail}") from exc
