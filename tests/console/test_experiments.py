"""Experiment tracking in the console: a training job's run (params, latest metrics, live
charts), the experiment search page (the tracker's filters, selecting runs) and the
compare page (curves overlaid, params diff), with their loading, empty and error states.

The data goes through the platform's API into the example plugin's tracker (a real tracker
that keeps runs in JSON files): jobs, their runs, and metric points logged the way a
training job logs them."""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from llmops.testing.console import Console, ConsoleServer
from llmops.testing.waiting import wait_for

API = "/llm-ops/v1"
QUICK = [sys.executable, "-c", "print('training')"]
#: a job that stays running while the test watches its page (cancelled at the end)
SLOW = [sys.executable, "-c", "import time; time.sleep(120)"]
T0 = datetime(2026, 11, 26, 11, 0, tzinfo=UTC)
#: every page here is read-only: a viewer sees all of it (search and compare included)
READER = "viewer"


@dataclass(frozen=True)
class Tracked:
    job: str
    name: str
    run: str  # the tracker's run id
    experiment: str


def _ok(response: httpx.Response) -> dict[str, Any]:
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def _model(api: httpx.Client, name: str) -> str:
    """A model named like the experiment: a job's run goes to its model's experiment."""
    return str(
        _ok(api.post(f"{API}/catalog/models", json={"name": name, "task": "text-generation"}))["id"]
    )


def _losses(count: int, start: float = 2.5, rate: float = 0.08) -> list[float]:
    """A falling training loss."""
    return [round(start * (1 - rate) ** step + 0.05, 6) for step in range(count)]


def _log(api: httpx.Client, job: str, key: str, values: list[float], first_step: int = 0) -> None:
    """Log points as a job does, timestamps set by the client so a re-sent point is identical."""
    points = [
        {
            "key": key,
            "value": value,
            "step": first_step + i,
            "timestamp": (T0 + timedelta(seconds=first_step + i)).isoformat(),
        }
        for i, value in enumerate(values)
    ]
    answer = api.post(f"{API}/training/jobs/{job}/experiment-run/metrics", json={"metrics": points})
    assert answer.status_code in (200, 202), answer.text


def _history(api: httpx.Client, run: str, key: str) -> int:
    compared = _ok(api.post(f"{API}/experiments/compare", json={"runIds": [run]}))
    return len(compared["runs"][0]["metrics"].get(key, []))


def _tracked(
    api: httpx.Client,
    *,
    model: str,
    experiment: str,
    name: str,
    hyperparameters: dict[str, str],
    losses: list[float],
    command: list[str] = QUICK,
) -> Tracked:
    """A training job with its run in the tracker and ``losses`` logged as ``loss``."""
    job = _ok(
        api.post(
            f"{API}/training/jobs",
            json={
                "name": name,
                "modelId": model,
                "command": command,
                "hyperparameters": hyperparameters,
            },
        )
    )["id"]
    # the job's run: created here, or the one its submission already made (one per job)
    created = api.post(f"{API}/training/jobs/{job}/experiment-run", json={"experiment": experiment})
    assert created.status_code in (200, 201, 202), created.text
    run = wait_for(
        lambda: api.get(f"{API}/training/jobs/{job}/experiment-run").json().get("externalId"),
        timeout=30,
        what=f"the run of job {name} in the tracker",
    )
    if losses:
        _log(api, job, "loss", losses)
        wait_for(
            lambda: _history(api, run, "loss") == len(losses),
            timeout=30,
            what=f"{len(losses)} loss points in the tracker",
        )
    return Tracked(job=job, name=name, run=run, experiment=experiment)


@dataclass(frozen=True)
class Pair:
    experiment: str
    a: Tracked  # lr 0.001, ends lower
    b: Tracked  # lr 0.01


