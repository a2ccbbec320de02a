"""The model card: filled from the verified chain, signed over the model, checked against the chain.

Example:
    >>> from chainproof.card import CARD_PREDICATE, card_schema
    >>> card_schema()["title"], CARD_PREDICATE
    ('Model Card', 'https://chainproof.dev/model-card/v1')

    With a bundle and its verification (``verify_bundle``)::

        card = build_card(result, bundle)
        envelope = sign_card(card, result=result, signer=load_signer("file:keys/sign_and_attest.pem"))
        verify_card(envelope, result, bundle, trusted_keys=layout_card_keys(bundle))
        print(render_card_markdown(card))

A model card not bound to the model's digest is prose. This one is an in-toto
Statement v1 whose subject is the model files (the same names and digests the
chain attests), with predicate type :data:`CARD_PREDICATE`. Its ``modelCard``
follows the Model Card Toolkit JSON schema v0.0.2 (vendored unchanged in
``chainproof/data`` with its Apache-2.0 notice, validated with ``jsonschema``);
nothing in it is typed by hand:

- model details and training data come from the verified links (the estimator,
  the source URI and generation, the dataset digest, the layout and its owner);
- intended use and limitations come from the pipeline's parameters
  (``intended_use``, ``intended_users``, ``limitations``) and from the attested
  reports (the held-out split, the robustness figures);
- the quantitative analysis holds every figure of ``metrics/metrics.json`` and of
  ``reports/robustness.json``, as the chain attests them;
- the security evaluation lists the scan verdicts, the principal every step ran
  as and the kind of key that signed its link.

:func:`verify_card` checks the signature, the subject against the verified model,
the chain the card was built from, and that its figures equal the attested reports;
each failure has its own :attr:`CardRejected.reason`.
"""

from __future__ import annotations

import hashlib
import html
import json
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from chainproof.digests import manifest_digest
from chainproof.errors import ArtifactRefused, InputError, SignatureError, VerificationError
from chainproof.verify import StepRecord, VerificationResult

__all__ = [
    "CARD_NAME",
    "CARD_PREDICATE",
    "CARD_SCHEMA_VERSION",
    "CardRejected",
    "build_card",
    "card_schema",
    "layout_card_keys",
    "render_card_html",
    "render_card_markdown",
    "sign_card",
    "validate_card",
    "verify_card",
]

#: The predicate type of the signed card.
CARD_PREDICATE = "https://chainproof.dev/model-card/v1"

#: Where the signed card lives in a bundle.
CARD_NAME = "attestations/model-card.json"

#: The Model Card Toolkit schema version the card follows.
CARD_SCHEMA_VERSION = "0.0.2"

_SCHEMA_FILE = "model_card.schema.v0.0.2.json"
_METRICS = "metrics/metrics.json"
_ROBUSTNESS = "reports/robustness.json"
_SLICES = {
    _METRICS: "held-out test split (metrics/metrics.json)",
    _ROBUSTNESS: "robustness sample (reports/robustness.json)",
}
#: Counts in metrics.json that describe the split rather than the model.
_SPLIT_COUNTS = ("rows", "train_rows", "test_rows")


class CardRejected(VerificationError):
    """The model card does not verify.

    Attributes:
        reason: which check failed: ``malformed``, ``untrusted_key``, ``edited``
            (the signature does not verify: the text changed after signing),
            ``wrong_predicate``, ``schema``, ``other_model`` (the subject is not the
            verified model), ``other_chain``, ``evidence``, ``metrics_differ``,
            ``robustness_differs``.
        artifact: the card's name.
    """

    def __init__(self, reason: str, message: str, *, artifact: str = CARD_NAME) -> None:
        super().__init__(f"{artifact}: {message}")
        self.reason, self.artifact = reason, artifact


# ---------------------------------------------------------------------------
# The schema


def card_schema() -> dict[str, Any]:
    """Return the Model Card Toolkit schema v0.0.2 (vendored, unchanged)."""
    text = (resources.files("chainproof") / "data" / _SCHEMA_FILE).read_text(encoding="utf-8")
    return dict(json.loads(text))


