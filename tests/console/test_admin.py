"""The administration pages: integrations (feature flags, settings, connection test),
the retry queue, the audit log and API keys; and that only admins reach them.

The server is shared with every console test: whatever a test changes on a plugin is put
back in a ``finally`` block.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from playwright.sync_api import expect

from llmops.testing.console import Console
from llmops.testing.waiting import wait_for

API = "/llm-ops/v1"


def _example(api: httpx.Client) -> dict[str, Any]:
    answer = api.get(f"{API}/integrations/example")
    answer.raise_for_status()
    plugin: dict[str, Any] = answer.json()
    return plugin


@contextmanager
def _example_restored(api: httpx.Client) -> Iterator[None]:
    """Whatever the test does to the example plugin, it ends enabled with no settings."""
    try:
        yield
    finally:
        api.patch(f"{API}/integrations/example", json={"enabled": True}).raise_for_status()
        api.put(
            f"{API}/integrations/example/config",
            json={"settings": {"root": None, "api_token": None}},
        ).raise_for_status()


def test_disabling_and_re_enabling_a_plugin_takes_effect_at_once(console: Console) -> None:
    api = console.server.api
    console.sign_in("admin")
    with _example_restored(api):
        page = console.open("/admin/integrations", "integrations")
        expect(page.get_by_role("heading", name="Integrations")).to_be_visible()
        # a disabled plugin is not loaded, so it shows its name instead of its display name
        example = page.get_by_role("row").filter(has=page.get_by_text("example", exact=True))
        switch = example.get_by_role("switch", name="Enabled")
        expect(switch).to_be_checked()
        expect(example.get_by_text("Ok", exact=True)).to_be_visible()
        # the built-in orchestrator cannot be turned off, and says why
        local = page.get_by_role("row").filter(has=page.get_by_text("local", exact=True))
        expect(local.get_by_role("switch", name="Enabled")).to_be_disabled()
        expect(local).to_contain_text("Built in")
        tracking_default = page.get_by_label("Tracking", exact=True)
        expect(tracking_default).to_have_value("example")
        console.screenshot("admin-integrations")

        switch.uncheck()

        expect(page.get_by_role("status").filter(has_text="disabled")).to_be_visible()
        expect(switch).not_to_be_checked()
        expect(example).to_contain_text("Disabled")
        # no enabled plugin offers tracking any more: no default to choose
        expect(tracking_default).to_be_disabled()
        assert _example(api)["enabled"] is False

        switch.check()

        expect(switch).to_be_checked()
        expect(tracking_default).to_have_value("example")
        expect(tracking_default).to_be_enabled()
        plugin = _example(api)
        assert plugin["enabled"] is True
        assert plugin["defaultFor"] == ["tracking"]


def test_two_serving_plugins_of_the_same_priority_ask_the_admin_to_choose(
    console: Console,
) -> None:
    """KServe and Ray Serve both offer serving with the same priority: the platform picks
    neither by name; the page says a choice is needed until the admin makes it."""
    api = console.server.api
    console.sign_in("admin")
    try:
        for name in ("kserve", "rayserve"):
            api.patch(f"{API}/integrations/{name}", json={"enabled": True}).raise_for_status()
        # a KServe that can reach a cluster (an address nothing answers on: it is never
        # called here); without one it offers no framework and shows "not configured"
        kserve = api.put(
            f"{API}/integrations/kserve/config",
            json={"settings": {"api_url": "https://93.184.216.34:6443"}},
        )
        assert kserve.status_code == 200, kserve.text
        page = console.open("/admin/integrations", "integrations")
        banner = page.get_by_test_id("choice-needed")
        expect(banner).to_contain_text("Choose the Serving provider.")
        expect(banner).to_contain_text("kserve and rayserve")
        serving = page.get_by_label("Serving", exact=True)
        expect(serving).to_have_value("")
        console.screenshot("admin-integrations-choice-needed")

        serving.select_option("rayserve")

        chosen = page.get_by_role("status").filter(has_text="rayserve is now the default")
        expect(chosen).to_be_visible()
        expect(banner).to_have_count(0)
        expect(serving).to_have_value("rayserve")
        assert api.get(f"{API}/health").json()["choicesNeeded"] == []
    finally:
        api.put(f"{API}/integrations/kserve/config", json={"settings": {"api_url": None}})
        for name in ("kserve", "rayserve"):
            api.patch(f"{API}/integrations/{name}", json={"enabled": False}).raise_for_status()


def test_a_plugin_whose_tool_is_not_configured_says_so(console: Console) -> None:
    """KServe with no way to a cluster (the console's server has none) offers no serving
    framework: the page says it is not configured rather than listing a provider every
    call to which would fail."""
    api = console.server.api
    console.sign_in("admin")
    try:
        api.patch(f"{API}/integrations/kserve", json={"enabled": True}).raise_for_status()
        page = console.open("/admin/integrations", "integrations")
        kserve = page.get_by_role("row").filter(has=page.get_by_text("KServe", exact=True))
        expect(kserve).to_contain_text("Serving · not configured")
        expect(kserve.get_by_test_id("not-configured")).to_be_visible()
        expect(page.get_by_test_id("choice-needed")).to_have_count(0)
    finally:
        api.patch(f"{API}/integrations/kserve", json={"enabled": False}).raise_for_status()


def test_the_settings_form_saves_a_value_and_a_write_only_secret(
    console: Console, unique: Callable[[str], str]
) -> None:
    api = console.server.api
    root = str(console.server.data_dir / unique("runs"))
    secret = f"tok-{uuid.uuid4().hex}"
    console.sign_in("admin")
    with _example_restored(api):
        page = console.open("/admin/integrations/example", "integration")
        expect(page.get_by_role("heading", name="Example JSON tracker")).to_be_visible()
        form = page.get_by_role("form", name="Settings")
        token = form.get_by_label("API token", exact=True)
        expect(form.get_by_test_id("secret-state")).to_have_text("Not set")

        form.get_by_label("Root", exact=True).fill(root)
        token.fill(secret)
        form.get_by_role("button", name="Save settings").click()

        expect(page.get_by_role("status").filter(has_text="Settings saved")).to_be_visible()
        expect(form.get_by_test_id("secret-state")).to_have_text("Set")
        expect(token).to_have_value("")
        expect(form.get_by_label("Root", exact=True)).to_have_value(root)
        plugin = _example(api)
        assert plugin["settings"]["root"] == root
        assert plugin["secretsSet"] == {"api_token": True}
        assert secret not in api.get(f"{API}/integrations/example").text
        assert secret not in page.content()
        console.screenshot("admin-integration-settings")

        # a fresh load: the value is there, the secret only as "Set"
        page = console.open("/admin/integrations/example", "integration")
        form = page.get_by_role("form", name="Settings")
        expect(form.get_by_label("Root", exact=True)).to_have_value(root)
        expect(form.get_by_test_id("secret-state")).to_have_text("Set")
        expect(form.get_by_label("API token", exact=True)).to_have_value("")
        assert secret not in page.content()

        # clearing both: the value goes back to the default, the secret is removed
        form.get_by_label("Root", exact=True).fill("")
        form.get_by_label("Clear the stored API token").check()
        expect(form.get_by_label("API token", exact=True)).to_be_disabled()
        form.get_by_role("button", name="Save settings").click()

        expect(form.get_by_test_id("secret-state")).to_have_text("Not set")
        plugin = _example(api)
        assert plugin["settings"]["root"] is None
        assert plugin["secretsSet"] == {"api_token": False}


def test_testing_the_connection_shows_each_providers_result(console: Console) -> None:
    console.sign_in("admin")
    page = console.open("/admin/integrations/example", "integration")

    page.get_by_role("button", name="Test connection").click()

    result = page.get_by_role("region", name="Connection test")
    expect(result).to_contain_text("Connected")
    row = result.get_by_role("row").filter(has_text="example")
    expect(row).to_contain_text("Tracking")
    expect(row).to_contain_text("Ok")
    expect(row).to_contain_text("writing runs to")
    expect(row.get_by_role("cell").nth(3)).to_have_text(re.compile(r"^\d+\.\d$"))
    console.screenshot("admin-integration-test")


def _waiting_run_creations(
    api: httpx.Client, unique: Callable[[str], str], count: int
) -> list[dict[str, Any]]:
    """``count`` experiment-run writes waiting in the retry queue for a disabled plugin:
    the tracker's folder cannot be written (the write waits), then its plugin is disabled
    (the write waits, unattempted, for the plugin to come back). The caller re-enables it."""
    api.put(
        f"{API}/integrations/example/config",
        json={"settings": {"root": f"/proc/{unique('nowhere')}"}},
    ).raise_for_status()
    arranged = []
    for _ in range(count):
        body = {"name": unique("queue"), "command": ["true"], "track": False}
        job = api.post(f"{API}/training/jobs", json=body)
        job.raise_for_status()
        run = api.post(f"{API}/training/jobs/{job.json()['id']}/experiment-run", json={})
        assert run.status_code == 202, run.text  # degraded: waits in the retry queue
        arranged.append({"job": job.json(), "run": run.json()})
    api.patch(f"{API}/integrations/example", json={"enabled": False}).raise_for_status()

    def waiting() -> bool:
        operations = [
            api.get(f"{API}/operations/{a['run']['operationId']}").json() for a in arranged
        ]
        return all(
            op["status"] == "pending" and "not enabled" in (op["lastError"] or "")
            for op in operations
        )

    wait_for(waiting, timeout=30, what="the queued writes to wait for the disabled plugin")
    return arranged


def test_the_retry_queue_shows_writes_waiting_for_a_disabled_plugin_and_retries_or_discards_them(
    console: Console, unique: Callable[[str], str]
) -> None:
    api = console.server.api
    console.sign_in("admin")
    with _example_restored(api):
        retried, discarded = _waiting_run_creations(api, unique, 2)

        page = console.open("/admin/operations?kind=run.create", "operations")
        expect(page.get_by_label("Kind")).to_have_value("run.create")
        first = page.get_by_role("row").filter(has_text=retried["run"]["id"])
        second = page.get_by_role("row").filter(has_text=discarded["run"]["id"])
        for row in (first, second):
            expect(row).to_contain_text("Experiment run")
            expect(row).to_contain_text("Pending")
            expect(row).to_contain_text("waiting until it is enabled again")  # the last error
        console.screenshot("admin-operations")

        second.get_by_role("button", name="Discard").click()
        second.get_by_role("group", name="Discard this write?").get_by_role(
            "button", name="Discard"
        ).click()

        expect(second).to_contain_text("Discarded")
        expect(second.get_by_role("button", name="Retry")).to_have_count(0)
        discarded_id = discarded["run"]["operationId"]
        assert api.get(f"{API}/operations/{discarded_id}").json()["status"] == "discarded"

    # the plugin is back (enabled, its folder writable): a retry delivers at once
    first.get_by_role("button", name="Retry").click()

    expect(page.get_by_role("status").filter(has_text="queued again")).to_be_visible()
    retried_id = retried["run"]["operationId"]
    wait_for(
        lambda: api.get(f"{API}/operations/{retried_id}").json()["status"] == "succeeded",
        timeout=15,
        what="the retried write to reach the tracker",
    )
    assert api.get(f"{API}/operations/{discarded_id}").json()["status"] == "discarded"

    # a write about a resource the console shows links to it
    pipeline_id = retried["job"]["pipelineId"]
    page = console.open(f"/admin/operations?resourceId={pipeline_id}", "operations")
    row = page.get_by_role("row").filter(has_text="pipeline.submit")
    expect(row.get_by_role("link", name="Pipeline")).to_have_attribute(
        "href", f"/pipelines/{pipeline_id}"
    )
    expect(row).to_contain_text("Succeeded")


def test_the_audit_log_filters_by_actor_and_action(
    console: Console, unique: Callable[[str], str]
) -> None:
    api = console.server.api
    actor = unique("auditor")
    created = api.post(f"{API}/api-keys", json={"name": actor, "role": "editor"})
    created.raise_for_status()
    as_actor = {"Authorization": f"Bearer {created.json()['key']}"}
    for _ in range(2):
        api.post(
            f"{API}/catalog/models",
            json={"name": unique("audited"), "version": "1"},
            headers=as_actor,
        ).raise_for_status()
    api.post(
        f"{API}/catalog/datasets", json={"name": unique("audited")}, headers=as_actor
    ).raise_for_status()
    console.sign_in("admin")
    page = console.open("/admin/audit-logs", "audit-logs")
    rows = page.locator("table.data tbody tr")

    page.get_by_label("Actor").fill(actor)

    expect(page).to_have_url(re.compile(rf"actor={actor}"))
    expect(rows).to_have_count(3)
    for i in range(3):
        expect(rows.nth(i)).to_contain_text(actor)

    page.get_by_label("Action").fill("create_model")

    expect(page).to_have_url(re.compile(r"action=create_model"))
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("catalog/models")
    expect(rows.first).to_contain_text("201")
    expect(rows.first).to_contain_text("Success")
    console.screenshot("admin-audit-log")

    # the filters live in the URL: a shared link shows the same entries
    page = console.open(f"/admin/audit-logs?actor={actor}&action=create_dataset", "audit-logs")
    expect(page.get_by_label("Actor")).to_have_value(actor)
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("catalog/datasets")


def test_a_new_api_key_is_shown_once_and_can_be_revoked(
    console: Console, unique: Callable[[str], str]
) -> None:
    api = console.server.api
    name = unique("robot")
    console.sign_in("admin")
    page = console.open("/admin/api-keys", "api-keys")

    page.get_by_label("Name").fill(name)
    page.get_by_label("Role", exact=True).first.select_option("editor")
    page.get_by_role("button", name="Create key").click()

    shown = page.get_by_role("region", name="New API key")
    expect(shown).to_contain_text("cannot be shown again")
    box = shown.get_by_role("textbox", name="New API key")
    key = box.input_value()
    assert key.startswith("llmops_")
    me = api.get(f"{API}/me", headers={"Authorization": f"Bearer {key}"}).json()
    assert (me["name"], me["role"]) == (name, "editor")
    shown.get_by_role("button", name="Copy").click()
    expect(shown.get_by_role("button", name="Copied")).to_be_visible()
    console.screenshot("admin-api-keys")

    shown.get_by_role("button", name="Done").click()

    expect(shown).to_have_count(0)
    assert key not in page.content()
    row = page.get_by_role("row").filter(has_text=name)
    expect(row).to_contain_text("Editor")
    expect(row).to_contain_text(key.split("_")[1])  # the prefix, never the key
    expect(row).to_contain_text("Active")

    row.get_by_role("button", name="Revoke").click()
    row.get_by_role("group").get_by_role("button", name="Revoke").click()

    expect(row).to_contain_text("Revoked")
    expect(row.get_by_role("button", name="Revoke")).to_have_count(0)
    assert api.get(f"{API}/me", headers={"Authorization": f"Bearer {key}"}).status_code == 401

    # revoking the key this console is signed in with asks with a clear warning
    page.get_by_label("Role", exact=True).last.select_option("admin")
    expect(page).to_have_url(re.compile(r"role=admin"))
    mine = page.get_by_role("row").filter(has=page.get_by_text("You", exact=True))
    mine.get_by_role("button", name="Revoke").click()
    expect(mine.get_by_role("group")).to_contain_text("signed in with")
    expect(mine.get_by_role("button", name="Revoke and sign out")).to_be_visible()
    mine.get_by_role("button", name="Keep").click()
    expect(mine).to_contain_text("Active")


def test_an_editor_sees_no_administration(console: Console) -> None:
    page = console.sign_in("editor")
    console.wait_ready("overview")

    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Models")).to_be_visible()
    expect(nav.get_by_text("Administration")).to_have_count(0)
    expect(nav.get_by_role("link", name="Integrations")).to_have_count(0)
    expect(nav.get_by_role("link", name="API keys")).to_have_count(0)

    for path in ("/admin/integrations", "/admin/api-keys", "/admin/operations"):
        console.open(path, "not-found")
        expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
