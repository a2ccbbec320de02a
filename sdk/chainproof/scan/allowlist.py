"""The allowlist of exact globals a scanned pickle may name.

Example:
    >>> from chainproof.scan.allowlist import Allowlist
    >>> default = Allowlist.default()
    >>> default.allows("sklearn.ensemble._forest", "RandomForestClassifier")
    True
    >>> default.allows("os", "system")
    False
    >>> mine = default.extend(["mypkg.models:MyEstimator"])
    >>> mine.extensions, mine.allows("mypkg.models", "MyEstimator")
    (('mypkg.models:MyEstimator',), True)

An entry is a module and a qualified name, matched exactly: never a module
prefix, because ML packages also hold helpers that run code or import by
string. The shipped list is data (``chainproof/data/allowlist-v1.json``), with a
version and a digest, so an attestation can record exactly which list (and
which user extensions) a scan accepted.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from chainproof.errors import InputError

__all__ = ["DEFAULT_ALLOWLIST", "Allowlist"]

#: The packaged allowlist's resource name.
DEFAULT_ALLOWLIST = "allowlist-v1.json"
_SCHEMA = "https://chainproof.dev/scan/allowlist/v1"
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_MODULE = re.compile(rf"^{_IDENT}(\.{_IDENT})*$")
_QUALNAME = re.compile(rf"^{_IDENT}(\.{_IDENT})*$")

# Never accepted, not even as a user extension: each runs code, imports by
# string, or reaches the file system or the network. An extension that names
# one of these is an error, not a silent weakening.
_NEVER_MODULES = frozenset(
    {
        "os", "posix", "nt", "subprocess", "sys", "runpy", "importlib", "pickle", "_pickle",
        "marshal", "code", "codeop", "pty", "shutil", "socket", "ctypes", "pydoc", "bdb",
        "pdb", "cProfile", "profile", "timeit", "trace", "webbrowser", "zipimport", "asyncio",
        "multiprocessing", "operator", "functools", "types", "inspect", "dill", "cloudpickle",
    }
)
_NEVER_BUILTINS = frozenset(
    {
        "eval", "exec", "compile", "getattr", "setattr", "delattr", "__import__", "open",
        "globals", "locals", "vars", "input", "breakpoint", "help", "memoryview", "type",
    }
)


@dataclass(frozen=True)
class Allowlist:
    """Exact globals (module, qualified name) a pickle may name.

    Build it with :meth:`default` or :meth:`load`, widen it with :meth:`extend`
    (which returns a new allowlist that remembers the extension).

    Attributes:
        version: the version of the base list.
        source: where the base list came from.
        sha256: the digest of the base list's bytes.
        entries: every accepted ``(module, qualname)``.
        extensions: the user's additions, as ``module:qualname``, in order.
    """

    version: int
    source: str
    sha256: str
    entries: frozenset[tuple[str, str]]
    extensions: tuple[str, ...] = field(default=())

    @classmethod
    def default(cls) -> Allowlist:
        """Return the allowlist shipped with chainproof (``data/allowlist-v1.json``)."""
        data = resources.files("chainproof").joinpath("data", DEFAULT_ALLOWLIST).read_bytes()
        return cls.from_json(data, source=f"chainproof:data/{DEFAULT_ALLOWLIST}")

    @classmethod
    def load(cls, path: str | Path) -> Allowlist:
        """Load an allowlist document (the same schema as the shipped one).

        Args:
            path: the JSON file.

        Returns:
            The allowlist.

        Raises:
            InputError: the file is missing or not an allowlist document.
        """
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise InputError(f"{path}: cannot read the allowlist ({exc.strerror})") from exc
        return cls.from_json(data, source=str(path))

    @classmethod
    def from_json(cls, data: bytes, *, source: str) -> Allowlist:
        """Parse an allowlist document.

        Args:
            data: the document's bytes.
            source: where it came from (recorded in :meth:`describe`).

        Returns:
            The allowlist.

        Raises:
            InputError: not an allowlist document, or an entry is malformed.
        """
        try:
            doc = json.loads(data)
        except ValueError as exc:
            raise InputError(f"{source}: not JSON ({exc})") from exc
        if not isinstance(doc, dict) or doc.get("schema") != _SCHEMA:
            raise InputError(f"{source}: not an allowlist document (expected schema {_SCHEMA})")
        version = doc.get("version")
        if not isinstance(version, int):
            raise InputError(f"{source}: 'version' must be an integer")
        entries = _parse_globals(doc.get("globals"), source=source)
        return cls(version=version, source=source, sha256=hashlib.sha256(data).hexdigest(), entries=frozenset(entries))

    def allows(self, module: str, name: str) -> bool:
        """Return whether ``module`` / ``name`` is exactly an entry."""
        return (module, name) in self.entries

    def dotted_names(self) -> frozenset[str]:
        """Return every entry as ``module.qualname`` (the form skops reports)."""
        return frozenset(f"{m}.{n}" for m, n in self.entries)

    def extend(self, names: Iterable[str]) -> Allowlist:
        """Return a new allowlist that also accepts ``names``.

        Args:
            names: entries as ``module:qualname`` (the colon removes any doubt
                about where the module ends).

        Returns:
            The wider allowlist; its ``extensions`` lists every addition.

        Raises:
            InputError: an entry is malformed, or names something that is never
                accepted (``os``, ``subprocess``, ``builtins.eval``, ...).
        """
        added = []
        for raw in names:
            module, name = _split_entry(raw, source="extension")
            _refuse_never(module, name, source="extension")
            added.append((module, name))
        return Allowlist(
            version=self.version,
            source=self.source,
            sha256=self.sha256,
            entries=self.entries | frozenset(added),
            extensions=self.extensions + tuple(f"{m}:{n}" for m, n in added),
        )

    def describe(self) -> dict[str, Any]:
        """Return what an attestation records: the base list and the extensions."""
        return {
            "version": self.version,
            "source": self.source,
            "sha256": self.sha256,
            "entries": len(self.entries),
            "extensions": list(self.extensions),
        }


def load_extension_names(path: str | Path) -> list[str]:
    """Read user extensions: a JSON list of ``module:qualname``, or ``{"globals": {module: [names]}}``.

    Args:
        path: the JSON file.

    Returns:
        The entries as ``module:qualname``.

    Raises:
        InputError: the file is missing or malformed.
    """
    try:
        doc = json.loads(Path(path).read_bytes())
    except OSError as exc:
        raise InputError(f"{path}: cannot read the allowlist extension ({exc.strerror})") from exc
    except ValueError as exc:
        raise InputError(f"{path}: not JSON ({exc})") from exc
    if isinstance(doc, list) and all(isinstance(x, str) for x in doc):
        return list(doc)
    if isinstance(doc, dict) and "globals" in doc:
        return [f"{m}:{n}" for m, n in sorted(_parse_globals(doc["globals"], source=str(path)))]
    raise InputError(f"{path}: expected a JSON list of 'module:qualname' or an object with 'globals'")


def _split_entry(raw: str, *, source: str) -> tuple[str, str]:
    if not isinstance(raw, str) or raw.count(":") != 1:
        raise InputError(f"{source}: {raw!r} is not 'module:qualname'")
    module, name = raw.split(":")
    _check_entry(module, name, source=source)
    return module, name


def _check_entry(module: Any, name: Any, *, source: str) -> None:
    if not isinstance(module, str) or not _MODULE.match(module):
        raise InputError(f"{source}: {module!r} is not a module name")
    if not isinstance(name, str) or not _QUALNAME.match(name):
        raise InputError(f"{source}: {name!r} is not a qualified name in {module}")


def _refuse_never(module: str, name: str, *, source: str) -> None:
    top = module.split(".")[0]
    if top in _NEVER_MODULES or (module == "builtins" and name in _NEVER_BUILTINS):
        raise InputError(f"{source}: {module}:{name} is never accepted: it can run code or import by name")


def _parse_globals(value: Any, *, source: str) -> set[tuple[str, str]]:
    if not isinstance(value, Mapping):
        raise InputError(f"{source}: 'globals' must map modules to lists of names")
    out = set()
    for module, names in value.items():
        if not isinstance(names, list):
            raise InputError(f"{source}: globals[{module!r}] must be a list of names")
        for name in names:
            _check_entry(module, name, source=source)
            _refuse_never(module, name, source=source)
            out.add((module, name))
    return out
