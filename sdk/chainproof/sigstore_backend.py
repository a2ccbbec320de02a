"""Sigstore keyless signing with the step's own workload identity.

Example:
    >>> from chainproof.signing import load_signer
    >>> s = load_signer("sigstore:?identity=trainer@p.iam.gserviceaccount.com")
    >>> s.backend, s.public_key.keyval["issuer"]
    ('sigstore', 'https://accounts.google.com')

The reference ``sigstore:?identity=EMAIL[&issuer=URL]`` names the identity the step
must sign as. The layout pins it as a securesystemslib ``SigstoreKey``
(``sigstore-oidc`` / ``Fulcio``: identity plus issuer), so verification checks who
signed, not which key. At signing time the step asks the metadata server's identity
endpoint for a token with audience ``sigstore``, checks that the token names the pinned
identity (before any network call), and has Fulcio certify an ephemeral key and Rekor
log the signature: signing needs the network.

Verification of recorded bundles runs offline, with the trust root that ships with
sigstore-python (``Verifier.production(offline=True)``): chainproof registers
:class:`OfflineSigstoreKey` for the ``sigstore-oidc`` key type (securesystemslib does
not register one by default). The standard ``in-toto-verify`` tool does not know that
key type, so a chain signed keyless verifies with ``chainproof verify`` only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from securesystemslib.signer import Key, Signature, Signer
from securesystemslib.signer._sigstore_signer import SigstoreKey, SigstoreSigner
from securesystemslib.signer._utils import compute_default_keyid

from chainproof.errors import InputError, SignatureError

__all__ = [
    "AUDIENCE",
    "GOOGLE_ISSUER",
    "KeylessSigner",
    "OfflineSigstoreKey",
    "load_sigstore_signer",
    "metadata_identity_token",
    "register_key_type",
    "sigstore_key",
]

#: The issuer of Google service-account identity tokens.
GOOGLE_ISSUER = "https://accounts.google.com"

#: The audience Fulcio expects.
AUDIENCE = "sigstore"


class OfflineSigstoreKey(SigstoreKey):
    """A ``SigstoreKey`` that verifies with the trust root shipped in sigstore-python (no network)."""

    def verify_signature(self, signature: Signature, data: bytes) -> None:
        """Verify a keyless signature: certificate chain, Rekor entry, identity and issuer.

        Raises:
            securesystemslib.exceptions.UnverifiedSignatureError: it does not verify.
        """
        from securesystemslib.exceptions import UnverifiedSignatureError
        from sigstore.models import Bundle
        from sigstore.verify import Verifier
        from sigstore.verify.policy import Identity

        try:
            bundle = Bundle.from_json(json.dumps(signature.unrecognized_fields["bundle"]))
            verifier = Verifier.production(offline=True)
            verifier.verify_artifact(
                data, bundle, Identity(identity=self.keyval["identity"], issuer=self.keyval["issuer"])
            )
        except Exception as exc:  # sigstore raises several types; all mean "not verified"
            raise UnverifiedSignatureError(
                f"keyless signature by {self.keyval['identity']} does not verify ({type(exc).__name__})"
            ) from exc


def register_key_type() -> None:
    """Let securesystemslib (and so in-toto) parse ``sigstore-oidc`` keys as :class:`OfflineSigstoreKey`."""
    from securesystemslib.signer import KEY_FOR_TYPE_AND_SCHEME

    KEY_FOR_TYPE_AND_SCHEME[(SigstoreKey.DEFAULT_KEY_TYPE, SigstoreKey.DEFAULT_SCHEME)] = OfflineSigstoreKey


def sigstore_key(identity: str, issuer: str = GOOGLE_ISSUER) -> OfflineSigstoreKey:
    """Return the layout key that pins a keyless signer's identity and issuer.

    Args:
        identity: the expected signer (a service-account email).
        issuer: the expected OIDC issuer.

    Returns:
        The key; its key id is derived from identity and issuer.
    """
    keytype, scheme = SigstoreKey.DEFAULT_KEY_TYPE, SigstoreKey.DEFAULT_SCHEME
    keyval = {"identity": identity, "issuer": issuer}
    return OfflineSigstoreKey(compute_default_keyid(keytype, scheme, keyval), keytype, scheme, keyval)


def metadata_identity_token(audience: str = AUDIENCE) -> str:
    """Fetch an identity token for the workload (the metadata server's identity endpoint).

    Args:
        audience: the token's audience.

    Returns:
        The raw token (a secret: never log or record it).

    Raises:
        SignatureError: no identity token is available.

    Side effects:
        Asks google-auth, which asks the metadata server.
    """
    from google.auth.transport.requests import Request
    from google.oauth2 import id_token

    try:
        return str(id_token.fetch_id_token(Request(), audience))  # type: ignore[no-untyped-call]
    except Exception as exc:  # noqa: BLE001 - google.auth DefaultCredentialsError / RefreshError / transport
        raise SignatureError(
            f"sigstore: no identity token for audience {audience!r} from the workload identity "
            f"({type(exc).__name__})"
        ) from None


def _checked_token(key: SigstoreKey, token_source: Callable[[], str]) -> Any:
    from sigstore.oidc import IdentityToken

    try:
        token = IdentityToken(token_source(), client_id=AUDIENCE)
    except SignatureError:
        raise
    except Exception as exc:  # noqa: BLE001 - sigstore.oidc.IdentityError and JWT errors
        raise SignatureError(f"sigstore: the identity token is not usable ({type(exc).__name__})") from None
    identity, issuer = str(token.identity), str(token.federated_issuer or token.issuer)
    if identity != key.keyval["identity"] or issuer != key.keyval["issuer"]:
        raise SignatureError(
            f"sigstore: the workload's identity token is for {identity} ({issuer}), but the layout pins "
            f"{key.keyval['identity']} ({key.keyval['issuer']})"
        )
    return token


class KeylessSigner(Signer):
    """Sign with Sigstore (Fulcio + Rekor) as the step's own identity."""

    def __init__(self, public_key: SigstoreKey, token_source: Callable[[], str] = metadata_identity_token) -> None:
        """Bind the pinned identity to a source of identity tokens.

        Args:
            public_key: the pinned identity (a ``sigstore-oidc`` key).
            token_source: returns a raw identity token with audience ``sigstore``.
        """
        self._public_key = public_key
        self._token_source = token_source

    @property
    def public_key(self) -> SigstoreKey:
        """The pinned identity."""
        return self._public_key

    @classmethod
    def from_priv_key_uri(cls, priv_key_uri: str, public_key: Key, secrets_handler: Any = None) -> KeylessSigner:
        """Not used: chainproof loads keyless signers with ``load_signer``."""
        raise NotImplementedError("use chainproof.signing.load_signer")

    def identity_token(self) -> Any:
        """Fetch the workload's token and check it names the pinned identity (no Sigstore call yet)."""
        return _checked_token(self._public_key, self._token_source)

    def sign(self, payload: bytes) -> Signature:
        """Sign keyless.

        Raises:
            SignatureError: the token names another identity, or Sigstore could not be reached.

        Side effects:
            Contacts the Sigstore TUF repository, Fulcio and Rekor.
        """
        token = self.identity_token()
        try:
            return SigstoreSigner(token, self._public_key).sign(payload)
        except Exception as exc:  # noqa: BLE001 - network and sigstore errors; the token is never echoed
            raise SignatureError(
                f"sigstore: keyless signing as {self._public_key.keyval['identity']} failed "
                f"({type(exc).__name__}); it needs network access to Sigstore (TUF, Fulcio, Rekor)"
            ) from None


def load_sigstore_signer(reference: str, location: str, *, public_key: Key | None) -> Any:
    """Build the keyless signer a ``sigstore:`` reference names.

    Args:
        reference: the full reference, for messages.
        location: what follows ``sigstore:`` (``?identity=EMAIL[&issuer=URL]``).
        public_key: the identity the layout pins for the step, when known.

    Returns:
        A :class:`~chainproof.signing.StepSigner` with backend ``sigstore``.

    Raises:
        InputError: no identity, or one that differs from the pinned one.
    """
    from chainproof.signing import StepSigner

    params = parse_qs(location.lstrip("/?"), keep_blank_values=True) if location else {}
    unknown = sorted(set(params) - {"identity", "issuer"})
    if unknown:
        raise InputError(f"signer reference {reference!r}: unknown parameter(s) {', '.join(unknown)}")
    identity = params.get("identity", [""])[-1]
    issuer = params.get("issuer", [GOOGLE_ISSUER])[-1]
    if public_key is not None:
        if not isinstance(public_key, SigstoreKey):
            raise InputError(f"signer {reference}: the layout pins a key, not a Sigstore identity, for this step")
        if identity and identity != public_key.keyval["identity"]:
            raise InputError(
                f"signer {reference}: identity {identity}, but the layout pins {public_key.keyval['identity']}"
            )
        key = sigstore_key(public_key.keyval["identity"], public_key.keyval["issuer"])
    elif identity:
        key = sigstore_key(identity, issuer)
    else:
        raise InputError(f"signer reference {reference!r}: expected sigstore:?identity=EMAIL[&issuer=URL]")
    return StepSigner(signer=KeylessSigner(key), reference=reference, backend="sigstore")


def sign_model_keyless(signer: Any) -> Any:
    """Return a model-signing signer that signs keyless as the step's pinned identity.

    Raises:
        SignatureError: the token names another identity than the pinned one.
    """
    from model_signing._signing import sign_sigstore

    keyless = signer.signer
    if not isinstance(keyless, KeylessSigner):
        raise InputError(f"signer {signer.reference}: not a keyless signer")
    token = keyless.identity_token()
    try:
        return sign_sigstore.Signer(identity_token=str(token), use_ambient_credentials=False)
    except Exception as exc:  # noqa: BLE001 - the production trust config is fetched over the network
        raise SignatureError(
            f"sigstore: keyless model signing as {keyless.public_key.keyval['identity']} failed "
            f"({type(exc).__name__}); it needs network access to Sigstore (TUF, Fulcio, Rekor)"
        ) from None


register_key_type()
