"""The operations overview: one answer for the console's landing page.

Everything comes from what the platform already keeps; nothing is estimated but the
latency percentiles, which are read from the histograms' buckets as Prometheus'
``histogram_quantile`` reads them:

* each live provider's health now (the background checks) and its changes within
  ``status_history_hours`` (:mod:`llmops.observability.status_history`, in the database,
  shared by every replica);
* the outbox: writes waiting or being delivered, dead ones, and how long the oldest
  waiting one has waited (the ``operations`` table);
* calls to providers per plugin and capability: the guard's counters and latency
  histogram, read from the registry ``/metrics`` serves; counted by this process since it
  started (``metricsSince``), like every Prometheus counter;
* finished training jobs and pipelines per hour, by outcome, over the current hour and
  the 23 before it (their ``finished_at`` and ``status`` rows);
* inference traffic per serving endpoint: the gateway's counters and histograms, from the
  same registry, next to every endpoint the catalog holds.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.samples import Sample
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from llmops.db.models import (
    IntegrationStatusChange,
    Operation,
    ServingEndpoint,
    TrainingJob,
    WorkflowPipeline,
    utcnow,
)
from llmops.observability.health import ProviderHealth
from llmops.observability.status_history import changes_since
from llmops.resilience.outbox import OperationStatus

if TYPE_CHECKING:
    from llmops.platform import Platform

#: the hours of the throughput: the current one and the 23 before it
THROUGHPUT_HOURS = 24
#: what the throughput counts per hour
OUTCOMES = ("succeeded", "failed", "cancelled")
#: the gateway's outcomes that mean the endpoint could not answer
ENDPOINT_FAILURES = ("upstream_error", "unavailable")


# -- the answer ------------------------------------------------------------------------


@dataclass
class StatusChange:
    at: datetime
    status: str
    previous: str | None
    detail: str
    latency_ms: float | None
    host: str
    instance_id: str


@dataclass
class IntegrationStatus:
    plugin: str
    capability: str
    provider: str
    status: str
    detail: str
    latency_ms: float | None
    checked_at: datetime
    circuit: str
    history: list[StatusChange]


@dataclass
class OutboxProvider:
    provider: str
    pending: int = 0
    running: int = 0
    dead: int = 0
    oldest_pending_at: datetime | None = None
    oldest_pending_age_seconds: float | None = None


@dataclass
class OutboxSummary:
    pending: int
    running: int
    dead: int
    depth: int
    oldest_pending_at: datetime | None
    oldest_pending_age_seconds: float | None
    providers: list[OutboxProvider]


@dataclass
class Latency:
    count: int = 0
    mean_ms: float | None = None
    p95_ms: float | None = None


@dataclass
class CallStats:
    plugin: str
    capability: str
    calls: int
    ok: int
    errors: int
    refused: int
    error_rate: float | None
    latency: Latency
    errors_by_type: dict[str, int]


@dataclass
class Outcomes:
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0


@dataclass
class HourCount(Outcomes):
    start: datetime = field(default_factory=utcnow)


@dataclass
class Throughput:
    total: Outcomes
    hourly: list[HourCount]


@dataclass
class ThroughputSummary:
    since: datetime
    training: Throughput
    pipelines: Throughput


@dataclass
class EndpointTraffic:
    name: str
    endpoint_id: str | None
    status: str | None
    requests: int
    outcomes: dict[str, int]
    error_rate: float | None
    duration: Latency
    first_byte: Latency
    prompt_tokens: int
    completion_tokens: int


@dataclass
class Overview:
    generated_at: datetime
    metrics_since: datetime
    history_hours: float
    integrations: list[IntegrationStatus]
    outbox: OutboxSummary
    calls: list[CallStats]
    throughput: ThroughputSummary
    endpoints: list[EndpointTraffic]


# -- building it -----------------------------------------------------------------------


def build(*, session: Session, platform: Platform, now: datetime | None = None) -> Overview:
    now = now or utcnow()
    registry = platform.metrics.registry
    hours = platform.settings.status_history_hours
    return Overview(
        generated_at=now,
        metrics_since=platform.metrics.since,
        history_hours=hours,
        integrations=integration_statuses(
            session, platform.health.results(), since=now - timedelta(hours=hours)
        ),
        outbox=outbox_summary(session, now=now),
        calls=call_stats(registry),
        throughput=throughput(session, now=now),
        endpoints=endpoint_traffic(session, registry),
    )


def integration_statuses(
    session: Session, results: list[ProviderHealth], *, since: datetime
) -> list[IntegrationStatus]:
    """Each live provider's health now, with the changes recorded since ``since``."""
    history: dict[tuple[str, str, str], list[StatusChange]] = defaultdict(list)
    for row in changes_since(session, since):
        history[(row.plugin, row.capability, row.provider)].append(_change(row))
    return [
        IntegrationStatus(
            plugin=r.plugin,
            capability=r.capability.value,
            provider=r.provider,
            status=r.health.status.value,
            detail=r.health.detail,
            latency_ms=r.health.latency_ms,
            checked_at=r.health.checked_at,
            circuit=r.circuit,
            history=history.get((r.plugin, r.capability.value, r.provider), []),
        )
        for r in sorted(results, key=lambda r: (r.plugin, r.capability.value, r.provider))
    ]


