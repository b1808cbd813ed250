"""Training jobs and pipelines in the console: the pipeline editor and its DAG checks, runs
on the local orchestrator followed live (stage graph, logs), cancel, retry, roles."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Any

from playwright.sync_api import Locator, Page, expect

from llmops.testing.console import Console
from llmops.testing.waiting import wait_for

API = "/llm-ops/v1"
PIPELINES = f"{API}/workflows/pipelines"
#: a run on the local orchestrator takes a second or two; the page polls every 1.5 s
RUN = 30_000
PY = sys.executable


def _post(console: Console, url: str, body: dict[str, Any]) -> dict[str, Any]:
    created = console.server.api.post(url, json=body)
    created.raise_for_status()
    result: dict[str, Any] = created.json()
    return result


def _stage(page: Page, number: int) -> Locator:
    """The editor's row of stage ``number`` (1-based)."""
    return page.get_by_role("group", name=f"Stage {number}", exact=True)


def _name(row: Locator) -> Locator:
    """A stage row's name field ("Name", not the dependency boxes of unnamed stages)."""
    return row.get_by_role("textbox", name="Name", exact=True)


def _header_status(page: Page) -> Locator:
    return page.locator(".page-header [data-status]")


def _node(page: Page, name: str, state: str) -> Locator:
    return page.get_by_role("button", name=f"Stage {name}: {state}", exact=True)


def test_a_pipeline_built_in_the_form_runs_to_succeeded_with_every_stage_and_its_log(
    console: Console, unique: Callable[[str], str]
) -> None:
    name = unique("console-pipeline")
    console.sign_in("editor")
    page = console.open("/pipelines", "pipelines")
    page.locator(".page-header").get_by_role("link", name="New pipeline").click()
    console.wait_ready("pipeline-create")
    create = page.get_by_role("button", name="Create pipeline")
    expect(create).to_be_disabled()  # nothing is filled in yet
    page.get_by_label("Pipeline name").fill(name)
    first = _stage(page, 1)
    _name(first).fill("prepare")
    first.get_by_label("Command").fill("""python3 -c "print('hello from prepare')" """)
    page.get_by_role("button", name="Add stage").click()
    second = _stage(page, 2)
    _name(second).fill("train")
    second.get_by_label("Command").fill(
        """sh -c "echo training on $(cat prepared.txt 2>/dev/null || echo data)" """
    )
    second.get_by_label("prepare").check()
    page.get_by_role("button", name="Add stage").click()
    third = _stage(page, 3)
    _name(third).fill("evaluate")
    third.get_by_label("Command").fill("sh -c 'echo evaluating'")
    third.get_by_label("prepare").check()
    third.get_by_label("train").uncheck()
    third.get_by_label("Retries").fill("1")

    preview = page.get_by_role("complementary", name="Preview")
    for stage in ("prepare", "train", "evaluate"):
        expect(preview.get_by_role("button", name=f"Stage {stage}", exact=True)).to_be_visible()
    expect(page.get_by_role("alert")).to_have_count(0)
    console.screenshot("workflows-pipeline-create")
    expect(create).to_be_enabled()
    create.click()

    console.wait_ready("pipeline")
    expect(page.get_by_role("heading", level=1)).to_have_text(name)
    expect(_header_status(page)).to_have_attribute("data-status", "succeeded", timeout=RUN)
    for stage in ("prepare", "train", "evaluate"):
        expect(_node(page, stage, "succeeded")).to_be_visible()
    rows = page.locator("table.stage-table tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.filter(has_text="evaluate").locator("[data-status]")).to_have_attribute(
        "data-status", "succeeded"
    )

    _node(page, "prepare", "succeeded").click()
    expect(page.get_by_label("Log of stage prepare")).to_contain_text("hello from prepare")
    _node(page, "train", "succeeded").click()
    expect(page.get_by_label("Log of stage train")).to_contain_text("training on data")
    console.screenshot("workflows-pipeline-detail")

    pipeline_id = page.url.rsplit("/", 1)[-1]
    stored = console.server.api.get(f"{PIPELINES}/{pipeline_id}").json()
    assert [(s["name"], s["dependsOn"]) for s in stored["spec"]["stages"]] == [
        ("prepare", []),
        ("train", ["prepare"]),
        ("evaluate", ["prepare"]),
    ]
    assert stored["spec"]["stages"][2]["retries"] == 1
    assert stored["spec"]["stages"][0]["command"] == [
        "python3",
        "-c",
        "print('hello from prepare')",
    ]

    page.get_by_role("link", name="← Pipelines").click()
    console.wait_ready("pipelines")
    page.get_by_label("Status").select_option("succeeded")
    expect(page).to_have_url(re.compile(r"/pipelines\?status=succeeded$"))
    row = page.locator("table.data tbody tr", has=page.get_by_role("link", name=name))
    expect(row).to_have_count(1)
    expect(row.locator("[data-status]")).to_have_attribute("data-status", "succeeded")
    expect(row).to_contain_text("3/3")
    console.screenshot("workflows-pipelines-list")


