"""The tracking contract: what the core relies on from every
:class:`~llmops.capabilities.tracking.TrackingProvider`.

Subclass :class:`TrackingContract`, provide ``provider`` (and, for the features that need
them, ``restarted_provider`` and ``unreachable_provider``), and declare ``supports``.
Every test works in an experiment of its own (the ``experiment`` fixture), so the suite
also runs against one tool shared by the whole session.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import SecretStr

from llmops.capabilities.common import HealthStatus, Provider
from llmops.capabilities.tracking import (
    ArtifactInfo,
    JobAccess,
    MetricPoint,
    RunInfo,
    RunPage,
    RunQuery,
    RunSpec,
    RunStatus,
    TrackingProvider,
    ValidatesRunWrites,
)
from llmops.errors import Conflict, InvalidRequest, NotFound
from llmops.testing.contracts import (
    ContractSuite,
    requires,
    signature_mismatches,
    timed_health,
)

__all__ = ["TrackingContract"]

#: The most points the batch test logs in one call, whatever the provider advertises.
BATCH_TEST_CAP = 10_000
_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


class TrackingContract(ContractSuite):
    """The suite every tracking provider passes."""

    capability = "tracking"
    protocol = TrackingProvider
    features = {
        "artifacts": "log_artifact() and list_artifacts() keep files and folders",
        "search_filter": "RunQuery.filter understands params.<k> = '<v>' and tags.<k> = '<v>' "
        "joined by AND (MLflow's syntax)",
        "search_order": "RunQuery.order_by understands metrics.<key> ASC|DESC",
        "immutable_params": "log_params() refuses to change a logged value with Conflict "
        "(MLflow's rule)",
        "restart": "a second provider on the same tool (fixture restarted_provider) "
        "honours the first one's idempotency keys",
        "unreachable": "the subclass can build a provider whose tool cannot be reached "
        "(fixture unreachable_provider)",
        "job_environment": "job_environment(run_id, access) gives the variables with which "
        "the tool's own client in a job's process logs into that run; its only secret is "
        "the job's own token (access.token), never one of the integration's (fixture "
        "integration_secrets)",
        "validates_run_writes": "validate_run_write() (ValidatesRunWrites) refuses what "
        "the tool would refuse with InvalidRequest naming the field (fixture "
        "refused_run_writes), and lets through what the suite logs",
    }

    #: Seconds health() may take.
    health_deadline: ClassVar[float] = 5.0

    # -- what the subclass provides ----------------------------------------------------

    @pytest.fixture
    def provider(self) -> TrackingProvider:
        """The tracker under test (override this)."""
        raise NotImplementedError(
            f"{type(self).__name__} must define a `provider` fixture returning the "
            "TrackingProvider under test"
        )

    @pytest.fixture
    def restarted_provider(self, provider: TrackingProvider) -> TrackingProvider:
        """Another provider on the same tool as ``provider`` (needed by ``restart``)."""
        raise NotImplementedError(
            f"{type(self).__name__} declares 'restart' and must define a "
            "`restarted_provider` fixture"
        )

    @pytest.fixture
    def unreachable_provider(self) -> TrackingProvider:
        """A provider whose tool cannot be reached (needed by ``unreachable``)."""
        raise NotImplementedError(
            f"{type(self).__name__} declares 'unreachable' and must define an "
            "`unreachable_provider` fixture"
        )

    @pytest.fixture
    def refused_run_writes(self) -> list[dict[str, Any]]:
        """Writes the tool refuses, each as keyword arguments of ``validate_run_write``
        (``{"metrics": [MetricPoint(key="bad\u2028name", value=1.0)]}``, ...; needed by
        ``validates_run_writes``)."""
        raise NotImplementedError(
            f"{type(self).__name__} declares 'validates_run_writes' and must define a "
            "`refused_run_writes` fixture"
        )

    @pytest.fixture
    def experiment(self) -> str:
        """An experiment name no other test uses."""
        return f"contract-{uuid.uuid4().hex[:12]}"

    @pytest.fixture
    def missing_run_id(self) -> str:
        """A run id that names no run."""
        return uuid.uuid4().hex

    @pytest.fixture
    def integration_secrets(self) -> list[str]:
        """The secret values ``provider`` was configured with (a token, a password), which
        no job may ever see (needed by ``job_environment``; override it when the provider
        has secrets: best, build ``provider`` with canary values and list them here)."""
        return []

    # -- helpers ---------------------------------------------------------------------

    def run_spec(self, experiment: str, **fields: Any) -> RunSpec:
        values: dict[str, Any] = {"experiment": experiment, "run_name": "contract-run"}
        values.update(fields)
        return RunSpec.model_validate(values)

    def search_all(self, provider: TrackingProvider, query: RunQuery) -> list[RunInfo]:
        """Every run the query finds, page after page."""
        found: list[RunInfo] = []
        token: str | None = None
        for _ in range(1000):
            page = provider.search_runs(query.model_copy(update={"page_token": token}))
            assert isinstance(page, RunPage)
            found += page.runs
            token = page.next_page_token
            if token is None:
                return found
        raise AssertionError("search_runs() kept returning a next_page_token")

    # -- the Protocol ----------------------------------------------------------------

    def test_provider_is_a_tracking_provider(self, provider: TrackingProvider) -> None:
        assert isinstance(provider, TrackingProvider), (
            f"{type(provider).__name__} lacks members of the TrackingProvider Protocol"
        )
        assert isinstance(provider, Provider)
        assert isinstance(provider.max_metrics_per_batch, int)
        assert provider.max_metrics_per_batch >= 1

    def test_validates_run_writes_is_declared_exactly_when_offered(
        self, provider: TrackingProvider
    ) -> None:
        offered = isinstance(provider, ValidatesRunWrites)
        declared = "validates_run_writes" in self.supports
        assert offered == declared, (
            f"{type(provider).__name__} {'has' if offered else 'lacks'} validate_run_write() "
            f"but 'validates_run_writes' is {'' if declared else 'not '}in supports: the "
            "core calls it on the request path, so its tests must run"
        )

    @requires("validates_run_writes")
    def test_validation_lets_through_what_the_suite_logs(
        self, provider: TrackingProvider, experiment: str
    ) -> None:
        validator: ValidatesRunWrites = provider  # type: ignore[assignment]
        problems = signature_mismatches(provider, ValidatesRunWrites)
        assert not problems, "\n".join(problems)

        validator.validate_run_write(
            experiment=experiment,
            params={"lr": "0.1", "epochs": "3", "optimizer": "adamw", "size": "s"},
            tags={"team": "nlp", "llmops.training_job_id": uuid.uuid4().hex},
            metrics=[
                MetricPoint(key=key, value=-1.5e-9, step=step, timestamp=_at(step))
                for key in ("loss", "acc", "eval/loss", "train.loss-ema 2")
                for step in (0, 1, 2**31)
            ],
        )
        validator.validate_run_write()  # nothing at all is no error either

    @requires("validates_run_writes")
    def test_validation_refuses_what_the_tool_refuses_naming_the_field_and_storing_nothing(
        self,
        provider: TrackingProvider,
        experiment: str,
        refused_run_writes: list[dict[str, Any]],
    ) -> None:
        validator: ValidatesRunWrites = provider  # type: ignore[assignment]
        assert refused_run_writes, "refused_run_writes names at least one write"

        for write in refused_run_writes:
            with pytest.raises(InvalidRequest) as refused:
                validator.validate_run_write(**{"experiment": experiment, **write})
            field = str(refused.value.extensions.get("parameter", ""))
            assert field.split("[")[0].split(".")[0] in {"experiment", *write}, (
                f"the refusal of {write!r} must name the field it refuses in `parameter` "
                f"(experiment, params, tags, metrics[i].key, ...), got {field!r}"
            )
        assert self.search_all(provider, RunQuery(experiments=[experiment])) == [], (
            "validation stores nothing"
        )

    def test_health_answers_within_the_deadline(self, provider: TrackingProvider) -> None:
        health = timed_health(provider, self.health_deadline)
        assert health.status in {HealthStatus.OK, HealthStatus.DEGRADED}, (
            f"a working provider reports {health.status}: {health.detail}"
        )

    @requires("unreachable")
    def test_health_of_an_unreachable_tool_is_down_and_says_why(
        self, unreachable_provider: TrackingProvider
    ) -> None:
        health = timed_health(unreachable_provider, self.health_deadline)
        assert health.status is HealthStatus.DOWN, f"got {health.status}: {health.detail}"
        assert health.detail, "a DOWN health must say why in detail"

    # -- runs ------------------------------------------------------------------------

    def test_create_run_returns_the_new_run_with_its_params_and_tags(
        self, provider: TrackingProvider, experiment: str
    ) -> None:
        spec = self.run_spec(experiment, params={"lr": "0.1"}, tags={"team": "nlp"})

        run = provider.create_run(spec)

        assert isinstance(run, RunInfo)
        assert run.run_id, "a run has an id"
        assert run.experiment_id, "a run names its experiment's id"
        assert run.experiment_name == experiment
        assert run.name == spec.run_name
        assert run.status in {RunStatus.SCHEDULED, RunStatus.RUNNING}, run.status
        assert run.params == {"lr": "0.1"}
        assert run.tags.items() >= {"team": "nlp"}.items(), (
            f"the spec's tags must be kept (the provider may add its own): {run.tags}"
        )
        assert run.end_time is None

    def test_get_run_reads_back_the_created_run(
        self, provider: TrackingProvider, experiment: str
    ) -> None:
        created = provider.create_run(self.run_spec(experiment, params={"epochs": "3"}))

        read = provider.get_run(created.run_id)

        assert isinstance(read, RunInfo)
        assert (read.run_id, read.experiment_id, read.name, read.params) == (
            created.run_id,
            created.experiment_id,
            created.name,
            created.params,
        )

    def test_runs_of_one_experiment_share_its_id(
        self, provider: TrackingProvider, experiment: str
    ) -> None:
        first = provider.create_run(self.run_spec(experiment))
        second = provider.create_run(self.run_spec(experiment))
        other = provider.create_run(self.run_spec(experiment + "-other"))

        assert first.run_id != second.run_id
        assert first.experiment_id == second.experiment_id
        assert other.experiment_id != first.experiment_id

    def test_the_same_idempotency_key_returns_the_first_run(
        self, provider: TrackingProvider, experiment: str
    ) -> None:
        key = f"contract-{uuid.uuid4().hex}"

        first = provider.create_run(self.run_spec(experiment, idempotency_key=key))
        again = provider.create_run(
            self.run_spec(experiment, idempotency_key=key, run_name="redelivered")
        )
        other = provider.create_run(self.run_spec(experiment, idempotency_key=key + "-other"))

        assert again.run_id == first.run_id, (
            "a second create_run with the same idempotency key must return the first run "
            f"(got {first.run_id} then {again.run_id})"
        )
        assert other.run_id != first.run_id, "another key is another run"
        runs = self.search_all(provider, RunQuery(experiments=[experiment]))
        assert sorted(r.run_id for r in runs) == sorted({first.run_id, other.run_id})

    @requires("restart")
    def test_a_restarted_provider_honours_the_first_ones_idempotency_keys(
        self,
        provider: TrackingProvider,
        restarted_provider: TrackingProvider,
        experiment: str,
    ) -> None:
        spec = self.run_spec(experiment, idempotency_key=f"contract-{uuid.uuid4().hex}")
        first = provider.create_run(spec)

        again = restarted_provider.create_run(spec)

        assert again.run_id == first.run_id, (
            "after a restart, create_run with a known idempotency key must return the first "
            "run: the outbox redelivers after restarts"
        )

    @pytest.mark.parametrize(
        "method", ["get_run", "end_run", "log_params", "log_metrics", "metric_history"]
    )
    def test_an_unknown_run_is_not_found(
        self, provider: TrackingProvider, missing_run_id: str, method: str
    ) -> None:
        calls: dict[str, Callable[[], object]] = {
            "get_run": lambda: provider.get_run(missing_run_id),
            "end_run": lambda: provider.end_run(missing_run_id, RunStatus.FINISHED),
            "log_params": lambda: provider.log_params(missing_run_id, {"a": "1"}),
            "log_metrics": lambda: provider.log_metrics(
                missing_run_id, [MetricPoint(key="m", value=1.0)]
            ),
            "metric_history": lambda: provider.metric_history(missing_run_id, "m"),
        }

        with pytest.raises(NotFound):
            calls[method]()

    @pytest.mark.parametrize("status", [RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED])
    def test_end_run_records_the_status_and_the_end_time(
        self, provider: TrackingProvider, experiment: str, status: RunStatus
    ) -> None:
        run = provider.create_run(self.run_spec(experiment))

        ended = provider.end_run(run.run_id, status)
        read = provider.get_run(run.run_id)

        for which, info in (("end_run()", ended), ("get_run()", read)):
            assert info.status is status, f"{which} says {info.status}"
            assert info.end_time is not None, f"{which} has no end_time"
            if info.start_time is not None:
                assert info.end_time >= info.start_time

    def test_run_url_is_an_absolute_link_or_none(
        self, provider: TrackingProvider, experiment: str
    ) -> None:
        run = provider.create_run(self.run_spec(experiment))

        url = provider.run_url(run.run_id)

        assert url is None or url.startswith(("http://", "https://")), url

    # -- params ----------------------------------------------------------------------

    def test_log_params_adds_to_the_runs_params(
        self, provider: TrackingProvider, experiment: str
    ) -> None:
        run = provider.create_run(self.run_spec(experiment, params={"lr": "0.1"}))

        provider.log_params(run.run_id, {"epochs": "3", "optimizer": "adamw"})
        provider.log_params(run.run_id, {"lr": "0.1"})  # the same value again is fine

        assert provider.get_run(run.run_id).params == {
            "lr": "0.1",
            "epochs": "3",
            "optimizer": "adamw",
        }

    @requires("immutable_params")
    def test_log_params_refuses_to_change_a_logged_value(
        self, provider: TrackingProvider, experiment: str
    ) -> None:
        run = provider.create_run(self.run_spec(experiment, params={"lr": "0.1"}))

        with pytest.raises(Conflict):
            provider.log_params(run.run_id, {"lr": "0.2"})
        assert provider.get_run(run.run_id).params == {"lr": "0.1"}

    # -- metrics ---------------------------------------------------------------------

    def test_a_batch_of_max_metrics_per_batch_points_is_logged_whole(
        self, provider: TrackingProvider, experiment: str
    ) -> None:
        run = provider.create_run(self.run_spec(experiment))
        size = min(provider.max_metrics_per_batch, BATCH_TEST_CAP)
        points = [
            MetricPoint(key="loss", value=1.0 / (step + 1), step=step, timestamp=_at(step))
            for step in range(size)
        ]

        provider.log_metrics(run.run_id, points)

        history = provider.metric_history(run.run_id, "loss")
        assert len(history) == size, f"logged {size} points, history has {len(history)}"
        assert [p.step for p in history] == list(range(size))

    def test_metric_history_is_in_step_order_with_values_kept(
        self, provider: TrackingProvider, experiment: str
    ) -> None:
        run = provider.create_run(self.run_spec(experiment))
        provider.log_metrics(
            run.run_id,
            [
                MetricPoint(key="loss", value=0.25, step=3, timestamp=_at(3)),
                MetricPoint(key="acc", value=0.5, step=1, timestamp=_at(1)),
                MetricPoint(key="loss", value=-1.5e-9, step=1, timestamp=_at(1)),
            ],
        )
        provider.log_metrics(
            run.run_id, [MetricPoint(key="loss", value=0.75, step=2, timestamp=_at(2))]
        )

        history = provider.metric_history(run.run_id, "loss")

        assert all(isinstance(p, MetricPoint) for p in history)
        assert [(p.key, p.step, p.value) for p in history] == [
            ("loss", 1, -1.5e-9),
            ("loss", 2, 0.75),
            ("loss", 3, 0.25),
        ]
        assert provider.metric_history(run.run_id, "never-logged") == []

    def test_a_point_logged_again_identically_is_stored_once(
        self, provider: TrackingProvider, experiment: str
    ) -> None:
        """The platform re-sends a batch whose answer it lost (and a job re-sends a request
        whose answer it lost): identical points (key, value, step, time) must count once."""
        run = provider.create_run(self.run_spec(experiment))
        batch = [
            MetricPoint(key="loss", value=0.5, step=1, timestamp=_at(1)),
            MetricPoint(key="loss", value=0.25, step=2, timestamp=_at(2)),
        ]
        provider.log_metrics(run.run_id, batch)
        provider.log_metrics(run.run_id, batch)
        provider.log_metrics(
            run.run_id, [MetricPoint(key="loss", value=0.75, step=2, timestamp=_at(3))]
        )

        history = provider.metric_history(run.run_id, "loss")

        assert [(p.step, p.value) for p in history] == [(1, 0.5), (2, 0.25), (2, 0.75)]

    @requires("job_environment")
    def test_job_environment_names_the_run_and_hands_on_no_secret_but_the_jobs_own(
        self, provider: TrackingProvider, experiment: str, integration_secrets: list[str]
    ) -> None:
        run = provider.create_run(self.run_spec(experiment))
        access = JobAccess(
            tracker_url="http://platform.invalid/llm-ops/v1/training/jobs/j1/experiment-run/tracker",
            token=SecretStr(f"llmops_job_{uuid.uuid4().hex}"),
        )

        environment = dict(provider.job_environment(run.run_id, access))  # type: ignore[attr-defined]

        assert environment, "a job needs at least the variable that names its run"
        assert run.run_id in {v for v in environment.values() if isinstance(v, str)}
        for name, value in environment.items():
            assert isinstance(name, str)
            assert isinstance(value, str | SecretStr)
            if "TOKEN" in name or "PASSWORD" in name or "SECRET" in name:
                assert isinstance(value, SecretStr), f"{name} must be a SecretStr"
            if isinstance(value, SecretStr):  # the platform's job token is the only secret
                assert value.get_secret_value() == access.token.get_secret_value(), name
        seen = " ".join(
            v.get_secret_value() if isinstance(v, SecretStr) else v for v in environment.values()
        )
        for secret in integration_secrets:
            assert secret not in seen, "an integration's own secret reached a job's environment"

    def test_latest_metrics_hold_the_value_of_the_highest_step(
        self, provider: TrackingProvider, experiment: str
    ) -> None:
        run = provider.create_run(self.run_spec(experiment))
        provider.log_metrics(
            run.run_id,
            [
                MetricPoint(key="loss", value=0.4, step=5, timestamp=_at(5)),
                MetricPoint(key="acc", value=0.9, step=5, timestamp=_at(5)),
            ],
        )
        provider.log_metrics(
            run.run_id, [MetricPoint(key="loss", value=0.8, step=2, timestamp=_at(6))]
        )

        assert provider.get_run(run.run_id).latest_metrics == {"loss": 0.4, "acc": 0.9}

    # -- artifacts -------------------------------------------------------------------

    @requires("artifacts")
    def test_a_logged_file_is_listed_with_its_path_and_size(
        self, provider: TrackingProvider, experiment: str, tmp_path: Path
    ) -> None:
        run = provider.create_run(self.run_spec(experiment))
        source = tmp_path / "model.bin"
        source.write_bytes(b"0123456789")

        info = provider.log_artifact(run.run_id, source, "weights")

        assert isinstance(info, ArtifactInfo)
        assert (info.path, info.is_dir) == ("weights/model.bin", False)
        assert info.size_bytes in {None, 10}
        top = provider.list_artifacts(run.run_id)
        assert [(a.path, a.is_dir) for a in top] == [("weights", True)]
        inner = provider.list_artifacts(run.run_id, "weights")
        assert [(a.path, a.is_dir, a.size_bytes) for a in inner] == [
            ("weights/model.bin", False, 10)
        ], "a listed file carries its size"

    @requires("artifacts")
    def test_a_logged_folder_keeps_its_tree(
        self, provider: TrackingProvider, experiment: str, tmp_path: Path
    ) -> None:
        run = provider.create_run(self.run_spec(experiment))
        folder = tmp_path / "eval"
        (folder / "plots").mkdir(parents=True)
        (folder / "scores.json").write_text('{"f1": 0.5}')
        (folder / "plots" / "roc.png").write_bytes(b"png")

        info = provider.log_artifact(run.run_id, folder)

        assert (info.path, info.is_dir) == ("eval", True)
        assert [(a.path, a.is_dir) for a in provider.list_artifacts(run.run_id, "eval")] == [
            ("eval/plots", True),
            ("eval/scores.json", False),
        ]
        plots = provider.list_artifacts(run.run_id, "eval/plots")
        assert [(a.path, a.size_bytes) for a in plots] == [("eval/plots/roc.png", 3)]
        assert provider.list_artifacts(run.run_id, "not-there") == []

    @requires("artifacts")
    def test_artifacts_of_an_unknown_run_are_not_found(
        self, provider: TrackingProvider, missing_run_id: str, tmp_path: Path
    ) -> None:
        source = tmp_path / "f.txt"
        source.write_text("x")

        with pytest.raises(NotFound):
            provider.log_artifact(missing_run_id, source)
        with pytest.raises(NotFound):
            provider.list_artifacts(missing_run_id)

    # -- search ----------------------------------------------------------------------

    def test_search_pages_through_every_run_once(
        self, provider: TrackingProvider, experiment: str
    ) -> None:
        created = {provider.create_run(self.run_spec(experiment)).run_id for _ in range(5)}
        seen: list[str] = []
        pages = 0
        token: str | None = None

        while True:
            page = provider.search_runs(
                RunQuery(experiments=[experiment], page_size=2, page_token=token)
            )
            pages += 1
            assert len(page.runs) <= 2, f"page_size=2 returned {len(page.runs)} runs"
            seen += [r.run_id for r in page.runs]
            token = page.next_page_token
            if token is None or pages > 10:
                break

        assert sorted(seen) == sorted(created), "every run once, none twice"
        assert pages == 3, f"5 runs in pages of 2 are 3 pages, got {pages}"

    def test_search_keeps_to_the_named_experiments(
        self, provider: TrackingProvider, experiment: str
    ) -> None:
        wanted = provider.create_run(self.run_spec(experiment))
        provider.create_run(self.run_spec(experiment + "-other"))

        found = self.search_all(
            provider, RunQuery(experiments=[experiment, f"{experiment}-never-created"])
        )

        assert [r.run_id for r in found] == [wanted.run_id]
        assert isinstance(found[0], RunInfo)

    @requires("search_filter")
    def test_search_filters_on_params_and_tags(
        self, provider: TrackingProvider, experiment: str
    ) -> None:
        small = provider.create_run(
            self.run_spec(experiment, params={"size": "s"}, tags={"team": "nlp"})
        )
        large = provider.create_run(
            self.run_spec(experiment, params={"size": "l"}, tags={"team": "nlp"})
        )
        provider.create_run(self.run_spec(experiment, params={"size": "l"}, tags={"team": "cv"}))

        def found(filter_: str) -> set[str]:
            query = RunQuery(experiments=[experiment], filter=filter_)
            return {r.run_id for r in self.search_all(provider, query)}

        assert found("params.size = 's'") == {small.run_id}
        assert found("params.size = 'l' AND tags.team = 'nlp'") == {large.run_id}
        assert found("tags.team = 'nowhere'") == set()
        assert len(found("")) == 3

    @requires("search_order")
    def test_search_orders_by_a_metric(self, provider: TrackingProvider, experiment: str) -> None:
        runs = {value: provider.create_run(self.run_spec(experiment)) for value in (0.5, 0.9, 0.1)}
        for value, run in runs.items():
            provider.log_metrics(run.run_id, [MetricPoint(key="acc", value=value)])

        def order(direction: str) -> list[str]:
            query = RunQuery(experiments=[experiment], order_by=[f"metrics.acc {direction}"])
            return [r.run_id for r in self.search_all(provider, query)]

        assert order("DESC") == [runs[v].run_id for v in (0.9, 0.5, 0.1)]
        assert order("ASC") == [runs[v].run_id for v in (0.1, 0.5, 0.9)]


def _at(step: int) -> datetime:
    """Distinct, increasing timestamps with millisecond precision (what tools keep)."""
    return _EPOCH + timedelta(seconds=step)
