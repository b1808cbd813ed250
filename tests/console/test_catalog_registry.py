"""The catalog and the Hugging Face Hub in the console, with the real Hub plugin against the
Hub double (llmops.testing.hf): an editor searches the Hub from the import page, picks a
revision, imports and follows the import to ready, and lands on the model page with its
registry metadata, files and links; "Check for updates" lists what changed upstream
without moving the pin; a pickle-only repository is refused with the reason; the model
list's search marks catalog and Hub rows; an export creates the repository on the Hub; a
viewer gets none of the controls; and a Hub that is down is shown as degraded."""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from llmops.testing.console import (
    Console,
    ConsoleNotBuilt,
    ConsoleServer,
    console_tab,
    running_platform,
)
from llmops.testing.hf import HfHubDouble, running_hf_hub
from llmops.testing.waiting import wait_for

API = "/llm-ops/v1"
MODELS = f"{API}/catalog/models"
#: an import of a few tiny files takes well under a second; the page polls every second
IMPORTED = 30_000
CONFIG = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_layer": 2}


def safetensors_bytes(*values: float) -> bytes:
    """A safetensors file holding one float32 tensor ``w`` with ``values``."""
    data = struct.pack(f"<{len(values)}f", *values)
    header = json.dumps(
        {"w": {"dtype": "F32", "shape": [len(values)], "data_offsets": [0, len(data)]}}
    ).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + data


def tiny_files(extra: dict[str, bytes | str] | None = None) -> dict[str, bytes | str]:
    """A tiny safetensors model: config, weights, tokenizer files."""
    files: dict[str, bytes | str] = {
        "config.json": json.dumps(CONFIG),
        "model.safetensors": safetensors_bytes(0.5, -1.0, 2.0, 0.25),
        "tokenizer.json": json.dumps({"version": "1.0", "model": {"type": "WordLevel"}}),
        "tokenizer_config.json": json.dumps({"model_max_length": 64}),
    }
    files.update(extra or {})
    return files


@dataclass(frozen=True)
class HubPlatform:
    server: ConsoleServer
    hub: HfHubDouble


@pytest.fixture(scope="module")
def hub_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubPlatform]:
    home = tmp_path_factory.mktemp("hub-console-home")
    with running_hf_hub(work_dir=tmp_path_factory.mktemp("hub-console-double")) as hub:
        env = {
            "LLMOPS_PLUGINS": "hf",
            "LLMOPS_HF__ENDPOINT": hub.url,
            "LLMOPS_HF__TOKEN": hub.write_token,
            "LLMOPS_HF__CACHE_DIR": str(home / "hf-cache"),
            "LLMOPS_HF__REQUEST_TIMEOUT_SECONDS": "3",
            "LLMOPS_HF__RETRY_BUDGET_SECONDS": "1",
            "LLMOPS_CIRCUIT_RESET_SECONDS": "0.5",
            "LLMOPS_HEALTH_CACHE_SECONDS": "0.1",
            "HF_HOME": str(home / "hf-home"),
            # online, whatever an earlier test of this process set (llmops.testing.models
            # turns huggingface_hub offline for transformers): offline, the Hub plugin
            # takes the Hub for down
            "HF_HUB_OFFLINE": "0",
            "TRANSFORMERS_OFFLINE": "0",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            # the double does not model Xet uploads (exports go through plain LFS)
            "HF_HUB_DISABLE_XET": "1",
        }
        try:
            with running_platform(env=env) as server:
                yield HubPlatform(server, hub)
        except ConsoleNotBuilt as exc:
            pytest.fail(str(exc))
        hub.check_errors()


@pytest.fixture
def tab(
    hub_platform: HubPlatform, browser: Browser, request: pytest.FixtureRequest
) -> Iterator[Console]:
    with console_tab(hub_platform.server, browser, request) as console:
        yield console


@pytest.fixture
def hub(hub_platform: HubPlatform) -> HfHubDouble:
    return hub_platform.hub


@pytest.fixture
def server(hub_platform: HubPlatform) -> ConsoleServer:
    return hub_platform.server


