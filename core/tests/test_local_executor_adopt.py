"""Runs outlive their executor: another executor on the same state dir takes them over.

Most tests hard-kill (SIGKILL) a real executor process mid-run: the holder script below
builds a :class:`LocalExecutor`, submits a pipeline, prints the run id and sleeps. A new
executor in the test process then adopts the run (or recovers it). The last ones stop an
executor cleanly instead (:meth:`LocalExecutor.detach`, a rolling restart).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

import llmops
from llmops.builtin import local_plugin
from llmops.builtin.local_executor import INTERRUPTED_MESSAGE, LocalExecutor, _kill_marked
from llmops.capabilities.orchestration import (
    AdoptsRuns,
    PipelineSpec,
    PipelineState,
    PipelineStatus,
    StageState,
)
from llmops.errors import Conflict, IntegrationUnavailable, NotFound
from llmops.plugins.info import PluginContext
from llmops.testing.waiting import wait_for

GRACE = 0.5
SECRET = "tok-4c1d9e-never-on-disk"

HOLDER = """
import os, sys, time
from pathlib import Path
from pydantic import SecretStr
from llmops.builtin.local_executor import LocalExecutor
from llmops.capabilities.orchestration import PipelineSpec

spec = PipelineSpec.model_validate_json(sys.argv[2])
if os.environ.get("HOLDER_SECRET"):
    spec = spec.model_copy(update={"secret_env": {"TOKEN": SecretStr(os.environ["HOLDER_SECRET"])}})
executor = LocalExecutor(Path(sys.argv[1]), kill_grace_seconds=float(sys.argv[3]))
print(executor.submit(spec).external_id, flush=True)
time.sleep(600)
"""


# -------------------------------------------------------------------------------------
# Helpers
# -------------------------------------------------------------------------------------


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    wait_for(predicate, timeout=timeout, interval=0.005, what=what or repr(predicate))


def sh(name: str, script: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "command": ["sh", "-c", textwrap.dedent(script).strip()], **fields}


def gate(marker: str = "started") -> str:
    """Shell that touches ``marker`` in the work dir, then waits for the test's ``go``."""
    return (
        f"touch {marker}; i=0; "
        "until [ -e go ]; do i=$((i + 1)); [ $i -gt 2000 ] && exit 9; sleep 0.01; done"
    )


def stage_of(status: PipelineStatus, name: str) -> Any:
    return next(stage for stage in status.stages if stage.name == name)


def alive(pid: int) -> bool:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return raw[raw.rindex(")") + 2] != "Z"


class Host:
    """Executors on one state dir: killed holders, and adopters in this process."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.holders: list[subprocess.Popen[str]] = []
        self.executors: list[LocalExecutor] = []
        self.run_ids: list[str] = []

    def submit(self, *stages: dict[str, Any], secret: str | None = None, **fields: Any) -> str:
        """Submit a pipeline from a holder process; return the run id."""
        spec = PipelineSpec.model_validate({"name": "held", "stages": list(stages), **fields})
        env = {**os.environ, **({"HOLDER_SECRET": secret} if secret else {})}
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(self.state_dir), spec.model_dump_json(), str(GRACE)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.holders.append(holder)
        assert holder.stdout is not None
        run_id = holder.stdout.readline().strip()
        assert run_id, "the holder printed no run id"
        self.run_ids.append(run_id)
        return run_id

    def kill_holders(self) -> None:
        """The executors die: no close(), no cleanup."""
        for holder in self.holders:
            if holder.poll() is None:
                holder.send_signal(signal.SIGKILL)
            holder.wait()

    def executor(self) -> LocalExecutor:
        executor = LocalExecutor(self.state_dir, kill_grace_seconds=GRACE)
        self.executors.append(executor)
        return executor

    def folder(self, run_id: str) -> Path:
        return self.state_dir / "runs" / run_id

    def work(self, run_id: str) -> Path:
        return self.folder(run_id) / "work"

    def state(self, run_id: str) -> dict[str, Any]:
        state: dict[str, Any] = json.loads((self.folder(run_id) / "state.json").read_text())
        return state

    def runner(self, run_id: str, stage: str) -> int:
        """The pid of a stage's runner, as state.json records it."""

        def pid() -> int | None:
            found = next(s["pid"] for s in self.state(run_id)["stages"] if s["name"] == stage)
            return found if isinstance(found, int) else None

        wait_until(pid, what=f"the runner of {stage}")
        found = pid()
        assert found is not None
        return found

    def stage_pid(self, run_id: str, stage: str, attempt: int = 1) -> int:
        path = self.folder(run_id) / "exits" / f"{stage}.{attempt}.pid"
        wait_until(path.exists, what=f"the pid of {stage}")
        return int(path.read_text().split()[0])

    def outcome(self, run_id: str, stage: str, attempt: int = 1) -> dict[str, Any]:
        path = self.folder(run_id) / "exits" / f"{stage}.{attempt}.json"
        wait_until(path.exists, what=f"the outcome of {stage} attempt {attempt}")
        outcome: dict[str, Any] = json.loads(path.read_text())
        return outcome

    def log(self, run_id: str, stage: str) -> str:
        return (self.folder(run_id) / "logs" / f"{stage}.log").read_text()

    def close(self) -> None:
        self.kill_holders()
        for executor in self.executors:
            executor.close()
        for run_id in self.run_ids:
            _kill_marked(run_id, 0)


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    found = Host(tmp_path / "state")
    try:
        yield found
    finally:
        found.close()


