"""Verify, copy, scan, then load: the only way a model reaches the server.

Example:
    >>> from chainproof.serve.loader import load_verified  # doctest: +SKIP
    >>> served = load_verified("local://chainproof-model@1", registry="chainproof-work/registry",
    ...                        trusted_owner_keys=TrustStore(path).keys())
    >>> served.name, served.model_sha256[:8]

Order matters, and each step fails closed with a :class:`~chainproof.errors.ChainproofError`
that names the artifact:

1. the chain verifies against a trusted owner key (:func:`chainproof.verify.verify_bundle`, or
   :func:`chainproof.verify.verify_registered` for a registry reference), which also checks the
   delivered model files and every evidence file of the bundle against their attested digests;
2. the model files are copied into a private folder (mode 0700) and the copy is hashed again
   against the attested digests, so a file swapped after step 1 is never read;
3. the private copy is scanned (:mod:`chainproof.scan`: read, never loaded);
4. the drift profile is read and checked against the digest its training link attests;
5. only then is ``model.joblib`` unpickled, from the private copy.

A reload (:meth:`ServedModel.reload`) repeats 2-5 on the model's original location, so a model
swapped on disk after start is refused.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chainproof.digests import digest_tree, manifest_digest
from chainproof.errors import ArtifactRefused, InputError
from chainproof.verify import VerificationResult, check_artifacts

__all__ = ["ServedModel", "fetch_attested_model", "load_verified", "served_name"]

_FEATURES = "features.json"
_MODEL_FILE = "model.joblib"
_NAME = re.compile(r"^(?:local://([^@/]+)@\d+|vertex://projects/[^/]+/locations/[^/]+/models/([^@/]+)@[^/]+)$")


def served_name(reference: str) -> str | None:
    """The model name in a registry reference (``local://NAME@V``, ``vertex://.../models/ID@V``)."""
    m = _NAME.match(reference)
    return (m.group(1) or m.group(2)) if m else None


@dataclass
class ServedModel:
    """A model that verified, scanned and loaded.

    Attributes:
        name: the registered name it is served under.
        reference: what was asked for (a reference or a bundle folder).
        result: the chain verification.
        source: the model's own location (re-hashed at every reload).
        bundle: the verified bundle folder.
        features: the feature contract (names, types, order), from ``model/features.json``.
        task: ``classification`` or ``regression``.
        estimator: the loaded scikit-learn Pipeline.
        profile: the verified drift profile, or ``None`` when the chain carries none.
        private_dir: the private verified copy the estimator was loaded from.
        prefix: the model files' logical prefix.
        checks: what passed, in order (chain checks, then serving checks).
    """

    name: str
    reference: str
    result: VerificationResult
    source: Path
    bundle: Path
    features: list[dict[str, Any]]
    task: str
    estimator: Any
    profile: dict[str, Any] | None
    private_dir: Path
    prefix: str = "model"
    checks: list[str] = field(default_factory=list)
    _workdir: Path | None = None

    @property
    def model_sha256(self) -> str:
        """The manifest digest of the served model files (the verified one)."""
        return self.result.model_sha256

    @property
    def feature_names(self) -> list[str]:
        """Feature names in training order."""
        return [str(f["name"]) for f in self.features]

    def reload(self) -> list[str]:
        """Re-verify the model files at their location against the chain, copy, scan, load.

        The estimator in memory is replaced only when everything passes.

        Returns:
            The checks that passed.

        Raises:
            VerificationError: a file differs from its attested digest (swapped on disk), was
                added or removed, or the scan refused it.
        """
        private, estimator, features, task, checks = _load_model(self.source, self.result, self.prefix, self._workdir)
        old = self.private_dir
        self.private_dir, self.estimator, self.features, self.task = private, estimator, features, task
        shutil.rmtree(old, ignore_errors=True)
        return checks

    def check_source(self) -> None:
        """Hash the model files at their location now and compare them with the chain (no copy, no load).

        Raises:
            VerificationError: a file differs from its attested digest, was added or removed.
        """
        if not self.source.is_dir():
            raise ArtifactRefused(str(self.source), "model folder does not exist")
        check_artifacts(self.result.model_files, digest_tree(self.source, prefix=self.prefix),
                        producer="the chain", what="model")

    def close(self) -> None:
        """Remove the private copies."""
        shutil.rmtree(self.private_dir, ignore_errors=True)


def _private_copy(source: Path, prefix: str, workdir: Path | None) -> Path:
    """Copy the model folder into a new private folder (0700); symlinks are refused."""
    base = Path(tempfile.mkdtemp(prefix="chainproof-serve-", dir=str(workdir) if workdir else None))
    os.chmod(base, 0o700)
    dest = base / prefix
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source)
        if path.is_symlink():
            shutil.rmtree(base, ignore_errors=True)
            raise ArtifactRefused(f"{prefix}/{rel.as_posix()}", "a symbolic link in the model folder")
        target = dest / rel
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif path.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    dest.mkdir(parents=True, exist_ok=True)
    return dest


