"""kfp.local rewrites every ``python3`` in a task's arguments (kfp 2.17,
``replace_python_executable``); chainproof's runner escapes string parameters that hold it and
the step decodes them. The escape is the one place any URI scheme passes through, so
``gs://b/python3/x`` and ``s3://b/python3/x`` reach the fetch intact exactly when this holds.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kfp.local import subprocess_task_handler

from chainproof._exec import LOCAL_ESCAPE, escape_for_kfp_local, unescape
from chainproof.errors import InputError

_pieces = st.sampled_from(["python3", "python", "3", "/", "gs://", "s3://", "b", "%33", LOCAL_ESCAPE, "é", "#7", " "])
values = st.one_of(st.text(max_size=40), st.lists(_pieces, max_size=8).map("".join))


def _kfp_rewrites(value: str) -> str:
    """What kfp.local does to one argument (its own function, on a command of one element)."""
    return subprocess_task_handler.replace_python_executable([value], "/venv/bin/python")[0]


@given(values)
@settings(max_examples=400, deadline=None)
def test_every_value_survives_kfp_locals_rewriting(value):
    escaped = escape_for_kfp_local(value)
    assert unescape(_kfp_rewrites(escaped)) == value


@pytest.mark.parametrize("uri", ["gs://training-data/python3/wdbc/train.csv", "s3://public/python3/x.csv#v1",
                                 "https://h/python3.11/x", "file:///home/u/.venv/lib/python3.11/x"])
def test_uris_with_the_interpreter_name_arrive_intact(uri):
    assert _kfp_rewrites(uri) != uri  # what the escape is for
    assert unescape(_kfp_rewrites(escape_for_kfp_local(uri))) == uri


def test_a_value_that_looks_like_an_escape_is_escaped_itself():
    value = LOCAL_ESCAPE + "not hex"
    assert unescape(escape_for_kfp_local(value)) == value
    with pytest.raises(InputError) as err:
        unescape(value)
    assert str(err.value) == f"a parameter value starts with {LOCAL_ESCAPE} but is not hex text"


def test_other_values_pass_as_they_are():
    assert escape_for_kfp_local("gs://b/data/x.csv") == "gs://b/data/x.csv"
    assert unescape(7) == 7
