"""A loopback HTTPS object server in its own process (so it does not share our GIL).

Usage: python -m benchmarks._object_server CERT KEY NAME=FILE [NAME=FILE ...]
Prints the port, then serves until stdin closes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from chainproof.testing.servers import object_server


def main() -> None:
    cert, key, *pairs = sys.argv[1:]
    objects = {}
    for pair in pairs:
        name, _, path = pair.partition("=")
        objects["/" + name] = Path(path).read_bytes()
    with object_server(objects, tls=(Path(cert), Path(key))) as srv:
        print(srv.server_address[1], flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
