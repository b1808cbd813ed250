"""Every page of the console: it becomes interactive (timed, for the report), it is
captured in a screenshot, and it has its loading, empty and error states; every list pages
on with "Load more", offers to clear filters that leave nothing, and keeps its rows when a
refresh or the next page fails."""

from __future__ import annotations

import json
import re
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Route, expect

from llmops.testing.console import Console, ConsoleServer
from llmops.testing.waiting import wait_for

API = "/llm-ops/v1"


@dataclass(frozen=True)
class Seeded:
    model: str
    dataset: str
    pipeline: str
    job: str


@pytest.fixture(scope="module")
def seeded(console_server: ConsoleServer) -> Seeded:
    """One of everything, made through the API, for the detail pages."""
    api = console_server.api
    suffix = uuid.uuid4().hex[:6]
    model = api.post(
        f"{API}/catalog/models",
        json={"name": f"tour-model-{suffix}", "task": "text-generation", "tags": ["tour"]},
    )
    model.raise_for_status()
    dataset = api.post(f"{API}/catalog/datasets", json={"name": f"tour-data-{suffix}"})
    dataset.raise_for_status()
    api.post(
        f"{API}/catalog/datasets/{dataset.json()['id']}/files",
        files={"file": ("train.txt", b"hello world\n" * 20, "text/plain")},
    ).raise_for_status()
    hello = [sys.executable, "-c", "print('hello from a stage')"]
    pipeline = api.post(
        f"{API}/workflows/pipelines",
        json={
            "name": f"tour-pipeline-{suffix}",
            "stages": [
                {"name": "prepare", "command": hello},
                {"name": "train", "command": hello, "dependsOn": ["prepare"]},
            ],
        },
    )
    pipeline.raise_for_status()
    job = api.post(
        f"{API}/training/jobs",
        json={"name": f"tour-job-{suffix}", "modelId": model.json()["id"], "command": hello},
    )
    job.raise_for_status()
    for path in (
        f"workflows/pipelines/{pipeline.json()['id']}",
        f"training/jobs/{job.json()['id']}",
    ):
        wait_for(
            lambda path=path: api.get(f"{API}/{path}").json()["status"] == "succeeded",
            timeout=60,
            what=f"{path} to succeed",
        )
    return Seeded(
        model=model.json()["id"],
        dataset=dataset.json()["id"],
        pipeline=pipeline.json()["id"],
        job=job.json()["id"],
    )


#: (ready name, path); {model} etc. are filled from the seeded objects
PAGES = [
    ("overview", "/overview"),
    ("models", "/models"),
    ("model", "/models/{model}"),
    ("model-create", "/models/new"),
    ("datasets", "/datasets"),
    ("dataset", "/datasets/{dataset}"),
    ("dataset-create", "/datasets/new"),
    ("training-jobs", "/training"),
    ("training-job", "/training/{job}"),
    ("training-job-submit", "/training/new"),
    ("pipelines", "/pipelines"),
    ("pipeline", "/pipelines/{pipeline}"),
    ("pipeline-create", "/pipelines/new"),
    ("integrations", "/admin/integrations"),
    ("integration", "/admin/integrations/local"),
    ("operations", "/admin/operations"),
    ("audit-logs", "/admin/audit-logs"),
    ("api-keys", "/admin/api-keys"),
    ("governance-policies", "/governance/policies"),
    ("governance-costs", "/governance/costs"),
]