def _change(row: IntegrationStatusChange) -> StatusChange:
    return StatusChange(
        at=row.at,
        status=row.status,
        previous=row.previous,
        detail=row.detail,
        latency_ms=row.latency_ms,
        host=row.host,
        instance_id=row.instance_id,
    )


def outbox_summary(session: Session, *, now: datetime) -> OutboxSummary:
    """The writes not delivered yet (pending, running) and the dead ones, per provider."""
    shown = (OperationStatus.PENDING, OperationStatus.RUNNING, OperationStatus.DEAD)
    rows = session.execute(
        select(Operation.provider, Operation.status, func.count(), func.min(Operation.created_at))
        .where(Operation.status.in_([s.value for s in shown]))
        .group_by(Operation.provider, Operation.status)
    ).all()
    providers: dict[str, OutboxProvider] = {}
    for provider, status, count, oldest in rows:
        entry = providers.setdefault(provider, OutboxProvider(provider))
        setattr(entry, status, int(count))
        if status == OperationStatus.PENDING.value:
            entry.oldest_pending_at = oldest
            entry.oldest_pending_age_seconds = _age(now, oldest)
    listed = sorted(providers.values(), key=lambda p: p.provider)
    pending = sum(p.pending for p in listed)
    running = sum(p.running for p in listed)
    oldest_at = min((p.oldest_pending_at for p in listed if p.oldest_pending_at), default=None)
    return OutboxSummary(
        pending=pending,
        running=running,
        dead=sum(p.dead for p in listed),
        depth=pending + running,
        oldest_pending_at=oldest_at,
        oldest_pending_age_seconds=_age(now, oldest_at) if oldest_at else None,
        providers=listed,
    )


def _age(now: datetime, then: datetime) -> float:
    return max(0.0, (now - then).total_seconds())


def throughput(session: Session, *, now: datetime) -> ThroughputSummary:
    """Training jobs and pipelines finished per hour, by outcome: the current hour and the
    :data:`THROUGHPUT_HOURS` - 1 before it (hours of UTC)."""
    this_hour = now.replace(minute=0, second=0, microsecond=0)
    since = this_hour - timedelta(hours=THROUGHPUT_HOURS - 1)
    return ThroughputSummary(
        since=since,
        training=_finished(session, TrainingJob, since=since),
        pipelines=_finished(session, WorkflowPipeline, since=since),
    )