@pytest.fixture(scope="module")
def pair(console_server: ConsoleServer) -> Pair:
    """Two finished jobs in one experiment, whose params differ in ``lr`` only."""
    api = console_server.api
    experiment = f"exp-compare-{datetime.now(UTC).strftime('%H%M%S%f')}"
    model = _model(api, experiment)
    a = _tracked(
        api,
        model=model,
        experiment=experiment,
        name=f"{experiment}-a",
        hyperparameters={"lr": "0.001", "batch_size": "8"},
        losses=_losses(30),
    )
    b = _tracked(
        api,
        model=model,
        experiment=experiment,
        name=f"{experiment}-b",
        hyperparameters={"lr": "0.01", "batch_size": "8"},
        losses=_losses(30, start=3.0, rate=0.05),
    )
    return Pair(experiment=experiment, a=a, b=b)


def _chart(scope: Page | Locator, metric: str) -> Locator:
    return scope.locator(f'figure[data-metric="{metric}"]')


def _ys(path_d: str) -> list[float]:
    """The y pixels of an SVG path "M x y L x y …"."""
    return [float(y) for y in re.findall(r"[ML]-?[\d.]+ (-?[\d.]+)", path_d)]


def _query(page: Page) -> dict[str, list[str]]:
    return parse_qs(urlparse(page.url).query)


# -- the training job's run -------------------------------------------------------------


def test_a_training_jobs_page_shows_its_run_with_params_and_a_chart_of_the_falling_loss(
    console: Console, unique: Callable[[str], str]
) -> None:
    api = console.server.api
    experiment = unique("exp-job")
    losses = _losses(25)
    tracked = _tracked(
        api,
        model=_model(api, experiment),
        experiment=experiment,
        name=unique("job-tracked"),
        hyperparameters={"lr": "0.001", "epochs": "3"},
        losses=losses,
    )
    console.sign_in(READER)

    page = console.open(f"/training/{tracked.job}", "training-job")

    panel = page.get_by_test_id("experiment-run")
    expect(panel.get_by_test_id("experiment-name")).to_have_text(experiment)
    expect(panel.locator(".details [data-status]")).to_be_visible()
    params = panel.get_by_test_id("run-params")
    expect(params.locator('[data-param="lr"] dd')).to_have_text("0.001")
    expect(params.locator('[data-param="epochs"] dd')).to_have_text("3")
    expect(
        panel.get_by_test_id("run-latest-metrics").locator('tr[data-metric="loss"] td').nth(1)
    ).to_have_text(f"{losses[-1]:.4g}")
    chart = _chart(panel, "loss")
    line = chart.locator("path[data-series]")
    expect(line).to_have_count(1)
    expect(line).to_have_attribute("data-series", tracked.name)
    expect(line).to_have_attribute("data-points", str(len(losses)))
    ys = _ys(line.get_attribute("d") or "")
    assert len(ys) == len(losses)  # every point drawn, none skipped
    assert ys[-1] > ys[0], "a falling loss is drawn going down (SVG y grows downwards)"
    svg = chart.get_by_role("img")
    expect(svg).to_have_attribute(
        "aria-label", re.compile(r"^loss: 1 series, 25 points from step 0 to 24")
    )
    expect(chart.get_by_test_id("chart-legend")).to_have_text(tracked.name)
    # the readout follows the pointer: the first step at the chart's left edge
    box = svg.bounding_box()
    assert box is not None
    svg.hover(position={"x": 60, "y": box["height"] / 2})
    readout = chart.get_by_test_id("chart-readout")
    expect(readout).to_have_attribute("data-hovering", "true")
    expect(readout).to_have_attribute("data-step", "0")
    expect(readout).to_contain_text(f"{losses[0]:.4g}")
    # no link to a tracker UI: the example tracker has none
    expect(panel.get_by_role("link", name=re.compile("^Open in"))).to_have_count(0)
    expect(page.get_by_role("alert")).to_have_count(0)
    console.screenshot("page-training-job-experiment-run")


