"""Run pipelines as local subprocesses: the orchestrator for hosts without a cluster.

Each run lives in its own folder, ``<state_dir>/runs/<run_id>/``:

``spec.json``
    the submitted spec without ``secret_env``; secret values stay in memory only.
``state.json``
    the pipeline's and every stage's state, attempts, exit codes, timestamps, and the pid
    and kernel start time of each running stage's runner; always replaced atomically.
``logs/<stage>.log``
    the output of every attempt, each after an ``--- attempt i/n ---`` line, and how it
    ended (``--- exit code 3 ---``, ``--- timed out after 5 s ---``) unless it succeeded.
``exits/<stage>.<attempt>.json``
    how an attempt ended (return code, signal, timed out or not, when), written by its
    runner; ``exits/<stage>.<attempt>.pid`` holds the stage's pid while it runs.
``work/``
    the stages' default working directory.
``active.lock``
    held (``flock``) by the executor driving the run, for as long as it does, so that
    another process can tell a run whose executor died (:meth:`LocalExecutor.orphaned_runs`)
    from a live one.

Every attempt runs under a runner of its own (:mod:`llmops.builtin.stage_runner`), a small
process in a session of its own that starts the stage in another, copies the stage's
output into its log with the run's secret values scrubbed out, enforces its timeout, and
writes the attempt's outcome file: none of that needs the executor, so a stage outlives
the server that started it. The executor waits for the runner and reads the outcome;
another executor on the same state dir (a restarted server, a replica on the same host)
takes a run over with :meth:`LocalExecutor.adopt`, or ends it with
:meth:`LocalExecutor.recover`.

An executor ends in one of two ways. :meth:`LocalExecutor.close` (a settings change that
rebuilds it) cancels its runs. :meth:`LocalExecutor.detach` (the platform process stops
cleanly, as in a rolling restart) lets them go instead: its threads stop watching, the
running stages go on under their runners, recorded as running, the pending ones stay
pending, and each run's lock is released once nothing of this executor drives it, so
that another executor adopts the runs as it would after a crash.

When a stage ends, times out or is cancelled, nothing it started survives it: its whole
process group is killed. Its environment is built, not inherited
(:func:`llmops.builtin.sandbox.stage_environment`), and it runs in a bubblewrap sandbox
that hides the platform's data dir, database and key file where the host allows one
(:mod:`llmops.builtin.sandbox`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from llmops.builtin import stage_runner
from llmops.builtin.sandbox import (
    DEFAULT_ENV_ALLOWLIST,
    Isolation,
    IsolationUnavailable,
    Sandbox,
    refusal,
    resolve,
    stage_environment,
)
from llmops.builtin.stage_runner import describe_exit as _describe_exit
from llmops.capabilities.common import Health, HealthStatus, utcnow
from llmops.capabilities.orchestration import (
    PipelineSpec,
    PipelineState,
    PipelineStatus,
    StageLog,
    StageSpec,
    StageState,
    StageStatus,
    validate_pipeline,
)
from llmops.errors import Conflict, IntegrationUnavailable, NotFound

logger = logging.getLogger(__name__)

#: The message of a run (or an attempt) that a previous server process left unfinished.
INTERRUPTED_MESSAGE = "interrupted: the server stopped while this run was active"

#: Every stage process (and what it starts), and every runner, carries its run id in this
#: variable, so a restarted server finds the orphans of a crash even where no pid was
#: recorded yet.
RUN_MARKER = "LLMOPS_EXECUTOR_RUN_ID"

#: How long a stopped runner may take beyond the kill grace (it kills its stage's group
#: after the grace, then writes the outcome) before it is killed itself.
RUNNER_MARGIN_SECONDS = 2.0

#: How long :meth:`LocalExecutor.detach` waits, for all its runs together, until their
#: threads have stopped and released their locks (they stop within milliseconds but for
#: one in the midst of killing what is left of an attempt that ended).
DETACH_PATIENCE_SECONDS = 1.0

#: How long :meth:`LocalExecutor.adopt` tries a run's lock before it calls the run held: a
#: process that only looks (``orphaned_runs``) holds it for microseconds.
ADOPT_LOCK_PATIENCE_SECONDS = 0.2

_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


# -------------------------------------------------------------------------------------
# What state.json holds
# -------------------------------------------------------------------------------------


class _StageRecord(BaseModel):
    name: str
    state: StageState = StageState.PENDING
    attempts: int = 0
    exit_code: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    message: str = ""
    #: The running attempt's runner (the leader of its process group and session) and
    #: its start time in clock ticks after boot (field 22 of /proc/<pid>/stat), so a
    #: reused pid is never taken for it.
    pid: int | None = None
    pid_start_time: int | None = None

    def reset(self) -> None:
        self.state = StageState.PENDING
        self.attempts = 0
        self.exit_code = None
        self.started_at = self.finished_at = None
        self.message = ""
        self.pid = self.pid_start_time = None

    def to_status(self) -> StageStatus:
        return StageStatus(
            name=self.name,
            state=self.state,
            attempts=self.attempts,
            exit_code=self.exit_code,
            started_at=self.started_at,
            finished_at=self.finished_at,
            message=self.message,
        )


class _RunRecord(BaseModel):
    run_id: str
    pipeline: str
    state: PipelineState = PipelineState.PENDING
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    message: str = ""
    idempotency_key: str | None = None
    #: Names only: a retry or a new attempt after a restart must know that the secret
    #: values are gone unless whoever takes the run over hands them back.
    secret_env_names: list[str] = []
    stages: list[_StageRecord]

    def stage(self, name: str) -> _StageRecord:
        for record in self.stages:
            if record.name == name:
                return record
        raise NotFound(f"run {self.run_id} has no stage {name!r}", stage=name)

    def to_status(self) -> PipelineStatus:
        return PipelineStatus(
            external_id=self.run_id,
            state=self.state,
            stages=[stage.to_status() for stage in self.stages],
            started_at=self.started_at,
            finished_at=self.finished_at,
            message=self.message,
            ui_url=None,
        )


# -------------------------------------------------------------------------------------
# A run this executor drives
# -------------------------------------------------------------------------------------


@dataclass
class _Runner:
    """The runner of a stage's attempt that an executor watches (its child, or adopted)."""

    stage: str
    attempt: int
    pid: int
    start_time: int | None
    #: owned by the stage worker watching it; others signal through a ``dup`` of it
    pidfd: int
    #: None for a runner this process did not start (it is reaped by someone else)
    popen: subprocess.Popen[bytes] | None = None