def _refuse_unsafe(reports: list[Any], prefix: str) -> str:
    from chainproof.scan import summarize

    summary = summarize(reports)
    if summary["verdict"] == "safe":
        return f"scan: {summary['files']} model files safe"
    findings = [(r.file, f) for r in reports for f in r.to_dict().get("findings", [])]
    if not findings:
        raise ArtifactRefused(prefix, "the scan found nothing it could prove safe")
    file, first = findings[0]
    where = f"@{first['offset']}" if first.get("offset") is not None else ""
    more = f" (+{len(findings) - 1} more findings)" if len(findings) > 1 else ""
    raise ArtifactRefused(f"{prefix}/{first.get('file') or file}{where}",
                          f"scan refused it: {first['what']}: {first['reason']}{more}")


def _load_model(source: Path, result: VerificationResult, prefix: str,
                workdir: Path | None) -> tuple[Path, Any, list[dict[str, Any]], str, list[str]]:
    from chainproof.scan import scan_path

    if not source.is_dir():
        raise ArtifactRefused(str(source), "model folder does not exist")
    checks: list[str] = []
    producer = "the chain"
    # Serving step 2: hash what is at the location now: a file swapped since the last verification is refused here.
    check_artifacts(result.model_files, digest_tree(source, prefix=prefix), producer=producer, what="model")
    private = _private_copy(source, prefix, workdir)
    try:
        # ... and the private copy, which is what is read from here on.
        copied = digest_tree(private, prefix=prefix)
        check_artifacts(result.model_files, copied, producer=producer, what="model")
        checks.append(f"serve: {len(copied)} model files copied privately, sha256:{manifest_digest(copied)[:16]} as attested")
        # Serving step 3: the scanner reads every file; nothing is unpickled before it passes.
        checks.append(_refuse_unsafe(scan_path(private), prefix))
        contract_path = private / _FEATURES
        if not contract_path.is_file():
            raise ArtifactRefused(f"{prefix}/{_FEATURES}", "missing: the feature contract training records beside the model")
        try:
            contract = json.loads(contract_path.read_text(encoding="utf-8"))
            features = [dict(f) for f in contract["features"]]
            task = str(contract.get("task", "classification"))
        except (ValueError, KeyError, TypeError) as exc:
            raise ArtifactRefused(f"{prefix}/{_FEATURES}", "not a feature contract (features: [{name, type}])") from exc
        model_file = private / _MODEL_FILE
        if not model_file.is_file():
            raise ArtifactRefused(f"{prefix}/{_MODEL_FILE}", "missing from the verified model")
        import joblib

        # Serving step 5: verified (digest), scanned (allowlist), private: now, and only now, loaded.
        estimator = joblib.load(model_file)
        checks.append(f"serve: {prefix}/{_MODEL_FILE} loaded ({type(estimator).__name__}, {len(features)} features)")
    except BaseException:
        shutil.rmtree(private.parent, ignore_errors=True)
        raise
    return private, estimator, features, task, checks


