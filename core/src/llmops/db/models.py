"""The platform's tables.

Rows that mirror an object in a tool keep ``provider`` (the plugin or framework name) and
``external_id`` (the tool's id), so the tool stays the source of truth and a disabled
plugin's rows stay readable.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every backend (SQLite drops the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    @property
    def python_type(self) -> type[datetime]:
        return datetime

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UtcDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class Timestamped:
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class IntegrationConfig(Base):
    __tablename__ = "integration_configs"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    enabled: Mapped[bool | None] = mapped_column(Boolean, default=None)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(200))


class CapabilityDefault(Base):
    __tablename__ = "capability_defaults"

    capability: Mapped[str] = mapped_column(String(20), primary_key=True)
    provider: Mapped[str] = mapped_column(String(80))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class CatalogModel(Timestamped, Base):
    __tablename__ = "models"
    # filtered lists are ordered by creation time: let the index deliver that order
    __table_args__ = (
        Index("ix_models_task_created_at", "task", "created_at", "id"),
        Index("ix_models_framework_created_at", "framework", "created_at", "id"),
        Index("ix_models_status_created_at", "status", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    version: Mapped[str] = mapped_column(String(64), default="1")
    description: Mapped[str] = mapped_column(Text, default="")
    task: Mapped[str | None] = mapped_column(String(64))
    framework: Mapped[str | None] = mapped_column(String(64))
    #: how it came into the catalog: "manual", "training-job", "registry" (an import: its
    #: registry_models row holds the pin, which the API shows as "hf://<repo>@<commit>")
    source: Mapped[str] = mapped_column(String(32), default="manual")
    status: Mapped[str] = mapped_column(String(32), default="registered")
    uri: Mapped[str | None] = mapped_column(String(1000))
    tags: Mapped[list[Any]] = mapped_column(default=list)
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Dataset(Timestamped, Base):
    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    format: Mapped[str | None] = mapped_column(String(32))
    tags: Mapped[list[Any]] = mapped_column(default=list)
    #: the field or column that names a row, for row diffs
    row_key: Mapped[str | None] = mapped_column(String(200))
    file_count: Mapped[int] = mapped_column(Integer, default=0)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)


class DatasetVersion(Base):
    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("dataset_id", "number"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    provider: Mapped[str | None] = mapped_column(String(80))
    external_id: Mapped[str | None] = mapped_column(String(200))
    message: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(32), default="pending")
    file_count: Mapped[int] = mapped_column(Integer, default=0)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    checksum: Mapped[str | None] = mapped_column(String(128))
    parent_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: the principal (API key name) that made it, and its key's id
    author: Mapped[str | None] = mapped_column(String(200))
    author_key_id: Mapped[str | None] = mapped_column(String(32))
    tags: Mapped[dict[str, Any] | None] = mapped_column(default=dict)
    #: None when the provider keeps no remote; else pending, pushed or failed
    push_state: Mapped[str | None] = mapped_column(String(20))
    push_operation_id: Mapped[str | None] = mapped_column(String(32))
    #: the version whose content a restore brought back
    restored_from_id: Mapped[str | None] = mapped_column(String(32))
    #: the pipeline whose stage made it (``pipelineId`` of the request)
    pipeline_id: Mapped[str | None] = mapped_column(String(32), index=True)


class PipelineInput(Base):
    """A dataset version a pipeline reads, pinned when the pipeline was submitted."""

    __tablename__ = "pipeline_inputs"

    pipeline_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    dataset_version_id: Mapped[str] = mapped_column(String(32), primary_key=True, index=True)


class TrainingJob(Timestamped, Base):
    __tablename__ = "training_jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    model_id: Mapped[str | None] = mapped_column(ForeignKey("models.id", ondelete="SET NULL"))
    dataset_id: Mapped[str | None] = mapped_column(ForeignKey("datasets.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(32), default="pending", index=True)
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)
    pipeline_id: Mapped[str | None] = mapped_column(String(32))
    #: the dataset version the job trained on (pinned when it was submitted)
    dataset_version_id: Mapped[str | None] = mapped_column(String(32), index=True)
    message: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    # read-only: loaded with the job (one query for a whole page of jobs)
    experiment_run: Mapped[ExperimentRun | None] = relationship(
        "ExperimentRun", lazy="selectin", viewonly=True, uselist=False
    )


class ExperimentRun(Timestamped, Base):
    __tablename__ = "experiment_runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    training_job_id: Mapped[str | None] = mapped_column(
        ForeignKey("training_jobs.id", ondelete="CASCADE"), index=True
    )
    provider: Mapped[str | None] = mapped_column(String(80))
    external_id: Mapped[str | None] = mapped_column(String(200))
    experiment_name: Mapped[str] = mapped_column(String(200))
    run_name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(32), default="scheduled")
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    latest_metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    ui_url: Mapped[str | None] = mapped_column(String(1000))
    synced_at: Mapped[datetime | None] = mapped_column()


class ServingEndpoint(Timestamped, Base):
    __tablename__ = "serving_endpoints"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    model_id: Mapped[str | None] = mapped_column(ForeignKey("models.id", ondelete="SET NULL"))
    framework: Mapped[str | None] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(32), default="pending")
    description: Mapped[str] = mapped_column(Text, default="")
    fallback_endpoint_id: Mapped[str | None] = mapped_column(String(32))
    request_timeout_seconds: Mapped[float] = mapped_column(Float, default=60.0, server_default="60")


class ServingDeployment(Timestamped, Base):
    __tablename__ = "serving_deployments"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    endpoint_id: Mapped[str] = mapped_column(
        ForeignKey("serving_endpoints.id", ondelete="CASCADE"), index=True
    )
    provider: Mapped[str] = mapped_column(String(80))
    external_id: Mapped[str | None] = mapped_column(String(200))
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(32), default="pending")
    synced_at: Mapped[datetime | None] = mapped_column()


class WorkflowPipeline(Timestamped, Base):
    __tablename__ = "workflow_pipelines"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    provider: Mapped[str] = mapped_column(String(80))
    external_id: Mapped[str | None] = mapped_column(String(200))
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(32), default="pending", index=True)
    stages: Mapped[list[Any]] = mapped_column(default=list)
    message: Mapped[str] = mapped_column(Text, default="")
    ui_url: Mapped[str | None] = mapped_column(String(1000))
    training_job_id: Mapped[str | None] = mapped_column(String(32), index=True)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    synced_at: Mapped[datetime | None] = mapped_column()
    #: the platform process whose executor drives the run, for orchestrators that run
    #: stages inside the platform (the local executor); another takes it over once the
    #: owner's heartbeat has stopped (:mod:`llmops.services.run_leases`)
    owner_id: Mapped[str | None] = mapped_column(String(32), index=True)
    #: a cancel the owner has yet to carry out (the pipeline shows ``cancelling``)
    cancel_requested_at: Mapped[datetime | None] = mapped_column()


class ExecutorInstance(Base):
    """A running platform process (``llmops up``, ``llmops worker``) that may drive runs:
    its heartbeat says it is alive."""

    __tablename__ = "executor_instances"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class IntegrationStatusChange(Base):
    """A change of a provider's health as one platform process saw it: the first result
    of its checks, then each result whose status differs from the one before. Kept for
    ``status_history_hours`` (:mod:`llmops.observability.status_history`)."""

    __tablename__ = "integration_status_changes"
    __table_args__ = (
        Index(
            "ix_integration_status_changes_provider_at", "plugin", "capability", "provider", "at"
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    plugin: Mapped[str] = mapped_column(String(40))
    capability: Mapped[str] = mapped_column(String(20))
    provider: Mapped[str] = mapped_column(String(80))
    #: ok, degraded, down or unknown (:class:`~llmops.capabilities.common.HealthStatus`)
    status: Mapped[str] = mapped_column(String(20))
    #: the status before this change; None for the first result this history holds
    previous: Mapped[str | None] = mapped_column(String(20))
    detail: Mapped[str] = mapped_column(Text, default="")
    latency_ms: Mapped[float | None] = mapped_column(Float)
    #: the process that saw it (``Platform.instance_id``) and its host
    instance_id: Mapped[str] = mapped_column(String(32))
    host: Mapped[str] = mapped_column(String(255))


class RegistryModel(Base):
    """A catalog model's link to a repository of a model registry: the import it came
    from (``kind`` "import": ``revision`` is the pinned commit, ``branch`` what update
    checks follow) or an export of it (``kind`` "export": ``revision`` the commit it made).
    ``external_id`` is the repository's id; ``details`` holds what the registry said
    (license, files, card, why it was served from a cache)."""

    __tablename__ = "registry_models"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(80))
    external_id: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(20), default="import", server_default="import")
    #: pending, succeeded or failed: whether the import's files (or the export's commit)
    #: exist yet
    state: Mapped[str] = mapped_column(String(20), default="pending", server_default="pending")
    revision: Mapped[str | None] = mapped_column(String(100))
    branch: Mapped[str | None] = mapped_column(String(200))
    url: Mapped[str | None] = mapped_column(String(1000))
    operation_id: Mapped[str | None] = mapped_column(String(32))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    imported_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_checked_at: Mapped[datetime | None] = mapped_column()
    #: the last update check's result, as the API shows it
    last_check: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Operation(Timestamped, Base):
    """The outbox: a write to a tool, delivered by a worker (see core-2)."""

    __tablename__ = "operations"
    __table_args__ = (Index("ix_operations_due", "status", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(80))
    provider: Mapped[str] = mapped_column(String(80))
    capability: Mapped[str] = mapped_column(String(20))
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=10)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column()
    locked_by: Mapped[str | None] = mapped_column(String(100))
    last_error: Mapped[str | None] = mapped_column(Text)
    resource_type: Mapped[str | None] = mapped_column(String(40))
    resource_id: Mapped[str | None] = mapped_column(String(32))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    #: how far long work is while it runs (a model import: phase, files and bytes)
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    role: Mapped[str | None] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(100), index=True)
    resource_type: Mapped[str | None] = mapped_column(String(40))
    resource_id: Mapped[str | None] = mapped_column(String(200))
    request_id: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(20))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    key_hash: Mapped[str] = mapped_column(String(128), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    training_job_id: Mapped[str | None] = mapped_column(String(32), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()


class IdempotencyRecord(Base):
    """The first answer to a POST sent with an ``Idempotency-Key``, to replay it."""

    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("scope", "key"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    scope: Mapped[str] = mapped_column(String(64), doc="hash of the caller's credential")
    key: Mapped[str] = mapped_column(String(200))
    method: Mapped[str] = mapped_column(String(10))
    path: Mapped[str] = mapped_column(String(1000))
    request_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(20), default="in-progress")
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    response_body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    #: the request holding an in-progress key (a token of its own), until ``lease_until``:
    #: it renews the lease while it runs; once the lease has run out, its process is gone
    #: and a replay takes the key over
    owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column()
    #: set in the transaction that committed the request's first write: from then on a
    #: replay never runs the request again
    committed_at: Mapped[datetime | None] = mapped_column()
    #: where the written resource is read back (``GET``), and the status its answer had,
    #: for a replay of a request whose process died after its write committed
    replay_path: Mapped[str | None] = mapped_column(String(1000))
    replay_status: Mapped[int | None] = mapped_column(Integer)
