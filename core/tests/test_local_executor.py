"""The local executor: pipelines as subprocesses, in dependency order, on this machine."""

from __future__ import annotations

import contextlib
import itertools
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
from packaging.specifiers import SpecifierSet
from pydantic import SecretStr, ValidationError

import llmops
from llmops.builtin import local_plugin
from llmops.builtin.local_executor import INTERRUPTED_MESSAGE, LocalExecutor, _marked_processes
from llmops.capabilities.common import Capability, HealthStatus
from llmops.capabilities.orchestration import (
    AdoptsRuns,
    OrchestrationProvider,
    PipelineSpec,
    PipelineState,
    PipelineStatus,
    StageState,
)
from llmops.errors import Conflict, IntegrationUnavailable, InvalidRequest, NotFound
from llmops.plugins.discovery import make_plugin_manager
from llmops.plugins.info import PluginContext
from llmops.testing.waiting import wait_for

# -------------------------------------------------------------------------------------
# Helpers
# -------------------------------------------------------------------------------------


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    wait_for(predicate, timeout=timeout, interval=0.005, what=what or repr(predicate))


def wait_terminal(executor: LocalExecutor, run_id: str, timeout: float = 10.0) -> PipelineStatus:
    wait_until(lambda: executor.status(run_id).state.terminal, timeout, f"run {run_id} to end")
    return executor.status(run_id)


def sh(script: str, **fields: Any) -> dict[str, Any]:
    return {"command": ["sh", "-c", textwrap.dedent(script).strip()], **fields}


def pipeline(*stages: dict[str, Any], **fields: Any) -> PipelineSpec:
    return PipelineSpec.model_validate({"name": "test", "stages": list(stages), **fields})


def stage_of(status: PipelineStatus, name: str) -> Any:
    return next(stage for stage in status.stages if stage.name == name)


def run_dir(executor: LocalExecutor, run_id: str) -> Path:
    return executor.state_dir / "runs" / run_id


def stage_processes(run_id: str, program: str = "sleep") -> list[int]:
    """Host pids of the run's live processes running ``program`` (a sandboxed stage sees
    pids of its own namespace: ``$!`` is not a host pid). They carry the run marker."""
    found = []
    for pid in _marked_processes(run_id):
        with contextlib.suppress(OSError):
            argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0]
            if Path(argv0.decode()).name == program and _alive(pid):
                found.append(pid)
    return found


def live_group_members(pgid: int) -> list[int]:
    """Processes in the group that have not exited (zombies are dead already)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            raw = stat.read_text()
            fields = raw[raw.rindex(")") + 2 :].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(stat.parent.name))
    return members


def recorded_pid(executor: LocalExecutor, run_id: str, stage: str) -> int:
    """The pid state.json records for a running stage: its runner's (a session leader)."""
    path = run_dir(executor, run_id) / "state.json"

    def pid() -> int | None:
        state = json.loads(path.read_text())
        found = next(s["pid"] for s in state["stages"] if s["name"] == stage)
        return found if isinstance(found, int) else None

    wait_until(lambda: pid() is not None, what=f"the pid of stage {stage}")
    found = pid()
    assert found is not None
    return found


def stage_group(folder: Path, stage: str, attempt: int = 1) -> int:
    """The process group of a running stage: its leader, as the stage's runner records
    it in exits/<stage>.<attempt>.pid."""
    path = folder / "exits" / f"{stage}.{attempt}.pid"
    wait_until(path.exists, what=f"the process group of stage {stage}")
    return int(path.read_text().split()[0])


@pytest.fixture
def executor(tmp_path: Path) -> Iterator[LocalExecutor]:
    local = LocalExecutor(tmp_path / "state", kill_grace_seconds=0.5)
    try:
        yield local
    finally:
        local.close()


# -------------------------------------------------------------------------------------
# Scheduling
# -------------------------------------------------------------------------------------


def test_is_an_orchestrator_whose_runs_another_process_can_adopt(
    executor: LocalExecutor,
) -> None:
    orchestrator: OrchestrationProvider = executor
    adopter: AdoptsRuns = executor
    assert isinstance(orchestrator, OrchestrationProvider)
    assert isinstance(adopter, AdoptsRuns)
    assert executor.ui_url("0" * 32) is None


