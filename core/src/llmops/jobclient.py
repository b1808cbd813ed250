"""The client a training job's process uses to talk to the platform that started it.

The platform hands a job its whereabouts through the environment: ``LLMOPS_API_URL``,
``LLMOPS_JOB_ID`` and a token scoped to the job, ``LLMOPS_JOB_TOKEN``; and what to work
on: ``LLMOPS_HYPERPARAMETERS`` (a JSON object), ``LLMOPS_DATASET_PATH`` and
``LLMOPS_OUTPUT_DIR``. :meth:`JobClient.from_env` reads them; run outside the platform, the
client logs nothing and says so once on stderr, so the same script runs anywhere.

Metric points are buffered with their own UTC timestamps and sent in one request per
:data:`MAX_POINTS_PER_REQUEST`. Because a point carries its timestamp, a request re-sent
after a lost answer carries identical points, which trackers such as MLflow store once;
so connection errors, 5xx and 429 answers are retried with backoff.

Only httpx, a dependency of the core, is imported here, so a job can use this module
without the rest of the platform.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

import httpx

API_PREFIX = "/llm-ops/v1"
#: The platform takes 1 to 10000 points in one request.
MAX_POINTS_PER_REQUEST = 10_000
#: Points kept while the platform cannot be reached; the oldest are dropped beyond this.
MAX_PENDING_POINTS = 200_000
#: The longest pause between automatic flushes after failures (seconds).
MAX_FLUSH_BACKOFF = 300.0

ENV_API_URL = "LLMOPS_API_URL"
ENV_JOB_ID = "LLMOPS_JOB_ID"
ENV_JOB_TOKEN = "LLMOPS_JOB_TOKEN"  # noqa: S105 - the variable's name, not a secret
ENV_HYPERPARAMETERS = "LLMOPS_HYPERPARAMETERS"
ENV_DATASET_PATH = "LLMOPS_DATASET_PATH"
ENV_OUTPUT_DIR = "LLMOPS_OUTPUT_DIR"


class MetricsNotDelivered(Exception):
    """A flush that did not deliver every point.

    ``retryable`` tells whether the points are still buffered (the platform could not be
    reached, or answered 5xx/429, on every attempt) or were dropped (the platform refused
    them: a 4xx answer that re-sending would not change).
    """

    def __init__(self, message: str, *, points: int, retryable: bool) -> None:
        super().__init__(message)
        self.points = points
        self.retryable = retryable


@dataclass(frozen=True)
class MetricPoint:
    key: str
    value: float
    step: int
    timestamp: datetime

    def to_json(self) -> dict[str, Any]:
        stamp = self.timestamp.astimezone(UTC).isoformat(timespec="milliseconds")
        return {
            "key": self.key,
            "value": self.value,
            "step": self.step,
            "timestamp": stamp.replace("+00:00", "Z"),
        }


@dataclass(frozen=True)
class _Target:
    api_url: str
    job_id: str
    token: str


class JobClient:
    """Logs a training job's metrics to its platform; use :meth:`from_env` in a job.

    Points are flushed when ``flush_every`` points are waiting, or when a point is logged
    ``flush_interval`` seconds or more after the last flush; :meth:`close` (or leaving the
    ``with`` block) flushes the rest. An automatic flush that fails reports on stderr and
    keeps the points; the next one waits ``flush_interval`` times 2, 4, 8... seconds (at
    most :data:`MAX_FLUSH_BACKOFF`), so a platform that is away does not slow training
    down. An explicit :meth:`flush` raises :class:`MetricsNotDelivered` instead. One client
    serves one thread: a training loop logs, flushes and closes from where it runs.

    :param http: the httpx client to send with (say, one with a test transport); the
        client makes and closes its own when none is given.
    """

    def __init__(
        self,
        api_url: str | None,
        job_id: str | None,
        token: str | None,
        *,
        http: httpx.Client | None = None,
        flush_every: int = 100,
        flush_interval: float = 10.0,
        retries: int = 4,
        backoff: float = 0.5,
        timeout: float = 30.0,
        stderr: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if flush_every < 1:
            raise ValueError("flush_every must be at least 1")
        given = {ENV_API_URL: api_url, ENV_JOB_ID: job_id, ENV_JOB_TOKEN: token}
        #: the platform's variables that were missing (the client then logs nothing)
        self.missing: tuple[str, ...] = tuple(name for name, value in given.items() if not value)
        self._target = (
            _Target(api_url.rstrip("/"), job_id, token) if api_url and job_id and token else None
        )
        self._own_http = http is None and self._target is not None
        self._http = http if http is not None else None
        self._timeout = timeout
        self.flush_every = flush_every
        self.flush_interval = flush_interval
        self.retries = retries
        self.backoff = backoff
        self._stderr = stderr
        self._clock = clock
        self._sleep = sleep
        self._pending: list[MetricPoint] = []
        self._next_auto_flush = clock() + flush_interval
        self._auto_failures = 0
        self._said_disabled = False
        self._closed = False
        #: points the platform acknowledged (200 or 202)
        self.delivered = 0
        #: points given up on: refused by the platform, or over :data:`MAX_PENDING_POINTS`
        self.dropped = 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **options: Any) -> JobClient:
        """The client of the job this process runs for. Where the platform's variables
        are missing, a client that logs nothing (and says so once on stderr)."""
        env = os.environ if environ is None else environ
        return cls(env.get(ENV_API_URL), env.get(ENV_JOB_ID), env.get(ENV_JOB_TOKEN), **options)

    # -- state ----------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        """Whether points go anywhere: false when the platform's variables are missing."""
        return self._target is not None

    @property
    def job_id(self) -> str | None:
        return self._target.job_id if self._target else None

    @property
    def pending(self) -> int:
        """Points logged and not yet acknowledged."""
        return len(self._pending)

    # -- logging --------------------------------------------------------------------------

    def log_metric(self, key: str, value: float, step: int = 0) -> None:
        """Buffer one point, stamped now (UTC); flush when enough points or time passed.

        :raises ValueError: for an empty or over-long key, or a value that is not finite
            (JSON cannot carry NaN or infinity).
        """
        if not key or len(key) > 250:
            raise ValueError(f"a metric key has 1 to 250 characters, got {key!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"metric {key!r} at step {step} is not finite: {value}")
        if self._closed:
            raise RuntimeError("the job client is closed")
        if self._target is None:
            self._say_disabled()
            return
        self._pending.append(MetricPoint(key, value, int(step), datetime.now(UTC)))
        if len(self._pending) > MAX_PENDING_POINTS:
            excess = len(self._pending) - MAX_PENDING_POINTS
            del self._pending[:excess]
            self.dropped += excess
            self._warn(f"over {MAX_PENDING_POINTS} points waiting: dropped the {excess} oldest")
        due = self._clock() >= self._next_auto_flush
        if due or (len(self._pending) >= self.flush_every and not self._auto_failures):
            self._auto_flush()  # after a failure, only once its wait is over

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """Several keys at one step."""
        for key, value in metrics.items():
            self.log_metric(key, value, step)

    def flush(self) -> int:
        """Send every buffered point, in requests of at most
        :data:`MAX_POINTS_PER_REQUEST`. Returns how many points were acknowledged.

        :raises MetricsNotDelivered: when a request failed; points the platform refused are
            dropped, those it could not take (unreachable, 5xx, 429) stay buffered.
        """
        if self._target is None or not self._pending:
            return 0
        sent = 0
        while self._pending:
            batch = self._pending[:MAX_POINTS_PER_REQUEST]
            try:
                self._deliver(self._target, batch)
            except MetricsNotDelivered as exc:
                if not exc.retryable:
                    del self._pending[: len(batch)]
                    self.dropped += len(batch)
                raise
            del self._pending[: len(batch)]
            self.delivered += len(batch)
            sent += len(batch)
        return sent

    def close(self) -> None:
        """Flush what is left (reporting on stderr what could not be delivered), then
        release the HTTP client. Closing twice does nothing."""
        if self._closed:
            return
        try:
            if self._pending:
                try:
                    self.flush()
                except MetricsNotDelivered as exc:
                    self._warn(f"{exc}")
                if self._pending:
                    self.dropped += len(self._pending)
                    self._warn(f"{len(self._pending)} metric points were not delivered")
                    self._pending.clear()
        finally:
            self._closed = True
            if self._own_http and self._http is not None:
                self._http.close()

    def __enter__(self) -> JobClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- sending --------------------------------------------------------------------------

    def _client(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(timeout=self._timeout)
        return self._http

    def _auto_flush(self) -> None:
        try:
            self.flush()
        except MetricsNotDelivered as exc:
            self._auto_failures += 1
            wait = min(MAX_FLUSH_BACKOFF, self.flush_interval * 2.0**self._auto_failures)
            self._next_auto_flush = self._clock() + wait
            self._warn(f"{exc}; {self.pending} points wait, next try in {wait:.0f}s")
            return
        self._auto_failures = 0
        self._next_auto_flush = self._clock() + self.flush_interval

    def _deliver(self, target: _Target, batch: list[MetricPoint]) -> None:
        url = f"{target.api_url}{API_PREFIX}/training/jobs/{target.job_id}/experiment-run"
        body = {"metrics": [point.to_json() for point in batch]}
        response = self._post(target, f"{url}/metrics", body, len(batch))
        if response.status_code == 404 and _problem(response).get("resource") == "experiment-run":
            # The job has no run yet: create it (one per job; asking again returns it).
            created = self._post(target, url, {}, len(batch))
            if created.status_code not in (200, 201, 202):
                raise self._refused(created, len(batch), "creating the job's experiment run")
            response = self._post(target, f"{url}/metrics", body, len(batch))
        if response.status_code not in (200, 202):
            raise self._refused(response, len(batch), "logging metrics")

    def _post(self, target: _Target, url: str, body: dict[str, Any], points: int) -> httpx.Response:
        """POST with retries on connection errors, 5xx and 429; the last answer or error
        decides."""
        headers = {"Authorization": f"Bearer {target.token}"}
        last_error = ""
        retry_after: float | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                self._sleep(self._delay(attempt, retry_after))
            retry_after = None
            try:
                response = self._client().post(url, json=body, headers=headers)
            except httpx.TransportError as exc:
                last_error = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code == 429 or response.status_code >= 500:
                last_error = f"HTTP {response.status_code}: {_detail(response)}"
                retry_after = _retry_after(response)
                continue
            return response
        raise MetricsNotDelivered(
            f"could not reach the platform at {target.api_url} after {self.retries + 1} "
            f"attempts ({last_error}); {points} points kept",
            points=points,
            retryable=True,
        )

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        delay = min(8.0, self.backoff * 2.0 ** (attempt - 1))
        if retry_after is not None:
            delay = max(delay, min(retry_after, 30.0))
        return delay

    @staticmethod
    def _refused(response: httpx.Response, points: int, doing: str) -> MetricsNotDelivered:
        return MetricsNotDelivered(
            f"the platform refused {doing} (HTTP {response.status_code}: "
            f"{_detail(response)}); {points} points dropped",
            points=points,
            retryable=False,
        )

    # -- reporting ------------------------------------------------------------------------

    def _say_disabled(self) -> None:
        if not self._said_disabled:
            self._said_disabled = True
            self._warn(
                f"{', '.join(self.missing)} not set (not run by the platform?): "
                "metrics are not logged"
            )

    def _warn(self, message: str) -> None:
        stream = self._stderr if self._stderr is not None else sys.stderr
        print(f"llmops jobclient: {message}", file=stream, flush=True)


def _problem(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _detail(response: httpx.Response) -> str:
    problem = _problem(response)
    detail = problem.get("detail") or problem.get("title")
    return str(detail) if detail else response.text[:200]


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None


# -- what the job works on ----------------------------------------------------------------


def hyperparameters(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The job's hyperparameters (``LLMOPS_HYPERPARAMETERS``); empty when unset.

    :raises ValueError: when the variable holds anything but a JSON object.
    """
    env = os.environ if environ is None else environ
    raw = env.get(ENV_HYPERPARAMETERS, "").strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{ENV_HYPERPARAMETERS} is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ValueError(f"{ENV_HYPERPARAMETERS} is not a JSON object: {raw[:100]}")
    return value


def dataset_path(environ: Mapping[str, str] | None = None) -> Path | None:
    """The folder holding the job's dataset files (``LLMOPS_DATASET_PATH``), if any."""
    env = os.environ if environ is None else environ
    value = env.get(ENV_DATASET_PATH)
    return Path(value) if value else None


def output_dir(environ: Mapping[str, str] | None = None) -> Path | None:
    """The folder the job writes its outputs to (``LLMOPS_OUTPUT_DIR``), if any; the
    platform keeps what is there as the run's artifacts when the job ends."""
    env = os.environ if environ is None else environ
    value = env.get(ENV_OUTPUT_DIR)
    return Path(value) if value else None
