"""The step primitive: what every chainproof step does, written once.

Example:
    >>> from chainproof.step import IdentityPolicy
    >>> IdentityPolicy().mode
    'local'

Every step, ours or a data scientist's, runs inside :func:`open_step`:

1. resolve the principal it runs as (refused credentials stop it before it reads anything);
2. take the owner-signed layout pinned by its SHA-256 (from the chains it receives, or
   fetched by URI for a first step);
3. merge the evidence chains it receives and verify the links of every step before it
   (signatures, artifact rules, identity pins, evidence files);
4. check that its signer is the functionary the layout authorizes, and its principal the
   one the layout pins;
5. verify every artifact it receives against the link of the step that produced it, on a
   private copy;
6. run its own work in staging folders;
7. sign its link (materials: what it verified; products: what it made) and publish.

A failure at any point raises a :class:`~chainproof.errors.ChainproofError`, prints one
line after :data:`FAILURE_MARKER` on stderr, and leaves nothing at the output paths.
This module knows nothing of KFP: :mod:`chainproof.dsl` and :mod:`chainproof.steps` call it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from in_toto.models.layout import Layout
from securesystemslib.signer import Key, SSlibKey

from chainproof.attest import record_link, write_atomic, write_link
from chainproof.digests import check_sha256_hex, digest_tree, sha256_file
from chainproof.errors import (
    ArtifactRefused,
    ChainError,
    ChainproofError,
    DigestMismatch,
    InputError,
    PolicyViolation,
)
from chainproof.identity import Principal, resolve_principal
from chainproof.policy import RUN_ID, expected_principal, step_ancestors
from chainproof.signing import StepSigner, load_signer, public_key_from_pem, public_key_pem
from chainproof.verify import (
    KEYS_DIR,
    LAYOUT_FILE,
    LINKS_DIR,
    StepRecord,
    check_artifacts,
    load_layout,
    products_with_prefix,
    verify_layout_signature,
    verify_pinned_chain,
)

__all__ = [
    "FAILURE_MARKER",
    "IdentityPolicy",
    "RunConfig",
    "StepContext",
    "current_step",
    "merge_chains",
    "open_step",
    "report_step_failure",
    "staged",
]

#: Marker that precedes a step's one-line failure in its log, so that ``chainproof run``
#: (and a person reading Vertex AI logs) can find the reason.
FAILURE_MARKER = "chainproof-step-failed:"


@dataclass(frozen=True)
class IdentityPolicy:
    """Who a step may run as.

    Attributes:
        mode: ``local`` (record the local user) or ``gcp`` (Application Default
            Credentials: the metadata server or workload identity federation).
        allow_service_account_key: accept a service-account key file (recorded in the link).
    """

    mode: str = "local"
    allow_service_account_key: bool = False

    def resolve(self) -> Principal:
        """Resolve the principal under this policy (see :func:`chainproof.identity.resolve_principal`)."""
        return resolve_principal(mode=self.mode, allow_service_account_key=self.allow_service_account_key)


@dataclass(frozen=True)
class RunConfig:
    """What a pipeline run hands every step, besides the user's own parameters.

    It travels as one hidden pipeline parameter (JSON), never in user code. Nothing
    in it is secret: signer references name keys, they do not hold them.

    Attributes:
        layout_uri: where the owner-signed layout is.
        layout_sha256: its pinned SHA-256 (the root of trust inside the pipeline).
        signers: step name to signer reference (``file:``, ``gcpkms://``, ``sigstore:``).
        run: the run nonce every first step writes into ``run/id``.
        identity: the credential policy of every step.
        owner_public_key: the owner's public key PEM (checked against the layout, never trusted alone).
        registry_uri: where ``register_model`` registers (unless the task names one).
        builder_id: the SLSA builder id of this runner.
        component_image: the component image reference (with digest), when known.
        pipeline_template_sha256: SHA-256 of the compiled pipeline, when known.
        advisories: an OSV advisory folder the signing step scans the environment against.
        vault: how steps log in to Vault for ``secret://vault/...`` references
            (:class:`chainproof.secrets.VaultAuth` fields; never a token).
        secret_manager_endpoint: a non-default Secret Manager endpoint (``HOST:PORT``).
        outcome_uri: where the registration step writes what it registered (``gs://`` or
            ``file://``), for the submitter to find and verify after the run.
    """

    layout_uri: str
    layout_sha256: str
    signers: Mapping[str, str]
    run: str
    identity: IdentityPolicy = IdentityPolicy()
    owner_public_key: str = ""
    registry_uri: str = ""
    builder_id: str = "https://chainproof.dev/builders/kfp-local"
    component_image: str = ""
    pipeline_template_sha256: str = ""
    advisories: str = ""
    vault: Mapping[str, str] | None = None
    secret_manager_endpoint: str = ""
    outcome_uri: str = ""

    def to_json(self) -> str:
        """Return the JSON text of the hidden parameter."""
        doc = {k: v for k, v in self.__dict__.items() if k != "identity"}
        if not self.outcome_uri:
            # Only submit sets it: a local run's configuration stays readable by images built before it existed.
            doc.pop("outcome_uri")
        doc["signers"] = dict(self.signers)
        doc["identity"] = {"mode": self.identity.mode, "allow_service_account_key": self.identity.allow_service_account_key}
        return json.dumps(doc, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, *, step: str) -> RunConfig:
        """Parse the hidden parameter.

        Args:
            text: its JSON text.
            step: the running step, named in errors.

        Returns:
            The configuration.

        Raises:
            InputError: it is missing or malformed.
        """
        if not text.strip():
            raise InputError(
                f"step {step}: no chainproof run configuration; run the pipeline with `chainproof run --pipeline`, "
                "chainproof.local.run or `chainproof submit`"
            )
        try:
            doc = json.loads(text)
            identity = doc.pop("identity", {}) or {}
            doc["identity"] = IdentityPolicy(mode=str(identity.get("mode", "local")),
                                             allow_service_account_key=bool(identity.get("allow_service_account_key", False)))
            doc["signers"] = {str(k): str(v) for k, v in (doc.get("signers") or {}).items()}
            return cls(**doc)
        except (ValueError, TypeError, AttributeError) as exc:
            raise InputError(f"step {step}: malformed chainproof run configuration ({type(exc).__name__})") from exc


_CURRENT: list[StepContext] = []


def current_step() -> StepContext:
    """Return the step context a chainproof component runs inside.

    Returns:
        The open :class:`StepContext` (set by :mod:`chainproof._exec` around the component).

    Raises:
        InputError: the code is not running inside a chainproof step.
    """
    if not _CURRENT:
        raise InputError("not inside a chainproof step: run the component in a pipeline built with chainproof.dsl")
    return _CURRENT[-1]


def report_step_failure(step: str, error: ChainproofError) -> None:
    """Print a step's one-line failure after :data:`FAILURE_MARKER` on stderr.

    Args:
        step: the failing step.
        error: the error (its diagnostics hold no secrets).
    """
    print(f"{FAILURE_MARKER} {step} exit={error.exit_code}: {error.diagnostics()}", file=sys.stderr, flush=True)


@contextmanager
def staged(final: Path) -> Iterator[Path]:
    """Yield a staging folder that becomes ``final`` only if the block succeeds.

    Args:
        final: the output folder (absent or empty).

    Yields:
        The staging folder, a sibling of ``final``.

    Raises:
        InputError: ``final`` exists and is not an empty folder.
    """
    if final.exists() and (not final.is_dir() or any(final.iterdir())):
        raise InputError(f"{final}: output already exists; refusing to overwrite it")
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.with_name(f".{final.name}.staging-{uuid.uuid4().hex[:8]}")
    staging.mkdir()
    try:
        yield staging
        if final.exists():
            final.rmdir()
        try:
            os.rename(staging, final)
        except OSError:
            # Cloud Storage FUSE (the /gcs mount of Vertex AI Pipelines) refuses to rename
            # non-empty folders by default: publish by copying instead. The step has already
            # verified and signed everything, and a failed task's outputs are never consumed.
            try:
                shutil.copytree(staging, final, dirs_exist_ok=True)
            except BaseException:
                shutil.rmtree(final, ignore_errors=True)
                raise
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def merge_chains(sources: Sequence[Path], into: Path) -> None:
    """Copy the evidence chains a step receives into one folder.

    Chains that share history hold the same files (the layout, earlier links and their
    evidence); a file present in two chains with different bytes is refused, since one
    of them was altered after it was attested.

    Args:
        sources: chain folders.
        into: the merged chain folder (created if missing).

    Raises:
        ArtifactRefused: two chains disagree on a file.
    """
    seen: dict[str, tuple[str, Path]] = {}
    for source in sources:
        for name, digest in digest_tree(source).items():
            if name in seen:
                if seen[name][0] != digest:
                    raise ArtifactRefused(
                        name, f"the chains received disagree on it ({seen[name][1]} and {source}): one was altered"
                    )
                continue
            seen[name] = (digest, source)
            target = into / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / name, target)


def _signer_for(step: str, reference: str, layout: Layout) -> StepSigner:
    spec = next((s for s in layout.steps if s.name == step), None)
    if spec is None:
        raise ChainError(step, "the layout has no such step")
    if not reference:
        raise InputError(f"step {step}: no signer reference was given for this step")
    # Remote signers (KMS, Sigstore) take the key the layout pins for this step instead
    # of fetching it again; a KMS signature is checked against it before it is used.
    pinned = Key.from_dict(spec.pubkeys[0], dict(layout.keys[spec.pubkeys[0]])) if spec.pubkeys else None
    signer = load_signer(reference, public_key=pinned)
    if signer.keyid not in spec.pubkeys:
        raise ChainError(
            step,
            f"signer {reference} has key {signer.keyid[:16]}, but the layout authorizes "
            f"{', '.join(k[:16] for k in spec.pubkeys)} for this step",
        )
    return signer


@dataclass
class StepContext:
    """One running step: what it verified, what it will attest.

    Attributes:
        step: the layout step name.
        layout: the verified layout.
        layout_sha256: its pinned digest.
        records: the verified earlier steps (this step's ancestors) by name.
        checks: the verification checks that passed before the step's work.
        signer: this step's authorized signer.
        principal: who the step runs as.
        chain: the staging chain folder (evidence files written here travel on).
        materials: logical name to SHA-256 of what the step verified and used.
        products: logical name to SHA-256 of what the step made.
        parameters: non-secret parameters recorded in the link.
        signed: the link file, once :meth:`sign` wrote it.
        settings: the run configuration, inside a pipeline built with :mod:`chainproof.dsl`.
    """

    step: str
    layout: Layout
    layout_sha256: str
    records: dict[str, StepRecord]
    checks: list[str]
    signer: StepSigner
    principal: Principal
    chain: Path
    materials: dict[str, str] = field(default_factory=dict)
    products: dict[str, str] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)
    signed: Path | None = None
    settings: RunConfig | None = None
    _stack: ExitStack = field(default_factory=ExitStack, repr=False)
    _private: Path | None = field(default=None, repr=False)
    _received: dict[tuple[str, str], tuple[Path, dict[str, str]]] = field(default_factory=dict, repr=False)

    def run_material(self) -> None:
        """Add ``run/id`` (the run identity the first step made) to the materials."""
        for record in self.records.values():
            if RUN_ID in record.products:
                self.materials[RUN_ID] = record.products[RUN_ID]
                return
        raise ChainError(self.step, f"no earlier step produced {RUN_ID}")

    def private_dir(self) -> Path:
        """Return a private folder that lives as long as the step (removed afterwards)."""
        if self._private is None:
            self._private = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="chainproof-step-")))
        return self._private

    def receive(self, prefix: str, source: Path, *, producer: str | None = None, copy: bool = True) -> tuple[Path, dict[str, str]]:
        """Verify received files against the link of the step that produced them.

        The files are copied to a private folder first and hashed there, so bytes swapped
        in the shared artifact store after the check are never read.

        Args:
            prefix: the files' logical prefix (``dataset``, ``model``, ``features``).
            source: the received file or folder.
            producer: the step that produced them (default: the last earlier step with
                products under ``prefix/``).
            copy: verify a private copy (True) or the files in place.

        Returns:
            The verified path (the private copy) and its logical names and digests,
            which are added to the materials.

        Raises:
            DigestMismatch: a file has other bytes than its producer attested.
            ArtifactRefused: a file is missing, or was added after the producer ran.
        """
        key = (prefix, str(source))
        if key in self._received:
            return self._received[key]
        if not source.exists():
            raise ArtifactRefused(f"{prefix}/", f"the received artifact {source} does not exist")
        if producer is None:
            producer, attested = products_with_prefix(self.records, f"{prefix}/")
        else:
            if producer not in self.records:
                raise ChainError(self.step, f"{prefix}: its producer {producer} has no verified link in the chain")
            attested = {k: v for k, v in self.records[producer].products.items() if k.startswith(f"{prefix}/")}
        path = source
        if copy:
            path = self.private_dir() / "received" / prefix / source.name
            path.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, path, symlinks=True)
            else:
                shutil.copyfile(source, path)
        try:
            received = digest_tree(path, prefix=prefix)
        except ArtifactRefused as exc:
            # Name what was received, not the private copy.
            raise ArtifactRefused(f"{prefix}/", f"the received artifact {source}: {exc.reason}") from exc
        check_artifacts(attested, received, producer=producer, what=prefix)
        self.materials.update(received)
        self._received[key] = (path, received)
        return path, received

    def add_evidence(self, name: str, data: bytes | Mapping[str, Any]) -> Path:
        """Write an evidence file into the chain and attest it as a product.

        Args:
            name: its logical name (``attestations/...``, ``reports/...``, ``metrics/...``).
            data: the bytes, or a JSON document (written sorted and indented).

        Returns:
            The file written.
        """
        raw = data if isinstance(data, bytes) else (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()
        path = self.chain / name
        write_atomic(path, raw)
        self.products[name] = sha256_file(path)
        return path

    def add_products(self, directory: Path, prefix: str) -> dict[str, str]:
        """Digest a finished output folder (or file) and attest it as products.

        Args:
            directory: the output.
            prefix: its logical prefix.

        Returns:
            The products added.
        """
        made = digest_tree(directory, prefix=prefix)
        self.products.update(made)
        return made

    def output(self, final: Path) -> Path:
        """Return a staging folder that is published at ``final`` when the step succeeds."""
        return Path(self._stack.enter_context(staged(final)))

    def sign(self) -> Path:
        """Record and sign this step's link into the chain.

        Returns:
            The link file.

        Raises:
            ChainError: the step signed its link already.
        """
        if self.signed is not None:
            raise ChainError(self.step, "the step's link was signed already")
        link = record_link(
            self.step,
            materials=self.materials,
            products=self.products,
            signer=self.signer,
            principal=self.principal,
            parameters=self.parameters,
        )
        self.signed = write_link(link, self.chain / LINKS_DIR)
        return self.signed


def _fetch_layout(layout_uri: str, pinned: str, chain: Path) -> None:
    from chainproof.storage import fetch

    fetch(layout_uri, dest_dir=chain, expected_sha256=pinned, name=LAYOUT_FILE)


def _write_keys(chain: Path, layout: Layout) -> None:
    for keyid, keydict in sorted(layout.keys.items()):
        target = chain / KEYS_DIR / f"{keyid[:16]}.pub"
        if not target.exists():
            write_atomic(target, public_key_pem(SSlibKey.from_dict(keyid, dict(keydict))).encode())


@contextmanager
def open_step(
    step: str,
    *,
    layout_sha256: str,
    signer: str,
    chains: Sequence[Path] = (),
    chain_out: Path | None = None,
    layout_uri: str = "",
    owner_public_key: str = "",
    identity: IdentityPolicy = IdentityPolicy(),
    principal: Principal | None = None,
    ancestors: Sequence[str] | None = None,
) -> Iterator[StepContext]:
    """Run a step inside the chain: verify before, attest and publish after.

    Args:
        step: the layout step name.
        layout_sha256: the pinned SHA-256 of the layout.
        signer: this step's signer reference.
        chains: the evidence chains received (empty for a first step).
        chain_out: publish the extended chain here (default: a private folder the
            caller copies from before the block ends; see :attr:`StepContext.chain`).
        layout_uri: where to fetch the layout when no chain carries it (a first step).
        owner_public_key: the owner's public key PEM; when given, the layout's
            signature is checked too (for convenience: verifiers never trust the copy).
        identity: the credential policy.
        principal: the resolved identity, when the caller already has it.
        ancestors: the steps whose links must be verified (default: every step before
            this one in the layout).

    Yields:
        The step context; the step's own work runs inside the block.

    Raises:
        ChainproofError: anything refused; the reason is also printed after
            :data:`FAILURE_MARKER`.
    """
    try:
        who = principal if principal is not None else identity.resolve()
        pinned = check_sha256_hex(layout_sha256, what=f"{step} layout_sha256")
        with ExitStack() as stack:
            if chain_out is not None:
                chain = stack.enter_context(staged(chain_out))
            else:
                chain = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="chainproof-chain-")))
            merge_chains(list(chains), chain)
            if not (chain / LAYOUT_FILE).exists():
                if not layout_uri:
                    raise ChainError(step, f"no {LAYOUT_FILE} in the chains received, and no layout URI to fetch it from")
                _fetch_layout(layout_uri, pinned, chain)
            layout_bytes = (chain / LAYOUT_FILE).read_bytes()
            # The digest first: nothing of a layout that is not the pinned one is parsed.
            actual = hashlib.sha256(layout_bytes).hexdigest()
            if actual != pinned:
                raise DigestMismatch(LAYOUT_FILE, pinned, actual, context="pinned layout")
            envelope, layout = load_layout(layout_bytes)
            if owner_public_key.strip():
                owner = public_key_from_pem(owner_public_key, what="owner_public_key")
                verify_layout_signature(envelope, {str(owner.keyid): owner})
                write_atomic(chain / KEYS_DIR / "owner.pub", public_key_pem(owner).encode())
            if ancestors is None:
                ancestors = step_ancestors(layout, step)
            _, records, checks = verify_pinned_chain(chain, layout_sha256=pinned, upto=step, steps=ancestors)
            step_signer = _signer_for(step, signer, layout)
            expected = expected_principal(layout, step)
            if expected is not None and who.name != expected:
                raise PolicyViolation(
                    f"step {step}: running as {who.name} ({who.kind}), but the layout expects {expected}"
                )
            _write_keys(chain, layout)
            ctx = StepContext(
                step=step, layout=layout, layout_sha256=pinned, records=records, checks=checks,
                signer=step_signer, principal=who, chain=chain,
            )
            with ctx._stack:
                yield ctx
    except ChainproofError as exc:
        report_step_failure(step, exc)
        raise
