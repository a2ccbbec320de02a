"""Container image references: pinned by digest, never by tag alone.

Example:
    >>> from chainproof.images import check_image_reference
    >>> ref = check_image_reference("europe-docker.pkg.dev/p/r/chainproof@sha256:" + "a" * 64)
    >>> ref.digest[:8]
    'aaaaaaaa'

A tag (``image:1.2``) can be moved to other bytes at any time; a digest names
exactly one image manifest. Every component image chainproof compiles into a
pipeline goes through :func:`check_image_reference`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from chainproof.errors import InputError

__all__ = ["ImageReference", "check_image_reference"]

# REGISTRY[:PORT]/PATH[:TAG]@sha256:DIGEST. The registry host is mandatory: a bare
# "python@sha256:..." would be resolved against whatever default registry the runtime has.
_IMAGE = re.compile(
    r"(?P<repository>(?P<registry>[a-z0-9.-]+(?::[0-9]+)?)/[a-z0-9._/-]+)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"@sha256:(?P<digest>[0-9a-f]{64})"
)


@dataclass(frozen=True)
class ImageReference:
    """A digest-pinned image reference.

    Attributes:
        reference: the reference as given.
        repository: ``REGISTRY/PATH``.
        digest: the hex SHA-256 of the image manifest.
        tag: the tag that was written next to the digest, if any (informational only).
    """

    reference: str
    repository: str
    digest: str
    tag: str = ""


def check_image_reference(reference: str) -> ImageReference:
    """Accept only ``REGISTRY/PATH[:TAG]@sha256:DIGEST``.

    Args:
        reference: the image reference.

    Returns:
        The parsed reference.

    Raises:
        InputError: a tag-only reference, a malformed digest, an all-zero digest, or no registry host.
    """
    text = reference.strip()
    m = _IMAGE.fullmatch(text)
    if m is None:
        if "@sha256:" not in text:
            raise InputError(
                f"image {reference!r}: not pinned by digest; use REGISTRY/PATH@sha256:DIGEST "
                "(a tag can be moved to other bytes, a digest cannot)"
            )
        raise InputError(f"image {reference!r}: expected REGISTRY/PATH[:TAG]@sha256:<64 lowercase hex>")
    if m.group("digest") == "0" * 64:
        raise InputError(f"image {reference!r}: the all-zero digest is a placeholder, not an image")
    if "." not in m.group("registry") and ":" not in m.group("registry") and m.group("registry") != "localhost":
        raise InputError(f"image {reference!r}: name the registry host (e.g. europe-docker.pkg.dev/PROJECT/REPO/NAME)")
    return ImageReference(reference=text, repository=m.group("repository"), digest=m.group("digest"), tag=m.group("tag") or "")
