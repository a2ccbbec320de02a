"""In-process Vertex AI services on 127.0.0.1 that the real google-cloud-aiplatform client talks to.

``ModelService`` (UploadModel, GetModel, ListModelVersions), ``PipelineService``
(CreatePipelineJob, GetPipelineJob), ``JobService`` (CreateCustomJob, GetCustomJob) and ``google.longrunning.Operations``
(GetOperation), built with ``grpc.server`` and generic method handlers over the
proto-plus types' own ``serialize``/``deserialize``. The server speaks TLS with a
self-signed certificate (the SDK always opens a TLS channel). Every request is
recorded as the server decoded it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.cloud.aiplatform_v1.types import custom_job as cj
from google.cloud.aiplatform_v1.types import job_service as js
from google.cloud.aiplatform_v1.types import job_state, pipeline_state
from google.cloud.aiplatform_v1.types import model as model_t
from google.cloud.aiplatform_v1.types import model_service as ms
from google.cloud.aiplatform_v1.types import pipeline_job as pj
from google.cloud.aiplatform_v1.types import pipeline_service as ps
from google.longrunning import operations_pb2
from google.protobuf import any_pb2, timestamp_pb2

# Vertex AI's label rules: keys start with a lowercase letter; keys and values hold at
# most 63 lowercase letters, digits, '_' or '-'.
_LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
_FILTER_TERM = re.compile(r'labels\.([a-z0-9_-]+)="([^"]*)"')


@dataclass
class FakeVertex:
    """The services' state and the log of decoded requests."""

    models: dict[str, list[Any]] = field(default_factory=dict)  # parent name -> versions (model_t.Model)
    operations: dict[str, operations_pb2.Operation] = field(default_factory=dict)
    pipeline_jobs: dict[str, Any] = field(default_factory=dict)
    requests: list[tuple[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    custom_jobs: dict[str, Any] = field(default_factory=dict)
    # The states a job passes through, one per Get call after its creation (the last one stays).
    custom_job_states: list[str] = field(default_factory=lambda: ["JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED"])
    pipeline_states: list[str] = field(default_factory=lambda: ["PIPELINE_STATE_RUNNING", "PIPELINE_STATE_SUCCEEDED"])
    # Runs a created pipeline job's tasks (in a thread; the job is RUNNING meanwhile) and returns its
    # task details; the job then SUCCEEDS, or FAILS with the exception's text. None: follow pipeline_states.
    pipeline_runner: Any = None
    _progress: dict[str, int] = field(default_factory=dict)

    def calls(self, method: str) -> list[Any]:
        """The decoded requests of one method, in order."""
        return [r for m, r in self.requests if m == method]

    # -- ModelService

    def upload_model(self, req: ms.UploadModelRequest, ctx: grpc.ServicerContext) -> operations_pb2.Operation:
        self.requests.append(("UploadModel", req))
        for key, value in req.model.labels.items():
            if not _LABEL_KEY.fullmatch(key) or not _LABEL_VALUE.fullmatch(value):
                ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, f"invalid label {key}={value}")
        with self.lock:
            if req.parent_model:
                parent = req.parent_model
                if parent not in self.models:
                    ctx.abort(grpc.StatusCode.NOT_FOUND, f"{parent} not found")
            else:
                model_id = req.model_id or str(1000 + len(self.models))
                parent = f"{req.parent}/models/{model_id}"
                if parent in self.models:
                    ctx.abort(grpc.StatusCode.ALREADY_EXISTS, f"{parent} already exists")
                self.models[parent] = []
            versions = self.models[parent]
            version_id = str(len(versions) + 1)
            stored = model_t.Model.deserialize(model_t.Model.serialize(req.model))
            stored.name = parent
            stored.version_id = version_id
            now = timestamp_pb2.Timestamp()
            now.GetCurrentTime()
            stored.create_time = now
            stored.version_create_time = now
            if "default" in stored.version_aliases:
                for other in versions:
                    other.version_aliases = [a for a in other.version_aliases if a != "default"]
            versions.append(stored)
            name = f"{req.parent}/operations/{len(self.operations) + 1}"
            response = any_pb2.Any()
            response.Pack(ms.UploadModelResponse.pb(ms.UploadModelResponse(model=parent, model_version_id=version_id)))
            # Not done on creation: the client must poll Operations/GetOperation, as on Vertex.
            self.operations[name] = operations_pb2.Operation(name=name, done=True, response=response)
            return operations_pb2.Operation(name=name, done=False)

    def _find(self, name: str, ctx: grpc.ServicerContext) -> Any:
        parent, _, version = name.partition("@")
        versions = self.models.get(parent) or []
        if not versions:
            ctx.abort(grpc.StatusCode.NOT_FOUND, f"{name} not found")
        if not version or version == "default":
            found = [v for v in versions if "default" in v.version_aliases] or versions[-1:]
        else:
            found = [v for v in versions if v.version_id == version or version in v.version_aliases]
        if not found:
            ctx.abort(grpc.StatusCode.NOT_FOUND, f"{name} not found")
        return found[0]

    def get_model(self, req: ms.GetModelRequest, ctx: grpc.ServicerContext) -> Any:
        self.requests.append(("GetModel", req))
        with self.lock:
            return self._find(req.name, ctx)

    def list_model_versions(self, req: ms.ListModelVersionsRequest, ctx: grpc.ServicerContext) -> Any:
        self.requests.append(("ListModelVersions", req))
        with self.lock:
            versions = self.models.get(req.name)
            if versions is None:
                ctx.abort(grpc.StatusCode.NOT_FOUND, f"{req.name} not found")
            terms = _FILTER_TERM.findall(req.filter or "")
            if req.filter and not terms:
                ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unsupported filter {req.filter!r}")
            found = [v for v in versions or [] if all(v.labels.get(k) == val for k, val in terms)]
            return ms.ListModelVersionsResponse(models=found)

    # -- Operations

    def get_operation(self, req: operations_pb2.GetOperationRequest, ctx: grpc.ServicerContext) -> Any:
        self.requests.append(("GetOperation", req))
        with self.lock:
            if req.name not in self.operations:
                ctx.abort(grpc.StatusCode.NOT_FOUND, f"{req.name} not found")
            return self.operations[req.name]

    # -- PipelineService

    def create_pipeline_job(self, req: ps.CreatePipelineJobRequest, ctx: grpc.ServicerContext) -> Any:
        self.requests.append(("CreatePipelineJob", req))
        with self.lock:
            job = pj.PipelineJob.deserialize(pj.PipelineJob.serialize(req.pipeline_job))
            job.name = f"{req.parent}/pipelineJobs/{req.pipeline_job_id or len(self.pipeline_jobs) + 1}"
            job.state = pipeline_state.PipelineState.PIPELINE_STATE_PENDING
            self.pipeline_jobs[job.name] = job
            if self.pipeline_runner is not None:
                threading.Thread(target=self._run, args=(job, self.pipeline_runner), daemon=True).start()
            return pj.PipelineJob.deserialize(pj.PipelineJob.serialize(job))

    def _run(self, job: Any, runner: Any) -> None:
        with self.lock:
            job.state = pipeline_state.PipelineState.PIPELINE_STATE_RUNNING
        try:
            details = runner(pj.PipelineJob.deserialize(pj.PipelineJob.serialize(job)))
        except Exception as exc:  # noqa: BLE001 - the job fails with the task's error, as on Vertex
            with self.lock:
                job.error.message = str(exc)[:500]
                job.state = pipeline_state.PipelineState.PIPELINE_STATE_FAILED
            return
        with self.lock:
            job.job_detail.task_details.extend(details)
            job.state = pipeline_state.PipelineState.PIPELINE_STATE_SUCCEEDED

    def get_pipeline_job(self, req: ps.GetPipelineJobRequest, ctx: grpc.ServicerContext) -> Any:
        self.requests.append(("GetPipelineJob", req))
        with self.lock:
            if req.name not in self.pipeline_jobs:
                ctx.abort(grpc.StatusCode.NOT_FOUND, f"{req.name} not found")
            job = self.pipeline_jobs[req.name]
            if self.pipeline_runner is None:
                state = self._advance(req.name, self.pipeline_states)
                if state:
                    job.state = getattr(pipeline_state.PipelineState, state)
            return job

    def _advance(self, name: str, states: list[str]) -> str:
        if not states:
            return ""
        n = self._progress.get(name, 0)
        self._progress[name] = n + 1
        return states[min(n, len(states) - 1)]

    # -- JobService

    def create_custom_job(self, req: js.CreateCustomJobRequest, ctx: grpc.ServicerContext) -> Any:
        self.requests.append(("CreateCustomJob", req))
        with self.lock:
            job = cj.CustomJob.deserialize(cj.CustomJob.serialize(req.custom_job))
            job.name = f"{req.parent}/customJobs/{9000 + len(self.custom_jobs)}"
            job.state = job_state.JobState.JOB_STATE_PENDING
            self.custom_jobs[job.name] = job
            return job

    def get_custom_job(self, req: js.GetCustomJobRequest, ctx: grpc.ServicerContext) -> Any:
        self.requests.append(("GetCustomJob", req))
        with self.lock:
            if req.name not in self.custom_jobs:
                ctx.abort(grpc.StatusCode.NOT_FOUND, f"{req.name} not found")
            job = self.custom_jobs[req.name]
            state = self._advance(req.name, self.custom_job_states)
            if state:
                job.state = getattr(job_state.JobState, state)
                if state == "JOB_STATE_FAILED":
                    job.error.message = "The replica workerpool0-0 exited with a non-zero status of 1."
            return job


def _plus(fn: Any, request: Any, response: Any) -> grpc.RpcMethodHandler:
    return grpc.unary_unary_rpc_method_handler(
        fn, request_deserializer=request.deserialize, response_serializer=response.serialize
    )


def _pb(fn: Any, request: Any, response: Any) -> grpc.RpcMethodHandler:
    return grpc.unary_unary_rpc_method_handler(
        fn, request_deserializer=request.FromString, response_serializer=response.SerializeToString
    )


@contextmanager
def vertex_server(cert: Path, key: Path) -> Iterator[tuple[FakeVertex, str]]:
    """Serve a fresh :class:`FakeVertex` over TLS on 127.0.0.1; yield it and ``HOST:PORT``. Always stopped."""
    fake = FakeVertex()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "google.cloud.aiplatform.v1.ModelService",
                {
                    "UploadModel": _plus(fake.upload_model, ms.UploadModelRequest, _PbAdapter(operations_pb2.Operation)),
                    "GetModel": _plus(fake.get_model, ms.GetModelRequest, model_t.Model),
                    "ListModelVersions": _plus(fake.list_model_versions, ms.ListModelVersionsRequest, ms.ListModelVersionsResponse),
                },
            ),
            grpc.method_handlers_generic_handler(
                "google.longrunning.Operations",
                {"GetOperation": _pb(fake.get_operation, operations_pb2.GetOperationRequest, operations_pb2.Operation)},
            ),
            grpc.method_handlers_generic_handler(
                "google.cloud.aiplatform.v1.PipelineService",
                {
                    "CreatePipelineJob": _plus(fake.create_pipeline_job, ps.CreatePipelineJobRequest, pj.PipelineJob),
                    "GetPipelineJob": _plus(fake.get_pipeline_job, ps.GetPipelineJobRequest, pj.PipelineJob),
                },
            ),
            grpc.method_handlers_generic_handler(
                "google.cloud.aiplatform.v1.JobService",
                {
                    "CreateCustomJob": _plus(fake.create_custom_job, js.CreateCustomJobRequest, cj.CustomJob),
                    "GetCustomJob": _plus(fake.get_custom_job, js.GetCustomJobRequest, cj.CustomJob),
                },
            ),
        )
    )
    creds = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    try:
        yield fake, f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None).wait()


class _PbAdapter:
    """Give a protobuf message class the proto-plus ``serialize`` spelling."""

    def __init__(self, cls: Any) -> None:
        self.cls = cls

    def serialize(self, message: Any) -> bytes:
        return bytes(message.SerializeToString())