def test_the_charts_of_a_running_job_follow_the_points_it_logs(
    console: Console, unique: Callable[[str], str]
) -> None:
    api = console.server.api
    experiment = unique("exp-live")
    tracked = _tracked(
        api,
        model=_model(api, experiment),
        experiment=experiment,
        name=unique("job-live"),
        hyperparameters={"lr": "0.002"},
        losses=_losses(5),
        command=SLOW,
    )
    try:
        wait_for(
            lambda: api.get(f"{API}/training/jobs/{tracked.job}").json()["status"] == "running",
            timeout=30,
            what="the job to run",
        )
        console.sign_in(READER)
        page = console.open(f"/training/{tracked.job}", "training-job")
        line = _chart(page.get_by_test_id("experiment-run"), "loss").locator("path[data-series]")
        expect(line).to_have_attribute("data-points", "5")

        _log(api, tracked.job, "loss", _losses(12)[5:], first_step=5)
        _log(api, tracked.job, "accuracy", [0.2, 0.4, 0.6], first_step=0)

        # the page polls while the job runs: the new points and the new metric appear
        expect(line).to_have_attribute("data-points", "12", timeout=20_000)
        accuracy = _chart(page.get_by_test_id("experiment-run"), "accuracy").locator(
            "path[data-series]"
        )
        expect(accuracy).to_have_attribute("data-points", "3", timeout=20_000)
        console.screenshot("page-training-job-experiment-run-live")
    finally:
        api.post(f"{API}/training/jobs/{tracked.job}/cancel")


def test_a_long_history_is_downsampled_for_drawing_and_still_read_exactly(
    console: Console, unique: Callable[[str], str]
) -> None:
    api = console.server.api
    experiment = unique("exp-long")
    count = 5_000
    values = [round(2.0 + 0.5 * math.sin(i / 50) - i / 5_000, 6) for i in range(count)]
    values[2_500] = 9.0  # one spike, which the drawing must keep
    tracked = _tracked(
        api,
        model=_model(api, experiment),
        experiment=experiment,
        name=unique("job-long"),
        hyperparameters={"lr": "0.003"},
        losses=values,
    )
    console.sign_in(READER)

    page = console.open(f"/training/{tracked.job}", "training-job")

    chart = _chart(page.get_by_test_id("experiment-run"), "loss")
    line = chart.locator("path[data-series]")
    expect(line).to_have_attribute("data-points", str(count))
    svg = chart.get_by_role("img")
    box = svg.bounding_box()
    assert box is not None
    drawn = int(line.get_attribute("data-drawn") or "0")
    assert 0 < drawn <= 4 * box["width"] < count  # about four points per pixel column
    ys = sorted(_ys(line.get_attribute("d") or ""))
    assert len(ys) == drawn
    assert ys[0] < ys[1] - 50, "the spike is drawn, well above every other point"
    expect(chart.locator("circle.marker")).to_have_count(0)  # no dots on a long line
    # the readout reads the exact points, not the drawn ones
    svg.hover(position={"x": box["width"] - 3, "y": box["height"] / 2})  # past the plot: its end
    readout = chart.get_by_test_id("chart-readout")
    expect(readout).to_have_attribute("data-step", str(count - 1))
    expect(readout).to_contain_text(f"{values[-1]:.4g}")
    svg.press("Home")
    expect(readout).to_have_attribute("data-step", "0")
    svg.press("ArrowRight")
    expect(readout).to_have_attribute("data-step", "1")
    expect(readout).to_contain_text(f"{values[1]:.4g}")
    console.screenshot("page-training-job-experiment-run-long")


def test_a_job_without_an_experiment_run_says_so_without_an_error(
    console: Console, unique: Callable[[str], str]
) -> None:
    job = _ok(
        console.server.api.post(
            f"{API}/training/jobs",
            json={"name": unique("job-untracked"), "command": QUICK, "track": False},
        )
    )["id"]
    # the job says it has no run: the page does not ask for one (no 404 in the console)
    console.sign_in(READER)

    page = console.open(f"/training/{job}", "training-job", timed=False)

    panel = page.get_by_test_id("experiment-run")
    expect(panel.get_by_test_id("empty-state")).to_contain_text("No experiment run")
    expect(page.get_by_role("alert")).to_have_count(0)
    console.screenshot("empty-training-job-experiment-run")


