"""Request and response bodies: camelCase on the wire, snake_case in Python."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, Strict
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from llmops.capabilities.orchestration import STAGE_NAME_PATTERN, StageSpec

#: a stage's name (STAGE_NAME_PATTERN says 63 characters too) and a pipeline's stages
STAGE_NAME_LENGTH = 63
MAX_STAGES = 200

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
    """Request bodies refuse unknown fields, so a misspelt key is an error, not a no-op.

    They are strict too: a value must have the JSON type the schema gives, so ``"3"`` is
    no integer and ``"false"`` no boolean (lax validation would convert both, and obey a
    body that breaks the documented schema). An integer for a number and an enum's string
    pass strict validation as they are; a date-time, which JSON can only carry as a
    string, is declared :data:`JsonDatetime`.
    """

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", strict=True
    )


def _date_time_string(value: object) -> object:
    if isinstance(value, str | datetime):
        return value
    raise PydanticCustomError("datetime_type", "Input should be an ISO 8601 date-time string")


#: A date-time in a request body: an ISO 8601 string, parsed although the model is strict
#: (strict validation of Python input would take a ``datetime`` object only); a number,
#: which lax parsing would read as a Unix time, is still refused.
JsonDatetime = Annotated[datetime, BeforeValidator(_date_time_string), Strict(False)]


# -- bounds -----------------------------------------------------------------------------
# Every string, list and map of a request body has a bound (a test walks the OpenAPI
# document for one without). Where the value ends up in a tool, its limit is the tool's.

#: a catalog entry's, a job's or a pipeline's name (NAME says 200 characters too)
NAME_LENGTH = 200
#: an id the platform made (32 hex digits), or a name in its place
REF_LENGTH = 200
#: a plugin's or a provider's name
PROVIDER_LENGTH = 80
#: descriptions
TEXT_LENGTH = 10_000
#: URIs of models and artifacts
URI_LENGTH = 1000
#: an experiment's name, a tracker's filter expression or page token
EXPERIMENT_LENGTH = 500
#: keys of params, tags and hyperparameters (MLflow's limit for keys)
KEY_LENGTH = 250
#: values of experiment params and tags (MLflow's tag values; its params allow 6000)
TRACKING_VALUE_LENGTH = 8000
#: a map of a tool's own settings or options, as JSON
JSON_MAP_LENGTH = 64 * 1024

#: a catalog tag (a hub's "base_model:finetune:<org>/<repo>" fits)
Tag = Annotated[str, Field(max_length=256)]
#: a Kubernetes label's key (a 253-character DNS prefix, "/", a 63-character name)
LabelKey = Annotated[str, Field(max_length=317)]
#: a Kubernetes label's value
LabelValue = Annotated[str, Field(max_length=63)]
Labels = Annotated[dict[LabelKey, LabelValue], Field(max_length=64)]
EnvName = Annotated[str, Field(max_length=256)]
#: an environment variable's value (Linux takes 128 KiB for one)
EnvValue = Annotated[str, Field(max_length=32 * 1024)]
Env = Annotated[dict[EnvName, EnvValue], Field(max_length=200)]
#: one argument of a command (an inline script included)
Arg = Annotated[str, Field(max_length=64 * 1024)]
Command = Annotated[list[Arg], Field(min_length=1, max_length=1000)]
#: a path in a stage's file system (Linux's PATH_MAX)
FilePath = Annotated[str, Field(max_length=4096)]
#: a key of params, tags, metrics or a free-form map
Key = Annotated[str, Field(max_length=KEY_LENGTH)]
TrackingValue = Annotated[str, Field(max_length=TRACKING_VALUE_LENGTH)]
TrackingMap = Annotated[dict[Key, TrackingValue], Field(max_length=200)]


def json_within(length: int) -> AfterValidator:
    """The bound of a free-form map of any JSON values as a whole: at most ``length``
    characters as JSON. Declare it with ``json_schema_extra={"x-max-json-length": length}``
    as :data:`JsonMap` does: JSON Schema has no word for it."""

    def within(value: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(value, default=str)) > length:
            raise PydanticCustomError(
                "too_long", "Map should be at most {limit} characters as JSON", {"limit": length}
            )
        return value

    return AfterValidator(within)


#: A free-form map for a tool (hyperparameters, a framework's options, a plugin's
#: settings): values are any JSON, so the map is bounded as a whole.
JsonMap = Annotated[
    dict[Key, Any],
    Field(max_length=200, json_schema_extra={"x-max-json-length": JSON_MAP_LENGTH}),
    json_within(JSON_MAP_LENGTH),
]
#: A request of a job's process forwarded to its tracker's own API (MLflow's REST API
#: takes up to 1 MB in one request).
ToolRequestBody = Annotated[
    dict[Key, Any],
    Field(max_length=100, json_schema_extra={"x-max-json-length": 1024 * 1024}),
    json_within(1024 * 1024),
]


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
    name: str = Field(pattern=NAME, max_length=NAME_LENGTH)
    version: str = Field(default="1", max_length=64)
    description: str = Field(default="", max_length=TEXT_LENGTH)
    task: str | None = Field(default=None, max_length=64)
    framework: str | None = Field(default=None, max_length=64)
    uri: str | None = Field(default=None, max_length=URI_LENGTH)
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    labels: Labels = Field(default_factory=dict)


class ModelUpdate(Input):
    name: str | None = Field(default=None, pattern=NAME, max_length=NAME_LENGTH)
    version: str | None = Field(default=None, max_length=64)
    description: str | None = Field(default=None, max_length=TEXT_LENGTH)
    task: str | None = Field(default=None, max_length=64)
    framework: str | None = Field(default=None, max_length=64)
    status: str | None = Field(
        default=None, pattern=r"^(registered|ready|archived)$", max_length=10
    )
    uri: str | None = Field(default=None, max_length=URI_LENGTH)
    tags: list[Tag] | None = Field(default=None, max_length=50)
    labels: Labels | None = None


class ImportProgressOut(ApiModel):
    """How far a model import is, in the files and bytes it places."""

    phase: str = Field(description="resolving, checking, downloading or done")
    files_total: int = 0
    files_done: int = 0
    bytes_total: int | None = Field(default=None, description="null until the sizes are known")
    bytes_done: int = 0


class ImportStatusOut(ApiModel):
    """Where an imported model's files are: on their way (``importing``), on disk
    (``ready``), or not coming (``failed``)."""

    state: str = Field(description="importing, ready or failed (the model's status)")
    operation_id: str | None = Field(
        default=None, description="the operation that brings the files (admins: /operations)"
    )
    operation_status: str | None = Field(
        default=None, description="pending, running, succeeded, dead or discarded"
    )
    progress: ImportProgressOut | None = None
    reason: str | None = Field(
        default=None,
        description="while importing, why the last attempt failed (it is tried again); "
        "when failed, why it will not be",
    )
    attempts: int = 0
    next_attempt_at: datetime | None = Field(
        default=None, description="when a waiting import is tried again"
    )


class ModelRegistryOut(ApiModel):
    """Where an imported model came from: the registry, the repository and the pinned
    commit (never a branch name), what the registry said of it, and the last update
    check."""

    provider: str
    repo_id: str
    revision: str | None = Field(description="the pinned commit")
    branch: str | None = Field(
        default=None,
        description="the branch the import followed, which update checks compare with "
        "(null for a commit or a tag: the registry's default branch)",
    )
    requested_revision: str | None = Field(
        default=None, description="the revision the import was asked for"
    )
    url: str | None = None
    license: str | None = None
    pipeline_tag: str | None = None
    library: str | None = None
    degraded: bool = Field(
        default=False,
        description="true when the registry could not be asked and the import was served "
        "from the provider's cache",
    )
    degraded_reason: str | None = None
    imported_at: datetime | None = Field(
        default=None, description="when the files were on disk (null until then)"
    )
    last_checked_at: datetime | None = None
    update_available: bool | None = Field(
        default=None, description="what the last update check found (null: never checked)"
    )


class ModelOut(ApiModel):
    id: str
    name: str
    version: str
    description: str
    task: str | None
    framework: str | None
    source: str = Field(
        description="manual, training-job, or the registry commit an import pinned: "
        "<provider>://<repo id>@<commit sha>"
    )
    status: str = Field(
        description="registered, ready or archived; an imported model is importing until "
        "its files are on disk, then ready (or failed)"
    )
    uri: str | None
    tags: list[str]
    labels: dict[str, str]
    created_at: datetime
    updated_at: datetime
    imported_from: ModelRegistryOut | None = Field(
        default=None, description="where an imported model came from (null otherwise)"
    )
    import_status: ImportStatusOut | None = Field(
        default=None, description="an imported model's files on their way (null otherwise)"
    )


class DatasetCreate(Input):
    name: str = Field(pattern=NAME, max_length=NAME_LENGTH)
    description: str = Field(default="", max_length=TEXT_LENGTH)
    format: str | None = Field(default=None, max_length=32)
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    row_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="the field (JSONL) or column (CSV) that names a row: row diffs match "
        "rows by it (by their content otherwise)",
    )


class DatasetOut(ApiModel):
    id: str
    name: str
    description: str
    format: str | None
    tags: list[str]
    row_key: str | None = None
    file_count: int
    size_bytes: int
    created_at: datetime
    updated_at: datetime


class DatasetFile(ApiModel):
    path: str
    size_bytes: int


class DatasetDetail(DatasetOut):
    files: list[DatasetFile]


# -- pipelines -----------------------------------------------------------------------


class StageIn(Input):
    name: str = Field(pattern=STAGE_NAME_PATTERN, max_length=STAGE_NAME_LENGTH)
    command: Command
    env: Env = Field(default_factory=dict)
    working_dir: FilePath | None = None
    depends_on: list[Annotated[str, Field(max_length=STAGE_NAME_LENGTH)]] = Field(
        default_factory=list, max_length=MAX_STAGES
    )
    retries: int = Field(default=0, ge=0, le=20)
    timeout_seconds: float | None = Field(default=None, gt=0)
    image: str | None = Field(default=None, max_length=URI_LENGTH)

    def to_spec(self) -> StageSpec:
        return StageSpec(**self.model_dump())


#: The opt-in to running a pipeline on the local executor when its orchestrator is away.
FALLBACK_DESCRIPTION = (
    '"local": should the orchestrator be unavailable when the pipeline is submitted (its '
    "circuit open, the tool down), run it on the built-in local executor instead: its "
    'provider becomes "local", and its message, the answer and the audit log say why. '
    "Never for a refusal by the orchestrator, and only while the platform knows the "
    "orchestrator never received it (after a timeout it waits instead, so it cannot run "
    "twice). null (the default): the submission waits in the retry queue for the "
    "orchestrator (202)"
)


#: The most dataset versions one pipeline may name as its inputs.
MAX_PIPELINE_INPUTS = 20


class PipelineInputIn(Input):
    """A dataset the pipeline reads, at a version (for the lineage graph)."""

    dataset_id: str = Field(max_length=REF_LENGTH)
    version: str | None = Field(
        default=None,
        max_length=REF_LENGTH,
        description="the version's id or number (3, v3); null: the dataset's latest version "
        "when the pipeline is submitted, pinned",
    )


class PipelineInputOut(ApiModel):
    dataset_id: str
    version_id: str
    number: int


class PipelineCreate(Input):
    name: str = Field(min_length=1, max_length=NAME_LENGTH)
    stages: list[StageIn] = Field(min_length=1, max_length=MAX_STAGES)
    max_parallel: int | None = Field(default=None, ge=1, le=64)
    labels: Labels = Field(default_factory=dict)
    provider: str | None = Field(
        default=None, max_length=PROVIDER_LENGTH, description="orchestrator; the default if null"
    )
    fallback: Literal["local"] | None = Field(default=None, description=FALLBACK_DESCRIPTION)
    inputs: list[PipelineInputIn] = Field(
        default_factory=list,
        max_length=MAX_PIPELINE_INPUTS,
        description="the dataset versions the pipeline reads, recorded in the lineage graph; "
        "a stage that makes a version passes its LLMOPS_PIPELINE_ID as pipelineId, and the "
        "graph shows that the pipeline wrote it",
    )


class StageSpecOut(ApiModel):
    """A stage as stored: :class:`StageIn`'s fields without its bounds, as the platform
    adds its own (a training job's stage gets LLMOPS_HYPERPARAMETERS, which may be longer
    than a caller's environment value may be)."""

    name: str
    command: list[str]
    env: dict[str, str] = Field(default_factory=dict)
    working_dir: str | None = None
    depends_on: list[str] = Field(default_factory=list)
    retries: int = 0
    timeout_seconds: float | None = None
    image: str | None = None


class PipelineSpecOut(ApiModel):
    name: str
    stages: list[StageSpecOut]
    max_parallel: int | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    fallback: str | None = Field(default=None, description="the fallback the request allowed")


class StageOut(ApiModel):
    name: str
    state: str
    attempts: int = 0
    exit_code: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    message: str = ""
    ui_url: str | None = Field(
        default=None, description="the stage in its orchestrator's own UI (an Argo node)"
    )


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
    synced_at: datetime | None = Field(
        description="when the platform last heard from the orchestrator: the age of a "
        "degraded answer's last known state"
    )
    fell_back_from: str | None = Field(
        default=None,
        description="the orchestrator the pipeline was meant for, when it ran on the local "
        "executor instead because that one was unavailable (see fallback)",
    )
    inputs: list[PipelineInputOut] = Field(
        default_factory=list, description="the dataset versions it reads, as pinned"
    )


class StageLogOut(ApiModel):
    stage: str
    text: str
    truncated: bool


class LogsOut(ApiModel):
    items: list[StageLogOut]


# -- training ------------------------------------------------------------------------


class TrainingJobCreate(Input):
    #: its pipeline is named "training-<name>", within a pipeline name's 200 characters
    name: str = Field(pattern=NAME, max_length=NAME_LENGTH - len("training-"))
    model_id: str | None = Field(default=None, max_length=REF_LENGTH)
    dataset_id: str | None = Field(default=None, max_length=REF_LENGTH)
    command: Command | None = Field(default=None, description="a one-stage job; or give stages")
    stages: list[StageIn] | None = Field(default=None, min_length=1, max_length=MAX_STAGES)
    env: Env = Field(default_factory=dict)
    hyperparameters: JsonMap = Field(default_factory=dict)
    retries: int = Field(default=0, ge=0, le=20)
    timeout_seconds: float | None = Field(default=None, gt=0)
    provider: str | None = Field(default=None, max_length=PROVIDER_LENGTH)
    track: bool = Field(
        default=True,
        description="give the job an experiment run in the default tracker, when one is "
        "enabled; its process gets the tracker's variables (MLFLOW_TRACKING_URI, "
        "MLFLOW_RUN_ID)",
    )
    experiment: str | None = Field(
        default=None,
        max_length=EXPERIMENT_LENGTH,
        description="the run's experiment; the job's model name if null",
    )
    fallback: Literal["local"] | None = Field(
        default=None, description=f"for the job's pipeline: {FALLBACK_DESCRIPTION}"
    )


class JobModelRegister(Input):
    """Register the model a succeeded training job saved into its output's ``model/``."""

    name: str | None = Field(
        default=None, pattern=NAME, max_length=NAME_LENGTH, description="default: the job's name"
    )
    version: str = Field(default="1", max_length=64)
    description: str = Field(default="", max_length=TEXT_LENGTH)


class TrainingJobOut(Degradable):
    id: str
    name: str
    model_id: str | None = Field(description="the base model the job started from")
    dataset_id: str | None
    dataset_version_id: str | None = Field(
        default=None,
        description="the dataset version the job trained on (the dataset's latest when the "
        "job was submitted)",
    )
    output_model_ids: list[str] = Field(
        default_factory=list,
        description="catalog models registered from the job's output (POST .../model)",
    )
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
    synced_at: datetime | None = Field(
        default=None,
        description="when the platform last heard from the job's orchestrator: the age of "
        "a degraded answer's last known state",
    )
    fell_back_from: str | None = Field(
        default=None,
        description="the orchestrator the job was meant for, when its pipeline ran on the "
        "local executor instead (see fallback)",
    )


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
    choice_needed_for: list[str] = Field(
        default_factory=list,
        description="capabilities this plugin offers with the same priority as another "
        "enabled plugin, none chosen: an admin must choose the default",
    )
    not_configured_for: list[str] = Field(
        default_factory=list,
        description="capabilities the plugin declares but offers no provider for until its "
        "tool is configured (e.g. Argo without a server URL)",
    )
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
        description="the last background health check of each of its providers (one round "
        "every LLMOPS_HEALTH_CACHE_SECONDS)",
    )


