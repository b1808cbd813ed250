"""MLflow's rules for what a run may hold, as constants, so that the platform refuses a
write MLflow would refuse while the request is still open (422), instead of queueing it
for a delivery that fails every time.

They are MLflow 3.17's (``mlflow.utils.validation`` on a POSIX server); importing MLflow
takes seconds, so they are restated here, and plugins/mlflow/tests/test_rules.py
compares them with the installed MLflow. One rule is stricter than MLflow's on purpose:
MLflow's name pattern ends in ``$``, which lets one trailing newline through
(``"loss\\n"``); here the whole name must match.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping, Sequence
from datetime import datetime

from llmops.capabilities.tracking import MetricPoint
from llmops.errors import InvalidRequest

#: What metric, param and tag names may contain: letters, digits and underscores
#: (Unicode word characters), and ``/ . - :`` and space (MLflow's
#: ``validate_param_and_metric_name`` on POSIX)
NAME_PATTERN = r"^[/\w.\- :]*$"
_NAME = re.compile(NAME_PATTERN.removeprefix("^").removesuffix("$"))
#: Longest metric, param and tag name (``MAX_ENTITY_KEY_LENGTH``)
MAX_KEY_LENGTH = 250
#: Longest param value (``MAX_PARAM_VAL_LENGTH``); MLflow's client cuts a longer one
#: short, which would store another value than the one asked for
MAX_PARAM_VALUE_LENGTH = 6000
#: Longest tag value (``MAX_TAG_VAL_LENGTH``)
MAX_TAG_VALUE_LENGTH = 8000
#: Longest experiment name (``MAX_EXPERIMENT_NAME_LENGTH``)
MAX_EXPERIMENT_NAME_LENGTH = 500
#: Steps and timestamps (milliseconds since 1970) are 64-bit integers in MLflow's
#: protocol and stores; a timestamp before 1970 is refused
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: What MLflow's client prints for a name with a character it does not accept
BAD_CHARACTERS = (
    "names may only contain alphanumerics, underscores (_), dashes (-), periods (.), "
    "spaces ( ), colons (:) and slashes (/)"
)


def _shown(value: str) -> str:
    """A refused value for a message: escaped, and cut short."""
    text = value if len(value) <= 60 else value[:60] + "..."
    return ascii(text)


def name_problem(name: str) -> str | None:
    """Why MLflow refuses ``name`` as a metric, param or tag name, or None."""
    if len(name) > MAX_KEY_LENGTH:
        return f"is {len(name)} characters long; MLflow allows at most {MAX_KEY_LENGTH}"
    if _NAME.fullmatch(name) is None:
        return BAD_CHARACTERS
    normal = posixpath.normpath(name)
    if normal != name or normal == "." or normal.startswith(("..", "/")):
        return (
            "names are used as file paths and must not resolve to another name "
            f"(this one resolves to {normal!r})"
        )
    return None


def _check_name(name: str, parameter: str, what: str) -> None:
    problem = name_problem(name)
    if problem is not None:
        raise InvalidRequest(f"{what} {_shown(name)}: {problem}", parameter=parameter)


def _check_values(values: Mapping[str, str], parameter: str, what: str, longest: int) -> None:
    for key, value in values.items():
        _check_name(key, parameter, f"{what} name")
        if len(value) > longest:
            raise InvalidRequest(
                f"the value of {what} {_shown(key)} is {len(value)} characters long; "
                f"MLflow allows at most {longest}",
                parameter=parameter,
            )


def _milliseconds(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def validate_run_write(
    *,
    experiment: str | None = None,
    params: Mapping[str, str] | None = None,
    metrics: Sequence[MetricPoint] = (),
    tags: Mapping[str, str] | None = None,
) -> None:
    """Raise :class:`InvalidRequest`, naming the field, for the first value MLflow would
    refuse (see :class:`llmops.capabilities.tracking.ValidatesRunWrites`)."""
    if experiment is not None:
        if not experiment:
            raise InvalidRequest("an experiment needs a name", parameter="experiment")
        if len(experiment) > MAX_EXPERIMENT_NAME_LENGTH:
            raise InvalidRequest(
                f"the experiment name is {len(experiment)} characters long; MLflow allows "
                f"at most {MAX_EXPERIMENT_NAME_LENGTH}",
                parameter="experiment",
            )
    _check_values(params or {}, "params", "param", MAX_PARAM_VALUE_LENGTH)
    _check_values(tags or {}, "tags", "tag", MAX_TAG_VALUE_LENGTH)
    for index, point in enumerate(metrics):
        _check_name(point.key, f"metrics[{index}].key", "metric name")
        if not INT64_MIN <= point.step <= INT64_MAX:
            raise InvalidRequest(
                f"metric step {point.step} is not a 64-bit integer",
                parameter=f"metrics[{index}].step",
            )
        if _milliseconds(point.timestamp) < 0:
            raise InvalidRequest(
                f"metric timestamp {point.timestamp.isoformat()} is before 1970; MLflow "
                "keeps times as milliseconds since 1970",
                parameter=f"metrics[{index}].timestamp",
            )