#: pages that load something, with the API call whose answer the page is made of
LOADED: list[tuple[str, str, str]] = [
    ("overview", "/overview", rf"{API}/observability/overview$"),
    ("models", "/models", rf"{API}/catalog/models(\?|$)"),
    ("model", "/models/{model}", rf"{API}/catalog/models/[^/?]+$"),
    ("datasets", "/datasets", rf"{API}/catalog/datasets(\?|$)"),
    ("dataset", "/datasets/{dataset}", rf"{API}/catalog/datasets/[^/?]+$"),
    ("training-jobs", "/training", rf"{API}/training/jobs(\?|$)"),
    ("training-job", "/training/{job}", rf"{API}/training/jobs/[^/?]+$"),
    ("pipelines", "/pipelines", rf"{API}/workflows/pipelines(\?|$)"),
    ("pipeline", "/pipelines/{pipeline}", rf"{API}/workflows/pipelines/[^/?]+$"),
    ("integrations", "/admin/integrations", rf"{API}/integrations(\?|$)"),
    ("integration", "/admin/integrations/local", rf"{API}/integrations/local$"),
    ("operations", "/admin/operations", rf"{API}/operations(\?|$)"),
    ("audit-logs", "/admin/audit-logs", rf"{API}/governance/audit-logs(\?|$)"),
    ("api-keys", "/admin/api-keys", rf"{API}/api-keys(\?|$)"),
]
LISTS = [
    entry for entry in LOADED if "{" not in entry[1] and entry[0] not in {"integration", "overview"}
]

#: the keyset-paginated lists (one list component): (ready name, path, call, API resource)
PAGED: list[tuple[str, str, str, str]] = [
    (ready, path, call, call.removeprefix(f"{API}/").removesuffix(r"(\?|$)"))
    for ready, path, call in LISTS
    if ready != "integrations"
]


def _matcher(pattern: str) -> Callable[[str], bool]:
    compiled = re.compile(pattern)
    return lambda url: compiled.search(url.split("#", 1)[0]) is not None


def _path(template: str, seeded: Seeded) -> str:
    return template.format(**vars(seeded))


@pytest.mark.parametrize(("ready", "template"), PAGES, ids=[p[0] for p in PAGES])
def test_every_page_becomes_interactive(
    console: Console, seeded: Seeded, ready: str, template: str
) -> None:
    console.sign_in("admin")
    path = _path(template, seeded)

    for _ in range(3):  # timed three times from a full load; the report takes the median
        page = console.open(path, ready)

    expect(page.locator("h1")).to_be_visible()
    expect(page.get_by_role("alert")).to_have_count(0)
    console.screenshot(f"page-{ready}")


@pytest.mark.parametrize(("ready", "template", "call"), LOADED, ids=[p[0] for p in LOADED])
def test_every_page_says_when_it_cannot_load(
    console: Console, seeded: Seeded, ready: str, template: str, call: str
) -> None:
    console.sign_in("admin")
    console.fail_api(_matcher(call), status=503)

    page = console.open(_path(template, seeded), ready, timed=False)

    error = page.get_by_role("alert").filter(has_text="the test made this call fail")
    expect(error.first).to_be_visible()
    expect(page.get_by_role("button", name="Try again").first).to_be_visible()
    console.screenshot(f"error-{ready}")


@pytest.mark.parametrize(("ready", "template", "call"), LOADED, ids=[p[0] for p in LOADED])
def test_every_page_shows_that_it_is_loading(
    console: Console, seeded: Seeded, ready: str, template: str, call: str
) -> None:
    console.sign_in("admin")
    held = console.hold_api(_matcher(call))

    console.page.goto(console.server.url + _path(template, seeded))

    loading = console.page.get_by_role("status").filter(has_text="Loading")
    expect(loading.first).to_be_visible()
    console.wait_until_held(held)
    for route in held:
        route.continue_()
    console.wait_ready(ready)
    console.page.unroute_all(behavior="ignoreErrors")
    expect(loading).to_have_count(0)


@pytest.mark.parametrize(("ready", "template", "call"), LISTS, ids=[p[0] for p in LISTS])
def test_every_list_has_an_empty_state(
    console: Console, ready: str, template: str, call: str
) -> None:
    console.sign_in("admin")
    console.answer_api(_matcher(call), {"items": [], "nextCursor": None})

    page = console.open(template, ready, timed=False)

    expect(page.get_by_test_id("empty-state").first).to_be_visible()
    console.screenshot(f"empty-{ready}")