class _Run:
    """The spec with its secrets, the record, and the live runners of one run.

    ``cond`` guards everything mutable here; the scheduler waits on it and every stage
    worker notifies it when its stage ends.
    """

    def __init__(self, folder: Path, spec: PipelineSpec, record: _RunRecord) -> None:
        self.run_id = record.run_id
        self.folder = folder
        self.spec = spec
        self.record = record
        self.cond = threading.Condition()
        self.procs: dict[str, _Runner] = {}
        self.cancel_requested = False
        self.stage_failed = False
        #: let go by :meth:`LocalExecutor.detach`: its threads stop without ending it
        self.detached = False
        #: its scheduler failed and is cancelling it: it is not to be let go
        self.failing = False
        #: an eventfd, written when the run is detached, that stage workers poll with
        #: their runner's pidfd; open while a scheduler drives the run, else -1
        self.wake_fd = -1
        self.thread: threading.Thread | None = None

    @property
    def active(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    @property
    def missing_secrets(self) -> list[str]:
        """Secret names the run was submitted with whose values this process lacks."""
        return [n for n in self.record.secret_env_names if n not in self.spec.secret_env]


@dataclass(frozen=True)
class _Outcome:
    succeeded: bool
    cancelled: bool
    exit_code: int | None
    message: str
    #: when the stage ended, as its runner recorded it
    finished_at: datetime | None = None
    #: False when no attempt was started (the secrets were missing)
    attempted: bool = True
    #: the run was let go (:meth:`LocalExecutor.detach`) before the attempt was seen to end
    detached: bool = False


#: What a stage worker ends with when its run is let go.
_DETACHED = _Outcome(False, False, None, "detached", detached=True)


# -------------------------------------------------------------------------------------
# The executor
# -------------------------------------------------------------------------------------


class LocalExecutor:
    """The in-core :class:`~llmops.capabilities.orchestration.OrchestrationProvider`, and
    :class:`~llmops.capabilities.orchestration.AdoptsRuns`.

    Stages run as subprocesses in dependency order, at most ``max_parallel`` at a time per
    run; a stage that finally fails stops the scheduling of new stages (fail-fast, like
    Argo) and its never-started dependents are skipped. Methods are thread-safe.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        max_parallel: int = 4,
        kill_grace_seconds: float = 1.0,
        isolation: Isolation = Isolation.AUTO,
        protected_paths: Sequence[Path] = (),
        writable_paths: Sequence[Path] = (),
        env_allowlist: Sequence[str] = DEFAULT_ENV_ALLOWLIST,
    ) -> None:
        """``protected_paths`` are hidden from stages (the state dir always is, but for
        each run's own work dir); ``writable_paths`` they may write besides their work
        dir and /tmp; ``env_allowlist`` names the server's variables they inherit."""
        if max_parallel < 1:
            raise ValueError("max_parallel must be at least 1")
        if kill_grace_seconds < 0:
            raise ValueError("kill_grace_seconds must not be negative")
        self.state_dir = Path(state_dir)
        self.max_parallel = max_parallel
        self.kill_grace_seconds = kill_grace_seconds
        self.isolation = Isolation(isolation)
        self.env_allowlist = tuple(env_allowlist)
        bwrap, self.isolation_detail = resolve(self.isolation)
        self.refusal = refusal(self.isolation, bwrap, self.isolation_detail)
        self.sandbox = (
            None
            if bwrap is None
            else Sandbox(
                bwrap,
                protected=[self.state_dir.resolve(), *(Path(p) for p in protected_paths)],
                writable=[Path("/tmp"), *(Path(p) for p in writable_paths)],  # noqa: S108
            )
        )
        self._runs_dir = self.state_dir / "runs"
        self._lock = threading.RLock()  # guards _runs, _keys, _indexed, _closed; before run.cond
        self._runs: dict[str, _Run] = {}
        self._keys: dict[str, str] = {}  # idempotency key -> run id (see _run_of_key)
        self._indexed: set[str] = set()  # the run folders whose key is in _keys
        self._closed = False

    # -- OrchestrationProvider -------------------------------------------------------------------

    def submit(self, spec: PipelineSpec) -> PipelineStatus:
        """Persist the run and start it in the background; returns at once."""
        order = validate_pipeline(spec)
        self._refuse_if_unisolated()
        with self._lock:
            self._refuse_if_closed()
            key = spec.idempotency_key
            existing = self._run_of_key(key) if key is not None else None
            if existing is None:
                run = self._create_run(spec)
                lock_fd = _try_lock(run.folder)
                if lock_fd is None:  # pragma: no cover - a fresh uuid folder is ours
                    raise Conflict(f"run {run.run_id} is driven by another executor")
                if key is not None:
                    self._keys[key] = run.run_id
                self._indexed.add(run.run_id)
                self._runs[run.run_id] = run
                self._start(run, order, lock_fd)
                existing = run.run_id
            else:
                self._adopt_resubmitted(existing, spec)
        return self.status(existing)

    def _adopt_resubmitted(self, run_id: str, spec: PipelineSpec) -> None:
        """A submission sent again (its first delivery's process died after the run had
        started): the run no executor drives any more is taken over here, or nobody
        would (its pipeline now names this process as its owner)."""
        run = self._in_memory(run_id)
        if run is not None and run.active:
            return
        with contextlib.suppress(Conflict):  # a live executor drives it
            self.adopt(run_id, secret_env=spec.secret_env or None)

    def status(self, external_id: str) -> PipelineStatus:
        run = self._in_memory(external_id)
        if run is not None:
            with run.cond:
                return run.record.to_status()
        return self._read_record(external_id).to_status()

    def logs(
        self, external_id: str, *, stage: str | None = None, tail_bytes: int | None = None
    ) -> list[StageLog]:
        """Each stage's log in spec order, or one stage's; ``tail_bytes`` keeps the end."""
        run = self._in_memory(external_id)
        if run is not None:
            with run.cond:
                names = [s.name for s in run.record.stages]
        else:
            names = [s.name for s in self._read_record(external_id).stages]
        if stage is not None:
            if stage not in names:
                raise NotFound(f"run {external_id} has no stage {stage!r}", stage=stage)
            names = [stage]
        folder = self._run_folder(external_id)
        return [_read_log(folder / "logs" / f"{name}.log", name, tail_bytes) for name in names]

    def retry(self, external_id: str) -> PipelineStatus:
        """Run the failed, cancelled and skipped stages of a finished run again."""
        self._refuse_if_unisolated()
        with self._lock:
            self._refuse_if_closed()
            run = self._in_memory(external_id) or self._load_run(external_id)
            with run.cond:
                finishing = run.record.state.terminal
            if finishing and run.thread is not None:  # the scheduler is letting go of it
                run.thread.join(timeout=self.kill_grace_seconds + 5)
            if run.active:
                raise Conflict(f"run {external_id} is still active", state=run.record.state)
            with run.cond:
                state = run.record.state
                if state not in (PipelineState.FAILED, PipelineState.CANCELLED):
                    raise Conflict(
                        f"run {external_id} is {state}; only failed or cancelled runs can be "
                        "retried",
                        state=state,
                    )
                if run.missing_secrets:
                    raise Conflict(
                        f"run {external_id} needs secret environment variables "
                        f"({', '.join(run.missing_secrets)}) that were lost when the server "
                        "restarted; submit the pipeline again",
                        secret_env=run.missing_secrets,
                    )
                lock_fd = _try_lock(run.folder)
                if lock_fd is None:
                    raise Conflict(f"run {external_id} is driven by another executor")
                for record in run.record.stages:
                    if record.state is not StageState.SUCCEEDED:
                        record.reset()
                run.record.state = PipelineState.PENDING
                run.record.finished_at = None
                run.record.message = ""
                run.cancel_requested = run.stage_failed = False
                self._save(run)
            self._runs[run.run_id] = run
            self._start(run, validate_pipeline(run.spec), lock_fd)
        return self.status(external_id)

    def cancel(self, external_id: str) -> PipelineStatus:
        """Stop every running stage (SIGTERM, SIGKILL after the grace period)."""
        run = self._in_memory(external_id)
        if run is not None and run.active:
            self._cancel_runs([run])
        return self.status(external_id)

    def ui_url(self, external_id: str) -> str | None:
        return None

    def health(self) -> Health:
        """Write and remove a probe file in the state dir."""
        started = time.perf_counter()
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.state_dir, prefix=".health-") as probe:
                probe.write(b"ok")
                probe.flush()
        except OSError as exc:
            return Health(
                status=HealthStatus.DOWN,
                latency_ms=(time.perf_counter() - started) * 1000,
                detail=f"state dir {self.state_dir} is not writable: {exc}",
            )
        with self._lock:
            active = sum(1 for run in self._runs.values() if run.active)
        if self.refusal is not None:
            return Health(
                status=HealthStatus.DOWN,
                latency_ms=(time.perf_counter() - started) * 1000,
                detail=self.refusal,
            )
        return Health(
            status=HealthStatus.OK,
            latency_ms=(time.perf_counter() - started) * 1000,
            detail=f"{active} active run(s); {self.isolation_detail}; state in {self.state_dir}",
        )

    # -- life cycle ---------------------------------------------------------------------

    def adopt(
        self, external_id: str, *, secret_env: Mapping[str, SecretStr] | None = None
    ) -> PipelineStatus:
        """Take over a run whose executor is gone, and drive it to its end.

        Each stage recorded as running is taken as it is: an attempt whose runner wrote
        its outcome is recorded as it ended (a failure is retried while attempts are left);
        one whose runner still runs is watched until it ends, and can be cancelled; one
        whose runner is gone with no outcome (it died with the executor) is retried while
        attempts are left, else failed with :data:`INTERRUPTED_MESSAGE`. Pending stages are
        then scheduled as usual. ``secret_env`` gives back the values of the run's secret
        environment (the spec on disk has the names only): a new attempt that needs a
        name it lacks fails, naming it, instead of running without it; so does one this
        executor could not isolate (:attr:`refusal`), while running stages are still
        watched to their end.

        A finished run, or one this executor drives already, just answers its status.

        :raises NotFound: no such run in the state dir.
        :raises Conflict: a live executor drives the run (it holds its lock).
        """
        with self._lock:
            self._refuse_if_closed()
            run = self._in_memory(external_id)
            if run is not None and run.active:
                return self.status(external_id)
            record = self._read_record(external_id)
            if record.state.terminal:
                return record.to_status()
            folder = self._run_folder(external_id)
            lock_fd = _try_lock(folder, patience=ADOPT_LOCK_PATIENCE_SECONDS)
            if lock_fd is None:
                raise Conflict(
                    f"run {external_id} is driven by a live executor", external_id=external_id
                )
            try:
                run = self._load_run(external_id, secret_env)  # read again: it is ours now
                if run.record.state.terminal:  # it ended just before the lock was free
                    os.close(lock_fd)
                    return run.record.to_status()
                states = {stage.state for stage in run.record.stages}
                run.stage_failed = StageState.FAILED in states
                run.cancel_requested = StageState.CANCELLED in states
                order = validate_pipeline(run.spec)
            except BaseException:
                os.close(lock_fd)
                raise
            self._runs[run.run_id] = run
            self._start(run, order, lock_fd, resume=True)
        logger.warning("run %s was left by its executor: taken over", external_id)
        return self.status(external_id)

    def orphaned_runs(self) -> list[str]:
        """Unfinished runs in the state dir that no live executor drives (their lock is
        free): what :meth:`adopt` can take over, or :meth:`recover` end."""
        orphans: list[str] = []
        if not self._runs_dir.is_dir():
            return orphans
        for folder in sorted(self._runs_dir.iterdir()):
            run_id = folder.name
            if not _RUN_ID.match(run_id):
                continue
            run = self._in_memory(run_id)
            if run is not None and run.active:
                continue
            try:
                record = self._read_record(run_id)
            except (NotFound, OSError, ValueError):
                continue
            if record.state.terminal:
                continue
            lock_fd = _try_lock(folder)
            if lock_fd is None:
                continue
            os.close(lock_fd)
            orphans.append(run_id)
        return orphans

    def recover(self, *, keep: Collection[str] = ()) -> list[str]:
        """Fail the runs that a dead executor left unfinished, but those in ``keep``
        (left as they are, for :meth:`adopt`); return the ids of the failed ones.

        A stage recorded as running whose runner still exists with the recorded start
        time has its process group killed first, and so has every process marked with the
        run's id. Runs that another live executor drives (it holds their lock) are left
        alone.
        """
        recovered: list[str] = []
        if not self._runs_dir.is_dir():
            return recovered
        kept = set(keep)
        for folder in sorted(self._runs_dir.iterdir()):
            run_id = folder.name
            if not _RUN_ID.match(run_id) or run_id in kept or self._in_memory(run_id) is not None:
                continue
            lock_fd = _try_lock(folder)
            if lock_fd is None:
                continue
            try:
                try:
                    record = self._read_record(run_id)
                except (NotFound, OSError, ValueError):
                    logger.exception("run %s has no readable state; left as it is", run_id)
                    continue
                if record.state.terminal:
                    continue
                _kill_orphans(
                    [
                        (stage.pid, stage.pid_start_time)
                        for stage in record.stages
                        if stage.state is StageState.RUNNING
                        and stage.pid is not None
                        and stage.pid_start_time is not None
                    ],
                    self.kill_grace_seconds,
                )
                _kill_marked(run_id, self.kill_grace_seconds)
                now = utcnow()
                for stage in record.stages:
                    if stage.state is StageState.RUNNING:
                        stage.state, stage.message = StageState.FAILED, INTERRUPTED_MESSAGE
                        stage.finished_at = now
                        stage.pid = stage.pid_start_time = None
                    elif stage.state is StageState.PENDING:
                        stage.state = StageState.SKIPPED
                        stage.message = "not run: the run was interrupted"
                record.state, record.message = PipelineState.FAILED, INTERRUPTED_MESSAGE
                record.finished_at = now
                _write_atomic(folder / "state.json", record.model_dump_json(indent=2))
                logger.warning("run %s was interrupted by a server stop: marked failed", run_id)
                recovered.append(run_id)
            finally:
                os.close(lock_fd)
        return recovered

    def active_work(self) -> int:
        """Runs in progress: closing this executor (a settings change) would cancel them."""
        with self._lock:
            return sum(1 for run in self._runs.values() if run.active)

    def detach(self) -> list[str]:
        """Let go of every run this executor drives, leaving their stages alone, so that
        another executor takes them over (:meth:`adopt`); refuse new work after.

        The scheduler and stage workers of each run stop: a stage that runs goes on under
        its runner and stays recorded as running, with its runner's pid and start time; a
        stage that ended is recorded as it ended if its worker saw it end before, else
        left for the adopter to read from its outcome file; pending stages stay pending
        (a stage the scheduler had just picked but whose first attempt had not started
        goes back to pending), and no attempt, retry or stage is started any more. Each
        run's state.json is written and its ``active.lock`` released by its scheduler once
        its workers have stopped, so a run is never unlocked while a thread of this
        executor still drives it. Returns within :data:`DETACH_PATIENCE_SECONDS`, without
        waiting for any stage: a thread that takes longer (it was killing what was left of
        an attempt that had ended) releases its run's lock when it is done.

        The detached runs are forgotten here (``status`` and ``logs`` read them from disk),
        so a later :meth:`close` does not touch them. Runs that end, or whose scheduler
        failed, as it is called, are left to end here.

        :returns: the ids of the runs it let go.
        """
        let_go: list[_Run] = []
        with self._lock:
            self._closed = True
            for run in list(self._runs.values()):
                if not run.active:
                    continue
                with run.cond:
                    if run.record.state.terminal or run.failing or run.wake_fd < 0:
                        continue
                    run.detached = True
                    os.eventfd_write(run.wake_fd, 1)
                    run.cond.notify_all()
                let_go.append(run)
                del self._runs[run.run_id]
        deadline = time.monotonic() + DETACH_PATIENCE_SECONDS
        for run in let_go:
            if run.thread is not None:
                run.thread.join(max(0.0, deadline - time.monotonic()))
                if run.thread.is_alive():
                    logger.warning(
                        "run %s is let go, but its scheduler has not stopped yet: its lock "
                        "is released when it has",
                        run.run_id,
                    )
        if let_go:
            logger.info(
                "let go of %d run(s) for another process to take over: %s",
                len(let_go),
                ", ".join(run.run_id for run in let_go),
            )
        return [run.run_id for run in let_go]

    def close(self) -> None:
        """Cancel every active run and wait for its threads; refuse new work after.

        What a settings change that rebuilds the executor does; runs let go before
        (:meth:`detach`) are not touched.
        """
        with self._lock:
            self._closed = True
            runs = [run for run in self._runs.values() if run.active]
        self._cancel_runs(runs)

    # -- runs ---------------------------------------------------------------------------

    def _create_run(self, spec: PipelineSpec) -> _Run:
        run_id = uuid.uuid4().hex
        folder = self._runs_dir / run_id
        (folder / "logs").mkdir(parents=True)
        (folder / "exits").mkdir()
        (folder / "work").mkdir()
        _write_atomic(folder / "spec.json", spec.model_dump_json(indent=2, exclude={"secret_env"}))
        record = _RunRecord(
            run_id=run_id,
            pipeline=spec.name,
            created_at=utcnow(),
            idempotency_key=spec.idempotency_key,
            secret_env_names=sorted(spec.secret_env),
            stages=[_StageRecord(name=stage.name) for stage in spec.stages],
        )
        run = _Run(folder, spec, record)
        with run.cond:
            self._save(run)
        return run

    def _load_run(self, run_id: str, secret_env: Mapping[str, SecretStr] | None = None) -> _Run:
        """A run of an earlier process, with those of its secrets that ``secret_env``
        gives back (:attr:`_Run.missing_secrets` names the others)."""
        record = self._read_record(run_id)
        folder = self._run_folder(run_id)
        spec = PipelineSpec.model_validate_json((folder / "spec.json").read_bytes())
        given = {  # a caller may hand plain strings: they are secrets all the same
            name: value if isinstance(value, SecretStr) else SecretStr(str(value))
            for name, value in (secret_env or {}).items()
            if name in record.secret_env_names
        }
        return _Run(folder, spec.model_copy(update={"secret_env": given}), record)

    def _start(self, run: _Run, order: list[str], lock_fd: int, *, resume: bool = False) -> None:
        """Start the run's scheduler (called with ``_lock`` held); it owns ``lock_fd``."""
        try:
            wake_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        except OSError:
            os.close(lock_fd)
            raise
        with run.cond:
            run.detached = run.failing = False
            run.wake_fd = wake_fd
        run.thread = threading.Thread(
            target=self._drive,
            args=(run, order, lock_fd, resume),
            name=f"llmops-local-{run.run_id[:8]}",
            daemon=True,
        )
        run.thread.start()

    def _cancel_runs(self, runs: Sequence[_Run], *, join: bool = True) -> None:
        """SIGTERM every stage's runner, which stops its stage (SIGKILL after the grace);
        SIGKILL the runners that outlive that, and their stages' groups.

        Signals go through a ``dup`` of the pidfd of a runner still registered in
        ``run.procs`` (a stage worker unregisters it under ``run.cond`` once it ended), so
        a pid the kernel has handed out again is never signalled.
        """
        targets: list[tuple[_Run, _Runner, int]] = []
        try:
            for run in runs:
                with run.cond:
                    run.cancel_requested = True
                    for runner in run.procs.values():
                        pidfd = os.dup(runner.pidfd)
                        targets.append((run, runner, pidfd))
                        with contextlib.suppress(ProcessLookupError):
                            signal.pidfd_send_signal(pidfd, signal.SIGTERM)
                    run.cond.notify_all()
            pidfds = [fd for _, _, fd in targets]
            exited = _wait_pidfds(pidfds, self.kill_grace_seconds + RUNNER_MARGIN_SECONDS)
            for run, runner, pidfd in targets:
                if pidfd not in exited:
                    logger.warning(
                        "the runner of stage %s of run %s outlived its stop: killed",
                        runner.stage,
                        run.run_id,
                    )
                    with contextlib.suppress(ProcessLookupError):
                        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                    _kill_stage_group(run.folder, runner.stage, runner.attempt, 0)
        finally:
            for _, _, pidfd in targets:
                os.close(pidfd)
        for run in runs if join else ():
            if run.thread is not None:
                run.thread.join(timeout=self.kill_grace_seconds + 5)

    def _drive(self, run: _Run, order: list[str], lock_fd: int, resume: bool = False) -> None:
        """The scheduler of one run: start the ready stages, wait for one to end, repeat.

        With ``resume`` (a run taken over), the stages recorded as running are taken up
        first, each where its last attempt is. When the run is let go (:meth:`detach`), it
        starts nothing more, waits for its workers to stop, writes the run's state as they
        left it and releases the run's lock.
        """
        stages = {stage.name: stage for stage in run.spec.stages}
        limit = min(run.spec.max_parallel or self.max_parallel, self.max_parallel)
        workers: list[threading.Thread] = []
        try:
            with run.cond:
                record = run.record
                record.state = PipelineState.RUNNING
                record.started_at = record.started_at or utcnow()
                self._save(run)
                for name in order if resume and not run.detached else ():
                    if record.stage(name).state is StageState.RUNNING:
                        workers.append(self._start_stage(run, stages[name], resume=True))
                while not run.detached:
                    running = sum(1 for s in record.stages if s.state is StageState.RUNNING)
                    started = False
                    if not (run.cancel_requested or run.stage_failed):
                        for name in order:
                            if running >= limit:
                                break
                            stage_record = record.stage(name)
                            if stage_record.state is StageState.PENDING and all(
                                record.stage(dep).state is StageState.SUCCEEDED
                                for dep in stages[name].depends_on
                            ):
                                stage_record.state = StageState.RUNNING
                                stage_record.started_at = utcnow()
                                running += 1
                                started = True
                                workers.append(self._start_stage(run, stages[name]))
                    if started:
                        self._save(run)
                    if running == 0:
                        self._finish(run)
                        break
                    run.cond.wait()
        except Exception as exc:
            logger.exception("the scheduler of run %s failed", run.run_id)
            with run.cond:
                run.failing = not run.detached  # a run let go is the adopter's to end
            if run.failing:
                self._cancel_runs([run], join=False)
                for worker in workers:
                    worker.join()
                with run.cond:
                    self._finish(run, error=f"executor error: {exc}")
        finally:
            for worker in workers:
                worker.join()
            with run.cond:
                if run.detached:
                    self._save(run)  # as its workers left it, for whoever adopts it
                os.close(run.wake_fd)
                run.wake_fd = -1
            os.close(lock_fd)  # last: nothing of this executor drives the run any more

    def _finish(self, run: _Run, *, error: str | None = None) -> None:
        """Give the run its terminal state (called with ``run.cond`` held)."""
        record = run.record
        failed = [s for s in record.stages if s.state is StageState.FAILED]
        all_succeeded = all(s.state is StageState.SUCCEEDED for s in record.stages)
        if error is not None:
            state, message = PipelineState.FAILED, error
        elif run.cancel_requested and not all_succeeded:
            state, message = PipelineState.CANCELLED, "cancelled"
        elif failed:
            state = PipelineState.FAILED
            message = "; ".join(f"stage {s.name} failed: {s.message}" for s in failed)
        elif all_succeeded:
            state, message = PipelineState.SUCCEEDED, ""
        else:  # pragma: no cover - whatever leaves a stage pending also sets a flag
            state, message = PipelineState.FAILED, "stages were left unscheduled"
        why = "the pipeline was cancelled" if state is PipelineState.CANCELLED else message
        for stage in record.stages:
            if stage.state in (StageState.PENDING, StageState.RUNNING):
                stage.state, stage.message = StageState.SKIPPED, f"not run: {why}"
        record.state, record.message, record.finished_at = state, message, utcnow()
        self._save(run)

    # -- stages -------------------------------------------------------------------------

    def _start_stage(
        self, run: _Run, stage: StageSpec, *, resume: bool = False
    ) -> threading.Thread:
        worker = threading.Thread(
            target=self._run_stage,
            args=(run, stage, resume),
            name=f"llmops-local-{run.run_id[:8]}-{stage.name}",
            daemon=True,
        )
        worker.start()
        return worker

    def _run_stage(self, run: _Run, stage: StageSpec, resume: bool = False) -> None:
        """Run a stage's attempts, then record how it ended and wake the scheduler.

        With ``resume``, the stage's recorded attempt (left by a dead executor) is taken
        up first (:meth:`_resume_attempt`) and the next ones follow as usual.
        """
        total = stage.retries + 1
        outcome = _Outcome(succeeded=False, cancelled=False, exit_code=None, message="")
        log_path = run.folder / "logs" / f"{stage.name}.log"
        first = 1
        try:
            if resume:
                with run.cond:
                    recorded = run.record.stage(stage.name).attempts
                if recorded >= 1:  # 0: the executor died before it started one
                    outcome = self._resume_attempt(run, stage, min(recorded, total), total)
                    first = recorded + 1
            for attempt in range(first, total + 1):
                if outcome.succeeded or outcome.cancelled or outcome.detached:
                    break
                with run.cond:
                    if run.detached:  # the adopter starts the attempt
                        outcome = _DETACHED
                        break
                    if run.cancel_requested:
                        outcome = _Outcome(False, True, outcome.exit_code, "cancelled")
                        break
                missing = run.missing_secrets
                if missing or self.refusal is not None:  # a run taken over
                    message = (
                        f"cannot start attempt {attempt}/{total}: the secret environment "
                        f"variable(s) {', '.join(missing)} of the run were not handed over "
                        "when it was taken over after a restart"
                        if missing
                        else f"cannot start attempt {attempt}/{total}: {self.refusal}"
                    )
                    with log_path.open("ab") as log:
                        log.write(f"--- {message} ---\n".encode())
                    outcome = _Outcome(False, False, None, message, attempted=False)
                    break
                _forget_attempt(run.folder, stage.name, attempt)
                with run.cond:
                    if run.detached:
                        outcome = _DETACHED
                        break
                    record = run.record.stage(stage.name)
                    record.attempts = attempt
                    record.pid = record.pid_start_time = None
                    if attempt > 1:
                        record.message = f"attempt {attempt - 1} failed: {outcome.message}"
                    self._save(run)
                outcome = self._attempt(run, stage, attempt, total)
        except Exception as exc:
            logger.exception("stage %s of run %s could not be run", stage.name, run.run_id)
            outcome = _Outcome(False, False, None, f"executor error: {exc}")
        with run.cond:
            record = run.record.stage(stage.name)
            if outcome.detached:  # left as it is, running, for the adopter
                if record.attempts == 0:  # picked, but no attempt was started
                    record.state, record.started_at = StageState.PENDING, None
                run.cond.notify_all()
                return
            record.exit_code = outcome.exit_code
            record.finished_at = outcome.finished_at or utcnow()
            record.pid = record.pid_start_time = None
            if outcome.succeeded:
                record.state, record.message = StageState.SUCCEEDED, ""
            elif outcome.cancelled:
                record.state, record.message = StageState.CANCELLED, "cancelled"
                run.cancel_requested = True  # a stage stopped by a signal: so is the run
            else:
                record.state = StageState.FAILED
                attempted = outcome.attempted and record.attempts > 1
                suffix = f" after {record.attempts} attempts" if attempted else ""
                record.message = outcome.message + suffix
                run.stage_failed = True
            self._save(run)
            run.cond.notify_all()

    def _attempt(self, run: _Run, stage: StageSpec, attempt: int, total: int) -> _Outcome:
        """Start one attempt of a stage under a runner of its own and wait for it."""
        log_path = run.folder / "logs" / f"{stage.name}.log"
        cwd = run.folder / "work"
        if stage.working_dir is not None:
            cwd = cwd / stage.working_dir  # an absolute working_dir replaces work/
            if not Path(stage.working_dir).is_absolute():
                cwd.mkdir(parents=True, exist_ok=True)
        work_dir = run.folder / "work"
        read = [Path(p) for p in run.spec.read_paths]
        write = [Path(p) for p in run.spec.write_paths]
        argv = list(stage.command)
        env = self._stage_env(run, stage)
        program = _find_program(argv[0], env.get("PATH", os.defpath), cwd)
        if program is None and "/" not in argv[0]:
            message = f"could not start {argv[0]!r}: not found on the stage's PATH"
        elif program is None or (
            self.sandbox is not None
            and self.sandbox.hides(program, granted=[work_dir, *read, *write])
        ):
            message = f"could not start {argv[0]!r}: no such program"
        else:
            message = ""
        if message:
            with log_path.open("ab") as log:
                log.write(f"--- attempt {attempt}/{total} ---\n--- {message} ---\n".encode())
            return _Outcome(False, False, None, message)
        if self.sandbox is not None:
            argv = self.sandbox.command(
                argv,
                cwd=cwd,
                work_dir=work_dir,
                read=read,
                write=write,
            )
        # Through the runner's stdin only: the secrets in ``env`` and ``secrets`` reach
        # neither the disk nor an argv nor the runner's own environment.
        config = stage_runner.encode_config(
            {
                "argv": argv,
                "cwd": str(cwd),
                "env": env,
                "program": stage.command[0],
                "secrets": [v.get_secret_value() for v in run.spec.secret_env.values()],
                "timeout": stage.timeout_seconds,
                "grace": self.kill_grace_seconds,
            }
        )
        with log_path.open("ab") as log:
            log.write(f"--- attempt {attempt}/{total} ---\n".encode())
            log.flush()
            try:
                proc = subprocess.Popen(
                    stage_runner.command(str(run.folder), stage.name, attempt),
                    cwd=run.folder,
                    env={RUN_MARKER: run.run_id},
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=log,  # what the runner itself might say lands in the log
                    start_new_session=True,
                )
            except OSError as exc:
                message = f"could not start {stage.command[0]!r}: {exc}"
                log.write(f"--- {message} ---\n".encode())
                return _Outcome(False, False, None, message)
        try:
            pidfd = os.pidfd_open(proc.pid)
        except OSError:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        runner = _Runner(stage.name, attempt, proc.pid, _process_start_time(proc.pid), pidfd, proc)
        return self._watch(run, stage, runner, config)

    def _resume_attempt(self, run: _Run, stage: StageSpec, attempt: int, total: int) -> _Outcome:
        """Take up the attempt a dead executor left running: as its runner recorded it
        ended, or by watching its runner, or as interrupted when both are gone."""
        with run.cond:
            record = run.record.stage(stage.name)
            recorded = record.pid, record.pid_start_time
        outcome = _read_outcome(run.folder, stage.name, attempt)
        if outcome is None:
            runner = _find_runner(run, stage.name, attempt, *recorded)
            if runner is not None:
                logger.info("stage %s of run %s runs on: watched", stage.name, run.run_id)
                return self._watch(run, stage, runner, None)
            outcome = _read_outcome(run.folder, stage.name, attempt)  # it ended meanwhile
        if outcome is not None:
            return self._conclude(run, stage, attempt, outcome, cancelled=False)
        # It died with the executor (a host restart, a container stop): whatever is left of
        # its stage must not run beside the next attempt. (A recorded pid that is no runner
        # but still the recorded process is a stage an older executor ran without one.)
        _kill_stage_group(run.folder, stage.name, attempt, self.kill_grace_seconds)
        if recorded[0] is not None and recorded[1] is not None:
            _kill_orphans([(recorded[0], recorded[1])], self.kill_grace_seconds)
        with (run.folder / "logs" / f"{stage.name}.log").open("ab") as log:
            log.write(
                f"--- attempt {attempt}/{total} was interrupted: its process ended with the "
                "server that ran it ---\n".encode()
            )
        return _Outcome(False, False, None, INTERRUPTED_MESSAGE)

    def _watch(
        self, run: _Run, stage: StageSpec, runner: _Runner, config: bytes | None
    ) -> _Outcome:
        """Register a runner (so cancel reaches it), hand it ``config``, wait for it to
        exit, and read how its attempt ended. Closes ``runner.pidfd``.

        When the run is let go (:meth:`detach`) first, the runner is left running,
        recorded, and :data:`_DETACHED` returned: its outcome is the adopter's to read.
        """
        exit_code: int | None = None
        try:
            with run.cond:
                run.procs[stage.name] = runner
                record = run.record.stage(stage.name)
                record.pid, record.pid_start_time = runner.pid, runner.start_time
                self._save(run)
                cancelled_before_start = run.cancel_requested
                wake_fd = run.wake_fd
            if cancelled_before_start:  # cancel() listed the runners before this one
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(runner.pidfd, signal.SIGTERM)
            if config is not None and runner.popen is not None:
                assert runner.popen.stdin is not None
                # when it died already, its outcome is missing: that is seen below
                with contextlib.suppress(OSError), runner.popen.stdin as stdin:
                    stdin.write(config)
            exited = _wait_exit_or_wake(runner.pidfd, wake_fd)
            with run.cond:
                if run.detached:
                    run.procs.pop(stage.name, None)
                    if runner.popen is not None:
                        _reap_later(runner.popen)
                    return _DETACHED
            if not exited:  # pragma: no cover - only detach() writes the eventfd
                _wait_pidfds([runner.pidfd], None)
            with run.cond:
                if runner.popen is not None:
                    # nothing is meant to be in the runner's own group: make sure of it
                    # while the unreaped runner pins the group id, then reap it
                    _signal_group(runner.pid, signal.SIGKILL)
                    exit_code = runner.popen.wait()
                run.procs.pop(stage.name, None)
                cancelled = run.cancel_requested
        finally:
            os.close(runner.pidfd)
        outcome = _read_outcome(run.folder, stage.name, runner.attempt)
        if outcome is None:
            return self._runner_lost(run, stage, runner, exit_code, cancelled=cancelled)
        return self._conclude(run, stage, runner.attempt, outcome, cancelled=cancelled)

    def _runner_lost(
        self,
        run: _Run,
        stage: StageSpec,
        runner: _Runner,
        exit_code: int | None,
        *,
        cancelled: bool,
    ) -> _Outcome:
        """The runner exited without an outcome (killed): end what is left of its stage."""
        _kill_stage_group(run.folder, stage.name, runner.attempt, self.kill_grace_seconds)
        if cancelled:
            message = "cancelled"
        else:
            how = "" if exit_code is None else f" ({_describe_exit(exit_code)})"
            message = f"the stage's runner ended before the stage did{how}"
        with (run.folder / "logs" / f"{stage.name}.log").open("ab") as log:
            log.write(f"--- {message} ---\n".encode())
        return _Outcome(False, cancelled, None, message)

    def _conclude(
        self,
        run: _Run,
        stage: StageSpec,
        attempt: int,
        ended: dict[str, Any],
        *,
        cancelled: bool,
    ) -> _Outcome:
        """The outcome of an attempt from what its runner wrote; the log gets a closing
        line where the executor sees the attempt otherwise than the runner did (a cancel
        that came as the stage ended by itself)."""
        returncode = ended.get("returncode")
        finished_at = _parse_time(ended.get("finished_at"))
        if cancelled or ended.get("stopped"):
            outcome = _Outcome(False, True, returncode, "cancelled", finished_at)
        elif ended.get("error"):
            outcome = _Outcome(False, False, None, str(ended["error"]), finished_at)
        elif ended.get("timed_out"):
            timeout = f"{stage.timeout_seconds or 0:g}"
            message = f"timed out after {timeout} s"
            outcome = _Outcome(False, False, returncode, message, finished_at)
        elif not isinstance(returncode, int):
            message = "the stage's runner recorded no return code"
            outcome = _Outcome(False, False, None, message, finished_at)
        elif returncode != 0:
            outcome = _Outcome(False, False, returncode, _describe_exit(returncode), finished_at)
        else:
            outcome = _Outcome(True, False, 0, "", finished_at)
        if outcome.message and outcome.message != ended.get("message"):
            with (run.folder / "logs" / f"{stage.name}.log").open("ab") as log:
                log.write(f"--- {outcome.message} ---\n".encode())
        return outcome

    def _stage_env(self, run: _Run, stage: StageSpec) -> dict[str, str]:
        """What the stage's process gets: the allow-listed variables of the server's
        environment, HOME in its work dir, the run marker, its declared env, its secrets."""
        secrets = {name: value.get_secret_value() for name, value in run.spec.secret_env.items()}
        env = stage_environment(
            allowlist=self.env_allowlist,
            declared=stage.env,
            secrets=secrets,
            platform={"HOME": str(run.folder / "work")},
        )
        env[RUN_MARKER] = run.run_id  # last: a stage cannot hide from recover()
        return env

    # -- storage ------------------------------------------------------------------------

    def _save(self, run: _Run) -> None:
        """Write state.json (called with ``run.cond`` held).

        A failed write is logged and the run goes on: the in-memory record answers
        ``status()``, the next write catches up, and ``health()`` reports the disk.
        """
        try:
            _write_atomic(run.folder / "state.json", run.record.model_dump_json(indent=2))
        except OSError:
            logger.exception("could not write the state of run %s", run.run_id)

    def _run_folder(self, run_id: str) -> Path:
        if not _RUN_ID.match(run_id):
            raise NotFound(f"no pipeline run {run_id!r}", external_id=run_id)
        return self._runs_dir / run_id

    def _read_record(self, run_id: str) -> _RunRecord:
        path = self._run_folder(run_id) / "state.json"
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"no pipeline run {run_id!r}", external_id=run_id) from None
        return _RunRecord.model_validate_json(raw)

    def _in_memory(self, run_id: str) -> _Run | None:
        with self._lock:
            return self._runs.get(run_id)

    def _run_of_key(self, key: str) -> str | None:
        """The run submitted with idempotency ``key`` (called with ``_lock`` held): by this
        executor, or by another on the same state dir — a replica, or a process that died
        after starting the run and before its submission was recorded, whose delivery now
        comes here. A key not indexed yet is looked for in the run folders made since the
        last look, so a run another executor made after this one started is found."""
        found = self._keys.get(key)
        if found is None and self._runs_dir.is_dir():
            for folder in sorted(self._runs_dir.iterdir()):
                if folder.name in self._indexed or not _RUN_ID.match(folder.name):
                    continue
                try:
                    record = _RunRecord.model_validate_json((folder / "state.json").read_bytes())
                except FileNotFoundError:  # being made: its state is written before it starts
                    continue
                except (OSError, ValueError):
                    logger.exception("unreadable run state in %s: its key is not indexed", folder)
                    continue
                self._indexed.add(folder.name)
                if record.idempotency_key is not None:
                    self._keys.setdefault(record.idempotency_key, record.run_id)
            found = self._keys.get(key)
        return found

    def _refuse_if_unisolated(self) -> None:
        if self.refusal is not None:
            raise IsolationUnavailable(self.refusal, isolation=self.isolation.value)

    def _refuse_if_closed(self) -> None:
        if self._closed:
            raise IntegrationUnavailable("the local executor is shut down")


