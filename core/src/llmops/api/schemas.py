"""Request and response bodies: camelCase on the wire, snake_case in Python."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from llmops.capabilities.orchestration import STAGE_NAME_PATTERN, StageSpec

T = TypeVar("T")


#: Keys whose values are maps keyed by the user or a tool (option names, environment
#: variables, HTTP headers, labels): their keys are data, kept as they are.
VERBATIM_KEYS = frozenset({"options", "env", "headers", "labels"})


def camelize(value: Any) -> Any:
    """Keys of stored free-form JSON (deployment specs, tool status) in camelCase; the
    maps under :data:`VERBATIM_KEYS` keep their own keys."""
    if isinstance(value, dict):
        return {
            to_camel(k) if isinstance(k, str) else k: v if k in VERBATIM_KEYS else camelize(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [camelize(v) for v in value]
    return value


class ApiModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)


class Input(ApiModel):
    """Request bodies refuse unknown fields, so a misspelt key is an error, not a no-op."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class ListPage(ApiModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        default=None, description="pass as ?cursor= for the next page; null on the last"
    )


class Degradable(ApiModel):
    degraded: bool = Field(default=False, description="true when a fallback shaped this answer")
    degraded_reason: str | None = None
    operation_id: str | None = Field(
        default=None,
        description="the queued write to poll at /llm-ops/v1/operations/{operationId} "
        "when the answer is 202",
    )


# -- catalog -------------------------------------------------------------------------

NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"


class ModelCreate(Input):
    name: str = Field(pattern=NAME)
    version: str = Field(default="1", max_length=64)
    description: str = Field(default="", max_length=10_000)
    task: str | None = Field(default=None, max_length=64)
    framework: str | None = Field(default=None, max_length=64)
    uri: str | None = Field(default=None, max_length=1000)
    tags: list[str] = Field(default_factory=list, max_length=50)
    labels: dict[str, str] = Field(default_factory=dict)


class ModelUpdate(Input):
    name: str | None = Field(default=None, pattern=NAME)
    version: str | None = Field(default=None, max_length=64)
    description: str | None = Field(default=None, max_length=10_000)
    task: str | None = Field(default=None, max_length=64)
    framework: str | None = Field(default=None, max_length=64)
    status: str | None = Field(default=None, pattern=r"^(registered|ready|archived)$")
    uri: str | None = Field(default=None, max_length=1000)
    tags: list[str] | None = Field(default=None, max_length=50)
    labels: dict[str, str] | None = None


class ModelOut(ApiModel):
    id: str
    name: str
    version: str
    description: str
    task: str | None
    framework: str | None
    source: str
    status: str
    uri: str | None
    tags: list[str]
    labels: dict[str, str]
    created_at: datetime
    updated_at: datetime


class DatasetCreate(Input):
    name: str = Field(pattern=NAME)
    description: str = Field(default="", max_length=10_000)
    format: str | None = Field(default=None, max_length=32)
    tags: list[str] = Field(default_factory=list, max_length=50)


class DatasetOut(ApiModel):
    id: str
    name: str
    description: str
    format: str | None
    tags: list[str]
    file_count: int
    size_bytes: int
    created_at: datetime
    updated_at: datetime


class DatasetFile(ApiModel):
    path: str
    size_bytes: int


class DatasetDetail(DatasetOut):
    files: list[DatasetFile]


class UploadResult(ApiModel):
    dataset: DatasetOut
    written: list[str]


# -- pipelines -----------------------------------------------------------------------


class StageIn(Input):
    name: str = Field(pattern=STAGE_NAME_PATTERN)
    command: list[str] = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    working_dir: str | None = None
    depends_on: list[str] = Field(default_factory=list)
    retries: int = Field(default=0, ge=0, le=20)
    timeout_seconds: float | None = Field(default=None, gt=0)
    image: str | None = None

    def to_spec(self) -> StageSpec:
        return StageSpec(**self.model_dump())


