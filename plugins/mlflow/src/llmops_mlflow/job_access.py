"""The MLflow REST endpoints a job's own ``import mlflow`` uses, served for its run only.

A job whose tracker needs credentials (a token, basic auth) or the platform's own files
(the local SQLite store) gets ``MLFLOW_TRACKING_URI`` = the platform's tracker proxy and
``MLFLOW_TRACKING_TOKEN`` = its own job token (see ``MlflowTracker.job_environment``). The
core authenticates the job's requests there and hands each to :func:`serve`, which runs
it with the tracker's own client (which holds the integration's credentials) when it is
one of :data:`ENDPOINTS` and concerns the job's run; anything else is refused in MLflow's
own error shape, so that the job's client raises a clear ``MlflowException``:

* another run (or another run's experiment): 403 ``PERMISSION_DENIED``;
* an endpoint not offered (search, other experiments, models, artifacts): 404
  ``ENDPOINT_NOT_FOUND``;
* tags under ``llmops.`` (the platform's own, its idempotency key among them) and metrics
  linked to a logged model: 400 ``INVALID_PARAMETER_VALUE``.

What ``mlflow.start_run()`` (with MLFLOW_RUN_ID), ``log_param(s)``, ``log_metric(s)``,
``set_tag(s)``, ``delete_tag`` and ``end_run()`` call, as recorded from a job of MLflow
3.17: runs/get, runs/update, runs/log-parameter, runs/log-metric, runs/set-tag,
runs/delete-tag, runs/log-batch. Artifacts are not proxied: the job's LLMOPS_OUTPUT_DIR
becomes the run's artifacts when the job ends.

This module imports MLflow: only the proxy route reaches it, through the started tracker.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from google.protobuf.json_format import ParseError  # type: ignore[import-untyped]
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.protos import service_pb2
from mlflow.utils.proto_json_utils import message_to_json, parse_dict

from llmops.capabilities.tracking import TrackerRequest, TrackerResponse

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

#: A protobuf message of MLflow's REST API (protobuf ships no type hints)
Message = Any

#: The tags a job may not set or delete: the platform's own (``llmops.idempotency_key``
#: is how a redelivered run creation finds its run)
RESERVED_TAG_PREFIX = "llmops."
#: MLflow's error codes for the tool's own refusal of credentials: the integration's
#: failure, not the job's request
CREDENTIAL_CODES = frozenset({"PERMISSION_DENIED", "UNAUTHENTICATED"})
_TERMINAL = frozenset({"FINISHED", "FAILED", "KILLED"})


class Refused(Exception):
    """A request the proxy answers with MLflow's error JSON, not one for the tool."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Call:
    """One request being served: the tracker's client, the job's run, the parsed body."""

    client: MlflowClient
    run_id: str
    message: Any

    def own_run(self) -> None:
        """Refuse unless every run id the request names is the job's run."""
        named = [
            getattr(self.message, field)
            for field in ("run_id", "run_uuid")
            if field in self.message.DESCRIPTOR.fields_by_name and getattr(self.message, field)
        ]
        if not named:
            raise Refused(400, "INVALID_PARAMETER_VALUE", "Missing value for parameter 'run_id'")
        other = [n for n in named if n != self.run_id]
        if other:
            raise Refused(
                403,
                "PERMISSION_DENIED",
                f"a training job may use its own run {self.run_id} only, not {other[0]}",
            )


@dataclass(frozen=True)
class Endpoint:
    method: str
    request: Callable[[], Message]
    handle: Callable[[Call], Message]


def _check_tags(keys: list[str]) -> None:
    reserved = [k for k in keys if k.startswith(RESERVED_TAG_PREFIX)]
    if reserved:
        raise Refused(
            400,
            "INVALID_PARAMETER_VALUE",
            f"tags under '{RESERVED_TAG_PREFIX}' are the platform's: {', '.join(reserved)}",
        )


def _check_metric_links(model_ids: list[str]) -> None:
    if any(model_ids):
        raise Refused(
            400,
            "INVALID_PARAMETER_VALUE",
            "metrics linked to a logged model are not served through the platform's proxy",
        )


def _get_run(call: Call) -> Message:
    call.own_run()
    run = call.client.get_run(call.run_id)
    return service_pb2.GetRun.Response(run=run.to_proto())


def _update_run(call: Call) -> Message:
    call.own_run()
    message = call.message
    status = RunStatus.to_string(message.status) if message.HasField("status") else None
    if status in _TERMINAL:
        end_time = message.end_time if message.HasField("end_time") else None
        call.client.set_terminated(call.run_id, status=status, end_time=end_time)
    elif status is not None:
        call.client.update_run(call.run_id, status=status)
    if message.run_name:
        call.client.update_run(call.run_id, name=message.run_name)
    info = call.client.get_run(call.run_id).info
    return service_pb2.UpdateRun.Response(run_info=info.to_proto())


def _log_batch(call: Call) -> Message:
    call.own_run()
    message = call.message
    _check_tags([t.key for t in message.tags])
    _check_metric_links([m.model_id for m in message.metrics])
    call.client.log_batch(
        call.run_id,
        metrics=[Metric.from_proto(m) for m in message.metrics],
        params=[Param.from_proto(p) for p in message.params],
        tags=[RunTag.from_proto(t) for t in message.tags],
    )
    return service_pb2.LogBatch.Response()


