"""The owner's policy: an in-toto layout generated from the pipeline's steps.

Example:
    >>> import tempfile
    >>> from chainproof.policy import REFERENCE_STEPS, generate_layout
    >>> from chainproof.signing import init_keys, load_public_key
    >>> ring = init_keys(tempfile.mkdtemp(), roles=[s.name for s in REFERENCE_STEPS])
    >>> keys = {s.name: load_public_key(ring.public_key_path(s.name)) for s in REFERENCE_STEPS}
    >>> layout = generate_layout(REFERENCE_STEPS, keys)
    >>> [s.name for s in layout.steps][:2]
    ['secure_ingest', 'train_model']

Every material of a step is a MATCH against the products of the step that made
it, every product a CREATE, and anything else is DISALLOWed. ``REQUIRE`` rules make
the artifacts a step must have present (in-toto's MATCH passes vacuously on an
empty set). Each step after the first carries ``run/id``, the run identity the
first step creates, which binds every link to one run: a link replayed from another
run does not MATCH.

The layout is signed by the owner before the run and outside the pipeline; it
enters the pipeline pinned by its SHA-256, so no step ever holds the owner key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from in_toto.models.layout import Layout, Step
from in_toto.models.metadata import Envelope
from securesystemslib.signer import SSlibKey

from chainproof.errors import InputError
from chainproof.signing import StepSigner

__all__ = [
    "DEFAULT_EXPIRY",
    "EXT_ALLOW_SERVICE_ACCOUNT_KEYS",
    "EXT_EXPECTED_PRINCIPALS",
    "EXT_PIPELINE",
    "REFERENCE_PIPELINE_STEPS",
    "REFERENCE_STEPS",
    "RUN_ID",
    "StepSpec",
    "allows_service_account_key",
    "expected_principal",
    "generate_layout",
    "insert_transform",
    "layout_extensions",
    "pipeline_graph",
    "sign_layout",
    "step_ancestors",
    "step_names",
    "step_parents",
]

#: The logical name of the run-identity artifact the first step creates.
RUN_ID = "run/id"

#: How long a generated layout stays valid. A registered model is audited long
#: after its run, and an expired layout fails every verification.
DEFAULT_EXPIRY = timedelta(days=365)

Rule = list[str]

#: Layout extension: ``{step: principal}``, the principal (service-account email or
#: federated subject) each pinned step must run as.
EXT_EXPECTED_PRINCIPALS = "expected_principals"

#: Layout extension: ``true`` (every step), a list of step names, or ``{step: bool}``:
#: the steps the owner allows to run with a service-account key file.
EXT_ALLOW_SERVICE_ACCOUNT_KEYS = "allow_service_account_keys"


def _match(pattern: str, step: str) -> Rule:
    return ["MATCH", pattern, "WITH", "PRODUCTS", "FROM", step]


@dataclass(frozen=True)
class StepSpec:
    """One pipeline step as the layout sees it.

    Attributes:
        name: the step (and link) name.
        expected_materials: in-toto artifact rules for what the step consumes.
        expected_products: in-toto artifact rules for what the step produces.
        description: what the step does, for people reading the layout.
    """

    name: str
    expected_materials: tuple[tuple[str, ...], ...]
    expected_products: tuple[tuple[str, ...], ...]
    description: str


def _spec(name: str, materials: list[Rule], products: list[Rule], description: str) -> StepSpec:
    return StepSpec(
        name=name,
        expected_materials=tuple(tuple(r) for r in materials),
        expected_products=tuple(tuple(r) for r in products),
        description=description,
    )


_INGEST = "secure_ingest"
_TRAIN = "train_model"
_SIGN = "sign_and_attest"
_GATE = "verify_chain"
_REGISTER = "register_model"

#: The reference zero-trust training pipeline, in order. The chain table of
#: DESIGN.md is generated from (and must agree with) these rules.
REFERENCE_STEPS: tuple[StepSpec, ...] = (
    _spec(
        _INGEST,
        [["ALLOW", "source/*"], ["DISALLOW", "*"]],
        [
            ["REQUIRE", RUN_ID],
            ["CREATE", RUN_ID],
            # The ingested dataset must be byte-identical to the pinned source.
            ["MATCH", "*", "IN", "dataset", "WITH", "MATERIALS", "IN", "source", "FROM", _INGEST],
            ["CREATE", "reports/*"],
            ["DISALLOW", "*"],
        ],
        "Fetch the digest-pinned source, verify it, and create the run identity.",
    ),
    _spec(
        _TRAIN,
        [["REQUIRE", RUN_ID], _match(RUN_ID, _INGEST), _match("dataset/*", _INGEST), ["DISALLOW", "*"]],
        [["CREATE", "model/*"], ["CREATE", "metrics/*"], ["CREATE", "reports/profile.json"], ["DISALLOW", "*"]],
        "Train the model on the verified dataset; write its drift reference profile.",
    ),
    _spec(
        _SIGN,
        [["REQUIRE", RUN_ID], _match(RUN_ID, _INGEST), _match("model/*", _TRAIN), ["DISALLOW", "*"]],
        [
            ["REQUIRE", "attestations/model.sig"],
            ["REQUIRE", "attestations/provenance.json"],
            ["CREATE", "attestations/*"],
            ["DISALLOW", "*"],
        ],
        "Sign the model (OpenSSF Model Signing) and write its SLSA provenance.",
    ),
    _spec(
        _GATE,
        [
            ["REQUIRE", RUN_ID],
            _match(RUN_ID, _INGEST),
            _match("dataset/*", _INGEST),
            _match("reports/profile.json", _TRAIN),
            _match("reports/*", _INGEST),
            _match("model/*", _TRAIN),
            _match("metrics/*", _TRAIN),
            _match("attestations/*", _SIGN),
            ["DISALLOW", "*"],
        ],
        [
            ["REQUIRE", "attestations/vsa.json"],
            ["REQUIRE", "reports/scan-model.json"],
            ["REQUIRE", "attestations/model-card.json"],
            ["CREATE", "attestations/vsa.json"],
            ["CREATE", "attestations/model-card.json"],
            ["CREATE", "reports/*"],
            ["DISALLOW", "*"],
        ],
        "Verify the whole chain so far (fail closed) and write a verification summary.",
    ),
    _spec(
        _REGISTER,
        [
            ["REQUIRE", RUN_ID],
            _match(RUN_ID, _INGEST),
            _match("model/*", _TRAIN),
            _match("attestations/vsa.json", _GATE),
            _match("attestations/model-card.json", _GATE),
            _match("attestations/*", _SIGN),
            ["DISALLOW", "*"],
        ],
        [["REQUIRE", "registry/entry.json"], ["CREATE", "registry/entry.json"], ["DISALLOW", "*"]],
        "Register the verified model with a pointer to its evidence.",
    ),
)


#: The steps of the reference pipeline (``chainproof.pipelines``), in order: the explicit-chain
#: steps above plus the robustness evaluation between training and signing, whose layout
#: :func:`chainproof.dsl.derive_graph` derives from the pipeline itself. ``keys init``
#: creates one key for each.
REFERENCE_PIPELINE_STEPS: tuple[str, ...] = (
    _INGEST,
    _TRAIN,
    "evaluate_robustness",
    _SIGN,
    _GATE,
    _REGISTER,
)


def insert_transform(
    steps: Sequence[StepSpec],
    name: str,
    *,
    after: str,
    prefix: str = "dataset",
    description: str = "",
) -> tuple[StepSpec, ...]:
    """Insert a step of your own that transforms ``prefix/*`` artifacts (e.g. preprocessing).

    The new step consumes ``prefix/*`` as the step that last produced them attested
    them, carries ``run/id``, and produces a new ``prefix/*`` set. Every later step
    that consumed ``prefix/*`` from an earlier producer now MATCHes against the new
    step instead, so the untransformed artifacts can no longer be slipped in.

    Args:
        steps: the pipeline's steps, in order.
        name: the new step's name (its link name and signer role).
        after: the step it runs after.
        prefix: the logical prefix it transforms.
        description: what it does, for people reading the layout.

    Returns:
        The new step list.

    Raises:
        InputError: unknown ``after`` step, a duplicate name, or no earlier producer of ``prefix``.
    """
    names = [s.name for s in steps]
    if after not in names:
        raise InputError(f"insert_transform: no step {after!r} (steps: {names})")
    if name in names:
        raise InputError(f"insert_transform: a step named {name!r} exists already")
    position = names.index(after) + 1
    pattern = f"{prefix}/*"
    first = steps[0].name
    producers = [
        s.name
        for s in steps[:position]
        if any(r[0] in ("CREATE", "MODIFY", "ALLOW") and r[1] == pattern for r in s.expected_products)
        or any(r[0] == "MATCH" and len(r) > 3 and r[3] == prefix for r in s.expected_products)
    ]
    if not producers:
        raise InputError(f"insert_transform: no step before {name!r} produces {pattern}")
    source = producers[-1]
    new = _spec(
        name,
        [["REQUIRE", RUN_ID], _match(RUN_ID, first), _match(pattern, source), ["DISALLOW", "*"]],
        [["CREATE", pattern], ["MODIFY", pattern], ["ALLOW", pattern], ["DISALLOW", "*"]],
        description or f"Transform {pattern} (a step of the pipeline's author).",
    )
    later = []
    for spec in steps[position:]:
        rules = [
            tuple(list(r[:-1]) + [name]) if r[0] == "MATCH" and r[1] == pattern and r[-1] in producers else r
            for r in spec.expected_materials
        ]
        later.append(StepSpec(spec.name, tuple(rules), spec.expected_products, spec.description))
    return (*steps[:position], new, *later)


def step_names(steps: Sequence[StepSpec] = REFERENCE_STEPS) -> list[str]:
    """Return the step names in pipeline order."""
    return [s.name for s in steps]


def generate_layout(
    steps: Sequence[StepSpec],
    functionary_keys: Mapping[str, SSlibKey],
    *,
    expires: datetime | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> Layout:
    """Build the in-toto layout for a pipeline.

    Args:
        steps: the pipeline's steps in order.
        functionary_keys: step name to the public key that must sign its link.
        expires: when the layout stops being valid (default: one year from now).
        extensions: chainproof policy beyond in-toto's (for example the expected
            principal per step), stored as JSON in the layout's signed ``readme``.

    Returns:
        The unsigned layout.

    Raises:
        InputError: a step has no functionary key, or names are not unique.
    """
    names = [s.name for s in steps]
    if len(set(names)) != len(names):
        raise InputError(f"layout: step names must be unique, got {names}")
    missing = [n for n in names if n not in functionary_keys]
    if missing:
        raise InputError(f"layout: no functionary key for step(s) {', '.join(missing)}")
    when = expires or datetime.now(timezone.utc) + DEFAULT_EXPIRY
    layout = Layout(
        expires=when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        readme=json.dumps({"chainproof": dict(extensions or {})}, sort_keys=True),
    )
    for spec in steps:
        key = functionary_keys[spec.name]
        layout.add_functionary_key(key.to_dict() | {"keyid": key.keyid})
        layout.steps.append(
            Step(
                name=spec.name,
                expected_materials=[list(r) for r in spec.expected_materials],
                expected_products=[list(r) for r in spec.expected_products],
                pubkeys=[key.keyid],
                threshold=1,
                expected_command=[],
            )
        )
    layout.validate()
    return layout


def layout_extensions(layout: Layout) -> dict[str, Any]:
    """Return the chainproof extensions stored in a layout's ``readme``.

    Args:
        layout: a layout ``generate_layout`` made (other layouts give ``{}``).

    Returns:
        The extensions dictionary.
    """
    try:
        doc = json.loads(layout.readme or "{}")
    except ValueError:
        return {}
    ext = doc.get("chainproof") if isinstance(doc, dict) else None
    return dict(ext) if isinstance(ext, dict) else {}


def sign_layout(layout: Layout, owner: StepSigner) -> bytes:
    """Sign a layout with the owner's key into a DSSE envelope.

    Args:
        layout: the layout to sign.
        owner: the owner's signer (the root of trust).

    Returns:
        The envelope as in-toto writes it (JSON bytes, the ``root.layout`` file).
    """
    envelope = Envelope.from_signable(layout)
    envelope.create_signature(owner.signer)
    return json.dumps(envelope.to_dict(), sort_keys=True).encode("utf-8")


def expected_principal(layout: Layout, step: str) -> str | None:
    """Return the principal the layout pins for a step, if any.

    Args:
        layout: the trusted layout.
        step: the step name.

    Returns:
        The expected principal name, or ``None`` when the step is not pinned.
    """
    pins = layout_extensions(layout).get(EXT_EXPECTED_PRINCIPALS) or {}
    value = pins.get(step) if isinstance(pins, dict) else None
    return str(value) if value else None


def allows_service_account_key(layout: Layout, step: str) -> bool:
    """Tell whether the layout's owner allows a step to run with a service-account key file.

    Args:
        layout: the trusted layout.
        step: the step name.

    Returns:
        True only if the ``allow_service_account_keys`` extension says so for this step.
    """
    value = layout_extensions(layout).get(EXT_ALLOW_SERVICE_ACCOUNT_KEYS, False)
    if isinstance(value, bool):
        return value
    if isinstance(value, list):
        return step in value
    if isinstance(value, dict):
        return value.get(step) is True
    return False


#: Layout extension: the pipeline's task graph as the owner signed it (see
#: :mod:`chainproof.dsl`): ``parents``, ``inputs``, ``outputs`` and ``roles`` per step.
EXT_PIPELINE = "pipeline"


def pipeline_graph(layout: Layout) -> dict[str, Any] | None:
    """Return the task graph a layout derived from a pipeline records, if any.

    Args:
        layout: the trusted layout.

    Returns:
        ``{"parents": {step: [step]}, "inputs": {step: {input: {"from", "output", "kind"}}},
        "outputs": {step: {output: kind}}, "roles": {step: role}}``, or ``None`` for a
        layout with a fixed step order (the steps then run one after the other).
    """
    graph = layout_extensions(layout).get(EXT_PIPELINE)
    return graph if isinstance(graph, dict) else None


def step_parents(layout: Layout) -> dict[str, list[str]] | None:
    """Return each step's parents in the pipeline graph, or ``None`` for a sequential layout.

    Args:
        layout: the trusted layout.

    Returns:
        Step name to the steps it consumes artifacts from.
    """
    graph = pipeline_graph(layout)
    if graph is None:
        return None
    parents = graph.get("parents")
    return {str(k): [str(p) for p in v] for k, v in parents.items()} if isinstance(parents, dict) else {}


def step_ancestors(layout: Layout, step: str) -> list[str] | None:
    """Return every step a step transitively consumes from, or ``None`` for a sequential layout.

    Args:
        layout: the trusted layout.
        step: the step.

    Returns:
        The ancestors' names (unordered), or ``None`` when the layout has no graph.
    """
    parents = step_parents(layout)
    if parents is None:
        return None
    seen: set[str] = set()
    todo = list(parents.get(step, []))
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(parents.get(name, []))
    return sorted(seen)