def _seed(
    hub: HfHubDouble, repo: str, files: dict[str, bytes | str] | None = None, **options: Any
) -> str:
    """``repo`` on the double (the tiny model's files, license mit); the head's sha."""
    options.setdefault("license", "mit")
    options.setdefault("pipeline_tag", "text-generation")
    options.setdefault("library_name", "transformers")
    options.setdefault("tags", ["tiny", "console"])
    return hub.add_repo(repo, tiny_files() if files is None else files, **options)


def _import(server: ConsoleServer, repo: str, revision: str = "main") -> dict[str, Any]:
    """``repo`` imported through the API, once it is ready."""
    accepted = server.api.post(f"{MODELS}/import", json={"repoId": repo, "revision": revision})
    assert accepted.status_code == 202, accepted.text
    model_id = accepted.json()["id"]

    def ready() -> dict[str, Any] | None:
        model: dict[str, Any] = server.api.get(f"{MODELS}/{model_id}").json()
        assert model["status"] != "failed", model["importStatus"]
        return model if model["status"] == "ready" else None

    model = wait_for(ready, timeout=30, what=f"the import of {repo} to be ready")
    assert model is not None
    return model


def _registry(page: Page) -> Any:
    return page.get_by_test_id("registry")


#: records, in the page, each distinct (state, percent) the import's progress shows
WATCH_PROGRESS = """() => {
  window.__progress = [];
  const snap = () => {
    const panel = document.querySelector('[data-testid="import-progress"]');
    if (!panel) return;
    const bar = panel.querySelector('[role=progressbar]');
    const seen = [panel.dataset.state, bar.getAttribute('aria-valuenow')];
    const last = window.__progress[window.__progress.length - 1];
    if (!last || last[0] !== seen[0] || last[1] !== seen[1]) window.__progress.push(seen);
  };
  new MutationObserver(snap).observe(document.body, {
    subtree: true, childList: true, attributes: true, characterData: true,
  });
}"""


