"""MlflowTracker: the tracking capability over MLflow's own client (``MlflowClient``).

* An experiment per name (created on first use, with the configured artifact location).
* A run carries its idempotency key as the tag ``llmops.idempotency_key``: creating a run
  first looks the key up in the experiment, so a redelivered creation (the outbox after
  a timeout, a retried request) returns the first run and never makes a second one.
* Metrics go in ``log_batch`` calls within MLflow's limits (1,000 metrics per request).
* MLflow's errors become the core's: an unknown run or experiment is ``NotFound``, a
  changed param ``Conflict``, a refused value ``InvalidRequest``, refused credentials
  (``PERMISSION_DENIED``, ``UNAUTHENTICATED``) ``IntegrationRejected`` (not retried), and
  a server that does not answer ``IntegrationUnavailable`` (the guard and the outbox
  retry those).
* Building a tracker contacts nothing: MLflow's client starts on first use (a call or
  ``health()``), in a background thread since ``import mlflow`` takes seconds; a start
  that failed is tried again by the next call.

MLflow's client retries a failed request for minutes by default; :func:`configure_client`
caps its retries and timeout so that no request handler waits on it (the outbox retries).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from prometheus_client import Counter
from pydantic import SecretStr

from llmops.capabilities.common import Health, HealthStatus
from llmops.capabilities.tracking import (
    ArtifactInfo,
    JobAccess,
    MetricPoint,
    RunInfo,
    RunPage,
    RunQuery,
    RunSpec,
    RunStatus,
    TrackerRequest,
    TrackerResponse,
)
from llmops.deadlines import deadline_remaining
from llmops.errors import (
    Conflict,
    IntegrationRejected,
    IntegrationUnavailable,
    InvalidRequest,
    LlmopsError,
    NotFound,
)
from llmops_mlflow import rules

if TYPE_CHECKING:
    from mlflow.entities import Experiment, Run
    from mlflow.store.entities.paged_list import PagedList
    from mlflow.tracking import MlflowClient

T = TypeVar("T")

#: the tag that holds a run's idempotency key
IDEMPOTENCY_TAG = "llmops.idempotency_key"
#: Tracking URIs that are databases MLflow opens itself (and migrates with Alembic)
SQL_SCHEMES = frozenset({"sqlite", "postgresql", "mysql", "mssql"})
#: How long a call waits for MLflow's client to start, and how long health waits before
#: it says "starting"
STARTUP_WAIT = 60.0
HEALTH_STARTUP_WAIT = 2.0
#: MLflow's limits for one log_batch request
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100
#: Experiments asked for per page when listing them all (MLflow's default page)
EXPERIMENTS_PAGE_SIZE = 1000
#: the ``source`` label of ``llmops_mlflow_metric_points``
POINT_SOURCES = ("platform", "job")
#: the proxied endpoints that log metric points (the job's ``log_metric(s)``)
_LOG_BATCH = "api/2.0/mlflow/runs/log-batch"
_LOG_METRIC = "api/2.0/mlflow/runs/log-metric"
#: MLflow's error codes for credentials it refused (the same call fails again), with the
#: HTTP status MLflow answers them with
REFUSED_CREDENTIALS = {"PERMISSION_DENIED": 403, "UNAUTHENTICATED": 401}
#: MLflow's error codes for what may succeed when tried again: no answer or a 5xx
#: (INTERNAL_ERROR), and its "try later" codes
TRANSIENT_CODES = frozenset(
    {
        "INTERNAL_ERROR",
        "TEMPORARILY_UNAVAILABLE",
        "DEADLINE_EXCEEDED",
        "REQUEST_LIMIT_EXCEEDED",
        "RESOURCE_EXHAUSTED",
        "ABORTED",
        "CANCELLED",
    }
)
#: How MLflow's client reports an error answer that was not its JSON
_BARE_STATUS = re.compile(r"failed with error code (\d{3}) != \d{3}")

_TO_MLFLOW = {
    RunStatus.SCHEDULED: "SCHEDULED",
    RunStatus.RUNNING: "RUNNING",
    RunStatus.FINISHED: "FINISHED",
    RunStatus.FAILED: "FAILED",
    RunStatus.KILLED: "KILLED",
}
_FROM_MLFLOW = {v: k for k, v in _TO_MLFLOW.items()}


def configure_client(*, request_timeout: float, max_retries: int = 0) -> None:
    """Cap MLflow's HTTP retries and timeout for this process (its client reads them from
    the environment on every request). A value the operator set is kept."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(max_retries))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(max(1, round(request_timeout))))
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _moment(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


def translate_mlflow_error(exc: BaseException, where: str) -> LlmopsError | None:
    """The core error for an MLflow failure, or None when ``exc`` is not one.

    Only what may succeed when tried again is ``IntegrationUnavailable`` (retried from the
    queue, counted by the circuit breaker): no answer, a 5xx, MLflow's own "try later"
    codes. A value MLflow's client or its local store cannot take (a step beyond 64 bits)
    fails the same way on every delivery: ``InvalidRequest``."""
    from mlflow.exceptions import MlflowException

    if not isinstance(exc, MlflowException):
        if isinstance(exc, OSError | TimeoutError):
            return IntegrationUnavailable(f"{where}: {exc}")
        if isinstance(exc, ValueError | OverflowError):
            # raised before anything is sent: protobuf's "Value out of range", ...
            return InvalidRequest(f"{where}: MLflow's client refused a value: {exc}")
        return None
    code = exc.error_code
    message = exc.message
    if code == "RESOURCE_DOES_NOT_EXIST":
        return NotFound(f"{where}: {message}")
    if code == "INVALID_PARAMETER_VALUE" and "Changing param values is not allowed" in message:
        return Conflict(f"{where}: {message}")
    if code in {"INVALID_PARAMETER_VALUE", "BAD_REQUEST", "INVALID_STATE"}:
        return InvalidRequest(f"{where}: {message}")
    if code == "RESOURCE_ALREADY_EXISTS":
        return Conflict(f"{where}: {message}")
    if code in REFUSED_CREDENTIALS:
        # the server answered (a JSON error, or a bare 401/403 from it or a proxy in front)
        # and will answer the same until the token or the permissions change
        return IntegrationRejected(
            f"{where}: MLflow refused the credentials: {message}",
            upstream_status=REFUSED_CREDENTIALS[code],
        )
    if code not in TRANSIENT_CODES:  # ENDPOINT_NOT_FOUND, NOT_IMPLEMENTED...: the same again
        status = int(exc.get_http_status_code())  # type: ignore[no-untyped-call]
        return IntegrationRejected(f"{where}: {message}", upstream_status=status)
    if _refused_value(exc):
        # MLflow's local store wraps what its database could not bind as INTERNAL_ERROR
        return InvalidRequest(f"{where}: MLflow's store refused a value: {message}")
    bare = _BARE_STATUS.search(message)
    if bare is not None and int(bare[1]) < 500 and int(bare[1]) not in {408, 429}:
        # a 4xx without MLflow's JSON (a proxy in front refusing a large request: 413)
        return IntegrationRejected(f"{where}: {message}", upstream_status=int(bare[1]))
    # the server did not answer, or answered 5xx: MLflow wraps those as INTERNAL_ERROR
    return IntegrationUnavailable(f"{where}: {message}")


def _refused_value(exc: BaseException) -> bool:
    """Whether what MLflow raised was caused by a value its store could not take: an
    ``OverflowError`` (SQLite's INTEGER), a ``ValueError``, or SQLAlchemy's
    ``DataError`` (PostgreSQL's "integer out of range")."""
    seen: set[int] = set()
    cause = exc.__cause__ or exc.__context__
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OverflowError | ValueError) or type(cause).__name__ == "DataError":
            return True
        cause = cause.__cause__ or cause.__context__
    return False


