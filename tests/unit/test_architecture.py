"""The import graph the architecture promises (README, "Layout"), read from the source with ast.

Every import counts, including the ones inside functions: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

SDK = Path(__file__).resolve().parents[2] / "sdk" / "chainproof"

#: The orchestration boundary: the only modules that may import kfp, components or pipelines.
ORCHESTRATION = {
    "_exec.py",  # the executor launcher inside a step's container
    "artifact_types.py",  # chainproof's KFP artifact types
    "confidential.py",  # kfp-kubernetes node selection for Confidential GKE Nodes
    "containers.py",  # run --runner docker (kfp.local's DockerRunner)
    "dsl.py",  # the @chainproof.dsl.step decorator and pipeline wrapper
    "kfp_backend.py",  # submit --kfp-host
    "runner.py",  # chainproof run (kfp.local)
    "secrets.py",  # the compile-time credential check reads compiled pipeline specs
    "vertex.py",  # compile and submit for Vertex AI Pipelines
}
_ORCHESTRATORS = ("kfp", "components", "pipelines")


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _modules() -> dict[str, set[str]]:
    return {path.relative_to(SDK).as_posix(): _imports(path) for path in sorted(SDK.rglob("*.py"))}


def test_only_the_orchestration_modules_import_kfp_components_or_pipelines():
    importing = {name for name, imports in _modules().items()
                 if any(i == o or i.startswith(o + ".") for i in imports for o in _ORCHESTRATORS)}
    assert importing == ORCHESTRATION, sorted(importing ^ ORCHESTRATION)


def test_the_registries_do_not_depend_on_the_verifier():
    modules = _modules()
    registry = {name: imports for name, imports in modules.items() if name.startswith("registry/")}
    assert {"registry/__init__.py", "registry/_protocol.py", "registry/local.py", "registry/vertex.py"} <= set(registry)
    for name, imports in registry.items():
        assert not any(i == "chainproof.verify" or i.startswith("chainproof.verify.") for i in imports), name
        assert not any(i.startswith(("kfp", "chainproof.runner", "chainproof.steps")) for i in imports), name
    # The local registry never pulls in the cloud client.
    assert not any(i.startswith(("google", "chainproof.registry.vertex")) for i in registry["registry/local.py"])


def test_the_verifier_and_the_scanner_never_import_orchestration_or_cli():
    for name, imports in _modules().items():
        if name.startswith(("verify/", "scan/")):
            bad = [i for i in imports if i.startswith(("kfp", "components", "pipelines", "chainproof.cli",
                                                        "chainproof.runner", "chainproof.vertex"))]
            assert not bad, (name, bad)