def test_the_editor_shows_cycles_duplicates_and_unknown_stages_inline_and_blocks_submit(
    console: Console, unique: Callable[[str], str]
) -> None:
    console.sign_in("editor")
    page = console.open("/pipelines/new", "pipeline-create")
    create = page.get_by_role("button", name="Create pipeline")
    page.get_by_label("Pipeline name").fill(unique("console-invalid"))
    first = _stage(page, 1)
    _name(first).fill("a")
    first.get_by_label("Command").fill("true")
    page.get_by_role("button", name="Add stage").click()
    second = _stage(page, 2)
    _name(second).fill("b")
    second.get_by_label("Command").fill("true")
    second.get_by_label("a", exact=True).check()
    expect(create).to_be_enabled()

    # a cycle: a depends on b, which depends on a
    first.get_by_label("b", exact=True).check()
    for row in (first, second):
        expect(row.get_by_role("alert")).to_contain_text("Dependency cycle")
    expect(first.get_by_role("alert")).to_have_text("Dependency cycle: a → b → a.")
    expect(create).to_be_disabled()
    expect(page.get_by_test_id("submit-blockers")).to_contain_text("Dependency cycle")
    console.screenshot("workflows-pipeline-create-cycle")
    first.get_by_label("b", exact=True).uncheck()
    expect(page.get_by_role("alert")).to_have_count(0)
    expect(create).to_be_enabled()

    # a duplicate name: both stages say so, under their name
    _name(second).fill("a")
    for row in (first, second):
        expect(row.get_by_role("alert")).to_have_text(
            "Another stage is also named “a”; names must be unique."
        )
        expect(_name(row)).to_have_attribute("aria-invalid", "true")
    expect(create).to_be_disabled()
    _name(second).fill("b")
    expect(create).to_be_enabled()

    # an unknown dependency, typed in the YAML: its line is named, then the form shows it
    page.get_by_role("button", name="YAML").click()
    text = page.get_by_label("Pipeline (YAML or JSON)")
    expect(text).to_have_value(re.compile(r"dependsOn: \[a\]"))
    text.fill(text.input_value().replace("dependsOn: [a]", "dependsOn: [a, ghost]"))
    problems = page.locator("#pipeline-text-problems")
    expect(problems).to_contain_text("Line 7")
    expect(problems).to_contain_text("“ghost”, which is not a stage")
    expect(create).to_be_disabled()
    console.screenshot("workflows-pipeline-create-yaml")
    page.get_by_role("button", name="Form").click()
    second = _stage(page, 2)
    expect(second.get_by_role("alert")).to_contain_text("“ghost”, which is not a stage")
    expect(_stage(page, 1).get_by_role("alert")).to_have_count(0)
    expect(create).to_be_disabled()
    second.get_by_label("ghost (not a stage)").uncheck()
    expect(create).to_be_enabled()

    # a YAML syntax error names its line, and the form refuses to take a broken document
    page.get_by_role("button", name="YAML").click()
    text.fill("name: x\nstages:\n  - name: a\n    command: [sh, -c\n")
    expect(problems).to_contain_text("Line 5")
    expect(text).to_have_attribute("aria-invalid", "true")
    page.get_by_role("button", name="Form").click()
    refused = page.get_by_role("alert").filter(has_text="Fix the errors in the text first")
    expect(refused).to_be_visible()
    expect(text).to_be_visible()


def test_a_refusal_by_the_platform_is_shown_next_to_the_stage_it_names(
    console: Console, unique: Callable[[str], str]
) -> None:
    console.sign_in("editor")
    page = console.open("/pipelines/new", "pipeline-create")
    console.expect_console_error("status of 422")
    console.answer_api(
        re.compile(rf"{PIPELINES}$"),
        {
            "type": "https://llmops.dev/problems/validation-error",
            "title": "Invalid request",
            "status": 422,
            "detail": "body.stages.1.command: the tool refuses this command",
            "errors": [
                {
                    "location": ["body", "stages", "1", "command"],
                    "message": "the tool refuses this command",
                    "type": "value_error",
                }
            ],
        },
        status=422,
    )
    page.get_by_label("Pipeline name").fill(unique("console-refused"))
    _name(_stage(page, 1)).fill("a")
    _stage(page, 1).get_by_label("Command").fill("true")
    page.get_by_role("button", name="Add stage").click()
    _name(_stage(page, 2)).fill("b")
    _stage(page, 2).get_by_label("Command").fill("rm -rf /nothing")
    page.get_by_role("button", name="Create pipeline").click()

    expect(_stage(page, 2).get_by_role("alert")).to_have_text("the tool refuses this command")
    expect(_stage(page, 1).get_by_role("alert")).to_have_count(0)
    expect(page).to_have_url(re.compile(r"/pipelines/new$"))
    _stage(page, 2).get_by_label("Command").fill("true")
    expect(_stage(page, 2).get_by_role("alert")).to_have_count(0)


