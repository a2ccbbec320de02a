"""The verified model on KServe's Python model server (V1 and V2 REST, ``/metrics``).

Example:
    >>> from chainproof.serve.server import serve  # doctest: +SKIP
    >>> serve(load_verified("local://chainproof-model@1", registry=..., trusted_owner_keys=...), port=8080)

Nothing here verifies a model: :func:`chainproof.serve.loader.load_verified` has done it before
:func:`serve` is called, so a model that fails never gets a port. KServe binds ``0.0.0.0`` for
REST (and ``[::]`` for gRPC, which is left off); :func:`serve` sets the listening address to
``host`` on uvicorn's configuration before it binds.

Instances: a list is read in the feature order recorded at training (``model/features.json``),
an object by feature name. V2: one input of shape ``[N, F]`` in feature order, or one input per
feature (named by the feature, shape ``[N]``). The wrong width, an unknown or missing feature or
a wrong type is a 400 that names the feature. A reload (``POST /v2/repository/models/NAME/load``)
re-verifies the model files against the chain before anything is loaded; a model swapped on disk
is refused and the model is no longer ready. The files are also hashed against the chain every
``recheck`` seconds: a change found there has the same effect, without waiting for a reload.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from chainproof.errors import ChainproofError, ColumnError, InputError
from chainproof.serve.loader import ServedModel

__all__ = ["build_model", "instances_to_rows", "serve"]

logger = logging.getLogger("chainproof.serve")

#: The extra to install when kserve is missing.
SERVE_EXTRA = "pip install 'chainproof[serve]'"


def _import_kserve() -> Any:
    """Import kserve without letting its import-time argparse read our command line."""
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        import kserve
        import kserve.model_server  # parses sys.argv once, at import
    except ImportError as exc:
        raise InputError(f"chainproof serve needs KServe's model server (kserve): {SERVE_EXTRA}") from exc
    finally:
        sys.argv = saved
    return kserve


def _bad(message: str) -> Exception:
    from kserve.errors import InvalidInput

    error: Exception = InvalidInput(message)
    return error


def _kind(cell: Any) -> str:
    return {bool: "a boolean", dict: "an object", list: "a list"}.get(type(cell), type(cell).__name__)


def _check_cell(where: str, feature: Mapping[str, Any], cell: Any) -> Any:
    name, kind = str(feature["name"]), str(feature["type"])
    if cell is None:
        return None
    if kind == "numeric":
        # Messages name the feature and the type found, never the value (inputs may be personal data).
        if isinstance(cell, bool) or not isinstance(cell, (int, float, str)):
            raise _bad(f"{where}: feature {name!r} is numeric, got {_kind(cell)}")
        if isinstance(cell, str):
            try:
                value = float(cell) if cell.strip() else None
            except ValueError:
                raise _bad(f"{where}: feature {name!r} is numeric, got a string that is not a number") from None
            if value is None:
                return None
        else:
            value = float(cell)
        if not math.isfinite(value):
            raise _bad(f"{where}: feature {name!r} is not a finite number")
        return value
    if isinstance(cell, (dict, list)):
        raise _bad(f"{where}: feature {name!r} is categorical, got {_kind(cell)}")
    return cell if isinstance(cell, str) else str(cell)


def instances_to_rows(instances: Any, features: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    """Validate V1 instances and return their cells in feature order.

    Args:
        instances: a list of instances, each a list (training order) or an object (by name).
        features: the feature contract.

    Returns:
        One list of cells per instance.

    Raises:
        kserve.errors.InvalidInput: wrong width, unknown or missing feature, wrong type (a 400).
    """
    names = [str(f["name"]) for f in features]
    if not isinstance(instances, list) or not instances:
        raise _bad(f"expected \"instances\": a non-empty list of instances with features {', '.join(names[:12])}")
    rows: list[list[Any]] = []
    for i, inst in enumerate(instances):
        where = f"instance {i}"
        if isinstance(inst, Mapping):
            unknown = [k for k in inst if k not in names]
            if unknown:
                raise _bad(f"{where}: unknown feature {str(unknown[0])!r} (features: {', '.join(names[:12])})")
            missing = [n for n in names if n not in inst]
            if missing:
                raise _bad(f"{where}: feature {missing[0]!r} is missing")
            cells = [inst[n] for n in names]
        elif isinstance(inst, list):
            if len(inst) < len(names):
                raise _bad(f"{where}: {len(inst)} values, expected {len(names)}: feature {names[len(inst)]!r} is missing")
            if len(inst) > len(names):
                raise _bad(f"{where}: {len(inst)} values, expected {len(names)}: nothing follows feature {names[-1]!r}")
            cells = inst
        else:
            raise _bad(f"{where}: expected a list in feature order or an object by feature name, got {type(inst).__name__}")
        rows.append([_check_cell(where, f, c) for f, c in zip(features, cells)])
    return rows


def _v2_rows(request: Any, features: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    """Validate a V2 InferRequest's inputs and return rows in feature order."""
    import numpy as np

    names = [str(f["name"]) for f in features]
    inputs = list(request.inputs or [])
    if not inputs:
        raise _bad(f"expected inputs: one [N, {len(names)}] tensor in feature order, or one per feature")
    by_name = {inp.name: inp for inp in inputs}

    def flat(inp: Any) -> list[Any]:
        data = inp.data
        if isinstance(data, np.ndarray):
            values = data.reshape(-1).tolist()
        else:
            values = np.asarray(data if data is not None else [], dtype=object).reshape(-1).tolist()
        values = [v.decode("utf-8") if isinstance(v, bytes) else v for v in values]
        expected = math.prod(int(d) for d in inp.shape) if inp.shape else len(values)
        if expected != len(values):
            raise _bad(f"input {inp.name!r}: shape {list(inp.shape)} holds {expected} values, the data {len(values)}")
        return values

    if len(inputs) == 1 and inputs[0].name not in names:
        inp = inputs[0]
        shape = [int(d) for d in inp.shape]
        if len(shape) != 2:
            raise _bad(f"input {inp.name!r}: expected shape [N, {len(names)}] in feature order, got {shape}")
        if shape[1] != len(names):
            which = (f"feature {names[shape[1]]!r} is missing" if shape[1] < len(names)
                     else f"nothing follows feature {names[-1]!r}")
            raise _bad(f"input {inp.name!r}: {shape[1]} values per row, expected {len(names)}: {which}")
        values = flat(inp)
        instances: list[Any] = [values[r * shape[1]:(r + 1) * shape[1]] for r in range(shape[0])]
        return instances_to_rows(instances, features)
    unknown = [n for n in by_name if n not in names]
    if unknown:
        raise _bad(f"input {unknown[0]!r}: unknown feature (features: {', '.join(names[:12])})")
    missing = [n for n in names if n not in by_name]
    if missing:
        raise _bad(f"feature {missing[0]!r} is missing from the inputs")
    columns = {n: flat(by_name[n]) for n in names}
    counts = {len(c) for c in columns.values()}
    if len(counts) != 1:
        raise _bad(f"inputs: features have different numbers of rows ({sorted(counts)})")
    n_rows = counts.pop()
    return instances_to_rows([{n: columns[n][r] for n in names} for r in range(n_rows)], features)


