"""The platform's Prometheus registry: one per app, never the global default."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import event, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from llmops.capabilities.orchestration import PipelineState
from llmops.db.models import Operation, WorkflowPipeline
from llmops.resilience.outbox import OperationStatus

log = logging.getLogger(__name__)


class PlatformMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        #: when this process's counters started (they count from zero in each process)
        self.since = datetime.now(UTC)
        self.requests = Counter(
            "llmops_http_requests",
            "HTTP requests answered, by route template, method and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "llmops_http_request_duration_seconds",
            "HTTP request latency by route template",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.integration_up = Gauge(
            "llmops_integration_up",
            "1 when the provider's last health check was ok",
            ["plugin", "capability", "provider"],
            registry=self.registry,
        )
        self.plugin_enabled = Gauge(
            "llmops_plugin_enabled",
            "1 when the plugin is enabled and loaded without error",
            ["plugin"],
            registry=self.registry,
        )
        self.authentication_refusals = Counter(
            "llmops_authentication_refusals",
            "API keys refused: 'invalid' (unknown, malformed or revoked) or 'blocked' (not "
            "checked: the source failed too often)",
            ["reason"],
            registry=self.registry,
        )
        self.audit_failures = Counter(
            "llmops_audit_write_failures",
            "Audit entries that could not be written (the database refused them)",
            registry=self.registry,
        )
        self.pipelines = PipelineMetrics(self.registry)


# -- pipelines -------------------------------------------------------------------------

#: where a session keeps the pipeline events of its open transaction
_PENDING = "llmops.pipeline_events"
_ACTIVE = [s.value for s in PipelineState if not s.terminal]


@dataclass(frozen=True)
class Submitted:
    """The provider accepted the pipeline, ``queue_wait`` seconds after it was created."""

    provider: str
    queue_wait: float


@dataclass(frozen=True)
class Finished:
    """The pipeline reached ``state`` (succeeded, failed, cancelled); ``duration`` is from
    its start to its end, None when it never started."""

    provider: str
    state: str
    duration: float | None


@dataclass(frozen=True)
class Retried:
    """A failed or cancelled pipeline was set going again."""

    provider: str


@dataclass(frozen=True)
class FellBack:
    """The pipeline ran on the local executor because ``provider`` was unavailable."""

    provider: str


PipelineEvent = Submitted | Finished | Retried | FellBack


def record_pipeline_event(session: Session, event: PipelineEvent) -> None:
    """Note ``event`` in ``session``'s transaction: it is counted when the transaction
    commits, and forgotten when it rolls back. The services call this where they applied
    the state change, and only when their own conditional update made it, so each
    change is counted once whichever process (the API's fast path, a worker, another
    replica) applied it; Prometheus sums the processes."""
    session.info.setdefault(_PENDING, []).append(event)


class PipelineMetrics:
    """Per-provider pipeline metrics: transitions counted when committed, and the age of
    the last known state of active pipelines, read from the database at each scrape."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.submitted = Counter(
            "llmops_pipelines_submitted",
            "Pipelines their orchestrator accepted (each once, also after a redelivery)",
            ["provider"],
            registry=registry,
        )
        self.finished = Counter(
            "llmops_pipelines_finished",
            "Pipelines that reached a final state (succeeded, failed, cancelled); a retried "
            "pipeline counts again when its retry ends",
            ["provider", "state"],
            registry=registry,
        )
        self.retried = Counter(
            "llmops_pipelines_retried",
            "Failed or cancelled pipelines set going again (their failed stages, or their "
            "given-up submission)",
            ["provider"],
            registry=registry,
        )
        self.fallbacks = Counter(
            "llmops_pipelines_fell_back",
            "Pipelines run on the local executor because their orchestrator (the label) "
            "was unavailable and the pipeline allowed it",
            ["provider"],
            registry=registry,
        )
        self.duration = Histogram(
            "llmops_pipeline_duration_seconds",
            "From a pipeline's start to its end, by final state",
            ["provider", "state"],
            registry=registry,
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400),
        )
        self.queue_wait = Histogram(
            "llmops_pipeline_queue_wait_seconds",
            "From a pipeline's creation until its orchestrator accepted it (the outbox "
            "delivery of its submission)",
            ["provider"],
            registry=registry,
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 21600),
        )
        self._sessions: sessionmaker[Session] | None = None

    def watch(self, sessions: sessionmaker[Session]) -> None:
        """Count the events of ``sessions``' committed transactions, and report the sync
        lag of the pipelines in their database."""
        self._sessions = sessions
        event.listen(sessions, "after_commit", self._committed)
        event.listen(sessions, "after_transaction_end", self._ended)
        self.registry.register(_SyncLagCollector(sessions))
        self.registry.register(_OutboxCollector(sessions))

    def _committed(self, session: Session) -> None:
        for item in session.info.pop(_PENDING, []):
            self.count(item)

    @staticmethod
    def _ended(session: Session, transaction: SessionTransaction) -> None:
        if transaction.parent is None:  # rolled back or closed: nothing happened
            session.info.pop(_PENDING, None)

    def count(self, item: PipelineEvent) -> None:
        match item:
            case Submitted(provider, queue_wait):
                self.submitted.labels(provider).inc()
                self.queue_wait.labels(provider).observe(max(0.0, queue_wait))
            case Finished(provider, state, duration):
                self.finished.labels(provider, state).inc()
                if duration is not None:
                    self.duration.labels(provider, state).observe(max(0.0, duration))
            case Retried(provider):
                self.retried.labels(provider).inc()
            case FellBack(provider):
                self.fallbacks.labels(provider).inc()


