"""Argo states the double does not reach on its own, mapped as the platform needs them:
Omitted nodes, attempts still being scheduled, a workflow the plugin did not make, an
``Error`` phase, and pod names under both of Argo's naming schemes."""

from __future__ import annotations

from typing import Any

from hera.workflows.models import NodeStatus
from hera.workflows.models import Workflow as WorkflowModel

from llmops.capabilities.orchestration import PipelineState, StageState
from llmops.testing.argo import pod_name as argo_pod_name
from llmops_argo.status import pipeline_status, pod_name

WF = "wf-1"


def _node(name: str, phase: str, kind: str = "Pod", **fields: Any) -> dict[str, Any]:
    return {
        "id": f"{WF}-{abs(hash(name)) % 10**9}",
        "name": name,
        "displayName": name.rsplit(".", 1)[-1],
        "type": kind,
        "templateName": name.rsplit(".", 1)[-1].split("(")[0],
        "phase": phase,
        **fields,
    }


def _workflow(phase: str | None, nodes: list[dict[str, Any]], **metadata: Any) -> WorkflowModel:
    tasks = [{"name": t, "template": t} for t in ("a", "b")]
    return WorkflowModel.model_validate(
        {
            "metadata": {"name": WF, "namespace": "argo", **metadata},
            "spec": {
                "entrypoint": "pipeline",
                "templates": [{"name": "pipeline", "dag": {"tasks": tasks}}],
            },
            "status": {"phase": phase, "nodes": {n["id"]: n for n in nodes}} if phase else {},
        }
    )


def test_a_workflow_the_plugin_did_not_make_reads_its_stages_from_the_dag() -> None:
    status = pipeline_status(_workflow(None, []), namespace="argo", ui_base=None)

    assert status.state is PipelineState.PENDING
    assert [(s.name, s.state) for s in status.stages] == [
        ("a", StageState.PENDING),
        ("b", StageState.PENDING),
    ]
    assert status.external_id == "argo/wf-1"
    assert status.ui_url is None


def test_an_omitted_node_is_skipped_and_an_error_phase_is_a_failure() -> None:
    nodes = [
        _node(f"{WF}.a", "Error", message="pod deleted", outputs={"exitCode": "137"}),
        _node(f"{WF}.b", "Omitted", kind="Skipped"),
    ]

    status = pipeline_status(_workflow("Error", nodes), namespace="argo", ui_base="https://ui")

    assert status.state is PipelineState.FAILED
    a, b = status.stages
    assert (a.state, a.exit_code, a.message, a.attempts) == (
        StageState.FAILED,
        137,
        "pod deleted",
        1,
    )
    assert b.state is StageState.SKIPPED
    assert a.ui_url is not None
    assert a.ui_url.startswith("https://ui/workflows/argo/wf-1?nodeId=")


def test_a_retry_whose_first_pod_is_still_scheduled_is_pending_with_no_attempt() -> None:
    child = _node(f"{WF}.a(0)", "Pending")
    retry = _node(f"{WF}.a", "Running", kind="Retry", children=[child["id"]])

    status = pipeline_status(_workflow("Running", [retry, child]), namespace="argo", ui_base=None)

    a = status.stages[0]
    assert (a.state, a.attempts, a.exit_code) == (StageState.PENDING, 0, None)


def test_pod_names_follow_argos_v2_scheme_and_v1_where_the_workflow_says_so() -> None:
    node = _node(f"{WF}.a(1)", "Succeeded")
    v2 = _workflow("Succeeded", [node])
    v1 = _workflow("Succeeded", [node], annotations={"workflows.argoproj.io/pod-name-format": "v1"})

    assert pod_name(v2, _node_of(v2, node["id"])) == argo_pod_name(WF, node["name"], "a")
    assert pod_name(v1, _node_of(v1, node["id"])) == node["id"]


def _node_of(workflow: WorkflowModel, node_id: str) -> NodeStatus:
    assert workflow.status is not None
    assert workflow.status.nodes is not None
    return workflow.status.nodes[node_id]