def wait_terminal(executor: LocalExecutor, run_id: str, timeout: float = 15.0) -> PipelineStatus:
    wait_until(lambda: executor.status(run_id).state.terminal, timeout, f"run {run_id} to end")
    return executor.status(run_id)


# -------------------------------------------------------------------------------------
# (a) a stage that runs on
# -------------------------------------------------------------------------------------


def test_a_stage_running_when_its_executor_died_goes_on_and_later_stages_then_run(
    host: Host,
) -> None:
    run_id = host.submit(
        sh("a", f"echo before; {gate()}; echo after"),
        sh("b", "echo b ran > b.txt", depends_on=["a"]),
    )
    wait_until((host.work(run_id) / "started").exists)
    runner = host.runner(run_id, "a")
    host.kill_holders()
    assert alive(runner)  # the stage's runner does not die with its executor

    executor = host.executor()
    assert executor.orphaned_runs() == [run_id]
    adopted = executor.adopt(run_id)
    assert adopted.state is PipelineState.RUNNING
    assert executor.adopt(run_id).state is PipelineState.RUNNING  # twice: harmless
    (host.work(run_id) / "go").touch()  # it writes after its executor died
    status = wait_terminal(executor, run_id)

    assert status.state is PipelineState.SUCCEEDED, status
    a = stage_of(status, "a")
    assert (a.state, a.attempts, a.exit_code) == (StageState.SUCCEEDED, 1, 0)
    assert stage_of(status, "b").state is StageState.SUCCEEDED
    assert (host.work(run_id) / "b.txt").read_text() == "b ran\n"
    assert executor.logs(run_id, stage="a")[0].text == "--- attempt 1/1 ---\nbefore\nafter\n"
    assert host.state(run_id)["state"] == "succeeded"
    assert executor.orphaned_runs() == []


#: how a stage that nobody watched ended, and what the adopter records of it
ENDINGS = pytest.mark.parametrize(
    ("script", "retries", "state", "attempts", "message"),
    [
        ("exit 0", 0, StageState.SUCCEEDED, 1, ""),
        ("exit 3", 0, StageState.FAILED, 1, "exit code 3"),
        ("exit 3", 1, StageState.SUCCEEDED, 2, ""),  # its retry runs under the adopter
    ],
    ids=["succeeded", "failed", "retried"],
)


# -------------------------------------------------------------------------------------
# (b) a stage that ended while nobody watched
# -------------------------------------------------------------------------------------