def test_an_editor_imports_a_hub_model_at_a_chosen_revision_and_lands_on_its_page(
    tab: Console, hub: HfHubDouble, server: ConsoleServer, unique: Callable[[str], str]
) -> None:
    name = unique("tiny")
    repo = f"acme/{name}"
    tagged = _seed(hub, repo, downloads=1234, likes=5)
    hub.create_tag(repo, "v1", tagged)
    head = hub.push_commit(repo, {"config.json": json.dumps({**CONFIG, "n_layer": 4})})
    hub.create_branch(repo, "dev", head)
    hashes = hub.file_hashes(repo, tagged)

    tab.sign_in("editor")
    page = tab.open("/models", "models")
    page.locator(".page-header").get_by_role("link", name="Import from Hub").click()
    tab.wait_ready("model-import")

    page.get_by_label("Search the Hub").fill(name)
    page.get_by_role("button", name="Search", exact=True).click()
    row = page.get_by_test_id("hub-results").locator(f'tr[data-repo="{repo}"]')
    expect(row).to_contain_text("text-generation")
    expect(row).to_contain_text("transformers")
    expect(row).to_contain_text("1.2k")
    expect(row.locator("td").nth(4)).to_have_text("5")
    expect(row.get_by_test_id("imported-marker")).to_have_text("—")
    tab.screenshot("registry-import-search")

    row.get_by_role("button", name=repo).click()
    chosen = page.get_by_test_id("hub-model")
    expect(chosen.get_by_test_id("resolved-commit")).to_have_attribute("data-commit", head)
    expect(chosen.get_by_test_id("hub-license")).to_have_text("mit")
    files = chosen.get_by_test_id("hub-files")
    weights = len(tiny_files()["model.safetensors"])
    expect(files.locator('tr[data-path="model.safetensors"]')).to_contain_text(f"{weights} B")
    expect(files.locator('tr[data-path="tokenizer.json"]')).to_be_visible()
    chosen.get_by_text("Model card").click()
    expect(chosen.get_by_test_id("hub-card")).to_contain_text("license: mit")

    revision = chosen.get_by_label("Revision")
    expect(revision.locator("option")).to_have_text(
        [
            f"main (branch) · {head[:12]}",
            f"dev (branch) · {head[:12]}",
            f"v1 (tag) · {tagged[:12]}",
            "A commit…",
        ]
    )
    revision.select_option("v1")
    resolved = chosen.get_by_test_id("resolved-commit")
    expect(resolved).to_have_attribute("data-commit", tagged)
    expect(resolved).to_contain_text(f"v1 resolves to commit {tagged}")

    # a commit typed in: a short sha is refused by the form, the full one loads
    revision.select_option(label="A commit…")
    chosen.get_by_label("Commit sha").fill(head[:7])
    chosen.get_by_role("button", name="Use commit").click()
    expect(chosen.get_by_role("alert")).to_contain_text("40 hexadecimal digits")
    chosen.get_by_label("Commit sha").fill(head)
    chosen.get_by_role("button", name="Use commit").click()
    expect(resolved).to_have_attribute("data-commit", head)
    revision.select_option("v1")
    expect(resolved).to_have_attribute("data-commit", tagged)
    tab.screenshot("registry-import-chosen")

    page.evaluate(WATCH_PROGRESS)
    hub.slow(0.2)  # the files come slowly enough for the page to show them on their way
    try:
        chosen.get_by_role("button", name="Import", exact=True).click()
        progress = page.get_by_test_id("import-result").get_by_test_id("import-progress")
        expect(progress).to_have_attribute("data-state", "ready", timeout=IMPORTED)
    finally:
        hub.clear_faults()
    expect(progress.get_by_role("progressbar", name="Import progress")).to_have_attribute(
        "aria-valuenow", "100"
    )
    expect(progress.get_by_test_id("import-files")).to_contain_text(
        f"{len(hashes)} of {len(hashes)} files"
    )
    seen = page.evaluate("() => window.__progress")
    states = [state for state, _ in seen]
    assert states[0] == "importing", seen
    assert states[-1] == "ready", seen
    percents = [int(p) for _, p in seen if p is not None]
    assert percents == sorted(percents), f"the progress went backwards: {seen}"
    tab.screenshot("registry-import-ready")

    page.get_by_role("link", name="Open the model").click()
    tab.wait_ready("model")
    registry = _registry(page)
    expect(registry.get_by_test_id("registry-source")).to_have_text(f"hf://{repo}@{tagged}")
    expect(registry.get_by_test_id("pinned-commit")).to_have_text(tagged)
    expect(registry.get_by_test_id("registry-license")).to_have_text("mit")
    expect(registry).to_contain_text("text-generation")
    for path, sha256 in hashes.items():
        file_row = registry.get_by_test_id("model-files").locator(f'tr[data-path="{path}"]')
        expect(file_row.get_by_test_id("file-sha256")).to_have_text(sha256)
    links = registry.get_by_test_id("registry-links").get_by_role("link")
    expect(links).to_have_count(3)
    commit_link = registry.get_by_role("link", name=f"Commit {tagged[:12]}")
    expect(commit_link).to_have_attribute("href", f"{hub.url}/{repo}/commit/{tagged}")
    for index in range(3):
        expect(links.nth(index)).to_have_attribute("rel", "noopener noreferrer")
        expect(links.nth(index)).to_have_attribute("target", "_blank")
    registry.get_by_role("button", name="Show the card").click()
    expect(registry.get_by_test_id("model-card")).to_contain_text("license: mit")
    tab.screenshot("registry-model-detail")

    model_id = page.url.rsplit("/", 1)[-1]
    model = server.api.get(f"{MODELS}/{model_id}").json()
    assert model["status"] == "ready"
    assert model["source"] == f"hf://{repo}@{tagged}"

    # the Hub's row now says the repository is in the catalog, and links the model
    page = tab.open(f"/models/import?q={name}", "model-import")
    marker = page.get_by_test_id("hub-results").locator(f'tr[data-repo="{repo}"]')
    link = marker.get_by_test_id("imported-marker").get_by_role("link", name="Imported")
    expect(link).to_have_attribute("href", f"/models/{model_id}")


