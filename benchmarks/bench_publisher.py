"""Publisher signatures, offline: chainproof vs the ``model_signing`` command, on model-transparency's own signatures.

The three signed folders of sigstore/model-transparency's test fixtures (an EC key, a
certificate chain, keyless Sigstore; see PLATFORM-FACTS.md) are tiny: what is measured is
the fixed cost of one verification (parsing the bundle, the chain or the Sigstore trust
root, hashing), not hashing throughput (``bench_hash`` covers that).

- ``chainproof (in-process)``: :func:`chainproof.publisher.verify_publisher_signature` on the
  quarantined copy (signature and ``ignore-me`` left out), after imports.
- ``chainproof ingest (command)``: the whole command, as a user runs it: fetch into
  quarantine, verify, scan, release.
- ``model_signing verify (command)``: the library's own CLI with ``--ignore-paths ignore-me``.
  Its ``sigstore`` mode refreshes TUF metadata over the network and cannot verify offline; it
  is not run (no traffic leaves this machine) and is reported as skipped.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks._common import Context, Skip, interleave, target

NAME = "publisher"

DATA = Path("/work/shared/data/model-transparency/scripts/tests")
CERTS = DATA / "keys" / "certificate"
IDENTITY, ISSUER = "stefanb@us.ibm.com", "https://sigstore.verify.ibm.com/oauth2"
FOLDERS = {"key": "v1.0.1-elliptic-key", "certificate": "v1.0.1-certificate", "sigstore": "v1.0.1-sigstore"}


def _policy(kind: str) -> Any:
    from chainproof.publisher import PublisherPolicy

    if kind == "key":
        return PublisherPolicy.key((CERTS / "signing-key-pub.pem").read_text(), ignore=("ignore-me",))
    if kind == "certificate":
        return PublisherPolicy.certificate((CERTS / "signing-key-cert.pem").read_text(),
                                           [(CERTS / "ca-cert.pem").read_text()], ignore=("ignore-me",))
    return PublisherPolicy.sigstore(identity=IDENTITY, issuer=ISSUER, ignore=("ignore-me",))


def _flags(kind: str) -> list[str]:
    if kind == "key":
        return ["--publisher-key", str(CERTS / "signing-key-pub.pem")]
    if kind == "certificate":
        return ["--publisher-certificate", str(CERTS / "signing-key-cert.pem"), "--publisher-ca", str(CERTS / "ca-cert.pem")]
    return ["--publisher-identity", IDENTITY, "--publisher-issuer", ISSUER]


def _model_signing(kind: str, folder: Path, *, quick: bool) -> None:
    if kind == "sigstore":
        raise Skip("model_signing verify sigstore refreshes TUF metadata online; it cannot verify offline (not run)")
    if quick:
        raise Skip("quick mode: commands not run")
    args = [sys.executable, "-m", "model_signing", "verify", kind, "--signature", str(folder / "model.sig"),
            "--ignore-paths", str(folder / "ignore-me")]
    if kind == "key":
        args += ["--public_key", str(CERTS / "signing-key-pub.pem")]
    else:
        args += ["--certificate_chain", str(CERTS / "ca-cert.pem")]
    proc = subprocess.run([*args, str(folder)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"model_signing verify {kind} failed: {proc.stderr.strip()[-300:]}")


def run(ctx: Context) -> dict[str, Any]:
    from chainproof.publisher import verify_publisher_signature

    if not DATA.is_dir():
        return {"note": f"{DATA} is not here; nothing measured", "cases": []}
    chainproof_bin = str(Path(sys.executable).parent / "chainproof")
    cases = []
    for kind, name in FOLDERS.items():
        src = ctx.work / f"publisher-{kind}"
        shutil.rmtree(src, ignore_errors=True)
        shutil.copytree(DATA / name, src)
        quarantined = ctx.work / f"publisher-{kind}-q"
        shutil.rmtree(quarantined, ignore_errors=True)
        shutil.copytree(DATA / name, quarantined, ignore=lambda _d, names: [n for n in names if n in ("model.sig", "ignore-me")])
        out = ctx.work / f"publisher-{kind}-out"
        policy = _policy(kind)

        def ingest_cmd(kind: str = kind, src: Path = src, out: Path = out) -> None:
            if ctx.quick:
                raise Skip("quick mode: commands not run")
            shutil.rmtree(out, ignore_errors=True)
            proc = subprocess.run([chainproof_bin, "ingest", str(src), "-o", str(out), *_flags(kind), "--ignore", "ignore-me"],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"chainproof ingest ({kind}) failed: {proc.stderr.strip()[-300:]}")

        res = interleave({
            "chainproof (in-process)": lambda q=quarantined, s=src, p=policy: verify_publisher_signature(q, s / "model.sig", p),
            "chainproof ingest (command)": ingest_cmd,
            "model_signing verify (command)": lambda kind=kind, src=src: _model_signing(kind, src, quick=ctx.quick),
        }, reps=ctx.reps, log=ctx.log, warmup=not ctx.quick)
        ours = res["chainproof (in-process)"].get("median_s")
        targets = [target("one offline verification < 1 s (in-process)", bool(ours is not None and ours < 1.0),
                          f"{ours:.3f} s" if ours is not None else "n/a")]
        cases.append({"case": f"{kind} ({name})", "base": "chainproof (in-process)", "contenders": res, "targets": targets})
        for path in (src, quarantined, out):
            shutil.rmtree(path, ignore_errors=True)
    return {"note": "model-transparency's signed fixtures (2 small files each); fixed cost of one verification, offline",
            "cases": cases}