def test_dependents_run_in_parallel_after_their_dependency(executor: LocalExecutor) -> None:
    # b and c both depend on a; each waits for the other to have started, which only
    # ends when they run at the same time, and each checks that a has finished.
    rendezvous = """
        test -f a.done || exit 3
        touch {me}.started
        i=0
        while [ ! -f {other}.started ]; do
            i=$((i + 1)); [ "$i" -gt 1000 ] && exit 4; sleep 0.005
        done
    """
    spec = pipeline(
        sh("sleep 0.05; touch a.done", name="a"),
        sh(rendezvous.format(me="b", other="c"), name="b", depends_on=["a"]),
        sh(rendezvous.format(me="c", other="b"), name="c", depends_on=["a"]),
    )
    submitted = executor.submit(spec)
    assert submitted.state in {PipelineState.PENDING, PipelineState.RUNNING}

    status = wait_terminal(executor, submitted.external_id)

    assert status.state is PipelineState.SUCCEEDED, status
    a, b, c = (stage_of(status, n) for n in "abc")
    assert all(s.state is StageState.SUCCEEDED and s.exit_code == 0 for s in (a, b, c))
    assert a.finished_at <= b.started_at
    assert a.finished_at <= c.started_at
    assert status.started_at is not None
    assert status.finished_at is not None


def test_max_parallel_bounds_the_stages_running_at_once(tmp_path: Path) -> None:
    executor = LocalExecutor(tmp_path, max_parallel=4)
    try:
        spec = pipeline(*(sh("sleep 0.05", name=f"s{i}") for i in range(3)), max_parallel=1)
        status = wait_terminal(executor, executor.submit(spec).external_id)
    finally:
        executor.close()

    assert status.state is PipelineState.SUCCEEDED
    spans = sorted((s.started_at, s.finished_at) for s in status.stages if s.started_at)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end is not None
        assert end <= start


def test_failing_stage_is_run_retries_plus_one_times_then_dependents_are_skipped(
    executor: LocalExecutor,
) -> None:
    spec = pipeline(
        sh("echo attempt >> count.txt; echo boom; exit 1", name="a", retries=2),
        sh("true", name="b", depends_on=["a"]),
        sh("true", name="c", depends_on=["b"]),
    )
    run_id = executor.submit(spec).external_id

    status = wait_terminal(executor, run_id)

    assert status.state is PipelineState.FAILED
    assert "stage a failed" in status.message
    a = stage_of(status, "a")
    assert (a.state, a.attempts, a.exit_code) == (StageState.FAILED, 3, 1)
    assert a.message == "exit code 1 after 3 attempts"
    assert [stage_of(status, n).state for n in "bc"] == [StageState.SKIPPED] * 2
    count = (run_dir(executor, run_id) / "work" / "count.txt").read_text().splitlines()
    assert count == ["attempt"] * 3
    log = executor.logs(run_id, stage="a")[0].text
    for header in ("--- attempt 1/3 ---", "--- attempt 2/3 ---", "--- attempt 3/3 ---"):
        assert header in log
    assert log.count("boom") == 3


def test_a_failure_stops_scheduling_but_lets_running_stages_finish(
    executor: LocalExecutor, tmp_path: Path
) -> None:
    gate = tmp_path / "fails-was-recorded"
    spec = pipeline(
        sh("exit 2", name="fails"),
        sh(
            f"""
            i=0
            until [ -e {gate} ]; do
                i=$((i + 1)); [ "$i" -gt 1000 ] && exit 4; sleep 0.005
            done
            """,
            name="slow",
        ),
        sh("true", name="after-slow", depends_on=["slow"]),
    )
    run_id = executor.submit(spec).external_id
    wait_until(lambda: stage_of(executor.status(run_id), "fails").exit_code == 2)
    gate.touch()

    status = wait_terminal(executor, run_id)

    assert status.state is PipelineState.FAILED
    assert status.message == "stage fails failed: exit code 2"
    assert stage_of(status, "slow").state is StageState.SUCCEEDED
    assert stage_of(status, "after-slow").state is StageState.SKIPPED