def test_the_model_page_follows_an_import_under_way_until_it_is_ready(
    tab: Console, hub: HfHubDouble, server: ConsoleServer, unique: Callable[[str], str]
) -> None:
    repo = f"acme/{unique('arriving')}"
    head = _seed(hub, repo)
    hashes = hub.file_hashes(repo, head)
    tab.sign_in("editor")
    hub.slow(0.4)  # each answer of the Hub waits: the import lasts a few seconds
    try:
        accepted = server.api.post(f"{MODELS}/import", json={"repoId": repo})
        assert accepted.status_code == 202, accepted.text
        page = tab.open(f"/models/{accepted.json()['id']}", "model")
        progress = page.get_by_test_id("model-import").get_by_test_id("import-progress")
        expect(progress).to_have_attribute("data-state", "importing")
        expect(page.locator('.details [data-status="importing"]')).to_be_visible()
        expect(page.get_by_role("button", name="Mark ready")).to_have_count(0)
        tab.screenshot("registry-model-importing")

        # the page refreshes by itself until the files are on disk
        expect(page.get_by_test_id("model-import")).to_have_count(0, timeout=IMPORTED)
    finally:
        hub.clear_faults()
    expect(page.locator('.details [data-status="ready"]')).to_be_visible()
    files = _registry(page).get_by_test_id("model-files")
    for path, sha256 in hashes.items():
        row = files.locator(f'tr[data-path="{path}"]')
        expect(row.get_by_test_id("file-sha256")).to_have_text(sha256)


def test_check_for_updates_lists_the_changed_files_and_commits_and_the_pin_stays(
    tab: Console, hub: HfHubDouble, server: ConsoleServer, unique: Callable[[str], str]
) -> None:
    repo = f"acme/{unique('moving')}"
    pinned = _seed(hub, repo)
    model = _import(server, repo)
    newer = hub.push_commit(
        repo,
        {"config.json": json.dumps({**CONFIG, "n_layer": 12}), "generation_config.json": "{}"},
        ["tokenizer_config.json"],
        message="Grow the model",
    )

    tab.sign_in("editor")
    page = tab.open(f"/models/{model['id']}", "model")
    registry = _registry(page)
    expect(registry.get_by_test_id("branch-followed")).to_have_text("main")
    registry.get_by_role("button", name="Check for updates").click()

    check = registry.get_by_test_id("update-check")
    expect(check).to_have_attribute("data-update", "true")
    expect(check.get_by_test_id("update-summary")).to_contain_text(
        f"Update available on main ({newer[:12]}): 1 commit, 1 file added, 1 removed, 1 modified."
    )
    changed = check.get_by_test_id("update-files")
    config_row = changed.locator('tr[data-path="config.json"]')
    expect(config_row).to_have_attribute("data-change", "modified")
    old_size = len(json.dumps(CONFIG))
    new_size = len(json.dumps({**CONFIG, "n_layer": 12}))
    expect(config_row).to_contain_text(f"{old_size} B → {new_size} B")
    expect(changed.locator('tr[data-path="generation_config.json"]')).to_have_attribute(
        "data-change", "added"
    )
    expect(changed.locator('tr[data-path="tokenizer_config.json"]')).to_have_attribute(
        "data-change", "removed"
    )
    commits = check.get_by_test_id("update-commits").locator("li")
    expect(commits).to_have_count(1)
    expect(commits.first).to_contain_text(f"{newer[:12]} Grow the model")
    expect(check.get_by_test_id("pin-unchanged")).to_contain_text(
        f"The pin did not move: the model stays at {pinned[:12]}"
    )
    expect(registry.get_by_test_id("pinned-commit")).to_have_text(pinned)
    tab.screenshot("registry-update-check")

    after = server.api.get(f"{MODELS}/{model['id']}").json()
    assert after["source"] == f"hf://{repo}@{pinned}"
    assert after["importedFrom"]["revision"] == pinned
    assert after["importedFrom"]["updateAvailable"] is True


