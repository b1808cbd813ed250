"""The catalog pages: models and datasets, their forms, uploads, states and roles."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from llmops.testing.console import Console

MODELS = "/llm-ops/v1/catalog/models"
DATASETS = "/llm-ops/v1/catalog/datasets"


def _create(console: Console, url: str, body: dict[str, Any]) -> dict[str, Any]:
    created = console.server.api.post(url, json=body)
    created.raise_for_status()
    result: dict[str, Any] = created.json()
    return result


def test_creating_a_model_through_the_form_shows_it_on_its_page_and_in_the_list(
    console: Console, unique: Callable[[str], str]
) -> None:
    name = unique("console-model")
    console.sign_in("editor")
    page = console.open("/models", "models")
    console.screenshot("catalog-models-list")

    page.locator(".page-header").get_by_role("link", name="New model").click()
    console.wait_ready("model-create")
    page.get_by_label("Name").fill(name)
    page.get_by_label("Version").fill("2")
    page.get_by_label("Description").fill("A model made by the console test")
    page.get_by_label("Task").fill("text-generation")
    page.get_by_label("Tags").fill("console, test")
    console.screenshot("catalog-model-create")
    page.get_by_role("button", name="Create model").click()

    console.wait_ready("model")
    expect(page.get_by_role("heading", level=1)).to_have_text(name)
    expect(page.get_by_text("Version 2")).to_be_visible()
    expect(page.get_by_text("text-generation")).to_be_visible()
    expect(page.locator(".tag", has_text="console")).to_be_visible()
    console.screenshot("catalog-model-detail")
    model_id = page.url.rsplit("/", 1)[-1]
    assert console.server.api.get(f"{MODELS}/{model_id}").json()["name"] == name

    page.get_by_role("link", name="← Models").click()
    console.wait_ready("models")
    page.get_by_label("Search").fill(name)
    rows = page.locator("table.data tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first.get_by_role("link", name=name)).to_be_visible()
    expect(page).to_have_url(f"{console.server.url}/models?q={name}")


def test_uploading_a_file_shows_progress_up_to_100_percent_and_lists_it(
    console: Console, unique: Callable[[str], str], tmp_path: Path
) -> None:
    dataset = _create(console, DATASETS, {"name": unique("console-upload"), "format": "jsonl"})
    data = tmp_path / "train.jsonl"
    line = b'{"prompt": "hello", "completion": "world"}\n'
    data.write_bytes(line * (2 * 1024 * 1024 // len(line)))
    console.sign_in("editor")
    page = console.open(f"/datasets/{dataset['id']}", "dataset")
    expect(page.get_by_text("No files yet.")).to_be_visible()

    # slow the upload down (about 4 MB/s) so the bar moves through real progress events
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 4e6},
    )
    page.evaluate(
        """() => {
          window.__progressSeen = [];
          new MutationObserver(() => {
            const bar = document.querySelector('[role=progressbar]');
            if (bar) window.__progressSeen.push(Number(bar.getAttribute('aria-valuenow')));
          }).observe(document.body, {subtree: true, childList: true, attributes: true});
        }"""
    )
    page.get_by_label("Files", exact=True).set_input_files(str(data))
    page.get_by_role("button", name="Upload", exact=True).click()

    bar = page.get_by_role("progressbar", name="Upload progress")
    expect(bar).to_have_attribute("aria-valuenow", "100", timeout=20_000)
    expect(page.get_by_test_id("upload-progress")).to_contain_text("100%")
    expect(page.get_by_test_id("upload-result")).to_contain_text("Wrote 1 file: train.jsonl")
    row = page.locator("table.data tbody tr", has_text="train.jsonl")
    expect(row).to_contain_text("2.0 MB")
    expect(page.get_by_test_id("file-count")).to_have_text("1")
    seen = page.evaluate("() => window.__progressSeen")
    assert any(0 < value < 100 for value in seen), f"no progress between 0 and 100: {seen}"
    assert seen == sorted(seen), f"the progress went backwards: {seen}"
    console.screenshot("catalog-dataset-detail")

    files = console.server.api.get(f"{DATASETS}/{dataset['id']}").json()["files"]
    assert files == [{"path": "train.jsonl", "sizeBytes": data.stat().st_size}]


def test_creating_a_dataset_with_a_file_uploads_it_and_opens_the_dataset(
    console: Console, unique: Callable[[str], str], tmp_path: Path
) -> None:
    name = unique("console-dataset")
    sample = tmp_path / "eval.csv"
    sample.write_text("question,answer\nwhy,because\n")
    console.sign_in("editor")
    page = console.open("/datasets/new", "dataset-create")

    page.get_by_label("Name").fill("not a name!")
    page.get_by_role("button", name="Create dataset").click()
    expect(page.get_by_text("starting with a letter or digit")).to_be_visible()

    page.get_by_label("Name").fill(name)
    page.get_by_label("Description").fill("Evaluation questions")
    page.get_by_label("Format").fill("csv")
    page.get_by_label("Tags").fill("eval, console")
    page.get_by_label("Files", exact=True).set_input_files(str(sample))
    console.screenshot("catalog-dataset-create")
    page.get_by_role("button", name="Create dataset").click()

    console.wait_ready("dataset")
    expect(page.get_by_role("heading", level=1)).to_have_text(name)
    expect(page.locator("table.data tbody tr", has_text="eval.csv")).to_contain_text("28 B")
    expect(page.get_by_test_id("file-count")).to_have_text("1")
    expect(page.locator(".tag", has_text="eval")).to_be_visible()
    expect(page.get_by_text("Evaluation questions")).to_be_visible()

    page.get_by_role("link", name="← Datasets").click()
    console.wait_ready("datasets")
    page.get_by_label("Search").fill(name)
    row = page.locator("table.data tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("csv")
    expect(row).to_contain_text("28 B")
    console.screenshot("catalog-datasets-list")


def test_deleting_a_dataset_asks_first_and_returns_to_the_list(
    console: Console, unique: Callable[[str], str]
) -> None:
    dataset = _create(console, DATASETS, {"name": unique("console-doomed")})
    console.sign_in("editor")
    page = console.open(f"/datasets/{dataset['id']}", "dataset")

    page.get_by_role("button", name="Delete").click()
    confirm = page.get_by_role("group", name="Delete this dataset and all its files?")
    confirm.get_by_role("button", name="Delete").click()

    console.wait_ready("datasets")
    expect(page).to_have_url(f"{console.server.url}/datasets")
    assert console.server.api.get(f"{DATASETS}/{dataset['id']}").status_code == 404


@pytest.mark.parametrize(
    ("path", "ready", "api", "empty_title"),
    [
        ("/models", "models", MODELS, "No model matches these filters"),
        ("/datasets", "datasets", DATASETS, "No dataset matches this search"),
    ],
)
def test_a_catalog_list_says_when_nothing_matches_and_recovers_from_an_error(
    console: Console,
    unique: Callable[[str], str],
    path: str,
    ready: str,
    api: str,
    empty_title: str,
) -> None:
    name = unique("console-listed")
    _create(console, api, {"name": name})
    console.sign_in("viewer")

    page = console.open(f"{path}?q=nothing-is-called-this", ready)
    expect(page.get_by_test_id("empty-state")).to_contain_text(empty_title)

    console.fail_api(f"**{api}*")
    page = console.open(f"{path}?q={name}", ready)
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text(f"Could not load {ready}")
    expect(alert).to_contain_text("Service unavailable: the test made this call fail")
    console.screenshot(f"catalog-{ready}-error")

    page.unroute(f"**{api}*")
    page.get_by_role("button", name="Try again").click()
    expect(page.get_by_role("link", name=name)).to_be_visible()
    expect(page.get_by_role("alert")).to_have_count(0)


def test_a_viewer_sees_the_catalog_without_any_control_that_changes_it(
    console: Console, unique: Callable[[str], str]
) -> None:
    model = _create(console, MODELS, {"name": unique("console-viewed")})
    dataset = _create(console, DATASETS, {"name": unique("console-viewed")})
    console.sign_in("viewer")

    page = console.open("/models", "models")
    expect(page.get_by_role("link", name="New model")).to_have_count(0)
    page = console.open(f"/models/{model['id']}", "model")
    expect(page.get_by_role("heading", level=1)).to_have_text(model["name"])
    for action in ("Delete", "Archive", "Mark ready"):
        expect(page.get_by_role("button", name=action)).to_have_count(0)

    page = console.open("/datasets", "datasets")
    expect(page.get_by_role("link", name=dataset["name"])).to_be_visible()
    expect(page.get_by_role("link", name="New dataset")).to_have_count(0)
    page = console.open(f"/datasets/{dataset['id']}", "dataset")
    expect(page.get_by_role("heading", level=1)).to_have_text(dataset["name"])
    expect(page.get_by_role("heading", name="Files (0)")).to_be_visible()
    expect(page.get_by_role("heading", name="Upload files")).to_have_count(0)
    expect(page.locator("input[type=file]")).to_have_count(0)
    expect(page.get_by_role("button", name="Upload")).to_have_count(0)
    expect(page.get_by_role("button", name="Delete")).to_have_count(0)

    page = console.open("/datasets/new", "not-found")
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
