"""The Pod Security Standards check agrees with every upstream admission fixture (all versions, pass and fail)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from chainproof.k8s.pss import LATEST, check_pod, parse_version

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "data" / "pod-security-admission" / "test" / "testdata"
if not FIXTURES.is_dir():  # the worktree may sit elsewhere; the shared data folder is fixed
    FIXTURES = Path("/work/shared/data/pod-security-admission/test/testdata")

DIRS = sorted(p for p in FIXTURES.glob("*/v*") if p.is_dir()) if FIXTURES.is_dir() else []


def test_fixtures_present() -> None:
    assert len(DIRS) >= 2 * 38, f"upstream fixtures missing under {FIXTURES}"
    assert max(parse_version(p.name) for p in DIRS) == LATEST


@pytest.mark.parametrize("folder", DIRS, ids=lambda p: f"{p.parent.name}-{p.name}")
def test_agrees_with_upstream(folder: Path) -> None:
    level, version = folder.parent.name, parse_version(folder.name)
    wrong = []
    count = 0
    for outcome in ("pass", "fail"):
        for f in sorted((folder / outcome).glob("*.yaml")):
            doc = yaml.safe_load(f.read_text())
            found = check_pod(doc.get("metadata"), doc.get("spec"), level=level, version=version)
            count += 1
            if (outcome == "pass") != (not found):
                wrong.append(f"{outcome}/{f.name}: {[str(v) for v in found]}")
    assert count > 0
    assert not wrong, wrong


def test_every_fail_fixture_names_a_field() -> None:
    # A failing pod is reported with a field path under spec or metadata, never an empty one.
    folder = FIXTURES / "restricted" / f"v{LATEST[0]}.{LATEST[1]}" / "fail"
    for f in sorted(folder.glob("*.yaml")):
        doc = yaml.safe_load(f.read_text())
        for v in check_pod(doc["metadata"], doc["spec"], level="restricted"):
            assert v.field.startswith(("spec.", "metadata.")), (f.name, v)


@pytest.mark.parametrize("text", ["v1.x", "one", "1"])
def test_bad_version_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="expected latest or v1.N"):
        parse_version(text)