def _pythonic(values: Any) -> list[Any]:
    out = []
    for v in list(values):
        if hasattr(v, "item"):
            v = v.item()
        out.append(v)
    return out


class _Metrics:
    """Prometheus series of the served model (registered once per process)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge

        self.info = Gauge("chainproof_model_verified", "1 while the served model is the verified one (0 after a refused reload)",
                          ["model", "model_sha256", "layout_sha256"])
        self.psi = Gauge("chainproof_drift_psi", "population stability index of a feature over the sliding window",
                         ["model", "feature"])
        self.ks = Gauge("chainproof_drift_score_ks", "KS statistic of the model's scores over the sliding window", ["model"])
        self.window = Gauge("chainproof_drift_window_rows", "rows in the drift window", ["model"])
        self.alerts = Counter("chainproof_drift_alerts", "drift alerts raised (a statistic crossed its threshold)",
                              ["model", "statistic"])
        self.refused = Counter("chainproof_reload_refused", "reloads refused because the model did not verify", ["model"])


_METRICS: _Metrics | None = None


def _metrics() -> _Metrics:
    global _METRICS
    if _METRICS is None:
        _METRICS = _Metrics()
    return _METRICS


def build_model(served: ServedModel, *, monitor: Any = None) -> Any:
    """Wrap a served model as a ``kserve.Model``.

    Args:
        served: the verified, loaded model.
        monitor: a :class:`chainproof.drift.DriftMonitor`, or ``None`` for no drift monitoring.

    Returns:
        The KServe model (ready).
    """
    kserve = _import_kserve()
    from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

    from chainproof.drift import model_scores
    from chainproof.train import prepare_rows

    metrics = _metrics()

    class ChainproofModel(kserve.Model):  # type: ignore[misc, name-defined]
        """The verified model behind KServe's V1 and V2 endpoints."""

        def __init__(self) -> None:
            super().__init__(served.name)
            self.served = served
            self.monitor = monitor
            self.refusal = ""
            self._alerting: set[str] = set()
            metrics.info.labels(served.name, served.model_sha256, served.result.layout_sha256).set(1)
            self.ready = True

        def refuse(self, exc: ChainproofError, what: str) -> None:
            """Stop serving: not ready, the verified gauge at 0, one refusal counted and logged."""
            self.ready = False
            self.refusal = exc.diagnostics()
            metrics.info.labels(served.name, served.model_sha256, served.result.layout_sha256).set(0)
            metrics.refused.labels(served.name).inc()
            logger.error("REFUSED %s of %s: %s", what, served.name, self.refusal)

        def recheck(self) -> None:
            """The periodic check: hash the files on disk; refuse on a change, reload once they verify again."""
            try:
                served.check_source()
            except ChainproofError as exc:
                if self.ready:
                    self.refuse(exc, "recheck")
                return
            if not self.ready:
                with contextlib.suppress(ChainproofError):
                    self.load()

        def load(self) -> bool:
            """Reload: re-verify the model files on disk against the chain, then copy, scan, load."""
            try:
                checks = self.served.reload()
            except ChainproofError as exc:
                self.refuse(exc, "reload")
                raise
            self.ready = True
            self.refusal = ""
            metrics.info.labels(served.name, served.model_sha256, served.result.layout_sha256).set(1)
            logger.warning("reloaded %s: %s", served.name, "; ".join(checks))
            return True

        def _predict_rows(self, rows: list[list[Any]]) -> tuple[list[Any], Any]:
            try:
                x = prepare_rows(rows, features=self.served.features)
            except (ColumnError, InputError) as exc:
                raise _bad(exc.diagnostics()) from exc
            estimator = self.served.estimator
            scores = None
            if self.monitor is None:
                predictions = estimator.predict(x)
            elif hasattr(estimator, "predict_proba") and hasattr(estimator, "classes_"):
                import numpy as np

                # One pass over the model for both: a classifier's predict is the argmax of its probabilities.
                proba = np.asarray(estimator.predict_proba(x), dtype=float)
                predictions = np.asarray(estimator.classes_)[np.argmax(proba, axis=1)]
                scores = proba[:, 1] if proba.shape[1] == 2 else proba.max(axis=1)
            else:
                predictions = estimator.predict(x)
                scores = model_scores(estimator, x)
            if self.monitor is not None:
                self._observe(x, scores)
            return _pythonic(predictions), scores

        def _observe(self, x: Any, scores: Any) -> None:
            status = self.monitor.observe([list(r) for r in x], list(scores))
            if status is None:
                return
            metrics.window.labels(served.name).set(status.samples)
            for feature, value in status.psi.items():
                metrics.psi.labels(served.name, feature).set(value)
            if status.ks is not None:
                metrics.ks.labels(served.name).set(status.ks)
            # One alert line (and one count) per crossing, not one per window while it stays above.
            keyed = [(f"feature {n}", a) for n, a in zip(status.drifting, status.alerts)]
            if status.score_drift:
                keyed.append(("score KS", status.alerts[-1]))
            now = set()
            for key, alert in keyed:
                now.add(key)
                if key not in self._alerting:
                    metrics.alerts.labels(served.name, key).inc()
                    logger.warning("ALERT drift %s: %s", served.name, alert)
            self._alerting = now

        def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
            """V1 (``{"instances": [...]}``) and V2 (InferRequest) prediction."""
            if not self.ready:
                from kserve.errors import ModelNotReady

                raise ModelNotReady(served.name, self.refusal or "not ready")
            if isinstance(payload, InferRequest):
                predictions, _ = self._predict_rows(_v2_rows(payload, self.served.features))
                numeric = all(isinstance(p, (int, float)) and not isinstance(p, bool) for p in predictions)
                datatype = ("INT64" if all(isinstance(p, int) for p in predictions) else "FP64") if numeric else "BYTES"
                data = predictions if numeric else [str(p) for p in predictions]
                out = InferOutput(name="predict", shape=[len(data)], datatype=datatype, data=data)
                return InferResponse(response_id=payload.id or "", model_name=served.name, infer_outputs=[out])
            if not isinstance(payload, Mapping) or "instances" not in payload:
                raise _bad('expected a V1 body {"instances": [...]}')
            predictions, _ = self._predict_rows(instances_to_rows(payload["instances"], self.served.features))
            return {"predictions": predictions}

    return ChainproofModel()


