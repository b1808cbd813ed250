"""Rolling an integration back: ``llmops rollback PLUGIN [--dry-run]``.

The plugin is disabled (as under Admin, Integrations), the defaults an admin stored for it
are removed (the capability's next provider by the usual rule serves instead), and what
depends on it moves to its fallback where one exists:

* **orchestration**: pipelines whose submission never reached the tool (still queued in
  the retry queue) go to the built-in local executor, as a pipeline that falls back does;
  pipelines already running on the tool stay there (their stages cannot move mid-run)
  and are listed, with their last known state;
* **tracking**: experiment runs are copied to the tracker that serves next, when one is
  enabled (:func:`llmops.services.moves.move_runs`); with none, they stay recorded under
  the plugin, readable again once it is enabled, and new training jobs run untracked;
* **serving**: endpoints keep serving (the gateway routes to their stored inference
  targets) and are listed; the serving plugins' own ``migrate`` commands move them;
* **registry**, **versioning**: imported models stay in the catalog and dataset versions
  stay recorded; queued writes (pushes) wait in the retry queue, nothing is lost.

:func:`plan` only reads; :func:`apply` makes the changes, one transaction for the
platform's own rows (disable, defaults, queued submissions) and then the copies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from llmops.auth import Principal
from llmops.capabilities.common import Capability
from llmops.db.models import (
    CapabilityDefault,
    DatasetVersion,
    ExperimentRun,
    Operation,
    RegistryModel,
    ServingEndpoint,
    WorkflowPipeline,
    utcnow,
)
from llmops.errors import Conflict, NoProviderEnabled
from llmops.integrations import BUILTIN_PLUGINS, IntegrationRuntime
from llmops.resilience.outbox import OperationStatus
from llmops.services import audit, integrations
from llmops.services.moves import move_runs
from llmops.services.pipelines import FELL_BACK, LOCAL, SUBMIT, TERMINAL

#: who a rollback from the command line acts as, in the audit log
CLI = Principal(key_id=None, name="cli", role=None)

Echo = Callable[[str], None]

_WAITING = (OperationStatus.PENDING.value, OperationStatus.DEAD.value)


@dataclass
class Step:
    """One thing a rollback does or leaves, with how many records it concerns."""

    capability: str
    action: str  # disable | remove-default | to-local | copy-runs | stays | waits
    count: int
    detail: str

    def line(self) -> str:
        return f"[{self.capability}] {self.detail}"


@dataclass
class Plan:
    plugin: str
    steps: list[Step] = field(default_factory=list)
    #: the pipelines that move to the local executor
    to_local: list[str] = field(default_factory=list)
    #: the tracker the experiment runs are copied to, if one serves next
    runs_to: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "plugin": self.plugin,
            "steps": [s.__dict__ for s in self.steps],
            "toLocal": self.to_local,
            "runsTo": self.runs_to,
        }


def plan(session: Session, runtime: IntegrationRuntime, plugin: str) -> Plan:
    """What :func:`apply` would do for ``plugin``; changes nothing."""
    state = runtime.state(plugin)  # 404 for a plugin that is not installed
    if plugin in BUILTIN_PLUGINS:
        raise Conflict(f"{plugin!r} is built in: it is the fallback and cannot be rolled back")
    capabilities = (
        sorted(state.loaded.info.capabilities, key=lambda c: c.value)
        if state.loaded is not None
        else sorted({Capability(d.capability) for d in _defaults_of(session, plugin)})
    )
    out = Plan(plugin)
    out.steps.append(Step("all", "disable", 1, f"disable {plugin} (now {_on_off(state.enabled)})"))
    for default in _defaults_of(session, plugin):
        out.steps.append(
            Step(
                default.capability,
                "remove-default",
                1,
                f"remove the stored default {plugin}: the next provider by priority serves",
            )
        )
    for capability in capabilities:
        _plan_capability(session, runtime, out, capability)
    return out


def _on_off(enabled: bool) -> str:
    return "enabled" if enabled else "already disabled"


def _defaults_of(session: Session, plugin: str) -> list[CapabilityDefault]:
    return list(
        session.scalars(
            select(CapabilityDefault)
            .where(CapabilityDefault.provider == plugin)
            .order_by(CapabilityDefault.capability)
        )
    )


def _count(session: Session, stmt: Any) -> int:
    return int(session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)


def _waiting_writes(session: Session, plugin: str, capability: Capability) -> int:
    return _count(
        session,
        select(Operation.id).where(
            Operation.provider == plugin,
            Operation.capability == capability.value,
            Operation.status.in_(_WAITING),
            Operation.kind != SUBMIT,
        ),
    )


def _plan_capability(
    session: Session, runtime: IntegrationRuntime, out: Plan, capability: Capability
) -> None:
    name, plugin = capability.value, out.plugin
    if capability is Capability.ORCHESTRATION:
        queued = list(
            session.scalars(
                select(WorkflowPipeline.id)
                .join(Operation, Operation.resource_id == WorkflowPipeline.id)
                .where(
                    WorkflowPipeline.provider == plugin,
                    WorkflowPipeline.external_id.is_(None),
                    WorkflowPipeline.status.not_in(TERMINAL),
                    Operation.kind == SUBMIT,
                    Operation.status.in_(_WAITING),
                )
                .order_by(WorkflowPipeline.created_at)
            )
        )
        out.to_local = queued
        out.steps.append(
            Step(
                name,
                "to-local",
                len(queued),
                f"{len(queued)} pipeline(s) whose submission never reached {plugin} run on "
                "the local executor instead",
            )
        )
        running = _count(
            session,
            select(WorkflowPipeline.id).where(
                WorkflowPipeline.provider == plugin,
                WorkflowPipeline.external_id.is_not(None),
                WorkflowPipeline.status.not_in(TERMINAL),
            ),
        )
        out.steps.append(
            Step(
                name,
                "stays",
                running,
                f"{running} pipeline(s) running on {plugin} stay there with their last known "
                f"state (stages cannot move mid-run): cancel them in {plugin}, or enable it "
                "again to follow them",
            )
        )
    elif capability is Capability.TRACKING:
        runs = _count(session, select(ExperimentRun.id).where(ExperimentRun.provider == plugin))
        nxt = _next_provider(runtime, capability, plugin)
        if nxt is not None:
            out.runs_to = nxt
            out.steps.append(
                Step(name, "copy-runs", runs, f"copy {runs} experiment run(s) to {nxt}")
            )
        else:
            out.steps.append(
                Step(
                    name,
                    "stays",
                    runs,
                    f"{runs} experiment run(s) stay recorded under {plugin} (no other tracker "
                    "is enabled): readable again once it is; training jobs run untracked",
                )
            )
    elif capability is Capability.SERVING:
        endpoints = _count(
            session,
            select(ServingEndpoint.id).where(
                ServingEndpoint.framework.in_(_frameworks_of(runtime, plugin))
            ),
        )
        out.steps.append(
            Step(
                name,
                "stays",
                endpoints,
                f"{endpoints} endpoint(s) keep serving from their stored targets; "
                "move them with the target framework's migrate command",
            )
        )
    elif capability is Capability.REGISTRY:
        models = _count(
            session, select(RegistryModel.model_id).where(RegistryModel.provider == plugin)
        )
        out.steps.append(
            Step(name, "stays", models, f"{models} imported model(s) stay in the catalog")
        )
    elif capability is Capability.VERSIONING:
        versions = _count(
            session, select(DatasetVersion.id).where(DatasetVersion.provider == plugin)
        )
        out.steps.append(
            Step(name, "stays", versions, f"{versions} dataset version(s) stay recorded")
        )
    waiting = _waiting_writes(session, plugin, capability)
    if waiting:
        out.steps.append(
            Step(
                name,
                "waits",
                waiting,
                f"{waiting} queued write(s) wait in the retry queue until {plugin} is "
                "enabled again (discard them there if they should not)",
            )
        )


def _frameworks_of(runtime: IntegrationRuntime, plugin: str) -> list[str]:
    state = runtime.state(plugin)
    names = [b.framework().name for b in state.serving_providers()]
    return names or [plugin]


def _next_provider(runtime: IntegrationRuntime, capability: Capability, plugin: str) -> str | None:
    """The provider that serves ``capability`` once ``plugin`` is off, if one does."""
    others = [name for p, c, name, _ in runtime.iter_providers() if c is capability and p != plugin]
    return others[0] if len(others) == 1 else None  # several: the admin's choice


def apply(
    sessions: sessionmaker[Session],
    runtime: IntegrationRuntime,
    plugin: str,
    *,
    echo: Echo,
    principal: Principal = CLI,
) -> Plan:
    """Carry out :func:`plan` for ``plugin``; returns the plan carried out. The runs are
    copied first, while the plugin still answers (their full history, not only their last
    values); a run that fails to copy stays where it is and is reported."""
    with sessions() as session:
        planned = plan(session, runtime, plugin)
    for step in planned.steps:
        echo(step.line())
    if planned.runs_to is not None:
        try:
            move_runs(sessions, runtime, target=planned.runs_to, dry_run=False, echo=echo)
        except NoProviderEnabled as exc:
            echo(f"[tracking] runs not copied: {exc.detail}")
    with sessions() as session, session.begin():
        now = utcnow()
        for pipeline_id in planned.to_local:
            row = session.get(WorkflowPipeline, pipeline_id)
            if row is None or row.provider != plugin or row.external_id is not None:
                continue
            row.provider = LOCAL
            row.spec = {
                **row.spec,
                FELL_BACK: {
                    "provider": plugin,
                    "reason": f"{plugin} was rolled back (llmops rollback)",
                    "at": now.isoformat(),
                },
            }
            for operation in session.scalars(
                select(Operation).where(
                    Operation.resource_id == pipeline_id,
                    Operation.kind == SUBMIT,
                    Operation.status.in_(_WAITING),
                )
            ):
                operation.provider = LOCAL
                operation.status = OperationStatus.PENDING.value
                operation.next_attempt_at = now
                operation.attempts = 0
        for default in _defaults_of(session, plugin):
            session.delete(default)
        session.flush()
        if runtime.state(plugin).enabled:
            integrations.set_enabled(
                session=session, runtime=runtime, name=plugin, enabled=False, actor=principal.name
            )
        audit.record(
            session=session,
            action="integration.rollback",
            resource_type="integrations",
            resource_id=plugin,
            details={"steps": [s.__dict__ for s in planned.steps]},
            principal=principal,
        )
    with sessions() as session:
        runtime.sync(session)  # what was committed, as the servers will apply it
    echo(f"rolled back {plugin}: running servers apply it with their next request (2 s at most)")
    return planned
