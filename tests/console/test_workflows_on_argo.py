"""Pipelines and training jobs in the console with the real Argo plugin, against the Argo
Server double (llmops.testing.argo): the editor submits a DAG to Argo, the pipeline page
follows its nodes to Succeeded in dependency order, shows each node's log and links the
workflow and its nodes to the Argo UI; a failed node is retried on Argo, cancel stops a
running workflow, and a job whose user allowed it runs on the local executor while the
Argo Server is down."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from llmops.testing.argo import ArgoServerDouble
from llmops.testing.console import (
    Console,
    ConsoleNotBuilt,
    ConsoleServer,
    console_tab,
    running_platform,
)

API = "/llm-ops/v1"
PIPELINES = f"{API}/workflows/pipelines"
TOKEN = "console-argo-token"
NAMESPACE = "argo"
#: where the console's links point: never opened, only checked
ARGO_UI = "https://argo.example.test/ui"
#: a run on the double takes a second or two; the page polls every 1.5 s
RUN = 20_000

#: records, in the page, every distinct set of node states the stage graph shows
WATCH_GRAPH = """() => {
  const graph = document.querySelector('[data-testid="stage-graph"]');
  const seen = [];
  const snap = () => {
    const states = {};
    for (const node of graph.querySelectorAll("[data-stage]")) {
      states[node.dataset.stage] = node.dataset.state ?? null;
    }
    if (JSON.stringify(states) !== JSON.stringify(seen[seen.length - 1])) seen.push(states);
  };
  snap();
  new MutationObserver(snap).observe(graph, {
    subtree: true, childList: true, attributes: true, attributeFilter: ["data-state"],
  });
  window.__graphStates = seen;
}"""


@dataclass(frozen=True)
class ArgoPlatform:
    server: ConsoleServer
    argo: ArgoServerDouble


@pytest.fixture(scope="module")
def argo_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArgoPlatform]:
    with ArgoServerDouble(
        token=TOKEN, namespace=NAMESPACE, work_dir=tmp_path_factory.mktemp("argo-console-pods")
    ) as argo:
        env = {
            "LLMOPS_PLUGINS": "argo",
            "LLMOPS_ARGO__SERVER_URL": argo.url,
            "LLMOPS_ARGO__TOKEN": TOKEN,
            "LLMOPS_ARGO__NAMESPACE": NAMESPACE,
            "LLMOPS_ARGO__UI_URL": ARGO_UI,
            # a training job's token reaches its pods through a Secret
            "LLMOPS_ARGO__KUBERNETES_API_URL": argo.kubernetes_url,
            "LLMOPS_ARGO__KUBERNETES_TOKEN": TOKEN,
            "LLMOPS_ARGO__CANCEL_GRACE_SECONDS": "0.3",
            "LLMOPS_ARGO__REQUEST_TIMEOUT_SECONDS": "2",
            "LLMOPS_SYNC_INTERVAL_SECONDS": "0.2",
        }
        try:
            with running_platform(env=env) as server:
                yield ArgoPlatform(server, argo)
        except ConsoleNotBuilt as exc:
            pytest.fail(str(exc))
        argo.check_errors()


@pytest.fixture
def tab(
    argo_platform: ArgoPlatform, browser: Browser, request: pytest.FixtureRequest
) -> Iterator[Console]:
    with console_tab(argo_platform.server, browser, request) as console:
        yield console


def _stage(page: Page, number: int) -> Locator:
    """The editor's row of stage ``number`` (1-based)."""
    return page.get_by_role("group", name=f"Stage {number}", exact=True)


def _name(row: Locator) -> Locator:
    return row.get_by_role("textbox", name="Name", exact=True)


def _node(page: Page, name: str, state: str) -> Locator:
    return page.get_by_role("button", name=f"Stage {name}: {state}", exact=True)


def _header_status(page: Page) -> Locator:
    return page.locator(".page-header [data-status]")


def _post(server: ConsoleServer, url: str, body: dict[str, Any]) -> dict[str, Any]:
    created = server.api.post(url, json=body)
    assert created.status_code in (201, 202), created.text
    result: dict[str, Any] = created.json()
    return result


def _workflow_name(server: ConsoleServer, pipeline_id: str) -> str:
    external: str = server.api.get(f"{PIPELINES}/{pipeline_id}").json()["externalId"]
    return external.split("/", 1)[1]


def _node_link(argo: ArgoServerDouble, workflow: str, stage: str) -> str:
    """The Argo UI's page of a stage's node, from the node id the double gave it."""
    stored = argo.workflow(workflow)
    assert stored is not None, f"no workflow {workflow} on Argo"
    [node] = [n for n in stored["status"]["nodes"].values() if n["name"] == f"{workflow}.{stage}"]
    return f"{ARGO_UI}/workflows/{NAMESPACE}/{workflow}?nodeId={node['id']}"