@ENDINGS
def test_a_stage_that_ended_while_nobody_watched_is_recorded_as_it_ended(
    host: Host,
    script: str,
    retries: int,
    state: StageState,
    attempts: int,
    message: str,
) -> None:
    run_id = host.submit(
        sh(
            "a",
            f"test -e attempted && exit 0; touch attempted; {gate()}; {script}",
            retries=retries,
        )
    )
    wait_until((host.work(run_id) / "started").exists)
    host.kill_holders()
    (host.work(run_id) / "go").touch()
    ended = host.outcome(run_id, "a")  # the runner wrote it, nobody watching
    assert ended["returncode"] == int(script.split()[1])
    assert host.state(run_id)["stages"][0]["state"] == "running"

    executor = host.executor()
    executor.adopt(run_id)
    status = wait_terminal(executor, run_id)

    a = stage_of(status, "a")
    assert (a.state, a.attempts, a.message) == (state, attempts, message)
    log = executor.logs(run_id, stage="a")[0].text
    if script == "exit 3":
        assert log.count("--- exit code 3 ---") == 1
    if attempts == 2:
        assert "--- attempt 2/2 ---" in log


# -------------------------------------------------------------------------------------
# (c) a stage killed with its executor
# -------------------------------------------------------------------------------------


@pytest.mark.parametrize("retries", [1, 0], ids=["retried", "interrupted"])
def test_a_stage_killed_with_its_executor_is_retried_or_failed_as_interrupted(
    host: Host, retries: int
) -> None:
    run_id = host.submit(
        sh(
            "a",
            "test -e attempted && echo second && exit 0; touch attempted; exec sleep 60",
            retries=retries,
        )
    )
    wait_until((host.work(run_id) / "attempted").exists)
    runner = host.runner(run_id, "a")
    stage = host.stage_pid(run_id, "a")
    host.kill_holders()
    os.kill(runner, signal.SIGKILL)  # the runner dies with it; its stage is left over
    wait_until(lambda: not alive(runner))

    executor = host.executor()
    executor.adopt(run_id)
    status = wait_terminal(executor, run_id)

    a = stage_of(status, "a")
    assert not alive(stage)  # never beside the next attempt
    log = executor.logs(run_id, stage="a")[0].text
    assert f"--- attempt 1/{retries + 1} was interrupted" in log
    if retries:
        assert (status.state, a.state, a.attempts) == (
            PipelineState.SUCCEEDED,
            StageState.SUCCEEDED,
            2,
        )
        assert log.endswith("--- attempt 2/2 ---\nsecond\n")
    else:
        assert (status.state, a.state, a.message) == (
            PipelineState.FAILED,
            StageState.FAILED,
            INTERRUPTED_MESSAGE,
        )
        assert status.message == f"stage a failed: {INTERRUPTED_MESSAGE}"


# -------------------------------------------------------------------------------------
# (d) cancel, (e) timeouts
# -------------------------------------------------------------------------------------


def test_cancel_of_an_adopted_run_stops_its_adopted_stage(host: Host) -> None:
    run_id = host.submit(
        sh("a", "sleep 60 & touch started; wait"), sh("b", "true", depends_on=["a"])
    )
    wait_until((host.work(run_id) / "started").exists)
    runner = host.runner(run_id, "a")
    stage = host.stage_pid(run_id, "a")
    host.kill_holders()
    executor = host.executor()
    executor.adopt(run_id)

    status = executor.cancel(run_id)

    assert status.state is PipelineState.CANCELLED
    assert stage_of(status, "a").state is StageState.CANCELLED
    assert stage_of(status, "b").state is StageState.SKIPPED
    assert not alive(runner)
    assert not alive(stage)
    assert "--- cancelled ---" in executor.logs(run_id, stage="a")[0].text


def test_a_timeout_holds_while_no_executor_watches(host: Host) -> None:
    run_id = host.submit(sh("a", "touch started; exec sleep 60", timeout_seconds=1.5))
    wait_until((host.work(run_id) / "started").exists)
    stage = host.stage_pid(run_id, "a")
    host.kill_holders()

    ended = host.outcome(run_id, "a")  # nobody watches: its runner enforced it

    assert ended["timed_out"] is True
    assert ended["signal"] == signal.SIGTERM
    assert not alive(stage)
    executor = host.executor()
    status = executor.adopt(run_id)
    status = wait_terminal(executor, run_id)
    a = stage_of(status, "a")
    assert (status.state, a.state) == (PipelineState.FAILED, StageState.FAILED)
    assert a.message == "timed out after 1.5 s"
    assert executor.logs(run_id, stage="a")[0].text.count("--- timed out after 1.5 s ---") == 1