@dataclass
class _ClientStart:
    """One start of MLflow's client (in a background thread): done, then a client or the
    error that stopped it."""

    done: threading.Event = field(default_factory=threading.Event)
    client: MlflowClient | None = None
    error: BaseException | None = None

    @property
    def failed(self) -> bool:
        return self.done.is_set() and self.client is None


@dataclass
class _NameLock:
    """The lock of one experiment name being looked up or created, with its users."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    users: int = 0


class MlflowTracker:
    """A tracking provider on an MLflow tracking server or local store.

    Building one contacts nothing (``import mlflow`` included): MLflow's client starts on
    first use. ``migrations_lock`` is held while MLflow's SQL store migrates its database
    (the plugin passes :attr:`PluginContext.migrations_lock`, the lock the core's own
    Alembic migrations hold); a tracker built directly gets a lock of its own.
    """

    max_metrics_per_batch = MAX_METRICS_PER_BATCH
    #: experiments per page when listing them all (search over every experiment, metrics)
    experiments_page_size = EXPERIMENTS_PAGE_SIZE

    def __init__(
        self,
        tracking_uri: str,
        *,
        artifact_location: str | None = None,
        ui_url: str | None = None,
        request_timeout: float = 10.0,
        job_tracking_uri: str | None = None,
        token: SecretStr | None = None,
        migrations_lock: AbstractContextManager[Any] | None = None,
    ) -> None:
        configure_client(request_timeout=request_timeout)
        self.tracking_uri = tracking_uri
        self.job_tracking_uri = job_tracking_uri or tracking_uri
        self._token = token
        self.artifact_location = artifact_location
        self.ui_url = (ui_url or self._default_ui_url(tracking_uri) or "").rstrip("/") or None
        self._migrations_lock: AbstractContextManager[Any] = (
            migrations_lock if migrations_lock is not None else threading.RLock()
        )
        # experiment name <-> id, shared by every call; _cache_lock guards both maps and
        # _name_locks, and a name's own lock makes its lookup-or-create happen once
        self._cache_lock = threading.Lock()
        self._experiment_ids: dict[str, str] = {}
        self._experiment_names: dict[str, str] = {}
        self._name_locks: dict[str, _NameLock] = {}
        # `import mlflow` takes seconds: the client starts in the background on first use,
        # calls wait for it, health says "starting" meanwhile
        self._start_lock = threading.Lock()
        self._start: _ClientStart | None = None
        #: the metric points MLflow accepted from this tracker: ``platform`` (log_metrics)
        #: and ``job`` (a job's own client, through the platform's tracker proxy); the
        #: plugin registers it on /metrics with the runs collector
        self.metric_points = Counter(
            "llmops_mlflow_metric_points",
            "Metric points MLflow accepted through the platform, by source (platform: "
            "the tracker's log_metrics; job: a training job's client through the proxy)",
            ["source"],
            registry=None,
        )
        for source in POINT_SOURCES:
            self.metric_points.labels(source)

    # -- MLflow's client ---------------------------------------------------------------

    def _starting(self) -> _ClientStart:
        """The client's start: the one under way or done, or a new one (in a background
        thread) on first use and after one that failed."""
        with self._start_lock:
            start = self._start
            if start is None or start.failed:
                start = self._start = _ClientStart()
                threading.Thread(
                    target=self._run_start, args=(start,), name="mlflow-client", daemon=True
                ).start()
            return start

    def _run_start(self, start: _ClientStart) -> None:
        try:
            start.client = self._start_client()
        except BaseException as exc:  # reported by the calls and the health check waiting
            start.error = exc
        finally:
            start.done.set()

    def _start_client(self) -> MlflowClient:
        """Import MLflow and build its client (what the background thread runs). A client
        of a tracking server holds the tracker's token itself (:mod:`llmops_mlflow.client`):
        nothing goes through the process environment, which subprocesses inherit."""
        from mlflow.tracking import MlflowClient

        if self.tracking_uri.split(":", 1)[0].split("+", 1)[0] in SQL_SCHEMES:
            # MLflow's SQL store runs Alembic when it opens the database: not at the
            # same time as another migration in this process
            with self._migrations_lock:
                client = MlflowClient(tracking_uri=self.tracking_uri)
                client.search_experiments(max_results=1)
            return client
        if _is_server(self.tracking_uri):
            from llmops_mlflow.client import credentialed_client

            token = self._token.get_secret_value() if self._token is not None else None
            return credentialed_client(self.tracking_uri, token)
        return MlflowClient(tracking_uri=self.tracking_uri)

    @property
    def client(self) -> MlflowClient:
        """MLflow's client, started on first use; waits for it up to :data:`STARTUP_WAIT`
        (or the call's deadline, when sooner)."""
        start = self._starting()
        wait = min(STARTUP_WAIT, deadline_remaining(STARTUP_WAIT) or STARTUP_WAIT)
        if not start.done.wait(wait):
            raise IntegrationUnavailable("MLflow's client is still starting (importing mlflow)")
        return self._started_client(start)

    @staticmethod
    def _started_client(start: _ClientStart) -> MlflowClient:
        if start.client is None:
            error = start.error or RuntimeError("unknown error")
            raise IntegrationUnavailable(f"MLflow's client could not start: {_short(error)}")
        return start.client

    @staticmethod
    def _default_ui_url(tracking_uri: str) -> str | None:
        return tracking_uri if tracking_uri.startswith(("http://", "https://")) else None

    # -- plumbing --------------------------------------------------------------------

    @contextmanager
    def _errors(self, where: str) -> Iterator[None]:
        try:
            yield
        except LlmopsError:
            raise
        except Exception as exc:
            translated = translate_mlflow_error(exc, f"mlflow {where}")
            if translated is None:
                raise
            raise translated from exc

    def _call(self, where: str, fn: Callable[[], T]) -> T:
        with self._errors(where):
            return fn()

    # -- experiments -------------------------------------------------------------------

    def _remember(self, name: str, experiment_id: str) -> None:
        with self._cache_lock:
            self._experiment_ids[name] = experiment_id
            self._experiment_names[experiment_id] = name

    def _cached_id(self, name: str) -> str | None:
        with self._cache_lock:
            return self._experiment_ids.get(name)

    @contextmanager
    def _name_lock(self, name: str) -> Iterator[None]:
        """Hold ``name``'s own lock (other names go on); dropped when nobody holds it."""
        with self._cache_lock:
            entry = self._name_locks.setdefault(name, _NameLock())
            entry.users += 1
        try:
            with entry.lock:
                yield
        finally:
            with self._cache_lock:
                entry.users -= 1
                if entry.users == 0:
                    del self._name_locks[name]

    def _find_experiment(self, name: str) -> str | None:
        """The id of the experiment called ``name``, or None when there is none."""
        cached = self._cached_id(name)
        if cached is not None:
            return cached
        experiment = self._call("get experiment", lambda: self.client.get_experiment_by_name(name))
        if experiment is None:
            return None
        experiment_id = str(experiment.experiment_id)
        self._remember(name, experiment_id)
        return experiment_id

    def _ensure_experiment(self, name: str) -> str:
        """The id of the experiment called ``name``, created when there is none. Calls for
        the same new name wait for the first, so the experiment is created once."""
        cached = self._cached_id(name)
        if cached is not None:
            return cached
        with self._name_lock(name):
            found = self._find_experiment(name)  # the cache again, then MLflow
            if found is not None:
                return found
            experiment_id = self._create_experiment(name)
            self._remember(name, experiment_id)
            return experiment_id

    def _create_experiment(self, name: str) -> str:
        try:
            with self._errors("create experiment"):
                return str(
                    self.client.create_experiment(name, artifact_location=self.artifact_location)
                )
        except Conflict:  # created meanwhile by another process: use that one
            again = self._call("get experiment", lambda: self.client.get_experiment_by_name(name))
            if again is None:
                raise
            return str(again.experiment_id)

    def _experiment_name(self, experiment_id: str) -> str:
        with self._cache_lock:
            cached = self._experiment_names.get(experiment_id)
        if cached is not None:
            return cached
        experiment = self._call("get experiment", lambda: self.client.get_experiment(experiment_id))
        name = str(experiment.name)
        self._remember(name, experiment_id)
        return name

    def experiments(self) -> dict[str, str]:
        """Every active experiment, id to name, following MLflow's page tokens (pages of
        :attr:`experiments_page_size`)."""
        found: dict[str, str] = {}
        token: str | None = None
        while True:
            page = self._experiments_page(token)
            for experiment in page:
                found[str(experiment.experiment_id)] = str(experiment.name)
            token = page.token
            if not token:
                break
        for experiment_id, name in found.items():
            self._remember(name, experiment_id)
        return found

    def _experiments_page(self, token: str | None) -> PagedList[Experiment]:
        return self._call(
            "search experiments",
            lambda: self.client.search_experiments(
                max_results=self.experiments_page_size, page_token=token
            ),
        )

    def _info(self, run: Run) -> RunInfo:
        data, info = run.data, run.info
        return RunInfo(
            run_id=info.run_id,
            experiment_id=info.experiment_id,
            experiment_name=self._experiment_name(info.experiment_id),
            name=info.run_name or "",
            status=_FROM_MLFLOW.get(info.status, RunStatus.RUNNING),
            start_time=_moment(info.start_time),
            end_time=_moment(info.end_time),
            params=dict(data.params),
            tags={k: v for k, v in data.tags.items() if not k.startswith("mlflow.")},
            latest_metrics={k: float(v) for k, v in data.metrics.items()},
            artifact_uri=info.artifact_uri,
            ui_url=self._url(info.experiment_id, info.run_id),
        )

    def _url(self, experiment_id: str, run_id: str) -> str | None:
        if self.ui_url is None:
            return None
        return f"{self.ui_url}/#/experiments/{quote(experiment_id)}/runs/{quote(run_id)}"

    # -- runs ------------------------------------------------------------------------

    def create_run(self, spec: RunSpec) -> RunInfo:
        experiment_id = self._ensure_experiment(spec.experiment)
        if spec.idempotency_key:
            existing = self._run_with_key(experiment_id, spec.idempotency_key)
            if existing is not None:
                return self._info(existing)
        tags = dict(spec.tags)
        if spec.idempotency_key:
            tags[IDEMPOTENCY_TAG] = spec.idempotency_key
        run = self._call(
            "create run",
            lambda: self.client.create_run(experiment_id, run_name=spec.run_name, tags=tags),
        )
        if spec.params:
            self.log_params(run.info.run_id, spec.params)
        return self.get_run(run.info.run_id)

    def _run_with_key(self, experiment_id: str, key: str) -> Run | None:
        escaped = key.replace("\\", "\\\\").replace("'", "\\'")
        found = self._call(
            "search runs",
            lambda: self.client.search_runs(
                [experiment_id],
                filter_string=f"tags.`{IDEMPOTENCY_TAG}` = '{escaped}'",
                max_results=2,
                order_by=["attributes.start_time ASC"],
            ),
        )
        return found[0] if found else None

    def get_run(self, run_id: str) -> RunInfo:
        return self._info(self._call("get run", lambda: self.client.get_run(run_id)))

    def end_run(self, run_id: str, status: RunStatus) -> RunInfo:
        self._call(
            "end run",
            lambda: self.client.set_terminated(
                run_id, status=_TO_MLFLOW[status], end_time=int(time.time() * 1000)
            ),
        )
        return self.get_run(run_id)

    def log_params(self, run_id: str, params: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)) for k, v in params.items()]
        if len(items) <= MAX_PARAMS_PER_BATCH:
            # one request: MLflow itself refuses an unknown run (NotFound) and a changed
            # value (Conflict), and logs nothing of a refused batch
            with self._errors("log params"):
                self.client.log_batch(run_id, params=items)
            return
        # several requests: check every value first, so a refusal leaves nothing half-logged
        current = self.get_run(run_id).params
        changed = [p.key for p in items if p.key in current and current[p.key] != p.value]
        if changed:
            raise Conflict(
                f"mlflow log params: changing logged params is not allowed ({', '.join(changed)})"
            )
        fresh = [p for p in items if p.key not in current]
        for start in range(0, len(fresh), MAX_PARAMS_PER_BATCH):
            chunk = fresh[start : start + MAX_PARAMS_PER_BATCH]
            with self._errors("log params"):
                self.client.log_batch(run_id, params=chunk)

    def log_metrics(self, run_id: str, metrics: Sequence[MetricPoint]) -> None:
        from mlflow.entities import Metric

        if not metrics:
            self.get_run(run_id)
            return
        entities = [Metric(m.key, float(m.value), _ms(m.timestamp), m.step) for m in metrics]
        for start in range(0, len(entities), MAX_METRICS_PER_BATCH):
            chunk = entities[start : start + MAX_METRICS_PER_BATCH]
            with self._errors("log metrics"):
                self.client.log_batch(run_id, metrics=chunk)
            self.metric_points.labels("platform").inc(len(chunk))

    def metric_history(self, run_id: str, key: str) -> list[MetricPoint]:
        self.get_run(run_id)
        history = self._call("metric history", lambda: self.client.get_metric_history(run_id, key))
        points = [
            MetricPoint(
                key=m.key,
                value=m.value,
                step=m.step,
                timestamp=_moment(m.timestamp) or datetime.now(UTC),
            )
            for m in history
        ]
        return sorted(points, key=lambda p: (p.step, p.timestamp))

    # -- artifacts -------------------------------------------------------------------

    def log_artifact(
        self, run_id: str, local_path: Path, artifact_path: str | None = None
    ) -> ArtifactInfo:
        path = Path(local_path)
        if path.is_dir():  # the folder keeps its name, as a file does
            folder = f"{artifact_path.strip('/')}/{path.name}" if artifact_path else path.name
            self._call(
                "log artifacts", lambda: self.client.log_artifacts(run_id, str(path), folder)
            )
            return ArtifactInfo(path=folder, is_dir=True)
        self._call(
            "log artifact", lambda: self.client.log_artifact(run_id, str(path), artifact_path)
        )
        target = f"{artifact_path.strip('/')}/{path.name}" if artifact_path else path.name
        return ArtifactInfo(path=target, is_dir=False, size_bytes=path.stat().st_size)

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[ArtifactInfo]:
        listed = self._call("list artifacts", lambda: self.client.list_artifacts(run_id, path))
        return [
            ArtifactInfo(path=item.path, is_dir=item.is_dir, size_bytes=item.file_size)
            for item in listed
        ]

    # -- what MLflow refuses ---------------------------------------------------------

    def validate_run_write(
        self,
        *,
        experiment: str | None = None,
        params: Mapping[str, str] | None = None,
        metrics: Sequence[MetricPoint] = (),
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """MLflow's rules for names, lengths and ranges (:mod:`llmops_mlflow.rules`),
        checked without its client, so the core refuses such a write before it is queued
        (``ValidatesRunWrites``)."""
        rules.validate_run_write(experiment=experiment, params=params, metrics=metrics, tags=tags)

    # -- search ----------------------------------------------------------------------

    def search_runs(self, query: RunQuery) -> RunPage:
        if query.experiments:
            ids = [
                i for i in (self._find_experiment(n) for n in query.experiments) if i is not None
            ]
        else:
            ids = list(self.experiments())
        if not ids:
            return RunPage(runs=[])
        found = self._call(
            "search runs",
            lambda: self.client.search_runs(
                ids,
                filter_string=query.filter,
                order_by=list(query.order_by) or None,
                max_results=query.page_size,
                page_token=query.page_token,
            ),
        )
        return RunPage(runs=[self._info(r) for r in found], next_page_token=found.token or None)

    def job_environment(self, run_id: str, access: JobAccess) -> dict[str, str | SecretStr]:
        """What a training job needs so that ``mlflow`` in its process logs into its run:
        ``mlflow.start_run()`` resumes MLFLOW_RUN_ID.

        A job reaches MLflow directly (``job_tracking_uri``) only when that needs nothing
        of the platform's: a tracking server this process reaches without credentials.
        Otherwise (a token, basic auth, a local store in the platform's data dir) its
        client goes through the platform's proxy with the job's own token, and the
        integration's credentials stay here (:meth:`job_request`)."""
        environment: dict[str, str | SecretStr] = {
            "MLFLOW_RUN_ID": run_id,
            # a job keeps MLflow's own retries, which the platform's process turns off
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "7",
            "MLFLOW_HTTP_REQUEST_TIMEOUT": "120",
        }
        if self._job_reaches_mlflow_directly():
            environment["MLFLOW_TRACKING_URI"] = self.job_tracking_uri
        else:
            environment["MLFLOW_TRACKING_URI"] = access.tracker_url
            environment["MLFLOW_TRACKING_TOKEN"] = access.token
        return environment

    def _job_reaches_mlflow_directly(self) -> bool:
        if not _is_server(self.tracking_uri) or self._token is not None:
            return False
        self.client  # noqa: B018 -- started: MLflow is imported off the caller's thread
        from llmops_mlflow.client import has_credentials

        return not has_credentials(self.tracking_uri, None)

    def job_request(self, run_id: str, request: TrackerRequest) -> TrackerResponse:
        """Serve a request of the job's own MLflow client (through the platform's proxy)
        for its run ``run_id`` only, with this tracker's client and credentials; see
        :mod:`llmops_mlflow.job_access` for what is offered."""
        from llmops_mlflow.job_access import serve

        client = self.client
        with self._errors("job request"):
            answer = serve(client, run_id, request)
        if answer.status == 200:
            self.metric_points.labels("job").inc(_points_in(request))
        return answer

    def run_url(self, run_id: str) -> str | None:
        if self.ui_url is None:
            return None
        run = self._call("get run", lambda: self.client.get_run(run_id))
        return self._url(run.info.experiment_id, run_id)

    # -- health ----------------------------------------------------------------------

    def health(self) -> Health:
        """A real request to the tracking server (or store): list one experiment. Starts
        MLflow's client when it has not started (or its last start failed)."""
        started = time.perf_counter()
        start = self._starting()
        if not start.done.wait(HEALTH_STARTUP_WAIT):
            return Health(
                status=HealthStatus.DEGRADED,
                detail="starting: MLflow's client is still loading",
                latency_ms=(time.perf_counter() - started) * 1000,
            )
        try:
            self._started_client(start).search_experiments(max_results=1)
        except Exception as exc:  # every failure is a DOWN with its reason
            return Health(
                status=HealthStatus.DOWN,
                detail=f"MLflow at {self.tracking_uri} failed the check: {_short(exc)}",
                latency_ms=(time.perf_counter() - started) * 1000,
            )
        return Health(
            status=HealthStatus.OK,
            detail=f"MLflow tracking at {self.tracking_uri}",
            latency_ms=(time.perf_counter() - started) * 1000,
        )


def _points_in(request: TrackerRequest) -> int:
    """The metric points a proxied request MLflow accepted logged (its body was read as
    MLflow's message, or it would not have been accepted)."""
    path = request.path.strip("/")
    if path == _LOG_METRIC:
        return 1
    if path == _LOG_BATCH and isinstance(request.body, dict):
        metrics = request.body.get("metrics")
        return len(metrics) if isinstance(metrics, list) else 0
    return 0


def _is_server(tracking_uri: str) -> bool:
    """Whether the tracking URI is an MLflow tracking server (MLflow's REST API)."""
    return tracking_uri.split(":", 1)[0].lower() in {"http", "https"}


def _short(exc: BaseException) -> str:
    """What went wrong, in one line and without what the server answered.

    MLflow quotes the answer in its errors (``Response body: '...'``, a JSON error's
    message, the field it could not parse), and a tracking URI may name any server:
    MLflow's error code and the HTTP status say what happened instead.
    """
    code = getattr(exc, "error_code", None)
    status = getattr(exc, "get_http_status_code", lambda: None)()
    if isinstance(getattr(exc, "json", None), dict):  # RestException: the server's own error
        phrase = _status_phrase(status)
        return f"MLflow answered {code}" + (f" (HTTP {status}{phrase})" if status else "")
    if type(exc).__module__.startswith("google.protobuf"):  # an answer that is not MLflow's
        return f"the answer is not MLflow's ({type(exc).__name__})"
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    text = text.split("Response body:", 1)[0].rstrip(" .")
    return text[:300]


def _status_phrase(status: object) -> str:
    try:
        return f" {HTTPStatus(int(str(status))).phrase}"
    except ValueError:
        return ""
