"""chainproof.serve.server: instances read by the training feature contract; errors name the feature."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings, strategies as st

pytest.importorskip("kserve")

from kserve.errors import InvalidInput  # noqa: E402
from kserve.protocol.infer_type import InferInput, InferRequest  # noqa: E402

from chainproof.serve.server import _v2_rows, instances_to_rows  # noqa: E402

FEATURES = [{"name": f"f{i}", "type": "numeric"} for i in range(5)] + [
    {"name": "channel", "type": "categorical", "categories": ["app", "web"]}]
NAMES = [f["name"] for f in FEATURES]
_settings = settings(max_examples=60, deadline=None, derandomize=True)
numbers = st.floats(-1e9, 1e9, allow_nan=False)


@_settings
@given(width=st.integers(0, 12).filter(lambda w: w != len(FEATURES)), value=numbers)
def test_a_list_of_the_wrong_width_names_the_feature(width, value):
    with pytest.raises(InvalidInput) as err:
        instances_to_rows([[value] * width], FEATURES)
    expected = f"feature '{NAMES[width]}' is missing" if width < len(NAMES) else f"nothing follows feature '{NAMES[-1]}'"
    assert expected in str(err.value) and f"{width} values, expected {len(NAMES)}" in str(err.value)


@_settings
@given(row=st.fixed_dictionaries({n: numbers for n in NAMES[:-1]}), channel=st.sampled_from(["app", "web", "tv"]),
       order=st.permutations(NAMES))
def test_an_object_is_read_by_name_in_any_key_order(row, channel, order):
    inst = {**row, "channel": channel}
    shuffled = {k: inst[k] for k in order}
    as_list = [inst[n] for n in NAMES]
    assert instances_to_rows([shuffled], FEATURES) == instances_to_rows([as_list], FEATURES)


@_settings
@given(row=st.lists(numbers, min_size=5, max_size=5), bad=st.sampled_from(["x", True, [1.0], {"a": 1}]),
       at=st.integers(0, 4))
def test_a_wrong_type_names_the_feature_and_not_the_value(row, bad, at):
    cells = [*row, "app"]
    cells[at] = bad
    with pytest.raises(InvalidInput) as err:
        instances_to_rows([cells], FEATURES)
    assert f"feature '{NAMES[at]}' is numeric" in str(err.value)
    assert "'x'" not in str(err.value)


def test_unknown_and_missing_names():
    with pytest.raises(InvalidInput, match="unknown feature 'f9'"):
        instances_to_rows([{**{n: 1.0 for n in NAMES}, "f9": 1.0}], FEATURES)
    with pytest.raises(InvalidInput, match="feature 'f2' is missing"):
        instances_to_rows([{n: 1.0 for n in NAMES if n != "f2"}], FEATURES)
    with pytest.raises(InvalidInput, match="feature 'f1' is not a finite number"):
        instances_to_rows([[1.0, "inf", 1.0, 1.0, 1.0, "app"]], FEATURES)


def test_v2_tensor_per_feature_and_matrix_forms_agree():
    numeric = [{"name": f"f{i}", "type": "numeric"} for i in range(3)]
    matrix = InferRequest(model_name="m", infer_inputs=[InferInput("x", [2, 3], "FP64", [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])])
    named = InferRequest(model_name="m", infer_inputs=[InferInput(f"f{i}", [2], "FP64", [1.0 + i, 4.0 + i])
                                                       for i in (2, 0, 1)])
    assert _v2_rows(matrix, numeric) == _v2_rows(named, numeric) == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    with pytest.raises(InvalidInput, match="feature 'f2' is missing"):
        _v2_rows(InferRequest(model_name="m", infer_inputs=[InferInput("x", [1, 2], "FP64", [1.0, 2.0])]), numeric)
    with pytest.raises(InvalidInput, match="input 'fx': unknown feature"):
        _v2_rows(InferRequest(model_name="m", infer_inputs=[InferInput("f0", [1], "FP64", [1.0]),
                                                            InferInput("fx", [1], "FP64", [1.0])]), numeric)


def test_serve_without_kserve_names_the_extra(tmp_path):
    code = ("import sys; sys.modules['kserve'] = None\n"
            "from chainproof.cli import main\n"
            f"sys.exit(main(['serve', {str(tmp_path)!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == "FAIL: chainproof serve needs KServe's model server (kserve): pip install 'chainproof[serve]'"
