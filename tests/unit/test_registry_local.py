"""The local registry (:mod:`chainproof.registry.local`) called directly.

The pipeline tests register through ``register_model`` and then verify; here each rule of the
registry itself is driven on its own: names, version numbering, the re-hash at commit (time of
check == time of use), a version taken meanwhile, the identity record, and malformed entries.
These are the tests ``scripts/mutation.sh registry`` runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chainproof.digests import digest_tree, manifest_digest
from chainproof.errors import ArtifactRefused, DigestMismatch, InputError, RegistryError
from chainproof.registry import LocalModelRegistry, RegisteredModel
from chainproof.registry.local import parse_local_reference


@dataclass
class Verified:
    """A verified chain as the registry sees it (:class:`chainproof.registry.VerifiedChain`)."""

    model_files: dict[str, str]
    steps: list = field(default_factory=list)


def _model(tmp_path: Path, name: str = "model", data: bytes = b"weights") -> tuple[Path, Path, Verified]:
    model = tmp_path / name
    (model / "sub").mkdir(parents=True)
    (model / "model.joblib").write_bytes(data)
    (model / "sub" / "features.json").write_text('["a"]')
    bundle = tmp_path / f"{name}-bundle"
    (bundle / "links").mkdir(parents=True)
    (bundle / "root.layout").write_text("{}")
    (bundle / "links" / "x.link").write_text("{}")
    return model, bundle, Verified(digest_tree(model, prefix="model"))


def _register(registry: LocalModelRegistry, tmp_path: Path, name: str = "churn", data: bytes = b"weights"):
    model, bundle, verified = _model(tmp_path, f"m-{data.hex()[:8]}-{name}", data)
    pending = registry.prepare(name)
    return registry.commit(pending, model_dir=model, bundle_dir=bundle, verified=verified), model, bundle


def test_a_registration_stores_the_model_its_bundle_and_an_entry_that_resolves(tmp_path):
    registry = LocalModelRegistry(tmp_path / "reg")
    entry, model, bundle = _register(registry, tmp_path)
    base = tmp_path / "reg" / "models" / "churn" / "1"
    assert entry.reference == "local://churn@1" and (entry.name, entry.version) == ("churn", "1")
    assert entry.model_location == str(base / "model") and entry.bundle_location == str(base / "bundle")
    assert digest_tree(base / "model") == digest_tree(model) and digest_tree(base / "bundle") == digest_tree(bundle)
    assert entry.model_files == digest_tree(model, prefix="model")
    assert entry.model_sha256 == manifest_digest(digest_tree(model, prefix="model"))
    assert entry.bundle_sha256 == manifest_digest(digest_tree(bundle))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", entry.created)
    assert registry.resolve("local://churn@1") == entry
    assert json.loads((base / "version.json").read_text()) == entry.to_dict()
    # Nothing but the published version in the model's folder: no staging left.
    assert sorted(p.name for p in base.parent.iterdir()) == ["1"]


def test_versions_are_numbered_in_order_past_nine(tmp_path):
    registry = LocalModelRegistry(tmp_path / "reg")
    refs = [_register(registry, tmp_path, data=bytes([i]))[0].reference for i in range(11)]
    assert refs == [f"local://churn@{i}" for i in range(1, 12)]
    assert registry.prepare("churn").version == "12"
    # Folders that are not version numbers are ignored.
    (tmp_path / "reg" / "models" / "churn" / "notes").mkdir()
    (tmp_path / "reg" / "models" / "churn" / ".staging-12-abc").mkdir()
    assert registry.prepare("churn").version == "12"


def test_prepare_reserves_the_next_version_and_its_locations(tmp_path):
    registry = LocalModelRegistry(tmp_path / "reg")
    pending = registry.prepare("churn")
    base = tmp_path / "reg" / "models" / "churn" / "1"
    assert (pending.name, pending.version, pending.reference) == ("churn", "1", "local://churn@1")
    assert (pending.model_location, pending.bundle_location) == (str(base / "model"), str(base / "bundle"))
    assert registry.identity()["registry_id"]  # preparing creates the registry's identity
    assert not base.exists()


def test_find_returns_the_version_holding_a_model_digest(tmp_path):
    registry = LocalModelRegistry(tmp_path / "reg")
    first, _, _ = _register(registry, tmp_path, data=b"one")
    second, _, _ = _register(registry, tmp_path, data=b"two")
    assert registry.find("churn", model_sha256=second.model_sha256) == second
    assert registry.find("churn", model_sha256=first.model_sha256) == first
    assert registry.find("churn", model_sha256="0" * 64) is None
    assert registry.find("other", model_sha256=first.model_sha256) is None


def test_commit_rehashes_the_model_and_refuses_one_changed_since_verification(tmp_path):
    registry = LocalModelRegistry(tmp_path / "reg")
    model, bundle, verified = _model(tmp_path)
    (model / "model.joblib").write_bytes(b"swapped after verification")
    pending = registry.prepare("churn")
    with pytest.raises(DigestMismatch) as err:
        registry.commit(pending, model_dir=model, bundle_dir=bundle, verified=verified)
    assert err.value.artifact == "model/model.joblib"
    assert err.value.expected == verified.model_files["model/model.joblib"]
    base = tmp_path / "reg" / "models" / "churn"
    assert list(base.iterdir()) == []  # the staging copy is gone, no version published
    # A file added after verification is refused too.
    model2, bundle2, verified2 = _model(tmp_path, "model2")
    (model2 / "extra.py").write_text("import os")
    with pytest.raises(ArtifactRefused) as err:
        registry.commit(registry.prepare("churn"), model_dir=model2, bundle_dir=bundle2, verified=verified2)
    assert err.value.artifact == "model/extra.py"
    assert list(base.iterdir()) == []


def test_a_version_taken_meanwhile_is_refused_and_left_as_it_was(tmp_path):
    registry = LocalModelRegistry(tmp_path / "reg")
    pending = registry.prepare("churn")
    winner, _, _ = _register(registry, tmp_path, data=b"winner")
    assert winner.reference == pending.reference
    model, bundle, verified = _model(tmp_path, "late", b"late")
    with pytest.raises(RegistryError) as err:
        registry.commit(pending, model_dir=model, bundle_dir=bundle, verified=verified)
    assert str(err.value) == "local://churn@1: version already exists"
    assert registry.resolve("local://churn@1") == winner
    assert sorted(p.name for p in (tmp_path / "reg" / "models" / "churn").iterdir()) == ["1"]


def test_a_failed_copy_leaves_no_staging(tmp_path):
    registry = LocalModelRegistry(tmp_path / "reg")
    _, bundle, verified = _model(tmp_path)
    with pytest.raises(OSError):
        registry.commit(registry.prepare("churn"), model_dir=tmp_path / "absent", bundle_dir=bundle, verified=verified)
    assert list((tmp_path / "reg" / "models" / "churn").iterdir()) == []


@given(st.text(alphabet="abcXYZ09_.-/@ é", min_size=0, max_size=70))
@settings(max_examples=200, deadline=None)
def test_a_model_name_is_accepted_exactly_when_it_is_a_valid_name(name):
    valid = re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,62}", name) is not None
    registry = LocalModelRegistry("/nonexistent/registry")
    try:
        registry._model_root(name)
        accepted = True
    except InputError as exc:
        accepted = False
        assert str(exc).startswith(f"model name {name!r}: use 1-63 lowercase letters")
    assert accepted == valid


@pytest.mark.parametrize("name", ["", "Churn", "-x", ".x", "a/b", "..", "a" * 64, "é"])
def test_invalid_names_are_refused_before_anything_is_written(tmp_path, name):
    registry = LocalModelRegistry(tmp_path / "reg")
    with pytest.raises(InputError):
        registry.prepare(name)
    with pytest.raises(InputError):
        registry.find(name, model_sha256="0" * 64)
    assert not (tmp_path / "reg" / "models").exists()


def test_the_longest_valid_name_is_accepted(tmp_path):
    registry = LocalModelRegistry(tmp_path / "reg")
    assert registry.prepare("a" * 63).reference == f"local://{'a' * 63}@1"


@pytest.mark.parametrize("reference", ["local://m", "local://m@", "local://m@x", "local://m@1/2", "local://a/b@1",
                                       "vertex://m@1", "local://@1", "local://m@1 ", " local://m@1"])
def test_a_malformed_reference_is_an_input_error(reference):
    with pytest.raises(InputError) as err:
        parse_local_reference(reference)
    assert str(err.value) == f"{reference}: expected local://NAME@VERSION"


def test_parse_local_reference():
    assert parse_local_reference("local://churn@12") == ("churn", "12")


def test_resolve_an_unknown_version_names_the_registry(tmp_path):
    registry = LocalModelRegistry(tmp_path / "reg")
    _register(registry, tmp_path)
    with pytest.raises(RegistryError) as err:
        registry.resolve("local://churn@2")
    assert str(err.value) == f"local://churn@2: not found in {tmp_path / 'reg'}"
    with pytest.raises(RegistryError):
        registry.resolve("local://other@1")


@pytest.mark.parametrize("content, message", [
    (b"{not json", "unreadable registry entry"),
    (b"[1, 2]", "malformed registry entry"),
    (b'{"reference": "local://churn@1"}', "registry entry: malformed"),
    (b"\xff\xfe", "unreadable registry entry"),
])
def test_a_malformed_entry_is_a_registry_error(tmp_path, content, message):
    registry = LocalModelRegistry(tmp_path / "reg")
    _register(registry, tmp_path)
    (tmp_path / "reg" / "models" / "churn" / "1" / "version.json").write_bytes(content)
    with pytest.raises(RegistryError) as err:
        registry.resolve("local://churn@1")
    assert message in str(err.value)
    with pytest.raises(RegistryError):
        registry.find("churn", model_sha256="0" * 64)


def test_the_identity_is_made_once_and_kept(tmp_path):
    registry = LocalModelRegistry(tmp_path / "reg")
    assert registry.identity() == {"kind": "local", "registry_id": ""}
    assert not (tmp_path / "reg").exists()  # asking does not create
    made = registry.identity(create=True)
    assert made["kind"] == "local" and re.fullmatch(r"[0-9a-f]{32}", made["registry_id"])
    assert registry.identity(create=True) == made == registry.identity()
    assert LocalModelRegistry(tmp_path / "reg").identity_for("local://x@1") == made
    assert sorted(p.name for p in (tmp_path / "reg").iterdir()) == ["registry.json"]  # no temporary file left
    doc = json.loads((tmp_path / "reg" / "registry.json").read_text())
    assert doc["registry_id"] == made["registry_id"] and doc["created"].endswith("Z")


def test_concurrent_creators_agree_on_one_identity(tmp_path):
    seen: list[dict[str, str]] = []
    barrier = threading.Barrier(8)

    def create() -> None:
        barrier.wait()
        seen.append(LocalModelRegistry(tmp_path / "reg").identity(create=True))

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({s["registry_id"] for s in seen}) == 1 and len(seen) == 8
    assert sorted(p.name for p in (tmp_path / "reg").iterdir()) == ["registry.json"]


def test_an_identity_that_appeared_meanwhile_is_never_replaced(tmp_path, monkeypatch):
    reg = tmp_path / "reg"
    reg.mkdir()
    theirs = {"kind": "local", "registry_id": "f" * 32, "created": "2026-01-01T00:00:00Z"}
    real_link = os.link

    def racing_link(src, dst):
        Path(dst).write_text(json.dumps(theirs))  # another creator won between the check and the link
        return real_link(src, dst)

    monkeypatch.setattr(os, "link", racing_link)
    assert LocalModelRegistry(reg).identity(create=True)["registry_id"] == "f" * 32
    assert sorted(p.name for p in reg.iterdir()) == ["registry.json"]


@pytest.mark.parametrize("content, expected", [(b"{bad", None), (b"[1]", ""), (b'{"registry_id": 7}', "7")])
def test_an_identity_record_that_is_not_a_document(tmp_path, content, expected):
    (tmp_path / "reg").mkdir()
    (tmp_path / "reg" / "registry.json").write_bytes(content)
    registry = LocalModelRegistry(tmp_path / "reg")
    if expected is None:
        with pytest.raises(RegistryError) as err:
            registry.identity()
        assert str(err.value) == f"{tmp_path / 'reg' / 'registry.json'}: unreadable registry identity"
    else:
        assert registry.identity() == {"kind": "local", "registry_id": expected}


def test_the_root_is_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert LocalModelRegistry("reg").root == tmp_path / "reg"


def test_the_entry_round_trips_and_names_a_missing_field():
    entry = RegisteredModel(reference="local://m@1", name="m", version="1", model_location="/r/m", model_sha256="a" * 64,
                            model_files={"model/x": "b" * 64}, bundle_location="/r/b", bundle_sha256="c" * 64,
                            created="2026-12-04T00:00:00Z")
    doc = entry.to_dict()
    assert doc["chainproof_version"] and RegisteredModel.from_dict(json.loads(json.dumps(doc))) == entry
    for key in ("reference", "name", "version", "created", "model", "bundle"):
        broken = {k: v for k, v in doc.items() if k != key}
        with pytest.raises(RegistryError) as err:
            RegisteredModel.from_dict(broken)
        assert repr(key) in str(err.value)
    with pytest.raises(RegistryError):
        RegisteredModel.from_dict({**doc, "model": {**doc["model"], "files": ["x"]}})


def test_a_copied_registry_keeps_resolving(tmp_path):
    registry = LocalModelRegistry(tmp_path / "reg")
    entry, _, _ = _register(registry, tmp_path)
    shutil.copytree(tmp_path / "reg", tmp_path / "copy")
    assert LocalModelRegistry(tmp_path / "copy").resolve(entry.reference).model_sha256 == entry.model_sha256


def test_the_identity_record_is_created_under_missing_parents_in_its_stable_form(tmp_path):
    registry = LocalModelRegistry(tmp_path / "a" / "b" / "reg")
    made = registry.identity(create=True)
    path = tmp_path / "a" / "b" / "reg" / "registry.json"
    doc = json.loads(path.read_text())
    assert doc == {"kind": "local", "registry_id": made["registry_id"], "created": doc["created"]}
    assert path.read_text() == json.dumps(doc, indent=2, sort_keys=True) + "\n"


def test_the_entry_is_written_as_indented_json(tmp_path):
    registry = LocalModelRegistry(tmp_path / "reg")
    entry, _, _ = _register(registry, tmp_path)
    text = (tmp_path / "reg" / "models" / "churn" / "1" / "version.json").read_text()
    assert text == json.dumps(entry.to_dict(), indent=2) + "\n"


def test_commit_stages_beside_the_versions_and_publishes_by_one_rename(tmp_path, monkeypatch):
    """The staging folder is a hidden sibling of the versions: same filesystem, so the rename is atomic."""
    registry = LocalModelRegistry(tmp_path / "reg")
    model, bundle, verified = _model(tmp_path)
    renames: list[tuple[Path, Path]] = []
    real = os.rename

    def record(src, dst):
        renames.append((Path(src), Path(dst)))
        return real(src, dst)

    monkeypatch.setattr(os, "rename", record)
    registry.commit(registry.prepare("churn"), model_dir=model, bundle_dir=bundle, verified=verified)
    base = tmp_path / "reg" / "models" / "churn"
    [(src, dst)] = [r for r in renames if r[1] == base / "1"]
    assert src.parent == base and src.name.startswith(".staging-1-")


def test_the_rehash_refusal_names_the_verified_chain(tmp_path):
    registry = LocalModelRegistry(tmp_path / "reg")
    model, bundle, verified = _model(tmp_path)
    (model / "extra.py").write_text("x")
    with pytest.raises(ArtifactRefused) as err:
        registry.commit(registry.prepare("churn"), model_dir=model, bundle_dir=bundle, verified=verified)
    assert str(err.value) == "model/extra.py: model file not attested by the verified chain (added after it ran)"
    (model / "extra.py").unlink()
    (model / "model.joblib").write_bytes(b"other")
    with pytest.raises(DigestMismatch) as err:
        registry.commit(registry.prepare("churn"), model_dir=model, bundle_dir=bundle, verified=verified)
    assert "attested by the verified chain" in str(err.value)


def test_a_failed_publish_that_is_not_a_taken_version_says_what_failed(tmp_path, monkeypatch):
    registry = LocalModelRegistry(tmp_path / "reg")
    model, bundle, verified = _model(tmp_path)

    def cross_device(src, dst):
        raise OSError(18, "Invalid cross-device link")

    pending = registry.prepare("churn")
    monkeypatch.setattr(os, "rename", cross_device)
    with pytest.raises(RegistryError) as err:
        registry.commit(pending, model_dir=model, bundle_dir=bundle, verified=verified)
    assert str(err.value) == "local://churn@1: cannot publish the version (Invalid cross-device link)"
    assert list((tmp_path / "reg" / "models" / "churn").iterdir()) == []