def _resolve(schema: Mapping[str, Any], node: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = node.get("$ref")
    if not isinstance(ref, str):
        return node
    # The upstream schema spells one reference "#definitions/graphic"; read both forms.
    name = ref.lstrip("#").lstrip("/").split("/", 1)[-1]
    return dict(schema["definitions"][name])


def _undeclared(schema: Mapping[str, Any], node: Mapping[str, Any], value: Any, where: str) -> Iterable[str]:
    node = _resolve(schema, node)
    if isinstance(value, dict) and "properties" in node:
        for key, item in value.items():
            if key not in node["properties"]:
                yield f"{where}.{key}" if where else key
            else:
                yield from _undeclared(schema, node["properties"][key], item, f"{where}.{key}" if where else key)
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        for i, item in enumerate(value):
            yield from _undeclared(schema, node["items"], item, f"{where}[{i}]")


def validate_card(model_card: Mapping[str, Any], *, what: str = CARD_NAME) -> None:
    """Validate a model card against the Model Card Toolkit schema v0.0.2.

    Beyond ``jsonschema`` (the schema closes only its top level), every field must be
    one the schema declares, so a misspelt field cannot pass unnoticed.

    Args:
        model_card: the ``modelCard`` document.
        what: the name errors report.

    Raises:
        CardRejected: (``schema``) the card does not follow the schema; names the field.
    """
    import jsonschema

    schema = card_schema()
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(dict(model_card)), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        field = ".".join(str(p) for p in first.absolute_path) or "(top level)"
        raise CardRejected("schema", f"not a Model Card Toolkit v0.0.2 card: {field}: {first.message[:200]}", artifact=what)
    extra = list(_undeclared(schema, schema, dict(model_card), ""))
    if extra:
        raise CardRejected("schema", f"field {extra[0]} is not in the Model Card Toolkit v0.0.2 schema", artifact=what)


# ---------------------------------------------------------------------------
# What the chain attests


def _attested(result: VerificationResult, name: str) -> tuple[StepRecord, str] | None:
    found = None
    for record in result.steps:
        if name in record.products:
            found = (record, record.products[name])
    return found


def _read_attested(result: VerificationResult, bundle: Path, name: str, *, what: str = CARD_NAME) -> Any:
    """Read a bundled report the chain attests, after checking its bytes against the link."""
    attested = _attested(result, name)
    if attested is None:
        return None
    record, digest = attested
    try:
        data = (bundle / name).read_bytes()
    except OSError as exc:
        raise ArtifactRefused(name, f"attested by {record.name} but missing from the bundle ({exc.strerror})") from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != digest:
        raise ArtifactRefused(name, f"expected sha256:{digest} (product of {record.name}), found sha256:{actual}")
    try:
        return json.loads(data)
    except ValueError as exc:
        raise ArtifactRefused(name, "attested report is not JSON") from exc


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _figure(value: Any) -> str:
    # The schema writes metric values as strings; repr keeps a float's exact digits.
    return repr(value) if isinstance(value, float) else str(value)


def _performance_metrics(source: str, report: Any) -> list[dict[str, str]]:
    if not isinstance(report, Mapping):
        return []
    if source == _ROBUSTNESS:
        raw = report.get("metrics")
        figures: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    else:
        figures = {k: v for k, v in report.items() if k not in _SPLIT_COUNTS}
    return [
        {"type": str(k), "value": _figure(v), "slice": _SLICES[source]}
        for k, v in sorted(figures.items())
        if _is_number(v)
    ]


def _strings(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        try:
            decoded = json.loads(value)
        except ValueError:
            return [value]
        return _strings(decoded) if isinstance(decoded, list) else [value]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if str(v)]
    return [str(value)]


def _parameters(result: VerificationResult) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for record in result.steps:
        params = record.environment.get("parameters")
        if isinstance(params, Mapping):
            merged.update(params)
    return merged


def _step_with(result: VerificationResult, prefix: str) -> StepRecord | None:
    for record in result.steps:
        if any(p.startswith(prefix) for p in record.products):
            return record
    return None


def _robustness_notes(report: Mapping[str, Any]) -> list[str]:
    notes = []
    hsj = (report.get("evasion") or {}).get("hopskipjump") or {}
    metrics = report.get("metrics") or {}
    if hsj:
        cut = " (truncated by its time limit)" if hsj.get("truncated") else ""
        notes.append(
            f"HopSkipJump (black box) evaded {hsj.get('rows_evaded')} of {hsj.get('rows_attacked')} attacked rows "
            f"within an L2 budget of {hsj.get('eps')} standard deviations{cut}; "
            f"accuracy under attack {metrics.get('accuracy_under_attack')}."
        )
    for key, label in (("gaussian_noise", "Gaussian noise"), ("missing_values", "missing values"),
                       ("category_flips", "category flips")):
        section = (report.get("perturbations") or {}).get(key) or {}
        if "flip_rate" in section:
            notes.append(
                f"Under {label}, {section['flip_rate']} of predictions flip "
                f"(accuracy drop {section['accuracy_drop']})."
            )
    return notes


def build_card(result: VerificationResult, bundle_dir: str | Path) -> dict[str, Any]:
    """Fill a model card from a verified chain and the reports its bundle carries.

    Args:
        result: the verification of the bundle (:func:`chainproof.verify.verify_bundle`).
        bundle_dir: the same bundle folder.

    Returns:
        The card predicate: ``modelCard`` (Model Card Toolkit v0.0.2), ``evidence``
        (each attested report it was filled from, with its SHA-256 and producing step)
        and ``chain`` (layout, owner key, model digest). JSON-safe, no floats.

    Raises:
        ArtifactRefused: a report the chain attests is missing or has other bytes.
        CardRejected: the card does not validate (a bug, never the caller's input).
    """
    bundle = Path(bundle_dir)
    if not result.model_files:
        raise InputError(f"{bundle}: the verification checked no model files; a card needs the model")
    params = _parameters(result)
    metrics = _read_attested(result, bundle, _METRICS) or {}
    robustness = _read_attested(result, bundle, _ROBUSTNESS)
    evidence = {}
    for name in (_METRICS, _ROBUSTNESS):
        attested = _attested(result, name)
        if attested is not None:
            evidence[name] = {"sha256": attested[1], "producer": attested[0].name}

    ingest = _step_with(result, "dataset/")
    trainer = _step_with(result, "model/")
    name = str(params.get("model_name") or "model")
    reference = str(params.get("reference") or "")
    estimator = str(params.get("estimator") or metrics.get("estimator") or "unknown")
    hyper = params.get("hyperparameters", {})
    target = str(params.get("target_column") or "")
    source_uri = str(params.get("source_uri") or "")
    generations = params.get("source_objects") if isinstance(params.get("source_objects"), Mapping) else {}

    data = []
    for product, digest in sorted((ingest.products if ingest else {}).items()):
        if not product.startswith("dataset/"):
            continue
        parts = [f"sha256:{digest}", f"pinned at ingest to sha256:{params.get('expected_sha256', '')}"]
        if generations:
            parts.append("generation " + ", ".join(f"{k}={v}" for k, v in sorted(generations.items())))
        if metrics:
            parts.append(
                f"{metrics.get('rows')} rows: {metrics.get('train_rows')} for training, "
                f"{metrics.get('test_rows')} held out"
            )
        entry = {"name": product, "description": "; ".join(parts)}
        if source_uri:
            entry["link"] = source_uri
        data.append(entry)

    performance = _performance_metrics(_METRICS, metrics) + _performance_metrics(_ROBUSTNESS, robustness)
    limitations = [f"Stated by the pipeline: {text}" for text in _strings(params.get("limitations"))]
    if metrics:
        limitations.append(
            f"Evaluated only on a held-out split of {metrics.get('test_rows')} rows of the training source; "
            "no independent test set is attested."
        )
    if robustness is None:
        limitations.append("No robustness evaluation is attested in the chain (reports/robustness.json).")
    tradeoffs = [{"description": note} for note in (_robustness_notes(robustness) if isinstance(robustness, Mapping) else [])]
    use_cases = [{"description": text} for text in _strings(params.get("intended_use"))]
    if not use_cases:
        limitations.append("The pipeline's parameters state no intended use (parameter intended_use).")
    users = [{"description": text} for text in _strings(params.get("intended_users"))]

    security = []
    for record in result.steps:
        for product in sorted(record.products):
            if product.startswith("reports/scan-"):
                doc = _read_attested(result, bundle, product) or {}
                security.append({
                    "name": f"Unsafe or tampered files ({product}, by {record.name})",
                    "mitigation_strategy": f"scan verdict {doc.get('verdict')}, {doc.get('findings')} findings "
                    f"over {doc.get('files')} files, allowlist sha256:{(doc.get('allowlist') or {}).get('sha256', '')}",
                })
    for record in result.steps:
        principal = record.environment.get("principal") or {}
        signer = record.environment.get("signer") or {}
        kind = str(signer.get("backend", "unknown")) + (" development key" if signer.get("development") else " key")
        security.append({
            "name": f"Step {record.name}: identity and signature",
            "mitigation_strategy": f"ran as {principal.get('name', 'unknown')} ({principal.get('kind', 'unknown')}); "
            f"link signed with {kind} {record.keyid[:16]}",
        })

    recorded = str((trainer.environment.get("recorded") if trainer else "") or "")
    version: dict[str, str] = {"name": reference.rsplit("@", 1)[-1] if "@" in reference else result.model_sha256[:12]}
    if len(recorded) >= 10:
        version["date"] = recorded[:10]
    documentation = (
        f"Trained by step {trainer.name if trainer else '?'} of a chain of {len(result.steps)} in-toto links "
        f"({', '.join(r.name for r in result.steps)}), verified against the layout sha256:{result.layout_sha256} "
        f"signed by owner key {result.owner_keyid[:16]}. Model files: "
        + ", ".join(f"{k} sha256:{v}" for k, v in sorted(result.model_files.items()))
        + ". Attestations verified: "
        + (", ".join(f"{k} ({v})" for k, v in sorted(result.attestations.items())) or "none")
        + "."
    )
    model_card: dict[str, Any] = {
        "schema_version": CARD_SCHEMA_VERSION,
        "model_details": {
            "name": name,
            "overview": f"{estimator} classifier of {target or 'the label'}, model sha256:{result.model_sha256}",
            "documentation": documentation,
            "owners": [{"name": f"layout owner key {result.owner_keyid[:16]}"}],
            "version": version,
            "references": [{"reference": source_uri}] if source_uri else [],
            "citations": [
                {"style": "in-toto layout sha256", "citation": result.layout_sha256},
                {"style": "model manifest sha256", "citation": result.model_sha256},
                *([{"style": "registry reference", "citation": reference}] if reference else []),
            ],
        },
        "model_parameters": {
            "model_architecture": f"{estimator} (scikit-learn), hyperparameters "
            f"{json.dumps(hyper, sort_keys=True) if not isinstance(hyper, str) else hyper}",
            "data": data,
            "input_format": "CSV rows of numeric features" + (f", label column {target}" if target else ""),
            "output_format": f"class label of {target}" if target else "class label",
        },
        "quantitative_analysis": {"performance_metrics": performance},
        "considerations": {
            "users": users,
            "use_cases": use_cases,
            "limitations": [{"description": text} for text in limitations],
            "tradeoffs": tradeoffs,
            "ethical_considerations": security,
        },
    }
    validate_card(model_card)
    return {
        "modelCard": model_card,
        "evidence": evidence,
        "chain": {
            "layout_sha256": result.layout_sha256,
            "owner_keyid": result.owner_keyid,
            "model_sha256": result.model_sha256,
            "steps": [r.name for r in result.steps],
        },
    }


# ---------------------------------------------------------------------------
# Signing and verification


def sign_card(card: Mapping[str, Any], *, result: VerificationResult, signer: Any) -> bytes:
    """Sign a card as an in-toto Statement v1 whose subject is the verified model files.

    Args:
        card: the predicate from :func:`build_card`.
        result: the verification the card was built from (its model files are the subject).
        signer: a :class:`chainproof.signing.StepSigner`.

    Returns:
        The DSSE envelope bytes (write them as ``attestations/model-card.json``).
    """
    from chainproof.attest import sign_statement

    validate_card(card.get("modelCard") or {})
    return sign_statement(
        subjects=result.model_files, predicate_type=CARD_PREDICATE, predicate=card, signer=signer
    )


def _signature_keyids(data: bytes) -> list[str]:
    try:
        doc = json.loads(data)
        return [str(s["keyid"]) for s in doc["signatures"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise CardRejected("malformed", f"not a DSSE envelope ({type(exc).__name__})") from exc


def _differences(card: list[Any], attested: list[dict[str, str]], source: str) -> str | None:
    ours = {str(m.get("type")): m.get("value") for m in card
            if isinstance(m, dict) and m.get("slice") == _SLICES[source]}
    theirs = {m["type"]: m["value"] for m in attested}
    for metric in sorted(set(ours) | set(theirs)):
        if ours.get(metric) != theirs.get(metric):
            said = ours.get(metric, "nothing")
            found = theirs.get(metric, "nothing")
            return f"{metric}: the card says {said}, the attested {source} says {found}"
    return None


def verify_card(
    card_envelope: bytes,
    verification_result: VerificationResult,
    bundle_dir: str | Path,
    trusted_keys: Mapping[str, Any],
) -> dict[str, Any]:
    """Verify a signed model card against a verified chain.

    Args:
        card_envelope: the DSSE envelope bytes.
        verification_result: the verification of the bundle the card describes.
        bundle_dir: the bundle folder (its attested reports are re-read).
        trusted_keys: key id to public key of the keys allowed to sign cards.

    Returns:
        The verified card predicate.

    Raises:
        CardRejected: names the failed check in ``reason``: the signature (``edited``,
            ``untrusted_key``), the subject (``other_model``), the chain (``other_chain``),
            the schema, the evidence digests, or figures that differ from the attested
            reports (``metrics_differ``, ``robustness_differs``).
    """
    from chainproof.attest import load_statement

    result = verification_result
    bundle = Path(bundle_dir)
    # Card check 1: signed by a trusted key, and not changed since.
    keyids = _signature_keyids(card_envelope)
    candidates = [k for k in keyids if k in trusted_keys]
    if not candidates:
        shown = ", ".join(k[:16] for k in keyids) or "no key"
        raise CardRejected("untrusted_key", f"signed by {shown}, not by a trusted key "
                                            f"(expected one of: {', '.join(k[:16] for k in trusted_keys) or 'none'})")
    try:
        statement = load_statement(card_envelope, key=trusted_keys[candidates[0]], what=CARD_NAME)
    except SignatureError as exc:
        raise CardRejected("edited", f"signature by {candidates[0][:16]} does not verify: "
                                     "the card was changed after it was signed") from exc
    except ArtifactRefused as exc:
        raise CardRejected("malformed", exc.reason) from exc
    if statement.get("predicateType") != CARD_PREDICATE:
        raise CardRejected("wrong_predicate", f"expected predicate {CARD_PREDICATE}, got {statement.get('predicateType')!r}")
    predicate = statement.get("predicate")
    if not isinstance(predicate, dict) or not isinstance(predicate.get("modelCard"), dict):
        raise CardRejected("malformed", "the predicate holds no modelCard")

    # Card check 2: the card is about the verified model: same file names, same digests.
    subjects: dict[str, str] = {}
    for item in statement.get("subject") or []:
        if isinstance(item, dict) and isinstance(item.get("digest"), dict):
            subjects[str(item.get("name"))] = str(item["digest"].get("sha256"))
    if subjects != result.model_files:
        raise CardRejected(
            "other_model",
            f"the card is for model sha256:{manifest_digest(subjects) if subjects else 'none'}, "
            f"the verified model is sha256:{result.model_sha256}",
        )
    raw_chain = predicate.get("chain")
    chain: dict[str, Any] = raw_chain if isinstance(raw_chain, dict) else {}
    if chain.get("layout_sha256") != result.layout_sha256:
        raise CardRejected("other_chain", f"built from the chain of layout sha256:{chain.get('layout_sha256')}, "
                                          f"verified here is sha256:{result.layout_sha256}")

    # Card check 3: it follows the Model Card Toolkit schema.
    validate_card(predicate["modelCard"])

    # Card check 4: its evidence is the chain's: the reports it names are the attested ones.
    raw_evidence = predicate.get("evidence")
    evidence: dict[str, Any] = raw_evidence if isinstance(raw_evidence, dict) else {}
    reasons = {_METRICS: "metrics_differ", _ROBUSTNESS: "robustness_differs"}
    for name in (_METRICS, _ROBUSTNESS):
        attested = _attested(result, name)
        claimed = evidence.get(name)
        if attested is None and claimed is None:
            continue
        if attested is None:
            raise CardRejected(reasons[name], f"cites {name}, which no step of the verified chain produced")
        if not isinstance(claimed, dict):
            raise CardRejected(reasons[name], f"leaves out {name}, which {attested[0].name} attests")
        if claimed.get("sha256") != attested[1]:
            raise CardRejected("evidence", f"cites {name} sha256:{claimed.get('sha256')}, the chain attests "
                                           f"sha256:{attested[1]} (product of {attested[0].name})")

    # Card check 5: its figures are the attested reports' figures, each one.
    quantitative = predicate["modelCard"].get("quantitative_analysis") or {}
    figures = list(quantitative.get("performance_metrics") or [])
    known = set(_SLICES.values())
    stray = [m for m in figures if not isinstance(m, dict) or m.get("slice") not in known]
    if stray:
        raise CardRejected("metrics_differ", f"a figure no attested report holds: {json.dumps(stray[0], sort_keys=True)[:200]}")
    for name in (_METRICS, _ROBUSTNESS):
        report = _read_attested(result, bundle, name)
        difference = _differences(figures, _performance_metrics(name, report), name)
        if difference:
            raise CardRejected(reasons[name], difference)
    return predicate


def layout_card_keys(bundle_dir: str | Path) -> dict[str, Any]:
    """Return the layout's functionary keys by key id (a card signed by a step of the chain).

    Only meaningful once the layout itself verified against a trusted owner key.

    Args:
        bundle_dir: the bundle folder.

    Returns:
        Key id to public key.
    """
    from securesystemslib.signer import Key

    from chainproof.verify import LAYOUT_FILE, load_layout

    _, layout = load_layout((Path(bundle_dir) / LAYOUT_FILE).read_bytes())
    return {keyid: Key.from_dict(keyid, dict(doc)) for keyid, doc in layout.keys.items()}


# ---------------------------------------------------------------------------
# Rendering


def _rows(items: Iterable[Mapping[str, Any]], key: str) -> list[str]:
    return [str(item.get(key, "")) for item in items]


def render_card_markdown(card: Mapping[str, Any]) -> str:
    """Render a card predicate (or a bare ``modelCard``) as Markdown.

    Args:
        card: the predicate from :func:`build_card` or :func:`verify_card`.

    Returns:
        The Markdown text.
    """
    mc = card.get("modelCard", card)
    details = mc.get("model_details", {})
    params = mc.get("model_parameters", {})
    considerations = mc.get("considerations", {})
    figures = (mc.get("quantitative_analysis") or {}).get("performance_metrics", [])

    def cell(text: Any) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    out = [f"# Model card: {details.get('name', '')}", "", str(details.get("overview", "")), ""]
    version = details.get("version") or {}
    out += ["## Model details", "", f"- Version: {version.get('name', '')} ({version.get('date', 'undated')})"]
    out += [f"- Owner: {o.get('name', '')}" for o in details.get("owners", [])]
    out += [f"- {c.get('style', '')}: `{c.get('citation', '')}`" for c in details.get("citations", [])]
    out += ["", str(details.get("documentation", "")), ""]
    out += ["## Model parameters", "", f"- Architecture: {params.get('model_architecture', '')}",
            f"- Input: {params.get('input_format', '')}", f"- Output: {params.get('output_format', '')}", ""]
    out += ["## Training data", ""]
    out += [f"- `{d.get('name', '')}` from {d.get('link', 'an unnamed source')}: {d.get('description', '')}"
            for d in params.get("data", [])] or ["- none attested"]
    for title, source in (("Metrics", _METRICS), ("Robustness", _ROBUSTNESS)):
        rows = [m for m in figures if m.get("slice") == _SLICES[source]]
        out += ["", f"## {title}", ""]
        if rows:
            out += [f"Source: `{source}` (attested)", "", "| metric | value |", "| --- | --- |"]
            out += [f"| {cell(m.get('type'))} | {cell(m.get('value'))} |" for m in rows]
        else:
            out.append(f"No `{source}` in the chain.")
    for title, key, field in (("Intended users", "users", "description"), ("Intended use", "use_cases", "description"),
                              ("Limitations", "limitations", "description"), ("Tradeoffs", "tradeoffs", "description")):
        out += ["", f"## {title}", ""]
        out += [f"- {text}" for text in _rows(considerations.get(key, []), field)] or ["- none stated"]
    out += ["", "## Security evaluation", "", "| concern | evidence |", "| --- | --- |"]
    out += [f"| {cell(r.get('name'))} | {cell(r.get('mitigation_strategy'))} |"
            for r in considerations.get("ethical_considerations", [])]
    chain = card.get("chain") or {}
    if chain:
        out += ["", "## Provenance", "", f"- Layout: sha256:{chain.get('layout_sha256')}",
                f"- Owner key: {chain.get('owner_keyid')}", f"- Model: sha256:{chain.get('model_sha256')}",
                f"- Steps: {', '.join(chain.get('steps', []))}"]
        out += [f"- Evidence `{k}`: sha256:{v.get('sha256')} (by {v.get('producer')})"
                for k, v in sorted((card.get("evidence") or {}).items())]
    return "\n".join(out) + "\n"


def render_card_html(card: Mapping[str, Any]) -> str:
    """Render a card as an HTML fragment (a ``<section>``) for the HTML report.

    Every value is escaped; the fragment carries no script and no external resource.

    Args:
        card: the predicate from :func:`build_card` or :func:`verify_card`.

    Returns:
        ``<section id="model-card" class="model-card">...</section>``.
    """
    e = html.escape
    mc = card.get("modelCard", card)
    details = mc.get("model_details", {})
    params = mc.get("model_parameters", {})
    considerations = mc.get("considerations", {})
    figures = (mc.get("quantitative_analysis") or {}).get("performance_metrics", [])

    def table(head: tuple[str, str], rows: Iterable[tuple[Any, Any]], cls: str) -> str:
        body = "".join(f"<tr><td>{e(str(a))}</td><td>{e(str(b))}</td></tr>" for a, b in rows)
        return (f'<table class="{cls}"><thead><tr><th>{e(head[0])}</th><th>{e(head[1])}</th></tr></thead>'
                f"<tbody>{body}</tbody></table>")

    def items(values: list[str]) -> str:
        return "<ul>" + "".join(f"<li>{e(v)}</li>" for v in values) + "</ul>" if values else "<p>none stated</p>"

    version = details.get("version") or {}
    parts = [
        '<section id="model-card" class="model-card">',
        f"<h2>Model card: {e(str(details.get('name', '')))}</h2>",
        f"<p>{e(str(details.get('overview', '')))}</p>",
        f"<p>Version {e(str(version.get('name', '')))} ({e(str(version.get('date', 'undated')))})</p>",
        f"<p>{e(str(details.get('documentation', '')))}</p>",
        "<h3>Model parameters</h3>",
        table(("field", "value"), [("architecture", params.get("model_architecture", "")),
                                   ("input", params.get("input_format", "")),
                                   ("output", params.get("output_format", ""))], "card-parameters"),
        "<h3>Training data</h3>",
        table(("dataset", "source and digest"),
              [(d.get("name", ""), f"{d.get('link', '')} {d.get('description', '')}") for d in params.get("data", [])],
              "card-data"),
    ]
    for title, source, cls in (("Metrics", _METRICS, "card-metrics"), ("Robustness", _ROBUSTNESS, "card-robustness")):
        rows = [(m.get("type"), m.get("value")) for m in figures if m.get("slice") == _SLICES[source]]
        parts.append(f"<h3>{title} <small>({e(source)})</small></h3>")
        parts.append(table(("metric", "value"), rows, cls) if rows else f"<p>No {e(source)} in the chain.</p>")
    for title, key in (("Intended users", "users"), ("Intended use", "use_cases"),
                       ("Limitations", "limitations"), ("Tradeoffs", "tradeoffs")):
        parts += [f"<h3>{title}</h3>", items(_rows(considerations.get(key, []), "description"))]
    parts += [
        "<h3>Security evaluation</h3>",
        table(("concern", "evidence"), [(r.get("name"), r.get("mitigation_strategy"))
                                        for r in considerations.get("ethical_considerations", [])], "card-security"),
    ]
    chain = card.get("chain") or {}
    if chain:
        rows = [("layout", f"sha256:{chain.get('layout_sha256')}"), ("owner key", chain.get("owner_keyid")),
                ("model", f"sha256:{chain.get('model_sha256')}"), ("steps", ", ".join(chain.get("steps", [])))]
        rows += [(k, f"sha256:{v.get('sha256')} (by {v.get('producer')})") for k, v in sorted((card.get("evidence") or {}).items())]
        parts += ["<h3>Provenance</h3>", table(("what", "value"), rows, "card-provenance")]
    parts.append("</section>")
    return "\n".join(parts)


# ---------------------------------------------------------------------------
# The command line: chainproof card REF [--format md|json|html]


def _page(fragment: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>Model card</title>'
        "<style>body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left;vertical-align:top}</style>"
        f"</head><body>\n{fragment}\n</body></html>\n"
    )


def _cmd_card(args: Any) -> int:
    import sys
    import tempfile

    from chainproof import cli
    from chainproof.verify import verify_bundle

    with tempfile.TemporaryDirectory(prefix="chainproof-card-") as tmp:
        if args.bundle.startswith(("vertex://", "local://")):
            result, bundle = cli._verify_registered(args, Path(tmp), None, [])
        else:
            bundle = Path(args.bundle)
            result = verify_bundle(bundle, trusted_owner_keys=cli._trusted_keys(args.owner_key), model_dir=args.model)
        signed = _attested(result, CARD_NAME) is not None
        if signed:
            # The chain carries a signed card: show that one, once it verifies.
            card = verify_card((bundle / CARD_NAME).read_bytes(), result, bundle, layout_card_keys(bundle))
        else:
            card = build_card(result, bundle)
        if args.sign_with:
            if not args.output:
                raise InputError("--sign-with writes the signed card: give -o FILE")
            from chainproof.attest import write_atomic
            from chainproof.signing import load_signer

            write_atomic(Path(args.output), sign_card(card, result=result, signer=load_signer(args.sign_with)))
            print(f"signed card written to {args.output}", file=sys.stderr)
    origin = f"signed card {CARD_NAME} verified" if signed else "built from the verified chain"
    if args.format == "json":
        cli._print_json({"verified": True, "signed": signed, "model_sha256": result.model_sha256, "card": card})
    elif args.format == "html":
        sys.stdout.write(_page(render_card_html(card)))
    else:
        sys.stdout.write(render_card_markdown(card))
    print(f"OK: model card of sha256:{result.model_sha256} ({origin})", file=sys.stderr)
    return 0


def add_parser(sub: Any) -> None:
    """Register ``chainproof card`` on the CLI's subcommand parser.

    Args:
        sub: the ``add_subparsers()`` object of :func:`chainproof.cli.build_parser`.
    """
    card = sub.add_parser(
        "card",
        help="print the model card of a verified bundle or registered version (Model Card Toolkit v0.0.2)",
    )
    card.add_argument("bundle", metavar="REF",
                      help="a bundle folder, local://NAME@VERSION or vertex://projects/P/locations/L/models/ID@VERSION")
    card.add_argument("--format", choices=["md", "json", "html"], default="md")
    card.add_argument("--registry", default="chainproof-work/registry",
                      help="the local registry folder for local:// (default: ./chainproof-work/registry)")
    card.add_argument("--owner-key", action="append", help="trusted owner public key PEM (repeatable); default: the trust store")
    card.add_argument("--model", help="the model folder (default: the location bundle.json records)")
    card.add_argument("--sign-with", metavar="SIGNER", help="sign the card (file:PATH, gcpkms://..., sigstore:...) and write it to -o")
    card.add_argument("-o", "--output", help="where --sign-with writes the signed card (a DSSE envelope)")
    card.set_defaults(func=_cmd_card)
