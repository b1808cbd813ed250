"""Integration health: real checks against each provider, cached for a few seconds so the
health route cannot be used to hammer the tools, run in parallel with a deadline."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass

from llmops.capabilities.common import Capability, Health, HealthStatus
from llmops.integrations import IntegrationRuntime


@dataclass(frozen=True)
class ProviderHealth:
    plugin: str
    capability: Capability
    provider: str
    health: Health
    circuit: str = "closed"


class HealthChecker:
    def __init__(self, runtime: IntegrationRuntime, *, ttl: float, deadline: float = 5.0) -> None:
        self.runtime = runtime
        self.ttl = ttl
        self.deadline = deadline
        self._lock = threading.Lock()
        self._result: list[ProviderHealth] = []
        self._at = float("-inf")
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="llmops-health")

    def check(self, *, force: bool = False) -> tuple[list[ProviderHealth], bool]:
        """(results, cached). Concurrent callers wait for one check instead of starting more."""
        with self._lock:
            if not force and time.monotonic() - self._at < self.ttl:
                return self._result, True
            self._result = self._run(list(self.runtime.iter_providers()))
            self._at = time.monotonic()
            return self._result, False

    def check_plugin(self, plugin: str) -> list[ProviderHealth]:
        return self._run([p for p in self.runtime.iter_providers() if p[0] == plugin])

    def _run(self, providers: list[tuple[str, Capability, str, object]]) -> list[ProviderHealth]:
        futures = {
            self._pool.submit(_timed_health, provider): (plugin, cap, name)
            for plugin, cap, name, provider in providers
        }
        done, _ = wait(futures, timeout=self.deadline)
        results = []
        for future, (plugin, cap, name) in futures.items():
            if future in done:
                health = future.result()
            else:
                health = Health(
                    status=HealthStatus.DOWN,
                    detail=f"no answer within {self.deadline:g} s",
                    latency_ms=self.deadline * 1000,
                )
            circuit = self.runtime.breaker(cap, name).state.value
            if circuit != "closed" and health.status is HealthStatus.OK:
                health = health.model_copy(
                    update={
                        "status": HealthStatus.DEGRADED,
                        "detail": f"{health.detail}; calls paused ({circuit}): "
                        f"{self.runtime.breaker(cap, name).last_error}".lstrip("; "),
                    }
                )
            results.append(ProviderHealth(plugin, cap, name, health, circuit))
        return results

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _timed_health(provider: object) -> Health:
    started = time.perf_counter()
    try:
        health = provider.health()  # type: ignore[attr-defined]
    except Exception as exc:  # a provider that raises is down, and says why
        return Health(
            status=HealthStatus.DOWN,
            detail=f"{type(exc).__name__}: {exc}",
            latency_ms=(time.perf_counter() - started) * 1000,
        )
    if not isinstance(health, Health):
        return Health(status=HealthStatus.UNKNOWN, detail="health() returned no Health")
    if health.latency_ms is None:
        health = health.model_copy(update={"latency_ms": (time.perf_counter() - started) * 1000})
    return health


def overall(results: list[ProviderHealth], database_ok: bool) -> HealthStatus:
    if not database_ok:
        return HealthStatus.DOWN
    if any(r.health.status is not HealthStatus.OK for r in results):
        return HealthStatus.DEGRADED
    return HealthStatus.OK
