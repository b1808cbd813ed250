"""An Argo Workflow's state as the platform's :class:`PipelineStatus`.

The workflow's phase becomes the pipeline's state; a workflow Argo was told to stop or
terminate (``spec.shutdown``) that ended failed is *cancelled*. Each stage is its DAG
task's node, named ``<workflow>.<task>``: a ``Pod`` node is one attempt, a ``Retry`` node
has one child per attempt. A task without a node has not been scheduled: pending while
the workflow runs, skipped (or cancelled) once it has ended.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import quote

from llmops.capabilities.common import utcnow
from llmops.capabilities.orchestration import (
    PipelineState,
    PipelineStatus,
    StageState,
    StageStatus,
)
from llmops_argo.workflow import ENTRYPOINT, stage_names

if TYPE_CHECKING:
    from hera.workflows.models import NodeStatus, Time
    from hera.workflows.models import Workflow as WorkflowModel

#: The pod-name format a workflow's controller used, in this annotation (v2 by default).
POD_NAME_FORMAT_ANNOTATION = "workflows.argoproj.io/pod-name-format"
_FAILED = {"Failed", "Error"}
_STAGE_STATES = {
    "Pending": StageState.PENDING,
    "Running": StageState.RUNNING,
    "Succeeded": StageState.SUCCEEDED,
    "Skipped": StageState.SKIPPED,
    "Omitted": StageState.SKIPPED,
    "Failed": StageState.FAILED,
    "Error": StageState.FAILED,
}
#: What Argo writes on the nodes it ends because the workflow is stopped or terminated.
_SHUTDOWN_WORDS = ("shutdown", "stopped with strategy", "terminated", "stopped")


def external_id(namespace: str, name: str) -> str:
    """The id the platform keeps for a workflow: its namespace and name, so a change of
    the plugin's namespace setting leaves earlier pipelines reachable."""
    return f"{namespace}/{name}"


def workflow_link(ui_base: str | None, namespace: str, name: str) -> str | None:
    return f"{ui_base}/workflows/{quote(namespace)}/{quote(name)}" if ui_base else None


def _time(value: Time | None) -> datetime | None:
    return None if value is None else value.root


def pipeline_state(workflow: WorkflowModel) -> PipelineState:
    phase = workflow.status.phase if workflow.status else None
    if phase == "Succeeded":
        return PipelineState.SUCCEEDED
    if phase in _FAILED:
        return PipelineState.CANCELLED if workflow.spec.shutdown else PipelineState.FAILED
    if phase == "Running":
        return PipelineState.RUNNING
    return PipelineState.PENDING


def tasks_of(workflow: WorkflowModel) -> dict[str, str]:
    """Each task's stage, in the spec's order: from the plugin's annotation, else (a
    workflow the plugin did not make) the entrypoint DAG's tasks under their own names."""
    found = stage_names(workflow.metadata.annotations)
    if found:
        return found
    for template in workflow.spec.templates or []:
        if template.name == ENTRYPOINT and template.dag is not None:
            return {task.name: task.name for task in template.dag.tasks}
    return {}


def task_node(workflow: WorkflowModel, task: str) -> NodeStatus | None:
    """The node of a DAG task (a Pod, or the Retry node over its attempts)."""
    nodes = (workflow.status.nodes if workflow.status else None) or {}
    name = f"{workflow.metadata.name}.{task}"
    for node in nodes.values():
        if node.name == name:
            return node
    return None


def attempts_of(workflow: WorkflowModel, node: NodeStatus) -> list[NodeStatus]:
    """The pods of a task's node, oldest first: the Retry node's children, or the node."""
    if node.type != "Retry":
        return [node]
    nodes = (workflow.status.nodes if workflow.status else None) or {}
    children = [nodes[child] for child in node.children or [] if child in nodes]
    return sorted(children, key=_attempt_number)


def _attempt_number(node: NodeStatus) -> int:
    """``<workflow>.<task>(3)`` is attempt 3."""
    name = node.name
    if name.endswith(")") and "(" in name:
        digits = name[name.rindex("(") + 1 : -1]
        if digits.isdigit():
            return int(digits)
    return 0


def _started(node: NodeStatus) -> bool:
    return node.phase not in (None, "Pending")