# -------------------------------------------------------------------------------------
# (f) secrets
# -------------------------------------------------------------------------------------


def test_a_runner_gets_the_secrets_through_a_pipe_and_scrubs_them_from_the_log(
    host: Host,
) -> None:
    run_id = host.submit(
        sh("a", f'{gate()}; echo "token=$TOKEN"; test "${{#TOKEN}}" = {len(SECRET)}'), secret=SECRET
    )
    wait_until((host.work(run_id) / "started").exists)
    runner = host.runner(run_id, "a")
    stage = host.stage_pid(run_id, "a")
    runner_files = {
        name: Path(f"/proc/{runner}/{name}").read_bytes() for name in ("cmdline", "environ")
    }
    stage_environ = Path(f"/proc/{stage}/environ").read_bytes()
    host.kill_holders()
    (host.work(run_id) / "go").touch()
    host.outcome(run_id, "a")  # it printed the token with no executor alive

    executor = host.executor()
    executor.adopt(run_id)
    status = wait_terminal(executor, run_id)

    assert status.state is PipelineState.SUCCEEDED, status  # the stage had its secret
    for name, content in runner_files.items():
        assert SECRET.encode() not in content, name
    assert runner_files["environ"].split(b"\0")[:-1] == [
        f"LLMOPS_EXECUTOR_RUN_ID={run_id}".encode()
    ]
    assert b"LLMOPS_EXECUTOR_RUN_ID" in stage_environ  # bwrap's environ is the stage's
    assert "token=[redacted]" in host.log(run_id, "a")
    for path in host.folder(run_id).rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(errors="replace"), path


@pytest.mark.parametrize("handed_back", [False, True], ids=["missing", "given"])
def test_a_new_attempt_after_adoption_needs_the_secrets_handed_back(
    host: Host, handed_back: bool
) -> None:
    run_id = host.submit(
        sh(
            "a",
            f'test -e attempted && test "${{#TOKEN}}" = {len(SECRET)} && exit 0; touch attempted; '
            f"{gate()}; exit 3",
            retries=1,
        ),
        secret=SECRET,
    )
    wait_until((host.work(run_id) / "started").exists)
    host.kill_holders()
    (host.work(run_id) / "go").touch()
    host.outcome(run_id, "a")
    executor = host.executor()

    executor.adopt(run_id, secret_env={"TOKEN": SecretStr(SECRET)} if handed_back else None)
    status = wait_terminal(executor, run_id)

    a = stage_of(status, "a")
    if handed_back:
        assert (a.state, a.attempts) == (StageState.SUCCEEDED, 2)
    else:
        assert (a.state, a.attempts) == (StageState.FAILED, 1)  # never run without it
        assert "TOKEN" in a.message
        assert "secret" in a.message
        assert "TOKEN" in executor.logs(run_id, stage="a")[0].text
        with pytest.raises(Conflict, match="TOKEN"):
            executor.retry(run_id)


# -------------------------------------------------------------------------------------
# (g) who may adopt, (h) orphans and recover
# -------------------------------------------------------------------------------------


def test_adopt_is_refused_while_a_live_executor_drives_the_run(host: Host) -> None:
    live = host.executor()
    spec = PipelineSpec.model_validate({"name": "live", "stages": [sh("a", "sleep 60")]})
    run_id = live.submit(spec).external_id
    host.run_ids.append(run_id)
    wait_until(lambda: live.status(run_id).state is PipelineState.RUNNING)

    with pytest.raises(Conflict):
        host.executor().adopt(run_id)
    assert live.adopt(run_id).state is PipelineState.RUNNING  # its own: harmless
    with pytest.raises(NotFound):
        live.adopt("0" * 32)
    live.cancel(run_id)
    assert host.executor().adopt(run_id).state is PipelineState.CANCELLED  # finished