# -------------------------------------------------------------------------------------
# Processes and files (Linux: pidfds, /proc)
# -------------------------------------------------------------------------------------


def _find_program(name: str, path: str, cwd: Path) -> Path | None:
    """The executable a stage's ``command[0]`` names, as ``execvp`` in ``cwd`` finds it."""
    if "/" in name:
        candidate = cwd / name  # an absolute name replaces cwd
        return candidate if os.access(candidate, os.X_OK) and candidate.is_file() else None
    found = shutil.which(name, path=path)
    return Path(found) if found is not None else None


def _is_runner_of(pid: int, folder: Path, stage: str, attempt: int) -> bool:
    """Whether process ``pid`` is the runner of that attempt (by its command line)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    argv = [arg.decode(errors="replace") for arg in raw.split(b"\0")[:-1]]
    return stage_runner.is_command_of(argv, str(folder), stage, attempt)


def _find_runner(
    run: _Run, stage: str, attempt: int, pid: int | None, start: int | None
) -> _Runner | None:
    """The live runner of a stage's attempt that another executor started: the recorded
    process where it still is that runner, else one marked with the run's id (a crash
    before its pid was recorded)."""
    if pid is not None and start is not None and _live_start_time(pid) == start:
        candidates = [pid]
    else:
        candidates = _marked_processes(run.run_id)
    for candidate in candidates:
        if not _is_runner_of(candidate, run.folder, stage, attempt):
            continue
        started = _live_start_time(candidate)
        if started is None:
            continue
        try:
            pidfd = os.pidfd_open(candidate)
        except OSError:
            continue
        # the pid changed hands before the open
        if _live_start_time(candidate) != started or not _is_runner_of(
            candidate, run.folder, stage, attempt
        ):
            os.close(pidfd)
            continue
        return _Runner(stage, attempt, candidate, started, pidfd)
    return None


def _forget_attempt(folder: Path, stage: str, attempt: int) -> None:
    """Remove what an earlier run of this attempt number left (before a retry()), so that
    its outcome is never taken for the coming one's."""
    (folder / "exits").mkdir(exist_ok=True)
    for path in (
        stage_runner.outcome_path(str(folder), stage, attempt),
        stage_runner.pid_path(str(folder), stage, attempt),
    ):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _read_outcome(folder: Path, stage: str, attempt: int) -> dict[str, Any] | None:
    """What the runner of that attempt wrote when it ended; None before (or never)."""
    path = Path(stage_runner.outcome_path(str(folder), stage, attempt))
    try:
        ended = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        logger.exception("unreadable outcome %s: the attempt counts as lost", path)
        return None
    return ended if isinstance(ended, dict) else None


