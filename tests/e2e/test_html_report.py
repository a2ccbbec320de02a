"""The HTML report in a real headless browser (Debian's chromium): it renders the chain,
and a failing chain shows its failure. Screenshots are kept next to the test's files."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from chainproof.errors import DigestMismatch
from chainproof.report import build_report, render_html
from chainproof.verify import verify_bundle

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed here (.ci/run installs it: apt-get install chromium)"
)

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]


def _browser(page: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *extra, page.as_uri()],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)


def _render(doc: dict, tmp_path: Path, name: str) -> tuple[str, Path]:
    page = tmp_path / f"{name}.html"
    page.write_text(render_html(doc))
    dom = _browser(page, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    shot = tmp_path / f"{name}.png"
    result = _browser(page, tmp_path, "--window-size=1400,1000", f"--screenshot={shot}")
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    return dom.stdout, shot


def _banner_rgb(shot: Path) -> tuple[int, int, int]:
    from PIL import Image

    with Image.open(shot) as img:
        return img.convert("RGB").getpixel((8, 8))


def test_verified_report_renders_the_chain_in_a_browser(registered, tmp_path):
    doc = build_report(registered.bundle, result=verify_bundle(registered.bundle, trusted_owner_keys=registered.owner_keys))
    dom, shot = _render(doc, tmp_path, "verified")
    assert 'id="banner"' in dom and "VERIFIED" in dom
    for step in ("secure_ingest", "train_model", "sign_and_attest", "verify_chain", "register_model"):
        assert step in dom
    assert dom.count("<rect") >= 5 + len(doc["steps"][1]["products"])  # step boxes and artifact boxes drawn
    r, g, b = _banner_rgb(shot)
    # A local run signs with development keys: verified, under the amber banner that says so.
    assert doc["development_keys"] and "VERIFIED WITH DEVELOPMENT KEYS" in dom
    assert r > g > b, (r, g, b)  # amber, not the green of production keys
    assert '<section id="model-card"' in dom


def test_failing_report_shows_the_failure_in_a_browser(registered, tmp_path):
    model = registered.model / "model.joblib"
    data = bytearray(model.read_bytes())
    data[len(data) // 3] ^= 0x10
    model.write_bytes(bytes(data))
    with pytest.raises(DigestMismatch) as err:
        verify_bundle(registered.bundle, trusted_owner_keys=registered.owner_keys)
    dom, shot = _render(build_report(registered.bundle, error=err.value), tmp_path, "failed")
    assert "VERIFICATION FAILED" in dom and 'id="failure"' in dom
    assert "model/model.joblib" in dom and "expected sha256:" in dom
    r, g, b = _banner_rgb(shot)
    assert r > g and r > b, (r, g, b)  # the red banner