def test_a_dag_created_for_argo_runs_in_dependency_order_with_node_logs_and_argo_ui_links(
    tab: Console, argo_platform: ArgoPlatform, unique: Callable[[str], str], tmp_path: Path
) -> None:
    argo = argo_platform.argo
    gates = tmp_path / "gates"  # each stage's pod runs until the test opens its gate
    gates.mkdir()
    name = unique("console-argo-dag")
    tab.sign_in("editor")
    page = tab.open("/pipelines/new", "pipeline-create")
    page.get_by_label("Pipeline name").fill(name)
    page.get_by_label("Orchestrator").select_option("argo")
    # Argo is not the local executor: falling back to it is offered, and left off
    expect(page.get_by_test_id("fallback")).to_contain_text(
        "Run on the local executor if argo is unavailable"
    )
    expect(page.get_by_test_id("fallback").get_by_role("checkbox")).not_to_be_checked()
    depends = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}
    for number, (stage, after) in enumerate(depends.items(), start=1):
        if number > 1:
            page.get_by_role("button", name="Add stage").click()
        row = _stage(page, number)
        _name(row).fill(stage)
        row.get_by_label("Command").fill(
            f'sh -c "echo from-{stage}; until [ -e {gates / stage} ]; do sleep 0.05; done"'
        )
        # a new row depends on the row above it; make it depend on its own stages
        for other in list(depends)[: number - 1]:
            row.get_by_label(other, exact=True).set_checked(other in after)
    expect(page.get_by_role("alert")).to_have_count(0)
    page.get_by_role("button", name="Create pipeline").click()

    tab.wait_ready("pipeline")
    expect(page.locator('[data-testid="stage-graph"] [data-stage]')).to_have_count(4)
    page.evaluate(WATCH_GRAPH)

    def shows(**states: str) -> None:
        for stage, state in states.items():
            expect(_node(page, stage, state)).to_be_visible(timeout=RUN)

    shows(a="running", b="pending", c="pending", d="pending")
    (gates / "a").touch()
    shows(a="succeeded", b="running", c="running", d="pending")
    (gates / "b").touch()
    shows(b="succeeded", c="running", d="pending")
    (gates / "c").touch()
    shows(c="succeeded", d="running")
    (gates / "d").touch()
    expect(_header_status(page)).to_have_attribute("data-status", "succeeded", timeout=RUN)
    shows(a="succeeded", b="succeeded", c="succeeded", d="succeeded")
    # and between those checks: no node ran before the nodes it depends on succeeded
    seen: list[dict[str, str | None]] = page.evaluate("() => window.__graphStates")
    for states in seen:
        for stage, after in depends.items():
            if states[stage] in ("running", "succeeded"):
                assert all(states[d] == "succeeded" for d in after), (stage, states)
    tab.screenshot("workflows-argo-pipeline-detail")

    # each node's log is its command's output, as Argo's log route streams it
    for stage in depends:
        _node(page, stage, "succeeded").click()
        expect(page.get_by_label(f"Log of stage {stage}")).to_contain_text(f"from-{stage}")

    # links to the Argo UI: the workflow, and each node
    pipeline_id = page.url.rsplit("/", 1)[-1]
    workflow = _workflow_name(argo_platform.server, pipeline_id)
    expect(page.locator("dl.details").get_by_role("link", name="Open in argo ↗")).to_have_attribute(
        "href", f"{ARGO_UI}/workflows/{NAMESPACE}/{workflow}"
    )
    for stage in depends:
        link = page.locator(f'table.stage-table tr[data-stage="{stage}"]').get_by_role("link")
        expect(link).to_have_text("Open in argo ↗")
        expect(link).to_have_attribute("href", _node_link(argo, workflow, stage))
        expect(link).to_have_attribute("target", "_blank")
    stored = argo.workflow(workflow)
    assert stored is not None
    assert stored["metadata"]["annotations"]["llmops.dev/idempotency-key"] == (
        f"pipeline-{pipeline_id}"
    )