def _kill_stage_group(folder: Path, stage: str, attempt: int, grace: float) -> None:
    """Kill the process group of that attempt's stage, as its runner recorded it, where
    the runner itself is gone and the leader is still the one recorded."""
    path = Path(stage_runner.pid_path(str(folder), stage, attempt))
    try:
        pid_text, start_text = path.read_text().split()
        pid, start = int(pid_text), int(start_text)
    except (OSError, ValueError):
        return
    _kill_orphans([(pid, start)], grace)


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _carries_marker(pid: int, run_id: str) -> bool:
    """Whether process ``pid`` was started with ``run_id``'s marker in its environment."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"\0{RUN_MARKER}={run_id}\0".encode() in b"\0" + environ + b"\0"


def _marked_processes(run_id: str) -> list[int]:
    """Processes (other than this one) whose environment carries ``run_id``'s marker."""
    return [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit()
        and int(entry.name) != os.getpid()
        and _carries_marker(int(entry.name), run_id)
    ]


def _kill_marked(run_id: str, grace: float) -> None:
    """SIGTERM, then SIGKILL after ``grace``, every process marked with ``run_id``.

    Signals go through pidfds opened while the marker was seen, so a pid that changes
    hands in between is never signalled.
    """
    pidfds: list[int] = []
    try:
        for pid in _marked_processes(run_id):
            try:
                pidfd = os.pidfd_open(pid)
            except OSError:
                continue
            if not _carries_marker(pid, run_id):  # the pid changed hands before the open
                os.close(pidfd)
                continue
            pidfds.append(pidfd)
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(pidfd, signal.SIGTERM)
        exited = _wait_pidfds(pidfds, grace)
        for pidfd in pidfds:
            if pidfd not in exited:
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    finally:
        for pidfd in pidfds:
            os.close(pidfd)


