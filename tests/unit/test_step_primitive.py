"""The step primitive (:mod:`chainproof.step`) called directly, on a two-step layout of its own.

Every other test reaches ``open_step`` through a whole pipeline run or the chain simulator,
where a weakened check hides behind the next step's verification. Here each refusal of the
primitive is driven on its own, with the exact error and message, and what a failing step
leaves behind (nothing at its outputs, one line after ``FAILURE_MARKER``) is checked after
each. These are the tests ``scripts/mutation.sh step`` runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

import pytest
from chainproof import step as step_mod
from chainproof.attest import load_link
from chainproof.digests import digest_tree, sha256_file
from chainproof.errors import (
    ArtifactRefused,
    ChainError,
    ChainproofError,
    DigestMismatch,
    InputError,
    LayoutError,
    PolicyViolation,
    UntrustedKey,
)
from chainproof.identity import Principal
from chainproof.policy import RUN_ID, StepSpec, generate_layout, sign_layout
from chainproof.signing import init_keys, load_public_key
from chainproof.step import (
    FAILURE_MARKER,
    IdentityPolicy,
    RunConfig,
    current_step,
    merge_chains,
    open_step,
    staged,
)
from chainproof.verify import KEYS_DIR, LAYOUT_FILE, LINKS_DIR

ME = Principal(kind="local-user", name="alice@host", details={"uid": "1000"})
STEPS = ("make", "use", "judge")


def _specs() -> list[StepSpec]:
    return [
        StepSpec("make", (("DISALLOW", "*"),),
                 (("CREATE", RUN_ID), ("CREATE", "data/*"), ("CREATE", "reports/*"), ("DISALLOW", "*")), "first"),
        StepSpec("use", (("MATCH", RUN_ID, "WITH", "PRODUCTS", "FROM", "make"),
                         ("MATCH", "data/*", "WITH", "PRODUCTS", "FROM", "make"), ("DISALLOW", "*")),
                 (("CREATE", "out/*"), ("DISALLOW", "*")), "second"),
        StepSpec("judge", (("MATCH", "out/*", "WITH", "PRODUCTS", "FROM", "use"), ("DISALLOW", "*")),
                 (("DISALLOW", "*"),), "third"),
    ]


class World:
    """Keys, a signed layout and helpers to run the steps of this small pipeline."""

    def __init__(self, root: Path, *, extensions: dict | None = None) -> None:
        self.root = root
        self.keys = init_keys(root / "keys", roles=["owner", *STEPS], development=True)
        pubs = {s: load_public_key(self.keys.public_key_path(s)) for s in STEPS}
        from chainproof.signing import load_signer

        self.owner = load_signer(self.keys.signer_reference("owner"))
        self.layout_bytes = sign_layout(generate_layout(_specs(), pubs, extensions=extensions), self.owner)
        self.layout_path = root / "published" / LAYOUT_FILE
        self.layout_path.parent.mkdir(parents=True)
        self.layout_path.write_bytes(self.layout_bytes)
        self.sha = hashlib.sha256(self.layout_bytes).hexdigest()

    def signer(self, role: str) -> str:
        return self.keys.signer_reference(role)

    def owner_pem(self) -> str:
        return self.keys.public_key_path("owner").read_text()

    def make(self, chain_out: Path | None = None, *, run_id: bool = True) -> tuple[Path, Path]:
        """Run the first step: it fetches the layout by URI and produces run/id and data/."""
        chain_out = chain_out or self.root / f"chain-make-{uuid.uuid4().hex[:6]}"
        data_out = self.root / f"data-{uuid.uuid4().hex[:6]}"
        with open_step("make", layout_sha256=self.sha, signer=self.signer("make"), chain_out=chain_out,
                       layout_uri=self.layout_path.as_uri(), principal=ME) as ctx:
            if run_id:
                ctx.add_evidence(RUN_ID, b"run-1\n")
            out = ctx.output(data_out)
            (out / "table.csv").write_bytes(b"a,b\n1,2\n")
            (out / "sub").mkdir()
            (out / "sub" / "more.txt").write_bytes(b"more")
            ctx.add_products(out, "data")
            ctx.add_evidence("reports/r.json", {"b": 2, "a": 1})
            ctx.sign()
        return chain_out, data_out


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return World(tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="module")
def made(world) -> tuple[Path, Path]:
    return world.make()


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".staging-" in p.name)


# -- a whole two-step run, and what it attests


def test_a_first_step_fetches_the_pinned_layout_and_publishes_its_signed_link(world, made):
    chain, data = made
    assert (chain / LAYOUT_FILE).read_bytes() == world.layout_bytes
    links = sorted((chain / LINKS_DIR).iterdir())
    assert [p.name.split(".")[0] for p in links] == ["make"]
    _, link = load_link(links[0])
    assert set(link.products) == {RUN_ID, "data/table.csv", "data/sub/more.txt", "reports/r.json"}
    assert link.products["data/table.csv"]["sha256"] == sha256_file(data / "table.csv")
    assert link.materials == {}
    assert link.environment["chainproof"]["principal"] == ME.to_dict()
    # Evidence JSON is written sorted and indented, with a final newline, and attested as written.
    assert (chain / "reports/r.json").read_text() == '{\n  "a": 1,\n  "b": 2\n}\n'
    assert link.products["reports/r.json"]["sha256"] == sha256_file(chain / "reports/r.json")
    # Every functionary key of the layout travels in the chain, named by its key id.
    names = sorted(p.name for p in (chain / KEYS_DIR).iterdir())
    assert names == sorted(f"{world.keys.roles[s][:16]}.pub" for s in STEPS)
    assert (chain / KEYS_DIR / f"{world.keys.roles['use'][:16]}.pub").read_text() == world.keys.public_key_path("use").read_text()
    assert _leftovers(chain.parent) == []


def test_the_next_step_verifies_the_chain_and_what_it_receives(world, made, tmp_path):
    chain, data = made
    with open_step("use", layout_sha256=world.sha, signer=world.signer("use"), chains=[chain],
                   chain_out=tmp_path / "chain", principal=ME, owner_public_key=world.owner_pem()) as ctx:
        assert set(ctx.records) == {"make"}
        assert ctx.checks and ctx.checks[0].startswith("(1)-(2)")
        ctx.run_material()
        path, received = ctx.receive("data", data)
        assert received == digest_tree(data, prefix="data")
        assert path != data and (path / "table.csv").read_bytes() == (data / "table.csv").read_bytes()
        # Received twice: the same private copy, not a second one.
        assert ctx.receive("data", data) == (path, received)
        assert ctx.materials == {RUN_ID: sha256_file(chain / RUN_ID), **received}
        private = ctx.private_dir()
        assert ctx.private_dir() == private and private.is_dir()
        out = ctx.output(tmp_path / "out")
        (out / "o.txt").write_text("o")
        ctx.add_products(out, "out")
        ctx.sign()
    assert not private.exists()  # the private folder lives only as long as the step
    assert (tmp_path / "out" / "o.txt").read_text() == "o"
    # The owner's key, checked against the layout's signature, travels in the chain.
    assert (tmp_path / "chain" / KEYS_DIR / "owner.pub").read_text() == world.owner_pem()
    _, link = load_link(next((tmp_path / "chain" / LINKS_DIR).glob("use.*.link")))
    assert set(link.materials) == {RUN_ID, "data/table.csv", "data/sub/more.txt"}
    assert set(link.products) == {"out/o.txt"}
    # The third step verifies both earlier links.
    with open_step("judge", layout_sha256=world.sha, signer=world.signer("judge"), chains=[tmp_path / "chain"],
                   principal=ME) as judge:
        assert set(judge.records) == {"make", "use"}
        assert judge.records["use"].products["out/o.txt"] == sha256_file(tmp_path / "out" / "o.txt")


def test_the_received_copy_is_private_so_a_later_swap_is_never_read(world, made, tmp_path):
    chain, data = made
    shared = tmp_path / "shared"
    import shutil

    shutil.copytree(data, shared)
    with open_step("use", layout_sha256=world.sha, signer=world.signer("use"), chains=[chain], principal=ME) as ctx:
        path, _ = ctx.receive("data", shared)
        (shared / "table.csv").write_bytes(b"swapped")
        assert (path / "table.csv").read_bytes() == (data / "table.csv").read_bytes()
    in_place = tmp_path / "in-place"
    shutil.copytree(data, in_place)
    with open_step("use", layout_sha256=world.sha, signer=world.signer("use"), chains=[chain], principal=ME) as ctx:
        # copy=False verifies the files where they are and returns their own path.
        path, _ = ctx.receive("data", in_place, copy=False)
        assert path == in_place
        (in_place / "table.csv").write_bytes(b"swapped")
        with pytest.raises(DigestMismatch) as err:
            # (another spelling of the path: receive caches what it verified by path)
            ctx.receive("data", tmp_path / "in-place" / ".." / "in-place", copy=False)
        assert err.value.artifact == "data/table.csv"


# -- refusals before the step's work: nothing is published, one line is printed


def _refused(world, tmp_path, capsys, exc_type, **kwargs):
    """Open a step that must be refused; return the error after checking what it left."""
    chain_out = tmp_path / "chain-out"
    args = dict(layout_sha256=world.sha, signer=world.signer("use"), chain_out=chain_out, principal=ME)
    args.update(kwargs)
    step = args.pop("step", "use")
    ran = False
    with pytest.raises(exc_type) as err, open_step(step, **args):
        ran = True
    assert not ran, "the step's own work ran although the step was refused"
    assert not chain_out.exists() and _leftovers(tmp_path) == []
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line == f"{FAILURE_MARKER} {step} exit={err.value.exit_code}: {err.value.diagnostics()}"
    return err.value


def test_a_layout_other_than_the_pinned_one_is_refused_before_it_is_parsed(world, made, tmp_path, capsys):
    chain, _ = made
    err = _refused(world, tmp_path, capsys, DigestMismatch, chains=[chain], layout_sha256="ab" * 32)
    assert (err.artifact, err.expected, err.actual) == (LAYOUT_FILE, "ab" * 32, world.sha)
    # A fetched layout is checked against the pin as well.
    other = tmp_path / "other.layout"
    other.write_bytes(b"not json at all")
    err = _refused(world, tmp_path, capsys, DigestMismatch, step="make", signer=world.signer("make"),
                   layout_uri=other.as_uri())
    assert err.expected == world.sha and err.actual == hashlib.sha256(b"not json at all").hexdigest()


def test_a_malformed_pin_is_an_input_error(world, made, tmp_path, capsys):
    chain, _ = made
    err = _refused(world, tmp_path, capsys, InputError, chains=[chain], layout_sha256="xyz")
    assert "use layout_sha256" in str(err)


def test_a_first_step_without_a_layout_uri_is_refused(world, tmp_path, capsys):
    err = _refused(world, tmp_path, capsys, ChainError, step="make", signer=world.signer("make"))
    assert err.step == "make" and f"no {LAYOUT_FILE} in the chains received" in str(err)


def test_a_wrong_owner_key_is_refused(world, made, tmp_path, capsys):
    chain, _ = made
    other = init_keys(tmp_path / "other-keys", roles=["owner"])
    err = _refused(world, tmp_path, capsys, UntrustedKey, chains=[chain],
                   owner_public_key=other.public_key_path("owner").read_text())
    assert str(err).startswith(f"{LAYOUT_FILE}: signed by key {world.owner.keyid[:16]}, which is not a trusted key")
    assert other.roles["owner"][:16] in str(err)


def test_another_steps_key_is_not_this_steps_signer(world, made, tmp_path, capsys):
    chain, _ = made
    err = _refused(world, tmp_path, capsys, ChainError, chains=[chain], signer=world.signer("judge"))
    assert err.step == "use"
    assert str(err).endswith(f": signer {world.signer('judge')} has key {world.keys.roles['judge'][:16]}, but the layout "
                             f"authorizes {world.keys.roles['use'][:16]} for this step")


def test_no_signer_and_an_unknown_step_are_refused(world, made, tmp_path, capsys):
    chain, _ = made
    err = _refused(world, tmp_path, capsys, InputError, chains=[chain], signer="")
    assert str(err) == "step use: no signer reference was given for this step"
    err = _refused(world, tmp_path, capsys, LayoutError, chains=[chain], step="nosuch")
    assert "the layout has no step 'nosuch'" in str(err)


def test_the_signer_lookup_refuses_a_step_the_layout_lacks(world, made):
    """Unreachable through open_step (the chain's verification refuses first): the lookup stands alone."""
    from chainproof.verify import load_layout

    _, layout = load_layout(world.layout_bytes)
    with pytest.raises(ChainError) as err:
        step_mod._signer_for("nosuch", world.signer("use"), layout)
    assert err.value.step == "nosuch" and str(err.value).endswith(": the layout has no such step")
    assert step_mod._signer_for("use", world.signer("use"), layout).keyid == world.keys.roles["use"]


def test_a_missing_earlier_link_is_refused(world, tmp_path, capsys):
    chain, _ = world.make(tmp_path / "c")
    for link in (chain / LINKS_DIR).iterdir():
        link.unlink()
    _refused(world, tmp_path, capsys, ChainproofError, chains=[chain])


def test_a_pinned_principal_other_than_the_running_one_is_refused(tmp_path, capsys):
    pinned = World(tmp_path / "w", extensions={"expected_principals": {"use": "trainer@p.iam.gserviceaccount.com"}})
    chain, _ = pinned.make()
    err = _refused(pinned, tmp_path, capsys, PolicyViolation, chains=[chain])
    assert str(err) == ("step use: running as alice@host (local-user), but the layout expects "
                        "trainer@p.iam.gserviceaccount.com")
    # The pinned principal passes; an unpinned step ("make") accepted anyone.
    who = Principal(kind="metadata-server", name="trainer@p.iam.gserviceaccount.com")
    with open_step("use", layout_sha256=pinned.sha, signer=pinned.signer("use"), chains=[chain], principal=who) as ctx:
        assert ctx.principal == who


def test_a_failure_inside_the_step_publishes_nothing_and_is_reported(world, made, tmp_path, capsys):
    chain, data = made
    with pytest.raises(ArtifactRefused):
        with open_step("use", layout_sha256=world.sha, signer=world.signer("use"), chains=[chain],
                       chain_out=tmp_path / "chain", principal=ME) as ctx:
            out = ctx.output(tmp_path / "out")
            (out / "half.txt").write_text("half")
            ctx.receive("data", tmp_path / "missing")
    assert not (tmp_path / "chain").exists() and not (tmp_path / "out").exists() and _leftovers(tmp_path) == []
    assert capsys.readouterr().err.strip().startswith(f"{FAILURE_MARKER} use exit=1: ")
    # A non-chainproof exception is not turned into a failure line (the caller's backstop reports it).
    with pytest.raises(ZeroDivisionError):
        with open_step("use", layout_sha256=world.sha, signer=world.signer("use"), chains=[chain],
                       chain_out=tmp_path / "chain2", principal=ME):
            1 / 0  # noqa: B018
    assert not (tmp_path / "chain2").exists() and FAILURE_MARKER not in capsys.readouterr().err


# -- StepContext, piece by piece


@pytest.fixture
def ctx(world, made):
    chain, _ = made
    with open_step("use", layout_sha256=world.sha, signer=world.signer("use"), chains=[chain], principal=ME) as c:
        yield c


def test_receive_refuses_changed_missing_and_added_files(ctx, made, tmp_path):
    _, data = made
    import shutil

    changed = tmp_path / "changed"
    shutil.copytree(data, changed)
    (changed / "sub" / "more.txt").write_bytes(b"MORE")
    with pytest.raises(DigestMismatch) as err:
        ctx.receive("data", changed)
    assert err.value.artifact == "data/sub/more.txt"
    assert err.value.expected == sha256_file(data / "sub" / "more.txt")
    assert err.value.actual == hashlib.sha256(b"MORE").hexdigest()
    added = tmp_path / "added"
    shutil.copytree(data, added)
    (added / "extra.bin").write_bytes(b"x")
    with pytest.raises(ArtifactRefused) as err:
        ctx.receive("data", added)
    assert err.value.artifact == "data/extra.bin"
    removed = tmp_path / "removed"
    shutil.copytree(data, removed)
    (removed / "table.csv").unlink()
    with pytest.raises(ArtifactRefused) as err:
        ctx.receive("data", removed)
    assert err.value.artifact == "data/table.csv"
    with pytest.raises(ArtifactRefused) as err:
        ctx.receive("data", tmp_path / "nothing")
    assert err.value.artifact == "data/" and "does not exist" in str(err.value)
    assert ctx.materials == {}  # nothing refused became a material


def test_receive_checks_against_the_named_producer(ctx, made):
    _, data = made
    with pytest.raises(ChainError) as err:
        ctx.receive("data", data, producer="judge")
    assert err.value.step == "use" and "its producer judge has no verified link" in str(err.value)
    _, got = ctx.receive("data", data, producer="make")
    assert got == digest_tree(data, prefix="data")
    # A producer that attested nothing under the prefix: every received file is unattested.
    with pytest.raises(ArtifactRefused):
        ctx.receive("out", data, producer="make")


def test_run_material_needs_a_step_that_produced_the_run_id(world, tmp_path):
    chain, _ = world.make(tmp_path / "c", run_id=False)
    with open_step("use", layout_sha256=world.sha, signer=world.signer("use"), chains=[chain], principal=ME) as c:
        assert set(c.records) == {"make"}
        with pytest.raises(ChainError) as err:
            c.run_material()
        assert err.value.step == "use" and f"no earlier step produced {RUN_ID}" in str(err.value)


def test_a_link_is_signed_once(ctx):
    ctx.sign()
    with pytest.raises(ChainError) as err:
        ctx.sign()
    assert err.value.step == "use" and str(err.value).endswith(": the step's link was signed already")
    assert len(list((ctx.chain / LINKS_DIR).glob("use.*.link"))) == 1


def test_add_evidence_takes_bytes_as_they_are(ctx):
    path = ctx.add_evidence("reports/raw.bin", b"\x00\x01")
    assert path == ctx.chain / "reports/raw.bin" and path.read_bytes() == b"\x00\x01"
    assert ctx.products["reports/raw.bin"] == hashlib.sha256(b"\x00\x01").hexdigest()


def test_current_step_outside_a_step_is_an_input_error():
    with pytest.raises(InputError) as err:
        current_step()
    assert str(err.value) == "not inside a chainproof step: run the component in a pipeline built with chainproof.dsl"


def test_current_step_is_the_innermost_open_one(ctx):
    step_mod._CURRENT.append(ctx)
    try:
        assert current_step() is ctx
    finally:
        step_mod._CURRENT.pop()


# -- staged outputs


def test_staged_publishes_on_success_and_leaves_nothing_on_failure(tmp_path):
    final = tmp_path / "a" / "out"
    with staged(final) as stage:
        assert stage.parent == final.parent and stage.name.startswith(".out.staging-")
        (stage / "f").write_text("1")
        assert not final.exists()
    assert (final / "f").read_text() == "1" and _leftovers(final.parent) == []
    with pytest.raises(InputError) as err, staged(final):
        pass
    assert str(err.value) == f"{final}: output already exists; refusing to overwrite it"
    other = tmp_path / "b"
    with pytest.raises(RuntimeError), staged(other) as stage:
        (stage / "f").write_text("1")
        raise RuntimeError("boom")
    assert not other.exists() and _leftovers(tmp_path) == []


def test_staged_takes_an_empty_folder_and_refuses_a_file(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with staged(empty) as stage:
        (stage / "f").write_text("1")
    assert (empty / "f").read_text() == "1"
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(InputError), staged(file):
        pass
    assert file.read_text() == "x"


def test_staged_copies_where_rename_is_refused(tmp_path, monkeypatch):
    """Cloud Storage FUSE refuses to rename a non-empty folder: the output is copied instead."""
    final = tmp_path / "out"

    def refuse(src, dst):
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(step_mod.os, "rename", refuse)
    with staged(final) as stage:
        (stage / "sub").mkdir()
        (stage / "sub" / "f").write_text("1")
    assert (final / "sub" / "f").read_text() == "1" and _leftovers(tmp_path) == []


def test_staged_removes_a_partial_copy(tmp_path, monkeypatch):
    final = tmp_path / "out"
    monkeypatch.setattr(step_mod.os, "rename", lambda s, d: (_ for _ in ()).throw(OSError(38, "no rename")))

    def half_copy(src, dst, dirs_exist_ok=False):
        Path(dst).mkdir()
        (Path(dst) / "partial").write_text("p")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(step_mod.shutil, "copytree", half_copy)
    with pytest.raises(OSError), staged(final) as stage:
        (stage / "f").write_text("1")
    assert not final.exists() and _leftovers(tmp_path) == []


# -- merging received chains


def test_merge_chains_joins_shared_history_and_refuses_disagreement(tmp_path):
    a, b, into = tmp_path / "a", tmp_path / "b", tmp_path / "into"
    for chain in (a, b):
        (chain / "links").mkdir(parents=True)
        (chain / "root.layout").write_text("L")
    (a / "links" / "x.link").write_text("X")
    (b / "links" / "y.link").write_text("Y")
    (b / "deep" / "er").mkdir(parents=True)
    (b / "deep" / "er" / "z").write_text("Z")
    merge_chains([a, b], into)
    assert digest_tree(into) == {**digest_tree(a), **digest_tree(b)}
    (b / "links" / "x.link").write_text("X, altered")
    with pytest.raises(ArtifactRefused) as err:
        merge_chains([a, b], tmp_path / "into2")
    assert err.value.artifact == "links/x.link"
    assert f"({a} and {b})" in str(err.value) and "one was altered" in str(err.value)


def test_merge_of_no_chains_is_empty(tmp_path):
    (tmp_path / "into").mkdir()
    merge_chains([], tmp_path / "into")
    assert list((tmp_path / "into").iterdir()) == []


# -- the run configuration


def test_run_config_round_trips_every_field():
    cfg = RunConfig(layout_uri="gs://b/l", layout_sha256="a" * 64, signers={"make": "file:/k.pem"}, run="r1",
                    identity=IdentityPolicy(mode="gcp", allow_service_account_key=True), owner_public_key="PEM",
                    registry_uri="local:///r", builder_id="https://b", component_image="img@sha256:" + "b" * 64,
                    pipeline_template_sha256="c" * 64, advisories="/adv", vault={"role": "r"},
                    secret_manager_endpoint="127.0.0.1:1", outcome_uri="gs://b/outcome.json")
    text = cfg.to_json()
    assert json.loads(text)["identity"] == {"mode": "gcp", "allow_service_account_key": True}
    assert RunConfig.from_json(text, step="s") == cfg
    assert text == json.dumps(json.loads(text), sort_keys=True)


def test_run_config_leaves_out_an_empty_outcome_uri_and_defaults_the_identity():
    cfg = RunConfig(layout_uri="u", layout_sha256="a" * 64, signers={}, run="r")
    doc = json.loads(cfg.to_json())
    assert "outcome_uri" not in doc and doc["identity"] == {"mode": "local", "allow_service_account_key": False}
    back = RunConfig.from_json(json.dumps({k: v for k, v in doc.items() if k != "identity"}), step="s")
    assert back == cfg and back.identity == IdentityPolicy()


@pytest.mark.parametrize("text", ["", "   \n"])
def test_run_config_missing_says_how_to_run_the_pipeline(text):
    with pytest.raises(InputError) as err:
        RunConfig.from_json(text, step="train")
    assert str(err.value) == ("step train: no chainproof run configuration; run the pipeline with "
                              "`chainproof run --pipeline`, chainproof.local.run or `chainproof submit`")


@pytest.mark.parametrize("text", ["{bad", "[1, 2]", '{"layout_uri": "u"}', '{"nope": 1, "layout_uri": "u"}',
                                  '{"identity": 3}', '{"signers": [1]}'])
def test_run_config_malformed_is_an_input_error_naming_the_step(text):
    with pytest.raises(InputError) as err:
        RunConfig.from_json(text, step="train")
    assert str(err.value).startswith("step train: malformed chainproof run configuration (")


def test_identity_policy_resolves_the_local_user_in_local_mode(monkeypatch):
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    who = IdentityPolicy().resolve()
    assert who.kind == "local-user" and "@" in who.name
    assert IdentityPolicy(mode="local", allow_service_account_key=True).allow_service_account_key


def test_open_step_resolves_the_principal_from_its_identity_policy(world, made, monkeypatch):
    chain, _ = made
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    with open_step("use", layout_sha256=world.sha, signer=world.signer("use"), chains=[chain]) as c:
        assert c.principal.kind == "local-user" and c.principal.name == IdentityPolicy().resolve().name


def test_keys_already_in_the_chain_are_kept(world, made, tmp_path):
    chain, _ = made
    import shutil

    copy = tmp_path / "chain"
    shutil.copytree(chain, copy)
    with open_step("use", layout_sha256=world.sha, signer=world.signer("use"), chains=[copy], principal=ME) as c:
        written = sorted(p.name for p in (c.chain / KEYS_DIR).iterdir())
    assert written == sorted(p.name for p in (chain / KEYS_DIR).iterdir())
    assert os.path.exists(copy / KEYS_DIR)


def test_a_malformed_run_config_names_the_kind_of_fault():
    with pytest.raises(InputError) as err:
        RunConfig.from_json("{bad", step="train")
    assert str(err.value) == "step train: malformed chainproof run configuration (JSONDecodeError)"
    with pytest.raises(InputError) as err:
        RunConfig.from_json('{"nope": 1}', step="train")
    assert str(err.value) == "step train: malformed chainproof run configuration (TypeError)"


def _key_file(tmp_path: Path) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path = tmp_path / "sa-key.json"
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "p", "private_key_id": "0" * 40, "private_key": pem.decode(),
        "client_email": "key@p.iam.gserviceaccount.com", "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }))
    return path


def test_identity_policy_passes_its_mode_and_its_key_file_override(tmp_path, monkeypatch):
    from chainproof.errors import CredentialRefused

    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(_key_file(tmp_path)))
    with pytest.raises(CredentialRefused):
        IdentityPolicy().resolve()
    allowed = IdentityPolicy(allow_service_account_key=True).resolve()
    assert allowed.kind == "local-user" and allowed.details["override"] == "allow_service_account_key"
    # gcp mode records the key file's account itself.
    remote = IdentityPolicy(mode="gcp", allow_service_account_key=True).resolve()
    assert (remote.kind, remote.name) == ("service-account-key", "key@p.iam.gserviceaccount.com")
    # gcp mode asks Application Default Credentials: none here, where local mode records the user.
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "absent.json"))
    with pytest.raises(CredentialRefused) as err:
        IdentityPolicy().resolve()
    assert str(err.value) == f"GOOGLE_APPLICATION_CREDENTIALS: File {tmp_path / 'absent.json'} was not found."
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS")
    assert IdentityPolicy().resolve().kind == "local-user"