@pytest.mark.parametrize("started", ["after", "before"], ids=["new-executor", "running-executor"])
def test_a_submission_sent_again_after_its_executor_died_drives_the_run_it_had_started(
    host: Host, started: str
) -> None:
    """The server died after the executor had started the run but before the delivery of
    the submission committed: the delivery comes again, to another executor, with the same
    key. It gets the run it had started (not a second one), and that executor drives it
    to its end, since the pipeline now names it as the owner and nobody takes it over.
    Also when that executor had started before the dead one made the run (a replica,
    which had looked its keys up already): it finds the run by its key on disk."""
    earlier: list[str] = []
    if started == "before":
        executor = host.executor()
        spec = PipelineSpec.model_validate(
            {"name": "earlier", "stages": [sh("a", "true")], "idempotency_key": "pipeline-1:submit"}
        )
        earlier.append(executor.submit(spec).external_id)  # its keys are looked up now
        host.run_ids += earlier
    stages = (sh("a", f"echo a >> a.txt; {gate()}"), sh("b", "echo b > b.txt", depends_on=["a"]))
    key = "pipeline-7f3a:submit"
    run_id = host.submit(*stages, idempotency_key=key)
    wait_until((host.work(run_id) / "started").exists)
    host.kill_holders()

    if started == "after":
        executor = host.executor()
    again = PipelineSpec.model_validate(
        {"name": "held", "stages": list(stages), "idempotency_key": key}
    )
    assert executor.submit(again).external_id == run_id
    (host.work(run_id) / "go").touch()
    status = wait_terminal(executor, run_id)

    assert status.state is PipelineState.SUCCEEDED, status
    assert [(s.name, s.attempts) for s in status.stages] == [("a", 1), ("b", 1)]
    assert (host.work(run_id) / "a.txt").read_text() == "a\n"  # stage a ran once
    assert (host.work(run_id) / "b.txt").read_text() == "b\n"
    assert executor.orphaned_runs() == []
    runs = sorted(p.name for p in (host.state_dir / "runs").iterdir())
    assert runs == sorted([run_id, *earlier])


def test_orphaned_runs_and_recover_keep_tell_the_dead_executors_runs_apart(
    host: Host, tmp_path: Path
) -> None:
    kept = host.submit(sh("a", gate()))
    ended = host.submit(sh("a", gate()))
    for run_id in (kept, ended):
        wait_until((host.work(run_id) / "started").exists)
    ended_runner = host.runner(ended, "a")
    ended_stage = host.stage_pid(ended, "a")
    host.kill_holders()
    live = host.executor()
    spec = PipelineSpec.model_validate({"name": "live", "stages": [sh("a", "sleep 60")]})
    driven = live.submit(spec).external_id
    host.run_ids.append(driven)
    wait_until(lambda: live.status(driven).state is PipelineState.RUNNING)
    # building the plugin's executor ends nothing: the core decides (AdoptsRuns)
    context = PluginContext(
        plugin_name="local",
        data_dir=host.state_dir,
        api_url="http://127.0.0.1:8000/llm-ops/v1",
        core_version=llmops.__version__,
    )
    built = local_plugin.llmops_orchestration(local_plugin.LocalSettings(), context)
    host.executors.append(built)
    assert isinstance(built, AdoptsRuns)

    assert built.orphaned_runs() == sorted([kept, ended])
    assert built.recover(keep={kept}) == [ended]

    gone = built.status(ended)
    assert (gone.state, gone.message) == (PipelineState.FAILED, INTERRUPTED_MESSAGE)
    wait_until(lambda: not alive(ended_runner) and not alive(ended_stage), timeout=5)
    assert host.state(kept)["state"] == "running"  # left untouched for adopt
    assert built.orphaned_runs() == [kept]
    assert live.status(driven).state is PipelineState.RUNNING
    built.adopt(kept)
    (host.work(kept) / "go").touch()
    assert wait_terminal(built, kept).state is PipelineState.SUCCEEDED


