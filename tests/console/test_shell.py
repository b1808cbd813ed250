"""The console's frame: signing in and out, roles, and unknown pages."""

from __future__ import annotations

from playwright.sync_api import expect

from llmops.testing.console import Console


def test_signing_in_with_the_initial_admin_key_opens_the_overview(console: Console) -> None:
    page = console.sign_in("admin")

    console.wait_ready("overview")
    expect(page.get_by_role("heading", name="Overview", exact=True)).to_be_visible()
    expect(page.get_by_test_id("who")).to_contain_text("initial-admin")
    expect(
        page.get_by_role("navigation", name="Main").get_by_role("link", name="API keys")
    ).to_be_visible()
    console.screenshot("sign-in-done")


def test_a_wrong_key_is_refused_with_the_platforms_reason(console: Console) -> None:
    console.expect_console_error("status of 401")
    page = console.open("/sign-in", "sign-in")
    console.screenshot("sign-in")

    page.get_by_label("API key").fill("llmops_nope_notakey")
    page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_role("alert")).to_contain_text("API key")
    expect(page).to_have_url(f"{console.server.url}/sign-in")


def test_a_page_opened_without_a_key_asks_to_sign_in_and_then_returns(console: Console) -> None:
    page = console.open("/datasets", "sign-in")

    page.get_by_label("API key").fill(console.server.key("viewer"))
    page.get_by_role("button", name="Sign in").click()

    console.wait_ready("datasets")
    expect(page).to_have_url(f"{console.server.url}/datasets")


def test_signing_out_forgets_the_key(console: Console) -> None:
    page = console.sign_in("viewer")
    console.wait_ready("overview")

    page.get_by_role("button", name="Sign out").click()

    console.wait_ready("sign-in")
    page.reload()
    console.wait_ready("sign-in")
    assert page.evaluate("() => sessionStorage.getItem('llmops.apiKey')") is None


def test_a_viewer_sees_no_administration_and_no_mutating_action(console: Console) -> None:
    page = console.sign_in("viewer")
    console.wait_ready("overview")

    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Models")).to_be_visible()
    expect(nav.get_by_role("link", name="Integrations")).to_have_count(0)
    expect(page.get_by_role("link", name="New model")).to_have_count(0)

    console.open("/admin/integrations", "not-found")
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()


def test_an_unknown_address_shows_page_not_found(console: Console) -> None:
    console.sign_in("viewer")
    page = console.open("/no/such/page", "not-found")

    expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
    console.screenshot("not-found")


def test_a_revoked_key_ends_the_session(console: Console) -> None:
    api = console.server.api
    created = api.post("/llm-ops/v1/api-keys", json={"name": "short-lived", "role": "viewer"})
    created.raise_for_status()
    key = created.json()
    page = console.open("/sign-in", "sign-in")
    page.get_by_label("API key").fill(key["key"])
    page.get_by_role("button", name="Sign in").click()
    console.wait_ready("overview")

    api.delete(f"/llm-ops/v1/api-keys/{key['id']}").raise_for_status()
    console.expect_console_error("status of 401")
    page.get_by_role("button", name="Refresh").click()

    console.wait_ready("sign-in")
    expect(page.get_by_role("status")).to_contain_text("session ended")
