"""An endpoint's recent inference traffic, computed on the server.

The gateway counts every request in Prometheus collectors (``llmops_inference_*``: by
endpoint, route and outcome; durations and times to first byte as histograms; tokens).
Those are totals since the process started. :class:`TrafficSampler` keeps a snapshot of
them every ``interval`` seconds for the last hour, so that :func:`window` can say what
happened in the last N seconds, as Prometheus' ``increase()`` and
``histogram_quantile()`` would: requests and their outcomes, requests per second, error
rate, latency quantiles, tokens, and a series for a chart.

The figures are this process's: behind a load balancer each replica counts the requests
it forwarded (Prometheus, scraping every replica, sums them).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from prometheus_client import CollectorRegistry

from llmops.services.overview import ENDPOINT_FAILURES, quantile, samples

log = logging.getLogger(__name__)

K = TypeVar("K", str, float)

#: how far back the snapshots go (and the longest window asked for)
KEEP_SECONDS = 3600.0

_REQUESTS = "llmops_inference_requests_total"
_TOKENS = "llmops_inference_tokens_total"
_HISTOGRAMS = {
    "llmops_inference_duration_seconds": "duration",
    "llmops_inference_time_to_first_byte_seconds": "first_byte",
}


@dataclass
class Counts:
    """One endpoint's totals at one moment."""

    outcomes: dict[str, float] = field(default_factory=dict)
    tokens: dict[str, float] = field(default_factory=dict)
    #: histogram -> cumulative bucket (upper bound -> count)
    buckets: dict[str, dict[float, float]] = field(default_factory=dict)
    sums: dict[str, float] = field(default_factory=dict)

    def minus(self, earlier: Counts | None) -> Counts:
        """What happened between ``earlier`` and this (a total that went down, a process
        that started again, counts from zero)."""
        if earlier is None:
            return self
        return Counts(
            outcomes=_less(self.outcomes, earlier.outcomes),
            tokens=_less(self.tokens, earlier.tokens),
            buckets={
                name: _less(b, earlier.buckets.get(name, {})) for name, b in self.buckets.items()
            },
            sums={name: v - earlier.sums.get(name, 0.0) for name, v in self.sums.items()},
        )

    @property
    def requests(self) -> int:
        return int(sum(self.outcomes.values()))

    @property
    def failed(self) -> int:
        return int(sum(self.outcomes.get(k, 0.0) for k in ENDPOINT_FAILURES))


def _less(now: dict[K, float], then: Mapping[K, float]) -> dict[K, float]:
    out = {k: v - then.get(k, 0.0) for k, v in now.items()}
    return now if any(v < 0 for v in out.values()) else out  # counted again from zero


def read(registry: CollectorRegistry) -> dict[str, Counts]:
    """Every endpoint's totals now, by the name requests used."""
    found: dict[str, Counts] = {}
    names = [_REQUESTS, _TOKENS]
    names += [f"{name}_{part}" for name in _HISTOGRAMS for part in ("bucket", "sum")]
    for sample in samples(registry, *names):
        counts = found.setdefault(sample.labels["endpoint"], Counts())
        if sample.name == _REQUESTS:
            outcome = sample.labels["outcome"]
            counts.outcomes[outcome] = counts.outcomes.get(outcome, 0.0) + sample.value
        elif sample.name == _TOKENS:
            kind = sample.labels["kind"]
            counts.tokens[kind] = counts.tokens.get(kind, 0.0) + sample.value
        else:
            for name, short in _HISTOGRAMS.items():
                if sample.name == f"{name}_bucket":
                    bucket = counts.buckets.setdefault(short, {})
                    bound = float(sample.labels["le"])
                    bucket[bound] = bucket.get(bound, 0.0) + sample.value
                elif sample.name == f"{name}_sum":
                    counts.sums[short] = counts.sums.get(short, 0.0) + sample.value
    return found


@dataclass(frozen=True)
class Snapshot:
    monotonic: float
    at: datetime
    counts: dict[str, Counts]


