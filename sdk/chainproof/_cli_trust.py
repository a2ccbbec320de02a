"""``chainproof trust list | add PEM | remove KEYID``: the trust store, managed explicitly.

Example:
    $ chainproof trust add owner.pub
    $ chainproof trust list
    $ chainproof trust remove 3f2a9c01d4e5b6a7

Nothing becomes trusted as a side effect; each key carries where its trust came
from (which command, who, when), and ``trust list`` shows it.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["add_parsers"]


def _store(trust_dir: Callable[[], Path]) -> Any:
    from chainproof.signing import TrustStore

    return TrustStore(trust_dir())


def add_parsers(sub: Any, *, trust_dir: Callable[[], Path], common: list[argparse.ArgumentParser]) -> None:
    """Register ``trust`` and its subcommands on the top-level subparsers.

    Args:
        sub: the top-level ``add_subparsers`` object.
        trust_dir: returns the trust store folder (the CLI reads the environment).
        common: parent parsers every subcommand takes (``--verbose``).
    """
    trust = sub.add_parser("trust", help="list, add or remove trusted layout-owner keys", parents=common)
    tsub = trust.add_subparsers(dest="trust_command", required=True)

    def cmd_list(args: argparse.Namespace) -> int:
        entries = _store(trust_dir).entries()
        if args.format == "json":
            sys.stdout.write(json.dumps({"trust_dir": str(trust_dir()), "keys": [e.to_dict() for e in entries]},
                                        sort_keys=True) + "\n")
            return 0
        if not entries:
            print(f"no trusted owner key in {trust_dir()}")
        for e in entries:
            print(f"{e.keyid}  {e.describe()}")
        return 0

    def cmd_add(args: argparse.Namespace) -> int:
        from chainproof.signing import load_public_key

        key = load_public_key(args.pem)
        store = _store(trust_dir)
        known = {e.keyid for e in store.entries()}
        source = "chainproof trust add " + shlex.quote(str(Path(args.pem).absolute()))
        if args.note:
            source += f" ({args.note})"
        store.add(key, source=source, development=args.development)
        entry = store.find(str(key.keyid))
        if args.format == "json":
            sys.stdout.write(json.dumps({"added": key.keyid not in known, **entry.to_dict()}, sort_keys=True) + "\n")
        else:
            verb = "already trusted" if key.keyid in known else "trusted"
            print(f"OK: {verb}: {entry.describe()}")
        return 0

    def cmd_remove(args: argparse.Namespace) -> int:
        entry = _store(trust_dir).remove(args.keyid)
        if args.format == "json":
            sys.stdout.write(json.dumps({"removed": entry.to_dict()}, sort_keys=True) + "\n")
        else:
            print(f"OK: no longer trusted: key {entry.keyid}")
        return 0

    p = tsub.add_parser("list", help="list trusted owner keys and where their trust came from", parents=common)
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_list, _usage_parser=p)
    p = tsub.add_parser("add", help="trust an owner public key (PEM)", parents=common)
    p.add_argument("pem", help="the owner's public key, a PEM file obtained independently of any bundle")
    p.add_argument("--note", default="", help="why it is trusted (recorded with the key)")
    p.add_argument("--development", action="store_true", help="record it as a development key")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_add, _usage_parser=p)
    p = tsub.add_parser("remove", help="stop trusting a key (full key id or a unique prefix of 8+ hex)", parents=common)
    p.add_argument("keyid")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_remove, _usage_parser=p)
    trust.set_defaults(_usage_parser=trust)
