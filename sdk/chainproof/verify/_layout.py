"""Checks (1) and (2): the layout parses within its limits and a trusted owner key signed it."""

from __future__ import annotations

import json
from collections.abc import Mapping

from in_toto import exceptions as itx
from in_toto.models.layout import Layout
from in_toto.models.metadata import Envelope, Metadata
from securesystemslib.signer import SSlibKey

from chainproof.errors import (
    LayoutError,
    SignatureError,
    UntrustedKey,
)
from chainproof.verify._types import LAYOUT_FILE

__all__ = ['load_layout', 'verify_layout_signature']


def load_layout(data: bytes, *, what: str = LAYOUT_FILE) -> tuple[Envelope, Layout]:
    """Parse a signed layout without trusting it.

    Args:
        data: the ``root.layout`` bytes.
        what: the name errors report.

    Returns:
        The DSSE envelope and its layout.

    Raises:
        LayoutError: not a DSSE-signed in-toto layout.
    """
    try:
        metadata = Metadata.from_dict(json.loads(data))
        layout = metadata.get_payload()
    except Exception as exc:  # JSON, format and in-toto errors all mean "not a layout"
        raise LayoutError(f"{what}: not a signed in-toto layout ({type(exc).__name__})") from exc
    if not isinstance(metadata, Envelope) or not isinstance(layout, Layout):
        raise LayoutError(f"{what}: expected a DSSE-signed in-toto layout")
    return metadata, layout


def verify_layout_signature(
    envelope: Envelope, trusted_keys: Mapping[str, SSlibKey], *, what: str = LAYOUT_FILE
) -> str:
    """(2) Check that a trusted owner key signed the layout.

    Args:
        envelope: the layout envelope.
        trusted_keys: the trusted owner keys by key id.
        what: the name errors report.

    Returns:
        The key id of the trusted key whose signature verified.

    Raises:
        UntrustedKey: no signature is by a trusted key (names the signing key id).
        SignatureError: a trusted key's signature does not verify (the layout was edited).
    """
    signer_ids = [sig.keyid for sig in envelope.signatures.values()]
    if not trusted_keys:
        raise UntrustedKey(what, signer_ids[0] if signer_ids else "none", [])
    candidates = [k for k in signer_ids if k in trusted_keys]
    if not candidates:
        raise UntrustedKey(what, signer_ids[0] if signer_ids else "none", sorted(trusted_keys))
    for keyid in candidates:
        key = trusted_keys[keyid]
        try:
            envelope.verify_signature(key.to_dict() | {"keyid": keyid})
            return str(keyid)
        except itx.SignatureVerificationError:
            continue
    raise SignatureError(
        f"{what}: signature by owner key {candidates[0][:16]} does not verify: "
        "the layout was changed after it was signed"
    )
