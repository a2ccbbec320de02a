"""The distribution ships every package of the library (setup.cfg lists them by hand)."""

from __future__ import annotations

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_under_sdk_is_listed_in_setup_cfg():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    listed = {line.strip() for line in config["options"]["packages"].splitlines() if line.strip()}
    sdk = ROOT / "sdk"
    found = {".".join(p.parent.relative_to(sdk).parts) for p in (sdk / "chainproof").rglob("__init__.py")}
    assert found - listed == set(), f"packages missing from setup.cfg [options] packages: {sorted(found - listed)}"
    assert {"chainproof.components", "chainproof.pipelines"} <= listed
