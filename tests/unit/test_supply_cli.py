"""``chainproof sbom`` and ``chainproof vulns`` on a lock file (in-process, the real CLI parser)."""

from __future__ import annotations

import json
from pathlib import Path

from chainproof.attest import load_statement
from chainproof.cli import main
from chainproof.signing import init_keys, load_public_key
from chainproof.supply import verify_sbom

ADVISORIES = Path(__file__).resolve().parents[3] / "shared" / "data" / "pypa-advisory-database" / "vulns"
if not ADVISORIES.is_dir():
    ADVISORIES = Path("/work/shared/data/pypa-advisory-database/vulns")
IMAGE = "europe-docker.pkg.dev/p/r/chainproof@sha256:" + "cd" * 32


def test_sbom_and_vulns_commands(tmp_path, capsys):
    ring = init_keys(tmp_path / "keys", roles=["supply"])
    signer = f"file:{ring.private_key_path('supply')}"
    key = load_public_key(ring.public_key_path("supply"))
    lock = tmp_path / "requirements.lock"
    lock.write_text("gitpython==3.1.30\nrequests==2.32.3\n")

    assert main(["sbom", "--lock", str(lock), "--image", IMAGE, "--signer", signer, "-o", str(tmp_path / "sbom.json"),
                 "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert doc["sha256"] == "cd" * 32 and doc["components"] == 2
    verify_sbom((tmp_path / "sbom.json").read_bytes(), "cd" * 32, key=key)

    out = tmp_path / "vulns.json"
    args = ["vulns", "--lock", str(lock), "--image", IMAGE, "--signer", signer, "-o", str(out),
            "--advisories", str(ADVISORIES)]
    assert main([*args, "--max-severity", "high", "--unknown-severity", "medium"]) == 0
    assert "FOUND: gitpython==3.1.30: PYSEC-2023-161 (high) fixed in 3.1.33" in capsys.readouterr().out
    assert main([*args, "--max-severity", "medium"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("FAIL: ") and "gitpython==3.1.30 has PYSEC-" in err and len(err.strip().splitlines()) == 1
    assert main([*args, "--max-database-age-days", "30"]) == 1
    assert "advisory database last updated 2024-10-10T17:22:00Z" in capsys.readouterr().err
    statement = load_statement(out.read_bytes(), key=key, what="vulns")
    assert statement["subject"][0]["digest"]["sha256"] == "cd" * 32

    assert main(["vulns", "--image", IMAGE, "--signer", signer, "--advisories", str(ADVISORIES)]) == 2
    assert "--image needs --lock" in capsys.readouterr().err