def test_relative_working_dir_is_inside_the_run_work_folder(executor: LocalExecutor) -> None:
    spec = pipeline(sh("pwd > where.txt", name="a", working_dir="sub/dir"))
    run_id = executor.submit(spec).external_id

    assert wait_terminal(executor, run_id).state is PipelineState.SUCCEEDED
    where = run_dir(executor, run_id) / "work" / "sub" / "dir" / "where.txt"
    assert Path(where.read_text().strip()).resolve() == where.parent.resolve()


def test_a_command_that_cannot_start_fails_the_stage(executor: LocalExecutor) -> None:
    spec = pipeline({"name": "a", "command": ["/nonexistent/program"], "retries": 1})
    status = wait_terminal(executor, executor.submit(spec).external_id)

    a = stage_of(status, "a")
    assert (status.state, a.state, a.attempts) == (PipelineState.FAILED, StageState.FAILED, 2)
    assert "could not start '/nonexistent/program'" in a.message


# -------------------------------------------------------------------------------------
# Validation
# -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stages", "rule", "named"),
    [
        (
            [
                sh("true", name="a", depends_on=["b"]),
                sh("true", name="b", depends_on=["a"]),
                sh("true", name="c"),
            ],
            "cycle",
            ["a", "b"],
        ),
        ([sh("true", name="a", depends_on=["ghost"])], "unknown-dependency", ["a"]),
        ([sh("true", name="a"), sh("true", name="a")], "duplicate", ["a"]),
    ],
    ids=["cycle", "unknown-dependency", "duplicate"],
)
def test_invalid_pipelines_are_refused_naming_the_stages(
    executor: LocalExecutor, stages: list[dict[str, Any]], rule: str, named: list[str]
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        executor.submit(pipeline(*stages))

    assert refused.value.extensions["rule"] == rule
    assert refused.value.extensions["stages"] == named
    for name in named:
        assert name in refused.value.detail
    runs = executor.state_dir / "runs"
    assert not runs.exists() or not any(runs.iterdir())


# -------------------------------------------------------------------------------------
# Cancel and timeouts
# -------------------------------------------------------------------------------------


def test_cancel_stops_a_sleeping_stage_and_its_children_within_two_seconds(
    executor: LocalExecutor,
) -> None:
    spec = pipeline(
        sh("sleep 60 & echo $! > child.pid; sleep 60", name="a"),
        sh("true", name="b", depends_on=["a"]),
    )
    run_id = executor.submit(spec).external_id
    child_pid_file = run_dir(executor, run_id) / "work" / "child.pid"
    wait_until(lambda: child_pid_file.exists() and child_pid_file.read_text().strip() != "")
    runner = recorded_pid(executor, run_id, "a")
    pgid = stage_group(run_dir(executor, run_id), "a")
    wait_until(lambda: len(stage_processes(run_id)) == 2, what="both sleeps to start")
    assert set(stage_processes(run_id)) <= set(live_group_members(pgid))
    assert runner not in live_group_members(pgid)  # the runner outlives the stage's group

    started = time.monotonic()
    status = executor.cancel(run_id)
    wait_until(lambda: not live_group_members(pgid), timeout=2.0, what="the group to die")
    wait_until(lambda: not _alive(runner), timeout=2.0, what="the runner to exit")
    elapsed = time.monotonic() - started

    assert elapsed < 2.0
    assert status.state is PipelineState.CANCELLED
    assert stage_of(status, "a").state is StageState.CANCELLED
    assert stage_of(status, "b").state is StageState.SKIPPED
    assert "--- cancelled ---" in executor.logs(run_id, stage="a")[0].text


def test_cancel_kills_a_stage_that_ignores_sigterm_after_the_grace_period(
    executor: LocalExecutor,
) -> None:
    spec = pipeline(sh("trap '' TERM; touch started; sleep 60", name="stubborn"))
    run_id = executor.submit(spec).external_id
    wait_until((run_dir(executor, run_id) / "work" / "started").exists)
    pgid = stage_group(run_dir(executor, run_id), "stubborn")

    started = time.monotonic()
    status = executor.cancel(run_id)

    assert time.monotonic() - started < 2.0
    assert status.state is PipelineState.CANCELLED
    wait_until(lambda: not live_group_members(pgid), timeout=1.0)


def test_cancel_of_a_finished_run_changes_nothing(executor: LocalExecutor) -> None:
    run_id = executor.submit(pipeline(sh("true", name="a"))).external_id
    wait_terminal(executor, run_id)

    assert executor.cancel(run_id).state is PipelineState.SUCCEEDED


def test_timeout_kills_the_stage_and_fails_the_attempt(executor: LocalExecutor) -> None:
    spec = pipeline(sh("sleep 60", name="a", timeout_seconds=0.2, retries=1))
    started = time.monotonic()
    status = wait_terminal(executor, executor.submit(spec).external_id)

    assert time.monotonic() - started < 5
    a = stage_of(status, "a")
    assert (status.state, a.state, a.attempts) == (PipelineState.FAILED, StageState.FAILED, 2)
    assert a.message == "timed out after 0.2 s after 2 attempts"
    assert a.exit_code == -signal.SIGTERM
    assert "--- timed out after 0.2 s ---" in executor.logs(status.external_id)[0].text


def test_a_stage_leaves_no_background_process_behind(executor: LocalExecutor) -> None:
    spec = pipeline(sh("sleep 60 & echo $! > child.pid", name="a"))
    run_id = executor.submit(spec).external_id

    assert wait_terminal(executor, run_id).state is PipelineState.SUCCEEDED
    assert (run_dir(executor, run_id) / "work" / "child.pid").read_text().strip()
    wait_until(lambda: not stage_processes(run_id), 2.0, what="the background sleep to die")


def _alive(pid: int) -> bool:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return raw[raw.rindex(")") + 2] != "Z"


# -------------------------------------------------------------------------------------
# Idempotency and retry
# -------------------------------------------------------------------------------------


def test_idempotency_key_returns_the_same_run(executor: LocalExecutor) -> None:
    spec = pipeline(sh("echo once >> ran.txt", name="a"), idempotency_key="job-42")
    first = executor.submit(spec)
    second = executor.submit(spec)
    wait_terminal(executor, first.external_id)
    restarted = LocalExecutor(executor.state_dir)

    assert second.external_id == first.external_id
    assert restarted.submit(spec).external_id == first.external_id
    assert len(list((executor.state_dir / "runs").iterdir())) == 1
    ran = run_dir(executor, first.external_id) / "work" / "ran.txt"
    assert ran.read_text() == "once\n"


def test_retry_reruns_only_the_stages_that_did_not_succeed(executor: LocalExecutor) -> None:
    spec = pipeline(
        sh("echo run >> a.count", name="a"),
        sh("echo run >> b.count; test -f fixed", name="b", depends_on=["a"]),
        sh("echo run >> c.count", name="c", depends_on=["b"]),
    )
    run_id = executor.submit(spec).external_id
    assert wait_terminal(executor, run_id).state is PipelineState.FAILED
    work = run_dir(executor, run_id) / "work"
    (work / "fixed").touch()

    retried = executor.retry(run_id)
    status = wait_terminal(executor, run_id)

    assert retried.external_id == run_id
    assert status.state is PipelineState.SUCCEEDED
    assert status.message == ""
    assert [s.state for s in status.stages] == [StageState.SUCCEEDED] * 3
    assert (work / "a.count").read_text() == "run\n"
    assert (work / "b.count").read_text() == "run\nrun\n"
    assert (work / "c.count").read_text() == "run\n"


def test_retry_is_refused_unless_the_run_failed_or_was_cancelled(
    executor: LocalExecutor,
) -> None:
    done = executor.submit(pipeline(sh("true", name="a"))).external_id
    wait_terminal(executor, done)
    running = executor.submit(pipeline(sh("sleep 60", name="a"))).external_id

    with pytest.raises(Conflict):
        executor.retry(done)
    with pytest.raises(Conflict):
        executor.retry(running)


def test_a_cancelled_run_can_be_retried(executor: LocalExecutor) -> None:
    spec = pipeline(sh("test -f go || sleep 60", name="a"), sh("true", name="b", depends_on=["a"]))
    run_id = executor.submit(spec).external_id
    wait_until(lambda: executor.status(run_id).stages[0].state is StageState.RUNNING)
    executor.cancel(run_id)
    (run_dir(executor, run_id) / "work" / "go").touch()

    executor.retry(run_id)

    assert wait_terminal(executor, run_id).state is PipelineState.SUCCEEDED


# -------------------------------------------------------------------------------------
# Logs, environment and secrets
# -------------------------------------------------------------------------------------


def test_logs_are_captured_per_stage(executor: LocalExecutor) -> None:
    spec = pipeline(
        sh("echo hello from a; echo oops >&2", name="a"),
        sh("echo hello from b", name="b", depends_on=["a"]),
    )
    run_id = executor.submit(spec).external_id
    wait_terminal(executor, run_id)

    logs = executor.logs(run_id)
    tail = executor.logs(run_id, stage="b", tail_bytes=5)

    assert [log.stage for log in logs] == ["a", "b"]
    assert "hello from a" in logs[0].text
    assert "oops" in logs[0].text
    assert "hello from b" not in logs[0].text
    assert logs[1].text == "--- attempt 1/1 ---\nhello from b\n"
    assert not logs[1].truncated
    assert (tail[0].text, tail[0].truncated) == ("om b\n", True)
    with pytest.raises(NotFound):
        executor.logs(run_id, stage="nope")


def test_unknown_runs_are_not_found(executor: LocalExecutor) -> None:
    for run_id in ("0" * 32, "../../etc", "not-a-run"):
        with pytest.raises(NotFound):
            executor.status(run_id)
        with pytest.raises(NotFound):
            executor.logs(run_id)
        with pytest.raises(NotFound):
            executor.cancel(run_id)
        with pytest.raises(NotFound):
            executor.retry(run_id)


def test_stages_get_their_env_and_secrets_but_not_the_server_config(
    executor: LocalExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "tok-7f3a9c-do-not-leak"
    monkeypatch.setenv("LLMOPS_DATABASE_URL", "postgresql://admin:pw@db/llmops")
    monkeypatch.setenv("PLAIN_SERVER_VAR", "inherited")
    spec = pipeline(
        sh("env > env.txt", name="a", env={"STAGE_VAR": "stage", "LLMOPS_API_URL": "http://x"}),
        secret_env={"JOB_TOKEN": SecretStr(secret)},
    )
    run_id = executor.submit(spec).external_id
    assert wait_terminal(executor, run_id).state is PipelineState.SUCCEEDED

    folder = run_dir(executor, run_id)
    env = dict(
        line.split("=", 1)
        for line in (folder / "work" / "env.txt").read_text().splitlines()
        if "=" in line
    )
    assert "LLMOPS_DATABASE_URL" not in env
    assert "PLAIN_SERVER_VAR" not in env  # built, not inherited
    assert env["PATH"] == os.environ["PATH"]  # the allow-list
    assert env["HOME"] == str(folder / "work")
    assert env["STAGE_VAR"] == "stage"
    assert env["LLMOPS_API_URL"] == "http://x"
    assert env["JOB_TOKEN"] == secret
    assert secret not in executor.logs(run_id)[0].text
    written = [p for p in folder.rglob("*") if p.is_file() and p.name != "env.txt"]
    assert {"spec.json", "state.json", "a.log"} <= {p.name for p in written}
    for path in written:
        assert secret not in path.read_text(errors="replace"), path
    assert "secret_env" not in json.loads((folder / "spec.json").read_text())
    assert secret not in executor.status(run_id).model_dump_json()


# -------------------------------------------------------------------------------------
# Restart safety
# -------------------------------------------------------------------------------------

ABANDONING_SERVER = """
import json, os, sys, time
from pathlib import Path
from llmops.builtin.local_executor import LocalExecutor
from llmops.capabilities.orchestration import PipelineSpec

executor = LocalExecutor(Path(sys.argv[1]))
spec = PipelineSpec.model_validate({"name": "long", "stages": [
    {"name": "a", "command": ["sh", "-c", "sleep 60 & echo $! > child.pid; sleep 60"]},
    {"name": "b", "command": ["true"], "depends_on": ["a"]},
]})
run_id = executor.submit(spec).external_id
folder = Path(sys.argv[1]) / "runs" / run_id


def started() -> bool:
    child = folder / "work" / "child.pid"
    state = json.loads((folder / "state.json").read_text())
    return child.exists() and child.read_text().strip() != "" and bool(state["stages"][0]["pid"])


deadline = time.monotonic() + 10
while not started() and time.monotonic() < deadline:
    time.sleep(0.005)
print(run_id, flush=True)
os._exit(0)  # the server dies: no close(), no cleanup
"""


@pytest.fixture
def abandoned_run(tmp_path: Path) -> Iterator[tuple[Path, str, int, int]]:
    """A run left 'running' by a server process that died; yields dir, id, the stage's
    process group, and the stage's background child."""
    state_dir = tmp_path / "state"
    done = subprocess.run(
        [sys.executable, "-c", ABANDONING_SERVER, str(state_dir)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    run_id = done.stdout.strip()
    folder = state_dir / "runs" / run_id
    state = json.loads((folder / "state.json").read_text())
    runner = state["stages"][0]["pid"]
    pgid = stage_group(folder, "a")
    wait_until(lambda: len(stage_processes(run_id)) == 2, what="both sleeps")
    child = min(stage_processes(run_id))  # the background one started first
    try:
        yield state_dir, run_id, pgid, child
    finally:
        for group in (pgid, runner):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)


def test_recover_fails_an_interrupted_run_and_kills_its_processes(
    abandoned_run: tuple[Path, str, int, int],
) -> None:
    state_dir, run_id, pgid, child = abandoned_run
    assert child in live_group_members(pgid)
    executor = LocalExecutor(state_dir, kill_grace_seconds=0.5)

    assert executor.recover() == [run_id]

    status = executor.status(run_id)
    assert (status.state, status.message) == (PipelineState.FAILED, INTERRUPTED_MESSAGE)
    assert stage_of(status, "a").state is StageState.FAILED
    assert stage_of(status, "a").message == INTERRUPTED_MESSAGE
    assert stage_of(status, "b").state is StageState.SKIPPED
    wait_until(lambda: not live_group_members(pgid), timeout=2.0, what="the orphans to die")
    assert executor.recover() == []


def test_recover_never_kills_a_process_that_reused_the_pid(
    abandoned_run: tuple[Path, str, int, int],
) -> None:
    """The recorded pid now names an unrelated process (no run marker): it lives on."""
    state_dir, run_id, _pgid, _child = abandoned_run
    stranger = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        state_file = state_dir / "runs" / run_id / "state.json"
        state = json.loads(state_file.read_text())
        state["stages"][0]["pid"] = stranger.pid
        state["stages"][0]["pid_start_time"] = 1  # the recorded process started long ago
        state_file.write_text(json.dumps(state))

        assert LocalExecutor(state_dir, kill_grace_seconds=0.2).recover() == [run_id]

        assert LocalExecutor(state_dir).status(run_id).state is PipelineState.FAILED
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_recover_kills_orphans_whose_pid_was_never_recorded(
    abandoned_run: tuple[Path, str, int, int],
) -> None:
    """A crash between starting a stage and saving its pid: the run marker finds it."""
    state_dir, run_id, pgid, child = abandoned_run
    state_file = state_dir / "runs" / run_id / "state.json"
    state = json.loads(state_file.read_text())
    state["stages"][0]["pid"] = None
    state["stages"][0]["pid_start_time"] = None
    state_file.write_text(json.dumps(state))

    assert LocalExecutor(state_dir, kill_grace_seconds=0.5).recover() == [run_id]

    wait_until(lambda: not live_group_members(pgid), timeout=3.0, what="the orphans to die")
    assert child not in live_group_members(pgid)


def test_recover_leaves_runs_of_a_live_executor_alone(executor: LocalExecutor) -> None:
    run_id = executor.submit(pipeline(sh("sleep 60", name="a"))).external_id
    wait_until(lambda: executor.status(run_id).state is PipelineState.RUNNING)

    assert LocalExecutor(executor.state_dir).recover() == []
    assert executor.status(run_id).state is PipelineState.RUNNING


def test_a_recovered_run_can_be_retried_unless_it_needed_secrets(tmp_path: Path) -> None:
    first = LocalExecutor(tmp_path)
    plain = first.submit(pipeline(sh("exit 1", name="a"))).external_id
    secret = first.submit(
        pipeline(sh("exit 1", name="a"), secret_env={"TOKEN": SecretStr("s3cret-value")})
    ).external_id
    wait_terminal(first, plain)
    wait_terminal(first, secret)
    first.close()
    second = LocalExecutor(tmp_path)

    second.retry(plain)

    assert wait_terminal(second, plain).stages[0].attempts == 1
    with pytest.raises(Conflict, match="TOKEN"):
        second.retry(secret)
    second.close()


# -------------------------------------------------------------------------------------
# Health, shutdown, concurrency
# -------------------------------------------------------------------------------------


def test_health_checks_the_state_dir_is_writable(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")

    ok = LocalExecutor(tmp_path / "state").health()
    down = LocalExecutor(blocker / "state").health()

    assert ok.status is HealthStatus.OK
    assert ok.latency_ms is not None
    assert down.status is HealthStatus.DOWN
    assert "not writable" in down.detail


def test_close_cancels_running_runs_and_refuses_new_ones(tmp_path: Path) -> None:
    executor = LocalExecutor(tmp_path, kill_grace_seconds=0.5)
    run_id = executor.submit(pipeline(sh("sleep 60", name="a"))).external_id
    wait_until(lambda: executor.status(run_id).state is PipelineState.RUNNING)

    executor.close()

    assert executor.status(run_id).state is PipelineState.CANCELLED
    with pytest.raises(IntegrationUnavailable):
        executor.submit(pipeline(sh("true", name="a")))


def test_status_can_be_read_from_many_threads_while_a_run_progresses(
    executor: LocalExecutor,
) -> None:
    spec = pipeline(
        *(sh("true", name=f"s{i}", depends_on=[f"s{i - 1}"] if i else []) for i in range(6))
    )
    run_id = executor.submit(spec).external_id
    errors: list[BaseException] = []

    def poll() -> None:
        try:
            while not executor.status(run_id).state.terminal:
                executor.logs(run_id, tail_bytes=100)
        except BaseException as exc:
            errors.append(exc)

    readers = [threading.Thread(target=poll) for _ in range(4)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join(timeout=10)

    assert errors == []
    assert executor.status(run_id).state is PipelineState.SUCCEEDED


# -------------------------------------------------------------------------------------
# The plugin
# -------------------------------------------------------------------------------------


def test_local_plugin_declares_orchestration_for_this_core(tmp_path: Path) -> None:
    pm = make_plugin_manager()
    pm.register(local_plugin, name="local")  # checks the hookimpls against the specs
    try:
        info = local_plugin.llmops_plugin_info()
        context = PluginContext(
            plugin_name="local",
            data_dir=tmp_path / "plugins" / "local",
            api_url="http://127.0.0.1:8000/llm-ops/v1",
            core_version=llmops.__version__,
        )
        executor = local_plugin.llmops_orchestration(
            settings=local_plugin.LocalSettings(max_parallel=2), context=context
        )
    finally:
        pm.unregister(name="local")

    assert info.name == "local"
    assert info.capabilities == frozenset({Capability.ORCHESTRATION})
    assert info.settings_model is local_plugin.LocalSettings
    assert llmops.__version__ in SpecifierSet(info.core_version)
    assert isinstance(executor, OrchestrationProvider)
    assert executor.max_parallel == 2
    assert context.data_dir.is_dir()
    with pytest.raises(ValidationError):
        local_plugin.LocalSettings(max_parallel=0)
