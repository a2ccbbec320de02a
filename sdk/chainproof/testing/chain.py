"""A chain simulator: the reference chain built in-process, without a pipeline run.

:func:`simulate_chain` runs the five reference steps (``secure_ingest``, ``train_model``,
``sign_and_attest``, ``verify_chain``, ``register_model``) as library calls on the built-in
sample table, with development keys, into a local registry: the same code the components
run, with no kfp, no subprocess and no network. The result, a :class:`SimulatedChain`, then
lets a test play the attacker precisely:

- :meth:`SimulatedChain.edit_link` changes a step's link and re-signs it (a stolen step key);
- :meth:`SimulatedChain.edit_layout` changes the layout and re-signs it with the owner key,
  or with another key;
- :meth:`SimulatedChain.replace_artifact` replaces a file and rewrites every link that names
  it, each re-signed with its own step's key (every step key stolen, the owner key not), so
  that only the checks of content signatures and of the owner's policy are left to catch it;
- :meth:`SimulatedChain.sign_statement` signs an in-toto Statement as a step would.

:meth:`SimulatedChain.snapshot` and :meth:`SimulatedChain.restore` put the chain back as it
was built, so one simulation serves many tests. python-tuf's ``RepositorySimulator`` is the
model.

Example:
    >>> from chainproof.testing.chain import simulate_chain  # doctest: +SKIP
    >>> chain = simulate_chain(tmp_path)
    >>> chain.replace_artifact("model/model.joblib", b"other bytes")
    >>> chain.verify()   # raises SignatureError: check (10), model.sig is over the old model
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from in_toto.models.layout import Layout
from in_toto.models.link import Link
from in_toto.models.metadata import Envelope, Metadata
from securesystemslib.signer import SSlibKey

from chainproof import steps
from chainproof.attest import sign_statement, write_atomic, write_link
from chainproof.policy import REFERENCE_STEPS, generate_layout, sign_layout
from chainproof.registry import LocalModelRegistry
from chainproof.runner import SAMPLE
from chainproof.signing import (
    KeyRing,
    StepSigner,
    init_keys,
    load_public_key,
    load_signer,
    public_key_pem,
)
from chainproof.verify import (
    LAYOUT_FILE,
    LINKS_DIR,
    VerificationResult,
    load_layout,
    verify_bundle,
    verify_registered,
)

__all__ = ["SimulatedChain", "simulate_chain"]

STEP_NAMES = [s.name for s in REFERENCE_STEPS]


@dataclass
class SimulatedChain:
    """A registered model and its evidence, built by :func:`simulate_chain`.

    Attributes:
        root: the folder holding everything (keys, layout, step outputs, registry).
        keys: the development key ring (``owner`` and one key per step).
        model_name: the registered model's name.
        reference: the registry reference (``local://NAME@1``).
    """

    root: Path
    keys: KeyRing
    model_name: str
    reference: str

    # -- where things are

    @property
    def registry_dir(self) -> Path:
        """The local registry folder."""
        return self.root / "registry"

    @property
    def version_dir(self) -> Path:
        """The registered version's folder (``version.json``, ``bundle/``, ``model/``)."""
        return self.registry_dir / "models" / self.model_name / "1"

    @property
    def bundle(self) -> Path:
        """The registered evidence bundle."""
        return self.version_dir / "bundle"

    @property
    def model(self) -> Path:
        """The registered model folder."""
        return self.version_dir / "model"

    def path_of(self, name: str) -> Path:
        """The file of a logical artifact name: ``model/...`` in the model folder, the rest in the bundle."""
        if name.startswith("model/"):
            return self.model / name[len("model/"):]
        return self.bundle / name

    def link_path(self, step: str) -> Path:
        """The bundle's link file of a step."""
        found = sorted((self.bundle / LINKS_DIR).glob(f"{step}.*.link"))
        if len(found) != 1:
            raise LookupError(f"{step}: expected one link in the bundle, found {len(found)}")
        return found[0]

    # -- keys

    def signer(self, role: str) -> StepSigner:
        """The signer of ``owner`` or of a step."""
        return load_signer(self.keys.signer_reference(role))

    def public_key(self, role: str) -> SSlibKey:
        """The public key of ``owner`` or of a step."""
        return load_public_key(self.keys.public_key_path(role))

    def owner_keys(self) -> dict[str, SSlibKey]:
        """The trusted owner keys, by key id, as a verifier passes them."""
        key = self.public_key("owner")
        return {key.keyid: key}

    # -- verification

    def verify(self, **kwargs: Any) -> VerificationResult:
        """:func:`chainproof.verify.verify_bundle` on the registered bundle, trusting the owner key."""
        kwargs.setdefault("trusted_owner_keys", self.owner_keys())
        return verify_bundle(self.bundle, model_dir=self.model, **kwargs)

    def verify_registered(self, reference: str | None = None, **kwargs: Any) -> VerificationResult:
        """:func:`chainproof.verify.verify_registered` on the local registry (checks 0, 15-17 too)."""
        kwargs.setdefault("trusted_owner_keys", self.owner_keys())
        return verify_registered(reference or self.reference, registry=LocalModelRegistry(self.registry_dir),
                                 **kwargs)

    # -- the attacker's moves

    def edit_link(self, step: str, edit: Callable[[Link], None], *, signer: StepSigner | None = None) -> Path:
        """Change a step's link and re-sign it (with the step's own key unless ``signer`` is given).

        Args:
            step: the step whose link to change.
            edit: changes the in-toto ``Link`` in place.
            signer: sign with this key instead (the old link file is removed; the new one is
                named after the new key).

        Returns:
            The link file written.
        """
        old = self.link_path(step)
        link = Metadata.load(str(old)).get_payload()
        edit(link)
        envelope = Envelope.from_signable(link)
        envelope.create_signature((signer or self.signer(step)).signer)
        old.unlink()
        return write_link(envelope, old.parent)

    def edit_layout(self, edit: Callable[[Layout], None], *, signer: StepSigner | None = None) -> None:
        """Change the bundle's layout and re-sign it (with the owner key unless ``signer`` is given)."""
        path = self.bundle / LAYOUT_FILE
        _, layout = load_layout(path.read_bytes())
        edit(layout)
        write_atomic(path, sign_layout(layout, signer or self.signer("owner")))

    def replace_artifact(self, name: str, data: bytes) -> list[str]:
        """Replace an artifact and rewrite every link that names it, each re-signed by its own step.

        Args:
            name: the logical name (``model/model.joblib``, ``attestations/vsa.json``, ...).
            data: the new content.

        Returns:
            The steps whose links were rewritten.
        """
        write_atomic(self.path_of(name), data)
        digest = hashlib.sha256(data).hexdigest()
        rewritten = []
        for step in STEP_NAMES:
            link = Metadata.load(str(self.link_path(step))).get_payload()
            if name not in link.materials and name not in link.products:
                continue

            def edit(link: Link) -> None:
                for side in (link.materials, link.products):
                    if name in side:
                        side[name] = {"sha256": digest}

            self.edit_link(step, edit)
            rewritten.append(step)
        return rewritten

    def sign_statement(self, step: str, *, subjects: Mapping[str, str], predicate_type: str,
                       predicate: Mapping[str, Any]) -> bytes:
        """An in-toto Statement v1 in a DSSE envelope, signed with a step's key."""
        return sign_statement(subjects=subjects, predicate_type=predicate_type, predicate=predicate,
                              signer=self.signer(step))

    def statement(self, name: str) -> dict[str, Any]:
        """The Statement inside an attestation of the bundle (read, not verified)."""
        import base64

        envelope = json.loads(self.path_of(name).read_bytes())
        doc: dict[str, Any] = json.loads(base64.b64decode(envelope["payload"]))
        return doc

    # -- many tests, one simulation

    def snapshot(self) -> None:
        """Keep a copy of the registry as it is now (see :meth:`restore`)."""
        saved = self.root / ".snapshot"
        shutil.rmtree(saved, ignore_errors=True)
        shutil.copytree(self.registry_dir, saved, symlinks=True)

    def restore(self) -> None:
        """Put the registry back as it was at the last :meth:`snapshot`."""
        saved = self.root / ".snapshot"
        if not saved.is_dir():
            raise LookupError(f"{self.root}: no snapshot to restore")
        shutil.rmtree(self.registry_dir)
        shutil.copytree(saved, self.registry_dir, symlinks=True)


def simulate_chain(root: str | Path, *, model_name: str = "sim", n_estimators: int = 5) -> SimulatedChain:
    """Build the reference chain in-process, register it, and return it (snapshotted).

    Args:
        root: an empty (or missing) folder to build in.
        model_name: the registered model's name.
        n_estimators: the forest's size (small: the simulation is for checks, not models).

    Returns:
        The registered chain; :meth:`SimulatedChain.restore` brings it back to this state.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    keys = init_keys(root / "keys", roles=["owner", *STEP_NAMES], development=True)
    owner = load_signer(keys.signer_reference("owner"))
    functionaries = {name: load_public_key(keys.public_key_path(name)) for name in STEP_NAMES}
    layout = sign_layout(generate_layout(REFERENCE_STEPS, functionaries), owner)
    layout_path = root / LAYOUT_FILE
    layout_path.write_bytes(layout)
    pinned = hashlib.sha256(layout).hexdigest()

    def signer(step: str) -> str:
        return keys.signer_reference(step)

    steps.secure_ingest(source_uri=SAMPLE.path().as_uri(), expected_sha256=SAMPLE.sha256,
                        layout_uri=layout_path.as_uri(), layout_sha256=pinned, signer=signer("secure_ingest"),
                        dataset_dir=root / "dataset", chain_dir=root / "chain-ingest",
                        owner_public_key=public_key_pem(owner.public_key))
    steps.train_model(dataset_dir=root / "dataset", chain_in=root / "chain-ingest", layout_sha256=pinned,
                      signer=signer("train_model"), target_column=SAMPLE.target, model_dir=root / "model",
                      chain_out=root / "chain-train", hyperparameters=json.dumps({"n_estimators": n_estimators}))
    steps.sign_and_attest(model_dir=root / "model", chain_in=root / "chain-train", layout_sha256=pinned,
                          signer=signer("sign_and_attest"), chain_out=root / "chain-sign")
    steps.verify_chain(model_dir=root / "model", chain_in=root / "chain-sign", layout_sha256=pinned,
                       signer=signer("verify_chain"), chain_out=root / "chain-gate")
    outcome = steps.register_model(model_dir=root / "model", chain_in=root / "chain-gate", layout_sha256=pinned,
                                   signer=signer("register_model"), model_name=model_name,
                                   registry_uri=(root / "registry").as_uri())
    chain = SimulatedChain(root=root, keys=keys, model_name=model_name, reference=str(outcome.metadata["reference"]))
    chain.snapshot()
    return chain