class PipelineCreate(Input):
    name: str = Field(min_length=1, max_length=200)
    stages: list[StageIn] = Field(min_length=1, max_length=200)
    max_parallel: int | None = Field(default=None, ge=1, le=64)
    labels: dict[str, str] = Field(default_factory=dict)
    provider: str | None = Field(default=None, description="orchestrator; the default if null")


class PipelineSpecOut(ApiModel):
    name: str
    stages: list[StageIn]
    max_parallel: int | None = None
    labels: dict[str, str] = Field(default_factory=dict)


class StageOut(ApiModel):
    name: str
    state: str
    attempts: int = 0
    exit_code: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    message: str = ""


class PipelineOut(Degradable):
    id: str
    name: str
    provider: str
    external_id: str | None
    status: str
    stages: list[StageOut]
    message: str
    ui_url: str | None
    training_job_id: str | None
    spec: PipelineSpecOut
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    synced_at: datetime | None


class StageLogOut(ApiModel):
    stage: str
    text: str
    truncated: bool


class LogsOut(ApiModel):
    items: list[StageLogOut]


# -- training ------------------------------------------------------------------------


class TrainingJobCreate(Input):
    name: str = Field(pattern=NAME)
    model_id: str | None = None
    dataset_id: str | None = None
    command: list[str] | None = Field(
        default=None, min_length=1, description="a one-stage job; or give stages"
    )
    stages: list[StageIn] | None = Field(default=None, min_length=1, max_length=200)
    env: dict[str, str] = Field(default_factory=dict)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    retries: int = Field(default=0, ge=0, le=20)
    timeout_seconds: float | None = Field(default=None, gt=0)
    provider: str | None = None
    track: bool = Field(
        default=True,
        description="give the job an experiment run in the default tracker, when one is "
        "enabled; its process gets the tracker's variables (MLFLOW_TRACKING_URI, "
        "MLFLOW_RUN_ID)",
    )
    experiment: str | None = Field(
        default=None, description="the run's experiment; the job's model name if null"
    )


class JobModelRegister(Input):
    """Register the model a succeeded training job saved into its output's ``model/``."""

    name: str | None = Field(default=None, pattern=NAME, description="default: the job's name")
    version: str = Field(default="1", max_length=64)
    description: str = Field(default="", max_length=10_000)


class TrainingJobOut(Degradable):
    id: str
    name: str
    model_id: str | None
    dataset_id: str | None
    status: str
    message: str
    hyperparameters: dict[str, Any]
    pipeline_id: str | None
    experiment_run_id: str | None = Field(
        default=None,
        description="the job's experiment run (GET .../experiment-run), if it has one",
    )
    stages: list[StageOut] = Field(default_factory=list)
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


# -- integrations --------------------------------------------------------------------


class LoadErrorOut(ApiModel):
    stage: str
    error: str


class IntegrationOut(ApiModel):
    name: str
    display_name: str | None
    description: str | None
    version: str | None
    distribution: str | None
    builtin: bool
    enabled: bool
    loaded: bool
    capabilities: list[str]
    default_for: list[str]
    providers: dict[str, list[str]] = Field(
        default_factory=dict, description="capability -> provider names (serving frameworks)"
    )
    error: LoadErrorOut | None
    settings: dict[str, Any] = Field(
        default_factory=dict, description="current settings; secret fields are never shown"
    )
    secrets_set: dict[str, bool] = Field(
        default_factory=dict, description="for each secret field, whether a value is set"
    )
    settings_schema: dict[str, Any] | None = None
    links: dict[str, str] = Field(default_factory=dict)
    health: list[ProviderHealthOut] = Field(
        default_factory=list,
        description="the last health check of each of its providers (cached a few seconds)",
    )


class IntegrationPatch(Input):
    enabled: bool


class IntegrationConfigIn(Input):
    settings: dict[str, Any] = Field(
        description="fields to set, named as in the plugin's settingsSchema (its own names, "
        "like its LLMOPS_<PLUGIN>__<FIELD> variables); null removes a stored value; secret "
        "fields omitted keep their stored value"
    )


