"""Explicit trust (the trust store's records, run's decision) and the redacting log tap, offline."""

from __future__ import annotations

import io

from hypothesis import given, settings
from hypothesis import strategies as st

from chainproof.redaction import Redactor, redact_text
from chainproof.runner import _LogTap
from chainproof.signing import TrustStore, init_keys, load_public_key
from chainproof.trust import describe_owner_trust, trust_run_owner_key


def test_run_trusts_only_an_owner_key_it_created_now(tmp_path):
    ring = init_keys(tmp_path / "keys", roles=["owner"], development=True)
    key = load_public_key(ring.public_key_path("owner"))
    store = TrustStore(tmp_path / "trust")
    said = trust_run_owner_key(store, key, created_now=False, keys_dir=ring.directory)
    assert store.keys() == {} and said.startswith(f"owner key {key.keyid[:16]}") and "NOT trusted" in said
    said = trust_run_owner_key(store, key, created_now=True, keys_dir=ring.directory)
    assert set(store.keys()) == {key.keyid} and "created now" in said
    (entry,) = store.entries()
    assert entry.development and entry.source.startswith("chainproof run: owner key created now in ")
    assert entry.added_by and entry.added_at.endswith("Z")
    # A later run with the same folder reports the existing trust and its origin.
    again = trust_run_owner_key(store, key, created_now=False, keys_dir=ring.directory)
    assert again.startswith(f"owner key {key.keyid[:16]} already trusted") and entry.added_at in again
    trust = describe_owner_trust(key.keyid, store=store)
    assert "chainproof run: owner key created now" in trust["source"] and trust["development"] == "yes"


def test_remove_by_prefix_and_ambiguous_or_short_prefixes(tmp_path):
    store = TrustStore(tmp_path / "trust")
    keys = []
    for i in range(3):
        ring = init_keys(tmp_path / f"k{i}", roles=["owner"])
        keys.append(load_public_key(ring.public_key_path("owner")))
        store.add(keys[-1], source=f"test {i}")
    removed = store.remove(keys[1].keyid[:10])
    assert removed.keyid == keys[1].keyid and removed.source == "test 1"
    assert set(store.keys()) == {keys[0].keyid, keys[2].keyid}
    assert not (tmp_path / "trust" / f"{keys[1].keyid}.json").exists()


def test_log_tap_redacts_a_uri_split_over_writes():
    sink = io.StringIO()
    secret = "https://bot:hunter2@data.example/x.csv?X-Amz-Signature=SIGSECRET&versionId=3"
    tap = _LogTap(sink, None, Redactor([secret]))
    text = f'inputs: {{"source_uri": "{secret}"}}\nnext line\n'
    for i in range(0, len(text), 7):
        tap.write(text[i:i + 7])
    tap.finish()
    out = sink.getvalue()
    assert "hunter2" not in out and "SIGSECRET" not in out
    assert "https://REDACTED@data.example/x.csv?X-Amz-Signature=REDACTED&versionId=3" in out and "next line" in out


@settings(max_examples=200, deadline=None)
@given(user=st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=10),
       password=st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_~", min_size=6, max_size=20),
       token=st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=6, max_size=30),
       before=st.text(" \t\"'=:,({[", max_size=3), after=st.text(" \t\"',)}]\n", max_size=3))
def test_redact_text_removes_userinfo_and_query_values_wherever_the_uri_sits(user, password, token, before, after):
    uri = f"https://{user}:{password}@host.example/p/o.csv?X-Goog-Signature={token}"
    out = redact_text(f"log{before}{uri}{after}tail")
    assert password not in out.replace("REDACTED", "") and token not in out.replace("REDACTED", "")