def test_a_stale_run_shows_the_degraded_banner_with_its_reason(
    console: Console, pair: Pair
) -> None:
    real = _ok(console.server.api.get(f"{API}/training/jobs/{pair.a.job}/experiment-run"))
    console.sign_in(READER)
    console.answer_api(
        re.compile(rf"{API}/training/jobs/{pair.a.job}/experiment-run$"),
        {
            **real,
            "stale": True,
            "degraded": True,
            "degradedReason": "showing the last known state: tracker 'example' unavailable",
        },
    )

    page = console.open(f"/training/{pair.a.job}", "training-job", timed=False)

    banner = page.get_by_test_id("experiment-run").get_by_test_id("degraded")
    expect(banner).to_contain_text("showing the last known state")
    expect(page.get_by_test_id("experiment-run").get_by_test_id("experiment-name")).to_have_text(
        pair.experiment
    )
    console.screenshot("degraded-training-job-experiment-run")


# -- search ---------------------------------------------------------------------------


def test_the_search_page_finds_runs_by_a_filter_and_two_selected_runs_open_the_compare_page(
    console: Console, pair: Pair
) -> None:
    console.sign_in(READER)
    for _ in range(3):  # timed three times from a full load; the report takes the median
        page = console.open(f"/experiments?experiments={pair.experiment}", "experiments")

    rows = page.locator("tbody tr[data-run]")
    expect(rows).to_have_count(2)
    expect(page.locator("thead th", has_text="loss")).to_be_visible()  # a latest-metric column
    # a run's name leads to its training job
    expect(page.get_by_role("link", name=pair.a.name, exact=True)).to_have_attribute(
        "href", f"/training/{pair.a.job}"
    )
    compare = page.locator(".page-header").get_by_role("button", name="Compare")
    expect(compare).to_be_disabled()
    console.screenshot("page-experiments")

    page.get_by_label("Filter", exact=True).fill("params.lr = '0.001'")
    page.get_by_label("Filter", exact=True).press("Enter")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-run", pair.a.run)
    assert _query(page)["filter"] == ["params.lr = '0.001'"]  # shareable

    page.get_by_label("Filter", exact=True).fill("")
    page.get_by_role("button", name="Search").click()
    expect(rows).to_have_count(2)
    page.get_by_label(f"Select {pair.a.name}").check()
    expect(compare).to_be_disabled()  # one run is not a comparison
    page.get_by_label(f"Select {pair.b.name}").check()
    expect(page.get_by_test_id("selection")).to_contain_text("2 selected")
    compare.click()

    console.wait_ready("experiments-compare")
    assert urlparse(page.url).path == "/experiments/compare"
    assert set(_query(page)["runs"][0].split(",")) == {pair.a.run, pair.b.run}
    expect(_chart(page, "loss").locator("path[data-series]")).to_have_count(2)
    # back to the search, its filters kept
    back = page.locator(".page-header .back")
    expect(back).to_have_text("← Experiments")
    back.click()
    console.wait_ready("experiments")
    assert _query(page)["experiments"] == [pair.experiment]
    expect(page.locator("tbody tr[data-run]")).to_have_count(2)


def test_the_search_pages_through_the_runs_with_load_more(console: Console, pair: Pair) -> None:
    console.sign_in(READER)

    page = console.open(f"/experiments?experiments={pair.experiment}&pageSize=1", "experiments")

    rows = page.locator("tbody tr[data-run]")
    expect(rows).to_have_count(1)
    expect(page.get_by_label("Page size")).to_have_value("1")
    page.get_by_role("button", name="Load more").click()
    expect(rows).to_have_count(2)
    expect(page.get_by_role("button", name="Load more")).to_have_count(0)  # no third page
    assert {rows.nth(i).get_attribute("data-run") for i in range(2)} == {pair.a.run, pair.b.run}


