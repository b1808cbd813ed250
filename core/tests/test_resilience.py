"""Guarded dispatch: circuit breaker, deadlines, error translation, metrics."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from llmops.deadlines import deadline_remaining
from llmops.errors import (
    Conflict,
    IntegrationRejected,
    IntegrationUnavailable,
    InvalidRequest,
    NotFound,
)
from llmops.resilience import CircuitBreaker, CircuitState, Guard, GuardMetrics
from llmops.resilience.guard import GuardedProvider


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_repeated_failures_and_half_opens_for_one_trial() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=3, reset_timeout=10, clock=clock)
    for _ in range(3):
        assert breaker.allow()
        breaker.record_failure("down")
    assert breaker.state is CircuitState.OPEN
    assert not breaker.allow()
    assert breaker.retry_after() == 10

    clock.now = 10
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.allow()
    assert not breaker.allow()  # one trial at a time
    breaker.record_failure("still down")
    assert breaker.state is CircuitState.OPEN

    clock.now = 20
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is CircuitState.CLOSED


def test_a_success_resets_the_failure_count() -> None:
    breaker = CircuitBreaker(failure_threshold=2)
    breaker.record_failure("x")
    breaker.record_success()
    breaker.record_failure("x")
    assert breaker.state is CircuitState.CLOSED


def make_guard(registry: CollectorRegistry, **kwargs: Any) -> Guard:
    return Guard(
        "tool",
        "tracking",
        timeout=kwargs.pop("timeout", 1.0),
        breaker=kwargs.pop("breaker", CircuitBreaker(failure_threshold=2, reset_timeout=60)),
        metrics=GuardMetrics(registry),
        **kwargs,
    )


class HttpError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status_code = status


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (HttpError(404), NotFound),
        (HttpError(409), Conflict),
        (HttpError(400), InvalidRequest),
        (HttpError(403), IntegrationRejected),
        (HttpError(503), IntegrationUnavailable),
        (HttpError(429), IntegrationUnavailable),
        (ConnectionRefusedError("refused"), IntegrationUnavailable),
        (TimeoutError("slow"), IntegrationUnavailable),
        (NotFound("already a core error"), NotFound),
    ],
)
def test_tool_errors_become_core_errors(raised: Exception, expected: type[Exception]) -> None:
    guard = make_guard(CollectorRegistry())

    def call() -> None:
        raise raised

    with pytest.raises(expected):
        guard.call("get_run", call)


def test_only_outages_count_against_the_circuit() -> None:
    guard = make_guard(CollectorRegistry())

    def refuse() -> None:
        raise HttpError(404)

    for _ in range(5):
        with pytest.raises(NotFound):
            guard.call("get_run", refuse)
    assert guard.breaker.state is CircuitState.CLOSED

    def down() -> None:
        raise ConnectionRefusedError

    for _ in range(2):
        with pytest.raises(IntegrationUnavailable):
            guard.call("get_run", down)
    assert guard.breaker.state is CircuitState.OPEN
    with pytest.raises(IntegrationUnavailable) as refused:
        guard.call("get_run", lambda: "never called")
    assert refused.value.extensions["circuit"] == "open"
    assert refused.value.extensions["retry_after"] > 0


def test_the_deadline_is_published_to_the_provider() -> None:
    guard = make_guard(CollectorRegistry(), timeout=2.0)
    seen = guard.call("op", lambda: deadline_remaining())
    assert seen is not None
    assert 1.5 < seen <= 2.0
    assert deadline_remaining(7.0) == 7.0  # outside a call


def test_an_isolated_provider_that_hangs_is_abandoned_at_the_deadline() -> None:
    guard = make_guard(CollectorRegistry(), timeout=0.2, isolated=True)
    release = threading.Event()
    started = time.monotonic()
    with pytest.raises(IntegrationUnavailable, match="no answer within"):
        guard.call("op", release.wait, 30)
    assert time.monotonic() - started < 2
    release.set()
    guard.close()


def test_metrics_count_calls_errors_and_circuit_state() -> None:
    registry = CollectorRegistry()
    guard = make_guard(registry)
    provider = GuardedProvider(type("P", (), {"ping": lambda self: "pong"})(), guard)
    assert provider.ping() == "pong"

    def down() -> None:
        raise ConnectionRefusedError

    with pytest.raises(IntegrationUnavailable):
        guard.call("ping", down)
    text = generate_latest(registry).decode()
    assert (
        'llmops_integration_calls_total{capability="tracking",operation="ping",'
        'outcome="ok",plugin="tool"} 1.0' in text
    )
    assert 'outcome="error"' in text
    assert 'error="IntegrationUnavailable"' in text
    assert 'llmops_integration_circuit_state{capability="tracking",plugin="tool"} 0.0' in text


def test_guarded_provider_passes_non_tool_calls_through() -> None:
    calls: list[str] = []

    class Provider:
        max_metrics_per_batch = 1000

        def health(self) -> str:
            calls.append("health")
            return "ok"

    guard = make_guard(CollectorRegistry())
    guard.breaker.record_failure("x")
    guard.breaker.record_failure("x")  # open
    provider = GuardedProvider(Provider(), guard)
    assert provider.health() == "ok"  # health is never paused by the circuit
    assert provider.max_metrics_per_batch == 1000
