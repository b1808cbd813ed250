"""The plugin's statement of MLflow's rules (llmops_mlflow.rules) is MLflow's own, and
what MLflow refuses for good is never an outage: a poison write must not be retried or
counted by the circuit breaker."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow.utils.validation as mlflow_rules
import pytest
from mlflow.exceptions import MlflowException

from llmops.capabilities.tracking import MetricPoint, RunSpec
from llmops.errors import IntegrationRejected, IntegrationUnavailable, InvalidRequest
from llmops.resilience.errors import retryable
from llmops_mlflow import rules, tracker
from llmops_mlflow.tracker import MlflowTracker, translate_mlflow_error

if TYPE_CHECKING:  # the fixture's type (conftest.py is not importable under importlib)
    from conftest import FakeMlflow

#: Names MLflow's rule is tried on, good and bad
NAMES = [
    "loss",
    "eval/loss",
    "train.loss-ema 2",
    "a:b",
    "température",
    "x" * 250,
    "x" * 251,
    "loss\u2028x",
    "loss\nx",
    "tab\tx",
    "nul\x00",
    "emoji\U0001f600",
    "semi;colon",
    "../loss",
    "/loss",
    "a/./b",
    "a//b",
    "a/",
    "x/..",
    ".",
    "",
]


def test_the_plugins_limits_are_mlflows() -> None:
    assert rules.MAX_KEY_LENGTH == mlflow_rules.MAX_ENTITY_KEY_LENGTH
    assert rules.MAX_PARAM_VALUE_LENGTH == mlflow_rules.MAX_PARAM_VAL_LENGTH
    assert rules.MAX_TAG_VALUE_LENGTH == mlflow_rules.MAX_TAG_VAL_LENGTH
    assert rules.MAX_EXPERIMENT_NAME_LENGTH == mlflow_rules.MAX_EXPERIMENT_NAME_LENGTH
    assert tracker.MAX_METRICS_PER_BATCH == mlflow_rules.MAX_METRICS_PER_BATCH
    assert tracker.MAX_PARAMS_PER_BATCH == mlflow_rules.MAX_PARAMS_TAGS_PER_BATCH
    # MLflow's own pattern for POSIX servers, as its source spells it
    source = inspect.getsource(mlflow_rules.validate_param_and_metric_name)
    assert f'r"{rules.NAME_PATTERN}"' in source


@pytest.mark.parametrize("name", NAMES, ids=ascii)
def test_the_plugins_name_rule_is_mlflows(name: str) -> None:
    try:
        mlflow_rules._validate_param(name, "value")  # type: ignore[no-untyped-call]
    except MlflowException:
        mlflow_accepts = False
    else:
        mlflow_accepts = True

    assert (rules.name_problem(name) is None) == mlflow_accepts


def test_one_trailing_newline_mlflow_lets_through_is_refused_on_purpose() -> None:
    # MLflow's `$` matches before a final newline
    mlflow_rules._validate_param("loss\n", "value")  # type: ignore[no-untyped-call]

    assert rules.name_problem("loss\n") == rules.BAD_CHARACTERS


@pytest.fixture(scope="module")
def local_tracker(tmp_path_factory: pytest.TempPathFactory) -> MlflowTracker:
    return MlflowTracker(f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}")


@pytest.mark.parametrize(
    "point",
    [
        MetricPoint(key="loss\u2028x", value=1.0),
        MetricPoint(key="../loss", value=1.0),
        MetricPoint(key="loss", value=1.0, step=2**63),
        MetricPoint(key="loss", value=1.0, timestamp=datetime(1969, 1, 1, tzinfo=UTC)),
    ],
    ids=["line-separator", "dot-dot", "step-beyond-64-bits", "before-1970"],
)
def test_a_metric_point_the_rules_refuse_mlflow_refuses_for_good(
    local_tracker: MlflowTracker, point: MetricPoint
) -> None:
    run = local_tracker.create_run(RunSpec(experiment="rules", run_name="r"))
    with pytest.raises(InvalidRequest) as ahead:
        local_tracker.validate_run_write(metrics=[point])
    assert ahead.value.extensions["parameter"].startswith("metrics[0].")

    with pytest.raises(InvalidRequest) as refused:
        local_tracker.log_metrics(run.run_id, [point])

    assert retryable(refused.value) is False


def test_a_param_value_the_rules_refuse_mlflow_would_store_cut_short(
    local_tracker: MlflowTracker,
) -> None:
    run = local_tracker.create_run(RunSpec(experiment="rules", run_name="r"))
    with pytest.raises(InvalidRequest, match="at most 6000"):
        local_tracker.validate_run_write(params={"prompt": "x" * 6001})

    local_tracker.log_params(run.run_id, {"prompt": "x" * 6001})

    assert len(local_tracker.get_run(run.run_id).params["prompt"]) == 6000


def test_validating_imports_nothing_of_mlflow(tmp_path: Path) -> None:
    """The core validates on the request path; importing MLflow takes seconds."""
    script = f"""
import sys
from llmops.capabilities.tracking import MetricPoint
from llmops.errors import InvalidRequest
from llmops_mlflow.tracker import MlflowTracker
tracker = MlflowTracker("sqlite:///{tmp_path / "m.db"}")
tracker.validate_run_write(metrics=[MetricPoint(key="loss", value=1.0)], params={{"a": "b"}})
try:
    tracker.validate_run_write(metrics=[MetricPoint(key="bad\\u2028", value=1.0)])
except InvalidRequest as exc:
    print(exc.extensions["parameter"])
print(sorted(m for m in sys.modules if m.split(".")[0] == "mlflow"))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )

    assert done.stdout.splitlines() == ["metrics[0].key", "[]"]


# -- what counts as an outage ------------------------------------------------------------


def test_a_value_mlflows_client_cannot_encode_is_refused_not_an_outage() -> None:
    error = translate_mlflow_error(ValueError("Value out of range: 9223372036854775808"), "x")

    assert isinstance(error, InvalidRequest)


@pytest.mark.parametrize(
    ("status", "expected"),
    [(413, IntegrationRejected), (404, IntegrationRejected), (502, IntegrationUnavailable)],
    ids=["413-from-a-proxy", "404-no-such-endpoint", "502-from-a-proxy"],
)
def test_a_bare_error_answer_is_an_outage_only_when_it_is_a_5xx(
    fake_mlflow: FakeMlflow, status: int, expected: type[Exception]
) -> None:
    fake_mlflow.status = status
    fake_mlflow.body = b"<html>nope</html>"
    fake_mlflow.content_type = "text/html"
    tracker = MlflowTracker(fake_mlflow.url, request_timeout=5)

    with pytest.raises((IntegrationRejected, IntegrationUnavailable)) as failed:
        tracker.create_run(RunSpec(experiment="e", run_name="r"))

    assert isinstance(failed.value, expected)
    assert retryable(failed.value) is (expected is IntegrationUnavailable)


def test_mlflows_try_later_codes_stay_outages(fake_mlflow: FakeMlflow) -> None:
    fake_mlflow.status = 429
    fake_mlflow.body = json.dumps(
        {"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "slow down"}
    ).encode()
    tracker = MlflowTracker(fake_mlflow.url, request_timeout=5)

    with pytest.raises(IntegrationUnavailable):
        tracker.create_run(RunSpec(experiment="e", run_name="r"))