class TrafficSampler:
    """Snapshots of the gateway's totals every ``interval`` seconds, the last hour's."""

    def __init__(self, registry: CollectorRegistry, *, interval: float = 10.0) -> None:
        self.registry = registry
        self.interval = max(interval, 0.05)
        self._snapshots: deque[Snapshot] = deque(maxlen=int(KEEP_SECONDS / self.interval) + 2)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def now(self) -> Snapshot:
        """The totals now (not kept)."""
        return Snapshot(time.monotonic(), datetime.now(UTC), read(self.registry))

    def take(self) -> Snapshot:
        """The totals now, kept."""
        snapshot = self.now()
        with self._lock:
            self._snapshots.append(snapshot)
        return snapshot

    def snapshots(self) -> list[Snapshot]:
        with self._lock:
            return list(self._snapshots)

    def start(self) -> None:
        if self._thread is not None:
            return
        self.take()  # the window's start for the first requests
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="llmops-traffic", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.take()
            except Exception:  # a broken collector must not stop the sampling
                log.exception("sampling the gateway's traffic failed")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


@dataclass(frozen=True)
class Quantiles:
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    mean_ms: float | None


@dataclass(frozen=True)
class Point:
    """One interval between two snapshots."""

    start: datetime
    end: datetime
    requests: int
    errors: int
    p95_ms: float | None


@dataclass(frozen=True)
class Traffic:
    endpoint: str
    since: datetime
    until: datetime
    seconds: float
    requests: int
    outcomes: dict[str, int]
    requests_per_second: float
    error_rate: float | None
    duration: Quantiles
    first_byte: Quantiles
    prompt_tokens: int
    completion_tokens: int
    series: list[Point]


def _quantiles(counts: Counts, histogram: str) -> Quantiles:
    buckets = counts.buckets.get(histogram, {})
    total = max(buckets.values(), default=0.0)
    if total <= 0:
        return Quantiles(None, None, None, None)

    def ms(q: float) -> float | None:
        value = quantile(q, buckets)
        return None if value is None else value * 1000

    return Quantiles(ms(0.5), ms(0.95), ms(0.99), counts.sums.get(histogram, 0.0) / total * 1000)


def _start_of(snapshots: Iterable[Snapshot], since: float) -> Snapshot | None:
    """The newest snapshot at or before ``since`` (else the oldest: a window longer than
    this process has counted starts where its counting started)."""
    found: Snapshot | None = None
    for snapshot in snapshots:
        if snapshot.monotonic <= since or found is None:
            found = snapshot
        if snapshot.monotonic > since:
            break
    return found


def window(sampler: TrafficSampler, endpoint: str, seconds: float) -> Traffic:
    """``endpoint``'s traffic over the last ``seconds`` (at most an hour), from the
    snapshots and the totals now."""
    seconds = min(max(seconds, 1.0), KEEP_SECONDS)
    now = sampler.now()
    kept = sampler.snapshots()
    start = _start_of(kept, now.monotonic - seconds)
    base = start.counts.get(endpoint) if start is not None else None
    current = now.counts.get(endpoint, Counts())
    delta = current.minus(base)
    began = start if start is not None else now
    elapsed = max(now.monotonic - began.monotonic, 1e-9)
    series: list[Point] = []
    points = [s for s in kept if s.monotonic >= began.monotonic] + [now]
    for earlier, later in itertools.pairwise(points):
        step = later.counts.get(endpoint, Counts()).minus(earlier.counts.get(endpoint))
        series.append(
            Point(
                start=earlier.at,
                end=later.at,
                requests=step.requests,
                errors=step.failed,
                p95_ms=_quantiles(step, "duration").p95_ms,
            )
        )
    requests = delta.requests
    return Traffic(
        endpoint=endpoint,
        since=began.at,
        until=now.at,
        seconds=elapsed,
        requests=requests,
        outcomes={k: int(v) for k, v in sorted(delta.outcomes.items()) if v},
        requests_per_second=requests / elapsed,
        error_rate=delta.failed / requests if requests else None,
        duration=_quantiles(delta, "duration"),
        first_byte=_quantiles(delta, "first_byte"),
        prompt_tokens=int(delta.tokens.get("prompt", 0)),
        completion_tokens=int(delta.tokens.get("completion", 0)),
        series=series,
    )