class DefaultProviderIn(Input):
    provider: str


class DefaultsOut(ApiModel):
    defaults: dict[str, str | None]


class HealthOut(ApiModel):
    status: str
    latency_ms: float | None = None
    detail: str = ""
    checked_at: datetime


class ProviderHealthOut(HealthOut):
    plugin: str
    capability: str
    provider: str
    circuit: str = Field(
        default="closed", description="the circuit breaker: closed, open or half-open"
    )


class PlatformHealthOut(ApiModel):
    status: str
    database: HealthOut
    integrations: list[ProviderHealthOut]
    cached: bool


class ConnectionTestOut(ApiModel):
    name: str
    ok: bool
    results: list[ProviderHealthOut]


# -- serving -------------------------------------------------------------------------


class FrameworkOut(ApiModel):
    name: str
    display_name: str
    plugin: str
    protocols: list[str]
    supports_autoscaling: bool
    supports_canary: bool
    supports_gpu: bool
    supports_scale_to_zero: bool
    scale_metrics: list[str] = Field(
        default_factory=list, description="what autoscaling.scaleMetric may name (empty: none)"
    )
    runtimes: list[str] = Field(
        default_factory=list,
        description="the model servers `runtime` may name, the default first (empty: one)",
    )
    default: bool


class AutoscalingIn(Input):
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=1, ge=1)
    target_ongoing_requests: float | None = Field(default=None, gt=0)
    scale_metric: str | None = Field(default=None, pattern=r"^(concurrency|rps|cpu|memory)$")
    scale_target: int | None = Field(default=None, gt=0)


class ResourcesIn(Input):
    cpu: str | None = Field(default=None, max_length=20)
    memory: str | None = Field(default=None, max_length=20)
    gpus: int = Field(default=0, ge=0, le=64)


class CanaryIn(Input):
    model_uri: str = Field(max_length=1000)
    traffic_percent: int = Field(ge=0, le=100)


class EndpointCreate(Input):
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    model_id: str
    framework: str | None = Field(default=None, description="serving framework; default if null")
    model_uri: str | None = Field(default=None, description="defaults to the model's uri")
    runtime: str | None = Field(
        default=None,
        max_length=253,
        description="the framework's model server (one of the framework's runtimes); "
        "its default if null",
    )
    description: str = ""
    autoscaling: AutoscalingIn = AutoscalingIn()
    resources: ResourcesIn = ResourcesIn()
    canary: CanaryIn | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    fallback_endpoint: str | None = Field(
        default=None,
        description="another endpoint (name or id) the gateway tries when this one fails "
        "before its first byte",
    )
    request_timeout_seconds: float = Field(
        default=60.0, gt=0, le=3600, description="the longest one inference request may take"
    )


class EndpointHealthOut(ApiModel):
    healthy: bool = Field(description="a real one-token inference through the data path succeeded")
    detail: str
    latency_ms: float | None
    endpoint: str = Field(description="the endpoint that was asked (never its fallback)")
    checked_at: datetime


class EndpointPatch(Input):
    description: str | None = None
    fallback_endpoint: str | None = Field(
        default=None, description="name or id; an empty string removes the fallback"
    )
    request_timeout_seconds: float | None = Field(default=None, gt=0, le=3600)


class QueuedOut(Degradable):
    """A write that waits in the retry queue and has no body of its own to show."""


class DeploymentOut(Degradable):
    endpoint_id: str
    provider: str
    external_id: str | None
    state: str
    spec: dict[str, Any]
    status: dict[str, Any]
    synced_at: datetime | None


class EndpointOut(Degradable):
    id: str
    name: str
    model_id: str | None
    framework: str | None
    status: str
    description: str
    fallback_endpoint_id: str | None = None
    request_timeout_seconds: float = 60.0
    created_at: datetime
    updated_at: datetime


