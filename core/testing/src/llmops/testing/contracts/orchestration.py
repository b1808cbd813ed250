"""The orchestration contract: what the core relies on from every
:class:`~llmops.capabilities.orchestration.OrchestrationProvider`.

Subclass :class:`OrchestrationContract`, provide ``provider`` (and, for the features that
need them, ``restarted_provider`` and ``unreachable_provider``), and declare ``supports``.
The suite builds its pipelines from a :class:`StageFactory`: the default,
:class:`ShellStages`, runs POSIX ``sh`` commands on this machine, which suits any engine
whose stages see the test's file system; an engine that runs stages elsewhere (pods)
overrides the ``stages`` fixture.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Protocol

import pytest

from llmops.capabilities.common import HealthStatus, Provider
from llmops.capabilities.orchestration import (
    OrchestrationProvider,
    PipelineSpec,
    PipelineState,
    PipelineStatus,
    StageLog,
    StageSpec,
    StageState,
    StageStatus,
)
from llmops.errors import Conflict, InvalidRequest, NotFound
from llmops.testing.contracts import ContractSuite, eventually, requires, timed_health

__all__ = ["OrchestrationContract", "ShellStages", "StageFactory"]


class StageFactory(Protocol):
    """Builds the stages the suite's pipelines are made of.

    ``fields`` are further :class:`StageSpec` fields (``depends_on``, ``retries``,
    ``timeout_seconds``, ``env``).
    """

    def succeed(self, name: str, **fields: Any) -> StageSpec:
        """A stage that exits 0 at once."""
        ...

    def fail(self, name: str, **fields: Any) -> StageSpec:
        """A stage that exits non-zero at once, every time."""
        ...

    def echo(self, name: str, text: str, **fields: Any) -> StageSpec:
        """A stage that writes ``text`` and a newline to its output, then exits 0."""
        ...

    def echo_env(self, name: str, variable: str, **fields: Any) -> StageSpec:
        """A stage that writes ``<variable>=<its value>`` to its output, then exits 0."""
        ...

    def sleep(self, name: str, seconds: float, **fields: Any) -> StageSpec:
        """A stage that runs for ``seconds``, then exits 0."""
        ...

    def fail_first_run(self, name: str, **fields: Any) -> StageSpec:
        """A stage that fails the first time it runs and succeeds every time after, across
        attempts of one run and across a :meth:`OrchestrationProvider.retry` of the run."""
        ...


class ShellStages:
    """Stages as ``sh -c`` commands; ``state_dir`` keeps what :meth:`fail_first_run`
    remembers (absolute paths, so a stage's working directory does not matter)."""

    def __init__(self, state_dir: Path, *, image: str | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.image = image

    def _stage(self, name: str, script: str, fields: dict[str, Any]) -> StageSpec:
        values: dict[str, Any] = {"name": name, "command": ["sh", "-c", script]}
        if self.image is not None:
            values["image"] = self.image
        values.update(fields)
        return StageSpec.model_validate(values)

    def succeed(self, name: str, **fields: Any) -> StageSpec:
        return self._stage(name, "exit 0", fields)

    def fail(self, name: str, **fields: Any) -> StageSpec:
        return self._stage(name, "echo failing on purpose >&2; exit 3", fields)

    def echo(self, name: str, text: str, **fields: Any) -> StageSpec:
        return self._stage(name, f"printf '%s\\n' {_sh_quote(text)}", fields)

    def echo_env(self, name: str, variable: str, **fields: Any) -> StageSpec:
        if not variable.isidentifier():
            raise ValueError(f"not a variable name: {variable!r}")
        return self._stage(name, f"printf '%s\\n' \"{variable}=${{{variable}}}\"", fields)

    def sleep(self, name: str, seconds: float, **fields: Any) -> StageSpec:
        return self._stage(name, f"sleep {seconds:g}", fields)

    def fail_first_run(self, name: str, **fields: Any) -> StageSpec:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        marker = _sh_quote(str(self.state_dir / f"ran-{uuid.uuid4().hex}"))
        script = f"if [ -e {marker} ]; then exit 0; fi; : > {marker}; exit 4"
        return self._stage(name, script, fields)


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


class OrchestrationContract(ContractSuite):
    """The suite every orchestration provider passes."""

    capability = "orchestration"
    protocol = OrchestrationProvider
    features = {
        "parallel": "independent stages of one run execute at the same time",
        "max_parallel": "PipelineSpec.max_parallel caps how many stages run at once",
        "retries": "a failing stage is attempted StageSpec.retries more times",
        "retry": "retry() runs a finished run's failed and skipped stages again, keeping "
        "the succeeded ones",
        "cancel": "cancel() ends a running pipeline within cancel_deadline (2 s)",
        "logs": "logs() returns each stage's output",
        "timeout": "a stage running longer than StageSpec.timeout_seconds fails",
        "env": "stages see StageSpec.env and PipelineSpec.secret_env (needs logs)",
        "restart": "a second provider on the same state (fixture restarted_provider) "
        "knows the first one's runs and idempotency keys",
        "unreachable": "the subclass can build a provider whose engine cannot be reached "
        "(fixture unreachable_provider)",
    }

    #: Seconds a run of a few short stages may take, start-up included.
    run_timeout: ClassVar[float] = 30.0
    #: Seconds cancel() may take to bring a run to its end.
    cancel_deadline: ClassVar[float] = 2.0
    #: Seconds health() may take.
    health_deadline: ClassVar[float] = 5.0
    #: How long the stages that prove parallelism run: several times the resolution of
    #: the engine's stage timestamps.
    parallel_stage_seconds: ClassVar[float] = 0.5
    #: Seconds between two status() calls while waiting.
    poll_interval: ClassVar[float] = 0.02

    # -- what the subclass provides ----------------------------------------------------

    @pytest.fixture
    def provider(self) -> OrchestrationProvider:
        """The orchestrator under test, fresh for each test (override this)."""
        raise NotImplementedError(
            f"{type(self).__name__} must define a `provider` fixture returning the "
            "OrchestrationProvider under test"
        )

    @pytest.fixture
    def restarted_provider(self, provider: OrchestrationProvider) -> OrchestrationProvider:
        """Another provider on the same engine and state as ``provider``, as after a
        server restart (needed by the ``restart`` feature)."""
        raise NotImplementedError(
            f"{type(self).__name__} declares 'restart' and must define a "
            "`restarted_provider` fixture"
        )

    @pytest.fixture
    def unreachable_provider(self) -> OrchestrationProvider:
        """A provider whose engine cannot be reached (needed by ``unreachable``)."""
        raise NotImplementedError(
            f"{type(self).__name__} declares 'unreachable' and must define an "
            "`unreachable_provider` fixture"
        )

    @pytest.fixture
    def stages(self, tmp_path: Path) -> StageFactory:
        """Builds the stages of the suite's pipelines; override for remote engines."""
        return ShellStages(tmp_path / "contract-stages")

    @pytest.fixture
    def missing_id(self) -> str:
        """An external id that names no run."""
        return uuid.uuid4().hex

    # -- helpers ---------------------------------------------------------------------

    def pipeline(self, *stages: StageSpec, **fields: Any) -> PipelineSpec:
        values: dict[str, Any] = {"name": "contract", "stages": list(stages)}
        values.update(fields)
        return PipelineSpec.model_validate(values)

    def wait_until_ended(
        self, provider: OrchestrationProvider, external_id: str, timeout: float | None = None
    ) -> PipelineStatus:
        def ended() -> PipelineStatus | None:
            status = provider.status(external_id)
            return status if status.state.terminal else None

        return eventually(
            ended,
            timeout=self.run_timeout if timeout is None else timeout,
            what=f"run {external_id} to end",
            interval=self.poll_interval,
        )

    def wait_until_stage_runs(
        self, provider: OrchestrationProvider, external_id: str, stage: str
    ) -> PipelineStatus:
        def running() -> PipelineStatus | None:
            status = provider.status(external_id)
            return status if stage_of(status, stage).state is StageState.RUNNING else None

        return eventually(
            running,
            timeout=self.run_timeout,
            what=f"stage {stage} of run {external_id} to run",
            interval=self.poll_interval,
        )

    def run_to_end(self, provider: OrchestrationProvider, spec: PipelineSpec) -> PipelineStatus:
        return self.wait_until_ended(provider, provider.submit(spec).external_id)

    # -- the Protocol ----------------------------------------------------------------

    def test_provider_is_an_orchestration_provider(self, provider: OrchestrationProvider) -> None:
        assert isinstance(provider, OrchestrationProvider), (
            f"{type(provider).__name__} lacks methods of the OrchestrationProvider Protocol"
        )
        assert isinstance(provider, Provider)

    def test_health_answers_within_the_deadline(self, provider: OrchestrationProvider) -> None:
        health = timed_health(provider, self.health_deadline)
        assert health.status in {HealthStatus.OK, HealthStatus.DEGRADED}, (
            f"a working provider reports {health.status}: {health.detail}"
        )

    @requires("unreachable")
    def test_health_of_an_unreachable_engine_is_down_and_says_why(
        self, unreachable_provider: OrchestrationProvider
    ) -> None:
        health = timed_health(unreachable_provider, self.health_deadline)
        assert health.status is HealthStatus.DOWN, f"got {health.status}: {health.detail}"
        assert health.detail, "a DOWN health must say why in detail"

    # -- submitting ------------------------------------------------------------------

    def test_submit_returns_the_status_of_the_new_run(
        self, provider: OrchestrationProvider, stages: StageFactory
    ) -> None:
        spec = self.pipeline(stages.succeed("first"), stages.succeed("second"))

        submitted = provider.submit(spec)

        assert isinstance(submitted, PipelineStatus)
        assert submitted.external_id, "submit() must return the run's external id"
        assert {s.name for s in submitted.stages} == {"first", "second"}, (
            "the status lists every stage of the spec, by name"
        )
        assert all(isinstance(s, StageStatus) for s in submitted.stages)
        read = provider.status(submitted.external_id)
        assert read.external_id == submitted.external_id
        self.wait_until_ended(provider, submitted.external_id)

    def test_a_pipeline_runs_every_stage_after_its_dependencies(
        self, provider: OrchestrationProvider, stages: StageFactory
    ) -> None:
        spec = self.pipeline(
            stages.succeed("fetch"),
            stages.succeed("clean", depends_on=["fetch"]),
            stages.succeed("tokenize", depends_on=["fetch"]),
            stages.succeed("train", depends_on=["clean", "tokenize"]),
            stages.succeed("report", depends_on=["train"]),
        )

        ended = self.run_to_end(provider, spec)

        assert ended.state is PipelineState.SUCCEEDED, ended.message
        for stage in spec.stages:
            status = stage_of(ended, stage.name)
            assert status.state is StageState.SUCCEEDED, f"{stage.name}: {status}"
            assert status.attempts >= 1, f"{stage.name} ran, so attempts is at least 1"
            started = _required_time(status, "started_at")
            for dependency in stage.depends_on:
                finished = _required_time(stage_of(ended, dependency), "finished_at")
                assert started >= finished, (
                    f"{stage.name} started at {started} before its dependency {dependency} "
                    f"finished at {finished}"
                )
        assert ended.finished_at is not None, "an ended run reports finished_at"

    def test_a_failed_stage_fails_the_run_and_skips_its_dependents(
        self, provider: OrchestrationProvider, stages: StageFactory
    ) -> None:
        spec = self.pipeline(
            stages.succeed("prepare"),
            stages.fail("train", depends_on=["prepare"]),
            stages.succeed("evaluate", depends_on=["train"]),
            stages.succeed("publish", depends_on=["evaluate"]),
        )

        ended = self.run_to_end(provider, spec)

        assert ended.state is PipelineState.FAILED
        assert stage_of(ended, "prepare").state is StageState.SUCCEEDED
        train = stage_of(ended, "train")
        assert train.state is StageState.FAILED
        assert train.exit_code != 0, "a failed stage's exit code, when known, is not 0"
        for name in ("evaluate", "publish"):
            assert stage_of(ended, name).state is StageState.SKIPPED, (
                f"{name} depends on the failed stage and must be skipped, not "
                f"{stage_of(ended, name).state}"
            )

    @pytest.mark.parametrize(
        "shape", ["cycle", "self-dependency", "unknown-dependency", "duplicate-name"]
    )
    def test_an_invalid_dag_is_refused_with_invalid_request(
        self, provider: OrchestrationProvider, stages: StageFactory, shape: str
    ) -> None:
        if shape == "cycle":
            bad = [
                stages.succeed("a", depends_on=["c"]),
                stages.succeed("b", depends_on=["a"]),
                stages.succeed("c", depends_on=["b"]),
            ]
        elif shape == "self-dependency":
            bad = [stages.succeed("a"), stages.succeed("b", depends_on=["b"])]
        elif shape == "unknown-dependency":
            bad = [stages.succeed("a", depends_on=["nowhere"])]
        else:
            bad = [stages.succeed("a"), stages.succeed("a")]

        with pytest.raises(InvalidRequest):
            provider.submit(self.pipeline(*bad))

    def test_the_same_idempotency_key_returns_the_first_run(
        self, provider: OrchestrationProvider, stages: StageFactory
    ) -> None:
        key = f"contract-{uuid.uuid4().hex}"
        spec = self.pipeline(stages.succeed("only"), idempotency_key=key)

        first = provider.submit(spec)
        again = provider.submit(spec)
        other = provider.submit(spec.model_copy(update={"idempotency_key": key + "-other"}))

        assert again.external_id == first.external_id, (
            "a second submit with the same idempotency key must return the first run "
            f"(got {first.external_id} then {again.external_id})"
        )
        assert other.external_id != first.external_id, "another key is another run"
        for external_id in {first.external_id, other.external_id}:
            self.wait_until_ended(provider, external_id)

    def test_without_an_idempotency_key_every_submit_is_a_new_run(
        self, provider: OrchestrationProvider, stages: StageFactory
    ) -> None:
        spec = self.pipeline(stages.succeed("only"))

        ids = {provider.submit(spec).external_id for _ in range(2)}

        assert len(ids) == 2
        for external_id in ids:
            self.wait_until_ended(provider, external_id)

    def test_status_of_an_unknown_run_is_not_found(
        self, provider: OrchestrationProvider, missing_id: str
    ) -> None:
        with pytest.raises(NotFound):
            provider.status(missing_id)

    def test_ui_url_is_an_absolute_link_or_none(
        self, provider: OrchestrationProvider, stages: StageFactory
    ) -> None:
        ended = self.run_to_end(provider, self.pipeline(stages.succeed("only")))

        url = provider.ui_url(ended.external_id)

        assert url is None or url.startswith(("http://", "https://")), url

    # -- optional features -------------------------------------------------------------

    @requires("parallel")
    def test_independent_stages_run_at_the_same_time(
        self, provider: OrchestrationProvider, stages: StageFactory
    ) -> None:
        seconds = self.parallel_stage_seconds
        spec = self.pipeline(
            stages.succeed("split"),
            stages.sleep("left", seconds, depends_on=["split"]),
            stages.sleep("right", seconds, depends_on=["split"]),
            stages.succeed("join", depends_on=["left", "right"]),
        )

        ended = self.run_to_end(provider, spec)

        assert ended.state is PipelineState.SUCCEEDED, ended.message
        left, right = stage_of(ended, "left"), stage_of(ended, "right")
        assert _overlap(left, right), (
            f"left ({left.started_at} to {left.finished_at}) and right "
            f"({right.started_at} to {right.finished_at}) depend on the same stage only and "
            "must run at the same time"
        )

    @requires("max_parallel")
    def test_max_parallel_caps_the_stages_running_at_once(
        self, provider: OrchestrationProvider, stages: StageFactory
    ) -> None:
        seconds = self.parallel_stage_seconds / 2
        spec = self.pipeline(
            *(stages.sleep(f"branch{i}", seconds) for i in range(3)), max_parallel=1
        )

        ended = self.run_to_end(provider, spec)

        assert ended.state is PipelineState.SUCCEEDED, ended.message
        branches = [stage_of(ended, f"branch{i}") for i in range(3)]
        for i, one in enumerate(branches):
            for other in branches[i + 1 :]:
                assert not _overlap(one, other), (
                    f"{one.name} and {other.name} ran at the same time with max_parallel=1"
                )

    @requires("retries")
    def test_a_failing_stage_is_attempted_retries_plus_one_times(
        self, provider: OrchestrationProvider, stages: StageFactory
    ) -> None:
        ended = self.run_to_end(provider, self.pipeline(stages.fail("flaky", retries=2)))

        stage = stage_of(ended, "flaky")
        assert ended.state is PipelineState.FAILED
        assert stage.state is StageState.FAILED
        assert stage.attempts == 3, f"retries=2 means 3 attempts, got {stage.attempts}"

    @requires("retries")
    def test_a_stage_that_succeeds_on_a_later_attempt_lets_the_run_succeed(
        self, provider: OrchestrationProvider, stages: StageFactory
    ) -> None:
        spec = self.pipeline(
            stages.fail_first_run("flaky", retries=2),
            stages.succeed("after", depends_on=["flaky"]),
        )

        ended = self.run_to_end(provider, spec)

        assert ended.state is PipelineState.SUCCEEDED, ended.message
        assert stage_of(ended, "flaky").attempts == 2
        assert stage_of(ended, "after").state is StageState.SUCCEEDED

    @requires("retry")
    def test_retry_reruns_the_failed_and_skipped_stages_only(
        self, provider: OrchestrationProvider, stages: StageFactory
    ) -> None:
        spec = self.pipeline(
            stages.succeed("prepare"),
            stages.fail_first_run("train", depends_on=["prepare"]),
            stages.succeed("evaluate", depends_on=["train"]),
        )
        failed = self.run_to_end(provider, spec)
        assert failed.state is PipelineState.FAILED
        assert stage_of(failed, "evaluate").state is StageState.SKIPPED
        prepared = stage_of(failed, "prepare")

        retried = provider.retry(failed.external_id)
        ended = self.wait_until_ended(provider, retried.external_id)

        assert retried.external_id == failed.external_id, "retry() keeps the run's id"
        assert ended.state is PipelineState.SUCCEEDED, ended.message
        again = stage_of(ended, "prepare")
        assert (again.state, again.attempts, again.finished_at) == (
            StageState.SUCCEEDED,
            prepared.attempts,
            prepared.finished_at,
        ), "a stage that had succeeded must not run again on retry"
        for name in ("train", "evaluate"):
            assert stage_of(ended, name).state is StageState.SUCCEEDED, name

    @requires("retry")
    def test_retry_of_a_succeeded_run_is_a_conflict(
        self, provider: OrchestrationProvider, stages: StageFactory
    ) -> None:
        ended = self.run_to_end(provider, self.pipeline(stages.succeed("only")))
        assert ended.state is PipelineState.SUCCEEDED

        with pytest.raises(Conflict):
            provider.retry(ended.external_id)

    @requires("retry")
    def test_retry_of_an_unknown_run_is_not_found(
        self, provider: OrchestrationProvider, missing_id: str
    ) -> None:
        with pytest.raises(NotFound):
            provider.retry(missing_id)

    @requires("cancel")
    def test_cancel_ends_a_running_pipeline_within_the_deadline(
        self, provider: OrchestrationProvider, stages: StageFactory
    ) -> None:
        spec = self.pipeline(stages.sleep("long", 60), stages.succeed("after", depends_on=["long"]))
        external_id = provider.submit(spec).external_id
        self.wait_until_stage_runs(provider, external_id, "long")

        began = time.monotonic()
        provider.cancel(external_id)
        remaining = self.cancel_deadline - (time.monotonic() - began)
        assert remaining > 0, f"cancel() itself took more than {self.cancel_deadline:g} s"
        ended = self.wait_until_ended(provider, external_id, timeout=remaining)

        assert ended.state is PipelineState.CANCELLED
        assert stage_of(ended, "long").state is StageState.CANCELLED
        assert stage_of(ended, "after").state in {StageState.SKIPPED, StageState.CANCELLED}

    @requires("cancel")
    def test_cancel_of_an_ended_run_changes_nothing(
        self, provider: OrchestrationProvider, stages: StageFactory
    ) -> None:
        ended = self.run_to_end(provider, self.pipeline(stages.succeed("only")))

        after = provider.cancel(ended.external_id)

        assert after.state is PipelineState.SUCCEEDED
        assert provider.status(ended.external_id).state is PipelineState.SUCCEEDED

    @requires("cancel")
    def test_cancel_of_an_unknown_run_is_not_found(
        self, provider: OrchestrationProvider, missing_id: str
    ) -> None:
        with pytest.raises(NotFound):
            provider.cancel(missing_id)

    @requires("logs")
    def test_logs_hold_each_stages_output_apart(
        self, provider: OrchestrationProvider, stages: StageFactory
    ) -> None:
        marker = uuid.uuid4().hex
        spec = self.pipeline(
            stages.echo("first", f"first-{marker}"),
            stages.echo("second", f"second-{marker}", depends_on=["first"]),
        )
        ended = self.run_to_end(provider, spec)
        assert ended.state is PipelineState.SUCCEEDED, ended.message

        logs = provider.logs(ended.external_id)
        only_second = provider.logs(ended.external_id, stage="second")

        by_stage = _by_stage(logs)
        assert set(by_stage) == {"first", "second"}, "one StageLog per stage"
        assert f"first-{marker}" in by_stage["first"].text
        assert f"second-{marker}" not in by_stage["first"].text
        assert f"second-{marker}" in by_stage["second"].text
        assert [log.stage for log in only_second] == ["second"]
        assert f"second-{marker}" in only_second[0].text

    @requires("logs")
    def test_logs_tail_bytes_keeps_the_end(
        self, provider: OrchestrationProvider, stages: StageFactory
    ) -> None:
        ended = self.run_to_end(provider, self.pipeline(stages.echo("chatty", "x" * 300 + "END")))

        [tail] = provider.logs(ended.external_id, stage="chatty", tail_bytes=16)
        [full] = provider.logs(ended.external_id, stage="chatty")

        assert len(tail.text.encode()) <= 16, f"tail_bytes=16 returned {len(tail.text)} chars"
        assert "END" in tail.text, f"the tail keeps the end of the log, got {tail.text!r}"
        assert tail.truncated, "a log cut by tail_bytes says truncated=True"
        assert not full.truncated
        assert "x" * 300 + "END" in full.text

    @requires("logs")
    def test_logs_of_an_unknown_run_or_stage_are_not_found(
        self, provider: OrchestrationProvider, stages: StageFactory, missing_id: str
    ) -> None:
        ended = self.run_to_end(provider, self.pipeline(stages.succeed("only")))

        with pytest.raises(NotFound):
            provider.logs(missing_id)
        with pytest.raises(NotFound):
            provider.logs(ended.external_id, stage="no-such-stage")

    @requires("timeout")
    def test_a_stage_over_its_timeout_fails_the_run(
        self, provider: OrchestrationProvider, stages: StageFactory
    ) -> None:
        spec = self.pipeline(
            stages.sleep("slow", 60, timeout_seconds=0.5),
            stages.succeed("after", depends_on=["slow"]),
        )

        ended = self.run_to_end(provider, spec)

        assert ended.state is PipelineState.FAILED
        assert stage_of(ended, "slow").state is StageState.FAILED
        assert stage_of(ended, "after").state is StageState.SKIPPED

    @requires("env", "logs")
    def test_stages_see_their_env_and_the_secret_env_which_is_never_shown(
        self, provider: OrchestrationProvider, stages: StageFactory
    ) -> None:
        secret = f"s3cret-{uuid.uuid4().hex}"
        spec = self.pipeline(
            stages.echo_env("plain", "CONTRACT_PLAIN", env={"CONTRACT_PLAIN": "visible"}),
            stages.echo_env("token", "CONTRACT_TOKEN"),
            secret_env={"CONTRACT_TOKEN": secret},
        )

        ended = self.run_to_end(provider, spec)

        assert ended.state is PipelineState.SUCCEEDED, ended.message
        by_stage = _by_stage(provider.logs(ended.external_id))
        assert "CONTRACT_PLAIN=visible" in by_stage["plain"].text
        # a provider may scrub secret values out of logs (the local executor does)
        [line] = [x for x in by_stage["token"].text.splitlines() if x.startswith("CONTRACT_")]
        assert line == f"CONTRACT_TOKEN={secret}" or (
            line.removeprefix("CONTRACT_TOKEN=") and secret not in by_stage["token"].text
        ), f"the stage did not see its secret: {line!r}"
        assert secret not in provider.status(ended.external_id).model_dump_json(), (
            "secret_env values must never appear in a status"
        )

    @requires("restart")
    def test_a_restarted_provider_knows_the_runs_and_keys_of_the_first(
        self,
        provider: OrchestrationProvider,
        restarted_provider: OrchestrationProvider,
        stages: StageFactory,
    ) -> None:
        key = f"contract-{uuid.uuid4().hex}"
        spec = self.pipeline(stages.succeed("only"), idempotency_key=key)
        first = self.run_to_end(provider, spec)

        read = restarted_provider.status(first.external_id)
        again = restarted_provider.submit(spec)

        assert read.state is PipelineState.SUCCEEDED
        assert again.external_id == first.external_id, (
            "after a restart, a submit with a known idempotency key must return the first "
            "run: the outbox redelivers after restarts"
        )


# -------------------------------------------------------------------------------------


def stage_of(status: PipelineStatus, name: str) -> StageStatus:
    for stage in status.stages:
        if stage.name == name:
            return stage
    raise AssertionError(f"run {status.external_id} has no stage {name!r} in its status")


def _by_stage(logs: Sequence[StageLog]) -> dict[str, StageLog]:
    assert all(isinstance(log, StageLog) for log in logs)
    return {log.stage: log for log in logs}


def _required_time(stage: StageStatus, field: str) -> datetime:
    value: datetime | None = getattr(stage, field)
    assert value is not None, f"stage {stage.name} ended but reports no {field}"
    return value


def _overlap(one: StageStatus, other: StageStatus) -> bool:
    return _required_time(one, "started_at") < _required_time(
        other, "finished_at"
    ) and _required_time(other, "started_at") < _required_time(one, "finished_at")