def _profile(bundle: Path, result: VerificationResult) -> tuple[dict[str, Any] | None, str]:
    from chainproof.drift import PROFILE_PRODUCT, load_profile

    record = next((r for r in result.steps if PROFILE_PRODUCT in r.products), None)
    if record is None:
        return None, "drift: the chain carries no reports/profile.json; monitoring is off"
    path = bundle / PROFILE_PRODUCT
    if not path.is_file():
        raise ArtifactRefused(PROFILE_PRODUCT, f"attested by {record.name}, missing from the bundle")
    profile = load_profile(path.read_bytes(), expected_sha256=record.products[PROFILE_PRODUCT])
    return profile, f"drift: {PROFILE_PRODUCT} matches the digest {record.name} attests ({len(profile['features'])} features)"


def fetch_attested_model(
    bundle: Path,
    source_uri: str,
    *,
    trusted_owner_keys: Mapping[str, Any],
    dest: Path,
    expected_manifest_sha256: str | None = None,
    options: Any = None,
) -> Path:
    """Fetch a bundle's model from ``s3://``, ``gs://``, ``https://`` (or a folder) through secure ingest.

    The layout is checked against the trusted owner keys and the links against the layout first
    (checks (1)-(7)); each model file the verified chain attests is then fetched as
    ``SOURCE/NAME`` with :func:`chainproof.storage.fetch`, pinned to the digest the chain records
    for it (and the whole folder to ``expected_manifest_sha256`` when given), into ``dest``. The
    full verification runs again on the fetched folder before anything is loaded.

    Args:
        bundle: the evidence bundle folder.
        source_uri: the model folder's URI (``s3://BUCKET/PREFIX/``, ``gs://...``, ``https://...``).
        trusted_owner_keys: the owner keys to trust, by key id.
        dest: a new private folder for the model (must not exist).
        expected_manifest_sha256: an extra pin: the manifest digest of the model files.
        options: :class:`chainproof.storage.FetchOptions` (endpoints, CA bundle, retries).

    Returns:
        The fetched model folder.

    Raises:
        VerificationError: the chain does not verify, or a fetched object is not the attested bytes.
        InputError: a malformed URI.

    Side effects:
        Downloads every model file.
    """
    from urllib.parse import quote

    from chainproof.errors import DigestMismatch
    from chainproof.policy import layout_extensions
    from chainproof.storage import FetchOptions, fetch, redact_uri
    from chainproof.verify import (
        LAYOUT_FILE,
        LINKS_DIR,
        load_layout,
        products_with_prefix,
        verify_chain_links,
        verify_layout_signature,
    )

    envelope, layout = load_layout((bundle / LAYOUT_FILE).read_bytes())
    verify_layout_signature(envelope, trusted_owner_keys)
    records = verify_chain_links(layout, bundle / LINKS_DIR)
    prefix = str(layout_extensions(layout).get("model_prefix") or "model")
    producer, attested = products_with_prefix(records, f"{prefix}/")
    if dest.exists():
        raise InputError(f"{dest}: the fetch folder must not exist yet")
    dest.mkdir(parents=True, mode=0o700)
    base = source_uri.rstrip("/")
    for name, digest in sorted(attested.items()):
        rel = name[len(prefix) + 1:]
        # Pinned by the digest the verified chain records: a swapped object is refused in quarantine.
        fetch(f"{base}/{quote(rel)}", dest_dir=dest, expected_sha256=digest, name=rel, options=options or FetchOptions())
    if expected_manifest_sha256:
        actual = manifest_digest(digest_tree(dest, prefix=prefix))
        if actual != expected_manifest_sha256:
            raise DigestMismatch(redact_uri(source_uri), expected_manifest_sha256, actual, context="--model-sha256")
    return dest


