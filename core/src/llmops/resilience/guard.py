"""The guard every provider call goes through: a deadline, a circuit breaker, error
translation and Prometheus metrics, per (plugin, capability).

Deadlines are cooperative by default: the guard publishes the call's deadline
(:func:`deadline_remaining`) and a provider that declares ``honours_deadline = True``
sizes its client's timeouts from it, so the guard costs a few microseconds. A provider
that does not declare it runs in a small thread pool and is abandoned at the deadline
(the thread finishes in the background), which costs a thread hand-off per call.
"""

from __future__ import annotations

import contextvars
import copy
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, NoReturn, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from llmops.deadlines import deadline
from llmops.errors import IntegrationUnavailable, LlmopsError
from llmops.resilience.breaker import CircuitBreaker, CircuitState
from llmops.resilience.errors import Translator, retryable, translate, unclassified

T = TypeVar("T")

#: Methods that are not calls to the tool: passed through unguarded.
#: ``validate_run_write`` decides from the values alone, on the request path: it must
#: neither wait for an open circuit nor count as the tool's answer.
UNGUARDED = frozenset(
    {"health", "framework", "close", "active_work", "translate_error", "validate_run_write"}
)


class GuardMetrics(Collector):
    """Calls, latency, errors and fallbacks by plugin and operation; circuit states."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.calls = Counter(
            "llmops_integration_calls",
            "Calls to providers, by plugin, capability, operation and outcome",
            ["plugin", "capability", "operation", "outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            "llmops_integration_call_duration_seconds",
            "Latency of calls to providers",
            ["plugin", "capability", "operation"],
            registry=registry,
            buckets=(0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.errors = Counter(
            "llmops_integration_errors",
            "Failed calls to providers, by the core error they became",
            ["plugin", "capability", "operation", "error"],
            registry=registry,
        )
        self.fallbacks = Counter(
            "llmops_integration_fallbacks",
            "Times a fallback answered instead of the provider (queued write, stale read)",
            ["plugin", "capability", "operation"],
            registry=registry,
        )
        self._guards: list[Guard] = []
        self._lock = threading.Lock()
        if registry is not None:
            registry.register(self)

    def track(self, guard: Guard) -> None:
        with self._lock:
            self._guards = [g for g in self._guards if g.key != guard.key] + [guard]

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "llmops_integration_circuit_state",
            "Circuit breaker per plugin and capability: 0 closed, 1 half-open, 2 open",
            labels=["plugin", "capability"],
        )
        codes = {CircuitState.CLOSED: 0, CircuitState.HALF_OPEN: 1, CircuitState.OPEN: 2}
        with self._lock:
            guards = list(self._guards)
        for guard in guards:
            family.add_metric([guard.plugin, guard.capability], codes[guard.breaker.state])
        yield family

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []


class Guard:
    def __init__(
        self,
        plugin: str,
        capability: str,
        *,
        timeout: float,
        breaker: CircuitBreaker,
        metrics: GuardMetrics,
        isolated: bool = False,
        translator: Translator | None = None,
        pool_size: int = 8,
    ) -> None:
        self.plugin = plugin
        self.capability = capability
        self.key = (plugin, capability)
        self.timeout = timeout
        self.breaker = breaker
        self.metrics = metrics
        self.translator = translator
        self._pool = (
            ThreadPoolExecutor(pool_size, thread_name_prefix=f"llmops-{plugin}-{capability}")
            if isolated
            else None
        )
        self._ok: dict[str, tuple[Any, Any]] = {}
        metrics.track(self)

    @property
    def isolated(self) -> bool:
        return self._pool is not None

    def _children(self, operation: str) -> tuple[Any, Any]:
        children = self._ok.get(operation)
        if children is None:
            children = (
                self.metrics.calls.labels(self.plugin, self.capability, operation, "ok"),
                self.metrics.latency.labels(self.plugin, self.capability, operation),
            )
            self._ok[operation] = children
        return children

    def call(self, operation: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if not self.breaker.allow():
            self.metrics.calls.labels(self.plugin, self.capability, operation, "refused").inc()
            raise IntegrationUnavailable(
                f"{self.plugin} ({self.capability}) is unavailable: calls are paused after "
                f"repeated failures (last: {self.breaker.last_error})",
                plugin=self.plugin,
                circuit=self.breaker.state.value,
                retry_after=round(self.breaker.retry_after(), 1),
            )
        started = time.monotonic()
        try:
            with deadline(self.timeout):
                result = self._run(fn, *args, **kwargs)
        except BaseException as exc:
            self._failed(operation, exc, time.monotonic() - started)
        elapsed = time.monotonic() - started
        ok_calls, latency = self._children(operation)
        ok_calls.inc()
        latency.observe(elapsed)
        if elapsed > self.timeout:  # a slow answer counts against the tool too
            self.breaker.record_failure(f"answered after {elapsed:.1f} s")
        else:
            self.breaker.record_success()
        return result

    def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self._pool is None:
            return fn(*args, **kwargs)
        context = contextvars.copy_context()
        future = self._pool.submit(context.run, fn, *args, **kwargs)
        try:
            return future.result(timeout=self.timeout)
        except FutureTimeout:
            future.cancel()
            raise TimeoutError(f"no answer within {self.timeout:g} s") from None

    def _failed(self, operation: str, exc: BaseException, elapsed: float) -> NoReturn:
        if not isinstance(exc, Exception):
            raise exc  # KeyboardInterrupt, SystemExit: not the tool's doing
        error: LlmopsError = translate(
            exc, where=f"{self.plugin} {operation}", translator=self.translator
        )
        self.metrics.latency.labels(self.plugin, self.capability, operation).observe(elapsed)
        self.metrics.calls.labels(self.plugin, self.capability, operation, "error").inc()
        self.metrics.errors.labels(
            self.plugin, self.capability, operation, type(error).__name__
        ).inc()
        if retryable(error):  # only transient failures count against the tool
            self.breaker.record_failure(error.detail)
        elif unclassified(error):
            self.breaker.release()  # says nothing about the tool (see UnclassifiedFailure)
        else:
            self.breaker.record_success()  # the tool answered: it is up
        if error is exc:
            raise exc
        raise error from exc

    def with_timeout(self, seconds: float) -> Guard:
        """This guard with another deadline: the same breaker, metrics, thread pool and
        translator. For work that is long by nature (a model import), run by the worker
        outside any request; never closed on its own (closing this guard closes both)."""
        other = copy.copy(self)
        other.timeout = seconds
        return other

    def fallback(self, operation: str) -> None:
        self.metrics.fallbacks.labels(self.plugin, self.capability, operation).inc()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


class GuardedProvider:
    """A provider whose tool calls go through a :class:`Guard`; other attributes pass."""

    def __init__(self, provider: Any, guard: Guard) -> None:
        self._provider = provider
        self._guard = guard

    @property
    def guard(self) -> Guard:
        return self._guard

    @property
    def unwrapped(self) -> Any:
        return self._provider

    def with_deadline(self, seconds: float) -> GuardedProvider:
        """The same provider behind the same guard (breaker, metrics, translation), with
        a deadline of ``seconds`` for each call instead of the request's."""
        return GuardedProvider(self._provider, self._guard.with_timeout(seconds))

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._provider, name)
        if name.startswith("_") or name in UNGUARDED or not callable(attribute):
            return attribute
        guard = self._guard

        def guarded(*args: Any, **kwargs: Any) -> Any:
            return guard.call(name, attribute, *args, **kwargs)

        guarded.__name__ = name
        self.__dict__[name] = guarded  # later lookups skip __getattr__
        return guarded