def _finished(
    session: Session, model: type[TrainingJob] | type[WorkflowPipeline], *, since: datetime
) -> Throughput:
    hourly = [HourCount(start=since + timedelta(hours=h)) for h in range(THROUGHPUT_HOURS)]
    total = Outcomes()
    rows = session.execute(
        select(model.finished_at, model.status).where(
            model.finished_at.is_not(None),
            model.finished_at >= since,
            model.status.in_(OUTCOMES),
        )
    ).all()
    for finished_at, status in rows:
        index = -1 if finished_at is None else int((finished_at - since).total_seconds() // 3600)
        if 0 <= index < THROUGHPUT_HOURS:
            bucket = hourly[index]
            setattr(bucket, status, getattr(bucket, status) + 1)
            setattr(total, status, getattr(total, status) + 1)
    return Throughput(total=total, hourly=hourly)


# -- reading the registry --------------------------------------------------------------


def samples(registry: CollectorRegistry, *names: str) -> Iterator[Sample]:
    """The current samples of these series (``<name>_total``, ``<name>_bucket``...) in
    ``registry``: only the collectors that hold them are asked."""
    for family in registry.restricted_registry(names).collect():
        yield from family.samples


@dataclass
class _Histogram:
    """One histogram's buckets, summed over the label sets read into it."""

    buckets: dict[float, float] = field(default_factory=dict)
    count: float = 0.0
    total: float = 0.0

    def add(self, sample: Sample) -> None:
        if sample.name.endswith("_bucket"):
            bound = float(sample.labels["le"])
            self.buckets[bound] = self.buckets.get(bound, 0.0) + sample.value
        elif sample.name.endswith("_count"):
            self.count += sample.value
        elif sample.name.endswith("_sum"):
            self.total += sample.value

    def latency(self) -> Latency:
        if self.count <= 0:
            return Latency()
        return Latency(
            count=int(self.count),
            mean_ms=self.total / self.count * 1000,
            p95_ms=_ms(quantile(0.95, self.buckets)),
        )


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """The ``q`` quantile of a histogram's cumulative buckets (upper bound to count),
    interpolated within its bucket as Prometheus' ``histogram_quantile`` does; at most the
    largest finite bound."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, count
    return lower


def call_stats(registry: CollectorRegistry) -> list[CallStats]:
    """Calls to providers per plugin and capability (all operations together), from the
    guard's ``llmops_integration_calls``, ``llmops_integration_errors`` and
    ``llmops_integration_call_duration_seconds``."""
    outcomes: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    errors: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    latency: dict[tuple[str, str], _Histogram] = defaultdict(_Histogram)
    for sample in samples(
        registry,
        "llmops_integration_calls_total",
        "llmops_integration_errors_total",
        "llmops_integration_call_duration_seconds_bucket",
        "llmops_integration_call_duration_seconds_count",
        "llmops_integration_call_duration_seconds_sum",
    ):
        key = (sample.labels["plugin"], sample.labels["capability"])
        if sample.name == "llmops_integration_calls_total":
            outcomes[key][sample.labels["outcome"]] += sample.value
        elif sample.name == "llmops_integration_errors_total":
            errors[key][sample.labels["error"]] += sample.value
        else:
            latency[key].add(sample)
    found = []
    for key in sorted(set(outcomes) | set(latency)):
        counts = outcomes.get(key, {})
        calls = int(sum(counts.values()))
        failed = int(counts.get("error", 0) + counts.get("refused", 0))
        found.append(
            CallStats(
                plugin=key[0],
                capability=key[1],
                calls=calls,
                ok=int(counts.get("ok", 0)),
                errors=int(counts.get("error", 0)),
                refused=int(counts.get("refused", 0)),
                error_rate=failed / calls if calls else None,
                latency=latency[key].latency() if key in latency else Latency(),
                errors_by_type={k: int(v) for k, v in sorted(errors.get(key, {}).items())},
            )
        )
    return found


def endpoint_traffic(session: Session, registry: CollectorRegistry) -> list[EndpointTraffic]:
    """Inference requests per serving endpoint (by the name a request used), from the
    gateway's ``llmops_inference_requests``, ``llmops_inference_duration_seconds``,
    ``llmops_inference_time_to_first_byte_seconds`` and ``llmops_inference_tokens``;
    every endpoint of the catalog is listed, with no traffic when it had none."""
    outcomes: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    duration: dict[str, _Histogram] = defaultdict(_Histogram)
    first_byte: dict[str, _Histogram] = defaultdict(_Histogram)
    tokens: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    series = (
        ("llmops_inference_duration_seconds", duration),
        ("llmops_inference_time_to_first_byte_seconds", first_byte),
    )
    names = ["llmops_inference_requests_total", "llmops_inference_tokens_total"]
    names += [f"{name}_{part}" for name, _ in series for part in ("bucket", "count", "sum")]
    for sample in samples(registry, *names):
        endpoint = sample.labels["endpoint"]
        if sample.name == "llmops_inference_requests_total":
            outcomes[endpoint][sample.labels["outcome"]] += sample.value
        elif sample.name == "llmops_inference_tokens_total":
            tokens[endpoint][sample.labels["kind"]] += sample.value
        else:
            for name, histograms in series:
                if sample.name.startswith(f"{name}_"):
                    histograms[endpoint].add(sample)
    known = {
        name: (endpoint_id, status)
        for endpoint_id, name, status in session.execute(
            select(ServingEndpoint.id, ServingEndpoint.name, ServingEndpoint.status)
        ).all()
    }
    found = []
    for name in sorted(set(known) | set(outcomes) | set(duration)):
        counts = {k: int(v) for k, v in sorted(outcomes.get(name, {}).items())}
        requests = sum(counts.values())
        failed = sum(counts.get(k, 0) for k in ENDPOINT_FAILURES)
        endpoint_id, status = known.get(name, (None, None))
        found.append(
            EndpointTraffic(
                name=name,
                endpoint_id=endpoint_id,
                status=status,
                requests=requests,
                outcomes=counts,
                error_rate=failed / requests if requests else None,
                duration=_latency_of(duration, name),
                first_byte=_latency_of(first_byte, name),
                prompt_tokens=int(tokens.get(name, {}).get("prompt", 0)),
                completion_tokens=int(tokens.get(name, {}).get("completion", 0)),
            )
        )
    return found


def _latency_of(histograms: dict[str, _Histogram], name: str) -> Latency:
    histogram = histograms.get(name)
    return histogram.latency() if histogram is not None else Latency()