def verify_fetched_publisher(
    model_dir: Path,
    source_uri: str,
    publisher: Any,
    *,
    signature_uri: str = "",
    options: Any = None,
) -> dict[str, Any]:
    """Check a publisher's OpenSSF Model Signing signature over a model fetched by :func:`fetch_attested_model`.

    The signature (``SOURCE/model.sig`` unless ``signature_uri`` names it) is fetched beside the
    model folder, never into it, and must cover exactly the files the verified chain attests:
    a signature over other files, by another publisher, or over other bytes is refused.

    Args:
        model_dir: the fetched model folder (only the chain-attested files).
        source_uri: where the model was fetched from.
        publisher: a :class:`chainproof.publisher.PublisherPolicy`.
        signature_uri: where ``model.sig`` is (default: inside ``source_uri``).
        options: :class:`chainproof.storage.FetchOptions`.

    Returns:
        What :func:`chainproof.publisher.verify_publisher_signature` records (kind, identity,
        signature digest, signed files).

    Raises:
        SignatureError: the signature does not verify for this publisher and these files.
        VerificationError: the signature cannot be fetched.
    """
    from chainproof.errors import SignatureError
    from chainproof.publisher import SIGNATURE_FILE, verify_publisher_signature
    from chainproof.storage import FetchOptions, fetch, redact_uri

    sig_uri = signature_uri or f"{source_uri.rstrip('/')}/{SIGNATURE_FILE}"
    sig_dir = model_dir.parent / "publisher-signature"
    try:
        got = fetch(sig_uri, dest_dir=sig_dir, expected_sha256=None, name=SIGNATURE_FILE, options=options or FetchOptions())
    except InputError as exc:  # no signature where the publisher's must be: a refusal, not a usage error
        raise SignatureError(f"{SIGNATURE_FILE} (publisher signature): expected at {redact_uri(sig_uri)}, "
                             f"found none ({exc})") from exc
    return verify_publisher_signature(model_dir, got.path, publisher)


def _publisher_line(record: Mapping[str, Any]) -> str:
    who = {"key": f"key sha256:{str(record.get('public_key_sha256', ''))[:16]}",
           "certificate": f"certificate {record.get('certificate_subject')} (issuer {record.get('certificate_issuer')})",
           "sigstore": f"{record.get('identity')} (issuer {record.get('issuer')}, Sigstore, offline)"}[str(record["kind"])]
    return (f"serve: publisher signature by {who} covers the {len(record.get('signed_files') or [])} fetched model "
            f"files (model.sig sha256:{str(record['signature_sha256'])[:16]})")


