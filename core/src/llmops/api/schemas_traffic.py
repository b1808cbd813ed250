"""An endpoint's recent traffic (camelCase on the wire, like schemas.py)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from llmops.api.schemas import ApiModel


class QuantilesOut(ApiModel):
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    mean_ms: float | None


class TrafficPointOut(ApiModel):
    start: datetime
    end: datetime
    requests: int
    errors: int = Field(description="upstream errors and unavailable answers")
    p95_ms: float | None = Field(description="the 95th percentile of whole requests")


class TrafficOut(ApiModel):
    """What the gateway of this platform process forwarded to the endpoint in the
    window: each replica counts its own requests."""

    endpoint_id: str
    endpoint: str = Field(description="the endpoint's name, as requests call it")
    since: datetime = Field(
        description="the window's start (where counting started, "
        "when the process has counted for less than the window)"
    )
    until: datetime
    seconds: float = Field(description="the window's length")
    requests: int
    outcomes: dict[str, int] = Field(
        description="requests by outcome: ok, client_error, upstream_error, unavailable, fallback"
    )
    requests_per_second: float
    error_rate: float | None = Field(
        description="upstream errors and unavailable answers per request; null without requests"
    )
    duration: QuantilesOut = Field(description="whole requests, streams included")
    first_byte: QuantilesOut = Field(description="from the request to the first byte")
    prompt_tokens: int
    completion_tokens: int
    series: list[TrafficPointOut] = Field(
        description="one point per sampling interval (LLMOPS_TRAFFIC_SAMPLE_SECONDS)"
    )