def _exit_code(node: NodeStatus) -> int | None:
    code = node.outputs.exit_code if node.outputs is not None else None
    try:
        return int(code) if code is not None else None
    except ValueError:
        return None


def _cancelled(node: NodeStatus, workflow: WorkflowModel) -> bool:
    message = (node.message or "").lower()
    return bool(workflow.spec.shutdown) and any(w in message for w in _SHUTDOWN_WORDS)


def stage_status(
    workflow: WorkflowModel,
    stage: str,
    task: str,
    pipeline: PipelineState,
    ui_base: str | None,
) -> StageStatus:
    node = task_node(workflow, task)
    if node is None:
        if not pipeline.terminal:
            state = StageState.PENDING
        elif pipeline is PipelineState.CANCELLED:
            state = StageState.CANCELLED
        else:
            state = StageState.SKIPPED
        return StageStatus(name=stage, state=state)
    attempts = attempts_of(workflow, node)
    started = [a for a in attempts if _started(a)]
    last = attempts[-1] if attempts else node
    state = _STAGE_STATES.get(node.phase or "Pending", StageState.PENDING)
    if state is StageState.RUNNING and not started:
        state = StageState.PENDING  # the pod is still being scheduled
    if state is StageState.FAILED and (_cancelled(node, workflow) or _cancelled(last, workflow)):
        state = StageState.CANCELLED
    terminal = state not in (StageState.PENDING, StageState.RUNNING)
    link = workflow_link(ui_base, workflow.metadata.namespace or "", workflow.metadata.name or "")
    return StageStatus(
        name=stage,
        state=state,
        attempts=len(started),
        exit_code=_exit_code(last) if started else None,
        started_at=_time(started[0].started_at) if started else None,
        finished_at=_time(node.finished_at or last.finished_at) if terminal else None,
        message=(last.message or node.message or "") if state is not StageState.SUCCEEDED else "",
        ui_url=f"{link}?nodeId={quote(node.id)}" if link else None,
    )


def pipeline_status(
    workflow: WorkflowModel, *, namespace: str, ui_base: str | None
) -> PipelineStatus:
    """The platform's view of ``workflow``, from the workflow alone (no other call)."""
    name = workflow.metadata.name or ""
    state = pipeline_state(workflow)
    status = workflow.status
    message = (status.message if status else None) or ""
    if state is PipelineState.CANCELLED:
        message = f"cancelled ({workflow.spec.shutdown}){': ' + message if message else ''}"
    return PipelineStatus(
        external_id=external_id(namespace, name),
        state=state,
        stages=[
            stage_status(workflow, stage, task, state, ui_base)
            for task, stage in tasks_of(workflow).items()
        ],
        started_at=_time(status.started_at) if status else None,
        finished_at=_time(status.finished_at) if status and state.terminal else None,
        message=message,
        ui_url=workflow_link(ui_base, namespace, name),
    )


def vanished(external: str) -> PipelineStatus:
    """A workflow that is gone from Argo (deleted, or garbage collected) before the
    platform saw it end: failed, saying so. Its stages are no longer known: the platform
    keeps the ones it recorded and closes those that had not ended."""
    return PipelineStatus(
        external_id=external,
        state=PipelineState.FAILED,
        stages=[],
        finished_at=utcnow(),  # when it was found gone: the platform records it once
        message="the workflow vanished from Argo (deleted or garbage collected) before it "
        "was seen to end",
    )


def pod_name(workflow: WorkflowModel, node: NodeStatus) -> str:
    """The pod of a Pod node, as Argo's controller names it (``GeneratePodName``)."""
    annotations = workflow.metadata.annotations or {}
    if annotations.get(POD_NAME_FORMAT_ANNOTATION) == "v1":
        return node.id
    name = workflow.metadata.name or ""
    if node.name == name:
        return name
    prefix = name if ".inline" in node.name else f"{name}-{node.template_name}"
    prefix = prefix[: 253 - 10 - 1]
    return f"{prefix}-{_fnv32a(node.name)}"


def _fnv32a(text: str) -> int:
    value = 0x811C9DC5
    for byte in text.encode():
        value ^= byte
        value = (value * 0x01000193) & 0xFFFFFFFF
    return value
