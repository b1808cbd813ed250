"""Prometheus metrics about what MLflow holds (the spec's MLflow exporter): runs by
experiment and status, and whether MLflow answered.

``collect()`` must be quick and must not raise (``/metrics`` is scraped every few
seconds), while counting runs means paging through MLflow's search (at most
:data:`MAX_RUNS_COUNTED` runs). So the collector serves the last counts it made and, when
they are older than ``max_age`` seconds, starts one refresh in a background thread (never
a second while one runs); the first scrape after start-up may be empty. A scrape never
waits on MLflow: while MLflow hangs, the last counts are served and
``llmops_mlflow_count_age_seconds`` grows.

The metric points MLflow accepted are counted by the tracker itself where it sends them
(``MlflowTracker.metric_points``); the collector serves that counter too, as
``llmops_mlflow_metric_points_total``. The latency and errors of tracking calls are the
guard's (``llmops_integration_call_duration_seconds``, ``llmops_integration_errors_total``
with ``plugin="mlflow"``).

The collector reads through the plugin's tracking provider (the same tracker, the same
MLflow client): it never builds a client of its own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from llmops_mlflow.tracker import MlflowTracker

log = logging.getLogger(__name__)

#: at most this many runs are counted per refresh; more are reported as truncated
MAX_RUNS_COUNTED = 50_000


class MlflowRunsCollector(Collector):
    def __init__(self, tracker: MlflowTracker, *, max_age: float = 30.0) -> None:
        self.tracker = tracker
        self.max_age = max_age
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()
        self._up: float | None = None
        self._refreshed_at = 0.0
        self._duration = 0.0
        self._truncated = False
        self._refreshing = False

    # -- counting ----------------------------------------------------------------------

    def refresh(self) -> None:
        """Count runs by experiment and status now (what the background thread runs)."""
        started = time.perf_counter()
        counts: Counter[tuple[str, str]] = Counter()
        truncated = False
        try:
            names = self.tracker.experiments()  # every page of them
            client = self.tracker.client
            seen = 0
            token: str | None = None
            while names:
                page = client.search_runs(list(names), max_results=1000, page_token=token)
                for run in page:
                    counts[(names.get(run.info.experiment_id, "?"), run.info.status.lower())] += 1
                seen += len(page)
                token = page.token
                if not token:
                    break
                if seen >= MAX_RUNS_COUNTED:
                    truncated = True
                    break
            up = 1.0
        except Exception as exc:  # reported as mlflow_up 0; the last counts are kept
            log.warning("counting MLflow runs failed: %s", exc)
            up = 0.0
        with self._lock:
            if up:
                self._counts = counts
                self._truncated = truncated
            self._up = up
            self._duration = time.perf_counter() - started
            self._refreshed_at = time.monotonic()
            self._refreshing = False

    def _refresh_if_stale(self) -> None:
        with self._lock:
            stale = time.monotonic() - self._refreshed_at > self.max_age or self._up is None
            if not stale or self._refreshing:
                return
            self._refreshing = True
        threading.Thread(target=self.refresh, name="llmops-mlflow-metrics", daemon=True).start()

    # -- Collector ---------------------------------------------------------------------

    def describe(self) -> Iterator[Metric]:
        """The metrics' names, without counting: a registry asks for them when the
        collector is registered, which must not reach MLflow (else it calls collect())."""
        yield _runs()
        yield _up()
        yield _count_seconds()
        yield _count_age()
        yield _truncated()
        yield from self.tracker.metric_points.describe()

    def collect(self) -> Iterator[Metric]:
        self._refresh_if_stale()
        with self._lock:
            counts = dict(self._counts)
            up, duration, truncated = self._up, self._duration, self._truncated
            age = time.monotonic() - self._refreshed_at
        runs = _runs()
        for (experiment, status), count in sorted(counts.items()):
            runs.add_metric([experiment, status], count)
        yield runs
        if up is not None:
            yield _up(up)
            yield _count_seconds(duration)
            yield _count_age(age)
            yield _truncated(1.0 if truncated else 0.0)
        yield from self.tracker.metric_points.collect()


def _runs() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "llmops_mlflow_runs",
        "Runs in MLflow by experiment and status (counted in the background)",
        labels=["experiment", "status"],
    )


def _up(value: float | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "llmops_mlflow_up", "1 when the last count reached MLflow, else 0", value=value
    )


def _count_seconds(value: float | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "llmops_mlflow_count_seconds", "How long the last count took", value=value
    )


def _count_age(value: float | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "llmops_mlflow_count_age_seconds",
        "Seconds since the last count ended (it grows while MLflow does not answer)",
        value=value,
    )


def _truncated(value: float | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "llmops_mlflow_runs_truncated",
        f"1 when more than {MAX_RUNS_COUNTED} runs exist and the count stopped there",
        value=value,
    )