def test_a_failed_node_shows_argos_message_and_retry_reruns_it_on_the_same_workflow(
    tab: Console, argo_platform: ArgoPlatform, unique: Callable[[str], str]
) -> None:
    argo, server = argo_platform.argo, argo_platform.server
    argo.fail_task("flaky-node", times=1, exit_code=3)
    pipeline = _post(
        server,
        PIPELINES,
        {
            "name": unique("console-argo-flaky"),
            "provider": "argo",
            "stages": [
                {"name": "first", "command": ["sh", "-c", "echo first"]},
                {
                    "name": "flaky-node",
                    "command": ["sh", "-c", "echo flaky ran"],
                    "dependsOn": ["first"],
                },
            ],
        },
    )
    tab.sign_in("editor")
    page = tab.open(f"/pipelines/{pipeline['id']}", "pipeline")
    expect(_header_status(page)).to_have_attribute("data-status", "failed", timeout=RUN)
    expect(_node(page, "flaky-node", "failed")).to_be_visible()
    expect(_node(page, "first", "succeeded")).to_be_visible()
    row = page.locator('table.stage-table tr[data-stage="flaky-node"]')
    expect(row.locator("[data-status]")).to_have_attribute("data-status", "failed")
    expect(row.locator("td").nth(3)).to_have_text("3")  # the exit code
    expect(row.locator("td").nth(6)).to_contain_text("Error (exit code 3)")
    tab.screenshot("workflows-argo-pipeline-failed")
    workflow = _workflow_name(server, pipeline["id"])

    page.get_by_role("button", name="Retry").click()

    expect(_header_status(page)).to_have_attribute("data-status", "succeeded", timeout=RUN)
    expect(_node(page, "flaky-node", "succeeded")).to_be_visible()
    expect(page.get_by_label("Log of stage flaky-node")).to_contain_text("flaky ran")
    expect(page.get_by_role("button", name="Retry")).to_have_count(0)
    # Argo's retry of the same workflow, not a second one
    assert ("PUT", f"/api/v1/workflows/{NAMESPACE}/{workflow}/retry") in argo.requests
    assert _workflow_name(server, pipeline["id"]) == workflow


def test_cancel_from_the_console_stops_the_running_workflow_on_argo(
    tab: Console, argo_platform: ArgoPlatform, unique: Callable[[str], str]
) -> None:
    argo, server = argo_platform.argo, argo_platform.server
    pipeline = _post(
        server,
        PIPELINES,
        {
            "name": unique("console-argo-long"),
            "provider": "argo",
            "stages": [
                {"name": "long", "command": ["sh", "-c", "echo waiting; sleep 60"]},
                {"name": "after", "command": ["true"], "dependsOn": ["long"]},
            ],
        },
    )
    tab.sign_in("editor")
    page = tab.open(f"/pipelines/{pipeline['id']}", "pipeline")
    expect(_node(page, "long", "running")).to_be_visible(timeout=RUN)
    expect(page.get_by_label("Log of stage long")).to_contain_text("waiting", timeout=RUN)

    page.get_by_role("button", name="Cancel run").click()
    page.get_by_role("group", name="Stop every running stage?").get_by_role(
        "button", name="Cancel run"
    ).click()

    expect(_header_status(page)).to_have_attribute("data-status", "cancelled", timeout=RUN)
    expect(_node(page, "long", "cancelled")).to_be_visible()
    expect(page.get_by_role("button", name="Cancel run")).to_have_count(0)
    stored = argo.workflow(_workflow_name(server, pipeline["id"]))
    assert stored is not None
    assert stored["spec"]["shutdown"] in {"Stop", "Terminate"}
    assert stored["status"]["phase"] in {"Failed", "Error"}


def test_a_training_job_allowed_to_fall_back_runs_on_the_local_executor_while_argo_is_down(
    tab: Console, argo_platform: ArgoPlatform, unique: Callable[[str], str]
) -> None:
    argo, server = argo_platform.argo, argo_platform.server
    name = unique("console-argo-job")
    tab.sign_in("editor")
    page = tab.open("/training/new", "training-job-submit")
    page.get_by_role("textbox", name="Name", exact=True).fill(name)
    page.get_by_label("Command").fill("""sh -c "echo trained here" """)
    fallback = page.get_by_test_id("fallback")
    page.get_by_label("Orchestrator").select_option("local")
    expect(fallback).to_have_count(0)  # the local executor has nothing to fall back from
    page.get_by_label("Orchestrator").select_option("argo")
    expect(fallback).to_contain_text("Run on the local executor if argo is unavailable")
    fallback.get_by_role("checkbox").check()
    tab.screenshot("training-job-submit-fallback")
    argo.down()
    try:
        page.get_by_role("button", name="Submit job").click()
        tab.wait_ready("training-job")
        expect(page.get_by_role("status").filter(has_text=name)).to_contain_text(
            "started on the local executor: argo was unavailable"
        )
    finally:
        argo.up()
    expect(_header_status(page)).to_have_attribute("data-status", "succeeded", timeout=RUN)
    expect(page.get_by_label("Log of stage train")).to_contain_text("trained here")

    job = server.api.get(f"{API}/training/jobs/{page.url.rsplit('/', 1)[-1]}").json()
    assert job["fellBackFrom"] == "argo"
    stored = server.api.get(f"{PIPELINES}/{job['pipelineId']}").json()
    assert (stored["provider"], stored["spec"]["fallback"]) == ("local", "local")
    key = f"pipeline-{job['pipelineId']}"
    assert all(
        w["metadata"].get("annotations", {}).get("llmops.dev/idempotency-key") != key
        for w in argo.workflows()
    ), "the job reached Argo too"
