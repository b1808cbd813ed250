"""Workflow orchestration (US3): DAG pipelines of stages, per-stage state, logs.

Every orchestrator is an :class:`OrchestrationProvider`. One that runs stages inside the
platform's own process also implements the optional :class:`AdoptsRuns`, so that another
platform process can take its runs over when that process dies.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

from pydantic import Field, SecretStr

from llmops.capabilities.common import Health, Value
from llmops.errors import InvalidRequest

STAGE_NAME_PATTERN = r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$"
#: The label the platform sets on every pipeline it submits: the pipeline's id, so that an
#: orchestrator's own view (the Argo UI, ``kubectl get -l``) leads back to the platform.
PIPELINE_ID_LABEL = "llmops.pipeline"


class StageSpec(Value):
    name: str = Field(pattern=STAGE_NAME_PATTERN)
    command: list[str] = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    working_dir: str | None = None
    depends_on: list[str] = Field(default_factory=list)
    retries: int = Field(default=0, ge=0, le=20)
    timeout_seconds: float | None = Field(default=None, gt=0)
    image: str | None = Field(default=None, description="container image, for cluster engines")


class PipelineSpec(Value):
    name: str = Field(min_length=1, max_length=200)
    stages: list[StageSpec] = Field(min_length=1)
    max_parallel: int | None = Field(default=None, ge=1, le=64)
    labels: dict[str, str] = Field(default_factory=dict)
    idempotency_key: str | None = None
    secret_env: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="environment for every stage that is never persisted or shown "
        "(a job token); providers pass it to the tool's secret mechanism",
    )
    read_paths: list[str] = Field(
        default_factory=list,
        description="host paths the platform lets every stage read (a training job's "
        "dataset): an orchestrator that hides the platform's files from stages "
        "(PluginContext.protected_paths) makes these visible; set by the platform only",
    )
    write_paths: list[str] = Field(
        default_factory=list,
        description="host paths the platform lets every stage write (a training job's "
        "output dir), like read_paths",
    )


class PipelineState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in {PipelineState.SUCCEEDED, PipelineState.FAILED, PipelineState.CANCELLED}


class StageState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


class StageStatus(Value):
    name: str
    state: StageState
    attempts: int = 0
    exit_code: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    message: str = ""
    ui_url: str | None = Field(
        default=None, description="the stage in the tool's own UI (an Argo node), if any"
    )


class PipelineStatus(Value):
    external_id: str
    state: PipelineState
    stages: list[StageStatus]
    started_at: datetime | None = None
    finished_at: datetime | None = None
    message: str = ""
    ui_url: str | None = None


class StageLog(Value):
    stage: str
    text: str
    truncated: bool = False


def validate_pipeline(spec: PipelineSpec) -> list[str]:
    """Check the DAG and return the stage names in a dependency order.

    Raises :class:`InvalidRequest` naming the offending stages for duplicate names,
    unknown dependencies, self-dependencies and cycles.
    """
    names = [stage.name for stage in spec.stages]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidRequest(
            f"duplicate stage names: {', '.join(duplicates)}", stages=duplicates, rule="duplicate"
        )
    known = set(names)
    unknown = sorted(
        {f"{s.name} -> {d}" for s in spec.stages for d in s.depends_on if d not in known}
    )
    if unknown:
        raise InvalidRequest(
            f"unknown dependencies: {', '.join(unknown)}",
            stages=sorted({u.split(" -> ")[0] for u in unknown}),
            rule="unknown-dependency",
        )
    deps = {s.name: list(dict.fromkeys(s.depends_on)) for s in spec.stages}
    order: list[str] = []
    remaining = {n: len(d) for n, d in deps.items()}
    dependents: dict[str, list[str]] = {n: [] for n in names}
    for n, ds in deps.items():
        for d in ds:
            dependents[d].append(n)
    ready = [n for n in names if remaining[n] == 0]
    while ready:
        current = ready.pop(0)
        order.append(current)
        for nxt in dependents[current]:
            remaining[nxt] -= 1
            if remaining[nxt] == 0:
                ready.append(nxt)
    if len(order) != len(names):
        cyclic = sorted(n for n in names if remaining[n] > 0)
        raise InvalidRequest(
            f"dependency cycle among stages: {', '.join(cyclic)}", stages=cyclic, rule="cycle"
        )
    return order


@runtime_checkable
class OrchestrationProvider(Protocol):
    """A workflow engine (the local executor, Argo Workflows, ...)."""

    def submit(self, spec: PipelineSpec) -> PipelineStatus:
        """Start the pipeline. With ``spec.idempotency_key`` set, a second submit with the
        same key returns the first run instead of starting another."""
        ...

    def status(self, external_id: str) -> PipelineStatus: ...
    def logs(
        self, external_id: str, *, stage: str | None = None, tail_bytes: int | None = None
    ) -> Sequence[StageLog]: ...
    def retry(self, external_id: str) -> PipelineStatus:
        """Run the failed, cancelled and skipped stages again; succeeded ones are kept."""
        ...

    def cancel(self, external_id: str) -> PipelineStatus: ...
    def ui_url(self, external_id: str) -> str | None: ...
    def health(self) -> Health: ...


@runtime_checkable
class AdoptsRuns(Protocol):
    """An orchestration provider whose runs are driven by the platform process that
    started them (the local executor): a provider that runs stages inside the platform's
    own process implements it, so that another process can take its runs over.

    Its stages outlive the process driving them; another platform process on the same
    host and state (a restarted server, a replica sharing the data dir) takes a run over
    with :meth:`adopt` once the core has decided that the run's owner is gone, and ends
    the runs nobody expects any more with :meth:`recover`. The core calls these from its
    worker, never on a request's path.
    """

    def adopt(
        self, external_id: str, *, secret_env: Mapping[str, SecretStr] | None = None
    ) -> PipelineStatus:
        """Take over an unfinished run whose driving process is gone, and drive it to its
        end in this process (``status``, ``logs`` and ``cancel`` then work here).

        Stages that ended while nobody watched are recorded as they ended, those still
        running are watched again, those killed with their driver are retried by their
        retry policy or failed as interrupted. ``secret_env`` gives back the run's secret
        environment (it is never persisted): a new attempt that needs a value not given
        fails, naming it. A finished run, or one this process drives already, just answers
        its status. The core calls it when it has made this process the run's owner.

        :raises NotFound: the run is not in this provider's state (another host's).
        :raises Conflict: a live process still drives the run.
        """
        ...

    def orphaned_runs(self) -> list[str]:
        """Ids of the unfinished runs in this provider's state that no live process
        drives: candidates for :meth:`adopt` or :meth:`recover`. Reads only."""
        ...

    def recover(self, *, keep: Collection[str] = ()) -> list[str]:
        """End the orphaned runs (kill what is left of their stages, mark them failed as
        interrupted) but those in ``keep``, which stay as they are for :meth:`adopt`;
        return the ids of the runs it ended. The core calls it with the runs its database
        still expects in ``keep``, so that only runs nobody will take over are ended."""
        ...

    def detach(self) -> list[str]:
        """Let go of every run this process drives, leaving their stages running, and
        refuse new work after; return the ids of the runs it let go.

        The core calls it when the platform process stops cleanly, so that another
        process takes the runs over (:meth:`adopt`), as it would after a crash; a settings
        change still closes the executor, which cancels its runs. Stages that run go on
        and stay recorded as running, pending ones stay pending, and each run is released
        (it shows in another process's :meth:`orphaned_runs`) once nothing of this process
        drives it any more. It returns promptly, without waiting for any stage; closing
        the provider afterwards leaves the runs it let go alone.
        """
        ...
