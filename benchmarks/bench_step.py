"""Overhead of the chainproof.dsl wrapper per step, over the same plain kfp component (cold process).

``python -m benchmarks.bench_step [--reps N]``: runs a 5-step pipeline of plain kfp components and the
same pipeline of chainproof.dsl components with kfp.local's SubprocessRunner (one cold process per
step), interleaved, and prints the median wall time of each and the overhead per step in ms. The
layout is derived, signed and pinned once, outside the timed runs (the owner does that per run, not
per step).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import shutil
import tempfile
import uuid
from pathlib import Path

from benchmarks._common import interleave


def main(argv: list[str] | None = None) -> int:
    import kfp.local

    from benchmarks._step_pipelines import STEPS, plain_steps, zero_trust_steps
    from chainproof.dsl import derive_graph
    from chainproof.policy import generate_layout, sign_layout
    from chainproof._exec import escape_for_kfp_local
    from chainproof.runner import local_file_uri
    from chainproof.signing import init_keys, load_public_key, load_signer, public_key_pem
    from chainproof.step import RunConfig

    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_step")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--out", default=str(Path(__file__).with_name("step_overhead.json")))
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="chainproof-bench-step-"))
    graph = derive_graph(zero_trust_steps)
    ring = init_keys(work / "keys", roles=["owner", *graph.step_names], development=True)
    owner = load_signer(ring.signer_reference("owner"))
    keys = {s: load_public_key(ring.public_key_path(s)) for s in graph.step_names}
    layout = sign_layout(generate_layout(graph.steps, keys, extensions=graph.extensions()), owner)
    (work / "root.layout").write_bytes(layout)

    def config() -> str:
        return RunConfig(
            layout_uri=local_file_uri(work / "root.layout"), layout_sha256=hashlib.sha256(layout).hexdigest(),
            signers={s: ring.signer_reference(s) for s in graph.step_names}, run=uuid.uuid4().hex,
            owner_public_key=public_key_pem(owner.public_key),
        ).to_json()

    def escaped_config() -> str:
        return escape_for_kfp_local(config())

    def run(pipeline, **params) -> None:  # noqa: ANN001
        root = work / "root"
        shutil.rmtree(root, ignore_errors=True)
        with contextlib.redirect_stdout(io.StringIO()):
            kfp.local.init(runner=kfp.local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
            pipeline(**params)

    res = interleave({
        "plain kfp components": lambda: run(plain_steps),
        "chainproof.dsl components": lambda: run(zero_trust_steps, chainproof_config=escaped_config()),
    }, reps=args.reps, warmup=True, log=lambda m: print(m, flush=True))
    plain = res["plain kfp components"]["median_s"]
    ours = res["chainproof.dsl components"]["median_s"]
    overhead_ms = (ours - plain) / STEPS * 1000
    doc = {"steps": STEPS, "reps": args.reps, "contenders": res, "overhead_per_step_ms": round(overhead_ms, 1),
           "goal_ms": 150, "met": overhead_ms <= 150}
    Path(args.out).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    print(f"plain {plain:.2f} s, chainproof.dsl {ours:.2f} s for {STEPS} steps: "
          f"{overhead_ms:.0f} ms per step (goal <= 150 ms)")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