def _process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat: when the process started, in clock ticks after boot."""
    return stage_runner.start_time(pid)


def _live_start_time(pid: int) -> int | None:
    """The start time of process ``pid``, or None when it is gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
        fields = raw[raw.rindex(")") + 2 :].split()
        return None if fields[0] == "Z" else int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_pidfds(pidfds: Sequence[int], timeout: float | None) -> set[int]:
    """Wait until the processes behind ``pidfds`` exit or ``timeout`` passes.

    :returns: the pidfds whose process has exited (a zombie counts as exited).
    """
    poller = select.poll()
    for fd in pidfds:
        poller.register(fd, select.POLLIN)
    pending = set(pidfds)
    deadline = None if timeout is None else time.monotonic() + timeout
    while pending:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        for fd, _ in poller.poll(None if remaining is None else remaining * 1000):
            pending.discard(fd)
            poller.unregister(fd)
        if deadline is not None and time.monotonic() >= deadline:
            break
    return set(pidfds) - pending


def _wait_exit_or_wake(pidfd: int, wake_fd: int) -> bool:
    """Wait until the process behind ``pidfd`` exits or ``wake_fd`` becomes readable.

    :returns: whether the process has exited (a zombie counts as exited).
    """
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    poller.register(wake_fd, select.POLLIN)
    return pidfd in {fd for fd, _ in poller.poll()}


