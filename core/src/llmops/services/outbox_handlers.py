"""Which function delivers which kind of outbox operation."""

from __future__ import annotations

from functools import partial

from sqlalchemy.orm import Session

from llmops.auth import Principal
from llmops.db.models import Operation
from llmops.integrations import IntegrationRuntime
from llmops.resilience.outbox import ON_BEHALF_OF, HandlerSpec
from llmops.services import audit, dataset_versions, experiments, pipelines, registry, serving
from llmops.services.api_keys import Role


def outbox_handlers(runtime: IntegrationRuntime) -> dict[str, HandlerSpec]:
    return {
        pipelines.SUBMIT: HandlerSpec(
            partial(pipelines.deliver_submit, runtime), pipelines.submit_dead
        ),
        pipelines.CANCEL: HandlerSpec(partial(pipelines.deliver_cancel, runtime)),
        pipelines.RETRY: HandlerSpec(partial(pipelines.deliver_retry, runtime)),
        serving.DEPLOY: HandlerSpec(partial(serving.deliver_deploy, runtime), serving.deploy_dead),
        serving.UPDATE: HandlerSpec(partial(serving.deliver_update, runtime)),
        serving.DELETE: HandlerSpec(partial(serving.deliver_delete, runtime)),
        experiments.RUN_CREATE: HandlerSpec(partial(experiments.deliver_run_create, runtime)),
        experiments.RUN_METRICS: HandlerSpec(
            partial(experiments.deliver_run_metrics, runtime), audited=False
        ),
        experiments.RUN_FINISH: HandlerSpec(partial(experiments.deliver_run_finish, runtime)),
        registry.IMPORT: HandlerSpec(
            partial(registry.deliver_import, runtime),
            partial(registry.import_dead, runtime),
            long=True,
        ),
        registry.EXPORT: HandlerSpec(
            partial(registry.deliver_export, runtime), registry.export_dead, long=True
        ),
        dataset_versions.PUSH: HandlerSpec(
            partial(dataset_versions.deliver_push, runtime), dataset_versions.push_dead
        ),
    }


def audit_tool_action(
    session: Session, operation: Operation, outcome: str, reason: str | None
) -> None:
    """The audit entry of a plugin's action on a tool, for the user who asked for it."""
    who = operation.payload.get(ON_BEHALF_OF) or {}
    role = who.get("role")
    principal = Principal(
        key_id=who.get("keyId"),
        name=str(who.get("name") or "system"),
        role=Role(role) if role else None,
    )
    details = {
        "provider": operation.provider,
        "operationId": operation.id,
        "attempts": operation.attempts,
    }
    if reason:
        details["reason"] = reason[:500]
    audit.record(
        session=session,
        action=f"{operation.provider}.{operation.kind}",
        resource_type=operation.resource_type,
        resource_id=operation.resource_id,
        outcome=audit.Outcome(outcome),
        details=details,
        principal=principal,
        request_id=who.get("requestId"),
    )
