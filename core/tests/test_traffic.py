"""An endpoint's recent traffic, computed on the server from the gateway's counters:
what happened inside the window only (not since the process started), with quantiles from
the histograms' bucket deltas and one point per sampling interval; and the route behind
it, which answers for an endpoint by id and 404s for one that does not exist."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from llmops.gateway import GatewayMetrics
from llmops.services import traffic
from llmops.services.traffic import TrafficSampler


def gateway() -> tuple[GatewayMetrics, TrafficSampler]:
    registry = CollectorRegistry()
    return GatewayMetrics(registry), TrafficSampler(registry, interval=3600)


def serve(metrics: GatewayMetrics, endpoint: str, seconds: float, outcome: str = "ok") -> None:
    one = metrics.of(endpoint)
    one.request("chat", outcome)
    one.duration.observe(seconds)
    one.first_byte.observe(seconds / 10)
    one.usage({"prompt_tokens": 3, "completion_tokens": 7})


def test_the_window_counts_only_what_happened_since_its_start() -> None:
    metrics, sampler = gateway()
    for _ in range(5):
        serve(metrics, "chat", 4.0)  # before the window: slow, never counted below
    sampler.take()
    for _ in range(9):
        serve(metrics, "chat", 0.02)
    serve(metrics, "chat", 0.02, outcome="upstream_error")
    serve(metrics, "other", 0.02)

    found = traffic.window(sampler, "chat", seconds=3600)

    assert found.requests == 10
    assert found.outcomes == {"ok": 9, "upstream_error": 1}
    assert found.error_rate == 0.1
    assert (found.prompt_tokens, found.completion_tokens) == (30, 70)
    assert found.duration.p95_ms is not None
    assert 10 <= found.duration.p95_ms <= 50  # the 0.01-0.05 s bucket, not the 4 s ones
    assert found.duration.mean_ms is not None
    assert abs(found.duration.mean_ms - 20) < 1e-6
    assert found.first_byte.p50_ms is not None
    assert found.first_byte.p50_ms <= 5
    assert found.requests_per_second > 0
    [point] = found.series
    assert (point.requests, point.errors) == (10, 1)


def test_each_sampling_interval_is_a_point_of_the_series() -> None:
    metrics, sampler = gateway()
    sampler.take()
    serve(metrics, "chat", 0.1)
    sampler.take()
    serve(metrics, "chat", 0.1)
    serve(metrics, "chat", 0.1, outcome="unavailable")
    sampler.take()

    found = traffic.window(sampler, "chat", seconds=3600)

    assert [(p.requests, p.errors) for p in found.series] == [(1, 0), (2, 1), (0, 0)]
    assert found.requests == 3


def test_an_endpoint_without_requests_has_no_rates_or_quantiles() -> None:
    _, sampler = gateway()
    sampler.take()

    found = traffic.window(sampler, "quiet", seconds=60)

    assert found.requests == 0
    assert found.error_rate is None
    assert found.duration.p95_ms is None
    assert found.outcomes == {}
