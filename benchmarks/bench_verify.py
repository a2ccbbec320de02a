"""Verify a chain of 6 steps with N artifacts per link: chainproof vs in-toto-verify, same bundle.

Bundles are built with chainproof's own ``policy.generate_layout`` (six
``StepSpec``s: each step MATCHes its predecessor's products and CREATEs N new
ones), ``attest.record_link`` and keys from ``signing.init_keys``.

chainproof's side is the chain part of ``verify_bundle``: steps (1)-(7) of
docs/verification.md (layout parse, owner signature, expiry, links and their
signatures, artifact rules, step order). The rest of ``verify_bundle`` checks the
delivered model and bundled evidence, which a synthetic chain does not have.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks._common import Context, fmt_bytes, interleave, target

NAME = "verify"
STEPS = 6
#: Link files grow ~110 bytes per artifact; the default 4 MB per-file limit refuses
#: 100k-artifact links, so the benchmark raises it explicitly (a documented option).
BIG_LIMIT = 256_000_000


def build_bundle(root: Path, n: int) -> dict[str, Path]:
    """Write keys/, root.layout and links/ for a 6-step chain with ``n`` artifacts per link."""
    from chainproof.attest import record_link, write_link
    from chainproof.identity import Principal
    from chainproof.policy import StepSpec, generate_layout, sign_layout
    from chainproof.signing import init_keys, load_public_key, load_signer

    shutil.rmtree(root, ignore_errors=True)
    names = [f"step{i}" for i in range(1, STEPS + 1)]
    ring = init_keys(root / "keys", roles=["owner", *names], development=True)
    specs = []
    for i, name in enumerate(names, start=1):
        if i == 1:
            materials: tuple[tuple[str, ...], ...] = (("DISALLOW", "*"),)
        else:
            materials = (("MATCH", f"a{i - 1}/*", "WITH", "PRODUCTS", "FROM", names[i - 2]), ("DISALLOW", "*"))
        products = (("CREATE", f"a{i}/*"), ("DISALLOW", "*"))
        specs.append(StepSpec(name=name, expected_materials=materials, expected_products=products, description=name))
    keys = {name: load_public_key(ring.public_key_path(name)) for name in names}
    layout = generate_layout(specs, keys)
    owner = load_signer(ring.signer_reference("owner"))
    (root / "root.layout").write_bytes(sign_layout(layout, owner))
    (root / "links").mkdir()
    principal = Principal(kind="local-user", name="bench@localhost")
    previous: dict[str, str] = {}
    for i, name in enumerate(names, start=1):
        products = {f"a{i}/f{j:06d}.bin": hashlib.sha256(f"{i}/{j}".encode()).hexdigest() for j in range(n)}
        env = record_link(name, materials=previous, products=products,
                          signer=load_signer(ring.signer_reference(name)), principal=principal, parameters={})
        write_link(env, root / "links")
        previous = products
    return {"layout": root / "root.layout", "links": root / "links", "owner_pub": ring.public_key_path("owner")}


def chainproof_verify(b: dict[str, Path]) -> None:
    from chainproof.signing import load_public_key
    from chainproof.verify import VerifyOptions, load_layout, verify_chain_links, verify_layout_signature

    owner = load_public_key(b["owner_pub"])
    envelope, layout = load_layout(b["layout"].read_bytes())
    verify_layout_signature(envelope, {owner.keyid: owner})
    verify_chain_links(layout, b["links"], options=VerifyOptions(max_metadata_bytes=BIG_LIMIT))


def intoto_verify_lib(b: dict[str, Path]) -> None:
    from in_toto import verifylib
    from in_toto.models.metadata import Metadata

    from chainproof.signing import load_public_key

    owner = load_public_key(b["owner_pub"])
    metadata = Metadata.load(str(b["layout"]))
    verifylib.in_toto_verify(metadata, {owner.keyid: owner.to_dict() | {"keyid": owner.keyid}},
                             link_dir_path=str(b["links"]))


def intoto_verify_cli(b: dict[str, Path]) -> None:
    exe = Path(sys.executable).with_name("in-toto-verify")
    subprocess.run([str(exe), "-q", "--layout", str(b["layout"]), "--verification-keys", str(b["owner_pub"]),
                    "--link-dir", str(b["links"])], check=True, cwd=b["links"].parent)


def run(ctx: Context) -> dict[str, Any]:
    sizes = [10, 100, 1000] if ctx.quick else [1_000, 10_000, 100_000]
    cases = []
    for n in sizes:
        root = ctx.work / f"verify-{n}"
        b = build_bundle(root, n)
        link_bytes = sum(p.stat().st_size for p in b["links"].iterdir())
        ctx.log(f"  6 links x {n} artifacts ({fmt_bytes(link_bytes)} of links)")
        reps = ctx.reps if n < 100_000 else max(1, min(ctx.reps, 3))
        res = interleave({
            "chainproof verify (chain, steps 1-7)": lambda: chainproof_verify(b),
            "in-toto verifylib.in_toto_verify": lambda: intoto_verify_lib(b),
            "in-toto-verify (command)": lambda: intoto_verify_cli(b),
        }, reps=reps, log=ctx.log, warmup=not ctx.quick)
        targets = []
        ours = res["chainproof verify (chain, steps 1-7)"]["median_s"]
        if n == 10_000:
            targets.append(target("10k artifacts < 2 s", bool(ours < 2.0), f"{ours:.3f} s"))
        cases.append({"case": f"6 steps x {n} artifacts", "artifacts": n, "link_bytes": link_bytes,
                      "base": "chainproof verify (chain, steps 1-7)", "contenders": res, "targets": targets})
        shutil.rmtree(root, ignore_errors=True)
    # Linearity: time per artifact should not grow with N (compare the two largest sizes).
    targets = []
    for who in cases[0]["contenders"]:
        pts = [(c["artifacts"], c["contenders"][who].get("median_s")) for c in cases]
        if all(t for _, t in pts):
            (n1, t1), (n2, t2) = pts[-2], pts[-1]
            growth = (t2 / t1) / (n2 / n1)
            targets.append(target(
                f"cost linear in artifacts ({who})",
                bool(growth <= 1.5) if who.startswith("chainproof") else None,
                f"x{n2 // n1} artifacts -> x{t2 / t1:.1f} time (per-artifact cost x{growth:.2f})",
            ))
    return {"note": f"{STEPS} links; each step MATCHes all of its predecessor's products and CREATEs N new ones; "
                    "per-link size limit raised to 256 MB for the largest bundle (default 4 MB refuses it)",
            "cases": cases, "targets": targets}