def _log_metric(call: Call) -> Message:
    call.own_run()
    message = call.message
    _check_metric_links([message.model_id])
    call.client.log_metric(
        call.run_id,
        message.key,
        message.value,
        timestamp=message.timestamp,
        step=message.step,
        dataset_name=message.dataset_name or None,
        dataset_digest=message.dataset_digest or None,
    )
    return service_pb2.LogMetric.Response()


def _log_param(call: Call) -> Message:
    call.own_run()
    call.client.log_param(call.run_id, call.message.key, call.message.value)
    return service_pb2.LogParam.Response()


def _set_tag(call: Call) -> Message:
    call.own_run()
    _check_tags([call.message.key])
    call.client.set_tag(call.run_id, call.message.key, call.message.value)
    return service_pb2.SetTag.Response()


def _delete_tag(call: Call) -> Message:
    call.own_run()
    _check_tags([call.message.key])
    call.client.delete_tag(call.run_id, call.message.key)
    return service_pb2.DeleteTag.Response()


def _metric_history(call: Call) -> Message:
    call.own_run()
    history = call.client.get_metric_history(call.run_id, call.message.metric_key)
    return service_pb2.GetMetricHistory.Response(metrics=[m.to_proto() for m in history])


def _get_experiment(call: Call) -> Message:
    own = call.client.get_run(call.run_id).info.experiment_id
    asked = call.message.experiment_id
    if asked != own:
        raise Refused(
            403,
            "PERMISSION_DENIED",
            f"a training job may read its own run's experiment {own} only, not {asked!r}",
        )
    experiment = call.client.get_experiment(own)
    return service_pb2.GetExperiment.Response(experiment=experiment.to_proto())


_API = "api/2.0/mlflow/"

#: What the proxy serves: path below the tracking URI -> the endpoint
ENDPOINTS: Mapping[str, Endpoint] = {
    f"{_API}runs/get": Endpoint("GET", service_pb2.GetRun, _get_run),
    f"{_API}runs/update": Endpoint("POST", service_pb2.UpdateRun, _update_run),
    f"{_API}runs/log-batch": Endpoint("POST", service_pb2.LogBatch, _log_batch),
    f"{_API}runs/log-metric": Endpoint("POST", service_pb2.LogMetric, _log_metric),
    f"{_API}runs/log-parameter": Endpoint("POST", service_pb2.LogParam, _log_param),
    f"{_API}runs/set-tag": Endpoint("POST", service_pb2.SetTag, _set_tag),
    f"{_API}runs/delete-tag": Endpoint("POST", service_pb2.DeleteTag, _delete_tag),
    f"{_API}metrics/get-history": Endpoint("GET", service_pb2.GetMetricHistory, _metric_history),
    f"{_API}experiments/get": Endpoint("GET", service_pb2.GetExperiment, _get_experiment),
}


def _error(status: int, code: str, message: str) -> TrackerResponse:
    return TrackerResponse(status=status, body={"error_code": code, "message": message})


def _repeated(field: Any) -> bool:
    # protobuf 7 has is_repeated only; older ones have label only (3: LABEL_REPEATED)
    if hasattr(field, "is_repeated"):
        return bool(field.is_repeated)
    return bool(field.label == 3)


def _parse(endpoint: Endpoint, request: TrackerRequest) -> Message:
    """The request's message, read as MLflow's server reads it: a GET's query string
    (repeated fields as lists), a POST's JSON body; unknown fields ignored."""
    message = endpoint.request()
    if request.method == "GET":
        values: dict[str, Any] = {}
        for field in message.DESCRIPTOR.fields:
            given = request.query.get(field.name)
            if not given:
                continue
            values[field.name] = given if _repeated(field) else given[0]
    else:
        values = dict(request.body or {})
    try:
        parse_dict(values, message)  # type: ignore[no-untyped-call]
    except (ParseError, TypeError, ValueError) as exc:
        raise Refused(400, "INVALID_PARAMETER_VALUE", f"invalid request: {exc}") from exc
    return message


def serve(client: MlflowClient, run_id: str, request: TrackerRequest) -> TrackerResponse:
    """Answer one request of a job's process for its run ``run_id`` with ``client``.

    MLflow's refusals of the request (a changed param, a value too long, a run that does
    not exist) are answered with MLflow's status and JSON; the tool's own failures (not
    reachable, a 5xx, the integration's credentials refused) are raised for the caller to
    translate, as any tracker call's.
    """
    endpoint = ENDPOINTS.get(request.path.strip("/"))
    if endpoint is None or endpoint.method != request.method:
        return _error(
            404,
            "ENDPOINT_NOT_FOUND",
            f"{request.method} /{request.path.strip('/')} is not offered to training jobs by "
            "the platform's tracker proxy",
        )
    try:
        answer = endpoint.handle(Call(client, run_id, _parse(endpoint, request)))
    except Refused as refused:
        return _error(refused.status, refused.code, refused.message)
    except MlflowException as exc:
        status: int = exc.get_http_status_code()  # type: ignore[no-untyped-call]
        if status >= 500 or exc.error_code in CREDENTIAL_CODES:
            raise
        return _error(status, exc.error_code, exc.message)
    body: dict[str, Any] = json.loads(message_to_json(answer))
    return TrackerResponse(status=200, body=body)
