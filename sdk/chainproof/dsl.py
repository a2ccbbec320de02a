"""``chainproof.dsl``: a drop-in for ``kfp.dsl`` with zero trust added.

Example:
    >>> from kfp.dsl import Dataset, Input, Output
    >>> from chainproof import dsl
    >>> @dsl.component
    ... def double(raw: Input[Dataset], out: Output[Dataset]):
    ...     open(out.path, "w").write(open(raw.path).read() * 2)
    >>> double.chainproof_role
    'user'

A component written exactly as for kfp (its own ``Input[...]``/``Output[...]`` artifacts
and parameters, nothing else) gets, around the user's function:

* before it runs: every input artifact verified against the signed in-toto link of the
  step that produced it (the layout pinned by digest, the link's signature, the files'
  digests), and handed over as a private verified copy;
* after it returns: its outputs digested and a link signed (materials: the verified
  inputs; products: its outputs), travelling beside each output artifact.

``@dsl.pipeline`` adds one hidden parameter (the run configuration: layout URI and
digest, signer references, run nonce) that reaches every task; no chain, signer or
layout parameter appears in user code. :func:`derive_graph` turns the compiled pipeline
into the owner's layout (one step per task, MATCH rules along the artifact edges the
user wrote, DISALLOW anything else) and refuses, at compile time, a pipeline that
cannot be made into a sound one. Everything else is ``kfp.dsl``, re-exported.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import kfp.dsl as _kfp_dsl
from kfp.dsl import *  # noqa: F403 - a drop-in: everything else is kfp's
from kfp.dsl import structures as _structures

from chainproof._exec import CONFIG_INPUT, HIDDEN_INPUTS, ROLE_INPUT, STEP_INPUT
from chainproof.errors import InputError
from chainproof.policy import RUN_ID, StepSpec

__all__ = [
    "PipelineGraph",
    "component",
    "derive_graph",
    "is_chainproof_pipeline",
    "pipeline",
    "step_name",
]

_SHIM = "chainproof._exec"
_KFP_EXECUTOR = "python3 -m kfp.dsl.executor_main"
_METRICS_TYPES = ("system.Metrics", "system.ClassificationMetrics", "system.SlicedClassificationMetrics")

#: Roles of chainproof's own steps; a user's component is ``user``.
ROLES = ("user", "ingest", "train", "sign", "gate", "register")

_CONFIG: contextvars.ContextVar[Any] = contextvars.ContextVar("chainproof_config", default=None)


def step_name(task: str) -> str:
    """Return the layout step name of a KFP task name (``train-model`` -> ``train_model``)."""
    return task.replace("-", "_")


class _ChainproofComponent(_kfp_dsl.python_component.PythonComponent):  # type: ignore[misc]
    """A kfp component whose tasks receive the run configuration automatically."""

    chainproof_role: str = "user"
    companions: Mapping[str, Any] = {}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        config = _CONFIG.get()
        if config is None:
            raise InputError(
                f"component {self.name}: a chainproof component runs only inside a pipeline decorated with "
                "@chainproof.dsl.pipeline"
            )
        if self.chainproof_role == "register" and "verification" not in kwargs and "model" in kwargs:
            # No gate placed by the user: chainproof adds signing and the gate before registration.
            sign, gate = self.companions["sign_and_attest"], self.companions["verify_chain"]
            attest = sign(model=kwargs["model"])
            kwargs["verification"] = gate(model=kwargs["model"], attestations=attest.outputs["evidence"]).outputs["evidence"]
        kwargs[CONFIG_INPUT] = config
        kwargs[STEP_INPUT] = _kfp_dsl.PIPELINE_TASK_NAME_PLACEHOLDER
        return super().__call__(*args, **kwargs)


def _wrap(comp: Any, role: str) -> Any:
    spec = comp.component_spec
    clash = sorted(set(spec.inputs or {}) & set(HIDDEN_INPUTS))
    if clash:
        raise InputError(f"component {comp.name}: the input name {clash[0]} is reserved by chainproof")
    spec.inputs = dict(spec.inputs or {})
    spec.inputs[CONFIG_INPUT] = _structures.InputSpec(type="String")
    spec.inputs[STEP_INPUT] = _structures.InputSpec(type="String")
    spec.inputs[ROLE_INPUT] = _structures.InputSpec(type="String", default=role, optional=True)
    container = spec.implementation.container
    command = [part.replace(_KFP_EXECUTOR, f"python3 -m {_SHIM} kfp.dsl.executor_main") for part in container.command]
    if command == list(container.command):
        raise InputError(f"component {comp.name}: not a lightweight Python component (no kfp executor to wrap)")
    container.command = command
    comp._component_inputs = set(comp._component_inputs) | set(HIDDEN_INPUTS)
    comp.__class__ = _ChainproofComponent
    comp.chainproof_role = role
    return comp


def component(func: Callable[..., Any] | None = None, *, role: str = "user", **kwargs: Any) -> Any:
    """``kfp.dsl.component`` with zero trust added around the function.

    Args:
        func: the component function (as for kfp).
        role: ``user`` for your own steps; chainproof's components use the others.
        **kwargs: kfp's own arguments (``base_image``, ``packages_to_install``, ...).
            ``base_image`` defaults to chainproof's component image placeholder and
            ``install_kfp_package`` to False: components run with no ``pip install``.

    Returns:
        The component; call it inside a :func:`pipeline`.

    Raises:
        InputError: an unknown role, or a reserved input name.
    """
    if role not in ROLES:
        raise InputError(f"role {role!r}: expected one of {', '.join(ROLES)}")
    if func is None:
        return functools.partial(component, role=role, **kwargs)
    from chainproof.components._image import COMPONENT_IMAGE

    kwargs.setdefault("base_image", COMPONENT_IMAGE)
    kwargs.setdefault("install_kfp_package", False)
    return _wrap(_kfp_dsl.component(func, **kwargs), role)


def pipeline(func: Callable[..., Any] | None = None, **kwargs: Any) -> Any:
    """``kfp.dsl.pipeline`` for pipelines of chainproof components.

    The pipeline gets one more parameter, ``chainproof_config`` (the run configuration
    that ``chainproof run``/``submit`` fill in), which every task receives.

    Args:
        func: the pipeline function (as for kfp).
        **kwargs: kfp's own arguments (``name``, ``description``, ``pipeline_root``, ...).

    Returns:
        The kfp pipeline (a graph component), marked as a chainproof pipeline.

    Raises:
        InputError: the function already has a ``chainproof_config`` parameter.
    """
    if func is None:
        return functools.partial(pipeline, **kwargs)
    signature = inspect.signature(func)
    if CONFIG_INPUT in signature.parameters:
        raise InputError(f"pipeline {func.__name__}: the parameter name {CONFIG_INPUT} is reserved by chainproof")

    @functools.wraps(func)
    def wrapper(*args: Any, **kw: Any) -> Any:
        *user, config = args
        token = _CONFIG.set(config)
        try:
            return func(*user, **kw)
        finally:
            _CONFIG.reset(token)

    hidden = inspect.Parameter(CONFIG_INPUT, inspect.Parameter.POSITIONAL_OR_KEYWORD, default="", annotation=str)
    wrapper.__signature__ = signature.replace(parameters=[*signature.parameters.values(), hidden])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {**getattr(func, "__annotations__", {}), CONFIG_INPUT: str}
    graph = _kfp_dsl.pipeline(wrapper, **kwargs)
    graph.chainproof_pipeline = True
    return graph


def is_chainproof_pipeline(obj: Any) -> bool:
    """Tell whether ``obj`` is a pipeline built with :func:`pipeline`."""
    return bool(getattr(obj, "chainproof_pipeline", False))


@dataclass(frozen=True)
class PipelineGraph:
    """A pipeline's tasks as the owner's layout sees them.

    Attributes:
        name: the pipeline name.
        steps: the layout steps, in a topological order.
        graph: the ``pipeline`` layout extension (parents, inputs, outputs, roles).
        model_prefix: the logical prefix of the model files that are signed and registered.
        parameters: the pipeline's own parameters (name to IR type), hidden ones excluded.
    """

    name: str
    steps: tuple[StepSpec, ...]
    graph: dict[str, Any]
    model_prefix: str
    parameters: dict[str, Any]

    def extensions(self) -> dict[str, Any]:
        """Return the layout extensions that record this graph."""
        return {"pipeline": self.graph, "model_prefix": self.model_prefix}

    @property
    def step_names(self) -> list[str]:
        """The step names in order."""
        return [s.name for s in self.steps]


def _ir(pipeline_func: Any) -> dict[str, Any]:
    if isinstance(pipeline_func, Mapping):
        # A compiled template (the IR as YAML/JSON): what is submitted is what is derived.
        return dict(pipeline_func)
    from google.protobuf import json_format

    spec: dict[str, Any] = json_format.MessageToDict(pipeline_func.pipeline_spec)
    return spec


def _topological(tasks: Mapping[str, Any], parents: Mapping[str, set[str]]) -> list[str]:
    order: list[str] = []
    done: set[str] = set()
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in done:
            return
        if name in visiting:
            raise InputError(f"pipeline: task {name} depends on itself")
        visiting.add(name)
        for parent in sorted(parents.get(name, ())):
            visit(parent)
        visiting.discard(name)
        done.add(name)
        order.append(name)

    for name in sorted(tasks):
        visit(name)
    return order


def derive_graph(pipeline_func: Any) -> PipelineGraph:
    """Derive the owner's layout steps from a pipeline's compiled task graph.

    One step per task (the KFP task name, ``-`` written ``_``); each input artifact
    is a MATCH against the products of the task that made it; each first step (no
    input artifact) creates ``run/id``, which every later step carries; anything else is
    DISALLOWed.

    Args:
        pipeline_func: a pipeline built with :func:`pipeline`, or its compiled IR (a mapping).

    Returns:
        The steps and the graph extension.

    Raises:
        InputError: the pipeline cannot be made into a sound layout: a task that is not
            a chainproof component, an artifact from outside the pipeline (an importer or
            a pipeline input) that no chainproof ingest pinned, nested control flow, or
            two inputs of one task with the same logical name. The message names the
            task and the input.
    """
    if not isinstance(pipeline_func, Mapping) and not is_chainproof_pipeline(pipeline_func):
        raise InputError("not a chainproof pipeline: decorate it with @chainproof.dsl.pipeline")
    ir = _ir(pipeline_func)
    name = str(ir.get("pipelineInfo", {}).get("name", "pipeline"))
    components = ir.get("components", {})
    executors = ir.get("deploymentSpec", {}).get("executors", {})
    tasks = ir.get("root", {}).get("dag", {}).get("tasks", {})
    if not tasks:
        raise InputError(f"pipeline {name}: it has no tasks")

    roles: dict[str, str] = {}
    outputs: dict[str, dict[str, str]] = {}
    inputs: dict[str, dict[str, dict[str, str]]] = {}
    parents: dict[str, set[str]] = {}
    for task_name, task in tasks.items():
        comp = components.get(task.get("componentRef", {}).get("name", ""), {})
        if "dag" in comp:
            raise InputError(
                f"task {task_name}: nested control flow (dsl.If, ParallelFor, sub-pipelines) cannot be made into a "
                "fixed layout; place its steps at the top level"
            )
        executor = executors.get(comp.get("executorLabel", ""), {})
        if "importer" in executor:
            raise InputError(
                f"task {task_name}: an importer brings an artifact from outside the pipeline that nothing pinned; "
                "fetch it with chainproof's secure_ingest (pinned by digest or publisher signature)"
            )
        params = comp.get("inputDefinitions", {}).get("parameters", {})
        if CONFIG_INPUT not in params:
            raise InputError(f"task {task_name}: not a chainproof component; decorate it with @chainproof.dsl.component")
        role = str(params.get(ROLE_INPUT, {}).get("defaultValue", "user"))
        step = step_name(task_name)
        if step in roles:
            raise InputError(f"task {task_name}: two tasks map to the step name {step}")
        roles[step] = role
        out_defs = comp.get("outputDefinitions", {}).get("artifacts", {})
        outputs[step] = {}
        for out, definition in out_defs.items():
            title = definition.get("artifactType", {}).get("schemaTitle", "")
            if role == "register":
                kind = "none"
            elif out == "evidence" and role in ("sign", "gate"):
                kind = "evidence"
            elif title in _METRICS_TYPES:
                kind = "metrics"
            else:
                kind = "files"
            outputs[step][out] = kind
        inputs[step] = {}
        parents[step] = {step_name(t) for t in task.get("dependentTasks", [])}
        for input_name, spec in task.get("inputs", {}).get("artifacts", {}).items():
            source = spec.get("taskOutputArtifact")
            if not source:
                raise InputError(
                    f"task {task_name}: input {input_name} is an artifact from outside the pipeline that no chainproof "
                    "ingest pinned; fetch it with secure_ingest (pinned by digest or publisher signature)"
                )
            producer = step_name(str(source["producerTask"]))
            inputs[step][input_name] = {"from": producer, "output": str(source["outputArtifactKey"])}
            parents[step].add(producer)
    for step, by_name in inputs.items():
        seen: dict[str, str] = {}
        for input_name, info in by_name.items():
            info["kind"] = outputs.get(info["from"], {}).get(info["output"], "files")
            if info["kind"] == "none":
                raise InputError(f"task {step}: input {input_name} comes from a registration, which carries no evidence")
            logical = info["output"] if info["kind"] == "files" else f"{info['kind']}:{info['from']}"
            if logical in seen:
                raise InputError(
                    f"task {step}: inputs {seen[logical]} and {input_name} both carry {logical}/* artifacts; rename "
                    "one producer's output"
                )
            seen[logical] = input_name
        if roles[step] == "ingest" and by_name:
            raise InputError(f"task {step}: an ingest step takes no input artifact")

    order = _topological(parents, parents)
    ancestors: dict[str, set[str]] = {}
    for step in order:
        found: set[str] = set()
        for parent in parents.get(step, set()):
            found |= {parent} | ancestors.get(parent, set())
        ancestors[step] = found
    model_prefixes = {
        info["output"] for step in order if roles[step] in ("sign", "gate", "register")
        for input_name, info in inputs[step].items() if input_name == "model"
    }
    if len(model_prefixes) > 1:
        raise InputError(f"pipeline {name}: signing, gate and registration receive different models ({sorted(model_prefixes)})")
    model_prefix = next(iter(model_prefixes), "model")

    roots = {s for s in order if not inputs[s]}
    steps = tuple(_step_spec(step, roles[step], inputs[step], outputs[step], [s for s in order if s in ancestors[step]], roots)
                  for step in order)
    graph = {
        "parents": {s: sorted(parents[s]) for s in order},
        "inputs": inputs,
        "outputs": outputs,
        "roles": roles,
    }
    pipeline_params = {
        k: v.get("parameterType", "STRING")
        for k, v in ir.get("root", {}).get("inputDefinitions", {}).get("parameters", {}).items()
        if k != CONFIG_INPUT
    }
    return PipelineGraph(name=name, steps=steps, graph=graph, model_prefix=model_prefix, parameters=pipeline_params)


def _step_spec(
    step: str,
    role: str,
    inputs: Mapping[str, Mapping[str, str]],
    outputs: Mapping[str, str],
    ancestors: list[str],
    roots: set[str],
) -> StepSpec:
    materials: list[list[str]] = []
    products: list[list[str]] = []
    file_outputs = [o for o, kind in outputs.items() if kind == "files"]
    if role == "ingest":
        if len(file_outputs) != 1:
            raise InputError(f"task {step}: an ingest step has exactly one output of files")
        materials = [["ALLOW", "source/*"]]
        products = [
            ["REQUIRE", RUN_ID], ["CREATE", RUN_ID],
            # What is released must be byte-identical to the pinned source.
            ["MATCH", "*", "IN", file_outputs[0], "WITH", "MATERIALS", "IN", "source", "FROM", step],
            ["CREATE", "reports/*"],
        ]
    elif not inputs:
        products = [["REQUIRE", RUN_ID], ["CREATE", RUN_ID]]
    else:
        # Every first step writes the same run/id (the run nonce): MATCH the first one upstream.
        root = next(a for a in ancestors if a in roots)
        materials = [["REQUIRE", RUN_ID], ["MATCH", RUN_ID, "WITH", "PRODUCTS", "FROM", root]]
    received: set[str] = set()
    for _, info in sorted(inputs.items()):
        producer, output, kind = info["from"], info["output"], info["kind"]
        if kind == "metrics":
            materials.append(["MATCH", f"metrics/{output}.json", "WITH", "PRODUCTS", "FROM", producer])
        elif kind == "evidence":
            materials.append(["MATCH", "attestations/*", "WITH", "PRODUCTS", "FROM", producer])
            materials.append(["MATCH", "reports/*", "WITH", "PRODUCTS", "FROM", producer])
        else:
            materials.append(["MATCH", f"{output}/*", "WITH", "PRODUCTS", "FROM", producer])
            received.add(output)
    if role != "ingest":
        for output, kind in sorted(outputs.items()):
            if kind == "files":
                products.append(["CREATE", f"{output}/*"])
                if output in received:
                    # A step that rewrites what it received (same logical prefix).
                    products += [["MODIFY", f"{output}/*"], ["ALLOW", f"{output}/*"]]
            elif kind == "metrics":
                products.append(["CREATE", f"metrics/{output}.json"])
    if role == "train":
        # The drift reference profile (chainproof.drift), evidence the training step writes.
        products.append(["CREATE", "reports/profile.json"])
    if role == "sign":
        products += [["REQUIRE", "attestations/model.sig"], ["REQUIRE", "attestations/provenance.json"],
                     ["CREATE", "attestations/*"]]
    elif role == "gate":
        products += [["REQUIRE", "attestations/vsa.json"], ["REQUIRE", "reports/scan-model.json"],
                     ["REQUIRE", "attestations/model-card.json"], ["CREATE", "attestations/vsa.json"],
                     ["CREATE", "attestations/model-card.json"], ["CREATE", "reports/*"]]
    elif role == "register":
        products += [["REQUIRE", "registry/entry.json"], ["CREATE", "registry/entry.json"]]
    materials.append(["DISALLOW", "*"])
    products.append(["DISALLOW", "*"])
    return StepSpec(
        name=step,
        expected_materials=tuple(tuple(r) for r in materials),
        expected_products=tuple(tuple(r) for r in products),
        description=f"Task {step} ({role}).",
    )

