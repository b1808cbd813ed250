"""Integration health: real checks against each provider, cached for a few seconds so the
health route cannot be used to hammer the tools, run in parallel with a deadline."""

from __future__ import annotations

import threading
import time
import unicodedata
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
            health = health.model_copy(update={"detail": bounded_detail(health.detail)})
            results.append(ProviderHealth(plugin, cap, name, health, circuit))
        return results

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


#: The longest ``detail`` a health result keeps.
MAX_DETAIL_CHARS = 300


def bounded_detail(text: object) -> str:
    """``text`` as one short line: its first line, control and invisible format characters
    (line and paragraph separators, bidi overrides) made spaces, runs of whitespace one,
    at most :data:`MAX_DETAIL_CHARS`. A provider's detail may quote what its tool answered;
    whatever a plugin puts there, the health routes show a short reason, not a page."""
    lines = [line for line in str(text).splitlines() if line.strip()]
    first = lines[0] if lines else ""
    clean = "".join(" " if unicodedata.category(c)[0] in "CZ" else c for c in first)
    line = " ".join(clean.split())
    if len(line) > MAX_DETAIL_CHARS:
        line = line[: MAX_DETAIL_CHARS - 1].rstrip() + "…"
    return line


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