@pytest.mark.parametrize(
    ("ready", "template", "call"),
    [
        ("training-job", "/training/{job}", rf"{API}/training/jobs/[^/?]+$"),
        ("pipeline", "/pipelines/{pipeline}", rf"{API}/workflows/pipelines/[^/?]+$"),
    ],
    ids=["training-job", "pipeline"],
)
def test_a_degraded_answer_is_shown_with_its_reason(
    console: Console, seeded: Seeded, ready: str, template: str, call: str
) -> None:
    path = _path(template, seeded)
    resource = "training/jobs" if ready == "training-job" else "workflows/pipelines"
    real = console.server.api.get(f"{API}/{resource}/{path.rsplit('/', 1)[-1]}").json()
    degraded = {
        **real,
        "degraded": True,
        "degradedReason": "orchestration provider 'local' unavailable: connection refused",
        "operationId": "op-waiting-1",
    }
    console.sign_in("admin")
    console.answer_api(_matcher(call), degraded)

    page = console.open(path, ready, timed=False)

    banner = page.get_by_test_id("degraded")
    expect(banner).to_contain_text("connection refused")
    expect(banner).to_contain_text("op-waiting-1")
    console.screenshot(f"degraded-{ready}")


def _twins(item: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``item`` and a copy of it with another id: one for each page of a list."""
    other = item["id"] + 1_000_000 if isinstance(item["id"], int) else f"{item['id']}-twin"
    return item, {**item, "id": other}


def _two_pages(
    console: Console, call: str, first: dict[str, Any], second: dict[str, Any]
) -> list[str]:
    """Answer the list call with ``first`` and a cursor, and the call with that cursor with
    ``second`` and no cursor; returns the URLs asked, for the test to read."""
    asked: list[str] = []

    def answer(route: Route) -> None:
        asked.append(route.request.url)
        cursor = parse_qs(urlsplit(route.request.url).query).get("cursor")
        body = (
            {"items": [second], "nextCursor": None}
            if cursor == ["page-2"]
            else {"items": [first], "nextCursor": "page-2"}
        )
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    console.page.route(_matcher(call), answer)
    return asked


@pytest.mark.parametrize(
    ("ready", "template", "call", "resource"), PAGED, ids=[p[0] for p in PAGED]
)
def test_every_list_loads_the_next_page_with_its_cursor_until_the_last(
    console: Console, seeded: Seeded, ready: str, template: str, call: str, resource: str
) -> None:
    listed = console.server.api.get(f"{API}/{resource}", params={"limit": 1}).json()["items"]
    first, second = _twins(listed[0])
    console.sign_in("admin")
    asked = _two_pages(console, call, first, second)

    page = console.open(template, ready, timed=False)
    rows = page.locator("table.data tbody tr")
    expect(rows).to_have_count(1)
    page.get_by_role("button", name="Load more").click()

    expect(rows).to_have_count(2)
    expect(page.get_by_role("button", name="Load more")).to_have_count(0)  # the last page
    assert [url for url in asked if "cursor=page-2" in url], asked


def test_a_next_page_that_fails_is_explained_and_the_list_stays(
    console: Console, seeded: Seeded
) -> None:
    call = rf"{API}/catalog/models(\?|$)"
    listed = console.server.api.get(f"{API}/catalog/models", params={"limit": 1}).json()["items"]
    first, second = _twins(listed[0])
    console.sign_in("admin")
    _two_pages(console, call, first, second)
    page = console.open("/models", "models", timed=False)
    rows = page.locator("table.data tbody tr")
    expect(rows).to_have_count(1)

    next_page = _matcher(rf"{API}/catalog/models\?.*cursor=page-2")
    console.fail_api(next_page)  # the later route answers first
    page.get_by_role("button", name="Load more").click()

    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Could not load the next page of models")
    expect(alert).to_contain_text("Service unavailable: the test made this call fail")
    expect(rows).to_have_count(1)
    console.screenshot("error-models-next-page")

    page.unroute(next_page)
    page.get_by_role("button", name="Load more").click()  # tries again
    expect(rows).to_have_count(2)
    expect(page.get_by_role("alert")).to_have_count(0)


#: (ready name, filtered path, call, what the empty state says then, its button, the
#: path once cleared, what it says then, the create link it offers an admin)
FILTERED: list[tuple[str, str, str, str, str, str, str, str | None]] = [
    (
        "models",
        "/models?status=archived&sort=name",
        rf"{API}/catalog/models(\?|$)",
        "No model matches these filters",
        "Clear filters",
        "/models?sort=name",
        "No models yet",
        "New model",
    ),
    (
        "datasets",
        "/datasets?q=nothing",
        rf"{API}/catalog/datasets(\?|$)",
        "No dataset matches this search",
        "Clear search",
        "/datasets",
        "No datasets yet",
        "New dataset",
    ),
    (
        "training-jobs",
        "/training?status=failed&modelId=gone",
        rf"{API}/training/jobs(\?|$)",
        "No training job matches these filters",
        "Clear filters",
        "/training",
        "No training jobs yet",
        "Submit job",
    ),
    (
        "pipelines",
        "/pipelines?status=failed&sort=name",
        rf"{API}/workflows/pipelines(\?|$)",
        "No pipeline matches this filter",
        "Clear filters",
        "/pipelines?sort=name",
        "No pipelines yet",
        "New pipeline",
    ),
    (
        "operations",
        "/admin/operations?kind=run.create",
        rf"{API}/operations(\?|$)",
        "No operation matches these filters",
        "Clear filters",
        "/admin/operations",
        "The retry queue is empty",
        None,
    ),
    (
        "audit-logs",
        "/admin/audit-logs?actor=nobody",
        rf"{API}/governance/audit-logs(\?|$)",
        "No entry matches these filters",
        "Clear filters",
        "/admin/audit-logs",
        "The audit log is empty",
        None,
    ),
    (
        "api-keys",
        "/admin/api-keys?role=job",
        rf"{API}/api-keys(\?|$)",
        "No key matches these filters",
        "Clear filters",
        "/admin/api-keys",
        "No API keys",
        None,
    ),
]


@pytest.mark.parametrize(
    ("ready", "path", "call", "no_match", "clear", "cleared", "empty", "create"),
    FILTERED,
    ids=[f[0] for f in FILTERED],
)
def test_a_filtered_list_that_matches_nothing_offers_to_clear_its_filters(
    console: Console,
    ready: str,
    path: str,
    call: str,
    no_match: str,
    clear: str,
    cleared: str,
    empty: str,
    create: str | None,
) -> None:
    console.sign_in("admin")
    console.answer_api(_matcher(call), {"items": [], "nextCursor": None})
    page = console.open(path, ready, timed=False)
    state = page.get_by_test_id("empty-state")
    expect(state).to_contain_text(no_match)

    state.get_by_role("button", name=clear).click()

    expect(page).to_have_url(console.server.url + cleared)  # the sort order stays
    expect(state).to_contain_text(empty)
    expect(state.get_by_role("button", name=clear)).to_have_count(0)
    if create:
        expect(state.get_by_role("link", name=create)).to_be_visible()


def test_a_list_keeps_its_rows_when_a_refresh_fails(console: Console, seeded: Seeded) -> None:
    call = _matcher(rf"{API}/workflows/pipelines(\?|$)")
    console.sign_in("admin")
    page = console.open("/pipelines", "pipelines", timed=False)
    rows = page.locator("table.data tbody tr")
    expect(rows.first).to_be_visible()
    shown = rows.count()

    console.fail_api(call)
    page.locator(".page-header").get_by_role("button", name="Refresh").click()

    banner = page.get_by_role("alert")
    expect(banner).to_contain_text("Could not refresh pipelines")
    expect(banner).to_contain_text("the test made this call fail")
    expect(rows).to_have_count(shown)

    page.unroute(call)
    page.locator(".page-header").get_by_role("button", name="Refresh").click()
    expect(page.get_by_role("alert")).to_have_count(0)