# -------------------------------------------------------------------------------------
# (i) a clean stop: detach() lets the runs go for another executor to adopt
# -------------------------------------------------------------------------------------


def submit_here(host: Host, executor: LocalExecutor, *stages: dict[str, Any]) -> str:
    """Submit a pipeline from an executor in this process; return the run id."""
    spec = PipelineSpec.model_validate({"name": "detached", "stages": list(stages)})
    run_id = executor.submit(spec).external_id
    host.run_ids.append(run_id)
    return run_id


def lock_is_free(host: Host, run_id: str) -> bool:
    fd = os.open(host.folder(run_id) / "active.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # releases the lock where it was taken
    return True


def threads_of(run_id: str) -> list[str]:
    """The scheduler and stage workers of a run that are still alive in this process."""
    prefix = f"llmops-local-{run_id[:8]}"
    return [t.name for t in threading.enumerate() if t.name.startswith(prefix)]


def stage_record(host: Host, run_id: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in host.state(run_id)["stages"] if s["name"] == name)
    return found


def test_a_detached_run_runs_on_and_the_executor_that_adopts_it_finishes_it(
    host: Host,
) -> None:
    first = host.executor()
    run_id = submit_here(
        host,
        first,
        sh("a", f"echo before; {gate()}; echo after"),
        sh("b", "echo b ran >> b.txt", depends_on=["a"]),
    )
    wait_until((host.work(run_id) / "started").exists)
    runner = host.runner(run_id, "a")
    stage = host.stage_pid(run_id, "a")

    assert first.detach() == [run_id]

    assert alive(runner)  # detach touches no stage
    assert alive(stage)
    assert lock_is_free(host, run_id)
    assert threads_of(run_id) == []  # nothing here drives it any more
    assert host.state(run_id)["state"] == "running"
    a = stage_record(host, run_id, "a")
    assert (a["state"], a["attempts"], a["pid"]) == ("running", 1, runner)
    assert a["pid_start_time"] is not None
    assert stage_record(host, run_id, "b")["state"] == "pending"
    assert first.status(run_id).state is PipelineState.RUNNING  # read from disk now

    second = host.executor()
    assert second.orphaned_runs() == [run_id]
    assert second.adopt(run_id).state is PipelineState.RUNNING
    (host.work(run_id) / "go").touch()
    status = wait_terminal(second, run_id)

    assert status.state is PipelineState.SUCCEEDED, status
    adopted = stage_of(status, "a")
    assert (adopted.state, adopted.attempts, adopted.exit_code) == (StageState.SUCCEEDED, 1, 0)
    b = stage_of(status, "b")
    assert (b.state, b.attempts) == (StageState.SUCCEEDED, 1)
    assert (host.work(run_id) / "b.txt").read_text() == "b ran\n"  # once
    assert second.logs(run_id, stage="a")[0].text == "--- attempt 1/1 ---\nbefore\nafter\n"
    assert host.state(run_id)["state"] == "succeeded"
    assert first.status(run_id).state is PipelineState.SUCCEEDED
    assert second.orphaned_runs() == []


def test_detach_returns_at_once_however_many_runs_are_active(host: Host) -> None:
    executor = host.executor()
    run_ids = [
        submit_here(
            host,
            executor,
            sh("a", "touch a.started; exec sleep 30"),
            sh("b", "touch b.started; exec sleep 30"),
            sh("c", "true", depends_on=["a", "b"]),
        )
        for _ in range(6)
    ]
    for run_id in run_ids:
        for name in ("a", "b"):
            wait_until((host.work(run_id) / f"{name}.started").exists)
            host.runner(run_id, name)
    runners = [host.runner(run_id, name) for run_id in run_ids for name in ("a", "b")]

    started = time.monotonic()
    detached = executor.detach()
    elapsed = time.monotonic() - started

    assert elapsed < 2.0, f"detach took {elapsed:.2f} s"
    assert sorted(detached) == sorted(run_ids)
    assert all(alive(pid) for pid in runners)
    for run_id in run_ids:
        assert lock_is_free(host, run_id)
        assert threads_of(run_id) == []
        assert [s["state"] for s in host.state(run_id)["stages"]] == [
            "running",
            "running",
            "pending",
        ]
    assert executor.active_work() == 0
    # the fixture's teardown kills the sleeping stages


def test_after_detach_new_work_is_refused_and_close_leaves_the_stages_running(
    host: Host,
) -> None:
    executor = host.executor()
    run_id = submit_here(host, executor, sh("a", "touch started; exec sleep 30"))
    wait_until((host.work(run_id) / "started").exists)
    runner = host.runner(run_id, "a")
    stage = host.stage_pid(run_id, "a")
    executor.detach()
    spec = PipelineSpec.model_validate({"name": "late", "stages": [sh("a", "true")]})

    with pytest.raises(IntegrationUnavailable):
        executor.submit(spec)
    with pytest.raises(IntegrationUnavailable):
        executor.retry(run_id)
    with pytest.raises(IntegrationUnavailable):
        executor.adopt(run_id)
    assert executor.detach() == []  # twice: harmless
    executor.close()

    assert alive(runner)
    assert alive(stage)
    assert not (host.folder(run_id) / "exits" / "a.1.json").exists()
    assert host.state(run_id)["state"] == "running"
    assert host.executor().orphaned_runs() == [run_id]


@ENDINGS
def test_a_stage_that_ended_between_detach_and_adopt_is_recorded_as_it_ended(
    host: Host,
    script: str,
    retries: int,
    state: StageState,
    attempts: int,
    message: str,
) -> None:
    first = host.executor()
    run_id = submit_here(
        host,
        first,
        sh(
            "a",
            f"test -e attempted && exit 0; touch attempted; {gate()}; {script}",
            retries=retries,
        ),
        sh("b", "echo b ran >> b.txt", depends_on=["a"]),
    )
    wait_until((host.work(run_id) / "started").exists)
    host.runner(run_id, "a")
    first.detach()
    (host.work(run_id) / "go").touch()
    ended = host.outcome(run_id, "a")  # the runner wrote it, nobody watching
    assert ended["returncode"] == int(script.split()[1])
    assert stage_record(host, run_id, "a")["state"] == "running"
    assert not (host.folder(run_id) / "exits" / "a.2.json").exists()  # no retry here

    second = host.executor()
    second.adopt(run_id)
    status = wait_terminal(second, run_id)

    a = stage_of(status, "a")
    assert (a.state, a.attempts, a.message) == (state, attempts, message)
    b = stage_of(status, "b")
    if state is StageState.SUCCEEDED:
        assert (status.state, b.state) == (PipelineState.SUCCEEDED, StageState.SUCCEEDED)
        assert (host.work(run_id) / "b.txt").read_text() == "b ran\n"
    else:
        assert (status.state, b.state) == (PipelineState.FAILED, StageState.SKIPPED)
    log = second.logs(run_id, stage="a")[0].text
    assert log.count("--- exit code 3 ---") == (1 if script == "exit 3" else 0)
    assert log.count("--- attempt 2/2 ---") == (1 if attempts == 2 else 0)


def test_runs_detached_at_any_point_are_finished_by_the_adopter_each_stage_run_once(
    host: Host,
) -> None:
    first = host.executor()
    run_ids = [
        submit_here(
            host,
            first,
            sh("a", "echo a >> ran.txt"),
            sh("b", "echo b >> ran.txt", depends_on=["a"]),
            sh("c", "echo c >> ran.txt", depends_on=["b"], retries=1),
        )
        for _ in range(5)
    ]
    detached = set(first.detach())  # the later runs have hardly started, if at all
    for run_id in run_ids:
        assert run_id in detached or host.state(run_id)["state"] == "succeeded"
        assert lock_is_free(host, run_id)

    second = host.executor()
    for run_id in sorted(detached):
        second.adopt(run_id)
    for run_id in run_ids:
        status = wait_terminal(second, run_id)
        assert status.state is PipelineState.SUCCEEDED, status
        assert [s.attempts for s in status.stages] == [1, 1, 1]
        assert (host.work(run_id) / "ran.txt").read_text() == "a\nb\nc\n"
