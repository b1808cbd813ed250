"""The operations overview's body (camelCase on the wire, like schemas.py)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from llmops.api.schemas import ApiModel


class StatusChangeOut(ApiModel):
    at: datetime = Field(description="when the check that saw the change finished")
    status: str = Field(description="ok, degraded, down or unknown")
    previous: str | None = Field(
        description="the status before; null for the first result the history holds"
    )
    detail: str = Field(description="the check's reason, one short line")
    latency_ms: float | None
    host: str = Field(description="the host of the platform process that saw it")
    instance_id: str = Field(description="the platform process that saw it")


class IntegrationStatusOut(ApiModel):
    plugin: str
    capability: str
    provider: str
    status: str = Field(description="now: ok, degraded, down or unknown")
    detail: str
    latency_ms: float | None
    checked_at: datetime
    circuit: str = Field(description="the circuit breaker: closed, open or half-open")
    history: list[StatusChangeOut] = Field(
        description="the changes within historyHours, oldest first (each replica records "
        "what it saw)"
    )


class OutboxProviderOut(ApiModel):
    provider: str
    pending: int
    running: int
    dead: int
    oldest_pending_at: datetime | None
    oldest_pending_age_seconds: float | None


class OutboxSummaryOut(ApiModel):
    pending: int = Field(description="writes waiting for their next attempt")
    running: int = Field(description="writes being delivered now")
    dead: int = Field(description="writes that used up their attempts (retry or discard)")
    depth: int = Field(description="pending + running: writes not delivered yet")
    oldest_pending_at: datetime | None
    oldest_pending_age_seconds: float | None = Field(
        description="how long the oldest pending write has waited"
    )
    providers: list[OutboxProviderOut]


class LatencyOut(ApiModel):
    count: int
    mean_ms: float | None = None
    p95_ms: float | None = Field(
        default=None,
        description="estimated from the histogram's buckets, as Prometheus' "
        "histogram_quantile does",
    )


class CallStatsOut(ApiModel):
    plugin: str
    capability: str
    calls: int = Field(description="calls to the provider, every outcome")
    ok: int
    errors: int = Field(description="calls that failed")
    refused: int = Field(description="calls refused while the circuit was open")
    error_rate: float | None = Field(description="(errors + refused) / calls")
    latency: LatencyOut
    errors_by_type: dict[str, int] = Field(description="failed calls by the core error")


class OutcomesOut(ApiModel):
    succeeded: int
    failed: int
    cancelled: int


class HourCountOut(OutcomesOut):
    start: datetime


class ThroughputOut(ApiModel):
    total: OutcomesOut
    hourly: list[HourCountOut] = Field(description="one entry per hour, oldest first")


class ThroughputSummaryOut(ApiModel):
    since: datetime = Field(description="the start of the first hour counted")
    training: ThroughputOut = Field(description="training jobs, by when they finished")
    pipelines: ThroughputOut = Field(
        description="pipelines (a training job's pipeline included), by when they finished"
    )


class EndpointTrafficOut(ApiModel):
    name: str = Field(description="the endpoint's name, as requests name it")
    endpoint_id: str | None = Field(description="null when the endpoint is gone")
    status: str | None
    requests: int
    outcomes: dict[str, int] = Field(
        description="requests by outcome: ok, client_error, upstream_error, unavailable, fallback"
    )
    error_rate: float | None = Field(description="(upstream_error + unavailable) / requests")
    duration: LatencyOut = Field(description="whole requests, streams included")
    first_byte: LatencyOut = Field(description="until the backend's first byte")
    prompt_tokens: int
    completion_tokens: int


class OverviewOut(ApiModel):
    generated_at: datetime
    metrics_since: datetime = Field(
        description="when this process's counters started: calls and endpoint traffic "
        "count from then on, in the process that answers"
    )
    history_hours: float = Field(description="how long status changes are kept")
    integrations: list[IntegrationStatusOut]
    outbox: OutboxSummaryOut
    calls: list[CallStatsOut]
    throughput: ThroughputSummaryOut
    endpoints: list[EndpointTrafficOut]
