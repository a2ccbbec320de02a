"""The Vertex AI Model Registry backend (``vertex://projects/P/locations/L/models/ID@VERSION``)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from chainproof._version import __version__
from chainproof.attest import utc_now
from chainproof.digests import check_artifacts, digest_tree, manifest_digest
from chainproof.errors import ArtifactRefused, InputError, RegistryError
from chainproof.registry._protocol import PendingVersion, RegisteredModel, VerifiedChain

__all__ = ["MODEL_DIGEST_LABELS", "PREBUILT_SKLEARN_SERVING", "VERSION_LABEL", "VertexModelRegistry",
           "digest_from_labels", "digest_labels", "init_vertex_sdk", "parse_vertex_reference"]

# --------------------------------------------------------------------------- Vertex AI

#: Vertex AI's prebuilt scikit-learn serving images (``REGION-docker.pkg.dev/vertex-ai/prediction/
#: sklearn-cpu.1-6``): the repository names the scikit-learn version it serves. Google publishes them
#: by tag; chainproof registers one only by digest, and only for the version the model was trained with.
PREBUILT_SKLEARN_SERVING = re.compile(
    r"(?:[a-z]+-)?docker\.pkg\.dev/vertex-ai/prediction/sklearn-(?:cpu|gpu)\.(?P<major>[0-9]+)-(?P<minor>[0-9]+)"
)

#: Label keys that carry a model's SHA-256 manifest digest. A label value holds at
#: most 63 lowercase characters, a hex SHA-256 has 64: the first key holds hex
#: characters 0-31, the second 32-63. Together they are the full digest, so the
#: registry can be searched by exact digest; the version description repeats it.
MODEL_DIGEST_LABELS = ("chainproof-model-sha256-0", "chainproof-model-sha256-1")
#: Label key of the chainproof version that registered the model (dots become dashes).
VERSION_LABEL = "chainproof-version"

_VERTEX_URI = re.compile(r"vertex://projects/([a-z0-9-]+)/locations/([a-z0-9-]+)/?")
_VERTEX_REF = re.compile(
    r"vertex://projects/([a-z0-9-]+)/locations/([a-z0-9-]+)/models/([A-Za-z0-9_-]+)@([0-9]+)"
)
# A Vertex AI model ID: up to 63 of [a-z0-9_-], not starting with a digit or '-'.
_MODEL_ID = re.compile(r"[a-z_][a-z0-9_-]{0,62}")


def digest_labels(sha256_hex: str, keys: tuple[str, str] = MODEL_DIGEST_LABELS) -> dict[str, str]:
    """Split a hex SHA-256 over two labels (a label value holds at most 63 characters).

    Args:
        sha256_hex: 64 lowercase hex characters.
        keys: the two label keys.

    Returns:
        ``{keys[0]: first 32 hex characters, keys[1]: last 32}``.
    """
    from chainproof.digests import check_sha256_hex

    hexd = check_sha256_hex(sha256_hex, what="model sha256")
    return {keys[0]: hexd[:32], keys[1]: hexd[32:]}


def digest_from_labels(labels: dict[str, str], keys: tuple[str, str] = MODEL_DIGEST_LABELS) -> str:
    """Join the two digest labels back into a hex SHA-256 (empty when absent)."""
    return labels.get(keys[0], "") + labels.get(keys[1], "")


def parse_vertex_reference(reference: str) -> tuple[str, str, str, str]:
    """Split ``vertex://projects/P/locations/L/models/ID@VERSION``.

    Returns:
        (project, location, model ID, version).

    Raises:
        InputError: not a Vertex AI model version reference.
    """
    m = _VERTEX_REF.fullmatch(reference)
    if not m:
        raise InputError(f"{reference}: expected vertex://projects/P/locations/L/models/ID@VERSION")
    return m.group(1), m.group(2), m.group(3), m.group(4)


def init_vertex_sdk(*, project: str, location: str, credentials: Any = None, api_endpoint: str | None = None) -> None:
    """``aiplatform.init`` with every value given, so that nothing of an earlier call is inherited.

    The Vertex SDK keeps its configuration process-wide and its ``init`` ignores a ``None``:
    a call without credentials or endpoint would go on using an earlier caller's (another
    registry's loopback endpoint, or credentials that no longer apply). Here ``None`` means
    Application Default Credentials, resolved now (a missing one raises
    ``DefaultCredentialsError``), and the region's public endpoint.
    """
    import google.auth
    import google.cloud.aiplatform as aiplatform

    if credentials is None:
        credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    if api_endpoint is None:
        api_endpoint = "aiplatform.googleapis.com" if location == "global" else f"{location}-aiplatform.googleapis.com"
    aiplatform.init(project=project, location=location, credentials=credentials, api_endpoint=api_endpoint)


class VertexModelRegistry:
    """The Vertex AI Model Registry, with the model and its evidence in Cloud Storage.

    Layout in the bucket, addressed by content::

        ARTIFACTS/models/NAME/<model sha256>/model/...   (the Model's artifact_uri)
        ARTIFACTS/models/NAME/<model sha256>/bundle/...  (the evidence bundle)

    Each Vertex model version carries the model digest in two labels
    (:data:`MODEL_DIGEST_LABELS`), the chainproof version in :data:`VERSION_LABEL`,
    and a JSON version description with the bundle location and digest. The Vertex
    model ID is the chainproof model name; versions after the first are uploaded
    under it as ``parent_model``.
    """

    def __init__(
        self,
        *,
        project: str,
        location: str,
        artifact_root: str = "",
        serving_image: str = "",
        chainproof_serving_image: str = "",
        api_endpoint: str | None = None,
        credentials: Any = None,
        gcs_client_factory: Any = None,
    ) -> None:
        """Open a Vertex AI Model Registry in one project and region.

        Args:
            project: the Google Cloud project ID.
            location: the region, e.g. ``europe-west4``.
            artifact_root: ``gs://BUCKET[/PREFIX]`` where models and bundles are stored
                (needed to register, not to find or resolve).
            serving_image: a Vertex AI prebuilt scikit-learn serving image, pinned by digest
                (``us-docker.pkg.dev/vertex-ai/prediction/sklearn-cpu.1-9@sha256:...``); its
                version must be the one the model was trained with.
            chainproof_serving_image: or chainproof's own serving image (``image/Dockerfile``
                target ``serving``, built from the component image's lock), pinned by digest.
            api_endpoint: a non-default Vertex AI endpoint (``HOST:PORT``).
            credentials: google-auth credentials (default: Application Default Credentials).
            gcs_client_factory: builds the ``storage.Client`` (default: ``storage.Client()``).

        Raises:
            InputError: ``artifact_root`` is not a ``gs://`` URI; a serving image not pinned by
                digest, both serving images, or a ``serving_image`` that is not a prebuilt
                scikit-learn image.
        """
        from chainproof.images import check_image_reference

        if serving_image and chainproof_serving_image:
            raise InputError("give serving_image (a prebuilt scikit-learn image) or chainproof_serving_image, not both")
        if serving_image:
            ref = check_image_reference(serving_image)
            if not PREBUILT_SKLEARN_SERVING.fullmatch(ref.repository):
                raise InputError(
                    f"serving_image {serving_image}: not a Vertex AI prebuilt scikit-learn image "
                    "(REGION-docker.pkg.dev/vertex-ai/prediction/sklearn-cpu.X-Y@sha256:...); for chainproof's own "
                    "serving image use chainproof_serving_image"
                )
        if chainproof_serving_image:
            check_image_reference(chainproof_serving_image)
        if artifact_root and (not artifact_root.startswith("gs://") or len(artifact_root.rstrip("/")) <= len("gs://")):
            raise InputError(f"artifact root {artifact_root!r}: expected gs://BUCKET[/PREFIX]")
        self.project, self.location = project, location
        self.artifact_root = artifact_root.rstrip("/")
        self.serving_image = serving_image or chainproof_serving_image
        self.chainproof_serving = bool(chainproof_serving_image)
        self.api_endpoint = api_endpoint
        self.credentials = credentials
        self.gcs_client_factory = gcs_client_factory

    @classmethod
    def from_uri(cls, uri: str, **kwargs: Any) -> VertexModelRegistry:
        """Open ``vertex://projects/P/locations/L?artifacts=gs://BUCKET/PREFIX[&endpoint=HOST:PORT]``.

        Args:
            uri: the registry URI.
            **kwargs: further constructor arguments (credentials, serving image, ...).

        Raises:
            InputError: a malformed URI or no ``artifacts`` location.
        """
        from urllib.parse import parse_qs

        base, _, query = uri.partition("?")
        m = _VERTEX_URI.fullmatch(base)
        if not m:
            raise InputError(f"{uri}: expected vertex://projects/P/locations/L?artifacts=gs://BUCKET/PREFIX")
        params = {k: v[-1] for k, v in parse_qs(query).items()}
        known = {"artifacts", "endpoint", "serving_image", "chainproof_serving_image"}
        unknown = sorted(set(params) - known)
        if unknown:
            raise InputError(f"{uri}: unknown parameter {unknown[0]!r} (known: {', '.join(sorted(known))})")
        for key in ("serving_image", "chainproof_serving_image"):
            if key in params:
                kwargs.setdefault(key, params[key])
        if "endpoint" in params:
            kwargs.setdefault("api_endpoint", params["endpoint"])
        return cls(project=m.group(1), location=m.group(2), artifact_root=params.get("artifacts", ""), **kwargs)

    # -- helpers

    def _init(self) -> None:
        init_vertex_sdk(project=self.project, location=self.location, credentials=self.credentials,
                        api_endpoint=self.api_endpoint)

    def _gcs(self) -> Any:
        if self.gcs_client_factory is not None:
            return self.gcs_client_factory()
        import google.cloud.storage as storage

        return storage.Client(project=self.project, credentials=self.credentials)

    def _parent(self, name: str) -> str:
        if not _MODEL_ID.fullmatch(name):
            raise InputError(
                f"model name {name!r}: a Vertex AI model ID is 1-63 of lowercase letters, digits, '_' or '-', "
                "not starting with a digit or '-'"
            )
        return f"projects/{self.project}/locations/{self.location}/models/{name}"

    def _versions(self, name: str, flt: str | None = None) -> list[Any]:
        import google.cloud.aiplatform as aiplatform
        from google.api_core import exceptions as gexc

        self._init()
        try:
            return list(aiplatform.models.ModelRegistry(self._parent(name)).list_versions(filter=flt))
        except gexc.NotFound:
            return []

    def _entry(self, model: Any) -> RegisteredModel:
        labels = dict(model.labels or {})
        try:
            doc = json.loads(model.version_description or "")["chainproof"]
            bundle, bundle_sha256 = str(doc["bundle"]["uri"]), str(doc["bundle"]["sha256"])
            created = str(doc.get("registered", ""))
        except (ValueError, KeyError, TypeError) as exc:
            raise RegistryError(f"{model.versioned_resource_name}: no chainproof evidence pointer in its version description") from exc
        model_id = model.resource_name.rsplit("/", 1)[-1]
        return RegisteredModel(
            reference=f"vertex://{model.resource_name}@{model.version_id}",
            name=model_id,
            version=str(model.version_id),
            model_location=str(model.uri or "").rstrip("/"),
            model_sha256=digest_from_labels(labels),
            # The per-file digests live in the (attested) bundle, not in the registry entry.
            model_files={},
            bundle_location=bundle,
            bundle_sha256=bundle_sha256,
            created=created,
        )

    def _model(self, name: str, version: str) -> Any:
        import google.cloud.aiplatform as aiplatform
        from google.api_core import exceptions as gexc

        self._init()
        try:
            return aiplatform.Model(self._parent(name), version=version, credentials=self.credentials)
        except gexc.NotFound as exc:
            raise RegistryError(f"vertex://{self._parent(name)}@{version}: not found") from exc

    # -- the ModelRegistry protocol

    def find(self, name: str, *, model_sha256: str) -> RegisteredModel | None:
        """Return the version of ``name`` whose digest labels hold this model digest, if any.

        Side effects:
            Calls ``ModelService/ListModelVersions`` (filtered by the digest labels) and ``GetModel``.
        """
        wanted = digest_labels(model_sha256)
        flt = " AND ".join(f'labels.{k}="{v}"' for k, v in wanted.items())
        for info in self._versions(name, flt):
            model = self._model(name, str(info.version_id))
            # The server's filter finds candidates; the labels themselves decide.
            if digest_from_labels(dict(model.labels or {})) == model_sha256:
                return self._entry(model)
        return None

    def prepare(self, name: str, *, model_sha256: str = "") -> PendingVersion:
        """Predict the next version of ``name`` and its content-addressed storage locations.

        Args:
            name: the model name (the Vertex AI model ID).
            model_sha256: the model's manifest digest (mandatory: it names the storage folder).

        Side effects:
            Calls ``ModelService/ListModelVersions``.
        """
        from chainproof.digests import check_sha256_hex

        digest = check_sha256_hex(model_sha256, what="model sha256")
        if not self.artifact_root:
            raise InputError("registering to Vertex AI needs an artifact root: vertex://...?artifacts=gs://BUCKET/PREFIX")
        parent = self._parent(name)
        numbers = [int(v.version_id) for v in self._versions(name) if str(v.version_id).isdigit()]
        version = str(max(numbers) + 1 if numbers else 1)
        base = f"{self.artifact_root}/models/{name}/{digest}"
        return PendingVersion(
            name=name,
            version=version,
            reference=f"vertex://{parent}@{version}",
            model_location=f"{base}/model",
            bundle_location=f"{base}/bundle",
        )

    def _upload_tree(self, local: Path, uri: str) -> None:
        bucket_name, _, prefix = uri[len("gs://") :].partition("/")
        bucket = self._gcs().bucket(bucket_name)
        wanted = {f"{prefix}/{rel}": local / rel for rel in digest_tree(local)}
        # Leftovers of an interrupted attempt would make the folder differ from its digest.
        for blob in bucket.list_blobs(prefix=prefix + "/"):
            if blob.name not in wanted:
                blob.delete()
        for name, path in sorted(wanted.items()):
            bucket.blob(name).upload_from_filename(str(path), checksum="crc32c")

    def commit(
        self, pending: PendingVersion, *, model_dir: Path, bundle_dir: Path, verified: VerifiedChain
    ) -> RegisteredModel:
        """Upload the verified model and bundle, then ``Model.upload`` the version with its evidence pointer.

        Raises:
            VerificationError: the model changed since it was verified.
            RegistryError: Vertex AI assigned another version than the predicted one.

        Side effects:
            Writes to Cloud Storage; calls ``ModelService/UploadModel`` (a long-running operation).
        """
        import google.cloud.aiplatform as aiplatform

        # Before anything is uploaded: the model is served by an image that can load it.
        self.check_serving_image(verified)
        # Re-hash what is about to be published: time of check == time of use.
        stored = digest_tree(model_dir, prefix="model")
        check_artifacts(verified.model_files, stored, producer="the verified chain", what="model")
        model_sha256 = manifest_digest(stored)
        bundle_sha256 = manifest_digest(digest_tree(bundle_dir))
        self._upload_tree(model_dir, pending.model_location)
        self._upload_tree(bundle_dir, pending.bundle_location)
        created = utc_now()
        pointer = {
            "chainproof": {
                "version": __version__,
                "registered": created,
                "model": {"uri": pending.model_location, "sha256": model_sha256},
                "bundle": {"uri": pending.bundle_location, "sha256": bundle_sha256},
            }
        }
        labels = {**digest_labels(model_sha256), VERSION_LABEL: re.sub(r"[^a-z0-9_-]", "-", __version__.lower())}
        parent = self._parent(pending.name)
        first = pending.version == "1"
        self._init()
        model = aiplatform.Model.upload(
            serving_container_image_uri=self.serving_image,
            artifact_uri=pending.model_location + "/",
            model_id=pending.name if first else None,
            parent_model=None if first else parent,
            display_name=pending.name,
            description=f"Registered by chainproof {__version__}; each version's description points at its evidence bundle.",
            version_description=json.dumps(pointer, sort_keys=True),
            version_aliases=[f"sha256-{model_sha256[:16]}"],
            labels=labels,
            credentials=self.credentials,
            sync=True,
        )
        if str(model.version_id) != pending.version:
            raise RegistryError(
                f"{pending.reference}: Vertex AI created version {model.version_id} instead "
                "(another registration ran meanwhile); its bundle names the predicted version"
            )
        return RegisteredModel(
            reference=pending.reference,
            name=pending.name,
            version=pending.version,
            model_location=pending.model_location,
            model_sha256=model_sha256,
            model_files=stored,
            bundle_location=pending.bundle_location,
            bundle_sha256=bundle_sha256,
            created=created,
        )

    def check_serving_image(self, verified: VerifiedChain) -> str:
        """Refuse a serving image that cannot be trusted to load this model.

        The image is pinned by digest; a prebuilt scikit-learn image must serve the
        scikit-learn version (major.minor) that the model's producing step recorded in
        its signed link; chainproof's own serving image is built from the same lock as
        the component image the model was trained in.

        Args:
            verified: the verified chain of the model to register.

        Returns:
            The scikit-learn version the model was trained with (empty when none was recorded).

        Raises:
            RegistryError: no serving image was given.
            ArtifactRefused: the prebuilt image serves another scikit-learn version (both named),
                or the training step recorded none.
        """
        trained = _trained_sklearn(verified)
        if not self.serving_image:
            raise RegistryError(
                "no serving image for the Vertex AI model: give serving_image=REGION-docker.pkg.dev/vertex-ai/"
                f"prediction/sklearn-cpu.{'-'.join(trained.split('.')[:2]) if trained else 'X-Y'}@sha256:... "
                "or chainproof_serving_image=REGISTRY/PATH@sha256:... (image/Dockerfile target serving)"
            )
        if self.chainproof_serving:
            return trained
        m = PREBUILT_SKLEARN_SERVING.fullmatch(self.serving_image.split("@", 1)[0].rsplit(":", 1)[0])
        serves = f"{m.group('major')}.{m.group('minor')}" if m else "?"
        if not trained:
            raise ArtifactRefused(
                f"serving image {self.serving_image}", f"serves scikit-learn {serves}, but no step of the chain "
                "recorded the scikit-learn version the model was trained with"
            )
        if ".".join(trained.split(".")[:2]) != serves:
            raise ArtifactRefused(
                f"serving image {self.serving_image}", f"serves scikit-learn {serves}, but the model was trained "
                f"with scikit-learn {trained}; use a serving image for {'.'.join(trained.split('.')[:2])} or "
                "chainproof's own serving image (chainproof_serving_image)"
            )
        return trained

    def resolve(self, reference: str) -> RegisteredModel:
        """Return a version by ``vertex://projects/P/locations/L/models/ID@VERSION``.

        Raises:
            RegistryError: no such version, or it carries no chainproof evidence pointer.

        Side effects:
            Calls ``ModelService/GetModel``.
        """
        project, location, name, version = parse_vertex_reference(reference)
        if (project, location) != (self.project, self.location):
            raise InputError(f"{reference}: this registry is projects/{self.project}/locations/{self.location}")
        return self._entry(self._model(name, version))

    def identity_for(self, reference: str) -> dict[str, str]:
        """Return the identity of a Vertex AI registration: project, location and model ID.

        Args:
            reference: ``vertex://projects/P/locations/L/models/ID@VERSION``.
        """
        project, location, name, _ = parse_vertex_reference(reference)
        return {"kind": "vertex", "project": project, "location": location, "model_id": name}

    def resource_uri(self, reference: str) -> tuple[str, str]:
        """Return (resourceName, API URI) of a version, as GCPC's ``google.VertexModel`` carries them."""
        project, location, name, version = parse_vertex_reference(reference)
        resource = f"projects/{project}/locations/{location}/models/{name}@{version}"
        return resource, f"https://{location}-aiplatform.googleapis.com/v1/{resource}"


def _trained_sklearn(verified: VerifiedChain) -> str:
    """The scikit-learn version recorded by the step(s) that produced the model's files."""
    versions = {
        str((record.environment.get("frameworks") or {}).get("scikit-learn", ""))
        for record in verified.steps
        if any(name in record.products for name in verified.model_files)
    } - {""}
    if len(versions) > 1:
        raise ArtifactRefused("model", f"its files were produced with scikit-learn {', '.join(sorted(versions))}")
    return versions.pop() if versions else ""
