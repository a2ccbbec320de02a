"""Credentials in source URIs never reach links, metadata, provenance, logs or errors (found in review)."""

from __future__ import annotations

import pytest

from chainproof.storage import fetch, redact_uri


def test_redact_uri_drops_userinfo_and_signed_query_values_but_keeps_versions():
    uri = ("https://bot:hunter2@data.example/train.csv?X-Amz-Credential=AKIA/x&X-Amz-Security-Token=SECRET"
           "&X-Amz-Signature=abc&versionId=v3")
    shown = redact_uri(uri)
    assert "hunter2" not in shown and "SECRET" not in shown and "AKIA" not in shown and "abc" not in shown
    assert shown.startswith("https://REDACTED@data.example/train.csv?")
    assert "versionId=v3" in shown and "X-Amz-Signature=REDACTED" in shown
    assert redact_uri("gs://b/o#123") == "gs://b/o#123"
    assert redact_uri("/tmp/a.csv") == "/tmp/a.csv"


def test_errors_name_the_redacted_uri(tmp_path):
    with pytest.raises(Exception) as err:
        fetch("https://user:pa55word@127.0.0.1:9/x.csv?sig=TOPSECRET", dest_dir=tmp_path, expected_sha256="0" * 64)
    text = str(err.value)
    assert "pa55word" not in text and "TOPSECRET" not in text
