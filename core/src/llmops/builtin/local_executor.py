"""Run pipelines as local subprocesses: the orchestrator for hosts without a cluster.

Each run lives in its own folder, ``<state_dir>/runs/<run_id>/``:

``spec.json``
    the submitted spec without ``secret_env``; secret values stay in memory only.
``state.json``
    the pipeline's and every stage's state, attempts, exit codes, timestamps, and the pid
    and kernel start time of each running stage; always replaced atomically.
``logs/<stage>.log``
    the output of every attempt, each after an ``--- attempt i/n ---`` line.
``work/``
    the stages' default working directory.
``active.lock``
    held (``flock``) by the executor driving the run, for as long as it does, so that
    :meth:`LocalExecutor.recover` can tell a run whose server died from a live one.

A stage is a subprocess in a session of its own, so its whole process group can be
signalled: when the stage ends, times out or is cancelled, nothing it started survives it.
Its environment is built, not inherited (:func:`llmops.builtin.sandbox.stage_environment`),
it runs in a bubblewrap sandbox that hides the platform's data dir, database and key file
where the host allows one (:mod:`llmops.builtin.sandbox`), and its output passes through
the executor, which scrubs the run's secret values out of it before it reaches the log.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
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
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel

from llmops.builtin.sandbox import (
    DEFAULT_ENV_ALLOWLIST,
    Isolation,
    IsolationUnavailable,
    Sandbox,
    refusal,
    resolve,
    stage_environment,
)
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
from llmops.redaction import Redactor

logger = logging.getLogger(__name__)

#: The message of a run that a previous server process left unfinished.
INTERRUPTED_MESSAGE = "interrupted: the server stopped while this run was active"

#: Every stage process (and what it starts) carries its run id in this variable, so a
#: restarted server finds the orphans of a crash even where no pid was recorded yet.
RUN_MARKER = "LLMOPS_EXECUTOR_RUN_ID"

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
    #: The running attempt's process (its process group too) and its start time in clock
    #: ticks after boot (field 22 of /proc/<pid>/stat), so a reused pid is never killed.
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
    #: Names only: a retry after a restart must know that the secret values are gone.
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


class _Run:
    """The spec with its secrets, the record, and the live processes of one run.

    ``cond`` guards everything mutable here; the scheduler waits on it and every stage
    worker notifies it when its stage ends.
    """

    def __init__(self, folder: Path, spec: PipelineSpec, record: _RunRecord) -> None:
        self.run_id = record.run_id
        self.folder = folder
        self.spec = spec
        self.record = record
        self.cond = threading.Condition()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.cancel_requested = False
        self.stage_failed = False
        self.thread: threading.Thread | None = None
        #: scrubs the run's secret values out of its stages' output
        self.redactor = Redactor(v.get_secret_value() for v in spec.secret_env.values())

    @property
    def active(self) -> bool:
        return self.thread is not None and self.thread.is_alive()


@dataclass(frozen=True)
class _Outcome:
    succeeded: bool
    cancelled: bool
    exit_code: int | None
    message: str


# -------------------------------------------------------------------------------------
# The executor
# -------------------------------------------------------------------------------------


class LocalExecutor:
    """The in-core :class:`~llmops.capabilities.orchestration.OrchestrationProvider`.

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
        self._lock = threading.RLock()  # guards _runs, _keys, _closed; taken before run.cond
        self._runs: dict[str, _Run] = {}
        self._keys: dict[str, str] | None = None  # idempotency key -> run id, built lazily
        self._closed = False

    # -- OrchestrationProvider -------------------------------------------------------------------

    def submit(self, spec: PipelineSpec) -> PipelineStatus:
        """Persist the run and start it in the background; returns at once."""
        order = validate_pipeline(spec)
        self._refuse_if_unisolated()
        with self._lock:
            self._refuse_if_closed()
            key = spec.idempotency_key
            existing = self._key_index().get(key) if key is not None else None
            if existing is None:
                run = self._create_run(spec)
                lock_fd = _try_lock(run.folder)
                if lock_fd is None:  # pragma: no cover - a fresh uuid folder is ours
                    raise Conflict(f"run {run.run_id} is driven by another executor")
                if key is not None:
                    self._key_index()[key] = run.run_id
                self._runs[run.run_id] = run
                self._start(run, order, lock_fd)
                existing = run.run_id
        return self.status(existing)

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

    def recover(self) -> list[str]:
        """Fail the runs a previous server process left unfinished; return their ids.

        A stage recorded as running whose process still exists with the recorded start
        time has its process group killed first. Runs that another live executor drives
        (it holds their lock) are left alone.
        """
        recovered: list[str] = []
        if not self._runs_dir.is_dir():
            return recovered
        for folder in sorted(self._runs_dir.iterdir()):
            run_id = folder.name
            if not _RUN_ID.match(run_id) or self._in_memory(run_id) is not None:
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

    def close(self) -> None:
        """Cancel every active run and wait for its threads; refuse new work after."""
        with self._lock:
            self._closed = True
            runs = [run for run in self._runs.values() if run.active]
        self._cancel_runs(runs)

    # -- runs ---------------------------------------------------------------------------

    def _create_run(self, spec: PipelineSpec) -> _Run:
        run_id = uuid.uuid4().hex
        folder = self._runs_dir / run_id
        (folder / "logs").mkdir(parents=True)
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

    def _load_run(self, run_id: str) -> _Run:
        """A run of an earlier process, to retry it."""
        record = self._read_record(run_id)
        folder = self._run_folder(run_id)
        if record.secret_env_names and record.state in (
            PipelineState.FAILED,
            PipelineState.CANCELLED,
        ):
            raise Conflict(
                f"run {run_id} needs secret environment variables "
                f"({', '.join(record.secret_env_names)}) that were lost when the server "
                "restarted; submit the pipeline again",
                secret_env=record.secret_env_names,
            )
        spec = PipelineSpec.model_validate_json((folder / "spec.json").read_bytes())
        return _Run(folder, spec, record)

    def _start(self, run: _Run, order: list[str], lock_fd: int) -> None:
        run.thread = threading.Thread(
            target=self._drive,
            args=(run, order, lock_fd),
            name=f"llmops-local-{run.run_id[:8]}",
            daemon=True,
        )
        run.thread.start()

    def _cancel_runs(self, runs: Sequence[_Run], *, join: bool = True) -> None:
        """SIGTERM every stage's group, SIGKILL the groups whose leader outlives the grace.

        Signals go only to processes still registered in ``run.procs``: a stage worker
        reaps its process and unregisters it under ``run.cond``, so a registered pid is
        never one the kernel has handed out again.
        """
        targets: list[tuple[_Run, subprocess.Popen[bytes], int | None]] = []
        try:
            for run in runs:
                with run.cond:
                    run.cancel_requested = True
                    for proc in run.procs.values():
                        pidfd: int | None = None
                        with contextlib.suppress(OSError):
                            pidfd = os.pidfd_open(proc.pid)
                        targets.append((run, proc, pidfd))
                        _signal_group(proc.pid, signal.SIGTERM)
                    run.cond.notify_all()
            pidfds = [fd for _, _, fd in targets if fd is not None]
            exited = _wait_pidfds(pidfds, self.kill_grace_seconds)
            for run, proc, pidfd in targets:
                if pidfd is None or pidfd not in exited:
                    with run.cond:
                        if any(p is proc for p in run.procs.values()):
                            _signal_group(proc.pid, signal.SIGKILL)
        finally:
            for _, _, pidfd in targets:
                if pidfd is not None:
                    os.close(pidfd)
        for run in runs if join else ():
            if run.thread is not None:
                run.thread.join(timeout=self.kill_grace_seconds + 5)

    def _drive(self, run: _Run, order: list[str], lock_fd: int) -> None:
        """The scheduler of one run: start the ready stages, wait for one to end, repeat."""
        stages = {stage.name: stage for stage in run.spec.stages}
        limit = min(run.spec.max_parallel or self.max_parallel, self.max_parallel)
        workers: list[threading.Thread] = []
        try:
            with run.cond:
                record = run.record
                record.state = PipelineState.RUNNING
                record.started_at = record.started_at or utcnow()
                self._save(run)
                while True:
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
                        break
                    run.cond.wait()
                self._finish(run)
        except Exception as exc:
            logger.exception("the scheduler of run %s failed", run.run_id)
            self._cancel_runs([run], join=False)
            for worker in workers:
                worker.join()
            with run.cond:
                self._finish(run, error=f"executor error: {exc}")
        finally:
            for worker in workers:
                worker.join()
            os.close(lock_fd)

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

    def _start_stage(self, run: _Run, stage: StageSpec) -> threading.Thread:
        worker = threading.Thread(
            target=self._run_stage,
            args=(run, stage),
            name=f"llmops-local-{run.run_id[:8]}-{stage.name}",
            daemon=True,
        )
        worker.start()
        return worker

    def _run_stage(self, run: _Run, stage: StageSpec) -> None:
        """Run a stage's attempts, then record how it ended and wake the scheduler."""
        total = stage.retries + 1
        outcome = _Outcome(succeeded=False, cancelled=False, exit_code=None, message="")
        try:
            for attempt in range(1, total + 1):
                with run.cond:
                    if run.cancel_requested:
                        outcome = _Outcome(False, True, outcome.exit_code, "cancelled")
                        break
                    record = run.record.stage(stage.name)
                    record.attempts = attempt
                    if attempt > 1:
                        record.message = f"attempt {attempt - 1} failed: {outcome.message}"
                    self._save(run)
                outcome = self._attempt(run, stage, attempt, total)
                if outcome.succeeded or outcome.cancelled:
                    break
        except Exception as exc:
            logger.exception("stage %s of run %s could not be run", stage.name, run.run_id)
            outcome = _Outcome(False, False, None, f"executor error: {exc}")
        with run.cond:
            record = run.record.stage(stage.name)
            record.exit_code = outcome.exit_code
            record.finished_at = utcnow()
            record.pid = record.pid_start_time = None
            if outcome.succeeded:
                record.state, record.message = StageState.SUCCEEDED, ""
            elif outcome.cancelled:
                record.state, record.message = StageState.CANCELLED, "cancelled"
            else:
                record.state = StageState.FAILED
                suffix = f" after {record.attempts} attempts" if record.attempts > 1 else ""
                record.message = outcome.message + suffix
                run.stage_failed = True
            self._save(run)
            run.cond.notify_all()

    def _attempt(self, run: _Run, stage: StageSpec, attempt: int, total: int) -> _Outcome:
        """Start one attempt of a stage and wait for it; kill its group when it ends."""
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
        with log_path.open("ab") as log:
            log.write(f"--- attempt {attempt}/{total} ---\n".encode())
            log.flush()
            try:
                proc = subprocess.Popen(
                    argv,
                    cwd=cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                message = f"could not start {stage.command[0]!r}: {exc}"
                log.write(f"--- {message} ---\n".encode())
                return _Outcome(False, False, None, message)
        assert proc.stdout is not None
        pump = threading.Thread(
            target=_pump,
            args=(proc.stdout, log_path, run.redactor),
            name=f"llmops-local-{run.run_id[:8]}-{stage.name}-log",
            daemon=True,
        )
        pump.start()
        # Only this thread reaps ``proc``, under run.cond and after its group is killed.
        try:
            pidfd = os.pidfd_open(proc.pid)
        except OSError:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        try:
            with run.cond:
                run.procs[stage.name] = proc
                record = run.record.stage(stage.name)
                record.pid, record.pid_start_time = proc.pid, _process_start_time(proc.pid)
                self._save(run)
                cancelled_before_start = run.cancel_requested
            if cancelled_before_start:  # cancel() listed the processes before this one
                self._stop(proc.pid, pidfd)
            timed_out = not _wait_pidfds([pidfd], stage.timeout_seconds)
            if timed_out:
                self._stop(proc.pid, pidfd)
                _wait_pidfds([pidfd], None)
            with run.cond:
                # The leader is a zombie until reaped and pins the group id: kill what
                # the stage left behind, then reap.
                _signal_group(proc.pid, signal.SIGKILL)
                exit_code = proc.wait()
                run.procs.pop(stage.name, None)
                cancelled = run.cancel_requested
        finally:
            os.close(pidfd)
            # the group is dead: the pipe ends once the pump has read what is left (a
            # process that left the group may hold it open: the pump goes on alone)
            pump.join(timeout=self.kill_grace_seconds + 5)
        if cancelled:
            outcome = _Outcome(False, True, exit_code, "cancelled")
        elif timed_out:
            timeout = f"{stage.timeout_seconds:g}"
            outcome = _Outcome(False, False, exit_code, f"timed out after {timeout} s")
        elif exit_code != 0:
            outcome = _Outcome(False, False, exit_code, _describe_exit(exit_code))
        else:
            return _Outcome(True, False, 0, "")
        with log_path.open("ab") as log:
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

    def _stop(self, pid: int, pidfd: int) -> None:
        """SIGTERM a stage's own, unreaped group; SIGKILL it after the grace period."""
        _signal_group(pid, signal.SIGTERM)
        if not _wait_pidfds([pidfd], self.kill_grace_seconds):
            _signal_group(pid, signal.SIGKILL)

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

    def _key_index(self) -> dict[str, str]:
        """Idempotency keys of every run on disk (called with ``_lock`` held)."""
        if self._keys is None:
            keys: dict[str, str] = {}
            if self._runs_dir.is_dir():
                for path in sorted(self._runs_dir.glob("*/state.json")):
                    try:
                        record = _RunRecord.model_validate_json(path.read_bytes())
                    except (OSError, ValueError):
                        logger.exception("unreadable run state %s: its key is not indexed", path)
                        continue
                    if record.idempotency_key is not None:
                        keys.setdefault(record.idempotency_key, record.run_id)
            self._keys = keys
        return self._keys

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


def _pump(source: io.BufferedReader, log_path: Path, redactor: Redactor) -> None:
    """Copy a stage's output into its log as it comes, its secrets scrubbed."""
    stream = redactor.stream()
    with source, log_path.open("ab") as log:
        while chunk := source.read1(65536):
            log.write(stream.feed(chunk))
            log.flush()
        log.write(stream.flush())


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


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat: when the process started, in clock ticks after boot."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
        return int(raw[raw.rindex(")") + 2 :].split()[19])
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


def _try_lock(folder: Path) -> int | None:
    """Take the run's ``active.lock`` without waiting; None when another holder has it."""
    fd = os.open(folder / "active.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
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
