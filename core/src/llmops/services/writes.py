"""Writes to tools: commit the domain change with its outbox operation, then try to
deliver it at once. The answer says whether it reached the tool (201) or waits in the
queue (202, degraded, with the operation to poll)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from llmops.capabilities.common import Capability
from llmops.db.models import Operation
from llmops.integrations import IntegrationRuntime
from llmops.resilience.outbox import Outbox, OutcomeKind


@dataclass(frozen=True)
class WriteResult:
    operation_id: str
    delivered: bool
    reason: str | None = None

    @property
    def degraded(self) -> bool:
        return not self.delivered


def commit_and_deliver(
    *,
    session: Session,
    outbox: Outbox,
    runtime: IntegrationRuntime,
    operation: Operation,
    has_fallback: bool = False,
) -> WriteResult:
    """Commit the caller's transaction, then deliver ``operation`` unless its tool is known
    to be down. A tool that refuses the write raises its error (the domain row records the
    failure); a tool that is away leaves the write queued. ``has_fallback``: the write's
    handler can take it elsewhere when its tool is away (a pipeline allowed to run on the
    local executor), so it is tried even while the tool's circuit is open."""
    operation_id = operation.id
    provider, capability = operation.provider, Capability(operation.capability)
    session.commit()
    paused = None if has_fallback else runtime.paused_reason(capability, provider)
    if paused is not None:
        runtime.count_fallback(capability, provider, operation.kind)
        return WriteResult(operation_id, False, f"queued: {paused}")
    outcome = outbox.deliver_now(operation_id)
    session.expire_all()
    if outcome.kind is OutcomeKind.DELIVERED:
        return WriteResult(operation_id, True)
    if outcome.kind is OutcomeKind.DEAD and outcome.error is not None:
        raise outcome.error
    runtime.count_fallback(capability, provider, operation.kind)
    reason = outcome.error.detail if outcome.error is not None else "another worker has it"
    return WriteResult(operation_id, False, f"queued for retry: {reason}")
