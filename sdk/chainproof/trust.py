"""Explicit trust in layout-owner keys: who trusted which key, and nothing as a side effect.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from chainproof.signing import TrustStore, init_keys, load_public_key
    >>> from chainproof.trust import trust_run_owner_key
    >>> ring = init_keys(tempfile.mkdtemp(), roles=["owner"], development=True)
    >>> store = TrustStore(tempfile.mkdtemp())
    >>> key = load_public_key(ring.public_key_path("owner"))
    >>> trust_run_owner_key(store, key, created_now=False, keys_dir=ring.directory).startswith("owner key")
    True
    >>> store.keys()
    {}

The trust store (:class:`chainproof.signing.TrustStore`) is the verifier's root of
trust. A key enters it only by an explicit act: ``chainproof trust add PEM``,
``chainproof keys init`` (which creates the key), or a ``chainproof run`` that created
the owner key *in that invocation*. A ``keys/`` folder that already existed (cloned
with a repository, left by someone else) is never trusted automatically.
"""

from __future__ import annotations

from pathlib import Path

from securesystemslib.signer import SSlibKey

from chainproof.signing import TrustedKey, TrustStore

__all__ = ["describe_owner_trust", "trust_run_owner_key"]


def trust_run_owner_key(store: TrustStore, key: SSlibKey, *, created_now: bool, keys_dir: Path | None) -> str:
    """Trust the owner key of a local run only if the run created it; say what happened.

    Args:
        store: the trust store.
        key: the run's owner key.
        created_now: the run created this key in this invocation.
        keys_dir: where the key lives (for the message), or ``None`` for an external signer.

    Returns:
        One line for the user: the key was trusted now, was already trusted, or was not trusted.

    Side effects:
        Adds the key to ``store`` when ``created_now``.
    """
    keyid = str(key.keyid)
    already = {e.keyid: e for e in store.entries()}.get(keyid)
    if created_now:
        store.add(key, source=f"chainproof run: owner key created now in {keys_dir}", development=True)
        return f"owner key {keyid[:16]} created now in {keys_dir} and trusted in {store.directory} (development key)"
    if already is not None:
        return f"owner key {keyid[:16]} already trusted: {already.describe()}"
    where = f"existing key in {keys_dir}" if keys_dir is not None else "external owner signer"
    return (
        f"owner key {keyid[:16]} ({where}) NOT trusted: this run did not create it; "
        f"trust it explicitly with: chainproof trust add PEM"
    )


def describe_owner_trust(keyid: str, *, store: TrustStore | None, owner_key_files: dict[str, str] | None = None) -> dict[str, str]:
    """Say which trusted key verified a layout and where that trust came from.

    Args:
        keyid: the owner key id that verified.
        store: the trust store that was used (``None`` when keys came from ``--owner-key``).
        owner_key_files: key id to the ``--owner-key`` file it came from.

    Returns:
        ``keyid``, ``source`` (one line) and, for trust store keys, ``added_by`` and ``added_at``.
    """
    if owner_key_files and keyid in owner_key_files:
        return {"keyid": keyid, "source": f"--owner-key {owner_key_files[keyid]} (given on the command line)",
                "added_by": "", "added_at": "", "development": ""}
    entry: TrustedKey | None = None
    if store is not None:
        entry = next((e for e in store.entries() if e.keyid == keyid), None)
    if entry is None:
        return {"keyid": keyid, "source": "given by the caller", "added_by": "", "added_at": "", "development": ""}
    return {
        "keyid": keyid,
        "source": f"trust store {store.directory if store else ''}: {entry.describe()}",
        "added_by": entry.added_by,
        "added_at": entry.added_at,
        "development": "yes" if entry.development else "no",
    }
