"""``chainproof scan``: exit codes, FAIL lines, JSON, allowlist extensions, tabular schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests import scan_corpus as corpus

from chainproof.cli import main
from chainproof.errors import InputError
from chainproof.scan import Allowlist, Column, TabularSchema, scan_csv

SYSTEM = corpus.malicious_pickles()["pickle_stack_global_os_system"][0]
CUSTOM = b"\x80\x04\x8c\x0bmypkg.model\x8c\x05Model\x93)R."


def test_cli_exits_0_for_a_safe_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.csv").write_text("a,b\n1,2\n")
    assert main(["scan", str(tmp_path)]) == 0
    assert "OK: a.csv (csv)" in capsys.readouterr().out


def test_cli_exits_1_and_prints_one_fail_line_per_finding(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "model.joblib").write_bytes(SYSTEM)
    assert main(["scan", str(tmp_path)]) == 1
    fails = [line for line in capsys.readouterr().out.splitlines() if line.startswith("FAIL:")]
    assert fails == [
        "FAIL: model.joblib@14: os.system: STACK_GLOBAL: global not in the allowlist (module 'os', name 'system')"
    ]


def test_cli_json_is_the_last_stdout_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "m.pkl").write_bytes(SYSTEM)
    assert main(["scan", str(tmp_path / "m.pkl"), "--format", "json"]) == 1
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert doc["verdict"] == "unsafe"
    assert doc["reports"][0]["findings"][0]["what"] == "os.system"
    assert doc["allowlist"]["version"] == 2 and doc["allowlist"]["extensions"] == []


def test_cli_exits_2_for_a_missing_path(tmp_path: Path) -> None:
    assert main(["scan", str(tmp_path / "nope")]) == 2


def test_cli_allowlist_extra_accepts_a_custom_class_and_records_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "m.pkl").write_bytes(CUSTOM)
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps(["mypkg.model:Model"]))
    assert main(["scan", str(tmp_path / "m.pkl")]) == 1
    assert main(["scan", str(tmp_path / "m.pkl"), "--allowlist-extra", str(extra), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert doc["allowlist"]["extensions"] == ["mypkg.model:Model"]


def test_cli_refuses_an_extension_that_names_os_system(tmp_path: Path) -> None:
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps(["os:system"]))
    (tmp_path / "m.pkl").write_bytes(SYSTEM)
    assert main(["scan", str(tmp_path / "m.pkl"), "--allowlist-extra", str(extra)]) == 2


def test_allowlist_is_exact_not_a_prefix() -> None:
    allowlist = Allowlist.default()
    assert allowlist.allows("sklearn.ensemble._forest", "RandomForestClassifier")
    assert not allowlist.allows("sklearn.ensemble._forest", "RandomForestClassifier.__init__")
    assert not allowlist.allows("sklearn", "ensemble._forest.RandomForestClassifier")
    assert not allowlist.allows("sklearn.utils._testing", "ignore_warnings")


def test_allowlist_extension_is_retrievable_and_does_not_change_the_base() -> None:
    base = Allowlist.default()
    wider = base.extend(["mypkg.model:Model"])
    assert wider.extensions == ("mypkg.model:Model",) and base.extensions == ()
    assert wider.describe()["sha256"] == base.describe()["sha256"]
    assert not base.allows("mypkg.model", "Model")


@pytest.mark.parametrize("entry", ["builtins:eval", "subprocess:Popen", "os.path:join", "nocolon", "a:b:c"])
def test_allowlist_refuses_dangerous_or_malformed_extensions(entry: str) -> None:
    with pytest.raises(InputError):
        Allowlist.default().extend([entry])


def test_csv_schema_refuses_types_ranges_and_columns(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("age,score,name\n30,0.5,a\n-1,x,b\n,0.1,c\n")
    schema = TabularSchema(columns=(Column("age", "int", minimum=0, maximum=150), Column("score", "float"), Column("name")))
    assert [(f.offset, f.what, f.reason) for f in scan_csv(path, schema=schema).findings] == [
        (3, "age", "-1 is below the minimum 0"),
        (3, "score", "'x' is not a float"),
        (4, "age", "empty field"),
    ]
    wrong = TabularSchema(columns=(Column("age", "int"),))
    assert [f.what for f in scan_csv(path, schema=wrong).findings] == ["header"]
