"""The governance pages: the policies (an admin sets a limit on the page, the API then
refuses an endpoint over it, the page shows what is in force, a value the API refuses
shows the API's message under its field) and the costs (an endpoint's usage priced, with
a chart and its numbers).

The server is shared with every console test: the policies and prices are put back, and
the usage a test writes is removed, in ``finally`` blocks.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import httpx
from playwright.sync_api import expect
from sqlalchemy import delete

from llmops.db.governance import EndpointUsage
from llmops.db.session import make_engine
from llmops.testing.console import Console, ok

API = "/llm-ops/v1"
POLICIES = f"{API}/governance/policies"
PRICES = f"{API}/governance/prices"


@contextmanager
def _policies_restored(api: httpx.Client) -> Iterator[None]:
    """Whatever the test sets, the policies and prices in force before come back."""
    policies = ok(api.get(POLICIES))
    prices = ok(api.get(PRICES))
    try:
        yield
    finally:
        ok(
            api.put(
                POLICIES,
                json={"modelImports": policies["modelImports"], "endpoints": policies["endpoints"]},
            )
        )
        ok(
            api.put(
                PRICES,
                json={
                    "replicaHour": prices["replicaHour"],
                    "gpuHour": prices["gpuHour"],
                    "currency": prices["currency"],
                },
            )
        )


def test_an_admin_limits_replicas_and_an_endpoint_over_the_limit_is_refused(
    console: Console, unique: Callable[[str], str]
) -> None:
    api = console.server.api
    console.sign_in("admin")
    with _policies_restored(api):
        page = console.open("/governance/policies", "governance-policies")
        expect(page.get_by_role("heading", name="Policies", exact=True)).to_be_visible()
        most = page.get_by_label("Most replicas", exact=True)

        # a value the API refuses: its message under the field, nothing saved
        console.expect_console_error("422")
        most.fill("0")
        page.get_by_role("button", name="Save policies").click()
        expect(
            page.get_by_role("alert").filter(has_text="greater than or equal to 1").first
        ).to_be_visible()
        expect(most).to_have_attribute("aria-invalid", "true")
        assert ok(api.get(POLICIES))["endpoints"]["maxReplicas"] is None

        most.fill("2")
        page.get_by_role("button", name="Save policies").click()

        expect(page.get_by_role("status").filter(has_text="Policies saved")).to_be_visible()
        expect(page.get_by_test_id("max-replicas")).to_have_text("2")
        assert ok(api.get(POLICIES))["endpoints"]["maxReplicas"] == 2

        model = ok(
            api.post(
                f"{API}/catalog/models", json={"name": unique("governed"), "uri": "file:///m"}
            ),
            201,
        )
        name = unique("too-big")
        refused = api.post(
            f"{API}/serving/endpoints",
            json={"name": name, "modelId": model["id"], "autoscaling": {"maxReplicas": 3}},
        )
        assert refused.status_code == 403, refused.text
        problem = refused.json()
        assert problem["type"] == "https://llmops.dev/problems/policy-violation"
        assert (problem["policy"], problem["requested"], problem["limit"]) == (
            "endpoints.maxReplicas",
            3,
            2,
        )
        assert "allows at most 2 replicas" in problem["detail"]
        names = [e["name"] for e in ok(api.get(f"{API}/serving/endpoints"))["items"]]
        assert name not in names
        denied = ok(
            api.get(
                f"{API}/governance/audit-logs",
                params={"action": "create_serving_endpoint", "outcome": "denied", "limit": 5},
            )
        )["items"]
        assert denied[0]["details"]["policy"] == "endpoints.maxReplicas"

        # the page, loaded afresh, shows the policy in force
        page = console.open("/governance/policies", "governance-policies")
        expect(page.get_by_test_id("max-replicas")).to_have_text("2")
        expect(page.get_by_test_id("policy-summary")).to_contain_text("Version")
        console.screenshot("governance-policies")


def test_the_cost_page_shows_an_endpoints_cost_with_a_chart(
    console: Console, unique: Callable[[str], str]
) -> None:
    """Two hours of two replicas with a GPU each, at 1.5 a replica-hour and 2 a GPU-hour:
    4 replica-hours, 4 GPU-hours, 14 EUR."""
    api = console.server.api
    endpoint_id = uuid.uuid4().hex
    name = unique("costly")
    now = datetime.now(UTC)
    engine = make_engine(console.server.database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                EndpointUsage.__table__.insert().values(
                    endpoint_id=endpoint_id,
                    endpoint_name=name,
                    replicas=2,
                    gpus_per_replica=1,
                    started_at=now - timedelta(hours=3),
                    ended_at=now - timedelta(hours=1),
                )
            )
        with _policies_restored(api):
            ok(api.put(PRICES, json={"replicaHour": 1.5, "gpuHour": 2, "currency": "EUR"}))
            console.sign_in("viewer")

            page = console.open("/governance/costs?window=24h", "governance-costs")

            expect(page.get_by_role("heading", name="Costs", exact=True)).to_be_visible()
            row = page.get_by_test_id("endpoint-costs").locator(f'tr[data-item="{endpoint_id}"]')
            expect(row).to_contain_text(name)
            expect(row.get_by_test_id("item-cost")).to_have_text("14 EUR")
            expect(row).to_contain_text("Deleted")
            cells = row.locator("td.num")
            expect(cells.nth(0)).to_have_text("4")  # replica-hours
            expect(cells.nth(1)).to_have_text("4")  # GPU-hours
            # the chart of the whole window: an image that says what it shows, a bar per hour
            chart = page.get_by_role("img", name=re.compile(r"^Estimated cost per hour \(UTC\), "))
            expect(chart).to_be_visible()
            bars = chart.get_by_test_id("bar")
            assert bars.count() in (24, 25)  # the first and last hours clipped to the window
            assert "EUR in all" in (chart.get_attribute("aria-label") or "")
            # the endpoint's own chart: two or three hours with a cost
            own = row.get_by_role("img", name=f"Estimated cost per hour (UTC) of {name}")
            costs = [
                float(v or 0)
                for v in own.get_by_test_id("bar").evaluate_all(
                    "bars => bars.map(b => b.getAttribute('data-value'))"
                )
            ]
            assert round(sum(costs), 6) == 14.0
            assert 2 <= len([c for c in costs if c > 0]) <= 3
            # the numbers of the chart, in a table
            table = page.get_by_test_id("series-table")
            expect(table).to_be_visible()
            expect(table.locator("tbody tr")).to_have_count(bars.count())
            page.get_by_label("Per", exact=True).select_option("day")
            expect(page).to_have_url(re.compile(r"bucket=day"))
            per_day = page.get_by_role("img", name=re.compile(r"^Estimated cost per day \(UTC\), "))
            expect(per_day).to_be_visible()
            expect(row.get_by_test_id("item-cost")).to_have_text("14 EUR")
            console.screenshot("governance-costs")
            # a viewer reads the policies and prices, and is offered no form
            page = console.open("/governance/policies", "governance-policies")
            expect(page.get_by_test_id("prices")).to_contain_text("1.5 EUR per replica-hour")
            expect(page.get_by_role("button", name="Save policies")).to_have_count(0)
    finally:
        with engine.begin() as connection:
            connection.execute(
                delete(EndpointUsage).where(EndpointUsage.endpoint_id == endpoint_id)
            )
        engine.dispose()
