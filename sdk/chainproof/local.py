"""Run your own chainproof pipeline on one machine (``kfp.local``) and verify what it registered.

Example:
    >>> from chainproof import local  # doctest: +SKIP
    >>> result = local.run(churn, source_uri="churn.csv", expected_sha256="…")
    >>> result.registered
    'local://churn@1'

``run`` creates development keys for every task on the first run, derives the layout
from the pipeline's task graph, signs it with the owner key outside the pipeline, pins
it by digest, runs every task with kfp's SubprocessRunner, and verifies the registered
bundle at the end. A step that refuses its input raises
:class:`~chainproof.errors.StepFailed` with the step's own one-line reason.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from chainproof.errors import InputError
from chainproof.runner import RunResult, local_file_uri, run_pipeline

__all__ = ["coerce_parameters", "load_pipeline", "run"]


def load_pipeline(spec: str) -> Any:
    """Load ``FILE.py:NAME``: a pipeline built with :func:`chainproof.dsl.pipeline`.

    Args:
        spec: the file and the name of the pipeline in it.

    Returns:
        The pipeline.

    Raises:
        InputError: no such file or name, or not a chainproof pipeline.

    Side effects:
        Imports (runs) the file, as ``python FILE.py`` would.
    """
    from chainproof.dsl import is_chainproof_pipeline

    path_text, sep, name = spec.rpartition(":")
    if not sep or not path_text or not name:
        raise InputError(f"--pipeline {spec!r}: expected FILE.py:NAME")
    path = Path(path_text)
    if not path.is_file():
        raise InputError(f"--pipeline {spec!r}: no such file {path}")
    module_name = f"_chainproof_user_{path.stem}"
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise InputError(f"--pipeline {spec!r}: {path} is not a Python file")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[module_name] = module
    loader_spec.loader.exec_module(module)
    obj = getattr(module, name, None)
    if obj is None:
        raise InputError(f"--pipeline {spec!r}: {path} defines no {name!r}")
    if not is_chainproof_pipeline(obj):
        raise InputError(f"--pipeline {spec!r}: {name} is not a pipeline decorated with @chainproof.dsl.pipeline")
    return obj


def coerce_parameters(pipeline_func: Any, values: Mapping[str, str]) -> dict[str, Any]:
    """Turn ``--param NAME=VALUE`` strings into the pipeline's parameter types.

    A string value that names an existing local file or folder becomes a ``file://`` URI.

    Args:
        pipeline_func: the pipeline.
        values: parameter name to its text.

    Returns:
        Parameter name to typed value.

    Raises:
        InputError: an unknown parameter, or a value of the wrong type (named).
    """
    from chainproof.dsl import derive_graph

    types = derive_graph(pipeline_func).parameters
    typed: dict[str, Any] = {}
    for name, text in values.items():
        if name not in types:
            raise InputError(f"--param {name}: the pipeline has no such parameter (parameters: {', '.join(sorted(types))})")
        kind = types[name]
        try:
            if kind == "NUMBER_INTEGER":
                typed[name] = int(text)
            elif kind == "NUMBER_DOUBLE":
                typed[name] = float(text)
            elif kind == "BOOLEAN":
                if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(text)
                typed[name] = text.lower() in ("true", "1", "yes")
            else:
                local = Path(urlparse(text).path if text.startswith("file://") else text)
                is_uri = urlparse(text).scheme in ("gs", "https", "http", "s3")
                typed[name] = local_file_uri(local) if not is_uri and text and local.exists() else text
        except ValueError as exc:
            raise InputError(f"--param {name}={text!r}: expected {kind.lower().replace('number_', '')}") from exc
    return typed


def run(
    pipeline_func: Any,
    *,
    workdir: str | Path = "chainproof-work",
    trust_dir: str | Path | None = None,
    **params: Any,
) -> RunResult:
    """Run a chainproof pipeline locally and verify the model it registered.

    Args:
        pipeline_func: the pipeline (``@chainproof.dsl.pipeline``).
        workdir: keys, runs and the local registry live here.
        trust_dir: the trust store the owner key is added to (default: the user's).
        **params: the pipeline's own parameters; local paths may be given as they are.

    Returns:
        The verified run (``registered``, ``bundle``, ``model``, ``model_sha256`` ...).

    Raises:
        StepFailed: a step refused its input or failed (the message is the step's own).
        InputError: the pipeline cannot be made into a sound layout, or bad parameters.
        VerificationError: the registered bundle does not verify.

    Side effects:
        See :func:`chainproof.runner.run_pipeline`.
    """
    from chainproof.cli import default_trust_dir

    typed = {
        k: coerce_parameters(pipeline_func, {k: v})[k] if isinstance(v, str) else v for k, v in params.items()
    }
    return run_pipeline(
        pipeline_func, typed, workdir=Path(workdir),
        trust_dir=Path(trust_dir) if trust_dir is not None else default_trust_dir(),
    )
