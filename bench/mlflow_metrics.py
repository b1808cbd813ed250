"""``mlflow-metrics``: logging a training job's metric points into MLflow through the
platform, against MLflow's own client, on one real ``mlflow server`` and one real
``llmops up`` (MLflow plugin on).

The claim it checks (mlflow#5269): logging one metric per request is many times slower
than batching, and the platform batches. Every path logs the same points (one key,
``loss``, steps 0..N-1, explicit timestamps) into a fresh run:

* platform: one ``POST /training/jobs/{id}/experiment-run/metrics`` with all N points
  into the run of a training job, timed until its 200 answer, which means the points
  were written durably and delivered to MLflow (in ``log_batch`` calls of at most 1,000);
* direct batch: ``MlflowClient.log_batch`` in chunks of 1,000;
* direct per point: ``MlflowClient.log_metric``, one call per point.

At the end every run's history is read back from MLflow: each must hold exactly its N
points, so nothing was dropped on any path.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import (
    PartialFailure,
    Result,
    Stats,
    alternate,
    describe,
    environment,
    fmt_seconds,
)

from llmops.testing.waiting import wait_for

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from llmops.testing.console import ConsoleServer

NAME = "mlflow-metrics"
API = "/llm-ops/v1"
KEY = "loss"
#: points per run in the batch case (one platform request, one log_batch call)
BATCH_POINTS = 1000
#: points per run in the per-point case: at 15-25 ms a log_metric call on a 2-core machine,
#: 1,000 points would take 15-25 s a round
PER_POINT_POINTS = 200
#: MLflow's limit for one log_batch request
MAX_METRICS_PER_BATCH = 1000
DEFAULT_BATCH_ROUNDS = 10
DEFAULT_PER_POINT_ROUNDS = 3
WARMUP = 1
#: The platform's path above 3x MLflow's own batch call needs a look
SUSPICIOUS_BATCH_RATIO = 3.0
#: A job that only waits to be cancelled: it holds its experiment run open
JOB_COMMAND = [sys.executable, "-c", "import time; time.sleep(600)"]


def _timestamp_ms(base_ms: int, step: int) -> int:
    return base_ms + step


def _platform_body(points: int, base_ms: int) -> dict[str, Any]:
    return {
        "metrics": [
            {
                "key": KEY,
                "value": 1.0 / (step + 1),
                "step": step,
                "timestamp": datetime.fromtimestamp(
                    _timestamp_ms(base_ms, step) / 1000, tz=UTC
                ).isoformat(timespec="milliseconds"),
            }
            for step in range(points)
        ]
    }


@dataclass
class Job:
    id: str
    run_id: str


@dataclass
class Logged:
    """A run that got ``points`` points on one path, to check against MLflow at the end."""

    path: str
    run_id: str
    points: int


@dataclass
class Bench:
    platform: ConsoleServer
    client: MlflowClient
    experiment_id: str
    base_ms: int
    jobs: list[Job] = field(default_factory=list)
    #: jobs whose run has no point yet: each platform round takes one
    fresh: list[Job] = field(default_factory=list)
    logged: list[Logged] = field(default_factory=list)

    # -- set-up ------------------------------------------------------------------------

    def submit_jobs(self, count: int) -> None:
        """``count`` training jobs, each with its MLflow run, all running before any timing
        (a job's process starting would otherwise share the CPU with a timed request)."""
        for _ in range(count):
            name = f"bench-metrics-{len(self.jobs)}"
            answer = self.platform.api.post(
                f"{API}/training/jobs", json={"name": name, "command": JOB_COMMAND}
            )
            if answer.status_code != 201:
                raise RuntimeError(f"POST training/jobs: {answer.status_code} {answer.text[:500]}")
            job_id = answer.json()["id"]
            self.jobs.append(Job(job_id, self._run_of(job_id)))
        self.fresh.extend(self.jobs)
        for job in self.jobs:
            wait_for(
                lambda job=job: self._running(job.id),
                timeout=60,
                interval=0.1,
                what=f"training job {job.id} to run",
            )

    def _running(self, job_id: str) -> bool:
        status = self._job_status(job_id)
        if status in {"failed", "cancelled", "succeeded"}:
            raise RuntimeError(f"training job {job_id} is {status}, not running")
        return status == "running"

    def _job_status(self, job_id: str) -> str:
        answer = self.platform.api.get(f"{API}/training/jobs/{job_id}")
        if answer.status_code != 200:
            raise RuntimeError(f"GET training/jobs/{job_id}: {answer.status_code} {answer.text}")
        return str(answer.json()["status"])

    def _run_of(self, job_id: str) -> str:
        """The job's MLflow run id (made on submission; waited for if it was queued)."""

        def external_id() -> str | None:
            answer = self.platform.api.get(f"{API}/training/jobs/{job_id}/experiment-run")
            if answer.status_code != 200:
                raise RuntimeError(
                    f"GET experiment-run of {job_id}: {answer.status_code} {answer.text}"
                )
            found = answer.json().get("externalId")
            return str(found) if found else None

        return wait_for(
            external_id, timeout=30, interval=0.1, what=f"training job {job_id}'s MLflow run"
        )

    def cancel_jobs(self) -> list[str]:
        """Cancel every job submitted; the jobs that did not take it, as notes."""
        problems: list[str] = []
        for job in self.jobs:
            answer = self.platform.api.post(f"{API}/training/jobs/{job.id}/cancel")
            if answer.status_code not in {200, 202}:
                problems.append(f"cancel {job.id}: {answer.status_code} {answer.text[:200]}")
        return problems

    # -- the three paths ---------------------------------------------------------------

    def platform_path(self, points: int, batches: list[int]) -> Callable[[], float]:
        """One request with all ``points``; the log_batch calls it took go to ``batches``."""
        body = _platform_body(points, self.base_ms)

        def run() -> float:
            job = self.fresh.pop(0)
            url = f"{API}/training/jobs/{job.id}/experiment-run/metrics"
            started = time.perf_counter()
            answer = self.platform.api.post(url, json=body)
            seconds = time.perf_counter() - started
            if answer.status_code != 200:
                raise RuntimeError(
                    f"POST {url}: {answer.status_code} (200 = delivered to MLflow) "
                    f"{answer.text[:500]}"
                )
            reply = answer.json()
            if reply.get("accepted") != points or int(reply.get("batches", 0)) < 1:
                raise RuntimeError(f"POST {url} answered {reply}, not {points} points delivered")
            batches.append(int(reply["batches"]))
            self.logged.append(Logged("platform", job.run_id, points))
            return seconds

        return run

    def direct_batch(self, points: int) -> Callable[[], float]:
        from mlflow.entities import Metric

        def run() -> float:
            run_id = self.client.create_run(self.experiment_id).info.run_id
            metrics = [
                Metric(KEY, 1.0 / (step + 1), _timestamp_ms(self.base_ms, step), step)
                for step in range(points)
            ]
            started = time.perf_counter()
            for start in range(0, points, MAX_METRICS_PER_BATCH):
                self.client.log_batch(
                    run_id, metrics=metrics[start : start + MAX_METRICS_PER_BATCH]
                )
            seconds = time.perf_counter() - started
            self.logged.append(Logged("direct log_batch", run_id, points))
            return seconds

        return run

    def direct_per_point(self, points: int) -> Callable[[], float]:
        def run() -> float:
            run_id = self.client.create_run(self.experiment_id).info.run_id
            started = time.perf_counter()
            for step in range(points):
                self.client.log_metric(
                    run_id,
                    KEY,
                    1.0 / (step + 1),
                    timestamp=_timestamp_ms(self.base_ms, step),
                    step=step,
                )
            seconds = time.perf_counter() - started
            self.logged.append(Logged("direct log_metric", run_id, points))
            return seconds

        return run

    # -- the proof that nothing was dropped ----------------------------------------------

    def verify(self) -> list[str]:
        """Every run's history in MLflow: exactly its points, steps 0..N-1 once each."""
        errors: list[str] = []
        for logged in self.logged:
            history = self.client.get_metric_history(logged.run_id, KEY)
            steps = sorted(m.step for m in history)
            if steps != list(range(logged.points)):
                errors.append(
                    f"{logged.path} run {logged.run_id}: MLflow holds {len(history)} points "
                    f"(distinct steps {len(set(steps))}), expected exactly {logged.points}"
                )
        return errors


def _per_point(stats: Stats, points: int) -> str:
    return fmt_seconds(stats.median / points)


def run(workdir: Path, rounds: int | None = None) -> list[Result]:
    from mlflow.tracking import MlflowClient

    from llmops.testing.console import running_platform
    from llmops_mlflow.testing import running_mlflow_server

    batch_rounds = rounds or DEFAULT_BATCH_ROUNDS
    per_point_rounds = rounds or DEFAULT_PER_POINT_ROUNDS
    root = Path(tempfile.mkdtemp(prefix="mlflow-metrics-", dir=workdir))
    tmp = root / "tmp"
    tmp.mkdir()
    (root / "mlflow").mkdir()
    results: list[Result] = []
    errors: list[str] = []
    with environment(
        tmp,
        MLFLOW_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="true",
        MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
    ):
        started = time.perf_counter()
        with running_mlflow_server(root / "mlflow") as server:
            print(f"  mlflow server up in {time.perf_counter() - started:.1f} s")
            started = time.perf_counter()
            env = {
                "LLMOPS_PLUGINS": "mlflow",
                "LLMOPS_MLFLOW__TRACKING_URI": server.url,
                "MLFLOW_TRACKING_URI": "",  # nothing from this process's environment
            }
            with running_platform(env=env, console=False) as platform:
                print(f"  llmops up in {time.perf_counter() - started:.1f} s")
                client = MlflowClient(tracking_uri=server.url)
                bench = Bench(
                    platform=platform,
                    client=client,
                    experiment_id=client.create_experiment("bench-direct"),
                    base_ms=int(time.time() * 1000),
                )
                try:
                    started = time.perf_counter()
                    bench.submit_jobs((WARMUP + batch_rounds) + (WARMUP + per_point_rounds))
                    print(
                        f"  {len(bench.jobs)} training jobs running, each with its MLflow run,"
                        f" in {time.perf_counter() - started:.1f} s"
                    )
                    cases: list[tuple[str, Callable[[], Result]]] = [
                        ("batch", lambda: _batch_case(bench, batch_rounds)),
                        (
                            "per point",
                            lambda: _per_point_case(
                                bench, per_point_rounds, results[0] if results else None
                            ),
                        ),
                    ]
                    for label, case in cases:
                        try:
                            results.append(case())
                        except Exception as exc:
                            error = f"{label}: {type(exc).__name__}: {exc}".splitlines()[0]
                            print(f"  FAILED {error}")
                            errors.append(error)
                    verified = bench.verify()
                    errors.extend(verified)
                    for error in verified:
                        print(f"  FAILED {error}")
                    if not verified:
                        line = (
                            f"every run holds exactly its points in MLflow ({len(bench.logged)}"
                            " runs checked with get_metric_history)"
                        )
                        print(f"  {line}")
                        for result in results:
                            result.notes.append(line)
                finally:
                    problems = bench.cancel_jobs()
                    for problem in problems:
                        print(f"  {problem}")
                    for result in results:
                        result.notes.extend(problems)
    if errors:
        raise PartialFailure(results, errors)
    return results


def _batch_case(bench: Bench, rounds: int) -> Result:
    points = BATCH_POINTS
    batches: list[int] = []
    platform, direct = alternate(
        bench.platform_path(points, batches),
        bench.direct_batch(points),
        rounds=rounds,
        warmup=WARMUP,
        progress=f"{NAME} batch",
    )
    result = Result(
        NAME,
        f"{points} points: platform request / log_batch",
        platform,
        direct,
        "median",
    )
    overhead = platform.median - direct.median
    note = (
        f"the platform adds {fmt_seconds(overhead)} to MLflow's own batch call "
        f"({fmt_seconds(overhead / points)} a point): HTTP hop, durable write, guard; "
        f"log_batch calls per request: {sorted(set(batches))}"
    )
    if result.ratio > SUSPICIOUS_BATCH_RATIO:
        note = f"SUSPICIOUS: {note} (ratio above {SUSPICIOUS_BATCH_RATIO:.0f}x)"
    result.notes.append(note)
    print(describe(result))
    print(f"    {note}")
    return result


def _per_point_case(bench: Bench, rounds: int, batched: Result | None) -> Result:
    """``batched``: the batch case's result, to set the per-point time against a request
    of BATCH_POINTS points (an extrapolation: N log_metric calls cost N times one)."""
    points = PER_POINT_POINTS
    platform, direct = alternate(
        bench.platform_path(points, []),
        bench.direct_per_point(points),
        rounds=rounds,
        warmup=WARMUP,
        progress=f"{NAME} per point",
    )
    result = Result(
        NAME,
        f"{points} points: platform request / log_metric per point",
        platform,
        direct,
        "median",
    )
    slower = direct.median / platform.median
    note = (
        f"one log_metric call per point takes {_per_point(direct, points)} a point; "
        f"{slower:.1f}x slower than the platform's one request "
        f"({_per_point(platform, points)} a point); mlflow#5269 says ~20x"
    )
    if slower <= 1.0:
        note = f"SUSPICIOUS: {note}"
    result.notes.append(note)
    if batched is not None:
        whole = direct.median / points * BATCH_POINTS
        result.notes.append(
            f"extrapolated to {BATCH_POINTS} points: {fmt_seconds(whole)} of log_metric calls"
            f" against {fmt_seconds(batched.platform.median)} for the platform's request,"
            f" {whole / batched.platform.median:.0f}x"
        )
    print(describe(result))
    for line in result.notes:
        print(f"    {line}")
    return result
