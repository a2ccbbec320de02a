"""Alternatives that conflict with chainproof's dependencies run from venvs of their own.

Created on the first full run under ``benchmarks/.venvs/NAME`` (git-ignored) and
reused. Quick mode never uses them: it runs a tool only if its console script
sits next to the running interpreter.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from benchmarks._common import Context, Skip

#: venv name -> pip requirements. fickling 0.1.x imports typing_extensions without declaring it.
TOOLS: dict[str, list[str]] = {
    "picklescan": ["picklescan"],
    "fickling": ["fickling", "typing_extensions"],
    "modelscan": ["modelscan"],
}


def tool_bin(ctx: Context, tool: str) -> Path:
    """Return the folder holding the tool's console scripts and python, creating its venv in full mode."""
    here = Path(sys.executable).parent
    if (here / tool).exists():
        return here
    if ctx.quick:
        raise Skip(f"{tool} is not installed next to {sys.executable} (quick mode uses no venvs)")
    venv = ctx.venvs / tool
    if (venv / "bin" / tool).exists():
        return venv / "bin"
    ctx.log(f"  creating {venv} ({' '.join(TOOLS[tool])})")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *TOOLS[tool]], check=True)
    return venv / "bin"


def tool_version(bindir: Path, dist: str) -> str | None:
    out = subprocess.run(
        [str(bindir / "python"), "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"],
        capture_output=True, text=True,
    )
    return out.stdout.strip() or None