def _watch(model: Any, interval: float, stop: threading.Event) -> None:
    while not stop.wait(interval):
        try:
            model.recheck()
        except Exception as exc:  # noqa: BLE001 - the watcher must outlive any one failed check
            logger.error("recheck of %s failed: %s", model.name, type(exc).__name__)


def serve(served: ServedModel, *, host: str = "0.0.0.0", port: int = 8080, monitor: Any = None,
          recheck: float = 0.0) -> None:
    """Serve a verified model over KServe's REST server until interrupted.

    Args:
        served: the verified, loaded model (:func:`chainproof.serve.loader.load_verified`).
        host: the address to listen on (set on uvicorn's configuration; KServe's default is 0.0.0.0).
        port: the HTTP port.
        monitor: the drift monitor, or ``None``.
        recheck: every this many seconds, hash the model files on disk against the chain: a
            change makes the model unready (503) until the files verify again; 0 turns it off.

    Side effects:
        Listens on ``host:port``; logs to stderr.
    """
    import asyncio

    _import_kserve()
    from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
    from kserve.model_repository import ModelRepository
    from kserve.model_server import ModelServer
    from kserve.protocol.rest.server import RESTServer

    model = build_model(served, monitor=monitor)

    class _VerifyingRepository(ModelRepository):  # type: ignore[misc]
        """``POST /v2/repository/models/NAME/load`` re-verifies before it reloads."""

        def load(self, name: str) -> bool:
            registered = self.get_model(name)
            if registered is None:
                from kserve.errors import ModelNotFound

                raise ModelNotFound(name)
            return bool(registered.load())

    repository = _VerifyingRepository()
    # gRPC off: KServe would bind it on [::] with no way to choose the address.
    server = ModelServer(http_port=port, enable_grpc=False, registered_models=repository, enable_docs_url=False)
    server.register_model(model)
    model.enable_latency_logging = False
    class _RESTServer(RESTServer):  # type: ignore[misc]
        """KServe's REST server; a client error is logged as one line (no traceback, no input values)."""

        def _add_exception_handlers(self, app: Any) -> None:
            super()._add_exception_handlers(app)
            from fastapi.responses import JSONResponse
            from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady

            def one_line(status: int) -> Any:
                async def handler(_: Any, exc: Exception) -> Any:
                    logger.info("%d: %s", status, str(exc)[:300])
                    return JSONResponse(status_code=status, content={"error": str(exc)})
                return handler

            app.add_exception_handler(InvalidInput, one_line(400))
            app.add_exception_handler(ModelNotFound, one_line(404))
            app.add_exception_handler(ModelNotReady, one_line(503))

    rest = _RESTServer(FASTAPI_APP_IMPORT_STRING, server.dataplane, server.model_repository_extension, port,
                       grace_period=5)
    # KServe hard-codes 0.0.0.0: the address is chosen here, before uvicorn binds.
    rest.config.host = host
    started = time.monotonic()
    logger.warning("serving %s (model sha256:%s) on %s:%d; verified, scanned and loaded; drift monitoring %s; "
                   "files rechecked %s", served.name, served.model_sha256[:16], host, port,
                   "on" if monitor is not None else "off", f"every {recheck:g} s" if recheck > 0 else "on reload only")
    stop = threading.Event()
    if recheck > 0:
        threading.Thread(target=_watch, args=(model, recheck, stop), name="chainproof-recheck", daemon=True).start()
    try:
        asyncio.run(rest.start())
    finally:
        stop.set()
        logger.warning("stopped %s after %.0f s", served.name, time.monotonic() - started)