def load_verified(
    reference: str,
    *,
    trusted_owner_keys: Mapping[str, Any],
    registry: Any = None,
    model_dir: str | Path | None = None,
    model_source: str | None = None,
    model_sha256: str | None = None,
    fetch_options: Any = None,
    publisher: Any = None,
    signature_uri: str = "",
    workdir: str | Path | None = None,
    on_bundle: Callable[[Any], None] | None = None,
) -> ServedModel:
    """Verify a registered version or a bundle, then copy, scan and load its model.

    Args:
        reference: ``local://NAME@V``, ``vertex://.../models/ID@V``, or a bundle folder.
        trusted_owner_keys: the owner keys to trust, by key id (never taken from the bundle).
        registry: the registry holding ``reference`` (for a registry reference).
        model_dir: with a bundle folder, the model folder (default: the one ``bundle.json`` records).
        model_source: with a bundle folder, fetch the model from this URI first
            (:func:`fetch_attested_model`); it is then served from the private download.
        model_sha256: with ``model_source``, the model's pinned manifest digest (optional: the
            verified chain pins every file anyway).
        fetch_options: :class:`chainproof.storage.FetchOptions` for ``model_source``.
        publisher: with ``model_source``, a :class:`chainproof.publisher.PublisherPolicy` whose
            signature must also cover the fetched files (:func:`verify_fetched_publisher`).
        signature_uri: with ``publisher``, where ``model.sig`` is (default: inside ``model_source``).
        workdir: where downloads and private copies go (default: the temporary folder).
        on_bundle: passed to :func:`chainproof.verify.verify_registered`.

    Returns:
        The served model.

    Raises:
        VerificationError: the chain, a model file, the profile or the scan fails.
        InputError: a malformed reference or folder.

    Side effects:
        Reads (and for remote registries downloads) the bundle and model; writes a private copy.
    """
    from chainproof.policy import layout_extensions
    from chainproof.verify import load_layout, read_bundle_index, verify_bundle

    if (publisher is not None or signature_uri) and model_source is None:
        raise InputError("--publisher-*/--signature go with --model-source: the publisher's signature is checked "
                         "over the files fetched from it")
    if signature_uri and publisher is None:
        raise InputError("--signature goes with a publisher (--publisher-key, --publisher-certificate, --publisher-identity)")
    work = Path(workdir) if workdir else None
    if work is not None:
        work.mkdir(parents=True, exist_ok=True)
    publisher_checks: list[str] = []
    name: str | None
    if reference.startswith(("local://", "vertex://")):
        from chainproof.verify import verify_registered

        if registry is None:
            raise InputError(f"{reference}: a registry reference needs --registry")
        if model_dir is not None or model_source is not None:
            raise InputError("--model and --model-source go with a bundle folder; a registry reference names its own model")
        located: list[Any] = []

        def where(entry: Any) -> None:
            located.append(entry)
            if on_bundle is not None:
                on_bundle(entry)

        fetch_dir = Path(tempfile.mkdtemp(prefix="chainproof-fetch-", dir=str(work) if work else None))
        result = verify_registered(reference, registry=registry, trusted_owner_keys=trusted_owner_keys,
                                   workdir=fetch_dir, on_bundle=where)
        entry = located[-1]
        remote = "://" in entry.bundle_location
        bundle = fetch_dir / "bundle" if remote else Path(entry.bundle_location)
        source = fetch_dir / "model" if remote else Path(entry.model_location)
        name = str(entry.name)
    else:
        bundle = Path(reference)
        if model_source is not None:
            if model_dir is not None:
                raise InputError("--model and --model-source: give one")
            if not (bundle / "root.layout").is_file():
                raise InputError(f"{bundle}: no root.layout; not an evidence bundle")
            fetch_base = Path(tempfile.mkdtemp(prefix="chainproof-fetch-", dir=str(work) if work else None))
            model_dir = fetch_attested_model(bundle, model_source, trusted_owner_keys=trusted_owner_keys,
                                             dest=fetch_base / "model", expected_manifest_sha256=model_sha256,
                                             options=fetch_options)
            if publisher is not None:
                publisher_checks.append(_publisher_line(verify_fetched_publisher(
                    Path(model_dir), model_source, publisher, signature_uri=signature_uri, options=fetch_options)))
        result = verify_bundle(bundle, trusted_owner_keys=trusted_owner_keys, model_dir=model_dir)
        if model_dir is not None:
            source = Path(model_dir)
        else:
            recorded = (read_bundle_index(bundle).get("model") or {}).get("location")
            source = Path(str(recorded))
            if not source.is_absolute():
                source = (bundle / source).resolve()
        name = None
        entry_file = bundle / "registry" / "entry.json"
        if entry_file.is_file():  # attested by register_model; checked in step (8)
            try:
                name = served_name(str(json.loads(entry_file.read_text()).get("reference", "")))
            except ValueError:
                name = None
        name = name or "model"
    _, layout = load_layout((bundle / "root.layout").read_bytes())
    prefix = str(layout_extensions(layout).get("model_prefix") or "model")
    checks = list(result.checks) + publisher_checks
    profile, line = _profile(bundle, result)
    checks.append(line)
    private, estimator, features, task, model_checks = _load_model(source, result, prefix, work)
    checks += model_checks
    return ServedModel(name=name, reference=reference, result=result, source=source, bundle=bundle,
                       features=features, task=task, estimator=estimator, profile=profile,
                       private_dir=private, prefix=prefix, checks=checks, _workdir=work)