def test_a_pickle_only_repository_is_refused_with_the_reason_and_no_model_is_created(
    tab: Console, hub: HfHubDouble, server: ConsoleServer, unique: Callable[[str], str]
) -> None:
    name = unique("pickled")
    repo = f"acme/{name}"
    _seed(hub, repo, {"config.json": json.dumps(CONFIG), "pytorch_model.bin": b"\x80\x02}q\x00."})
    assert server.api.get(MODELS, params={"q": name}).json()["items"] == []

    tab.sign_in("editor")
    tab.expect_console_error("status of 422")
    page = tab.open(f"/models/import?repoId={repo}", "model-import")
    chosen = page.get_by_test_id("hub-model")
    expect(
        chosen.get_by_test_id("hub-files").locator('tr[data-path="pytorch_model.bin"]')
    ).to_be_visible()
    chosen.get_by_role("button", name="Import", exact=True).click()

    alert = chosen.get_by_test_id("import-form").get_by_role("alert")
    expect(alert).to_contain_text("The import was refused")
    expect(alert).to_contain_text("pickle files only (pytorch_model.bin)")
    expect(page.get_by_test_id("import-result")).to_have_count(0)
    expect(chosen.get_by_role("button", name="Import", exact=True)).to_be_enabled()
    tab.screenshot("registry-import-refused")

    assert server.api.get(MODELS, params={"q": name}).json()["items"] == []


def test_the_model_list_search_shows_catalog_and_hub_results_marked_with_their_source(
    tab: Console, hub: HfHubDouble, server: ConsoleServer, unique: Callable[[str], str]
) -> None:
    word = unique("both")
    local = server.api.post(MODELS, json={"name": f"{word}-local", "task": "text-generation"})
    assert local.status_code == 201, local.text
    repo = f"acme/{word}-hub"
    _seed(hub, repo)

    tab.sign_in("editor")
    page = tab.open(f"/models?q={word}", "models")
    rows = page.locator("table.data tbody tr")
    expect(rows).to_have_count(2)
    catalog_row = page.locator('tr[data-source="catalog"]')
    hub_row = page.locator('tr[data-source="hf"]')
    expect(catalog_row.get_by_test_id("row-source")).to_have_text("Catalog")
    expect(catalog_row.get_by_role("link", name=f"{word}-local")).to_have_attribute(
        "href", f"/models/{local.json()['id']}"
    )
    expect(hub_row.get_by_test_id("row-source")).to_have_text("Hugging Face")
    hub_link = hub_row.get_by_role("link", name=repo)
    expect(hub_link).to_have_attribute("href", f"/models/import?repoId={repo.replace('/', '%2F')}")
    tab.screenshot("registry-model-list-search")

    # a filter the Hub has no answer for (a catalog status) leaves its rows out
    page.get_by_label("Status").select_option("registered")
    expect(rows).to_have_count(1)
    expect(page.locator('tr[data-source="hf"]')).to_have_count(0)
    page.get_by_label("Status").select_option("")
    expect(rows).to_have_count(2)

    page.locator('tr[data-source="hf"]').get_by_role("link", name=repo).click()
    tab.wait_ready("model-import")
    chosen = page.get_by_test_id("hub-model")
    expect(chosen).to_have_attribute("data-repo", repo)
    expect(chosen.get_by_test_id("hub-license")).to_have_text("mit")


