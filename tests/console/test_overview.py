"""The overview, where signing in lands: every integration with its health now and over
the status history window (a strip and the recorded changes), and the charts."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from playwright.sync_api import Locator, Page, expect

from llmops.testing.console import Console

API = "/llm-ops/v1"
#: the page polls every 5 s; a health change reaches it within a round and a poll
CHANGE = 30_000


def _example_key(console: Console) -> str:
    """The overview's key of the example tracker (plugin/capability/provider)."""
    answer = console.server.api.get(f"{API}/observability/overview")
    answer.raise_for_status()
    found: list[dict[str, Any]] = [
        i for i in answer.json()["integrations"] if i["plugin"] == "example"
    ]
    assert len(found) == 1, answer.json()["integrations"]
    return f"{found[0]['plugin']}/{found[0]['capability']}/{found[0]['provider']}"


def _row(page: Page, key: str) -> Locator:
    return page.locator(f'tr[data-integration="{key}"]')


def _status_now(row: Locator) -> Locator:
    return row.locator("td").nth(1).locator("[data-status]").first


def test_signing_in_lands_on_the_overview_with_each_integrations_health_and_charts(
    console: Console,
) -> None:
    page = console.sign_in("viewer")

    console.wait_ready("overview")
    expect(page).to_have_url(f"{console.server.url}/overview")
    expect(page.get_by_role("heading", name="Overview", exact=True)).to_be_visible()
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Overview")).to_be_visible()

    row = _row(page, _example_key(console))
    expect(_status_now(row)).to_have_attribute("data-status", "ok", timeout=CHANGE)
    strip = row.get_by_role("img", name=re.compile(r"over the last 24 h: .*ok"))
    expect(strip).to_be_visible()
    for chart in ("Training jobs finished per hour", "Pipelines finished per hour"):
        expect(page.get_by_role("img", name=re.compile(f"^{chart}, 24 hours: "))).to_be_visible()
    console.screenshot("overview")


def test_a_health_change_shows_in_the_history_with_its_reason(
    console: Console, unique: Callable[[str], str]
) -> None:
    api = console.server.api
    key = _example_key(console)
    console.sign_in("admin")
    page = console.open("/overview", "overview")
    row = _row(page, key)
    expect(_status_now(row)).to_have_attribute("data-status", "ok", timeout=CHANGE)
    try:
        # the tracker's folder cannot be written: its health check says so
        api.put(
            f"{API}/integrations/example/config",
            json={"settings": {"root": f"/proc/{unique('nowhere')}"}},
        ).raise_for_status()

        expect(_status_now(row)).to_have_attribute("data-status", "down", timeout=CHANGE)
        expect(row.get_by_role("img", name=re.compile(r"down"))).to_be_visible()
        row.locator("details.changes summary").click()
        latest = row.get_by_test_id("status-change").first
        expect(latest.locator("[data-status]").first).to_have_attribute("data-status", "down")
        expect(latest).to_contain_text("(was ok)")
        expect(latest).to_contain_text("cannot write to /proc/")
        console.screenshot("overview-health-change")
    finally:
        api.put(
            f"{API}/integrations/example/config",
            json={"settings": {"root": None, "api_token": None}},
        ).raise_for_status()
    expect(_status_now(row)).to_have_attribute("data-status", "ok", timeout=CHANGE)
