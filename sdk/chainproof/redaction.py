"""Redact credentials from free text before chainproof writes it anywhere (logs included).

Example:
    >>> from chainproof.redaction import redact_text
    >>> redact_text("fetching https://bot:hunter2@h/x.csv?sig=abc now")
    'fetching https://REDACTED@h/x.csv?sig=REDACTED now'

:func:`chainproof.storage.redact_uri` redacts one URI; logs hold URIs inside other
text (kfp.local prints each task's executor input, parameters included). This finds
every URI in a text and redacts it, and also replaces the exact secret-bearing
strings a caller names (the source URI as given, and as kfp.local sees it).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from chainproof.storage import redact_uri

__all__ = ["Redactor", "redact_text"]

# A URI with a scheme, up to whitespace or a quote/bracket that ends it in logs and JSON.
_URI = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]{1,15}://[^\s\"'<>\\)\]}]+")


def redact_text(text: str) -> str:
    """Return ``text`` with every URI in it passed through ``redact_uri``.

    Args:
        text: any text (a log line, a JSON document).

    Returns:
        The text with user information and query values of every URI redacted.
    """
    return _URI.sub(lambda m: redact_uri(m.group(0)), text)


class Redactor:
    """Redacts known secret-bearing strings, then every URI, from text.

    Args:
        secrets: strings that must never be written as they are (source URIs with
            credentials); each is replaced by its ``redact_uri`` form.
    """

    def __init__(self, secrets: Iterable[str] = (), *, encodings: Iterable[Callable[[str], str]] = ()) -> None:
        """Remember the secret-bearing strings (longest first, so none hides inside another).

        ``encodings`` are other forms a secret may be written in (the hex escape kfp.local
        parameters travel in); each encoded secret is replaced by its redacted form too.
        """
        pairs = {s: redact_uri(s) for s in secrets if s and redact_uri(s) != s}
        for encode in list(encodings):
            pairs.update({encode(s): shown for s, shown in list(pairs.items()) if encode(s) != s})
        self._pairs = sorted(pairs.items(), key=lambda kv: -len(kv[0]))

    def __call__(self, text: str) -> str:
        """Return the redacted text."""
        for secret, shown in self._pairs:
            text = text.replace(secret, shown)
        return redact_text(text)
