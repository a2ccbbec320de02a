"""The chain simulator for the verifier's tests, built per test module or taken prebuilt.

Normally each test module builds its own chain (``simulate_chain``, a few seconds). Mutation
testing (``scripts/mutation.sh verify``) runs the verifier's tests once per mutant, ~1500
times: building the chain each time would take hours, so the script builds a few chains once,
with the unmutated code (``python -m tests.simulated_chain DEST N``), and points
``CHAINPROOF_SIMULATED_CHAINS`` at them. A test module then claims one that no other process
holds (an exclusive ``flock``), restores it to its built state, and releases it when the
module ends. The tests themselves are the same either way.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from chainproof.signing import KeyRing
from chainproof.testing.chain import SimulatedChain, simulate_chain

PREBUILT = "CHAINPROOF_SIMULATED_CHAINS"


def built_chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatedChain]:
    """Yield a chain for one test module: built here, or claimed from ``$CHAINPROOF_SIMULATED_CHAINS``."""
    prebuilt = os.environ.get(PREBUILT)
    if not prebuilt:
        yield simulate_chain(tmp_path_factory.mktemp("simulated"))
        return
    for root in sorted(p for p in Path(prebuilt).iterdir() if (p / "chain.json").is_file()):
        with open(root / "chain.json") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            doc = json.load(handle)
            chain = SimulatedChain(root=root, keys=KeyRing.load(root / "keys"),
                                   model_name=doc["model_name"], reference=doc["reference"])
            chain.restore()  # a process killed mid-test (a mutant's timeout) may have left it edited
            yield chain
            return
    raise RuntimeError(f"{PREBUILT}={prebuilt}: every prebuilt chain is in use; build more")


def prebuild(dest: Path, count: int) -> None:
    """Build ``count`` chains under ``dest`` (``dest/0``, ``dest/1``, ...) for :func:`built_chain`."""
    for i in range(count):
        root = dest / str(i)
        if (root / "chain.json").is_file():
            continue
        chain = simulate_chain(root)
        (root / "chain.json").write_text(json.dumps({"model_name": chain.model_name, "reference": chain.reference}))


if __name__ == "__main__":
    prebuild(Path(sys.argv[1]).resolve(), int(sys.argv[2]))
