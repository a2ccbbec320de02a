"""Where chainproof keeps its writable state: CHAINPROOF_HOME, the config folder, or a temp folder."""

from __future__ import annotations

import os
import tempfile

import pytest

from chainproof import cli


def test_chainproof_home_env_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("CHAINPROOF_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("CHAINPROOF_TRUST_DIR", raising=False)
    assert cli.chainproof_home() == tmp_path / "state"
    assert cli.default_trust_dir() == tmp_path / "state" / "trusted-owners"


def test_writable_config_folder_is_used(tmp_path, monkeypatch):
    monkeypatch.delenv("CHAINPROOF_HOME", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert cli.chainproof_home() == tmp_path / "chainproof"


@pytest.mark.skipif(os.getuid() == 0, reason="root writes through a read-only mode bit")
def test_read_only_home_falls_back_to_temp(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    monkeypatch.delenv("CHAINPROOF_HOME", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(ro))
    try:
        home = cli.chainproof_home()
    finally:
        ro.chmod(0o755)
    assert home.parent == __import__("pathlib").Path(tempfile.gettempdir())
    assert home.name == f"chainproof-{os.getuid()}"
