"""Supply-chain evidence: what an SBOM and an OSV scan cost a step.

Cases: the CycloneDX SBOM of the running environment and of ``image/requirements.lock``
(``cyclonedx-py`` in a child process, as :mod:`chainproof.supply` runs it, with and without its
schema validation), loading the OSV advisory folder (cold: parse every file; warm: the
per-process cache), and matching each SBOM against it. The advisory folder is the shared
pypa/advisory-database snapshot; without it the scan cases are skipped.

Run alone with ``python -m benchmarks.bench_supply [--quick]``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from benchmarks._common import REPO, Context, Skip, interleave, target

NAME = "supply"

ADVISORIES = [REPO.parent / "shared" / "data" / "pypa-advisory-database" / "vulns",
              Path("/work/shared/data/pypa-advisory-database/vulns")]


def _advisories() -> Path:
    for path in ADVISORIES:
        if path.is_dir():
            return path
    raise Skip("the pypa advisory-database snapshot is not beside the repository")


def run(ctx: Context) -> dict[str, Any]:
    """Time SBOM generation, advisory loading and matching; return the cases."""
    from chainproof import supply

    lock = REPO / "image" / "requirements.lock"
    cases: list[dict[str, Any]] = []

    ctx.log("  SBOM generation (cyclonedx-py, child process)")
    contenders = {
        "environment": lambda: supply.environment_sbom(),
        "lock": lambda: supply.lock_sbom(lock),
    }
    if not ctx.quick:
        contenders["environment, validated"] = lambda: supply.environment_sbom(validate=True)
        contenders["lock, validated"] = lambda: supply.lock_sbom(lock, validate=True)
    res = interleave(contenders, reps=ctx.reps, log=ctx.log, warmup=not ctx.quick)
    env_bom, lock_bom = supply.environment_sbom(), supply.lock_sbom(lock)
    n_env, n_lock = len(env_bom["components"]), len(lock_bom["components"])
    env_s = res["environment"].get("median_s", float("nan"))
    cases.append({
        "case": f"SBOM of the environment ({n_env} components) and of the image lock ({n_lock})",
        "base": "environment", "contenders": res,
        "targets": [target("environment SBOM under 10 s per step", env_s < 10, f"{env_s:.2f} s")],
    })

    def cold() -> None:
        try:
            folder = _advisories()
        except Skip:
            raise
        supply._load_advisories.cache_clear()
        supply._parse_version.cache_clear()
        supply.load_advisories(folder)

    def warm() -> None:
        supply.load_advisories(_advisories())

    ctx.log("  advisory database load")
    res = interleave({"cold (parse every file)": cold, "warm (cached)": warm}, reps=ctx.reps, log=ctx.log, warmup=False)
    cases.append({"case": "loading the OSV advisory folder", "base": "cold (parse every file)", "contenders": res,
                  "targets": []})

    try:
        db = supply.load_advisories(_advisories())
    except Skip as exc:
        return {"cases": cases, "skipped_scan": str(exc)}
    ctx.log("  matching")
    res = interleave({"environment": lambda: supply.scan_sbom(env_bom, db), "lock": lambda: supply.scan_sbom(lock_bom, db)},
                     reps=ctx.reps, log=ctx.log, warmup=not ctx.quick)
    scan_s = res["environment"].get("median_s", float("nan"))
    cases.append({
        "case": f"matching the SBOMs against {db.count} advisories",
        "base": "environment", "contenders": res,
        "targets": [target("matching under 1 s", scan_s < 1, f"{scan_s:.3f} s")],
    })
    return {"cases": cases}


if __name__ == "__main__":
    import json

    quick = "--quick" in sys.argv
    context = Context(quick=quick, reps=1 if quick else 5, out=REPO / "benchmarks", cache=Path("/tmp"),
                      work=Path("/tmp"), venvs=REPO / "benchmarks" / ".venvs")
    print(json.dumps(run(context), indent=2))
