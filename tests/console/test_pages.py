"""Every page of the console: it becomes interactive (timed, for the report), it is
captured in a screenshot, and it has its loading, empty and error states."""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from playwright.sync_api import expect

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
]

#: pages that load something, with the API call whose answer the page is made of
LOADED: list[tuple[str, str, str]] = [
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
LISTS = [entry for entry in LOADED if "{" not in entry[1] and entry[0] != "integration"]


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