def test_a_filter_the_tracker_refuses_is_explained_next_to_the_field(
    console: Console, pair: Pair
) -> None:
    console.expect_console_error("status of 422")
    console.sign_in(READER)
    page = console.open(f"/experiments?experiments={pair.experiment}", "experiments")
    expect(page.locator("tbody tr[data-run]")).to_have_count(2)

    page.get_by_label("Filter", exact=True).fill("metrics.loss <")
    page.get_by_label("Filter", exact=True).press("Enter")

    problem = page.get_by_test_id("filter-problem")
    expect(problem.get_by_role("alert")).to_contain_text("unsupported filter clause")
    expect(page.get_by_label("Filter", exact=True)).to_have_attribute("aria-invalid", "true")
    expect(page.locator("tbody tr[data-run]")).to_have_count(0)  # not the old results
    expect(page.get_by_text("Could not load")).to_have_count(0)  # not the page's error state
    console.screenshot("error-experiments-filter")

    # an order the tracker refuses is pinned on the order field
    page.get_by_label("Filter", exact=True).fill("params.batch_size = '8'")
    page.get_by_label("Order by").fill("loudness DESC")
    page.get_by_label("Order by").press("Enter")
    expect(problem.get_by_role("alert")).to_contain_text("unsupported order_by")
    expect(page.get_by_label("Order by")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Filter", exact=True)).not_to_have_attribute("aria-invalid", "true")

    page.get_by_label("Order by").fill("metrics.loss ASC")
    page.get_by_label("Order by").press("Enter")
    rows = page.locator("tbody tr[data-run]")
    expect(rows).to_have_count(2)
    expect(rows.first).to_have_attribute("data-run", pair.a.run)  # the lower loss first
    expect(page.get_by_test_id("filter-problem")).to_have_count(0)


def test_a_search_that_matches_nothing_shows_the_empty_state(console: Console, pair: Pair) -> None:
    console.sign_in(READER)

    page = console.open(
        f"/experiments?experiments={pair.experiment}&filter=params.lr+%3D+%270.5%27", "experiments"
    )

    empty = page.get_by_test_id("empty-state")
    expect(empty).to_contain_text("No run matches these filters")
    console.screenshot("empty-experiments")
    empty.get_by_role("button", name="Clear filters").click()
    expect(page.get_by_test_id("empty-state")).to_have_count(0)
    expect(page.locator("tbody tr[data-run]").first).to_be_visible()
    page.wait_for_url(lambda url: "filter=" not in url and "experiments=" not in url)


# -- compare --------------------------------------------------------------------------


def test_the_compare_page_overlays_both_runs_curves_and_marks_the_differing_param(
    console: Console, pair: Pair
) -> None:
    console.sign_in(READER)
    for _ in range(3):
        page = console.open(
            f"/experiments/compare?runs={pair.a.run},{pair.b.run}", "experiments-compare"
        )

    expect(page.locator("h1")).to_have_text("Compare runs")
    chart = _chart(page, "loss")
    lines = chart.locator("path[data-series]")
    expect(lines).to_have_count(2)
    assert [lines.nth(i).get_attribute("data-series") for i in range(2)] == [
        pair.a.name,
        pair.b.name,
    ]
    for i in range(2):
        expect(lines.nth(i)).to_have_attribute("data-points", "30")
    assert lines.nth(0).get_attribute("stroke") != lines.nth(1).get_attribute("stroke")
    legend = chart.get_by_test_id("chart-legend").locator("li")
    expect(legend).to_have_text([pair.a.name, pair.b.name])
    expect(chart.get_by_role("img")).to_have_attribute(
        "aria-label", re.compile(r"^loss: 2 series, 60 points")
    )

    # hovering the middle reads both runs at the step there
    svg = chart.get_by_role("img")
    box = svg.bounding_box()
    assert box is not None
    svg.hover(position={"x": 58 + (box["width"] - 72) * 0.5, "y": box["height"] / 3})
    readout = chart.get_by_test_id("chart-readout")
    expect(readout).to_have_attribute("data-hovering", "true")
    step = int(readout.get_attribute("data-step") or "-1")
    assert 12 <= step <= 17, step
    a_value = _losses(30)[step]
    b_value = _losses(30, start=3.0, rate=0.05)[step]
    expect(readout.locator(f'[data-series="{pair.a.name}"]')).to_contain_text(f"{a_value:.4g}")
    expect(readout.locator(f'[data-series="{pair.b.name}"]')).to_contain_text(f"{b_value:.4g}")
    expect(chart.locator(".cursor circle")).to_have_count(2)

    params = page.get_by_test_id("compared-params")
    lr = params.locator('tr[data-param="lr"]')
    expect(lr).to_have_attribute("data-differs", "true")
    expect(lr).to_contain_text("differs")
    expect(lr.locator("td")).to_have_text(["0.001", "0.01"])
    expect(params.locator("tbody tr").first).to_have_attribute(
        "data-param", "lr"
    )  # differences first
    batch = params.locator('tr[data-param="batch_size"]')
    expect(batch).to_have_attribute("data-differs", "false")
    console.screenshot("page-experiments-compare")

    page.get_by_label("Only differences").check()
    expect(batch).to_have_count(0)
    expect(lr).to_be_visible()
    # opened directly, the back link goes to the plain search
    expect(page.locator(".page-header .back")).to_have_attribute("href", "/experiments")


def test_the_compare_page_says_when_it_cannot_load_and_recovers(
    console: Console, pair: Pair
) -> None:
    console.sign_in(READER)
    console.fail_api(re.compile(rf"{API}/experiments/compare$"), status=503)

    page = console.open(
        f"/experiments/compare?runs={pair.a.run},{pair.b.run}", "experiments-compare", timed=False
    )

    error = page.get_by_role("alert").filter(has_text="the test made this call fail")
    expect(error).to_contain_text("Could not load the runs to compare")
    console.screenshot("error-experiments-compare-call")
    page.unroute_all(behavior="ignoreErrors")
    page.get_by_role("button", name="Try again").click()
    expect(_chart(page, "loss").locator("path[data-series]")).to_have_count(2)
    expect(page.get_by_role("alert")).to_have_count(0)


def test_the_compare_page_without_runs_points_to_the_search(console: Console) -> None:
    console.sign_in(READER)

    page = console.open("/experiments/compare", "experiments-compare", timed=False)

    empty = page.get_by_test_id("empty-state")
    expect(empty).to_contain_text("No runs to compare")
    expect(empty.get_by_role("link", name="Search runs")).to_have_attribute("href", "/experiments")


@pytest.mark.parametrize(
    ("ready", "call"),
    [
        ("experiments", rf"{API}/experiments/search$"),
        ("experiments-compare", rf"{API}/experiments/compare$"),
    ],
    ids=["experiments", "experiments-compare"],
)
def test_the_experiment_pages_show_loading_then_say_when_they_cannot_load(
    console: Console, pair: Pair, ready: str, call: str
) -> None:
    path = (
        f"/experiments?experiments={pair.experiment}"
        if ready == "experiments"
        else f"/experiments/compare?runs={pair.a.run},{pair.b.run}"
    )
    console.sign_in(READER)
    held = console.hold_api(re.compile(call))

    console.page.goto(console.server.url + path)

    loading = console.page.get_by_role("status").filter(has_text="Loading")
    expect(loading.first).to_be_visible()
    console.wait_until_held(held)
    for route in held:
        route.continue_()
    console.wait_ready(ready)
    console.page.unroute_all(behavior="ignoreErrors")
    expect(loading).to_have_count(0)

    console.fail_api(re.compile(call), status=503)
    page = console.open(path, ready, timed=False)
    expect(
        page.get_by_role("alert").filter(has_text="the test made this call fail").first
    ).to_be_visible()
    expect(page.get_by_role("button", name="Try again")).to_be_visible()
    console.screenshot(f"error-{ready}")