def _reap_later(popen: subprocess.Popen[bytes]) -> None:
    """Reap a runner this process started but no longer watches, whenever it exits, so
    that it leaves no zombie behind (the thread only waits; it drives nothing)."""
    threading.Thread(target=popen.wait, name=f"llmops-local-reap-{popen.pid}", daemon=True).start()


def _kill_orphans(groups: Sequence[tuple[int, int]], grace: float) -> None:
    """Kill process groups a dead server left, where the leader is still the one recorded.

    A pid whose start time differs belongs to another process now and is left alone. The
    leaders are not our children, so their exit is awaited through pidfds.
    """
    targets: list[tuple[int, int, int]] = []
    try:
        for pid, start in groups:
            if _process_start_time(pid) != start:
                continue
            try:
                pidfd = os.pidfd_open(pid)
            except OSError:
                continue
            if _process_start_time(pid) != start:  # the pid changed hands before the open
                os.close(pidfd)
                continue
            targets.append((pid, start, pidfd))
            _signal_group(pid, signal.SIGTERM)
        exited = _wait_pidfds([fd for _, _, fd in targets], grace)
        for pid, start, pidfd in targets:
            if pidfd not in exited and _process_start_time(pid) == start:
                _signal_group(pid, signal.SIGKILL)
    finally:
        for _, _, pidfd in targets:
            os.close(pidfd)


def _try_lock(folder: Path, *, patience: float = 0.0) -> int | None:
    """Take the run's ``active.lock``, trying for ``patience`` seconds; None when another
    holder keeps it."""
    fd = os.open(folder / "active.lock", os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + patience
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                return None
            time.sleep(0.005)
            continue
        return fd


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _read_log(path: Path, stage: str, tail_bytes: int | None) -> StageLog:
    if tail_bytes is not None:
        tail_bytes = max(0, tail_bytes)
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            truncated = tail_bytes is not None and size > tail_bytes
            fh.seek(size - tail_bytes if truncated and tail_bytes is not None else 0)
            data = fh.read()
    except FileNotFoundError:
        return StageLog(stage=stage, text="")
    return StageLog(stage=stage, text=data.decode("utf-8", errors="replace"), truncated=truncated)