def test_a_training_job_submitted_through_the_form_runs_and_shows_its_stages_and_log(
    console: Console, unique: Callable[[str], str]
) -> None:
    model = _post(console, f"{API}/catalog/models", {"name": unique("console-job-model")})
    dataset = _post(console, f"{API}/catalog/datasets", {"name": unique("console-job-data")})
    name = unique("console-job")
    console.sign_in("editor")
    page = console.open("/training", "training-jobs")
    page.locator(".page-header").get_by_role("link", name="Submit job").click()
    console.wait_ready("training-job-submit")
    page.get_by_role("textbox", name="Name", exact=True).fill(name)
    page.get_by_label("Model").select_option(model["id"])
    page.get_by_label("Dataset").select_option(dataset["id"])
    page.get_by_label("Command").fill(
        f"""{PY} -c "import os; print('hp=' + os.environ['LLMOPS_HYPERPARAMETERS'])" """
    )
    expect(page.get_by_test_id("argv").locator("code")).to_have_count(3)
    page.get_by_label("Hyperparameter 1 name").fill("learning_rate")
    page.get_by_label("Hyperparameter 1 value").fill("0.001")
    page.get_by_role("button", name="Add hyperparameter").click()
    page.get_by_label("Hyperparameter 2 name").fill("optimizer")
    page.get_by_label("Hyperparameter 2 value").fill("adamw")
    page.get_by_role("button", name="Add variable").click()
    page.get_by_label("Variable 1 name").fill("GREETING")
    page.get_by_label("Variable 1 value").fill("hi")
    page.get_by_label("Timeout (s)").fill("120")
    # the default orchestrator is the local executor: there is nothing to fall back from
    expect(page.get_by_test_id("fallback")).to_have_count(0)
    console.screenshot("training-job-submit")
    page.get_by_role("button", name="Submit job").click()

    console.wait_ready("training-job")
    expect(page.get_by_role("heading", level=1)).to_have_text(name)
    expect(_header_status(page)).to_have_attribute("data-status", "succeeded", timeout=RUN)
    expect(_node(page, "train", "succeeded")).to_be_visible()
    expect(page.get_by_label("Log of stage train")).to_contain_text(
        'hp={"learning_rate": 0.001, "optimizer": "adamw"}'
    )
    expect(page.get_by_role("link", name=model["name"])).to_be_visible()
    expect(page.get_by_role("link", name=dataset["name"])).to_be_visible()
    expect(page.locator("table.data").filter(has_text="learning_rate")).to_contain_text("0.001")
    console.screenshot("training-job-detail")

    job_id = page.url.rsplit("/", 1)[-1]
    job = console.server.api.get(f"{API}/training/jobs/{job_id}").json()
    assert job["hyperparameters"] == {"learning_rate": 0.001, "optimizer": "adamw"}
    assert (job["modelId"], job["datasetId"]) == (model["id"], dataset["id"])

    page.get_by_role("link", name="← Training jobs").click()
    console.wait_ready("training-jobs")
    page.get_by_label("Model").select_option(model["id"])
    expect(page).to_have_url(re.compile(rf"modelId={model['id']}"))
    rows = page.locator("table.data tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first.get_by_role("link", name=name)).to_be_visible()
    expect(rows.first.locator("[data-status]")).to_have_attribute("data-status", "succeeded")
    page.get_by_label("Model").select_option("")
    expect(page.locator("table.data tbody tr").first).to_be_visible()
    console.screenshot("training-jobs-list")


def test_cancelling_a_running_pipeline_stops_it_as_cancelled(
    console: Console, unique: Callable[[str], str]
) -> None:
    pipeline = _post(
        console,
        PIPELINES,
        {
            "name": unique("console-sleepy"),
            "stages": [
                # deaf to SIGTERM: it ends with the SIGKILL a grace period later, so the
                # page shows "cancelling" meanwhile
                {"name": "wait", "command": ["sh", "-c", "trap '' TERM; echo waiting; sleep 60"]},
                {"name": "after", "command": ["true"], "dependsOn": ["wait"]},
            ],
        },
    )
    console.sign_in("editor")
    page = console.open(f"/pipelines/{pipeline['id']}", "pipeline")
    expect(_node(page, "wait", "running")).to_be_visible(timeout=RUN)
    expect(page.get_by_label("Log of stage wait")).to_contain_text("waiting", timeout=RUN)
    expect(page.get_by_role("button", name="Retry")).to_have_count(0)
    console.screenshot("workflows-pipeline-running")

    page.get_by_role("button", name="Cancel run").click()
    page.get_by_role("group", name="Stop every running stage?").get_by_role(
        "button", name="Cancel run"
    ).click()

    expect(_header_status(page)).to_have_attribute("data-status", "cancelling")
    expect(page.get_by_role("button", name="Cancel run")).to_have_count(0)
    expect(_header_status(page)).to_have_attribute("data-status", "cancelled", timeout=RUN)
    expect(_node(page, "wait", "cancelled")).to_be_visible()
    expect(page.get_by_role("button", name="Cancel run")).to_have_count(0)
    expect(page.get_by_role("button", name="Retry")).to_be_visible()
    assert console.server.api.get(f"{PIPELINES}/{pipeline['id']}").json()["status"] == "cancelled"


def test_retrying_a_failed_pipeline_runs_the_failed_stage_again(
    console: Console, unique: Callable[[str], str]
) -> None:
    # fails the first time (leaving a marker in the run's work folder), succeeds the next
    flaky = "if [ -f tried ]; then echo second try; else touch tried; echo first try; exit 3; fi"
    pipeline = _post(
        console,
        PIPELINES,
        {
            "name": unique("console-flaky"),
            "stages": [
                {"name": "ok", "command": ["true"]},
                {"name": "flaky", "command": ["sh", "-c", flaky], "dependsOn": ["ok"]},
            ],
        },
    )
    api = console.server.api
    wait_for(
        lambda: api.get(f"{PIPELINES}/{pipeline['id']}").json()["status"] == "failed",
        timeout=30,
        what="the pipeline to fail",
    )
    console.sign_in("editor")
    page = console.open(f"/pipelines/{pipeline['id']}", "pipeline")
    expect(_header_status(page)).to_have_attribute("data-status", "failed")
    expect(_node(page, "flaky", "failed")).to_be_visible()
    expect(_node(page, "ok", "succeeded")).to_be_visible()
    row = page.locator("table.stage-table tbody tr", has_text="flaky")
    expect(row.locator("td").nth(3)).to_have_text("3")  # the exit code
    # the failed stage's log is the one shown
    expect(page.get_by_label("Log of stage flaky")).to_contain_text("first try")

    page.get_by_role("button", name="Retry").click()

    expect(_header_status(page)).to_have_attribute("data-status", "succeeded", timeout=RUN)
    expect(_node(page, "flaky", "succeeded")).to_be_visible()
    expect(page.get_by_label("Log of stage flaky")).to_contain_text("second try", timeout=RUN)
    expect(page.get_by_role("button", name="Retry")).to_have_count(0)


def test_a_viewer_follows_pipelines_and_jobs_without_any_mutating_action(
    console: Console, unique: Callable[[str], str]
) -> None:
    pipeline = _post(
        console,
        PIPELINES,
        {"name": unique("console-viewed"), "stages": [{"name": "boom", "command": ["false"]}]},
    )
    job = _post(
        console,
        f"{API}/training/jobs",
        {"name": unique("console-viewed-job"), "command": ["sh", "-c", "sleep 60"]},
    )
    api = console.server.api
    wait_for(
        lambda: api.get(f"{PIPELINES}/{pipeline['id']}").json()["status"] == "failed",
        timeout=30,
        what="the pipeline to fail",
    )
    try:
        console.sign_in("viewer")
        page = console.open("/pipelines", "pipelines")
        expect(page.get_by_role("link", name="New pipeline")).to_have_count(0)
        page = console.open(f"/pipelines/{pipeline['id']}", "pipeline")
        expect(_node(page, "boom", "failed")).to_be_visible()
        for action in ("Retry", "Delete", "Cancel run"):
            expect(page.get_by_role("button", name=action)).to_have_count(0)

        page = console.open("/training", "training-jobs")
        expect(page.get_by_role("link", name="Submit job")).to_have_count(0)
        page = console.open(f"/training/{job['id']}", "training-job")
        expect(_node(page, "train", "running")).to_be_visible(timeout=RUN)
        expect(page.get_by_role("button", name="Cancel job")).to_have_count(0)
    finally:
        api.post(f"{API}/training/jobs/{job['id']}/cancel").raise_for_status()