def test_export_from_the_model_page_creates_a_private_repository_on_the_hub(
    tab: Console, hub: HfHubDouble, server: ConsoleServer, unique: Callable[[str], str]
) -> None:
    source = f"acme/{unique('source')}"
    _seed(hub, source)
    model = _import(server, source)
    target = f"{hub.user}/{unique('exported')}"

    tab.sign_in("editor")
    page = tab.open(f"/models/{model['id']}", "model")
    form = page.get_by_test_id("export-form")
    expect(form.get_by_label("Private repository")).to_be_checked()
    expect(form.get_by_label("Open as a pull request")).not_to_be_checked()
    form.get_by_label("Repository id").fill("not a repo")
    form.get_by_role("button", name="Export").click()
    expect(form.get_by_text("A repository id: owner/name")).to_be_visible()
    form.get_by_label("Repository id").fill(target)
    form.get_by_label("Commit message").fill("From the console")
    form.get_by_role("button", name="Export").click()

    row = page.get_by_test_id("exports").locator(f'tr[data-repo="{target}"]')
    expect(row).to_have_attribute("data-state", "succeeded", timeout=IMPORTED)
    expect(row).to_contain_text("Private")
    assert hub.has_repo(target)
    assert hub.is_private(target)
    head = hub.head(target)
    commit = row.get_by_role("link", name=re.compile(head[:12]))
    expect(commit).to_have_attribute("href", f"{hub.url}/{target}/commit/{head}")
    expect(commit).to_have_attribute("rel", "noopener noreferrer")
    assert (
        hub.file_hashes(target)["model.safetensors"] == hub.file_hashes(source)["model.safetensors"]
    )
    tab.screenshot("registry-export")


def test_a_viewer_sees_the_registry_section_without_import_or_export_controls(
    tab: Console, hub: HfHubDouble, server: ConsoleServer, unique: Callable[[str], str]
) -> None:
    repo = f"acme/{unique('viewed')}"
    pinned = _seed(hub, repo)
    model = _import(server, repo)

    tab.sign_in("viewer")
    page = tab.open("/models", "models")
    expect(page.get_by_role("heading", level=1)).to_have_text("Models")
    expect(page.get_by_role("link", name="Import from Hub")).to_have_count(0)

    page = tab.open(f"/models/{model['id']}", "model")
    registry = _registry(page)
    expect(registry.get_by_test_id("pinned-commit")).to_have_text(pinned)
    expect(registry.get_by_test_id("registry-links").get_by_role("link")).to_have_count(3)
    expect(page.get_by_role("button", name="Check for updates")).to_have_count(0)
    expect(page.get_by_test_id("export-form")).to_have_count(0)
    expect(page.get_by_role("button", name="Export")).to_have_count(0)

    page = tab.open(f"/models/import?repoId={repo}", "not-found")
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()


def test_the_import_page_shows_the_hub_as_degraded_when_it_is_down(
    tab: Console, hub: HfHubDouble, server: ConsoleServer, unique: Callable[[str], str]
) -> None:
    name = unique("offline")
    repo = f"acme/{name}"
    head = _seed(hub, repo)
    # seen once while the Hub is up: its metadata is in the plugin's cache
    seen = server.api.get(f"{API}/catalog/registry/hf/models/{repo}")
    assert seen.status_code == 200, seen.text

    tab.sign_in("editor")
    hub.down()
    try:
        page = tab.open(f"/models/import?q={name}", "model-import")
        banner = page.get_by_test_id("degraded").first
        expect(banner).to_contain_text("no registry results")
        expect(banner).to_contain_text("the Hub cannot be reached")
        expect(page.get_by_test_id("hub-results")).to_have_count(0)
        tab.screenshot("registry-import-degraded")

        page = tab.open(f"/models/import?repoId={repo}", "model-import")
        chosen = page.get_by_test_id("hub-model")
        expect(chosen.get_by_test_id("degraded")).to_contain_text("served from the local cache")
        expect(chosen.get_by_test_id("resolved-commit")).to_have_attribute("data-commit", head)
        # no branches or tags listed from the cache: the field takes any revision
        expect(chosen.get_by_label("Revision (a branch, a tag or a commit sha)")).to_be_visible()

        # the model list's search: the catalog's rows, and why the Hub's are missing
        page = tab.open(f"/models?q={name}", "models")
        expect(page.get_by_test_id("degraded")).to_contain_text("the Hub cannot be reached")
        expect(page.get_by_test_id("empty-state")).to_contain_text("No model matches these filters")
    finally:
        hub.up()

    def answered() -> bool:
        found = server.api.get(f"{MODELS}/search", params={"q": name}).json()
        return not found["degraded"]

    # the next test meets a Hub the platform knows is back
    wait_for(answered, timeout=20, what="the platform to reach the Hub again")
