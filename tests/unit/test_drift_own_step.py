"""chainproof.drift.record_profile: your own training step writes the drift reference profile
into its chain, attested by its link, in the form serve and monitor read."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from chainproof import step as step_mod
from chainproof.attest import load_link
from chainproof.drift import PROFILE_PRODUCT, load_profile, psi_report, record_profile
from chainproof.errors import InputError
from chainproof.step import open_step
from chainproof.verify import LINKS_DIR
from tests.unit.test_step_primitive import ME, World


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return World(tmp_path_factory.mktemp("drift-world"))


def _table(seed: int = 0, n: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"tenure": rng.integers(1, 60, n).astype(float), "plan": rng.choice(["basic", "pro"], n)})
    frame.loc[::17, "tenure"] = np.nan  # gaps
    return frame


def _model(frame: pd.DataFrame):
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer

    y = (frame["tenure"].fillna(30) > 30).astype(int)
    prep = ColumnTransformer([("num", SimpleImputer(), ["tenure"]), ("cat", OneHotEncoder(), ["plan"])])
    return make_pipeline(prep, LogisticRegression()).fit(frame, y)


def test_a_training_step_of_your_own_attests_its_profile(world, tmp_path):
    frame = _table()
    model = _model(frame)
    with open_step("make", layout_sha256=world.sha, signer=world.signer("make"), layout_uri=world.layout_path.as_uri(),
                   chain_out=tmp_path / "chain", principal=ME) as ctx:
        step_mod._CURRENT.append(ctx)  # as chainproof._exec does around a component
        try:
            profile = record_profile(model, frame.iloc[:150], frame.iloc[150:])
        finally:
            step_mod._CURRENT.pop()
        ctx.sign()
    _, link = load_link(next((tmp_path / "chain" / LINKS_DIR).glob("make.*.link")))
    data = (tmp_path / "chain" / PROFILE_PRODUCT).read_bytes()
    assert link.products[PROFILE_PRODUCT]["sha256"] == hashlib.sha256(data).hexdigest()
    loaded = load_profile(data, expected_sha256=link.products[PROFILE_PRODUCT]["sha256"])
    assert loaded == profile
    assert [(f["name"], f["type"]) for f in profile["features"]] == [("tenure", "numeric"), ("plan", "categorical")]
    assert profile["features"][1]["categories"] == ["basic", "pro"]
    assert profile["rows"] == 150 and profile["score"]["rows"] == 50
    # The same table scores no drift against its own profile; a shifted one does.
    rows = frame.iloc[:150].to_numpy(dtype=object)
    assert max(psi_report(profile, rows).values()) < 1e-9
    shifted = rows.copy()
    shifted[:, 0] = shifted[:, 0] * 3
    assert psi_report(profile, shifted)["tenure"] > 0.2


def test_names_and_a_full_contract_for_tables_without_columns(world, tmp_path):
    frame = _table()
    model = _model(frame)
    rows = frame.to_numpy(dtype=object)
    with open_step("make", layout_sha256=world.sha, signer=world.signer("make"), layout_uri=world.layout_path.as_uri(),
                   principal=ME) as ctx:
        step_mod._CURRENT.append(ctx)
        try:
            with pytest.raises(InputError, match="give features="):
                record_profile(model, rows, frame)
            with pytest.raises(InputError, match="1 feature names for 2 columns"):
                record_profile(model, rows, frame, features=["tenure"])
            named = record_profile(model, rows, frame, features=["tenure", "plan"])
            assert [f["type"] for f in named["features"]] == ["numeric", "categorical"]
            contract = [{"name": "tenure", "type": "numeric"},
                        {"name": "plan", "type": "categorical", "categories": ["pro", "basic", "enterprise"]}]
            full = record_profile(model, rows, frame, features=contract)
            assert full["features"][1]["categories"] == ["pro", "basic", "enterprise"]
        finally:
            step_mod._CURRENT.pop()


def test_outside_a_step_it_says_so(tmp_path):
    frame = _table()
    with pytest.raises(InputError, match="not inside a chainproof step"):
        record_profile(_model(frame), frame, frame)