def test_merge_keeps_copying_after_a_shared_file(tmp_path):
    """A file both chains hold (the same bytes) is skipped, and the rest of that chain still copied."""
    a, b = tmp_path / "a", tmp_path / "b"
    for chain in (a, b):
        chain.mkdir()
        (chain / "0-shared").write_text("same")
    (b / "z-after").write_text("only in b")
    merge_chains([a, b], tmp_path / "into")
    assert sorted(p.name for p in (tmp_path / "into").iterdir()) == ["0-shared", "z-after"]


def test_receive_names_the_producer_and_the_kind_of_file_in_its_refusals(ctx, made, tmp_path):
    import shutil

    _, data = made
    added = tmp_path / "added"
    shutil.copytree(data, added)
    (added / "extra.bin").write_bytes(b"x")
    with pytest.raises(ArtifactRefused) as err:
        ctx.receive("data", added)
    assert str(err.value).endswith("data file not attested by make (added after it ran)")
    changed = tmp_path / "changed"
    shutil.copytree(data, changed)
    (changed / "table.csv").write_bytes(b"other")
    with pytest.raises(DigestMismatch) as err:
        ctx.receive("data", changed)
    assert "attested by make" in str(err.value)


def test_a_received_symlink_is_refused_even_to_identical_bytes(ctx, made, tmp_path):
    import shutil

    _, data = made
    linked = tmp_path / "linked"
    shutil.copytree(data, linked)
    (tmp_path / "same.csv").write_bytes((data / "table.csv").read_bytes())
    (linked / "table.csv").unlink()
    (linked / "table.csv").symlink_to(tmp_path / "same.csv")
    with pytest.raises(ArtifactRefused) as err:
        ctx.receive("data", linked)
    assert str(err.value) == f"data/: the received artifact {linked}: only regular files are allowed in an artifact"


def test_receive_a_single_file_verifies_a_private_copy(world, tmp_path):
    chain, _ = world.make(tmp_path / "c")
    report = chain / "reports" / "r.json"
    with open_step("use", layout_sha256=world.sha, signer=world.signer("use"), chains=[chain], principal=ME) as c:
        path, got = c.receive("reports", report)
        assert got == {"reports/r.json": sha256_file(report)} and path != report
        assert path.read_bytes() == report.read_bytes()
        other = tmp_path / "r.json"
        other.write_text("{}")
        with pytest.raises(DigestMismatch):
            c.receive("reports", other)


def test_a_first_step_stores_the_fetched_layout_as_root_layout(world, tmp_path):
    """The layout may be published under any name; in the chain it is always root.layout."""
    elsewhere = tmp_path / "published" / "layout-v7.json"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(world.layout_bytes)
    with open_step("make", layout_sha256=world.sha, signer=world.signer("make"), layout_uri=elsewhere.as_uri(),
                   principal=ME) as c:
        assert (c.chain / LAYOUT_FILE).read_bytes() == world.layout_bytes
        assert sorted(p.name for p in c.chain.iterdir() if p.is_file()) == [LAYOUT_FILE]
