"""Malicious pickles are refused with the right reason; benign models pass."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import pytest
from tests import scan_corpus as corpus

from chainproof.scan import Allowlist, ScanLimits, scan_bytes, scan_file, scan_path, summarize

MALICIOUS = corpus.malicious_pickles()


@pytest.mark.parametrize("name", sorted(MALICIOUS))
def test_rejects_malicious_pickle(name: str) -> None:
    data, what, reason = MALICIOUS[name]
    report = scan_bytes(data, name=name)
    assert report.verdict == "unsafe"
    assert any(f.what == what and reason in f.reason for f in report.findings), [str(f) for f in report.findings]
    assert all(f.file == name and f.offset is not None for f in report.findings)


@pytest.mark.parametrize("name", sorted(MALICIOUS))
def test_rejects_malicious_pickle_under_any_file_name(name: str, tmp_path: Path) -> None:
    data, what, reason = MALICIOUS[name]
    path = tmp_path / "README.txt"
    path.write_bytes(data)
    assert scan_file(path).verdict == "unsafe"


@pytest.mark.parametrize("codec", ["gzip", "bz2", "xz", "lzma", "zlib", "lz4"])
def test_rejects_malicious_pickle_in_every_joblib_compression(codec: str, tmp_path: Path) -> None:
    import joblib

    path = tmp_path / "model.bin"
    joblib.dump(corpus._ReduceSystem(), path, compress=(codec, 3))
    report = scan_file(path)
    assert report.kind == f"pickle+{codec}"
    assert [(f.file, f.what) for f in report.findings] == [(f"model.bin|{codec}", "posix.system")]


def test_rejects_lz4_file_when_lz4_is_not_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import joblib

    path = tmp_path / "model.joblib"
    joblib.dump({"a": 1}, path, compress=("lz4", 3))
    monkeypatch.setitem(sys.modules, "lz4", None)
    monkeypatch.setitem(sys.modules, "lz4.frame", None)
    report = scan_file(path)
    assert [(f.what, "not installed" in f.reason) for f in report.findings] == [("lz4", True)]


def test_rejects_joblib_object_array_with_inline_os_system(tmp_path: Path) -> None:
    path = corpus.joblib_object_array_os_system(tmp_path / "model.joblib")
    report = scan_file(path)
    assert report.kind == "joblib"
    assert [f.what for f in report.findings] == ["posix.system"]


def test_rejects_joblib_truncated_inside_array_data(tmp_path: Path) -> None:
    report = scan_file(corpus.joblib_wrapper_truncated(tmp_path / "model.joblib"))
    assert [(f.what, "truncated" in f.reason) for f in report.findings] == [("NumpyArrayWrapper", True)]


def test_rejects_joblib_dtype_whose_elsize_differs_from_numpy(tmp_path: Path) -> None:
    # A parser differential: the scanner must skip exactly the bytes joblib reads. It rebuilds
    # the dtype with numpy (8 bytes per element, whatever elsize says), so it reads the
    # hidden call where joblib.load would make it.
    report = scan_file(corpus.joblib_dtype_elsize_differential(tmp_path / "model.joblib"))
    assert report.verdict == "unsafe"
    assert "os.system" in [f.what for f in report.findings], report.findings


def test_rejects_pickle_polyglot_with_zip_appended() -> None:
    data = pickle.dumps([1]) + corpus.zip_bytes([("a.txt", b"x")])
    reasons = {f.what: f.reason for f in scan_bytes(data, name="m.pkl").findings}
    assert "bytes after the end" in reasons["STOP"]
    assert "polyglot" in reasons["zip"]


def test_rejects_torch_archive_with_malicious_data_pkl() -> None:
    payload = MALICIOUS["pickle_stack_global_os_system"][0]
    report = scan_bytes(corpus.torch_like_zip(payload), name="model.pt")
    assert [(f.file, f.what) for f in report.findings] == [("model.pt!archive/data.pkl", "os.system")]


def test_accepts_torch_archive_with_storage_persistent_ids() -> None:
    report = scan_bytes(corpus.torch_like_zip(), name="model.pt")
    assert report.kind == "pytorch" and report.verdict == "safe", [str(f) for f in report.findings]


def test_rejects_opcode_flood_past_the_limit() -> None:
    data = pickle.dumps(list(range(1000)), protocol=4)
    report = scan_bytes(data, name="m.pkl", limits=ScanLimits(max_opcodes=100))
    assert any("opcodes" in f.reason for f in report.findings)


def test_csv_that_starts_like_a_global_is_text_not_pickle(tmp_path: Path) -> None:
    # 'c' is GLOBAL: the first line is not an importable module name.
    (tmp_path / "cities.dat").write_text("city,population\nParis,2100000\n")
    assert scan_path(tmp_path)[0].kind == "text"


# -- benign corpus ------------------------------------------------------------


@pytest.fixture(scope="module")
def benign_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("benign")
    corpus.write_benign_sklearn(root / "models")
    corpus.write_benign_data(root / "data")
    return root


def test_accepts_every_benign_model_and_data_file(benign_folder: Path) -> None:
    reports = scan_path(benign_folder)
    flagged = [str(f) for r in reports for f in r.findings]
    assert flagged == []
    assert summarize(reports)["verdict"] == "safe"
    kinds = {r.kind for r in reports}
    assert {"pickle", "joblib", "joblib+zlib", "joblib+gzip", "joblib+bz2", "joblib+lzma", "joblib+xz", "joblib+lz4",
            "skops", "npy", "npz", "text"} <= kinds


def test_joblib_arrays_are_skipped_not_parsed(benign_folder: Path) -> None:
    report = scan_file(benign_folder / "models" / "random_forest.joblib")
    assert report.kind == "joblib" and report.facts["inline_arrays"] > 0


def test_benign_model_is_refused_without_its_classes_in_the_allowlist(benign_folder: Path) -> None:
    empty = Allowlist.from_json(
        b'{"schema": "https://chainproof.dev/scan/allowlist/v1", "version": 0, "globals": {}}', source="empty"
    )
    report = scan_file(benign_folder / "models" / "svc.p4.pkl", allowlist=empty)
    assert "sklearn.svm._classes.SVC" in {f.what for f in report.findings}


# Large array payloads in a regular file are seeked over, not read: the verdicts must not change.
def _big_joblib(path: Path) -> Path:
    import joblib
    import numpy as np

    joblib.dump({"w": np.arange(600_000, dtype=np.float64), "b": np.zeros(3)}, path)  # 4.8 MB payload
    return path


def test_accepts_joblib_with_large_array_payload_seeked_over(tmp_path: Path) -> None:
    report = scan_file(_big_joblib(tmp_path / "model.joblib"))
    assert report.findings == [] and report.kind == "joblib" and report.facts["inline_arrays"] == 2


def test_rejects_joblib_truncated_inside_large_array_payload(tmp_path: Path) -> None:
    path = _big_joblib(tmp_path / "model.joblib")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    report = scan_file(path)
    assert [(f.what, "truncated" in f.reason) for f in report.findings] == [("NumpyArrayWrapper", True)]


def test_rejects_joblib_whose_large_array_payload_passes_the_size_limit(tmp_path: Path) -> None:
    report = scan_file(_big_joblib(tmp_path / "model.joblib"), limits=ScanLimits(max_file_bytes=2_000_000))
    assert report.findings and "limit" in report.findings[0].reason


def test_rejects_global_hidden_after_a_large_array_payload(tmp_path: Path) -> None:
    path = _big_joblib(tmp_path / "model.joblib")
    # Replace the trailing STOP with a pickle that names os.system: it comes after the
    # seeked-over payload, and must still be walked.
    data = path.read_bytes()
    assert data.endswith(b".")
    path.write_bytes(data[:-1] + b"cos\nsystem\n0.")
    report = scan_file(path)
    assert any("os.system" in f.what or "os" in f.what for f in report.findings), report.findings