class IntegrationConfiguredOut(IntegrationOut):
    secrets_cleared: list[str] = Field(
        default_factory=list,
        description="secret fields this change cleared because a URL they are sent to "
        "changed; send them again with the new URL",
    )


class IntegrationPatch(Input):
    enabled: bool


class IntegrationConfigIn(Input):
    settings: JsonMap = Field(
        description="fields to set, named as in the plugin's settingsSchema (its own names, "
        "like its LLMOPS_<PLUGIN>__<FIELD> variables); null removes a stored value; secret "
        "fields omitted keep their stored value"
    )


class DefaultProviderIn(Input):
    provider: str = Field(max_length=PROVIDER_LENGTH)


class ChoiceNeededOut(ApiModel):
    """A capability whose default nobody can tell: choose one with
    ``PUT /integrations/defaults/{capability}``."""

    capability: str
    providers: list[str] = Field(description="the enabled providers of the same priority")
    detail: str


class DefaultsOut(ApiModel):
    defaults: dict[str, str | None]
    choices_needed: list[ChoiceNeededOut] = Field(
        default_factory=list,
        description="capabilities with no default until an admin chooses one (a request "
        "that names no provider answers 409 provider-choice-needed)",
    )


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
    choices_needed: list[ChoiceNeededOut] = Field(
        default_factory=list,
        description="capabilities whose default an admin must choose (the status is then "
        "degraded at best)",
    )


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
    scale_metric: str | None = Field(
        default=None, pattern=r"^(concurrency|rps|cpu|memory)$", max_length=11
    )
    scale_target: int | None = Field(default=None, gt=0)