class _DatabaseCollector(Collector):
    """Gauges read from the database at each scrape (one grouped query), so every replica
    reports the same values (aggregate with max, not sum). A database that fails leaves
    the families empty: /readyz reports it, the scrape goes on."""

    #: what the warning says is not reported when the database fails
    what = ""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        raise NotImplementedError

    def query(self) -> Any:
        raise NotImplementedError

    def fill(
        self, families: tuple[GaugeMetricFamily, GaugeMetricFamily], rows: Any, now: datetime
    ) -> None:
        raise NotImplementedError

    def describe(self) -> Iterable[Metric]:
        return self.families()

    def collect(self) -> Iterable[Metric]:
        families = self.families()
        try:
            with self.sessions() as session:
                rows = session.execute(self.query()).all()
        except SQLAlchemyError as exc:
            log.warning("%s not reported: the database failed: %s", self.what, exc)
            return families
        self.fill(families, rows, datetime.now(UTC))
        return families


def _age(now: datetime, then: datetime) -> float:
    if then.tzinfo is None:  # the column's type makes it UTC; be sure
        then = then.replace(tzinfo=UTC)
    return max(0.0, (now - then).total_seconds())


class _SyncLagCollector(_DatabaseCollector):
    """``llmops_pipeline_sync_lag_seconds``: per provider, how old the oldest last known
    state of an active pipeline is (what the worker's sync keeps fresh); it grows when the
    worker stops or the tool cannot be reached; and ``llmops_pipelines_active``."""

    what = "pipeline sync lag"

    def families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "llmops_pipeline_sync_lag_seconds",
                "Age of the oldest last known state among a provider's active pipelines",
                labels=["provider"],
            ),
            GaugeMetricFamily(
                "llmops_pipelines_active",
                "Pipelines a provider runs now (pending or running, submitted to it)",
                labels=["provider"],
            ),
        )

    def query(self) -> Any:
        synced = func.coalesce(WorkflowPipeline.synced_at, WorkflowPipeline.created_at)
        return (
            select(WorkflowPipeline.provider, func.min(synced), func.count())
            .where(WorkflowPipeline.status.in_(_ACTIVE), WorkflowPipeline.external_id.is_not(None))
            .group_by(WorkflowPipeline.provider)
        )

    def fill(
        self, families: tuple[GaugeMetricFamily, GaugeMetricFamily], rows: Any, now: datetime
    ) -> None:
        lag, active = families
        for provider, oldest, count in rows:
            lag.add_metric([provider], _age(now, oldest))
            active.add_metric([provider], count)


#: the outbox's statuses that still hold a write (``succeeded`` and ``discarded`` are done)
_WAITING = (OperationStatus.PENDING, OperationStatus.RUNNING, OperationStatus.DEAD)


class _OutboxCollector(_DatabaseCollector):
    """``llmops_outbox_operations`` and ``llmops_outbox_oldest_pending_seconds``: the
    writes to tools the retry queue holds, per provider and status, and how long the
    oldest pending one has waited."""

    what = "outbox depth"

    def families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "llmops_outbox_operations",
                "Writes to tools in the retry queue, by provider and status (pending, "
                "running, dead)",
                labels=["provider", "status"],
            ),
            GaugeMetricFamily(
                "llmops_outbox_oldest_pending_seconds",
                "How long a provider's oldest pending write has waited",
                labels=["provider"],
            ),
        )

    def query(self) -> Any:
        return (
            select(
                Operation.provider, Operation.status, func.count(), func.min(Operation.created_at)
            )
            .where(Operation.status.in_(_WAITING))
            .group_by(Operation.provider, Operation.status)
        )

    def fill(
        self, families: tuple[GaugeMetricFamily, GaugeMetricFamily], rows: Any, now: datetime
    ) -> None:
        operations, oldest = families
        for provider, status, count, first in rows:
            operations.add_metric([provider, status], count)
            if status == OperationStatus.PENDING and first is not None:
                oldest.add_metric([provider], _age(now, first))
