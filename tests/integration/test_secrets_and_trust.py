"""One local run from a credential-bearing https source, with a keys/ folder that was already there.

- No file chainproof writes (the workdir: keys, runs with their logs and kfp outputs, the
  registry with the bundle) holds the planted password or pre-signed token, in clear or
  inside a DSSE payload (base64), the signed links included.
- The pre-existing owner key is not trusted as a side effect; the run says so.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from chainproof.runner import SAMPLE, run_reference_pipeline
from chainproof.signing import TrustStore, init_keys
from chainproof.policy import REFERENCE_STEPS

from chainproof.testing.servers import make_self_signed_cert, object_server

PASSWORD, TOKEN = "hunter2-pa55word-0193", "TOKEN-SECRET-7f3a9c"


def _texts(path: Path) -> list[bytes]:
    """The file's bytes, and every DSSE payload inside it, decoded."""
    data = path.read_bytes()
    found = [data]
    try:
        doc = json.loads(data)
    except ValueError:
        return found
    stack = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("payload"), str):
                try:
                    found.append(base64.b64decode(item["payload"]))
                except ValueError:
                    pass
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


@pytest.fixture(scope="module")
def secret_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("secret-run")
    (base / "tls").mkdir()
    cert, key = make_self_signed_cert(base / "tls")
    work = base / "work"
    # A keys/ folder that came with a cloned repository: never trusted on its own.
    init_keys(work / "keys", roles=["owner", *(s.name for s in REFERENCE_STEPS)], development=True)
    mp = pytest.MonkeyPatch()
    mp.setenv("REQUESTS_CA_BUNDLE", str(cert))  # the steps' https client trusts the loopback server
    try:
        with object_server({"/data/train.csv": SAMPLE.path().read_bytes()}, tls=(cert, key)) as srv:
            port = srv.server_address[1]
            uri = (f"https://bot:{PASSWORD}@127.0.0.1:{port}/data/train.csv"
                   f"?X-Amz-Security-Token={TOKEN}&X-Amz-Signature={TOKEN}sig")
            result = run_reference_pipeline(workdir=work, trust_dir=base / "trust", data=uri,
                                            sha256=SAMPLE.sha256, target=SAMPLE.target)
    finally:
        mp.undo()
    return result, work, base / "trust"


def test_no_file_under_the_workdir_or_bundle_holds_a_source_credential(secret_run):
    result, work, _ = secret_run
    assert result.bundle.is_relative_to(work) and result.log.is_file()
    files = [p for p in work.rglob("*") if p.is_file()]
    assert len(files) > 20 and result.log in files
    assert any(p.suffix == ".link" for p in files)
    leaks = [str(p) for p in files for text in _texts(p) if PASSWORD.encode() in text or TOKEN.encode() in text]
    assert leaks == []
    # The redacted form is what was recorded, so the check above looked at the right place.
    log = result.log.read_text()
    assert "https://REDACTED@127.0.0.1" in log and "X-Amz-Security-Token=REDACTED" in log


def test_signed_links_record_the_redacted_source_uri(secret_run):
    result, _, _ = secret_run
    (link,) = (result.bundle / "links").glob("secure_ingest.*.link")
    payload = json.loads(base64.b64decode(json.loads(link.read_text())["payload"]))
    params = payload["environment"]["chainproof"]["parameters"]
    assert params["source_uri"].startswith("https://REDACTED@127.0.0.1:")
    assert "X-Amz-Signature=REDACTED" in params["source_uri"]


def test_a_pre_existing_owner_key_is_not_trusted_by_run(secret_run):
    result, work, trust = secret_run
    assert TrustStore(trust).keys() == {}
    assert "NOT trusted" in result.owner_trust and "chainproof trust add" in result.owner_trust
    assert str(work / "keys") in result.owner_trust
    # The run itself still verified what it registered, against the key it signed with.
    assert result.verification.owner_keyid