class DeploymentPatch(Input):
    model_id: str | None = Field(
        default=None,
        description="serve another catalog model (a new version): its uri, unless modelUri "
        "is given too; the endpoint's model becomes this one",
    )
    model_uri: str | None = None
    autoscaling: AutoscalingIn | None = None
    resources: ResourcesIn | None = None
    canary: CanaryIn | None = None
    promote_canary: bool = False
    rollback_canary: bool = False


# -- experiments ---------------------------------------------------------------------


class ExperimentRunCreate(Input):
    experiment: str | None = Field(
        default=None, description="experiment name; the job's model name if null"
    )
    params: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)


class ExperimentRunOut(Degradable):
    id: str
    training_job_id: str | None
    provider: str | None
    external_id: str | None
    experiment_name: str
    run_name: str
    status: str
    params: dict[str, Any]
    latest_metrics: dict[str, Any]
    ui_url: str | None
    created_at: datetime
    synced_at: datetime | None
    stale: bool = False


class MetricIn(Input):
    key: str = Field(min_length=1, max_length=250)
    value: float = Field(allow_inf_nan=False, description="a finite number")
    step: int = 0
    timestamp: datetime | None = None


class MetricsIn(Input):
    metrics: list[MetricIn] = Field(min_length=1, max_length=10_000)


class MetricsAccepted(Degradable):
    accepted: int = Field(description="points stored; none is lost if the tracker is away")
    batches: int = Field(description="calls that carried them to the tracker (0 if queued)")


class ExperimentSearchIn(Input):
    experiments: list[str] = Field(default_factory=list)
    filter: str = ""
    order_by: list[str] = Field(default_factory=list)
    page_size: int = Field(default=100, ge=1, le=1000)
    page_token: str | None = None
    provider: str | None = None


class RunSummaryOut(ApiModel):
    run_id: str
    experiment_id: str
    experiment_name: str
    name: str
    status: str
    start_time: datetime | None
    end_time: datetime | None
    params: dict[str, str]
    tags: dict[str, str]
    latest_metrics: dict[str, float]
    ui_url: str | None


class ExperimentSearchOut(ApiModel):
    runs: list[RunSummaryOut]
    next_page_token: str | None


class CompareIn(Input):
    run_ids: list[str] = Field(
        min_length=1, max_length=10, description="the tracker's run ids, in display order"
    )
    metrics: list[str] | None = Field(
        default=None,
        max_length=50,
        description="metric keys to fetch the history of; every key the runs have if null",
    )
    provider: str | None = None


class MetricPointOut(ApiModel):
    step: int
    value: float
    timestamp: datetime


class ComparedRunOut(RunSummaryOut):
    metrics: dict[str, list[MetricPointOut]] = Field(
        description="each metric's history, ordered by step"
    )


class ParamRowOut(ApiModel):
    key: str
    values: dict[str, str | None] = Field(description="by run id; null where a run lacks it")
    differs: bool


class CompareOut(ApiModel):
    runs: list[ComparedRunOut]
    metric_keys: list[str]
    params: list[ParamRowOut] = Field(description="every param key, those that differ first")


class PrincipalOut(ApiModel):
    key_id: str | None
    name: str
    role: str = Field(description="viewer, editor or admin")


class ApiKeyOut(ApiModel):
    id: str
    name: str
    prefix: str
    role: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


IntegrationOut.model_rebuild()


class OperationOut(ApiModel):
    id: str
    kind: str
    provider: str
    capability: str
    status: str
    attempts: int
    max_attempts: int
    next_attempt_at: datetime
    lease_until: datetime | None
    locked_by: str | None
    last_error: str | None
    result: dict[str, Any] | None = Field(
        default=None,
        description="what delivering it returned (e.g. the tool's id, or the operation "
        "it was coalesced into)",
    )
    resource_type: str | None
    resource_id: str | None
    created_at: datetime
    updated_at: datetime