class ResourcesIn(Input):
    cpu: str | None = Field(default=None, max_length=20)
    memory: str | None = Field(default=None, max_length=20)
    gpus: int = Field(default=0, ge=0, le=64)


class CanaryIn(Input):
    model_uri: str = Field(max_length=URI_LENGTH)
    traffic_percent: int = Field(ge=0, le=100)


class EndpointCreate(Input):
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", max_length=63)
    model_id: str = Field(max_length=REF_LENGTH)
    framework: str | None = Field(
        default=None, max_length=PROVIDER_LENGTH, description="serving framework; default if null"
    )
    model_uri: str | None = Field(
        default=None, max_length=URI_LENGTH, description="defaults to the model's uri"
    )
    runtime: str | None = Field(
        default=None,
        max_length=253,
        description="the framework's model server (one of the framework's runtimes); "
        "its default if null",
    )
    description: str = Field(default="", max_length=TEXT_LENGTH)
    autoscaling: AutoscalingIn = AutoscalingIn()
    resources: ResourcesIn = ResourcesIn()
    canary: CanaryIn | None = None
    options: JsonMap = Field(default_factory=dict)
    fallback_endpoint: str | None = Field(
        default=None,
        max_length=REF_LENGTH,
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
    description: str | None = Field(default=None, max_length=TEXT_LENGTH)
    fallback_endpoint: str | None = Field(
        default=None,
        max_length=REF_LENGTH,
        description="name or id; an empty string removes the fallback",
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
        max_length=REF_LENGTH,
        description="serve another catalog model (a new version): its uri, unless modelUri "
        "is given too; the endpoint's model becomes this one",
    )
    model_uri: str | None = Field(default=None, max_length=URI_LENGTH)
    autoscaling: AutoscalingIn | None = None
    resources: ResourcesIn | None = None
    canary: CanaryIn | None = None
    promote_canary: bool = False
    rollback_canary: bool = False


# -- experiments ---------------------------------------------------------------------


class ExperimentRunCreate(Input):
    experiment: str | None = Field(
        default=None,
        max_length=EXPERIMENT_LENGTH,
        description="experiment name; the job's model name if null",
    )
    params: TrackingMap = Field(default_factory=dict)
    tags: TrackingMap = Field(default_factory=dict)


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
    step: int = Field(
        default=0, ge=-(2**63), le=2**63 - 1, description="a 64-bit integer, as in every tracker"
    )
    timestamp: JsonDatetime | None = None


class MetricsIn(Input):
    metrics: list[MetricIn] = Field(min_length=1, max_length=10_000)


class MetricsAccepted(Degradable):
    accepted: int = Field(description="points stored; none is lost if the tracker is away")
    batches: int = Field(description="calls that carried them to the tracker (0 if queued)")


class ExperimentSearchIn(Input):
    experiments: list[Annotated[str, Field(max_length=EXPERIMENT_LENGTH)]] = Field(
        default_factory=list, max_length=100
    )
    filter: str = Field(default="", max_length=TEXT_LENGTH)
    order_by: list[Annotated[str, Field(max_length=EXPERIMENT_LENGTH)]] = Field(
        default_factory=list, max_length=20
    )
    page_size: int = Field(default=100, ge=1, le=1000)
    page_token: str | None = Field(default=None, max_length=4096)
    provider: str | None = Field(default=None, max_length=PROVIDER_LENGTH)


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
    run_ids: list[Annotated[str, Field(max_length=REF_LENGTH)]] = Field(
        min_length=1, max_length=10, description="the tracker's run ids, in display order"
    )
    metrics: list[Key] | None = Field(
        default=None,
        max_length=50,
        description="metric keys to fetch the history of; every key the runs have if null",
    )
    provider: str | None = Field(default=None, max_length=PROVIDER_LENGTH)


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
    progress: dict[str, Any] | None = Field(
        default=None,
        description="how far long work is while it runs; a model import: phase (resolving, "
        "checking, downloading, done), filesTotal, filesDone, bytesTotal, bytesDone",
    )
    resource_type: str | None
    resource_id: str | None
    created_at: datetime
    updated_at: datetime
