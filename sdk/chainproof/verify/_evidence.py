"""Check (8): the evidence the bundle carries is the evidence the links attest."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from chainproof.digests import check_artifacts, digest_tree
from chainproof.errors import (
    ArtifactRefused,
    ChainError,
    DigestMismatch,
    InputError,
)
from chainproof.verify._types import (
    _NOT_EVIDENCE,
    BUNDLE_INDEX,
    BUNDLED_PREFIXES,
    KEYS_DIR,
    LINKS_DIR,
    StepRecord,
    _read_limited,
)

__all__ = ['bundled_files', 'check_artifacts', 'products_with_prefix', 'read_bundle_index', 'verify_bundled_evidence']


def products_with_prefix(records: Mapping[str, StepRecord], prefix: str) -> tuple[str, dict[str, str]]:
    """Return the last step that produced artifacts under ``prefix`` and those products.

    Args:
        records: verified steps in layout order.
        prefix: a logical prefix such as ``model/``.

    Returns:
        (step name, logical name to SHA-256).

    Raises:
        ChainError: no step produced anything under the prefix.
    """
    last: tuple[str, dict[str, str]] | None = None
    for name, record in records.items():
        found = {k: v for k, v in record.products.items() if k.startswith(prefix)}
        if found:
            last = (name, found)
    if last is None:
        raise ChainError("?", f"no step of the chain produced any {prefix}* artifact")
    return last


def bundled_files(bundle_dir: Path) -> dict[str, str]:
    """Hash the evidence files a bundle carries (``run/``, ``attestations/``, ...).

    Args:
        bundle_dir: the bundle folder.

    Returns:
        Logical name to SHA-256 of every file outside ``root.layout``, ``links/``,
        ``keys/`` and ``bundle.json``.
    """
    files = {}
    for name, digest in digest_tree(bundle_dir).items():
        top = name.split("/", 1)[0]
        if name in _NOT_EVIDENCE or top in (LINKS_DIR, KEYS_DIR):
            continue
        files[name] = digest
    return files


def verify_bundled_evidence(bundle_dir: Path, records: Mapping[str, StepRecord]) -> list[str]:
    """(8) Check every evidence file the bundle carries against the link that produced it.

    Args:
        bundle_dir: the bundle folder.
        records: the verified steps.

    Returns:
        The logical names checked.

    Raises:
        DigestMismatch: an evidence file differs from its attested product.
        ArtifactRefused: an attested evidence file is missing, or an unattested one was added.
    """
    attested: dict[str, tuple[str, str]] = {}
    for name, record in records.items():
        for product, digest in record.products.items():
            if product.startswith(BUNDLED_PREFIXES):
                attested[product] = (name, digest)
    actual = bundled_files(bundle_dir)
    for product, (step, digest) in sorted(attested.items()):
        if product not in actual:
            raise ArtifactRefused(product, f"evidence produced by {step} is missing from the bundle")
        if actual[product] != digest:
            raise DigestMismatch(product, digest, actual[product], context=f"produced by {step}")
    extra = sorted(set(actual) - set(attested))
    if extra:
        raise ArtifactRefused(extra[0], "file in the bundle that no step of the chain produced")
    return sorted(attested)


def read_bundle_index(bundle_dir: Path) -> dict[str, Any]:
    """Read ``bundle.json`` (an unsigned index: used to locate files, never trusted for digests).

    Args:
        bundle_dir: the bundle folder.

    Returns:
        The index, or ``{}`` when there is none.

    Raises:
        InputError: the index is not a JSON object.
    """
    path = bundle_dir / BUNDLE_INDEX
    if not path.is_file():
        return {}
    try:
        doc = json.loads(_read_limited(path, 1_000_000, BUNDLE_INDEX))
    except ValueError as exc:
        raise InputError(f"{path}: not JSON") from exc
    if not isinstance(doc, dict):
        raise InputError(f"{path}: expected a JSON object")
    return doc
